"""Smoke tests of the benchmark harness (no servers)."""
