"""Takeover of a running attempt by another runner, on the real services.

A runner killed with -9 mid-attempt leaves its dispatch unacknowledged; JetStream hands it to
another runner, which may have another name. That runner takes the attempt over (the event
`task_taken_over`) once the first runner has been silent long enough, and the attempt goes
on without using up another attempt. An attacker holding the attempt's token (every runner of
the queue may read dispatches) cannot take an attempt from a runner that is alive and
heartbeating: its claims are refused and the victim flow ends as its task really ends.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest
from weir.client import Client
from weir.config import Settings
from weir.devstack import Stack
from weir_proto import subjects
from weir_proto.events import TaskStarted, TaskSucceeded, TaskTakenOver, event_type
from weir_proto.messages import Heartbeat

from tests.e2e.conftest import FAST_FAILOVER, running_stack
from tests.flows import WAIT, shell, task
from tests.security.test_forged_reports import (
    LogWatch,
    Wire,
    assert_victim_failed_for_real,
    forge_finished,
    start_victim,
    until,
)


def started_report(flow_id: str, runner: str, token: str) -> bytes:
    return msgspec.json.encode(
        {
            "type": "started",
            "flow_id": flow_id,
            "task": "slow",
            "attempt": 1,
            "runner": runner,
            "token": token,
            "at": "2026-01-01T00:00:00Z",
        }
    )


async def test_takeover_of_an_attempt_whose_runner_is_alive_is_refused(
    client: Client, wire: Wire, security_log: LogWatch, settings: Settings
) -> None:
    """With the attempt's real token: a `started`, a heartbeat and a `finished` under another
    runner name while the real runner heartbeats. None takes the attempt over."""
    await start_victim(client)
    token = wire.token("victim", 1)

    seen = len(security_log.records)
    await client.js.publish(subjects.status("victim"), started_report("victim", "evil", token))
    record = await security_log.next(seen, "status report refused")
    assert (record.__dict__["reason"], record.__dict__["runner"]) == (
        "the attempt's runner is alive",
        "evil",
    )

    seen = len(security_log.records)
    beat = Heartbeat(runner="evil", attempts=[("victim", "slow", 1, token)])
    await client.nc.publish(subjects.heartbeat("evil"), msgspec.json.encode(beat))
    record = await security_log.next(seen, "heartbeat refused")
    assert (record.__dict__["reason"], record.__dict__["runner"]) == (
        "the attempt's runner is alive",
        "evil",
    )

    record = await forge_finished(client, security_log, "evil", token)
    assert record.__dict__["reason"] == "the attempt's runner is alive"

    await assert_victim_failed_for_real(client, "victim", attempt=1)
    events = [e async for e in client.events("victim")]
    assert not [e for e in events if isinstance(e, TaskTakenOver)]
    assert {e.runner for e in events if isinstance(e, TaskStarted)} == {settings.runner_name}


TAKEOVER_ENV = {
    **FAST_FAILOVER,
    "WEIR_RUNNER_NAME": "first",
    "WEIR_HEARTBEAT_INTERVAL": "0.5",
}
"""Dispatches come back 2 s after a runner dies; a runner silent for 1 s may be replaced."""


@pytest.fixture
def stack(tmp_path: Path, database_url: str) -> Iterator[Stack]:
    yield from running_stack(tmp_path, database_url, TAKEOVER_ENV)


@pytest.mark.slow
async def test_runner_killed_mid_attempt_is_taken_over_by_another_runner(
    stack: Stack, tmp_path: Path
) -> None:
    """One attempt allowed: a `lost` attempt would fail the flow. The task outlives its runner
    (its supervisor is in its own session) and the runner that takes over adopts it."""
    trail = tmp_path / "trail.log"
    script = 'echo start >> "$TRAIL"; sleep 6; echo end >> "$TRAIL"'
    spec = {
        "name": "takeover",
        "tasks": [
            shell(
                "slow",
                script,
                env=[{"name": "TRAIL", "value": str(trail)}],
                retry={"max_attempts": 1},
            ),
            task("after", "true", depends=["slow"]),
        ],
    }
    async with await Client.connect(stack.nats_url) as client:
        flow_id = await client.submit(spec)
        first_start = (await until(client, flow_id, lambda e: isinstance(e, TaskStarted)))[-1]
        assert isinstance(first_start, TaskStarted) and first_start.runner == "first"
        await asyncio.to_thread(stack.start_runner, 1)  # "first-1" serves the queue too
        stack.kill_runner()
        final = await asyncio.wait_for(client.wait(flow_id), WAIT)
        events = [e async for e in client.events(flow_id)]

    assert event_type(final) == "flow_succeeded", [event_type(e) for e in events]
    slow = [e for e in events if getattr(e, "task", "") == "slow"]
    assert [event_type(e) for e in slow] == [
        "task_dispatched",
        "task_started",
        "task_taken_over",
        "task_succeeded",
    ]
    taken = next(e for e in slow if isinstance(e, TaskTakenOver))
    assert (taken.attempt, taken.previous_runner, taken.runner) == (1, "first", "first-1")
    assert taken.silent_for >= 1.0
    assert next(e for e in slow if isinstance(e, TaskSucceeded)).attempt == 1
    assert trail.read_text().split() == ["start", "end"], "the task ran twice"
    view_runner = await _runner_of(stack, flow_id)
    assert view_runner == "first-1"


async def _runner_of(stack: Stack, flow_id: str) -> str | None:
    async with await Client.connect(stack.nats_url) as client:
        view = await client.get(flow_id)
    return next(t.runner for t in view.tasks if t.name == "slow")
