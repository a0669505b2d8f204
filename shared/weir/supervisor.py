"""Supervisor: runs a process's background services and restarts one that fails.

Each background duty (the scheduler's timers, cron, relay, ...; the runner's dispatch
consumers, heartbeats, janitor, and the kubernetes executor's pod watch, secret sync and
orphan sweep) is a `BackgroundService` (River's maintenance services are the model): a
`name`, and `run_once`, one round of its work including the pause until the next round is
due. A duty that works through what is due in batches is a `DueWork`, which writes that
round once; a duty whose round is a function of its process's state is a `Duty`.
`Supervisor.start(service)` runs it as the loop of its name, calling `run_once` again and
again (until the round returns `LOOP_DONE`, or the process stops); `Supervisor.stop(name)`
ends it:

- a round that raises is a failure: one JSON log line (`"loop failed; restarting"`, with the
  loop's name, its consecutive failures and the error), then the loop is called again after
  a bounded exponential back-off (`LOOP_BACKOFF_MIN` doubling up to `backoff_max`);
- a round that returns clears the loop's failures; a loop whose round never returns (it
  follows a stream) counts as recovered once it has run `LOOP_RECOVERED_AFTER` seconds;
- while a loop has failures, `states()` reports it failing, and the process's health says
  `degraded` and not ready;
- a loop that fails `failures_max` times in a row (`WEIR_LOOP_FAILURES_MAX`, 10 by default:
  about fifty seconds of continuous failure with the default back-off) is fatal: `fatal` is
  set, the service shuts down and exits non-zero (`LoopsFailed`), so systemd or Kubernetes
  restarts it rather than leaving it up with a duty that no longer happens;
- cancellation (a clean shutdown, `stop()`) is never a failure.

Tests wait on `signals` (a loop's failures and completed rounds), not on sleeps.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import ClassVar, Protocol

import msgspec
from weir_proto.errors import WeirException

log = logging.getLogger("weir.supervisor")

LOOP_BACKOFF_MIN = 0.1
"""Seconds before a loop that failed once is called again; doubled at each further failure."""
LOOP_BACKOFF_MAX_DEFAULT = 30.0
"""The longest pause between two calls of a failing loop (WEIR_LOOP_BACKOFF_MAX)."""
LOOP_FAILURES_MAX_DEFAULT = 10
"""Consecutive failures of one loop that stop the process (WEIR_LOOP_FAILURES_MAX)."""
LOOP_RECOVERED_AFTER = 30.0
"""Seconds a restarted loop whose round does not return must run to count as recovered."""
ERROR_CHARS = 300

LOOP_DONE = object()
"""What a round returns when its loop has nothing more to do (it is not called again)."""

Round = Callable[[], Awaitable[object]]
"""One round of a loop's work, including its pause until the next round is due; it returns
None, or `LOOP_DONE` to end the loop."""


class BackgroundService(Protocol):
    """A named background duty that the supervisor runs round after round."""

    @property
    def name(self) -> str:
        """Its loop's name, in logs and in health."""
        ...

    def run_once(self) -> Awaitable[object]:
        """One round of its work, including its pause until the next round is due; it
        returns None, or `LOOP_DONE` when the service has nothing more to do. An error is the
        supervisor's to log, report and retry."""
        ...


@dataclass(frozen=True)
class Duty:
    """A background service whose round is a function: `run_once` bound to what it works on
    (a subscription, the process's state)."""

    name: str
    run_once: Round


def until_due(due_in: float | None, floor: float, idle_max: float) -> float:
    """Seconds a polling loop sleeps before the next thing due `due_in` seconds from now
    (None: nothing is due): never below `floor`, so a late one is not polled in a spin, nor
    above `idle_max`, so one added meanwhile (by another replica) waits no longer."""
    if due_in is None:
        return idle_max
    return min(max(due_in, floor), idle_max)


class DueWork(abc.ABC):
    """A background service that works through what is due in batches: a round does one
    batch, then, unless the batch was full (more is due: go on at once), waits until the
    next is due (`until_due`: at least `due_floor`, at most `idle_max` seconds)."""

    name: ClassVar[str]
    due_floor: ClassVar[float]
    idle_max: ClassVar[float]
    """Longest wait between checks; work added by another replica is seen this late."""
    batch: int

    @abc.abstractmethod
    async def work_due(self) -> int:
        """Do a batch (at most `batch`) of what is due; how many were handled."""

    @abc.abstractmethod
    async def next_due_in(self) -> float | None:
        """Seconds until the next is due (negative: overdue); None: nothing is."""

    async def run_once(self) -> None:
        if await self.work_due() < self.batch:
            await asyncio.sleep(until_due(await self.next_due_in(), self.due_floor, self.idle_max))


STOP_RECANCEL = 1.0
"""Seconds a stopping loop has to end before it is cancelled again."""


class LoopsFailed(WeirException):
    """A background loop kept failing; the process stops so that it is restarted."""


class LoopState(msgspec.Struct, omit_defaults=True):
    """What health reports of one loop."""

    ok: bool
    failures: int = 0
    """Consecutive failures (0 once a round succeeds)."""
    error: str | None = None
    """The last failure's kind and message."""


@dataclass
class Loop:
    """A named background duty: `work` (one round) called again until the process stops."""

    name: str
    work: Round
    failures: int = 0
    error: str | None = None
    started: float | None = None
    """When the current call of `work` began (monotonic seconds); None between calls."""

    def ran_long_enough(self, now: float) -> bool:
        """Whether the current call has run long enough to count as recovered."""
        return self.started is not None and now - self.started >= LOOP_RECOVERED_AFTER

    def state(self, now: float) -> LoopState:
        if self.failures and self.ran_long_enough(now):
            self.failures, self.error = 0, None  # restarted, and running fine since
        return LoopState(ok=self.failures == 0, failures=self.failures, error=self.error)


class Signal:
    """Counts events per loop name; tests wait until a count is reached."""

    def __init__(self) -> None:
        self._counts: dict[str, int] = {}
        self._changed = asyncio.Condition()

    def count(self, name: str) -> int:
        return self._counts.get(name, 0)

    async def emit(self, name: str) -> None:
        async with self._changed:
            self._counts[name] = self.count(name) + 1
            self._changed.notify_all()

    async def wait(self, name: str, count: int = 1) -> None:
        """Until `name` has been signalled `count` times in all."""
        async with self._changed:
            await self._changed.wait_for(lambda: self.count(name) >= count)


@dataclass
class Signals:
    failed: Signal = field(default_factory=Signal)
    """A round raised."""
    succeeded: Signal = field(default_factory=Signal)
    """A round returned."""


class Supervisor:
    def __init__(
        self,
        service: str,
        *,
        failures_max: int = LOOP_FAILURES_MAX_DEFAULT,
        backoff_max: float = LOOP_BACKOFF_MAX_DEFAULT,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if failures_max < 1 or backoff_max < LOOP_BACKOFF_MIN:
            raise ValueError(
                f"loop failures_max must be at least 1 (got {failures_max}) and backoff_max "
                f"at least {LOOP_BACKOFF_MIN} s (got {backoff_max})"
            )
        self.service = service
        self.failures_max = failures_max
        self.backoff_max = backoff_max
        self.clock = clock
        self.loops: dict[str, Loop] = {}
        self.fatal = asyncio.Event()
        """Set when a loop has failed `failures_max` times in a row."""
        self.signals = Signals()
        self._tasks: dict[str, asyncio.Task[None]] = {}

    def start(self, service: BackgroundService) -> None:
        """Run `service` round after round, as the loop of its name, from now on."""
        name = service.name
        if self.running(name):
            raise ValueError(f'a loop named "{name}" is already running')
        loop = self.loops[name] = Loop(name, service.run_once)
        self._tasks[name] = asyncio.create_task(self._supervise(loop), name=name)

    def running(self, name: str) -> bool:
        """Whether the loop `name` was started and has not ended (nor been stopped)."""
        task = self._tasks.get(name)
        return task is not None and not task.done()

    def states(self) -> dict[str, LoopState]:
        now = self.clock()
        return {name: loop.state(now) for name, loop in self.loops.items()}

    def failing(self) -> list[str]:
        return [name for name, state in self.states().items() if not state.ok]

    async def stop(self, *names: str) -> None:
        """Cancel the loops `names` (all by default) and wait until they have ended.

        A loop that goes on after its cancel is cancelled again every `STOP_RECANCEL`
        seconds: on Python 3.11 `asyncio.wait_for` swallows a cancel that arrives as its
        awaitable completes, so a single cancel can be lost and a stop would hang."""
        pending = {task for name, task in self._tasks.items() if not names or name in names}
        while pending:
            for task in pending:
                task.cancel()
            _, pending = await asyncio.wait(pending, timeout=STOP_RECANCEL)

    async def _supervise(self, loop: Loop) -> None:
        while True:
            loop.started = self.clock()
            try:
                outcome = await loop.work()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if not await self._failed(loop, exc):
                    return
                continue
            loop.started = None
            loop.failures, loop.error = 0, None
            await self.signals.succeeded.emit(loop.name)
            if outcome is LOOP_DONE:
                return

    async def _failed(self, loop: Loop, exc: Exception) -> bool:
        """Record and log a failure, wait out the back-off; False when it was fatal."""
        if loop.ran_long_enough(self.clock()):
            loop.failures = 0  # the failed call had run long enough to count as recovered
        loop.started = None
        loop.failures += 1
        loop.error = f"{type(exc).__name__}: {exc}"[:ERROR_CHARS]
        await self.signals.failed.emit(loop.name)
        if loop.failures >= self.failures_max:
            log.critical(
                "loop keeps failing; stopping the process",
                exc_info=exc,
                extra={"loop": loop.name, "failures": loop.failures, "error": loop.error},
            )
            self.fatal.set()
            return False
        delay = min(LOOP_BACKOFF_MIN * 2 ** (loop.failures - 1), self.backoff_max)
        log.error(
            "loop failed; restarting",
            exc_info=exc,
            extra={
                "loop": loop.name,
                "failures": loop.failures,
                "error": loop.error,
                "retry_in": round(delay, 3),
            },
        )
        await asyncio.sleep(delay)
        return True

    async def wait(self, stop: asyncio.Event) -> None:
        """Until `stop` is set or a loop has been fatal."""
        stopping = asyncio.ensure_future(stop.wait())
        failed = asyncio.ensure_future(self.fatal.wait())
        try:
            await asyncio.wait({stopping, failed}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in (stopping, failed):
                waiter.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await waiter

    def raise_if_fatal(self) -> None:
        """`LoopsFailed` naming the loops that kept failing, if any did."""
        if not self.fatal.is_set():
            return
        failed = [n for n, loop in self.loops.items() if loop.failures >= self.failures_max]
        raise LoopsFailed(
            f"{self.service}: background loop {', '.join(failed)} failed "
            f"{self.failures_max} times in a row; exiting so that the process is restarted"
        )
