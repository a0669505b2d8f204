"""TimerFirer: fires due retries, delayed starts, deadlines and heartbeat leases.

Any replica may run one. Due rows are claimed for a moment (`FOR UPDATE SKIP LOCKED`) so
replicas share the work; firing twice is harmless because `decide` ignores a timer whose
moment has passed (the task moved on) and the log's (flow_id, seq) stops double appends.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Protocol

from weir.supervisor import DueWork

from weir_scheduler.commands import FlowCommands
from weir_scheduler.decider import Command, FireTimer, TimerKind
from weir_scheduler.store import EventStore

log = logging.getLogger("weir.scheduler.timers")

TIMER_BATCH_DEFAULT = 500
TIMER_CLAIM_SECONDS = 30.0
TIMER_IDLE_POLL_MAX = 1.0
"""Longest sleep between checks; a new timer made by another replica is seen this late."""
KINDS: tuple[TimerKind, ...] = ("start", "retry", "deadline", "lease", "fanout")


class FanOutReader(Protocol):
    async def command(self, flow_id: str, task: str, phase: int) -> Command | None: ...


@dataclass(eq=False)
class TimerFirer(DueWork):
    """The `timers` service: fires a batch of due timers, then waits until the next is due."""

    name = "timers"
    due_floor = 0.005
    idle_max = TIMER_IDLE_POLL_MAX

    store: EventStore
    commands: FlowCommands
    batch: int = TIMER_BATCH_DEFAULT
    fanout: FanOutReader | None = None
    """Reads and writes the artifacts of mapped tasks (`fanout` timers)."""
    fired: int = field(default=0, init=False)

    async def work_due(self) -> int:
        return await self.fire_due()

    async def next_due_in(self) -> float | None:
        return await self.store.next_timer_in()

    async def fire_due(self) -> int:
        """Claim and fire a batch of due timers; how many were claimed."""
        claimed = await self.store.claim_timers(self.batch, TIMER_CLAIM_SECONDS)
        if not claimed:
            return 0
        commands: list[tuple[str, Command]] = []
        fired = []
        for timer in claimed:
            kind = _kind(timer.kind)
            command: Command | None = FireTimer(kind=kind, task=timer.task, attempt=timer.attempt)
            if kind == "fanout" and self.fanout is not None:
                try:
                    command = await self.fanout.command(timer.flow_id, timer.task, timer.attempt)
                except Exception as exc:  # the store is down: fire again once the claim lapses
                    log.warning(
                        "mapped task's artifacts not reachable",
                        extra={"flow_id": timer.flow_id, "task": timer.task, "error": str(exc)},
                    )
                    continue
            fired.append(timer)
            if command is not None:
                commands.append((timer.flow_id, command))
        await self.commands.apply(commands)
        await self.store.drop_fired_timers(fired)
        self.fired += len(claimed)
        return len(claimed)


def _kind(value: str) -> TimerKind:
    for kind in KINDS:
        if kind == value:
            return kind
    raise ValueError(f"unknown timer kind {value!r}")
