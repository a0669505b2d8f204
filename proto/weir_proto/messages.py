"""Messages between the scheduler and runners (dispatch) and runners and the scheduler (status)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

import msgspec

from weir_proto.spec import TaskSpec


class Dispatch(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Run one attempt of a task. Published on `weir.dispatch.<queue>`."""

    flow_id: str
    attempt: int
    attempt_id: str
    """Deterministic, DNS-1123 safe `<flow>-<task>-<attempt>`; creating it twice is a no-op."""
    task: TaskSpec
    dispatched_at: datetime
    token: str
    """A random secret of this attempt: every report on it must echo it (`token`). It proves
    a report comes from a holder of this dispatch; the log keeps only its SHA-256 digest."""
    input_flows: dict[str, str] = msgspec.field(default_factory=dict)
    """Output name -> flow that produced it, for outputs reused from an earlier run."""


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

    @property
    def retryable(self) -> bool:
        """Whether another attempt could end differently. Deterministic failures (the task
        cannot be set up as it is written, or it was cancelled) fail the task at once,
        whatever its `max_attempts`."""
        return self not in NOT_RETRYABLE


NOT_RETRYABLE = frozenset(
    {ErrorType.CANCELLED, ErrorType.SECRET, ErrorType.INVALID_IMAGE, ErrorType.REFUSED}
)


class AttemptStarted(msgspec.Struct, kw_only=True, tag_field="type", tag="started"):
    """The runner started the attempt. Published on `weir.status.<flow_id>`."""

    flow_id: str
    task: str
    attempt: int
    runner: str
    token: str
    """The attempt's `Dispatch.token`, echoed: without it the report is refused."""
    at: datetime


class AttemptFinished(
    msgspec.Struct, kw_only=True, tag_field="type", tag="finished", omit_defaults=True
):
    """The attempt ended: `error_type` is absent on success. Published on
    `weir.status.<flow_id>`."""

    flow_id: str
    task: str
    attempt: int
    runner: str
    token: str
    """The attempt's `Dispatch.token`, echoed: without it the report is refused."""
    at: datetime
    exit_code: int | None = None
    error_type: ErrorType | None = None
    message: str = ""
    snooze_seconds: float | None = None
    """Set when the task asked to run again later (exit code 75); not a failure."""


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
