"""Flow, task and attempt statuses as users see them, and how events move a flow's status.

`flow_status_after` is the one rule for a flow's status: the scheduler's state
(`decider.evolve`) and every timeline folded from the log (`weir trace`, the long spans)
apply it to the same events and so agree.
"""

from __future__ import annotations

from enum import StrEnum
from typing import assert_never

from weir_proto import events as ev
from weir_proto.events import FlowEvent


class FlowStatus(StrEnum):
    SCHEDULED = "scheduled"
    """Submitted with a later start (`scheduled_at` / `delay`)."""
    PENDING = "pending"
    RUNNING = "running"
    PAUSED = "paused"
    """`weir pause`: nothing new is handed out until `weir resume`."""
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLING = "cancelling"
    """Cancel requested; waiting for running attempts to be killed."""
    CANCELLED = "cancelled"
    REJECTED = "rejected"
    DUPLICATE = "duplicate"
    """Not run: another flow with the same unique key existed (on_conflict: do_nothing)."""

    @property
    def terminal(self) -> bool:
        return self in TERMINAL_FLOW_STATUSES


TERMINAL_FLOW_STATUSES = frozenset(
    {
        FlowStatus.SUCCEEDED,
        FlowStatus.FAILED,
        FlowStatus.CANCELLED,
        FlowStatus.REJECTED,
        FlowStatus.DUPLICATE,
    }
)


class TaskStatus(StrEnum):
    PENDING = "pending"
    QUEUED = "queued"
    """Ready, waiting for capacity in a queue that has a concurrency limit."""
    DISPATCHED = "dispatched"
    RUNNING = "running"
    RETRYING = "retrying"
    """An attempt failed (or snoozed); the next one waits for its backoff."""
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL_TASK_STATUSES

    @property
    def active(self) -> bool:
        """Handed to a runner and not finished yet."""
        return self in ACTIVE_TASK_STATUSES


TERMINAL_TASK_STATUSES = frozenset(
    {TaskStatus.SUCCEEDED, TaskStatus.FAILED, TaskStatus.SKIPPED, TaskStatus.CANCELLED}
)
ACTIVE_TASK_STATUSES = frozenset({TaskStatus.DISPATCHED, TaskStatus.RUNNING})
"""Tasks handed to a runner and not finished yet (what a queue's concurrency limit counts)."""
UNENDED_FLOW_STATUSES = frozenset(FlowStatus) - TERMINAL_FLOW_STATUSES
"""Flows not ended yet (what the cap on pending flows counts)."""

FLOW_STATUS_NAMES = tuple(status.value for status in FlowStatus)
"""Every flow status as it is written (`unique.statuses`, `weir list --status`), in the
order a flow goes through them."""
TERMINAL_FLOW_STATUS_NAMES = tuple(s.value for s in FlowStatus if s in TERMINAL_FLOW_STATUSES)
"""The statuses of ended flows as they are written, in that order (what `weir prune`
deletes by default)."""


class AttemptState(StrEnum):
    """One task attempt as its events tell it. A task's status spans its attempts: an
    attempt that failed with a retry due, or snoozed, leaves its task `retrying`."""

    DISPATCHED = "dispatched"
    """Handed to a runner that has not reported its start."""
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SNOOZED = "snoozed"
    """Asked to run again later (exit code 75); the next attempt does the work."""
    CANCELLED = "cancelled"

    @property
    def ended(self) -> bool:
        return self not in (AttemptState.DISPATCHED, AttemptState.RUNNING)


def flow_status_after(status: FlowStatus, event: FlowEvent) -> FlowStatus:
    """The status of a flow in `status` once `event` has happened to it."""
    match event:
        case ev.FlowSubmitted(start_at=start_at):
            return FlowStatus.SCHEDULED if start_at else FlowStatus.PENDING
        case ev.FlowRejected():
            return FlowStatus.REJECTED
        case ev.FlowDeduplicated():
            return FlowStatus.DUPLICATE
        case ev.TaskDispatched() | ev.TaskQueued() | ev.TaskSkipped():
            # A skip at the start (a root's trigger or condition) starts the flow too, so a
            # flow whose every task is skipped then ends.
            return FlowStatus.PENDING if status is FlowStatus.SCHEDULED else status
        case ev.TaskStarted():
            return FlowStatus.RUNNING if status is FlowStatus.PENDING else status
        case ev.FlowCancelRequested(fail_fast=fail_fast):
            # fail_fast only stops the running siblings: the flow is failing, not cancelling.
            return status if fail_fast else FlowStatus.CANCELLING
        case ev.FlowPaused():
            return FlowStatus.PAUSED
        case ev.FlowResumed(status=resumed):
            return FlowStatus(resumed)
        case ev.TaskRetried():
            return status if status is FlowStatus.PAUSED else FlowStatus.RUNNING
        case ev.FlowUpdated(start_at=start_at):
            if status is FlowStatus.PAUSED:
                return status
            return FlowStatus.SCHEDULED if start_at else FlowStatus.PENDING
        case ev.FlowSucceeded():
            return FlowStatus.SUCCEEDED
        case ev.FlowFailed():
            return FlowStatus.FAILED
        case ev.FlowCancelled():
            return FlowStatus.CANCELLED
        case (
            ev.TaskSucceeded()
            | ev.TaskTakenOver()
            | ev.TaskAttemptFailed()
            | ev.TaskSnoozed()
            | ev.TaskCancelled()
            | ev.TaskFailed()
            | ev.TaskExpanded()
            | ev.TaskConditionRead()
        ):
            return status
        case _ as unreachable:
            assert_never(unreachable)
