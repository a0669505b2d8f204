"""One error vocabulary over HTTP: `{"error": {"code", "message", "problems"?}}`, with the
codes of the NATS API (`weir.api.*` replies) and the HTTP status each stands for."""

from __future__ import annotations

from typing import Any

import msgspec
from weir_proto.errors import SpecError

STATUS_BY_CODE = {
    "bad_request": 400,
    "unauthorized": 401,
    "forbidden": 403,
    "not_found": 404,
    "method_not_allowed": 405,
    "not_acceptable": 406,
    "conflict": 409,
    "too_large": 413,
    "unsupported_media_type": 415,
    "invalid_flow": 422,
    "internal": 500,
    "unavailable": 503,
    "timeout": 504,
}
CODE_BY_STATUS = {status: code for code, status in STATUS_BY_CODE.items()}


class HttpFailure(Exception):
    """An answer other than success; `problems` lists every problem with a submitted spec."""

    def __init__(
        self,
        code: str,
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
        error: dict[str, Any] = {"code": self.code, "message": self.message, **self.extra}
        if self.problems is not None:
            error["problems"] = self.problems
        return msgspec.json.encode({"error": error})
