"""Two scheduler replicas recording reports of the same flows at once must still put each
flow's events on the stream in seq order (docs/contract.md: "A flow's events reach the stream
in seq order")."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from functools import partial

import asyncpg
import pytest
from weir.client import Client
from weir.config import Settings
from weir_runner.worker import Runner
from weir_scheduler.service import Scheduler

from tests.chaos.checker import read_stream_events
from tests.conftest import _start
from tests.waiting import outbox_drained, until

pytestmark = pytest.mark.slow

FLOWS = 8
WIDTH = 24


async def test_two_schedulers_publish_each_flows_events_in_seq_order(settings: Settings) -> None:
    replicas = [Scheduler(settings), Scheduler(settings)]
    tasks = [await _start(f"scheduler-{n}", s) for n, s in enumerate(replicas)]
    runner = Runner(settings)
    tasks.append(await _start("runner", runner))
    try:
        async with await Client.connect(settings.nats_url) as client:
            ids = []
            for n in range(FLOWS):
                fan = [{"name": f"w{i}", "cmd": ["true"]} for i in range(WIDTH)]
                ids.append(await client.submit({"id": f"order-{n}", "name": "fan", "tasks": fan}))
            await asyncio.wait_for(asyncio.gather(*(client.wait(f) for f in ids)), 60)
        # Every recorded event on the stream, not only each flow's last one.
        await until(partial(outbox_drained, settings.database_url), "the relay published all")
    finally:
        runner.stop.set()
        for replica in replicas:
            replica.stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 30)
    conn = await asyncpg.connect(settings.database_url)
    try:
        rows = await conn.fetch("SELECT id, flow_id FROM events ORDER BY flow_id, seq")
    finally:
        await conn.close()
    log_order: dict[str, list[str]] = defaultdict(list)
    for row in rows:
        log_order[row["flow_id"]].append(row["id"])
    stream_order: dict[str, list[str]] = defaultdict(list)
    for event in await read_stream_events(settings.nats_url):
        stream_order[event.flow_id].append(event.id)
    wrong = {f for f in log_order if log_order[f] != stream_order[f]}
    assert not wrong, {f: stream_order[f] for f in sorted(wrong)[:2]}
