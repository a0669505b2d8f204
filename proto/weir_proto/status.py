"""Flow and task statuses as users see them."""

from __future__ import annotations

from enum import StrEnum


class FlowStatus(StrEnum):
    SCHEDULED = "scheduled"
    """Submitted with a later start (`scheduled_at` / `delay`)."""
    PENDING = "pending"
    RUNNING = "running"
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
        return self in (
            TaskStatus.SUCCEEDED,
            TaskStatus.FAILED,
            TaskStatus.SKIPPED,
            TaskStatus.CANCELLED,
        )

    @property
    def active(self) -> bool:
        """Handed to a runner and not finished yet."""
        return self in (TaskStatus.DISPATCHED, TaskStatus.RUNNING)
