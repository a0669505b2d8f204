"""Artifacts in the NATS Object Store and encrypted secrets, end to end."""
