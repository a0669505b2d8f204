"""One big flow cannot starve the others on a queue, on a real scheduler and runner.

The attack: a flow of BIG_TASKS independent tasks on `default` (a task is untrusted code, and
so is the size of the flow that carries it), then a small diamond on the same queue. Runners
take dispatches in stream order, so without a per-flow dispatch window every task of the big
flow is ahead of the diamond's root, and each of the diamond's three levels waits behind
whatever the big flow has queued.

With the window (WEIR_FLOW_DISPATCH_WINDOW, W dispatches per flow and queue that no runner
has started yet), each level of the diamond waits behind at most W of the big flow's
dispatches plus its own: the level's tasks start within ceil((W + width) / C) turns of the
runner's C slots. A turn is at most one big task's run plus its start-up and report
(SLOT_SECONDS, generous on a shared machine). So the diamond ends within

    sum over levels of ceil((W + width) / C) * SLOT_SECONDS

while the big flow still needs most of its BIG_TASKS / C turns.

On a queue with a global limit (WEIR_QUEUE_LIMITS=default=C) every ready task is `queued`
and the scheduler releases one flow's next task after the tasks each other flow has in
flight: each level of the diamond waits for at most one turn of the C slots before its own
(plus the release loop's QUEUE_POLL_SECONDS), whatever the big flow has queued.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import time
from collections.abc import AsyncIterator

import pytest
from weir.client import Client
from weir.config import Settings
from weir_proto.events import event_type
from weir_scheduler.queues import QUEUE_POLL_SECONDS

from tests.conftest import Services
from tests.flows import task

pytestmark = pytest.mark.timeout(120)

BIG_TASKS = 200
BIG_TASK_SECONDS = 0.1
SLOTS = 2
"""The runner's concurrency: few slots, so the queue's order decides who waits."""
SLOT_SECONDS = 0.4
"""Longest a runner slot stays busy with one big task (run, start-up, report, handover)."""
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


def diamond_bound(settings: Settings) -> float:
    """Seconds the diamond may take behind the big flow (see the module's docstring)."""
    if settings.queue_limits:
        turns = sum(math.ceil(width / SLOTS) + 1 for width in DIAMOND_LEVELS)
        return turns * SLOT_SECONDS + len(DIAMOND_LEVELS) * QUEUE_POLL_SECONDS
    window = settings.flow_dispatch_window
    turns = sum(math.ceil((window + width) / SLOTS) for width in DIAMOND_LEVELS)
    return turns * SLOT_SECONDS


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

    began = time.monotonic()
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
    waited = time.monotonic() - began

    bound = diamond_bound(settings)
    big_view = await client.get(big)
    big_done = sum(1 for t in big_view.tasks if t.status == "succeeded")
    assert waited < bound, (
        f"the diamond took {waited:.1f}s behind the big flow (bound {bound:.1f}s); "
        f"the big flow had {big_done} of {BIG_TASKS} tasks done"
    )
    # The diamond did not just happen to come after the big flow: most of it is still ahead.
    assert big_done < BIG_TASKS / 2, big_done

    await asyncio.wait_for(succeeded(client, big), 90)
