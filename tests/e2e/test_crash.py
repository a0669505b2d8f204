"""kill -9 of the scheduler and of the runner mid-flow delays work but never loses it, never
duplicates an event, and never runs a finished task again."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from weir.client import Client
from weir.devstack import Stack
from weir_proto.events import event_type

from tests.e2e.conftest import FAST_FAILOVER
from tests.flows import shell
from tests.inspection import LoggedRow, inspecting
from tests.waiting import until

pytestmark = pytest.mark.slow

FLOW_TIMEOUT = 120.0


def crash_flow(trail: Path, width: int = 3, depth: int = 6) -> dict[str, Any]:
    """`depth` layers of `width` tasks; each task depends on the whole layer above. Every task
    writes `start` and `end` lines to the trail so re-runs are visible."""
    script = 'echo "start $WEIR_TASK" >> "$TRAIL"; sleep 0.25; echo "end $WEIR_TASK" >> "$TRAIL"'
    tasks = []
    for layer in range(depth):
        for i in range(width):
            tasks.append(
                shell(
                    f"l{layer}-t{i}",
                    script,
                    depends=[f"l{layer - 1}-t{j}" for j in range(width)] if layer else [],
                    env=[{"name": "TRAIL", "value": str(trail)}],
                )
            )
    return {"name": "crash-test", "tasks": tasks}


async def test_kill_9_scheduler_and_runner_mid_flow(stack: Stack, tmp_path: Path) -> None:
    trail = tmp_path / "trail.log"
    trail.touch()
    spec = crash_flow(trail)
    rng = random.Random(20261125)
    kills = 0
    async with await Client.connect(stack.nats_url) as client:
        flow_id = await client.submit(spec)
        waiter = asyncio.create_task(client.wait(flow_id))
        for round_ in range(4):
            await asyncio.sleep(rng.uniform(0.3, 0.9))
            if waiter.done():
                break
            if round_ % 2 == 0:
                stack.kill_scheduler()
                await asyncio.sleep(rng.uniform(0.1, 0.5))
                await asyncio.to_thread(stack.start_scheduler)
            else:
                stack.kill_runner()
                await asyncio.sleep(rng.uniform(0.1, 0.5))
                await asyncio.to_thread(stack.start_runner)
            kills += 1
        final = await asyncio.wait_for(waiter, FLOW_TIMEOUT)
        streamed = [e async for e in client.events(flow_id)]

    assert kills >= 2, "the flow finished before the crashes could be injected"
    assert event_type(final) == "flow_succeeded"

    rows = await _log_of(stack.database_url, flow_id)
    assert [r.seq for r in rows] == list(range(1, len(rows) + 1)), "gap or duplicate in seq"
    succeeded = Counter(r.task for r in rows if r.type == "task_succeeded")
    assert set(succeeded.values()) == {1} and len(succeeded) == len(spec["tasks"])
    assert [r.id for r in rows] == [e.id for e in streamed], "NATS stream differs from log"

    finished: set[str] = set()
    for line in trail.read_text().splitlines():
        word, task = line.split()
        if word == "start":
            assert task not in finished, f"{task} ran again after it had finished"
        else:
            finished.add(task)
    assert finished == {t["name"] for t in spec["tasks"]}


async def _log_of(database_url: str, flow_id: str) -> list[LoggedRow]:
    async with inspecting(database_url) as db:
        return await db.event_log(flow_id)


async def test_kill_9_while_a_started_report_is_held_or_a_combined_report_waits(
    tmp_path: Path, database_url: str
) -> None:
    """The two steps a short attempt's single report adds, each cut by kill -9: the runner
    dies while it holds an attempt's `started` report (never sent), and the scheduler is
    down when the one `finished` report carrying the start arrives. Neither loses the start
    nor the end, records either twice, or runs a task again."""
    env = {**FAST_FAILOVER, "WEIR_STARTED_DELAY": "600"}  # no `started` report is ever sent
    trail = tmp_path / "trail.log"
    trail.touch()
    gate = tmp_path / "gate"
    script = (
        'echo "start $WEIR_TASK" >> "$TRAIL"; '
        'while [ ! -e "$GATE/$WEIR_TASK" ]; do sleep 0.02; done; echo "end $WEIR_TASK" >> "$TRAIL"'
    )
    names = ["a", "b"]
    env_vars = [{"name": "TRAIL", "value": str(trail)}, {"name": "GATE", "value": str(gate)}]
    spec = {
        "name": "held-start",
        "tasks": [shell(n, script, env=env_vars, depends=names[:i]) for i, n in enumerate(names)],
    }
    gate.mkdir()
    stack = Stack(tmp_path / "stack", env=env, external_database_url=database_url)
    try:
        await asyncio.to_thread(stack.start)
        async with await Client.connect(stack.nats_url) as client:
            flow_id = await client.submit(spec)
            waiter = asyncio.create_task(client.wait(flow_id))

            def started(task: str) -> bool:
                return f"start {task}" in trail.read_text()

            # 1. The runner dies while it holds the start of "a"; its process goes on and is
            #    adopted by the next runner, which reports start and end in one report.
            await until(lambda: started("a"), 'task "a" started')
            stack.kill_runner()
            await asyncio.to_thread(stack.start_runner)
            (gate / "a").touch()
            # 2. The scheduler is down when the one report of "b" arrives.
            await until(lambda: started("b"), 'task "b" started')
            stack.kill_scheduler()
            (gate / "b").touch()
            await until(lambda: "end b" in trail.read_text(), 'task "b" ended')
            await asyncio.to_thread(stack.start_scheduler)
            final = await asyncio.wait_for(waiter, FLOW_TIMEOUT)
            streamed = [e async for e in client.events(flow_id)]
        rows = await _log_of(stack.database_url, flow_id)
    finally:
        await asyncio.to_thread(stack.stop)

    assert event_type(final) == "flow_succeeded"
    assert [r.seq for r in rows] == list(range(1, len(rows) + 1)), "gap or duplicate in seq"
    for kind in ("task_started", "task_succeeded"):
        counted = Counter(r.task for r in rows if r.type == kind)
        assert counted == dict.fromkeys(names, 1), f"{kind}: {counted}"
    assert [r.id for r in rows] == [e.id for e in streamed], "NATS stream differs from log"
    assert trail.read_text().split("\n")[:-1] == ["start a", "end a", "start b", "end b"]
