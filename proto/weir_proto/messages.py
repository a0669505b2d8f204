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
    REFUSED = "refused"
    """The runner's policy refused the task (an allow-list, a security floor): never retried."""


class AttemptStarted(msgspec.Struct, kw_only=True, tag_field="type", tag="started"):
    """The runner started the attempt. Published on `weir.status.<flow_id>`."""

    flow_id: str
    task: str
    attempt: int
    runner: str
    at: datetime


class AttemptFinished(
    msgspec.Struct, kw_only=True, tag_field="type", tag="finished", omit_defaults=True
):
    """The attempt ended: `error_type` is absent on success."""

    flow_id: str
    task: str
    attempt: int
    runner: str
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
    attempts: list[tuple[str, str, int]]
    """(flow_id, task, attempt) of every attempt the runner is running."""


AttemptStatus = AttemptStarted | AttemptFinished
