"""Request/reply API on `weir.api.<verb>`: requests, views and replies."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec

from weir_proto.errors import ApiError, SpecError

LIST_LIMIT_DEFAULT = 50
LIST_LIMIT_MAX = 1000
"""One page holds at most this many flows; follow `next` for the rest (no hidden cap)."""


class GetRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    flow_id: str


class ListRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, omit_defaults=True):
    status: str | None = None
    limit: int = LIST_LIMIT_DEFAULT
    cursor: str | None = None
    """Opaque: the `next` of the previous page."""


class TaskView(msgspec.Struct, kw_only=True):
    name: str
    status: str
    attempt: int
    queue: str
    depends: list[str]
    dispatched_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    exit_code: int | None = None
    error_type: str | None = None
    error_message: str | None = None
    runner: str | None = None


class FlowSummary(msgspec.Struct, kw_only=True):
    id: str
    name: str
    status: str
    created_at: datetime
    updated_at: datetime
    task_count: int
    seq: int


class FlowView(FlowSummary, kw_only=True):
    tasks: list[TaskView]
    errors: list[SpecError] = msgspec.field(default_factory=list)


class FlowPage(msgspec.Struct, kw_only=True):
    flows: list[FlowSummary]
    next: str | None = None


class SubmitAccepted(msgspec.Struct, kw_only=True):
    flow_id: str
    status: str
    created: bool
    """False when the same flow had been submitted already (idempotent resubmit)."""


class Reply(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Envelope of every API reply: exactly one of `result` and `error` is set."""

    result: Any = None
    error: ApiError | None = None
