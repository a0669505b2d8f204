"""`acks_of`: how the relay and `Client.submit_many` wait for a batch of JetStream
acknowledgements. Each outcome in order; a timeout when some do not come; and a waiter
cancelled meanwhile (a stopping scheduler) leaves nothing behind that Python reports as an
error never retrieved, as `wait_for(gather(...))` did."""

from __future__ import annotations

import asyncio
import gc
from typing import Any

import pytest
from nats.js.api import PubAck
from weir.jetstream import acks_of


def _reported(loop: asyncio.AbstractEventLoop) -> list[str]:
    reported: list[str] = []

    def handler(_: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        reported.append(str(context.get("message")))

    loop.set_exception_handler(handler)
    return reported


async def test_each_outcome_comes_in_order_errors_included() -> None:
    loop = asyncio.get_running_loop()
    acks: list[asyncio.Future[PubAck]] = [loop.create_future() for _ in range(3)]
    acks[2].set_result(PubAck(stream="S", seq=3))
    acks[1].set_exception(OSError("refused"))
    acks[0].set_result(PubAck(stream="S", seq=1))
    outcomes = await acks_of(acks, 5)
    assert outcomes[0] == PubAck(stream="S", seq=1) and outcomes[2] == PubAck(stream="S", seq=3)
    assert isinstance(outcomes[1], OSError) and str(outcomes[1]) == "refused"
    assert await acks_of([], 5) == []


async def test_acks_that_do_not_come_are_a_timeout_and_left_to_the_caller() -> None:
    loop = asyncio.get_running_loop()
    acks: list[asyncio.Future[PubAck]] = [loop.create_future() for _ in range(2)]
    acks[0].set_result(PubAck(stream="S", seq=1))
    with pytest.raises(TimeoutError, match="1 of 2 publishes not acknowledged"):
        await acks_of(acks, 0.01)
    assert not acks[1].done(), "the caller decides whether to cancel it"
    acks[1].cancel()


async def test_a_waiter_cancelled_meanwhile_leaves_no_error_never_retrieved() -> None:
    loop = asyncio.get_running_loop()
    reported = _reported(loop)
    try:
        acks: list[asyncio.Future[PubAck]] = [loop.create_future() for _ in range(2)]
        waiting = asyncio.ensure_future(acks_of(acks, 10))
        await asyncio.sleep(0)  # one turn of the loop: the waiter now waits on the acks
        assert not waiting.done()
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        for ack in acks:
            ack.cancel()
        del waiting, acks
        gc.collect()
        await asyncio.sleep(0)
        assert reported == []
    finally:
        loop.set_exception_handler(None)
