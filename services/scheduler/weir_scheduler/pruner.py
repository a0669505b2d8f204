"""Pruner: deletes ended flows older than WEIR_PRUNE_AFTER, every WEIR_PRUNE_INTERVAL.

Works in bounded batches, each its own short transaction (see EventStore.prune), so it never
holds locks that live traffic waits on. Several replicas pruning at once only share the work.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta

from weir_proto.status import TERMINAL_FLOW_STATUSES

from weir_scheduler.store import EventStore

log = logging.getLogger("weir.scheduler.pruner")

PRUNE_BATCH_DEFAULT = 500


class Pruner:
    """The `pruner` service."""

    name = "pruner"

    def __init__(
        self, store: EventStore, after: float, interval: float, batch: int = PRUNE_BATCH_DEFAULT
    ) -> None:
        if after <= 0 or interval <= 0 or batch < 1:
            raise ValueError("pruner needs positive after, interval and batch")
        self.store = store
        self.after = after
        self.interval = interval
        self.batch = batch

    async def run_once(self) -> None:
        """One round of the supervised `pruner` loop: prune, then wait `interval`. A prune
        that fails is the supervisor's to log and retry (with back-off, not an hour later)."""
        older_than = datetime.now(UTC) - timedelta(seconds=self.after)
        statuses = sorted(str(s) for s in TERMINAL_FLOW_STATUSES)
        pruned = await self.store.prune(statuses, older_than, 0, self.batch)
        if pruned:
            log.info("pruned ended flows", extra={"flows": pruned})
        await asyncio.sleep(self.interval)
