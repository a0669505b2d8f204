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


class ErrorType(StrEnum):
    """Why an attempt failed."""

    EXIT_CODE = "exit_code"
    EXECUTOR = "executor"
    LOST = "lost"
    TIMEOUT = "timeout"
    CANCELLED = "cancelled"


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


AttemptStatus = AttemptStarted | AttemptFinished
