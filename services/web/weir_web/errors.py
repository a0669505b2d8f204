"""One error vocabulary over HTTP: `{"error": {"code", "message", "problems"?}}`, with the
codes of the NATS API (`weir.api.*` replies) and the HTTP status each stands for."""

from __future__ import annotations

from typing import Any

import msgspec
from msgspec import UNSET, UnsetType
from weir_proto.errors import ErrorCode, SpecError, WeirException

STATUS_BY_CODE: dict[ErrorCode, int] = {
    ErrorCode.BAD_REQUEST: 400,
    ErrorCode.UNAUTHORIZED: 401,
    ErrorCode.FORBIDDEN: 403,
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.METHOD_NOT_ALLOWED: 405,
    ErrorCode.NOT_ACCEPTABLE: 406,
    ErrorCode.CONFLICT: 409,
    ErrorCode.TOO_LARGE: 413,
    ErrorCode.UNSUPPORTED_MEDIA_TYPE: 415,
    ErrorCode.INVALID_FLOW: 422,
    ErrorCode.RATE_LIMITED: 429,
    ErrorCode.INTERNAL: 500,
    ErrorCode.OVERLOADED: 503,
    ErrorCode.UNAVAILABLE: 503,  # after OVERLOADED: a bare 503 is `unavailable`
    ErrorCode.TIMEOUT: 504,
}
CODE_BY_STATUS = {status: code for code, status in STATUS_BY_CODE.items()}


class ErrorDetail(msgspec.Struct, kw_only=True, omit_defaults=True):
    """What went wrong: the code (the NATS API's), a message saying what to do, and the
    fields some codes add."""

    code: ErrorCode
    message: str
    problems: list[SpecError] | UnsetType = UNSET
    """`invalid_flow`: every problem with the submitted spec."""
    flow_id: str | UnsetType = UNSET
    """The flow a refused submit or command names."""
    existing: str | UnsetType | None = UNSET
    """`conflict` on a submit: the flow that holds the same unique key."""
    retry_after: float | UnsetType = UNSET
    """`rate_limited`, `overloaded`: seconds to wait before submitting again (also the
    `Retry-After` header)."""


class Error(msgspec.Struct):
    """Every answer other than success: `{"error": {"code", "message", ...}}`."""

    error: ErrorDetail


class HttpFailure(WeirException):
    """An answer other than success; `problems` lists every problem with a submitted spec."""

    def __init__(
        self,
        code: ErrorCode,
        message: str,
        problems: list[SpecError] | None = None,
        *,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.problems = problems
        self.extra = extra or {}

    @property
    def status(self) -> int:
        return STATUS_BY_CODE.get(self.code, 500)

    def body(self) -> bytes:
        problems = UNSET if self.problems is None else self.problems
        detail = ErrorDetail(code=self.code, message=self.message, problems=problems)
        return msgspec.json.encode(Error(msgspec.structs.replace(detail, **self.extra)))
