"""weir's error vocabulary: the root exception, the codes of API replies (NATS `weir.api.*`
and HTTP alike), and the structured problems of a rejected flow."""

from __future__ import annotations

from enum import StrEnum

import msgspec


class WeirException(Exception):
    """Something weir could not do. Every exception weir raises on purpose derives from it,
    so a caller can tell weir's refusals from bugs with one `except`."""


class ErrorCode(StrEnum):
    """The `code` of an error reply, the same over NATS (`ApiError`) and HTTP (weir-web),
    and the code the CLI prints in brackets. The values are the wire strings."""

    BAD_REQUEST = "bad_request"
    """The request is malformed or a value in it is out of range; the message says which."""
    UNAUTHORIZED = "unauthorized"
    FORBIDDEN = "forbidden"
    NOT_FOUND = "not_found"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    NOT_ACCEPTABLE = "not_acceptable"
    CONFLICT = "conflict"
    """The request contradicts the state: a flow holding the same unique key, a schedule
    that exists already."""
    TOO_LARGE = "too_large"
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"
    INVALID_FLOW = "invalid_flow"
    """A submitted flow was rejected; `details` lists every problem."""
    RATE_LIMITED = "rate_limited"
    """Too many submits from one connection; `retry_after` says when to try again."""
    OVERLOADED = "overloaded"
    """Too many flows not ended yet; `retry_after` says when to try again."""
    INTERNAL = "internal"
    UNAVAILABLE = "unavailable"
    """No scheduler (or NATS, or storage) answered."""
    TIMEOUT = "timeout"


def error_code(value: str) -> ErrorCode:
    """The code a reply carries; `internal` for one this version does not know."""
    try:
        return ErrorCode(value)
    except ValueError:
        return ErrorCode.INTERNAL


class SpecError(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One problem with a submitted flow: where it is (JSON path) and what to do about it.

    A record, not an exception: it travels in `ApiError.details`, `flow_rejected` events and
    `FlowView.errors`, and the exception that carries a list of them is the planner's
    `Rejected` (a `WeirException`). The name stays: it is the `$defs` name in the JSON Schemas
    that clients in other languages generate their types from."""

    path: str
    message: str
    task: str | None = None


class ApiError(msgspec.Struct, kw_only=True):
    """The error half of every `weir.api.*` reply."""

    code: str
    """An `ErrorCode` value (a plain string on the wire, so that a client reads a code newer
    than itself)."""
    message: str
    details: list[SpecError] = msgspec.field(default_factory=list)
    flow_id: str | None = None
    """The flow the error is about, when one was recorded: for `invalid_flow` on
    `weir.api.submit`, the rejected flow that keeps the submit's problems."""
    retry_after: float | None = None
    """Seconds after which the same request may succeed (`rate_limited`, `overloaded`)."""
