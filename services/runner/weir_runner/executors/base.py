"""The executor interface: run one task attempt somewhere and say how it ended.

`Executor` is what the worker sees of an executor, all of it: `run` each executor has its
own; the rest (background loops, the scheduler's answers, the worker's NATS connection,
closing) defaults to nothing for an executor that needs none of it.
"""

from __future__ import annotations

import abc
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from weir_proto.messages import Dispatch, ErrorType, OutputDigest

if TYPE_CHECKING:
    from nats.js import JetStreamContext
    from weir.supervisor import Supervisor


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
Wanted = Callable[[str, str, int], Awaitable[tuple[bool, str] | None]]
"""(flow, task, attempt) -> whether the scheduler still wants it and why not; None: no
answer."""


class Executor(abc.ABC):
    """Runs attempts; the worker calls `supervise_with`, `ask_with` and `attach` once before
    the first attempt, `run` for each attempt, and `close` once the last has ended."""

    name: ClassVar[str]
    writes_logs: ClassVar[bool] = True
    """Whether an attempt's output lands in `stdout.log` and `stderr.log` of its directory
    (`AttemptDir`), for the worker to ship live."""

    @abc.abstractmethod
    async def run(self, dispatch: Dispatch, on_started: OnStarted) -> AttemptResult:
        """Run the attempt to its end. Idempotent per `dispatch.attempt_id`: an attempt
        that already finished reports its recorded result without running again. Calls
        `on_started` once the attempt really starts. Cancelling the call stops the attempt."""

    def supervise_with(self, loops: Supervisor) -> None:  # noqa: B027 - nothing by default
        """Run the executor's background loops (watches, syncs) under `loops`, the runner's
        supervisor, so they show in its health and a fatal one stops the runner."""

    def ask_with(self, wanted: Wanted) -> None:  # noqa: B027 - nothing by default
        """How to ask the scheduler whether an attempt is still wanted (an executor that
        finds attempts no runner follows asks before it ends them)."""

    def attach(self, js: JetStreamContext) -> None:  # noqa: B027 - nothing by default
        """The worker's NATS connection, for artifacts and secrets."""

    async def close(self) -> None:  # noqa: B027 - nothing by default
        """Stop the executor's own background work; the worker's attempts have ended."""
