"""Fixtures the attacks share: the security log, what an attacker sees on the wire, and the
secrets a runner holds (which no task may read)."""

import secrets

import pytest
from weir.secrets import SECRET_KEY_ENV, new_secret_key

from tests.security.test_forged_reports import security_log, wire

__all__ = ["runner_secrets", "security_log", "wire"]


@pytest.fixture
def runner_secrets() -> dict[str, str]:
    """A runner's secret key and one secret in its environment, each fresh."""
    return {
        SECRET_KEY_ENV: new_secret_key(),
        "WEIR_SECRET_DB_PASSWORD": f"db-{secrets.token_hex(16)}",
    }
