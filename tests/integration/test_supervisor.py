"""Background loops on the real services: a loop that fails is logged, reported by health
and restarted, and the work it does (retries, timers, dispatches) still happens afterwards;
a loop that keeps failing stops its process with a non-zero exit."""

from __future__ import annotations

import asyncio
import dataclasses
import subprocess
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest
from weir.client import Client
from weir.config import Settings
from weir.devstack import Stack
from weir.health import probe
from weir.jetstream import connect, ensure_streams
from weir.supervisor import LoopsFailed
from weir_runner import janitor
from weir_runner.worker import Runner
from weir_scheduler.cron import CronTicker
from weir_scheduler.intake import ReportIntake, SubmitIntake
from weir_scheduler.pruner import Pruner
from weir_scheduler.queues import QueueDispatcher
from weir_scheduler.relay import OutboxRelay
from weir_scheduler.store import ConcurrencyError
from weir_scheduler.timers import TimerFirer

from tests.conftest import Services, _start
from tests.flows import shell, types
from tests.inspection import inspecting

QUICK_RETRY = {"max_attempts": 3, "backoff": {"strategy": "constant", "base": 0.1, "jitter": None}}
WAIT = 30.0


def fails_first_time(tmp_path: Path) -> dict[str, Any]:
    """A flow whose one task fails its first attempt and succeeds on the retry."""
    marker = tmp_path / "tried"
    script = f"test -e {marker} || {{ touch {marker}; exit 3; }}"
    return {"name": "flaky", "tasks": [shell("flaky", script, retry=QUICK_RETRY)]}


async def run_to_success(client: Client, spec: dict[str, Any]) -> None:
    flow_id = await client.submit(spec)
    await asyncio.wait_for(client.wait(flow_id), WAIT)
    events = types([e async for e in client.events(flow_id)])
    assert events.count("task_attempt_failed") == 1, events
    assert events[-1] == "flow_succeeded", events


async def test_timer_loop_survives_a_concurrency_error_and_the_retry_still_fires(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_fire_due = TimerFirer.fire_due
    repaired = asyncio.Event()

    async def fire_due_failing_until_repaired(self: TimerFirer) -> int:
        if not repaired.is_set():
            raise ConcurrencyError("commands could not be recorded after repeated races")
        return await real_fire_due(self)

    monkeypatch.setattr(TimerFirer, "fire_due", fire_due_failing_until_repaired)
    services = await Services.start(settings)
    loops = services.scheduler.loops
    try:
        async with await Client.connect(settings.nats_url) as client:
            await asyncio.wait_for(loops.signals.failed.wait("timers"), WAIT)
            health = await probe(client.nc, "scheduler")
            assert (health["status"], health["ready"]) == ("degraded", False)
            timers = health["loops"]["timers"]
            assert timers["ok"] is False and timers["failures"] >= 1
            assert timers["error"].startswith("ConcurrencyError: commands could not be recorded")
            assert health["loops"]["cron"] == {"ok": True}

            repaired.set()
            await run_to_success(client, fails_first_time(tmp_path))
            health = await probe(client.nc, "scheduler")
            assert (health["status"], health["ready"]) == ("ok", True)
            assert health["loops"]["timers"] == {"ok": True}
    finally:
        await services.stop()


Target = tuple[str, object, str]
"""A loop's name, and the class (or module) and attribute of its round."""

LOOPS: dict[str, Target] = {
    "submits": ("scheduler", SubmitIntake, "run_once"),
    "reports": ("scheduler", ReportIntake, "run_once"),
    "relay": ("scheduler", OutboxRelay, "run_once"),
    "relay-fast-path": ("scheduler", OutboxRelay, "fast_path_once"),
    "timers": ("scheduler", TimerFirer, "run_once"),
    "cron": ("scheduler", CronTicker, "run_once"),
    "queues": ("scheduler", QueueDispatcher, "run_once"),
    "pruner": ("scheduler", Pruner, "run_once"),
    "queue-default": ("runner", Runner, "_take_round"),
    "heartbeats": ("runner", Runner, "_heartbeat_round"),
    "attempt-janitor": ("runner", janitor, "sweep_round"),
}


@pytest.mark.parametrize("loop", list(LOOPS))
async def test_each_loop_that_fails_is_restarted_and_flows_still_succeed(
    loop: str, settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    service, owner, attribute = LOOPS[loop]
    real: Callable[..., Awaitable[None]] = getattr(owner, attribute)
    injected = 0

    async def failing_once(*args: Any) -> None:
        nonlocal injected
        if not injected:
            injected += 1
            raise RuntimeError(f"injected fault in {loop}")
        await real(*args)

    monkeypatch.setattr(owner, attribute, failing_once)
    settings = dataclasses.replace(
        settings,
        queue_limits={"limited": 2},  # the queues loop runs only with a limited queue
        prune_after=3600.0,
        prune_interval=0.2,
        heartbeat_interval=0.2,
        runner_keep=0.8,  # the janitor sweeps every 0.2 s
    )
    services = await Services.start(settings)
    loops = services.scheduler.loops if service == "scheduler" else services.runner.loops
    try:
        await asyncio.wait_for(loops.signals.failed.wait(loop), WAIT)
        async with await Client.connect(settings.nats_url) as client:
            await run_to_success(client, fails_first_time(tmp_path))
        await asyncio.wait_for(loops.signals.succeeded.wait(loop), WAIT)
        assert loops.signals.failed.count(loop) == 1 and injected == 1
        assert loops.states()[loop].ok and not loops.fatal.is_set()
    finally:
        await services.stop()


async def test_a_runner_whose_loop_keeps_failing_stops_with_loops_failed(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(self: Runner) -> None:
        raise OSError("injected: no heartbeat can be sent")

    monkeypatch.setattr(Runner, "_heartbeat_round", broken)
    nc = await connect(settings.nats_url, "test")  # runners wait for the scheduler's streams
    await ensure_streams(nc.jetstream())
    await nc.close()
    runner = Runner(dataclasses.replace(settings, loop_failures_max=3))
    running = await _start("runner", runner)
    with pytest.raises(LoopsFailed, match="runner: background loop heartbeats failed 3 times"):
        await asyncio.wait_for(running, WAIT)


def test_a_scheduler_whose_loop_keeps_failing_exits_non_zero(
    tmp_path: Path, database_url: str
) -> None:
    """A genuinely broken dependency: the timers table is gone, so every round of the timers
    loop fails; after WEIR_LOOP_FAILURES_MAX failures the process exits 1 (systemd or
    Kubernetes then restarts it) instead of running on without timers."""
    stack = Stack(
        tmp_path / "stack",
        env={"WEIR_LOOP_FAILURES_MAX": "3"},
        external_database_url=database_url,
    )
    try:
        stack.start_infra()
        stack.start_scheduler()
        asyncio.run(_drop_timers_table(database_url))
        assert stack.scheduler is not None
        try:
            code = stack.scheduler.wait(timeout=WAIT)
        except subprocess.TimeoutExpired:
            pytest.fail("the scheduler ran on although its timers loop kept failing")
        assert code == 1
        lines = (tmp_path / "stack" / "scheduler.log").read_text().splitlines()
        logged = [msgspec.json.decode(line) for line in lines if line.startswith("{")]
        restarts = [line for line in logged if line["msg"] == "loop failed; restarting"]
        assert [(r["loop"], r["failures"]) for r in restarts] == [("timers", 1), ("timers", 2)]
        assert "UndefinedTableError" in restarts[0]["error"]
        (fatal,) = [
            line for line in logged if line["msg"] == "loop keeps failing; stopping the process"
        ]
        assert (fatal["loop"], fatal["failures"], fatal["level"]) == ("timers", 3, "critical")
        assert lines[-1] == (
            "weir-scheduler: scheduler: background loop timers failed 3 times in a row; "
            "exiting so that the process is restarted"
        )
    finally:
        stack.stop()


async def _drop_timers_table(database_url: str) -> None:
    async with inspecting(database_url) as db:
        await db.timers_table_drop()
