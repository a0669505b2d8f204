"""Messages between the scheduler and runners (dispatch) and runners and the scheduler (status)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

import msgspec

from weir_proto.spec import TaskSpec


class OutputDigest(msgspec.Struct, kw_only=True, frozen=True):
    """What a task's output held when its task uploaded it: `size` bytes with hex SHA-256
    `sha256`. Recorded in the event log (`task_succeeded`), so a download checks the object
    against the log, not against the store's own metadata (which whoever can write the
    object can rewrite with it)."""

    name: str
    size: int
    sha256: str


class Dispatch(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Run one attempt of a task. Published on `weir.dispatch.<queue>`."""

    flow_id: str
    attempt: int
    attempt_id: str
    """Deterministic, DNS-1123 safe `<flow>-<task>-<attempt>`; creating it twice is a no-op."""
    task: TaskSpec
    dispatched_at: datetime
    token: str
    seq: int = 0
    """The `seq` of its `task_dispatched` event in the flow's log: a runner that saw the
    flow's `flow_cancel_requested` (its own `seq`) drops a dispatch made before it and runs one
    made after (a retry). 0 from a scheduler that did not send it."""
    """A random secret of this attempt: every report on it must echo it (`token`). It proves
    a report comes from a holder of this dispatch; the log keeps only its SHA-256 digest."""
    input_flows: dict[str, str] = msgspec.field(default_factory=dict)
    """Output name -> flow that produced it, for outputs reused from an earlier run."""
    input_digests: list[OutputDigest] = msgspec.field(default_factory=list)
    """What the log recorded for each input's output (by `name`, the input's `from`) when its
    task uploaded it: the runner refuses an input that differs (`artifact_integrity`). An
    output without a recorded digest (stored before digests were recorded) is checked
    against the store's own metadata only."""


class ErrorType(StrEnum):
    """Why an attempt failed."""

    EXIT_CODE = "exit_code"
    EXECUTOR = "executor"
    LOST = "lost"
    TIMEOUT = "timeout"
    CANCELLED = "cancelled"
    OOM_KILLED = "oom_killed"
    IMAGE_PULL = "image_pull"
    EVICTED = "evicted"
    UNSCHEDULABLE = "unschedulable"
    POD_DELETED = "pod_deleted"
    SECRET = "secret"
    """A `fromSecret` variable cannot be set: the secret does not exist, WEIR_SECRET_KEY is
    missing or is not the key it was stored with, or the value is not text."""
    REFUSED = "refused"
    """The runner's policy refused the task (an allow-list, a security floor): never retried."""
    INVALID_IMAGE = "invalid_image"
    """The image reference can never be pulled (Kubernetes InvalidImageName,
    ErrImageNeverPull)."""
    ARTIFACT_INTEGRITY = "artifact_integrity"
    """An input is not what its task uploaded: its size or SHA-256 differs from the digest in
    the event log, so the object was replaced (or damaged) in the store since."""

    @property
    def retryable(self) -> bool:
        """Whether another attempt could end differently. Deterministic failures (the task
        cannot be set up as it is written, or it was cancelled) fail the task at once,
        whatever its `max_attempts`."""
        return self not in NOT_RETRYABLE


NOT_RETRYABLE = frozenset(
    {
        ErrorType.CANCELLED,
        ErrorType.SECRET,
        ErrorType.INVALID_IMAGE,
        ErrorType.REFUSED,
        ErrorType.ARTIFACT_INTEGRITY,
    }
)


class _AttemptReport(msgspec.Struct, tag_field="type"):
    """What every report of an attempt says first: which attempt, which runner, when.

    Not `kw_only` itself: msgspec puts keyword-only fields after a subclass's own, and these
    lead on the wire as they always have."""

    flow_id: str
    task: str
    attempt: int
    runner: str
    token: str
    """The attempt's `Dispatch.token`, echoed: without it the report is refused."""
    at: datetime


class AttemptStarted(_AttemptReport, kw_only=True, tag="started"):
    """The runner started the attempt. Published on `weir.status.<flow_id>`."""


class AttemptFinished(_AttemptReport, kw_only=True, tag="finished", omit_defaults=True):
    """The attempt ended: `error_type` is absent on success. Published on
    `weir.status.<flow_id>`."""

    exit_code: int | None = None
    error_type: ErrorType | None = None
    message: str = ""
    snooze_seconds: float | None = None
    """Set when the task asked to run again later (exit code 75); not a failure."""
    outputs: list[OutputDigest] = msgspec.field(default_factory=list)
    """On success: the size and SHA-256 of each output as it was uploaded (computed from
    the bytes sent, never read back from the store)."""
    started_at: datetime | None = None
    """When the attempt started, set when no `started` report was sent for it (an attempt
    that ended within the runner's `started` delay): the scheduler records `task_started`
    at this time, then the end, from this one report."""


SNOOZE_EXIT_CODE = 75
"""EX_TEMPFAIL: a task exiting with it is run again later without using up an attempt."""
SNOOZE_SECONDS_DEFAULT = 30.0


class Heartbeat(msgspec.Struct, kw_only=True):
    """A runner's attempts in progress, on `weir.heartbeat.<runner>` every few seconds."""

    runner: str
    attempts: list[tuple[str, str, int, str]]
    """(flow_id, task, attempt, token) of every attempt the runner is running; `token` is the
    attempt's `Dispatch.token` (a lease is extended only for the right one)."""


AttemptStatus = AttemptStarted | AttemptFinished
