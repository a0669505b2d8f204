"""Job semantics on real Postgres + NATS: retries with backoff, timeouts, snooze, cancel,
rerun, delayed start, max_parallel and priority, uniqueness, lost attempts."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from typing import Any

import msgspec
from weir.artifacts import ArtifactStore
from weir.client import Client
from weir.config import Settings
from weir_proto.errors import ErrorCode
from weir_proto.events import event_type
from weir_runner.worker import Runner, consumer_name
from weir_scheduler.service import Scheduler

from tests.conftest import _start
from tests.flows import WAIT, ended, finish, lone_task, reached, shell, task, task_views, types
from tests.waiting import eventually, process_gone

QUICK_RETRY = {"max_attempts": 3, "backoff": {"strategy": "constant", "base": 0.1, "jitter": None}}
ONCE = {"max_attempts": 1}


async def api(client: Client, verb: str, body: dict[str, Any]) -> dict[str, Any]:
    reply = await client.nc.request(f"weir.api.{verb}", msgspec.json.encode(body), timeout=10)
    decoded: dict[str, Any] = msgspec.json.decode(reply.data)
    return decoded


async def test_failed_attempts_are_retried_with_backoff_until_success(
    client: Client, tmp_path: Path
) -> None:
    count = tmp_path / "count"
    script = f"n=$(cat {count} 2>/dev/null || echo 0); n=$((n+1)); echo $n > {count}; [ $n -ge 3 ]"
    flow_id, events = await finish(
        client, {"name": "flaky", "tasks": [shell("flaky", script, retry=QUICK_RETRY)]}
    )
    assert types(events)[-1] == "flow_succeeded"
    assert types(events).count("task_attempt_failed") == 2
    assert [e.attempt for e in events if event_type(e) == "task_dispatched"] == [1, 2, 3]  # type: ignore[union-attr]
    failed = [e for e in events if event_type(e) == "task_attempt_failed"]
    for event in failed:
        gap = (event.retry_at - event.at).total_seconds()  # type: ignore[union-attr]
        assert 0.05 < gap < 1.0
    (view,) = (await client.get(flow_id)).tasks
    assert view.status == "succeeded" and view.attempt == 3
    assert [(f.attempt, f.error_type) for f in view.failures] == [
        (1, "exit_code"),
        (2, "exit_code"),
    ]


async def test_last_failed_attempt_fails_the_task_with_every_attempt_recorded(
    client: Client,
) -> None:
    spec = {"name": "doomed", "tasks": [shell("doomed", "exit 7", retry=QUICK_RETRY)]}
    flow_id, events = await finish(client, spec)
    assert types(events).count("task_attempt_failed") == 2
    assert types(events)[-2:] == ["task_failed", "flow_failed"]
    (view,) = (await client.get(flow_id)).tasks
    assert view.status == "failed" and view.attempt == 3 and view.exit_code == 7
    assert [f.attempt for f in view.failures] == [1, 2, 3]


async def test_timeout_kills_the_attempt(client: Client, tmp_path: Path) -> None:
    parent, child = tmp_path / "shell.pid", tmp_path / "child.pid"
    script = f"echo $$ > {parent}; sleep 30 & echo $! > {child}; wait"
    view = await lone_task(client, "slow", shell("slow", script, timeout=1, retry=ONCE))
    assert view.status == "failed" and view.error_type == "timeout"
    assert view.error_message == 'task "slow" exceeded its timeout of 1s'
    # Reported only once the task and what it started are gone: nothing left to wait for.
    pids = {int(parent.read_text()), int(child.read_text())}
    assert all(process_gone(pid) for pid in pids), pids


async def test_snooze_runs_again_later_without_using_an_attempt(
    client: Client, tmp_path: Path
) -> None:
    seen = tmp_path / "seen"
    script = f'if [ ! -e {seen} ]; then touch {seen}; echo 0.2 > "$WEIR_SNOOZE_FILE"; exit 75; fi'
    spec = {"name": "snoozy", "tasks": [shell("snoozy", script, retry=ONCE)]}
    flow_id, events = await finish(client, spec)
    assert types(events)[-1] == "flow_succeeded"
    snoozed = [e for e in events if event_type(e) == "task_snoozed"]
    assert len(snoozed) == 1
    wait = (snoozed[0].until - snoozed[0].at).total_seconds()  # type: ignore[union-attr]
    assert 0.1 < wait < 1.0
    (view,) = (await client.get(flow_id)).tasks
    assert view.attempt == 2 and view.failures == []


async def test_cancel_kills_running_attempts_and_pending_tasks_never_start(
    client: Client, tmp_path: Path
) -> None:
    marker = tmp_path / "after"
    spec = {
        "name": "long",
        "tasks": [
            shell("long", f"sleep 20; touch {marker}"),
            task("after", "touch", str(marker), depends=["long"]),
        ],
    }
    flow_id = await client.submit(spec)
    async for event in client.events(flow_id, follow=True):
        if event_type(event) == "task_started":
            break
    answer = await api(client, "cancel", {"flow_id": flow_id, "reason": "changed my mind"})
    assert answer["result"]["status"] in ("cancelling", "cancelled")
    final = await asyncio.wait_for(client.wait(flow_id), WAIT)
    assert event_type(final) == "flow_cancelled"
    tasks = await task_views(client, flow_id)
    assert tasks["after"].status == "cancelled"
    assert tasks["long"].status == "cancelled"
    assert not marker.exists()
    again = await api(client, "cancel", {"flow_id": flow_id})
    assert again["result"]["status"] == "cancelled"
    missing = await api(client, "cancel", {"flow_id": "nope"})
    assert missing["error"]["code"] == ErrorCode.NOT_FOUND


async def test_rerun_failed_only_reuses_succeeded_tasks_and_their_outputs(
    client: Client, settings: Settings, tmp_path: Path
) -> None:
    trail, fixed = tmp_path / "trail", tmp_path / "fixed"
    spec = {
        "name": "fixable",
        "tasks": [
            shell(
                "make",
                f"echo make >> {trail}; echo payload > out.txt",
                outputs=[{"name": "data", "path": "out.txt"}],
            ),
            shell(
                "use",
                f'echo use >> {trail}; test -e {fixed} && test "$(cat in.txt)" = payload',
                depends=["make"],
                inputs=[{"from": "data", "path": "in.txt"}],
                retry=ONCE,
            ),
        ],
    }
    first, events = await finish(client, spec)
    assert types(events)[-1] == "flow_failed"
    fixed.touch()
    answer = await api(client, "rerun", {"flow_id": first, "failed_only": True})
    second = answer["result"]["flow_id"]
    assert answer["result"]["rerun_of"] == first and second != first
    final = await asyncio.wait_for(client.wait(second), WAIT)
    assert event_type(final) == "flow_succeeded"
    assert trail.read_text().split() == ["make", "use", "use"]
    view = await client.get(second)
    assert view.rerun_of == first
    store = ArtifactStore(client.js, settings.artifacts_bucket)
    assert [a.name for a in await store.list(first)] == ["data"]
    assert await store.list(second) == []  # the input came from the first flow's output
    running = await api(client, "rerun", {"flow_id": "nope"})
    assert running["error"]["code"] == ErrorCode.NOT_FOUND


async def test_delayed_flow_waits_then_runs(client: Client) -> None:
    spec = {"name": "later", "delay": 0.6, "tasks": [task("a", "true")]}
    flow_id = await client.submit(spec)
    view = await eventually(
        lambda: client.get_or_none(flow_id), lambda v: v is not None, "the delayed flow recorded"
    )
    assert view is not None and view.status == "scheduled" and view.start_at is not None
    events = await ended(client, flow_id)
    submitted, dispatched = events[0], events[1]
    assert event_type(dispatched) == "task_dispatched"
    assert (dispatched.at - submitted.at).total_seconds() >= 0.55


async def test_max_parallel_and_priority_order_dispatch(client: Client, tmp_path: Path) -> None:
    trail = tmp_path / "trail"
    script = f'echo "start $WEIR_TASK" >> {trail}; sleep 0.1; echo "end $WEIR_TASK" >> {trail}'
    spec = {
        "name": "narrow",
        "max_parallel": 1,
        "tasks": [
            shell("low", script, priority=9),
            shell("high", script, priority=0),
            shell("mid", script, priority=5),
        ],
    }
    _, events = await finish(client, spec)
    assert types(events)[-1] == "flow_succeeded"
    lines = trail.read_text().splitlines()
    assert lines == [
        "start high",
        "end high",
        "start mid",
        "end mid",
        "start low",
        "end low",
    ]


async def test_unique_key_keeps_one_flow_across_two_scheduler_replicas(
    client: Client, second_scheduler: Scheduler
) -> None:
    spec = {
        "name": "nightly",
        "unique": {"key": "nightly-2026-11-25"},
        "tasks": [task("a", "sleep", "0.5")],
    }
    ids = await asyncio.gather(*(client.submit(dict(spec)) for _ in range(6)))
    finals = await asyncio.wait_for(asyncio.gather(*(client.wait(i) for i in ids)), WAIT)
    kinds = sorted(event_type(e) for e in finals)
    assert kinds == ["flow_deduplicated"] * 5 + ["flow_succeeded"]
    winner = next(i for i, e in zip(ids, finals, strict=True) if event_type(e) == "flow_succeeded")
    for event in finals:
        if event_type(event) == "flow_deduplicated":
            assert event.existing == winner  # type: ignore[union-attr]
    answer = await api(client, "submit", {**spec, "unique": {"key": "nightly-2026-11-25"}})
    assert answer["result"]["created"] is True  # the winner has ended: the key is free again
    assert answer["result"]["flow_id"] != winner


async def test_unique_key_reject_and_replace(client: Client) -> None:
    first = await client.submit(
        {"name": "u", "unique": {"key": "k1"}, "tasks": [task("a", "sleep", "20")]}
    )
    async for event in client.events(first, follow=True):
        if event_type(event) == "task_started":
            break
    rejected = await api(
        client,
        "submit",
        {"name": "u", "unique": {"key": "k1", "on_conflict": "reject"}, "tasks": [task("a")]},
    )
    assert rejected["error"]["code"] == ErrorCode.INVALID_FLOW
    assert f'unique key "k1" is held by flow {first}' in rejected["error"]["message"]
    replaced = await api(
        client,
        "submit",
        {"name": "u", "unique": {"key": "k1", "on_conflict": "replace"}, "tasks": [task("a")]},
    )
    second = replaced["result"]["flow_id"]
    assert event_type(await asyncio.wait_for(client.wait(first), WAIT)) == "flow_cancelled"
    assert event_type(await asyncio.wait_for(client.wait(second), WAIT)) == "flow_succeeded"


async def test_attempt_of_a_vanished_runner_is_declared_lost_and_retried(
    settings: Settings, tmp_path: Path
) -> None:
    quick = dataclasses.replace(
        settings, lease=1.0, heartbeat_interval=0.2, dispatch_ack_wait=30.0, shutdown_grace=0.1
    )
    scheduler = Scheduler(quick)
    scheduler_task = await _start("scheduler", scheduler)
    first = Runner(quick)
    first_task = await _start("runner-1", first)
    trail = tmp_path / "trail"
    try:
        async with await Client.connect(quick.nats_url) as client:
            script = f'echo "$WEIR_ATTEMPT" >> {trail}; [ "$WEIR_ATTEMPT" -ge 2 ] || sleep 30'
            flow_id = await client.submit(
                {"name": "lost", "tasks": [shell("a", script, retry=QUICK_RETRY)]}
            )
            async for event in client.events(flow_id, follow=True):
                if event_type(event) == "task_started":
                    break
            # The runner vanishes from NATS: no more heartbeats, its dispatch is not handed back.
            assert first.nc is not None
            await first.nc.close()
            lost = await reached(client, flow_id, "task_attempt_failed")
            assert lost.error_type == "lost"  # type: ignore[union-attr]
            second = Runner(dataclasses.replace(quick, runner_name="second"))
            second_task = await _start("runner-2", second)
            final = await asyncio.wait_for(client.wait(flow_id), WAIT)
            assert event_type(final) == "flow_succeeded"
            (view,) = (await client.get(flow_id)).tasks
            assert view.attempt == 2
            assert view.failures[0].error_type == "lost"
            assert "stopped sending heartbeats" in view.failures[0].message
            second.stop.set()
            await second_task
    finally:
        first.stop.set()
        scheduler.stop.set()
        await asyncio.gather(first_task, scheduler_task, return_exceptions=True)


async def test_queue_limit_holds_across_flows_and_releases_by_priority(
    settings: Settings, tmp_path: Path
) -> None:
    limited = dataclasses.replace(
        settings, queue_limits={"gpu": 1}, runner_queues=("default", "gpu"), runner_concurrency=4
    )
    scheduler, runner = Scheduler(limited), Runner(limited)
    tasks = [await _start("scheduler", scheduler), await _start("runner", runner)]
    trail = tmp_path / "trail"
    script = (
        f'echo "start $WEIR_FLOW_ID" >> {trail}; sleep 0.3; echo "end $WEIR_FLOW_ID" >> {trail}'
    )
    try:
        async with await Client.connect(limited.nats_url) as client:

            def flow(flow_id: str, priority: int) -> dict[str, Any]:
                return {
                    "id": flow_id,
                    "name": flow_id,
                    "priority": priority,
                    "tasks": [shell("work", script, queue="gpu")],
                }

            first = await client.submit(flow("first", 50))
            async for event in client.events(first, follow=True):
                if event_type(event) == "task_started":
                    break
            low = await client.submit(flow("low", 9))
            high = await client.submit(flow("high", 0))
            for flow_id in (low, high):
                async for event in client.events(flow_id, follow=True):
                    if event_type(event) == "task_queued":
                        break
            assert (await client.get(high)).tasks[0].status == "queued"
            finals = await asyncio.wait_for(
                asyncio.gather(*(client.wait(f) for f in (first, low, high))), WAIT
            )
            assert {event_type(e) for e in finals} == {"flow_succeeded"}
    finally:
        runner.stop.set()
        scheduler.stop.set()
        await asyncio.gather(*tasks)
    lines = trail.read_text().split("\n")
    assert [line for line in lines if line] == [
        "start first",
        "end first",
        "start high",
        "end high",
        "start low",
        "end low",
    ]


async def test_a_runner_of_two_queues_starts_the_second_queues_task_without_waiting_out_the_first(
    settings: Settings,
) -> None:
    """A round of one queue's loop holds the free slots while it waits for dispatches: with
    one slot and two queues, a `gpu` task waited out the idle `default` queue's long poll
    (up to 5 s) before it could start."""
    two = dataclasses.replace(settings, runner_queues=("default", "gpu"), runner_concurrency=1)
    scheduler, runner = Scheduler(two), Runner(two)
    tasks = [await _start("scheduler", scheduler), await _start("runner", runner)]
    try:
        async with await Client.connect(two.nats_url) as client:
            for n in range(3):
                flow_id, events = await finish(
                    client, {"name": f"gpu-{n}", "tasks": [task("train", queue="gpu")]}
                )
                at = {event_type(e): e.at for e in events}
                assert "task_succeeded" in at, types(events)
                waited = (at["task_started"] - at["task_dispatched"]).total_seconds()
                assert waited < 3.0, f"{flow_id}: the gpu task waited {waited:.1f}s to start"
    finally:
        runner.stop.set()
        scheduler.stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)


async def test_an_attempt_longer_than_the_dispatch_ack_wait_is_kept_and_never_redelivered(
    settings: Settings, tmp_path: Path
) -> None:
    short = dataclasses.replace(settings, dispatch_ack_wait=1.0)
    scheduler, runner = Scheduler(short), Runner(short)
    tasks = [await _start("scheduler", scheduler), await _start("runner", runner)]
    trail = tmp_path / "trail"
    try:
        async with await Client.connect(short.nats_url) as client:
            script = f'echo "$WEIR_ATTEMPT" >> {trail}; sleep 2.5'
            flow_id, events = await finish(
                client, {"name": "long", "tasks": [shell("a", script, retry=ONCE)]}
            )
            assert types(events)[-1] == "flow_succeeded", types(events)
            assert trail.read_text().split() == ["1"]
            consumer = await client.js.consumer_info("WEIR_DISPATCH", consumer_name("default"))
            # Told "in progress" every third of the ack wait: JetStream delivered the one
            # dispatch once (a redelivery would take a second consumer sequence number).
            assert consumer.delivered.consumer_seq == 1, flow_id
    finally:
        runner.stop.set()
        scheduler.stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
