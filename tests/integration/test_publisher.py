"""`weir.jetstream.Publisher` against a real nats-server: what the relay, a runner and a
client are told of each message of a batch they publish, and that nothing waits on forever."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator

import nats
import pytest
from nats.aio.client import Client as NATS
from nats.js.api import DiscardPolicy, StreamConfig
from nats.js.errors import APIError, NoStreamResponseError
from weir.embedded import EmbeddedNats
from weir.jetstream import Outgoing, Publisher, Stored


@pytest.fixture
async def nc(nats_server: EmbeddedNats) -> AsyncIterator[NATS]:
    """A connection to a server whose stream KEPT holds `kept.>`."""
    nc = await nats.connect(nats_server.url)
    await nc.jetstream().add_stream(StreamConfig(name="KEPT", subjects=["kept.>"]))
    yield nc
    await nc.close()


async def test_each_message_of_a_batch_is_told_where_it_was_stored_or_why_not(nc: NATS) -> None:
    js = nc.jetstream()
    await js.add_stream(
        StreamConfig(name="FULL", subjects=["full.>"], max_msgs=1, discard=DiscardPolicy.NEW)
    )
    publisher = Publisher(nc)
    outcomes = await publisher.publish(
        [
            ("kept.a", b"1", {"Nats-Msg-Id": "a"}),
            ("nowhere.b", b"2", {}),
            ("full.c", b"3", {}),
            ("full.d", b"4", {}),
            ("kept.a", b"1 again", {"Nats-Msg-Id": "a"}),
            ("kept.e", b"5", {"Nats-Msg-Id": "e"}),
        ],
        5.0,
    )
    assert outcomes[0] == Stored("KEPT", 1)
    assert isinstance(outcomes[1], NoStreamResponseError), "no stream takes the subject"
    assert outcomes[2] == Stored("FULL", 1)
    assert isinstance(outcomes[3], APIError) and "maximum messages" in str(outcomes[3])
    assert outcomes[4] == Stored("KEPT", 1, duplicate=True), "same Nats-Msg-Id: kept once"
    assert outcomes[5] == Stored("KEPT", 2)
    stored = await js.get_msg("KEPT", 2)
    assert stored.data == b"5" and stored.subject == "kept.e"
    one = await publisher.publish_one("kept.f", b"6", {"traceparent": "x"}, 5.0)
    assert one == Stored("KEPT", 3)
    with pytest.raises(NoStreamResponseError):
        await publisher.publish_one("nowhere.g", b"7", {}, 5.0)


async def test_concurrent_batches_share_one_inbox_and_each_gets_its_own_acks(nc: NATS) -> None:
    js = nc.jetstream()
    publisher = Publisher(nc)
    batches: list[list[Outgoing]] = [
        [(f"kept.{b}", f"{b}-{i}".encode(), {}) for i in range(50)] for b in range(4)
    ]
    results = await asyncio.gather(*(publisher.publish(batch, 5.0) for batch in batches))
    seqs = sorted(o.seq for outcomes in results for o in outcomes if isinstance(o, Stored))
    assert seqs == list(range(1, 201)), "every message acknowledged once, none mixed up"
    for b, outcomes in enumerate(results):
        for i, outcome in enumerate(outcomes):
            assert isinstance(outcome, Stored)
            assert (await js.get_msg("KEPT", outcome.seq)).data == f"{b}-{i}".encode()
    ours = [s for s in nc._subs.values() if s.subject.startswith(publisher._inbox)]
    assert len(ours) == 1, "one subscription serves every batch"
    assert publisher._waiting == {}


async def test_an_ack_that_never_comes_is_a_timeout_and_nothing_waits_on(nc: NATS) -> None:
    silent = await nc.subscribe("silent.>")  # takes the message, never answers
    publisher = Publisher(nc)
    with pytest.raises(TimeoutError, match="1 of 2 publishes not acknowledged"):
        await publisher.publish([("kept.a", b"1", {}), ("silent.b", b"2", {})], 0.5)
    assert publisher._waiting == {}, "a publish given up on is forgotten"
    assert (await silent.next_msg(timeout=1.0)).data == b"2"
    with pytest.raises(nats.errors.TimeoutError):
        await publisher.publish_one("silent.c", b"3", {}, 0.2)
    assert (await publisher.publish([("kept.d", b"4", {})], 5.0)) == [Stored("KEPT", 2)]


async def test_a_publisher_cancelled_while_it_waits_leaves_no_error_never_retrieved(
    nc: NATS,
) -> None:
    """A stopping scheduler cancels the relay mid-publish: Python must have nothing to
    report afterwards (as it did of a `wait_for(gather(...))` of nats-py's futures)."""
    loop = asyncio.get_running_loop()
    reported: list[str] = []
    loop.set_exception_handler(lambda _, context: reported.append(str(context.get("message"))))
    try:
        silent = await nc.subscribe("silent.>")  # takes the messages, never answers
        publisher = Publisher(nc)
        waiting = asyncio.ensure_future(
            publisher.publish([("kept.a", b"1", {}), ("silent.b", b"2", {})], 30.0)
        )
        await silent.next_msg(timeout=5.0)  # both are out: the publisher waits for acks
        assert not waiting.done()
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        assert publisher._waiting == {}
        del waiting
        gc.collect()
        await asyncio.sleep(0)
        assert reported == []
        assert (await publisher.publish([("kept.c", b"3", {})], 5.0)) == [Stored("KEPT", 2)]
    finally:
        loop.set_exception_handler(None)


async def test_sent_messages_are_acknowledged_later_or_forgotten(nc: NATS) -> None:
    """`send` returns once the messages are out (the relay's fast path sends a commit's
    dispatches before its caller goes on); their acks are waited for afterwards, or given
    up on at a deadline already past, or forgotten."""
    silent = await nc.subscribe("silent.>")
    publisher = Publisher(nc)
    sent = await publisher.send([("kept.a", b"1", {}), ("kept.b", b"2", {})])
    assert len(publisher._waiting) == 2
    assert await sent.acks(5.0) == [Stored("KEPT", 1), Stored("KEPT", 2)]
    assert publisher._waiting == {}

    forgotten = await publisher.send([("silent.c", b"3", {})])
    with pytest.raises(TimeoutError, match="1 of 1 publishes not acknowledged"):
        await forgotten.acks(0.0)
    assert publisher._waiting == {}
    assert (await silent.next_msg(timeout=1.0)).data == b"3"
    dropped = await publisher.send([("kept.d", b"4", {})])
    dropped.forget()
    assert publisher._waiting == {}
    assert (await publisher.publish([("kept.e", b"5", {})], 5.0)) == [Stored("KEPT", 4)]
