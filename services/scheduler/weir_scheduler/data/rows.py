"""The rows the data layer reads and writes, as typed structs.

A row type written in bulk (`EventRow`, `FlowRow`, `TaskRow`, `TimerKey`, `TimerRow`) is
its own column list: `queries.sql` names it (`:FlowRow.columns`, `:FlowRow.record`) and the
loader expands the name from the struct's fields, so adding a column is one field here
(plus its migration). A batch of such rows travels as one JSON parameter, encoded in one
call, and Postgres unpacks it with `jsonb_to_recordset`.
"""

from __future__ import annotations

import types
import typing
from datetime import datetime
from typing import Any

import msgspec
from weir_proto.api import AttemptFailure
from weir_proto.errors import SpecError
from weir_proto.messages import OutputDigest

__all__ = [  # the row types (the column helpers below are the data layer's own)
    "AppendBatch",
    "AttemptState",
    "DueSchedule",
    "EventRow",
    "FiredTimer",
    "FlowKey",
    "FlowRow",
    "LoggedEvent",
    "NewSchedule",
    "OutboxRow",
    "TaskKey",
    "TaskRow",
    "TimerKey",
    "TimerRow",
]


class EventRow(msgspec.Struct, frozen=True):
    """One event of the log; `data` is the event already encoded (it also goes to NATS)."""

    id: str
    flow_id: str
    seq: int
    type: str
    data: msgspec.Raw


class FlowRow(msgspec.Struct, frozen=True, kw_only=True):
    """The `flows` projection of one flow. On conflict only what can change is updated
    (`status`, `seq`, `updated_at`, `finished_at`; see the `append` statement)."""

    id: str
    name: str
    status: str
    seq: int
    task_count: int
    created_at: datetime
    updated_at: datetime
    spec_digest: str | None
    errors: tuple[SpecError, ...] | None
    tags: list[str]
    metadata: dict[str, Any]
    start_at: datetime | None
    rerun_of: str | None
    unique_key: str | None
    finished_at: datetime | None
    params: dict[str, Any]
    """Every parameter's value (given, else the default): `param.NAME` queries."""


class TaskRow(msgspec.Struct, frozen=True, kw_only=True):
    """The `tasks` projection of one task of a flow."""

    flow_id: str
    flow_created_at: datetime
    """Its flow's, so a listing of tasks across flows, newest flows first, is one index walk
    (`weir tasks`)."""
    name: str
    position: int
    status: str
    attempt: int
    queue: str
    depends: tuple[str, ...]
    dispatched_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    exit_code: int | None
    error_type: str | None
    error_message: str | None
    runner: str | None
    priority: int
    failures: tuple[AttemptFailure, ...]
    retry_at: datetime | None
    outputs: tuple[OutputDigest, ...]


class TimerKey(msgspec.Struct, frozen=True):
    """A task (or, with task "", the flow itself) whose timers an append recomputes."""

    flow_id: str
    task: str


class FiredTimer(TimerKey, frozen=True):
    """A claimed timer of the task `TimerKey` names, to fire and then drop unless it was
    moved meanwhile."""

    kind: str
    attempt: int


class TimerRow(FiredTimer, frozen=True):
    """A timer that is due at `due_at`: a retry, a delayed start, a deadline or a lease
    (its other fields name it, as they name it once it is claimed and fired)."""

    due_at: datetime


class OutboxRow(msgspec.Struct, frozen=True):
    """A message committed with the events, for the relay to publish (`id` is 0 until it
    is written)."""

    id: int
    subject: str
    msg_id: str
    payload: bytes


class AppendBatch(msgspec.Struct, frozen=True, kw_only=True):
    """Everything one append writes, in one statement: the events, the projections they
    change, the timers of the touched tasks, and the outbox rows."""

    events: list[EventRow]
    flows: list[FlowRow]
    tasks: list[TaskRow]
    tasks_dropped: list[TimerKey] = msgspec.field(default_factory=list)
    """Instances a retry dropped from the plan: their rows go (the log keeps their history)."""
    timers_cleared: list[TimerKey]
    timers_due: list[TimerRow]
    outbox: list[OutboxRow]


class LoggedEvent(msgspec.Struct, frozen=True):
    """An event read back from the log, still encoded."""

    flow_id: str
    data: str


class AttemptState(msgspec.Struct, frozen=True):
    """What the projection says of a task's current attempt."""

    status: str
    attempt: int
    flow_status: str


class DueSchedule(msgspec.Struct, frozen=True, kw_only=True):
    """A schedule whose next tick has come, claimed by the transaction that read it."""

    name: str
    cron: str
    timezone: str
    spec: str
    missed: str
    next_run_at: datetime
    last_tick_at: datetime | None


class NewSchedule(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    cron: str
    timezone: str
    spec: str
    """The flow spec as JSON."""
    missed: str
    paused: bool
    next_run_at: datetime


class FlowKey(msgspec.Struct, frozen=True):
    """Where a newest-first page of flows continues: after this (created_at, id)."""

    created_at: datetime
    id: str


class TaskKey(msgspec.Struct, frozen=True):
    """Where a page of tasks continues: after this task (flows newest first, each flow's
    tasks in their listed order)."""

    flow_created_at: datetime
    flow_id: str
    position: int


_PG_TYPES: dict[object, str] = {
    str: "text",
    int: "integer",
    bool: "boolean",
    datetime: "timestamptz",
    list[str]: "text[]",
    tuple[str, ...]: "text[]",
}


def pg_type(annotation: object) -> str:
    """The Postgres type of a row field: the scalars and text arrays as themselves,
    anything structured (lists of structs, objects, pre-encoded JSON) as jsonb."""
    args = typing.get_args(annotation)
    if isinstance(annotation, types.UnionType) and type(None) in args:
        (annotation,) = (a for a in args if a is not type(None))
    return _PG_TYPES.get(annotation, "jsonb")


def record_columns(row_type: type[msgspec.Struct]) -> list[tuple[str, str]]:
    """`(column, Postgres type)` of each field of a bulk-written row type, in order."""
    hints = typing.get_type_hints(row_type)
    return [(name, pg_type(hints[name])) for name in row_type.__struct_fields__]


BULK_ROWS: dict[str, type[msgspec.Struct]] = {
    cls.__name__: cls for cls in (EventRow, FlowRow, TaskRow, TimerKey, TimerRow)
}
"""The row types `queries.sql` may name, by name."""
