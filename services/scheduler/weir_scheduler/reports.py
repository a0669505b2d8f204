"""Reports: runner status (attempt started / finished) becomes task and flow events.

A report the log already reflects, or one for an attempt that is no longer current, decides
nothing, so redelivered and duplicated reports are harmless.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime

from weir_proto.messages import AttemptFinished, AttemptStarted, AttemptStatus

from weir_scheduler.decider import Command, RecordFinished, RecordStarted, decide, evolve
from weir_scheduler.store import Change, ConcurrencyError, EventStore

log = logging.getLogger("weir.scheduler.reports")

APPEND_RETRIES_DEFAULT = 10


class ReportHandler:
    def __init__(self, store: EventStore, clock: Callable[[], datetime]) -> None:
        self.store = store
        self.clock = clock

    async def record(self, reports: Sequence[AttemptStatus]) -> None:
        """Record a batch of reports in one transaction (reloading flows after a race)."""
        for attempt in range(APPEND_RETRIES_DEFAULT):
            try:
                await self._record(reports)
                return
            except ConcurrencyError:
                log.info("flow changed under us; reloading", extra={"try": attempt + 1})
        raise ConcurrencyError("reports could not be recorded after repeated races")

    async def _record(self, reports: Sequence[AttemptStatus]) -> None:
        now = self.clock()
        by_flow: dict[str, list[AttemptStatus]] = {}
        for report in reports:
            by_flow.setdefault(report.flow_id, []).append(report)
        changes = []
        current = await self.store.load_many(list(by_flow))
        for flow_id, flow_reports in by_flow.items():
            before = current[flow_id]
            if not before.exists:
                log.warning("report for unknown flow ignored", extra={"flow_id": flow_id})
                continue
            after = before
            events = []
            for report in flow_reports:
                decided = decide(after, _command(report), now)
                for event in decided:
                    after = evolve(after, event)
                events.extend(decided)
            changes.append(Change(before, after, events))
        await self.store.append(changes)


def _command(report: AttemptStatus) -> Command:
    match report:
        case AttemptStarted():
            return RecordStarted(report)
        case AttemptFinished():
            return RecordFinished(report)
