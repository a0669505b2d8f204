"""`weir.jetstream.Puller` against a real nats-server: how the scheduler's intakes and the
runner's queues take messages. A take returns as soon as there is work, never holds more
than it was asked for (what a request left behind brings is given back), makes no request
while NATS is away, and ends when NATS goes."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import nats
import pytest
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, ConsumerInfo, StreamConfig
from nats.js.errors import APIError
from weir.embedded import EmbeddedNats
from weir.jetstream import Puller, pull_consumer

from tests.waiting import until

STREAM = "WORK"
DURABLE = "takers"
IDLE_WAIT = 30.0
"""A take's wait for its first message in tests where one comes long before it."""
ACK_WAIT = 120.0
"""The consumer's ack wait: a message held back would come again only after it."""


@pytest.fixture
async def nc(nats_server: EmbeddedNats) -> AsyncIterator[NATS]:
    nc = await nats.connect(nats_server.url, max_reconnect_attempts=-1, reconnect_time_wait=0.1)
    await nc.jetstream().add_stream(StreamConfig(name=STREAM, subjects=["work.>"]))
    yield nc
    await nc.close()


async def _puller(nc: NATS) -> Puller:
    config = ConsumerConfig(ack_policy=AckPolicy.EXPLICIT, ack_wait=ACK_WAIT)
    return await pull_consumer(nc, "work.>", DURABLE, STREAM, config)


async def _publish(nc: NATS, *bodies: bytes) -> None:
    js = nc.jetstream()
    for body in bodies:
        await js.publish("work.item", body)


async def _consumer(nc: NATS) -> ConsumerInfo:
    info: ConsumerInfo = await nc.jetstream().consumer_info(STREAM, DURABLE)
    return info


async def test_a_take_gets_what_is_pending_up_to_most_and_leaves_no_request_behind(
    nc: NATS,
) -> None:
    puller = await _puller(nc)
    await _publish(nc, *(b"%d" % n for n in range(5)))

    first = await puller.take(3, IDLE_WAIT)

    assert [m.data for m in first] == [b"0", b"1", b"2"]
    info = await _consumer(nc)
    assert info.num_ack_pending == 3, "handed out only what was asked for"
    assert info.num_waiting == 0, "no pull request outlives the take"
    await _publish(nc, b"5")
    rest = await puller.take(10, IDLE_WAIT)
    assert [m.data for m in rest] == [b"3", b"4", b"5"]
    for msg in first + rest:
        await msg.ack()
    await until(lambda: _settled(nc), "every message taken is acknowledged")


async def _settled(nc: NATS) -> bool:
    info = await _consumer(nc)
    return info.num_ack_pending == 0 and info.num_pending == 0


async def test_an_idle_take_returns_the_first_message_as_it_comes_not_at_its_wait(
    nc: NATS,
) -> None:
    puller = await _puller(nc)
    take = asyncio.create_task(puller.take(10, IDLE_WAIT))
    await until(lambda: _waiting(nc, 1), "the take's request waits on the server")

    await _publish(nc, b"now")

    msgs = await asyncio.wait_for(take, IDLE_WAIT / 2)
    assert [m.data for m in msgs] == [b"now"]
    assert msgs[0].metadata.num_delivered == 1


async def _waiting(nc: NATS, requests: int) -> bool:
    return (await _consumer(nc)).num_waiting == requests


async def test_a_take_with_nothing_to_take_ends_empty_after_its_wait(nc: NATS) -> None:
    puller = await _puller(nc)

    assert await puller.take(5, 0.3) == []

    assert (await _consumer(nc)).num_waiting == 0
    await _publish(nc, b"later")
    assert [m.data for m in await puller.take(5, IDLE_WAIT)] == [b"later"]


async def test_a_message_for_a_take_given_up_is_given_back_at_once_not_held(
    nc: NATS,
) -> None:
    """A take cancelled while its request waits on the server (a service stopping its
    loop) leaves the request there: a message it brings afterwards is given back at once,
    not held by a process that did not ask for it until the consumer's ack wait."""
    puller = await _puller(nc)
    await _cancelled_take(nc, puller)

    await _publish(nc, b"orphan")
    await until(lambda: _waiting(nc, 0), "the cancelled take's request brought it")

    again = await _taken_elsewhere(nc)
    assert again.data == b"orphan"
    assert again.metadata.num_delivered == 2, "given back once, handed out again"


async def test_a_request_outliving_its_take_never_makes_a_process_hold_more_than_it_took(
    nc: NATS,
) -> None:
    """The cancelled take's request brings the next message to the next take (the two
    cannot be told apart), and the next take's own request, still waiting, brings one
    more that nobody asked for: that one is given back, not held."""
    puller = await _puller(nc)
    await _cancelled_take(nc, puller)
    take = asyncio.create_task(puller.take(1, IDLE_WAIT))
    await until(lambda: _waiting(nc, 2), "both requests wait on the server")

    await _publish(nc, b"first")
    taken = await asyncio.wait_for(take, IDLE_WAIT / 2)
    await _publish(nc, b"second")
    await until(lambda: _waiting(nc, 0), "the take's own request brought the second")

    assert [m.data for m in taken] == [b"first"]
    again = await _taken_elsewhere(nc)
    assert again.data == b"second"
    assert again.metadata.num_delivered == 2, "given back once, handed out again"


async def _taken_elsewhere(nc: NATS) -> Msg:
    """The next message another process takes from the consumer (nats-py's own fetch),
    long before the ack wait would hand out one held back."""
    other = await nc.jetstream().pull_subscribe_bind(DURABLE, STREAM)
    msgs = await other.fetch(1, timeout=ACK_WAIT / 4)
    await other.unsubscribe()
    return msgs[0]


async def _cancelled_take(nc: NATS, puller: Puller) -> None:
    gone = asyncio.create_task(puller.take(1, IDLE_WAIT))
    await until(lambda: _waiting(nc, 1), "the take's request waits on the server")
    gone.cancel()
    with pytest.raises(asyncio.CancelledError):
        await gone


async def test_takes_while_nats_is_away_end_empty_and_leave_no_requests_for_its_return(
    nc: NATS, nats_server: EmbeddedNats
) -> None:
    """A request made while the client reconnects would wait in nats-py's buffer and reach
    the server later, to take messages for a take that had long ended."""
    puller = await _puller(nc)
    nats_server.stop()
    await until(lambda: not nc.is_connected, "the client saw the server go")
    for _ in range(5):
        assert await puller.take(5, 0.2) == []
    nats_server.start()  # the same port and store: the consumer is still there
    await until(lambda: nc.is_connected, "the client reconnected")
    await nc.flush()

    assert (await _consumer(nc)).num_waiting == 0
    await _publish(nc, b"after")
    msgs = await puller.take(5, IDLE_WAIT)
    assert [m.data for m in msgs] == [b"after"]
    assert msgs[0].metadata.num_delivered == 1


async def test_a_take_across_a_nats_restart_ends_and_the_next_take_gets_work(
    nc: NATS, nats_server: EmbeddedNats
) -> None:
    puller = await _puller(nc)
    take = asyncio.create_task(puller.take(5, 5.0))
    await until(lambda: _waiting(nc, 1), "the take's request waits on the server")

    nats_server.stop()
    assert await take == [], "the request died with the server; the take still ends"
    nats_server.start()  # the same port and store: the consumer is still there
    await until(lambda: nc.is_connected, "the client reconnected")
    await _publish(nc, b"after")

    msgs = await puller.take(5, IDLE_WAIT)
    assert [m.data for m in msgs] == [b"after"]


async def test_a_take_from_a_consumer_that_is_gone_is_refused_at_once(nc: NATS) -> None:
    """No answer to keep asking: the caller's loop backs off instead of spinning."""
    puller = await _puller(nc)
    await nc.jetstream().delete_consumer(STREAM, DURABLE)

    with pytest.raises(APIError):
        await asyncio.wait_for(puller.take(5, IDLE_WAIT), IDLE_WAIT / 2)


async def test_a_stopped_puller_leaves_no_request_to_take_what_comes_next(nc: NATS) -> None:
    """A service stopping cancels its take and stops its puller: the request the take left
    on the server is dropped, so the next message goes to another replica on its first
    delivery, not to a process on its way out."""
    puller = await _puller(nc)
    await _cancelled_take(nc, puller)

    await puller.stop()

    await until(lambda: _waiting(nc, 0), "the server dropped the request nobody listens to")
    await _publish(nc, b"next")
    taken = await _taken_elsewhere(nc)
    assert taken.data == b"next"
    assert taken.metadata.num_delivered == 1


async def test_a_take_the_consumer_does_not_allow_is_refused_not_asked_again_at_once(
    nc: NATS,
) -> None:
    """A pull request longer than the consumer allows is refused (409) every time: the
    take raises, so the caller's loop backs off instead of spinning."""
    await _consumer_by_api(nc, max_expires=int(1e9))
    puller = await _puller(nc)

    with pytest.raises(APIError, match="MaxRequestExpires"):
        await asyncio.wait_for(puller.take(5, IDLE_WAIT), IDLE_WAIT / 2)


async def _consumer_by_api(nc: NATS, **limits: int) -> None:
    """The consumer made with limits nats-py's ConsumerConfig has no field for."""
    config = {"durable_name": DURABLE, "ack_policy": "explicit", **limits}
    made = await nc.request(
        f"$JS.API.CONSUMER.CREATE.{STREAM}.{DURABLE}",
        json.dumps({"stream_name": STREAM, "config": config}).encode(),
    )
    answer = json.loads(made.data)
    assert "error" not in answer, answer
    assert all(answer["config"][name] == value for name, value in limits.items()), answer


async def test_messages_taken_are_returned_when_the_request_for_the_pending_ones_is_refused(
    nc: NATS, caplog: pytest.LogCaptureFixture
) -> None:
    """The consumer allows at most two messages a request: the first is still handed over
    (not left to the ack wait) when the server refuses the request for the other four."""
    await _consumer_by_api(nc, max_batch=2)
    puller = await _puller(nc)
    await _publish(nc, *(b"%d" % n for n in range(5)))

    msgs = await puller.take(5, IDLE_WAIT)

    assert [m.data for m in msgs] == [b"0"]
    assert (await _consumer(nc)).num_ack_pending == 1
    assert any("MaxRequestBatch" in getattr(r, "error", "") for r in caplog.records)
