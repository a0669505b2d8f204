"""Flow events: the facts in the event log, published on `weir.events.<flow_id>.<type>`.

Every event carries `id`, `flow_id`, `seq` (per flow, from 1, gap-free), `type` and `at`;
an event about one task also its `task` (`TaskEvent`), one about an attempt its `attempt`
(`AttemptEvent`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec

from weir_proto.errors import SpecError
from weir_proto.messages import OutputDigest
from weir_proto.spec import FlowSpec


class _Event(msgspec.Struct, kw_only=True, tag_field="type", omit_defaults=True, frozen=True):
    id: str
    flow_id: str
    seq: int
    at: datetime


class TaskEvent(_Event, frozen=True):
    """An event about one task of the flow (an instance `NAME[i]` of a mapped task is one)."""

    task: str


class AttemptEvent(TaskEvent, frozen=True):
    """An event about one attempt of a task."""

    attempt: int


class FlowSubmitted(_Event, tag="flow_submitted", frozen=True):
    spec: FlowSpec
    start_at: datetime | None = None
    """Set when the flow waits for a later start."""
    rerun_of: str | None = None
    reused: list[str] = msgspec.field(default_factory=list)
    """Tasks that succeeded in `rerun_of`; their outputs are reused, they do not run again."""
    reused_outputs: list[OutputDigest] = msgspec.field(default_factory=list)
    """The digests `rerun_of` recorded for the outputs of the `reused` tasks, carried over:
    the reused objects are checked against them."""


class FlowRejected(_Event, tag="flow_rejected", frozen=True):
    errors: list[SpecError]
    name: str | None = None


class TaskDispatched(AttemptEvent, tag="task_dispatched", frozen=True):
    queue: str
    token_digest: str = ""
    """Hex SHA-256 of the attempt's token (the token itself is only in the dispatch): a
    report on this attempt counts only when it carries the token with this digest."""


class TaskQueued(TaskEvent, tag="task_queued", frozen=True):
    """Ready, but its queue is at its concurrency limit: dispatched by priority later."""

    queue: str
    priority: int


class TaskStarted(AttemptEvent, tag="task_started", frozen=True):
    runner: str = ""


class TaskTakenOver(AttemptEvent, tag="task_taken_over", frozen=True):
    """A running attempt whose runner went silent was taken over by another runner holding
    its dispatch: from here on only `runner`'s reports count, and its lease starts at `at`."""

    runner: str
    previous_runner: str
    silent_for: float
    """Seconds the previous runner had not been heard from about this attempt."""


class TaskSucceeded(AttemptEvent, tag="task_succeeded", frozen=True):
    exit_code: int = 0
    outputs: list[OutputDigest] = msgspec.field(default_factory=list)
    """Size and SHA-256 of each output as the runner uploaded it: every later download
    (a downstream input, `weir artifacts get`) must match."""


class TaskAttemptFailed(AttemptEvent, tag="task_attempt_failed", frozen=True):
    """An attempt failed and another one is due at `retry_at`."""

    error_type: str
    message: str
    retry_at: datetime
    exit_code: int | None = None


class TaskSnoozed(AttemptEvent, tag="task_snoozed", frozen=True):
    """The attempt asked to run again later (exit code 75); it does not count as a failure."""

    until: datetime


class TaskCancelled(TaskEvent, tag="task_cancelled", frozen=True):
    reason: str
    attempt: int = 0


class TaskFailed(AttemptEvent, tag="task_failed", frozen=True):
    """The task's last attempt failed: the task has failed."""

    error_type: str
    message: str
    exit_code: int | None = None


class TaskExpanded(TaskEvent, tag="task_expanded", frozen=True):
    """A mapped task became one instance per item of the list it maps over: `NAME[i]` runs
    with `items[i]`. The items are recorded so a replay makes the same instances without
    reading the output again."""

    count: int
    items: list[Any] = msgspec.field(default_factory=list)


class TaskConditionRead(TaskEvent, tag="task_condition_read", frozen=True):
    """The scheduler read the upstream outputs task `task`'s `when` condition names: each
    output's value (its text, JSON-decoded when it parses). Recorded so a replay decides
    the condition the same way without reading the outputs again."""

    values: dict[str, Any] = msgspec.field(default_factory=dict)


class TaskSkipped(TaskEvent, tag="task_skipped", frozen=True):
    reason: str


class FlowSucceeded(_Event, tag="flow_succeeded", frozen=True):
    pass


class FlowFailed(_Event, tag="flow_failed", frozen=True):
    failed_tasks: list[str]


class FlowCancelRequested(_Event, tag="flow_cancel_requested", frozen=True):
    """Runners kill the flow's running attempts when they see this event. A `fail_fast`
    one (a task of the flow failed) spares the flow's on_exit task, which still runs last;
    so does a user's first cancel (`spares_on_exit`: the on_exit task then runs with
    WEIR_FLOW_STATUS=cancelled), and a user's cancel after that ends it too."""

    reason: str
    fail_fast: bool = False
    spares_on_exit: bool = False
    """A user's cancel that leaves the on_exit task to run last (fail_fast's always does)."""

    @property
    def spares(self) -> bool:
        """Whether this cancel leaves the flow's on_exit task to run."""
        return self.fail_fast or self.spares_on_exit


class FlowCancelled(_Event, tag="flow_cancelled", frozen=True):
    reason: str


class FlowDeduplicated(_Event, tag="flow_deduplicated", frozen=True):
    """Not run: `existing` holds the same unique key."""

    existing: str
    key: str
    name: str | None = None


class FlowPaused(_Event, tag="flow_paused", frozen=True):
    """No new attempt is handed out until `flow_resumed`; attempts already handed out run
    on and are recorded, and timers keep time (a retry that falls due waits for the resume)."""

    reason: str


class FlowResumed(_Event, tag="flow_resumed", frozen=True):
    """Work is handed out again; `status` is what the flow is now (`scheduled`, `pending` or
    `running`)."""

    status: str


class TaskRetried(TaskEvent, tag="task_retried", frozen=True):
    """`task` runs again inside its flow (`weir retry`): every task in `tasks` (it, the
    tasks after it with `downstream`, and the tasks skipped or cancelled so far) is planned
    again, from `pending`; attempts keep counting up and `task` gets its full retry budget.
    For an instance `NAME[i]`, `tasks` holds its mapped task `NAME` too if it had ended; for
    an expanded mapped task, its instances that did not succeed. A mapped task planned
    again waits for its instances, with the items its `task_expanded` recorded."""

    tasks: list[str]
    downstream: bool = False


class FlowUpdated(_Event, tag="flow_updated", frozen=True):
    """The flow, not started yet, was changed (`weir update`): `spec` is the whole new spec,
    `changed` names the fields the update set, `start_at` is the new later start (None: now)."""

    spec: FlowSpec
    changed: list[str]
    start_at: datetime | None = None


FlowEvent = (
    FlowSubmitted
    | FlowRejected
    | TaskDispatched
    | TaskQueued
    | TaskStarted
    | TaskTakenOver
    | TaskSucceeded
    | TaskAttemptFailed
    | TaskSnoozed
    | TaskCancelled
    | TaskFailed
    | TaskSkipped
    | TaskExpanded
    | TaskConditionRead
    | FlowSucceeded
    | FlowFailed
    | FlowCancelRequested
    | FlowCancelled
    | FlowDeduplicated
    | FlowPaused
    | FlowResumed
    | TaskRetried
    | FlowUpdated
)

TERMINAL_FLOW_EVENTS = (
    "flow_succeeded",
    "flow_failed",
    "flow_cancelled",
    "flow_rejected",
    "flow_deduplicated",
)


def event_type(event: FlowEvent) -> str:
    """The wire `type` tag of an event."""
    return type(event).__struct_config__.tag  # type: ignore[return-value]
