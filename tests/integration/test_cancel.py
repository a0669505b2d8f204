"""Cancel ends every flow, from every state its tasks can be in, on real Postgres + NATS.

One runner with concurrency 1 serves `default`; nobody serves `gpu`, which has a global
limit of 1 (WEIR_QUEUE_LIMITS=gpu=1). Deterministic failures fail at once.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from nats.aio.msg import Msg
from weir.client import Client
from weir.config import Settings
from weir.s3_storage import S3Storage
from weir_proto import subjects
from weir_proto.events import event_type
from weir_proto.messages import Heartbeat
from weir_runner import worker as workers
from weir_runner.worker import Runner
from weir_scheduler.service import Scheduler

from tests.conftest import Services, _start
from tests.flows import WAIT, finish, shell, task
from tests.s3 import on_storage, s3_endpoint, storage

__all__ = ["s3_endpoint", "storage"]  # fixtures

LATER = {"max_attempts": 3, "backoff": {"strategy": "constant", "base": 600, "jitter": None}}


@pytest.fixture
async def one_slot(settings: Settings) -> AsyncIterator[Client]:
    """A scheduler with `gpu` limited to 1, and one runner of concurrency 1 on `default`."""
    limited = dataclasses.replace(
        settings, queue_limits={"gpu": 1}, runner_queues=("default",), runner_concurrency=1
    )
    scheduler, runner = Scheduler(limited), Runner(limited)
    started = [await _start("scheduler", scheduler), await _start("runner", runner)]
    try:
        async with await Client.connect(limited.nats_url) as client:
            yield client
    finally:
        runner.stop.set()
        scheduler.stop.set()
        await asyncio.gather(*started)


async def reached(client: Client, flow_id: str, kind: str, task_name: str = "") -> None:
    """Wait for the flow's event `kind` (of `task_name`, when given)."""

    async def follow() -> None:
        async for event in client.events(flow_id, follow=True):
            if event_type(event) == kind and getattr(event, "task", "") == task_name:
                return

    await asyncio.wait_for(follow(), WAIT)


async def cancel(client: Client, flow_id: str) -> dict[str, str]:
    """Cancel; the flow ends `cancelled`; a second cancel says it changed nothing."""
    first = await client.cancel(flow_id, "test")
    assert not first.already
    final = await asyncio.wait_for(client.wait(flow_id), WAIT)
    assert event_type(final) == "flow_cancelled", final
    again = await client.cancel(flow_id, "again")
    assert again.already and again.status == "cancelled"
    view = await client.get(flow_id)
    assert view.status == "cancelled"
    return {t.name: t.status for t in view.tasks}


def spec(name: str, *tasks: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"id": name, "name": name, "tasks": list(tasks), **extra}


async def test_cancel_ends_every_flow_and_frees_the_limited_queue(one_slot: Client) -> None:
    client = one_slot
    # The reported case: a task on a queue nobody serves (holding gpu's only slot), a
    # running one, and one pending behind it.
    first = await client.submit(
        spec(
            "first",
            task("train", "sleep", "5", queue="gpu"),
            task("prep", "sleep", "20"),
            task("after", "true", depends=["prep"]),
        )
    )
    await reached(client, first, "task_started", "prep")
    await reached(client, first, "task_dispatched", "train")
    # Dispatched, but the runner is busy (concurrency 1): nobody has taken it.
    waiting = await client.submit(spec("cx-waiting", task("w", "sleep", "5")))
    await reached(client, waiting, "task_dispatched", "w")
    # Queued: gpu's only slot is held by `train`.
    queued = await client.submit(spec("cx-queued", task("q", "sleep", "5", queue="gpu")))
    await reached(client, queued, "task_queued", "q")

    assert await cancel(client, waiting) == {"w": "cancelled"}
    assert await cancel(client, queued) == {"q": "cancelled"}
    assert await cancel(client, first) == {
        "train": "cancelled",
        "prep": "cancelled",
        "after": "cancelled",
    }

    # gpu's slot is free again: a later flow on it is dispatched, not queued.
    later = await client.submit(spec("cx-later", task("g", "true", queue="gpu")))
    await reached(client, later, "task_dispatched", "g")
    assert await cancel(client, later) == {"g": "cancelled"}


async def test_cancel_ends_retrying_snoozed_and_scheduled_flows(one_slot: Client) -> None:
    client = one_slot
    retrying = await client.submit(spec("cx-retrying", task("r", "false", retry=LATER)))
    await reached(client, retrying, "task_attempt_failed", "r")
    assert await cancel(client, retrying) == {"r": "cancelled"}

    snooze = 'echo 600 > "$WEIR_SNOOZE_FILE"; exit 75'
    snoozed = await client.submit(spec("cx-snoozed", shell("s", snooze)))
    await reached(client, snoozed, "task_snoozed", "s")
    assert await cancel(client, snoozed) == {"s": "cancelled"}

    scheduled = await client.submit(spec("cx-scheduled", task("d", "true"), delay=600))
    await reached(client, scheduled, "flow_submitted")
    assert (await client.get(scheduled)).status == "scheduled"
    assert await cancel(client, scheduled) == {"d": "cancelled"}


async def test_cancel_of_a_flow_that_ended_otherwise_is_refused(one_slot: Client) -> None:
    flow_id, _ = await finish(one_slot, spec("cx-done", task("a", "true")))
    reply = await one_slot.nc.request("weir.api.cancel", b'{"flow_id": "cx-done"}', timeout=10)
    assert b'"conflict"' in reply.data and b"has already ended (succeeded)" in reply.data
    assert flow_id == "cx-done"


async def test_a_cancel_that_ends_a_failed_flow_at_once_is_answered_not_refused(
    one_slot: Client,
) -> None:
    """fail_fast left only the on_exit task, handed out on a queue nobody serves: a user's
    first cancel spares it (it would run last), the second ends it before it started, and
    with it the flow (failed, as a task failed). The answer is the cancel's, not "has
    already ended"."""
    doc = spec(
        "cx-fail-fast",
        task("a", "false", retry={"max_attempts": 1}),
        fail_fast=True,
        on_exit=task("bye", "true", queue="nobody"),
    )
    flow_id = await one_slot.submit(doc)
    await reached(one_slot, flow_id, "task_dispatched", "bye")
    answer = await one_slot.cancel(flow_id, "test")
    assert (answer.status, answer.already) == ("cancelling", False)
    answer = await one_slot.cancel(flow_id, "test again")
    assert (answer.status, answer.already) == ("failed", False)
    final = await asyncio.wait_for(one_slot.wait(flow_id), WAIT)
    assert event_type(final) == "flow_failed", final
    view = await one_slot.get(flow_id)
    assert {t.name: t.status for t in view.tasks} == {"a": "failed", "bye": "cancelled"}


async def test_unknown_secret_fails_after_one_attempt_whatever_max_attempts(
    client: Client,
) -> None:
    quick = {"max_attempts": 3, "backoff": {"strategy": "constant", "base": 0.1, "jitter": None}}
    env = [{"name": "TOKEN", "fromSecret": "no-such-secret"}]
    flow_id, events = await finish(
        client, spec("cx-nosecret", task("use", "true", env=env, retry=quick))
    )
    assert event_type(events[-1]) == "flow_failed"
    (use,) = (await client.get(flow_id)).tasks
    assert use.status == "failed" and use.attempt == 1
    assert use.error_type == "secret"
    assert 'secret "no-such-secret", which does not exist' in (use.error_message or "")
    assert [f.attempt for f in use.failures] == [1]


class Wire:
    """Dispatches as NATS carries them, and the runners' reports, by flow."""

    def __init__(self) -> None:
        self.dispatches: dict[str, tuple[str, bytes]] = {}
        self.reports: dict[str, list[dict[str, Any]]] = {}
        self.reported = asyncio.Event()

    async def listen(self, client: Client) -> None:
        async def on_dispatch(msg: Msg) -> None:
            flow_id = msg.subject.rsplit(".", 1)[-1]
            self.dispatches[flow_id] = (msg.subject, msg.data)

        async def on_report(msg: Msg) -> None:
            report = json.loads(msg.data)
            self.reports.setdefault(report["flow_id"], []).append(report)
            self.reported.set()

        await client.nc.subscribe(f"{subjects.DISPATCH_PREFIX}.>", cb=on_dispatch)
        await client.nc.subscribe(f"{subjects.STATUS_PREFIX}.>", cb=on_report)
        await client.nc.flush()

    async def report(self, flow_id: str) -> dict[str, Any]:
        async with asyncio.timeout(WAIT):
            while not self.reports.get(flow_id):
                self.reported.clear()
                await self.reported.wait()
        return self.reports[flow_id][0]


async def cancelled_while_waiting(
    client: Client, wire: Wire, flow_id: str, mark: Path
) -> tuple[str, bytes]:
    """A flow whose one task (it would create `mark`) was dispatched and cancelled before any
    runner took it: its dispatch, as the wire carried it."""
    await client.submit(spec(flow_id, task("w", "touch", str(mark))))
    await reached(client, flow_id, "task_dispatched", "w")
    assert await cancel(client, flow_id) == {"w": "cancelled"}
    return wire.dispatches[flow_id]


async def assert_dropped_and_reported(client: Client, wire: Wire, flow_id: str, mark: Path) -> None:
    report = await wire.report(flow_id)
    assert (report["type"], report["task"], report["error_type"]) == ("finished", "w", "cancelled")
    assert report["message"].startswith('task "w" not started: flow ')
    assert not mark.exists(), "the task of a cancelled flow ran"
    kinds = [event_type(e) async for e in client.events(flow_id)]
    assert "task_started" not in kinds and kinds[-1] == "flow_cancelled", kinds


async def test_a_dispatch_of_a_cancelled_flow_is_dropped_and_reported_not_run(
    settings: Settings, tmp_path: Path
) -> None:
    """Dispatches of a cancelled flow that reach a runner anyway (the outbox publishing a row
    again after the cancel purged the stream, or a runner that took one and died) are dropped
    and reported: by a runner that saw the cancel, and by one that did not and asks."""
    one = dataclasses.replace(settings, runner_queues=("default",), runner_concurrency=1)
    scheduler, busy = Scheduler(one), Runner(one)
    started = [await _start("scheduler", scheduler), await _start("runner", busy)]
    fresh: Runner | None = None
    try:
        async with await Client.connect(one.nats_url) as client:
            wire = Wire()
            await wire.listen(client)
            blocker = await client.submit(spec("cx-blocker", task("b", "sleep", "30")))
            await reached(client, blocker, "task_started", "b")

            # 1. The busy runner saw the cancel; the dispatch comes again once it is free.
            seen_mark = tmp_path / "seen"
            subject, payload = await cancelled_while_waiting(client, wire, "cx-seen", seen_mark)
            await client.js.publish(subject, payload)
            assert await cancel(client, blocker) == {"b": "cancelled"}
            await assert_dropped_and_reported(client, wire, "cx-seen", seen_mark)

            # 2. A runner started after the cancel gets the dispatch redelivered (its first
            # taker let it go): it asks the scheduler, which says the flow is cancelled.
            blocker = await client.submit(spec("cx-blocker-2", task("b", "sleep", "30")))
            await reached(client, blocker, "task_started", "b")
            asked_mark = tmp_path / "asked"
            subject, payload = await cancelled_while_waiting(client, wire, "cx-asked", asked_mark)
            await client.js.publish(subject, payload)
            taker = await client.js.pull_subscribe_bind(
                workers.consumer_name("default"), subjects.STREAM_DISPATCH
            )
            (taken,) = await taker.fetch(1, timeout=WAIT)
            assert taken.subject == subject and taken.metadata.num_delivered == 1
            await taken.nak()
            fresh = Runner(one)
            started.append(await _start("fresh-runner", fresh))
            await assert_dropped_and_reported(client, wire, "cx-asked", asked_mark)
            assert await cancel(client, blocker) == {"b": "cancelled"}
    finally:
        for runner in (busy, fresh):
            if runner is not None:
                runner.stop.set()
        scheduler.stop.set()
        await asyncio.gather(*started)


def server_process(port: str) -> int:
    """The pid of the process whose command line names `port` (the S3 server of tests.s3)."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"moto.server" in argv and port.encode() in argv:
                return int(entry.name)
    raise AssertionError(f"no S3 server on port {port}")


async def test_cancel_of_an_attempt_picked_up_but_not_started_ends_it_unstarted(
    settings: Settings, storage: S3Storage, tmp_path: Path
) -> None:
    """The runner took the attempt and waits for its input (the S3 server is stopped with
    SIGSTOP, so the download hangs): the cancel ends the flow, and the task never starts."""
    on_s3 = dataclasses.replace(on_storage(settings, storage), heartbeat_interval=0.2)
    running = await Services.start(on_s3)
    s3_server = server_process(storage.endpoint_url.rsplit(":", 1)[-1])
    mark = tmp_path / "ran"
    producing = {
        "id": "cx-input",
        "name": "cx-input",
        "tasks": [
            shell("up", "echo data > out", outputs=[{"name": "o", "path": "out"}]),
            shell(
                "down",
                f'[ -f "{tmp_path}/go" ] && touch "{mark}"',
                depends=["up"],
                inputs=[{"from": "o", "path": "in"}],
            ),
        ],
    }
    try:
        async with await Client.connect(on_s3.nats_url) as client:
            wire = Wire()
            await wire.listen(client)
            taken = asyncio.Event()
            rerun_id: list[str] = []

            async def on_beat(msg: Msg) -> None:
                beat = msgspec.json.decode(msg.data, type=Heartbeat)
                if any(a[0] in rerun_id and a[1] == "down" for a in beat.attempts):
                    taken.set()

            await client.nc.subscribe(f"{subjects.HEARTBEAT_PREFIX}.>", cb=on_beat)
            first, events = await finish(client, producing)
            assert event_type(events[-1]) == "flow_failed"  # `down` found no "go" file
            (tmp_path / "go").touch()
            os.kill(s3_server, signal.SIGSTOP)
            try:
                accepted = await client.rerun(first, failed_only=True)
                rerun_id.append(accepted.flow_id)
                await reached(client, accepted.flow_id, "task_dispatched", "down")
                await asyncio.wait_for(taken.wait(), WAIT)  # picked up: it heartbeats
                assert await cancel(client, accepted.flow_id) == {
                    "up": "succeeded",
                    "down": "cancelled",
                }
            finally:
                os.kill(s3_server, signal.SIGCONT)
            report = await wire.report(accepted.flow_id)
            assert (report["task"], report["error_type"]) == ("down", "cancelled"), report
            kinds = [event_type(e) async for e in client.events(accepted.flow_id)]
            assert "task_started" not in kinds, kinds
            assert not mark.exists(), "the task ran after its flow was cancelled"
    finally:
        await running.stop()
