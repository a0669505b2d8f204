"""Reading a request: path parameters checked before any NATS subject is formed from them,
query parameters, and bodies refused once they pass their limit."""

from __future__ import annotations

from typing import TypeVar

import msgspec
from starlette.requests import Request
from weir.secrets import SecretError, check_secret_name
from weir_proto.errors import ErrorCode
from weir_proto.ids import DNS1123_LABEL_RULE, is_dns_label, is_schedule_name
from weir_proto.validation import OUTPUT_NAME_RULE, is_output_name

from weir_web.errors import HttpFailure

_T = TypeVar("_T")


def label_of(request: Request, key: str, what: str) -> str:
    value: str = request.path_params[key]
    if not is_dns_label(value):
        raise HttpFailure(
            ErrorCode.BAD_REQUEST,
            f"{what} {value[:80]!r} is not valid: {DNS1123_LABEL_RULE}",
        )
    return value


def flow_id_of(request: Request) -> str:
    return label_of(request, "flow_id", "flow id")


def schedule_name_of(request: Request) -> str:
    name: str = request.path_params["name"]
    if not is_schedule_name(name):
        raise HttpFailure(
            ErrorCode.BAD_REQUEST,
            f"schedule name {name[:80]!r} is not valid: lower-case letters, digits and '-', "
            "at most 40 characters, starting and ending with a letter or digit",
        )
    return name


def secret_name_of(request: Request) -> str:
    name: str = request.path_params["name"]
    try:
        check_secret_name(name)
    except SecretError as exc:
        raise HttpFailure(ErrorCode.BAD_REQUEST, str(exc)) from None
    return name


def artifact_name_of(request: Request) -> str:
    name: str = request.path_params["name"]
    if not is_output_name(name):  # the planner's rule for output names
        raise HttpFailure(
            ErrorCode.BAD_REQUEST, f"artifact name {name[:80]!r} is not valid: {OUTPUT_NAME_RULE}"
        )
    return name


def int_query(request: Request, key: str, default: int | None, low: int, high: int) -> int | None:
    raw = request.query_params.get(key)
    if raw is None or raw == "":
        return default
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise HttpFailure(
            ErrorCode.BAD_REQUEST, f"{key}={raw[:40]!r} is not a whole number {low}..{high}"
        )
    return int(raw)


def bool_query(request: Request, key: str) -> bool:
    raw = request.query_params.get(key, "false").lower()
    if raw not in {"true", "false", "1", "0", ""}:
        raise HttpFailure(ErrorCode.BAD_REQUEST, f"{key}={raw[:40]!r} is not true or false")
    return raw in {"true", "1"}


def last_event_id(request: Request) -> int:
    """The `Last-Event-ID` a reconnecting EventSource sends: the last seq it received."""
    raw = request.headers.get("last-event-id", "").strip()
    if not raw:
        return 0
    if not raw.isdigit():
        raise HttpFailure(ErrorCode.BAD_REQUEST, f"Last-Event-ID {raw[:40]!r} is not an event seq")
    return int(raw)


def wants_json(request: Request) -> bool:
    accept = request.headers.get("accept", "")
    return "application/json" in accept and "text/event-stream" not in accept


def wants_events(request: Request) -> bool:
    """Whether the caller asks for Server-Sent Events (as an EventSource does)."""
    return "text/event-stream" in request.headers.get("accept", "")


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused (413) once it passes `limit` bytes: never read whole first."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HttpFailure(
                ErrorCode.TOO_LARGE, f"the request body is larger than {limit:,} bytes"
            )
        chunks.append(chunk)
    return b"".join(chunks)


async def read_json(request: Request, kind: type[_T], limit: int) -> _T:
    body = await read_body(request, limit)
    try:
        return msgspec.json.decode(body or b"{}", type=kind)
    except msgspec.ValidationError as exc:
        raise HttpFailure(ErrorCode.BAD_REQUEST, f"request body: {exc}") from None
    except msgspec.DecodeError as exc:
        raise HttpFailure(ErrorCode.BAD_REQUEST, f"request body is not JSON: {exc}") from None
    except RecursionError:
        raise HttpFailure(ErrorCode.BAD_REQUEST, "request body is nested too deeply") from None
