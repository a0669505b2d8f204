"""The executor interface: run one task attempt somewhere and say how it ended."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from weir_proto.messages import Dispatch, ErrorType, OutputDigest


@dataclass(frozen=True, slots=True)
class AttemptResult:
    """How an attempt ended: `error_type` None means it succeeded."""

    exit_code: int | None
    error_type: ErrorType | None = None
    message: str = ""
    snooze_seconds: float | None = None
    """With exit code 75: how long the task asked to wait before it runs again."""
    outputs: tuple[OutputDigest, ...] = ()
    """On success: each output's size and SHA-256 as it was uploaded."""

    @property
    def succeeded(self) -> bool:
        return self.error_type is None


OnStarted = Callable[[], Awaitable[None]]


class Executor(Protocol):
    name: str

    async def run(self, dispatch: Dispatch, on_started: OnStarted) -> AttemptResult:
        """Run the attempt to its end. Idempotent per `dispatch.attempt_id`: an attempt
        that already finished reports its recorded result without running again. Calls
        `on_started` once the attempt really starts. Cancelling the call stops the attempt."""
        ...
