"""The runner's deferred `started` report: held for `WEIR_STARTED_DELAY`, sent for an
attempt still running then, never sent for one that ended sooner."""

from __future__ import annotations

import asyncio
from datetime import datetime

from weir_runner.started import DeferredStart


class Sent:
    def __init__(self) -> None:
        self.starts: list[datetime] = []
        self.sent = asyncio.Event()

    async def publish(self, at: datetime) -> None:
        self.starts.append(at)
        self.sent.set()


async def test_an_attempt_that_ends_within_the_delay_sends_no_started_report() -> None:
    sent = Sent()
    start = DeferredStart(sent.publish, delay=30.0)
    await start.started()
    began = await start.settle()
    await asyncio.sleep(0)
    assert began is not None and sent.starts == []


async def test_an_attempt_still_running_after_the_delay_reports_its_start_once() -> None:
    sent = Sent()
    start = DeferredStart(sent.publish, delay=0.01)
    await start.started()
    await start.started()  # an executor that saw the start twice
    await asyncio.wait_for(sent.sent.wait(), 5)
    assert await start.settle() == sent.starts[0]
    assert len(sent.starts) == 1


async def test_no_delay_reports_the_start_at_once() -> None:
    sent = Sent()
    start = DeferredStart(sent.publish, delay=0)
    await start.started()
    assert len(sent.starts) == 1 and await start.settle() == sent.starts[0]


async def test_an_attempt_that_never_started_has_no_start() -> None:
    assert await DeferredStart(Sent().publish).settle() is None
