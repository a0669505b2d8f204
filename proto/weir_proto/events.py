"""Flow events: the facts in the event log, published on `weir.events.<flow_id>.<type>`.

Every event carries `id`, `flow_id`, `seq` (per flow, from 1, gap-free), `type` and `at`.
"""

from __future__ import annotations

from datetime import datetime

import msgspec

from weir_proto.errors import SpecError
from weir_proto.spec import FlowSpec


class _Event(msgspec.Struct, kw_only=True, tag_field="type", omit_defaults=True, frozen=True):
    id: str
    flow_id: str
    seq: int
    at: datetime


class FlowSubmitted(_Event, tag="flow_submitted", frozen=True):
    spec: FlowSpec


class FlowRejected(_Event, tag="flow_rejected", frozen=True):
    errors: list[SpecError]
    name: str | None = None


class TaskDispatched(_Event, tag="task_dispatched", frozen=True):
    task: str
    attempt: int
    queue: str


class TaskStarted(_Event, tag="task_started", frozen=True):
    task: str
    attempt: int
    runner: str = ""


class TaskSucceeded(_Event, tag="task_succeeded", frozen=True):
    task: str
    attempt: int
    exit_code: int = 0


class TaskFailed(_Event, tag="task_failed", frozen=True):
    task: str
    attempt: int
    error_type: str
    message: str
    exit_code: int | None = None


class TaskSkipped(_Event, tag="task_skipped", frozen=True):
    task: str
    reason: str


class FlowSucceeded(_Event, tag="flow_succeeded", frozen=True):
    pass


class FlowFailed(_Event, tag="flow_failed", frozen=True):
    failed_tasks: list[str]


FlowEvent = (
    FlowSubmitted
    | FlowRejected
    | TaskDispatched
    | TaskStarted
    | TaskSucceeded
    | TaskFailed
    | TaskSkipped
    | FlowSucceeded
    | FlowFailed
)

TERMINAL_FLOW_EVENTS = ("flow_succeeded", "flow_failed", "flow_rejected")


def event_type(event: FlowEvent) -> str:
    """The wire `type` tag of an event."""
    return type(event).__struct_config__.tag  # type: ignore[return-value]
