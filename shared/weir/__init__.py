"""weir: client library, CLI and shared plumbing."""

from weir.client import Client, WeirError

__all__ = ["Client", "WeirError"]
