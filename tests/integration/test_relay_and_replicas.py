"""The outbox relay never skips a row that committed late, and two scheduler replicas on one
database keep every flow consistent."""

from __future__ import annotations

import asyncio

import asyncpg
import nats
from nats.js.api import DeliverPolicy
from weir.client import Client
from weir.config import Settings
from weir_proto.events import event_type
from weir_scheduler.service import Scheduler

from tests.conftest import Services
from tests.flows import diamond, task

WAIT = 60.0


async def _next_subject(sub: nats.js.JetStreamContext.PushSubscription) -> str:
    msg = await sub.next_msg(timeout=WAIT)
    return str(msg.subject)


async def test_row_committed_after_a_later_row_is_still_published(services: Services) -> None:
    nc = await nats.connect(services.settings.nats_url)
    sub = await nc.jetstream().subscribe(
        "weir.events.relay-test.>", ordered_consumer=True, deliver_policy=DeliverPolicy.ALL
    )
    slow = await asyncpg.connect(services.settings.database_url)
    fast = await asyncpg.connect(services.settings.database_url)
    insert = "INSERT INTO outbox (subject, msg_id, payload) VALUES ($1, $2, '{}') RETURNING id"
    try:
        late = slow.transaction()
        await late.start()
        early_id = await slow.fetchval(insert, "weir.events.relay-test.first", "relay-test-1")
        later_id = await fast.fetchval(insert, "weir.events.relay-test.second", "relay-test-2")
        await fast.execute("NOTIFY weir_outbox")
        assert early_id < later_id
        assert await _next_subject(sub) == "weir.events.relay-test.second"
        await late.commit()
        await slow.execute("NOTIFY weir_outbox")
        assert await _next_subject(sub) == "weir.events.relay-test.first"
    finally:
        await slow.close()
        await fast.close()
        await nc.close()


async def test_two_scheduler_replicas_keep_flows_consistent(
    client: Client, settings: Settings, second_scheduler: Scheduler
) -> None:
    specs = [diamond() for _ in range(10)] + [
        {"name": "wide", "tasks": [task(f"t{i}", "true") for i in range(30)]}
    ]
    ids = [await client.submit(spec) for spec in specs]
    finals = await asyncio.wait_for(
        asyncio.gather(*(client.wait(flow_id) for flow_id in ids)), WAIT
    )
    assert {event_type(e) for e in finals} == {"flow_succeeded"}
    conn = await asyncpg.connect(settings.database_url)
    try:
        rows = await conn.fetch(
            "SELECT flow_id, array_agg(seq ORDER BY seq) AS seqs, "
            "count(*) FILTER (WHERE type = 'task_succeeded') AS done "
            "FROM events GROUP BY flow_id"
        )
    finally:
        await conn.close()
    for row in rows:
        assert row["seqs"] == list(range(1, len(row["seqs"]) + 1))
    assert sorted(r["done"] for r in rows) == sorted([4] * 10 + [30])
