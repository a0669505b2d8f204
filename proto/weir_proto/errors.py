"""Structured errors shared by rejections and API replies."""

from __future__ import annotations

import msgspec


class SpecError(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One problem with a submitted flow: where it is (JSON path) and what to do about it."""

    path: str
    message: str
    task: str | None = None


class ApiError(msgspec.Struct, kw_only=True):
    """The error half of every `weir.api.*` reply."""

    code: str
    message: str
    details: list[SpecError] = msgspec.field(default_factory=list)
    flow_id: str | None = None
    """The flow the error is about, when one was recorded: for `invalid_flow` on
    `weir.api.submit`, the rejected flow that keeps the submit's problems."""
    retry_after: float | None = None
    """Seconds after which the same request may succeed (`rate_limited`, `overloaded`)."""
