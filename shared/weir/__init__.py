"""weir: client library, CLI and shared plumbing."""

from weir.client import Client, SubmitVerdict, WeirError
from weir.sdk import Flow

__all__ = ["Client", "Flow", "SubmitVerdict", "WeirError"]
