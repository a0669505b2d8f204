"""Fixtures the attacks share: the security log and what an attacker sees on the wire."""

from tests.security.test_forged_reports import security_log, wire

__all__ = ["security_log", "wire"]
