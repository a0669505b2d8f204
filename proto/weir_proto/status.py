"""Flow and task statuses as users see them."""

from __future__ import annotations

from enum import StrEnum


class FlowStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    REJECTED = "rejected"

    @property
    def terminal(self) -> bool:
        return self in (FlowStatus.SUCCEEDED, FlowStatus.FAILED, FlowStatus.REJECTED)


class TaskStatus(StrEnum):
    PENDING = "pending"
    DISPATCHED = "dispatched"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"

    @property
    def terminal(self) -> bool:
        return self in (TaskStatus.SUCCEEDED, TaskStatus.FAILED, TaskStatus.SKIPPED)

    @property
    def active(self) -> bool:
        """Handed to a runner and not finished yet."""
        return self in (TaskStatus.DISPATCHED, TaskStatus.RUNNING)
