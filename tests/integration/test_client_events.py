"""`Client.wait` and `Client.events(follow=True)` over a flow that a retry reopened: the
retry is answered once it is recorded, and its events reach the flow's stream a moment
later, so a wait begun at once finds the old end last. Events are published by hand here to
hold the stream in exactly that moment."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import msgspec
from weir.client import Client
from weir.embedded import EmbeddedNats
from weir.jetstream import ensure_streams
from weir_proto import subjects
from weir_proto.events import FlowEvent, FlowFailed, FlowSucceeded, TaskRetried, event_type

FLOW = "reopened"
WAIT = 30.0


async def _publish(client: Client, event: FlowEvent) -> None:
    await client.js.publish(subjects.flow_events(FLOW), msgspec.json.encode(event))


def _at() -> datetime:
    return datetime.now(UTC)


async def test_a_wait_since_a_retry_answer_waits_for_the_end_after_it(
    nats_server: EmbeddedNats,
) -> None:
    client = await Client.connect(nats_server.url)
    try:
        await ensure_streams(client.js)
        await _publish(
            client, FlowFailed(id="e1", seq=1, failed_tasks=["load"], flow_id=FLOW, at=_at())
        )
        # The retry was recorded as seq 2 (its answer's `seq`) but is not on the stream yet.
        old_end = await asyncio.wait_for(client.wait(FLOW), WAIT)
        assert (event_type(old_end), old_end.seq) == ("flow_failed", 1), (
            "without since: the old end"
        )
        waiting = asyncio.ensure_future(client.wait(FLOW, since=2))
        following = asyncio.ensure_future(_followed(client, since=2))

        await _publish(
            client, TaskRetried(id="e2", seq=2, task="load", tasks=["load"], flow_id=FLOW, at=_at())
        )
        await _publish(client, FlowSucceeded(id="e3", seq=3, flow_id=FLOW, at=_at()))
        final = await asyncio.wait_for(waiting, WAIT)
        assert (event_type(final), final.seq) == ("flow_succeeded", 3)
        kinds = await asyncio.wait_for(following, WAIT)
        assert kinds == ["flow_failed", "task_retried", "flow_succeeded"]
    finally:
        await client.close()


async def _followed(client: Client, since: int) -> list[str]:
    return [event_type(e) async for e in client.events(FLOW, follow=True, since=since)]
