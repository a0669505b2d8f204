"""The outbox relay never skips a row that committed late, publishes each dispatch once
whichever step a crash interrupts, and two scheduler replicas on one database keep every flow
consistent."""

from __future__ import annotations

import asyncio

import nats
from nats.js.api import DeliverPolicy
from weir.client import Client
from weir.config import Settings
from weir.jetstream import Publisher, ensure_streams
from weir_proto import subjects
from weir_proto.events import event_type
from weir_scheduler.data import OutboxRow
from weir_scheduler.data.postgres import PostgresData
from weir_scheduler.relay import OutboxRelay
from weir_scheduler.service import Scheduler

from tests.conftest import Services
from tests.flows import diamond, task
from tests.inspection import Inspection, inspecting

WAIT = 60.0


async def _next_subject(sub: nats.js.JetStreamContext.PushSubscription) -> str:
    msg = await sub.next_msg(timeout=WAIT)
    return str(msg.subject)


async def test_row_committed_after_a_later_row_is_still_published(services: Services) -> None:
    nc = await nats.connect(services.settings.nats_url)
    sub = await nc.jetstream().subscribe(
        "weir.events.relay-test.>", ordered_consumer=True, deliver_policy=DeliverPolicy.ALL
    )
    url = services.settings.database_url
    try:
        async with inspecting(url) as slow, inspecting(url) as fast:
            late = slow.transaction()
            await late.start()
            early_id = await slow.outbox_insert("weir.events.relay-test.first", "relay-test-1")
            later_id = await fast.outbox_insert("weir.events.relay-test.second", "relay-test-2")
            await fast.outbox_notify()
            assert early_id < later_id
            assert await _next_subject(sub) == "weir.events.relay-test.second"
            await late.commit()
            await slow.outbox_notify()
            assert await _next_subject(sub) == "weir.events.relay-test.first"
    finally:
        await nc.close()


async def test_a_crash_at_any_step_of_a_dispatch_publishes_it_exactly_once(
    settings: Settings,
) -> None:
    """The fast path publishes a dispatch, then deletes its row; the leading relay leaves
    dispatches younger than FAST_PATH_GRACE to it. A crash after the commit (never published),
    after the send (its ack never waited for) or after the publish (never deleted) leaves the
    row to the relay once it is old: one message on the stream each time, none lost, none
    twice."""
    stop = asyncio.Event()
    data = await PostgresData.open(settings.database_url, stop)
    assert data is not None
    await data.migrate()
    nc = await nats.connect(settings.nats_url)
    js = nc.jetstream()
    await ensure_streams(js)
    relay = OutboxRelay(data, js, Publisher(nc), idle_poll=0.01)
    raw = await Inspection.connect(settings.database_url)

    async def committed(flow_id: str) -> OutboxRow:
        subject, msg_id = subjects.dispatch("default", flow_id), f"{flow_id}.2"
        return OutboxRow(await raw.outbox_insert(subject, msg_id), subject, msg_id, b"{}")

    async def age(row: OutboxRow) -> None:
        await raw.outbox_age(row.id)

    async def on_stream() -> int:
        return int((await js.stream_info(subjects.STREAM_DISPATCH)).state.messages)

    async def in_outbox() -> int:
        return await raw.outbox_count()

    try:
        # Crash after the commit, before the fast path published: the relay leaves the row
        # while it is young (the fast path may still publish it), then publishes it.
        lost = await committed("crash-before-publish")
        await relay.run_once()
        assert (await on_stream(), await in_outbox()) == (0, 1)
        await age(lost)
        await relay.run_once()
        assert (await on_stream(), await in_outbox()) == (1, 0)

        # Crash after the fast path published, before it deleted: the relay publishes the
        # row again once it is old and JetStream drops the copy (same Nats-Msg-Id).
        kept = await committed("crash-before-delete")
        assert await relay._publish([kept])
        await relay.run_once()
        assert (await on_stream(), await in_outbox()) == (2, 1)
        await age(kept)
        await relay.run_once()
        assert (await on_stream(), await in_outbox()) == (2, 0)

        # Crash after the commit's fast path sent the dispatch, before its loop waited for
        # the ack and deleted the row: the same, one message on the stream.
        sent = await committed("crash-before-ack")
        await relay.publish_committed([sent])
        await relay.run_once()
        assert (await on_stream(), await in_outbox()) == (3, 1)
        await age(sent)
        await relay.run_once()
        assert (await on_stream(), await in_outbox()) == (3, 0)
        await relay.close()  # the scheduler died with its fast path; another one leads
        relay = OutboxRelay(data, js, Publisher(nc), idle_poll=0.01)

        # No crash: the fast path publishes and deletes; the relay has nothing left to do.
        await relay.publish_committed([await committed("no-crash")])
        await relay.fast_path_once()
        assert (await on_stream(), await in_outbox()) == (4, 0)
        published = relay.published
        await relay.run_once()
        assert relay.published == published
    finally:
        await relay.close()
        await raw.close()
        await nc.close()
        await data.close()


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
    async with inspecting(settings.database_url) as db:
        rows = await db.event_seqs_by_flow()
    for row in rows:
        assert row.seqs == list(range(1, len(row.seqs) + 1))
    assert sorted(r.succeeded for r in rows) == sorted([4] * 10 + [30])
