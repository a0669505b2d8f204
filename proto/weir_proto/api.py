"""Request/reply API on `weir.api.<verb>`: requests, views and replies."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

import msgspec

from weir_proto.errors import ApiError, SpecError
from weir_proto.messages import OutputDigest
from weir_proto.spec import FlowSpec
from weir_proto.status import TERMINAL_FLOW_STATUS_NAMES

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


class AttemptFailure(msgspec.Struct, kw_only=True, frozen=True):
    """One failed attempt of a task, as the decider folds it and the API reports it."""

    attempt: int
    error_type: str
    message: str
    at: datetime


class CancelRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    flow_id: str
    reason: str = "cancelled by request"


class RerunRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    flow_id: str
    failed_only: bool = False
    """Run only the tasks that did not succeed, reusing the outputs of those that did."""


class RetryRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Run `task` of the flow again (it failed or succeeded); the tasks skipped or cancelled
    so far are planned again, and with `downstream` every task after it too."""

    flow_id: str
    task: str
    downstream: bool = False


class PauseRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Pause (`weir.api.pause`) or resume (`weir.api.resume`, `reason` unused) a flow."""

    flow_id: str
    reason: str = "paused by request"


class UpdateRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, omit_defaults=True):
    """Change a flow that has not started (nothing handed to a runner yet). Each field left
    out stays as it is: `params` are merged into the submitted values, `tags` and `metadata`
    replace the old ones, `scheduled_at` sets a later start (`start_now` starts it now)."""

    flow_id: str
    priority: int | None = None
    scheduled_at: datetime | None = None
    start_now: bool = False
    params: dict[str, Any] | None = None
    tags: list[str] | None = None
    metadata: dict[str, Any] | None = None


class AttemptRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    flow_id: str
    task: str
    attempt: int


class AttemptAnswer(msgspec.Struct, kw_only=True):
    """Whether a runner should (still) run an attempt it was handed."""

    run: bool
    reason: str = ""


class FlowState(msgspec.Struct, kw_only=True):
    """The answer to a cancel: the flow's status after it."""

    flow_id: str
    status: str
    already: bool = False
    """The flow was already cancelling or cancelled: this cancel changed nothing."""


class Stepped(msgspec.Struct, kw_only=True, omit_defaults=True):
    """The answer to a retry, pause, resume or update: the flow's status after it."""

    flow_id: str
    status: str
    tasks: list[str] = msgspec.field(default_factory=list)
    """Retry: the tasks planned again. Update: the fields changed."""
    already: bool = False
    """Pause of a paused flow, resume of one not paused: nothing changed."""
    seq: int = 0
    """The flow's last event once the step was recorded. The events after a retry may reach
    the flow's stream after this answer: `Client.wait(flow_id, since=seq)` waits for the end
    that comes after it, not the one the retry reopened."""


class QueryRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, omit_defaults=True):
    """Flows matching `where` (see docs/jobs.md: and/or/not over id, status, name, queue,
    tags, metadata, params and times), newest first."""

    where: Any = None
    limit: int = LIST_LIMIT_DEFAULT
    cursor: str | None = None


class TaskQueryRequest(
    msgspec.Struct, forbid_unknown_fields=True, kw_only=True, omit_defaults=True
):
    """Tasks across flows matching `where` (see docs/jobs.md: and/or/not over flow,
    flow_name, name, status, queue and finish time): the newest flows' first, each flow's
    in its listed order."""

    where: Any = None
    limit: int = LIST_LIMIT_DEFAULT
    cursor: str | None = None


class PruneRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, omit_defaults=True):
    """Delete ended flows: those in `statuses` that ended more than `older_than` seconds
    ago, keeping the newest `keep_last` of them."""

    older_than: float = 30 * 24 * 3600.0
    statuses: list[str] = msgspec.field(default_factory=lambda: [*TERMINAL_FLOW_STATUS_NAMES])
    keep_last: int = 0


class PruneResult(msgspec.Struct, kw_only=True):
    pruned: int


class ScheduleRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, omit_defaults=True):
    """Create or replace the schedule `name`: run `flow` at every `cron` tick in `timezone`,
    with `params` as its arguments. `{{ schedule.time }}` in the flow (where `{{ params.NAME }}`
    may stand) and in string params becomes the tick's time, RFC 3339."""

    name: str
    cron: str
    flow: FlowSpec
    timezone: str = "UTC"
    missed: Literal["skip", "catch_up"] = "skip"
    paused: bool = False
    params: dict[str, Any] = msgspec.field(default_factory=dict)


class ScheduleName(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    name: str


class ScheduleView(msgspec.Struct, kw_only=True):
    name: str
    cron: str
    timezone: str
    missed: str
    paused: bool
    next_run_at: datetime
    last_tick_at: datetime | None
    created_at: datetime
    flow_name: str
    params: dict[str, Any] = msgspec.field(default_factory=dict)
    """The arguments each tick's flow is submitted with (before `{{ schedule.time }}`)."""


class ScheduleList(msgspec.Struct, kw_only=True):
    schedules: list[ScheduleView]


class SecretName(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """A secret of weir's store, by name (`weir_proto.ids.is_secret_name`)."""

    name: str


class SecretPut(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Store secret `name` as `sealed`: its value already encrypted under WEIR_SECRET_KEY by
    the asker (`weir.secrets.seal_secret`; base64 in JSON). The scheduler stores it as given
    and never holds the key."""

    name: str
    sealed: bytes


class SecretList(msgspec.Struct, kw_only=True):
    """The names of the stored secrets, sorted (never a value)."""

    names: list[str]


class AttemptRecord(msgspec.Struct, kw_only=True, frozen=True):
    """What a task's current (or last) attempt has recorded: a base that puts these fields
    after a subclass's own, declared once for `TaskView`, `TaskSummary` and the scheduler's
    fold of a task (`FoldedTask`)."""

    dispatched_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    retry_at: datetime | None = None
    exit_code: int | None = None
    error_type: str | None = None
    error_message: str | None = None
    runner: str | None = None
    """The runner that started the attempt."""


class TaskView(AttemptRecord, frozen=True):
    name: str
    status: str
    attempt: int
    queue: str
    depends: list[str]
    priority: int = 0
    failures: list[AttemptFailure] = msgspec.field(default_factory=list)
    outputs: list[OutputDigest] = msgspec.field(default_factory=list)
    """Digests the log recorded for the task's outputs (reused ones: carried over)."""


class TaskSummary(AttemptRecord, frozen=True):
    """A task as `weir.api.tasks` lists it: with its flow, without its failure history."""

    flow_id: str
    flow_name: str
    flow_created_at: datetime
    position: int
    """Where the task stands in its flow's list."""
    name: str
    status: str
    attempt: int
    queue: str
    priority: int = 0


class TaskPage(msgspec.Struct, kw_only=True):
    tasks: list[TaskSummary]
    next: str | None = None
    """Opaque: the `cursor` of the next page, or null at the end."""


class FlowSummary(msgspec.Struct, kw_only=True):
    id: str
    name: str
    status: str
    created_at: datetime
    updated_at: datetime
    task_count: int
    seq: int
    tags: list[str] = msgspec.field(default_factory=list)
    finished_at: datetime | None = None
    task_counts: dict[str, int] = msgspec.field(default_factory=dict)
    """How many of its tasks are in each status (only statuses some task is in)."""


class FlowView(FlowSummary, kw_only=True):
    tasks: list[TaskView]
    errors: list[SpecError] = msgspec.field(default_factory=list)
    metadata: dict[str, Any] = msgspec.field(default_factory=dict)
    start_at: datetime | None = None
    rerun_of: str | None = None
    params: dict[str, Any] = msgspec.field(default_factory=dict)
    """The value of each of the flow's declared params: given at submit, else its default."""


class FlowPage(msgspec.Struct, kw_only=True):
    flows: list[FlowSummary]
    next: str | None = None


class SubmitAccepted(msgspec.Struct, kw_only=True, omit_defaults=True):
    flow_id: str
    status: str
    created: bool
    """False when the same flow had been submitted already (idempotent resubmit)."""
    existing: str | None = None
    """With a unique key: the flow that holds it (the submit did not start a new run)."""
    rerun_of: str | None = None


class RawReply(msgspec.Struct):
    """A reply read with its result left undecoded until the caller knows its type."""

    result: msgspec.Raw = msgspec.field(default_factory=msgspec.Raw)
    error: ApiError | None = None


class Reply(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Envelope of every API reply: exactly one of `result` and `error` is set."""

    result: Any = None
    error: ApiError | None = None
