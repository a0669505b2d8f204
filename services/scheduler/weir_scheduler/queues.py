"""QueueDispatcher: global concurrency limits per queue, filled in priority order.

For a queue listed in WEIR_QUEUE_LIMITS (`gpu=4,default=200`), `decide` never dispatches
directly: ready tasks become `queued`. This loop counts the queue's attempts in flight
(dispatched or running, across every runner) and releases the highest-priority queued tasks
(0 first, then oldest flow, then the order in the flow) while there is room. A transaction
holding the queue's advisory lock covers count, choice and append, so replicas never
over-fill a queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping

from weir_scheduler.commands import FlowCommands
from weir_scheduler.data import Lock
from weir_scheduler.decider import Release
from weir_scheduler.store import Change, ConcurrencyError, EventStore

log = logging.getLogger("weir.scheduler.queues")

QUEUE_POLL_SECONDS = 0.1
"""How often a limited queue is checked for freed capacity."""


class QueueDispatcher:
    """The `queues` service."""

    name = "queues"

    def __init__(
        self, store: EventStore, commands: FlowCommands, limits: Mapping[str, int]
    ) -> None:
        self.store = store
        self.commands = commands
        self.limits = dict(limits)
        self.released = 0

    async def run_once(self) -> None:
        """One round of the supervised `queues` loop: fill every limited queue, then wait
        QUEUE_POLL_SECONDS. Errors (but a race, which the next round sees) are the
        supervisor's."""
        for queue, limit in self.limits.items():
            with contextlib.suppress(ConcurrencyError):  # a flow moved on meanwhile
                await self.fill(queue, limit)
        await asyncio.sleep(QUEUE_POLL_SECONDS)

    async def fill(self, queue: str, limit: int) -> int:
        """Release queued tasks of `queue` while it has room; returns how many."""
        changes: list[Change] = []
        async with self.store.transaction() as tx:
            await tx.lock(Lock.QUEUE, queue)
            room = limit - await tx.queue_in_flight(queue)
            if room <= 0:
                return 0
            ready = await tx.queue_next(queue, room)
            if not ready:
                return 0
            commands = [(flow_id, Release(task)) for flow_id, task in ready]
            _, changes = await self.commands.apply_in(tx, commands)
        await self.store.committed(changes)
        self.released += len(ready)
        return len(ready)
