"""One big flow cannot starve the others on a queue, on a real scheduler and runner.

The attack: a flow of BIG_TASKS independent tasks on `default` (a task is untrusted code, and
so is the size of the flow that carries it), then a small diamond on the same queue. Runners
take dispatches in stream order, so without a per-flow dispatch window every task of the big
flow is ahead of the diamond's root, and each of the diamond's three levels waits behind
whatever the big flow has queued.

With the window (WEIR_FLOW_DISPATCH_WINDOW, W dispatches per flow and queue that no runner
has started yet), each level of the diamond waits behind at most W of the big flow's
dispatches, and while it runs the runner's other slots take a few more: a level lets at most
W + width + 2 * C big tasks start before it is done (C, the runner's slots). On a queue with a
global limit (WEIR_QUEUE_LIMITS=default=C) every ready task is `queued` and the scheduler
releases one flow's next task after the tasks each other flow has in flight: a level lets at
most (ceil(width / C) + 2) * C big tasks start. Without either, every task of the big flow
goes first.

The bound is counted in the big flow's task starts between the diamond's submit and its end
(the event log's times), not in seconds: it holds however loaded the machine is.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
from collections.abc import AsyncIterator

import pytest
from weir.client import Client
from weir.config import Settings
from weir_proto.events import TaskStarted, event_type

from tests.conftest import Services
from tests.flows import task

pytestmark = pytest.mark.timeout(120)

BIG_TASKS = 200
BIG_TASK_SECONDS = 0.1
SLOTS = 2
"""The runner's concurrency: few slots, so the queue's order decides who waits."""
DIAMOND_LEVELS = (1, 2, 1)
"""Widths of the diamond's levels: root; left and right; join."""


@pytest.fixture(params=["window", "limited queue"])
async def two_slots(
    settings: Settings, request: pytest.FixtureRequest
) -> AsyncIterator[tuple[Client, Settings]]:
    limits = {"default": SLOTS} if request.param == "limited queue" else {}
    few = dataclasses.replace(
        settings, runner_concurrency=SLOTS, runner_queues=("default",), queue_limits=limits
    )
    services = await Services.start(few)
    try:
        async with await Client.connect(few.nats_url) as client:
            yield client, few
    finally:
        await services.stop()


def diamond_bound(settings: Settings) -> int:
    """Big tasks that may start while the diamond runs (see the module's docstring)."""
    if settings.queue_limits:
        return sum((math.ceil(width / SLOTS) + 2) * SLOTS for width in DIAMOND_LEVELS)
    window = settings.flow_dispatch_window
    return sum(window + width + 2 * SLOTS for width in DIAMOND_LEVELS)


async def started(client: Client, flow_id: str) -> None:
    async for event in client.events(flow_id, follow=True):
        if event_type(event) == "task_started":
            return


async def succeeded(client: Client, flow_id: str) -> None:
    final = await client.wait(flow_id)
    assert event_type(final) == "flow_succeeded", final


async def test_a_small_flow_is_not_starved_by_a_big_one(two_slots: tuple[Client, Settings]) -> None:
    client, settings = two_slots
    big = await client.submit(
        {
            "name": "flood",
            "tasks": [task(f"t{i}", "sleep", str(BIG_TASK_SECONDS)) for i in range(BIG_TASKS)],
        }
    )
    await asyncio.wait_for(started(client, big), 30)

    diamond = await client.submit(
        {
            "name": "diamond",
            "tasks": [
                task("root", "true"),
                task("left", "true", depends=["root"]),
                task("right", "true", depends=["root"]),
                task("join", "true", depends=["left", "right"]),
            ],
        }
    )
    await asyncio.wait_for(succeeded(client, diamond), 60)
    await client.cancel(big)  # its log is read once it has ended
    await asyncio.wait_for(client.wait(big), 60)

    ran = [e async for e in client.events(diamond)]
    began, ended = ran[0].at, ran[-1].at
    starts = [e.at async for e in client.events(big) if isinstance(e, TaskStarted)]
    ahead = sum(began < at < ended for at in starts)
    bound = diamond_bound(settings)
    assert ahead <= bound, (
        f"{ahead} of the big flow's tasks started while the diamond ran (bound {bound}); "
        f"{len(starts)} of {BIG_TASKS} had started by the end"
    )
    # The diamond did not just happen to come after the big flow: most of it was still ahead.
    assert sum(at < ended for at in starts) < BIG_TASKS / 2, len(starts)
