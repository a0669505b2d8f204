"""The supervisor restarts a failing loop with bounded back-off, reports it, and gives up
(fatal) only after WEIR_LOOP_FAILURES_MAX failures in a row; stopping is never a failure."""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from typing import cast

import msgspec
import pytest
from nats.aio.client import Client as NATS
from weir.health import Health
from weir.logs import JsonFormatter
from weir.supervisor import (
    LOOP_BACKOFF_MIN,
    LOOP_RECOVERED_AFTER,
    DueWork,
    Duty,
    LoopsFailed,
    LoopState,
    Supervisor,
    until_due,
)

WAIT = 5.0


async def test_a_loop_that_raises_is_logged_by_name_and_restarted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    loops = Supervisor("scheduler")
    calls = 0

    async def flaky() -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("injected")
        await asyncio.sleep(0.01)

    with caplog.at_level(logging.ERROR, logger="weir.supervisor"):
        loops.start(Duty("timers", flaky))
        await asyncio.wait_for(loops.signals.succeeded.wait("timers", 2), WAIT)
        await loops.stop()
    (record,) = [r for r in caplog.records if r.name == "weir.supervisor"]
    line = msgspec.json.decode(JsonFormatter().format(record))
    assert line["msg"] == "loop failed; restarting"
    assert line["loop"] == "timers" and line["failures"] == 1
    assert line["error"] == "RuntimeError: injected" and line["retry_in"] == LOOP_BACKOFF_MIN
    assert "Traceback" in line["exc"]
    assert loops.states()["timers"].ok and not loops.fatal.is_set()


async def test_back_off_doubles_up_to_its_bound_and_the_last_failure_is_fatal(
    caplog: pytest.LogCaptureFixture,
) -> None:
    loops = Supervisor("runner", failures_max=4, backoff_max=0.2)
    called: list[float] = []

    async def broken() -> None:
        called.append(time.monotonic())
        raise ConnectionError(f"failure {len(called)}")

    with caplog.at_level(logging.ERROR, logger="weir.supervisor"):
        loops.start(Duty("heartbeats", broken))
        await asyncio.wait_for(loops.fatal.wait(), WAIT)
    logged = [(r.getMessage(), getattr(r, "retry_in", None)) for r in caplog.records]
    assert logged == [
        ("loop failed; restarting", 0.1),
        ("loop failed; restarting", 0.2),
        ("loop failed; restarting", 0.2),
        ("loop keeps failing; stopping the process", None),
    ]
    gaps = [b - a for a, b in itertools.pairwise(called)]
    assert len(called) == 4 and all(g >= w for g, w in zip(gaps, [0.1, 0.2, 0.2], strict=True))
    state = loops.states()["heartbeats"]
    assert (state.ok, state.failures, state.error) == (False, 4, "ConnectionError: failure 4")
    with pytest.raises(LoopsFailed, match="background loop heartbeats failed 4 times in a row"):
        loops.raise_if_fatal()
    await loops.stop()


async def test_stopping_cancels_loops_without_counting_a_failure() -> None:
    loops = Supervisor("scheduler")
    running = asyncio.Event()

    async def idle() -> None:
        running.set()
        await asyncio.sleep(3600)

    loops.start(Duty("pruner", idle))
    await asyncio.wait_for(running.wait(), WAIT)
    await asyncio.wait_for(loops.stop(), WAIT)
    assert loops.signals.failed.count("pruner") == 0
    assert loops.states()["pruner"].ok and not loops.fatal.is_set()
    loops.raise_if_fatal()  # nothing to raise


async def test_a_loop_that_swallows_its_cancel_is_still_stopped() -> None:
    """Python 3.11's `asyncio.wait_for` loses a cancel that arrives as its awaitable ends;
    a loop round that lost one sleeps on: stop cancels it again instead of hanging."""
    loops = Supervisor("scheduler")
    running = asyncio.Event()
    swallowed = 0

    async def deaf() -> None:
        nonlocal swallowed
        running.set()
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                if swallowed:
                    raise
                swallowed += 1  # as a lost cancel: the round goes on sleeping
                asyncio.current_task().uncancel()  # type: ignore[union-attr]

    loops.start(Duty("cron", deaf))
    await asyncio.wait_for(running.wait(), WAIT)
    await asyncio.wait_for(loops.stop(), WAIT)
    assert swallowed == 1 and not loops.running("cron")


async def test_health_is_degraded_and_not_ready_while_a_loop_fails() -> None:
    loops = Supervisor("scheduler")
    broken = True

    async def work() -> None:
        if broken:
            raise ValueError("bad row")
        await asyncio.sleep(0.01)

    health = Health(cast(NATS, None), "scheduler", "a", {}, loops.states)
    health.set_ready()
    loops.start(Duty("cron", work))
    await asyncio.wait_for(loops.signals.failed.wait("cron"), WAIT)
    report = await health.report()
    assert (report.status, report.ready) == ("degraded", False)
    cron = report.loops["cron"]
    assert (cron.ok, cron.failures, cron.error) == (False, 1, "ValueError: bad row")
    broken = False
    await asyncio.wait_for(loops.signals.succeeded.wait("cron"), WAIT)
    report = await health.report()
    assert (report.status, report.ready, report.loops["cron"].ok) == ("ok", True, True)
    await loops.stop()


async def test_a_long_running_loop_counts_as_recovered_after_running_a_while() -> None:
    now = 1000.0
    loops = Supervisor("runner", clock=lambda: now)
    restarted = asyncio.Event()

    async def follow() -> None:
        if loops.signals.failed.count("pod-watch") == 0:
            raise OSError("watch ended")
        restarted.set()
        await asyncio.sleep(3600)  # follows a stream: this round never returns

    loops.start(Duty("pod-watch", follow))
    await asyncio.wait_for(restarted.wait(), WAIT)
    assert not loops.states()["pod-watch"].ok
    now += LOOP_RECOVERED_AFTER
    assert loops.states()["pod-watch"].ok
    await loops.stop()


def test_a_supervisor_with_impossible_limits_is_refused() -> None:
    with pytest.raises(ValueError, match="failures_max must be at least 1"):
        Supervisor("scheduler", failures_max=0)


async def test_a_failure_after_a_long_healthy_run_is_a_first_failure_again() -> None:
    now = 0.0
    loops = Supervisor("runner", failures_max=2, clock=lambda: now)
    following, fail = asyncio.Event(), asyncio.Event()

    async def follow() -> None:
        if loops.signals.failed.count("secret-sync") == 0:
            raise OSError("at once")
        following.set()
        await fail.wait()  # a long healthy run, then a failure
        fail.clear()
        raise OSError("after a long run")

    loops.start(Duty("secret-sync", follow))
    await asyncio.wait_for(following.wait(), WAIT)
    now += LOOP_RECOVERED_AFTER + 1
    fail.set()
    await asyncio.wait_for(loops.signals.failed.wait("secret-sync", 2), WAIT)
    state = loops.states()["secret-sync"]  # in its back-off: failing, but not fatal
    assert (state.ok, state.failures, state.error) == (False, 1, "OSError: after a long run")
    assert not loops.fatal.is_set()
    await loops.stop()


class _Batches(DueWork):
    """Hands out the batch sizes it is given; the next is always due in `due_in`."""

    name = "batches"
    due_floor = 0.001
    idle_max = 0.05

    def __init__(self, sizes: list[int], due_in: float | None) -> None:
        self.batch = 2
        self.sizes = sizes
        self.due_in = due_in
        self.asked = 0

    async def work_due(self) -> int:
        return self.sizes.pop(0) if self.sizes else 0

    async def next_due_in(self) -> float | None:
        self.asked += 1
        return self.due_in


async def test_due_work_goes_on_after_a_full_batch_and_waits_for_the_next_after_a_short_one() -> (
    None
):
    full = _Batches([2], due_in=3600.0)
    await asyncio.wait_for(full.run_once(), WAIT)  # an hour's wait would time out
    assert full.asked == 0
    short = _Batches([1], due_in=0.0)
    await asyncio.wait_for(short.run_once(), WAIT)
    assert short.asked == 1


def test_a_due_wait_is_never_a_spin_nor_longer_than_the_idle_poll() -> None:
    assert until_due(None, 0.01, 1.0) == 1.0
    assert until_due(-5.0, 0.01, 1.0) == 0.01
    assert until_due(0.3, 0.01, 1.0) == 0.3
    assert until_due(3600.0, 0.01, 1.0) == 1.0


async def test_a_service_runs_as_the_loop_of_its_name() -> None:
    loops = Supervisor("scheduler")
    service = _Batches([2, 0], due_in=0.0)
    loops.start(service)
    with pytest.raises(ValueError, match='a loop named "batches" is already running'):
        loops.start(Duty("batches", service.run_once))
    await asyncio.wait_for(loops.signals.succeeded.wait("batches", 2), WAIT)
    await loops.stop("batches")
    assert not loops.running("batches") and loops.states() == {"batches": LoopState(ok=True)}
