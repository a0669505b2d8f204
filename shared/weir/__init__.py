"""weir: client library, CLI and shared plumbing."""

from weir.client import Client, WeirError
from weir.sdk import Flow

__all__ = ["Client", "Flow", "WeirError"]
