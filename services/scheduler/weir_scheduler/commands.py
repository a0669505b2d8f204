"""Commands on existing flows: runner reports, fired timers, cancels.

Each batch loads the flows it touches (caught up with the log), folds every command through
`decide`, and appends the result in one transaction; after a race with another replica it
reloads and decides again. A command the log already reflects decides nothing, so
redelivered reports and double-fired timers are harmless. A report that does not prove it
comes from the holder of its attempt (provenance.py) is refused: it decides nothing either,
unless it is a takeover (its sender holds the attempt's token and the attempt's runner has
gone silent): then the change of runner is recorded first and the report counts.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from weir_proto.messages import AttemptFinished, AttemptStarted, AttemptStatus

from weir_scheduler.data import DataLayer
from weir_scheduler.decider import (
    DEFAULT_POLICY,
    Command,
    FoldedFlow,
    Policy,
    RecordFinished,
    RecordStarted,
    TakeOver,
    decide_and_evolve,
)
from weir_scheduler.provenance import (
    TAKEN,
    Refusal,
    log_refused_heartbeat,
    log_refused_report,
    report_refusal,
    takeover_refusal,
)
from weir_scheduler.store import Change, ConcurrencyError, EventStore

log = logging.getLogger("weir.scheduler.commands")

APPEND_RETRIES = 10
"""Tries to record a batch that lost a race with another writer of the same flow (each try
reloads the flow): the commands here and the submits in `submissions`."""


@dataclass(eq=False)
class FlowCommands:
    store: EventStore
    clock: Callable[[], datetime]
    policy: Policy = DEFAULT_POLICY
    takeover_after: float | None = None
    """Seconds of silence of an attempt's runner after which another runner holding its
        dispatch may take it over (provenance.takeover_after); None: never."""

    async def apply(self, commands: Sequence[tuple[str, Command]]) -> dict[str, FoldedFlow]:
        """Decide and record a batch; returns each touched flow as it is afterwards."""
        return (await self.apply_and_tell(commands))[0]

    async def apply_and_tell(
        self, commands: Sequence[tuple[str, Command]]
    ) -> tuple[dict[str, FoldedFlow], list[Change]]:
        """`apply`, also telling what each flow's commands changed. The first try decides on
        cached flows without asking the log (see `EventStore.load_optimistic`); a race or a
        command such a flow decided nothing for sends it to the log."""
        optimistic = True
        for attempt in range(APPEND_RETRIES):
            try:
                applied = await self._apply(commands, optimistic=optimistic)
            except ConcurrencyError:
                if not optimistic:
                    log.info("flow changed under us; reloading", extra={"try": attempt + 1})
            else:
                if applied is not None:
                    return applied
            optimistic = False
        raise ConcurrencyError("commands could not be recorded after repeated races")

    async def apply_in(
        self, tx: DataLayer, commands: Sequence[tuple[str, Command]]
    ) -> tuple[dict[str, FoldedFlow], list[Change]]:
        """`apply` inside the caller's transaction: no retry (a race raises
        ConcurrencyError), and the caller tells `store.committed(changes)` after commit."""
        applied = await self._apply(commands, tx)
        assert applied is not None, "decided on the log, so never unsure"
        return applied

    async def take_over(self, claims: Sequence[tuple[str, str, int, str]]) -> None:
        """Heartbeats of runners that hold attempts' tokens under another runner's name:
        (flow_id, task, attempt, runner). Each becomes a takeover when the attempt's runner
        has gone silent, and is refused (logged) otherwise."""
        commands: list[tuple[str, Command]] = []
        for flow_id, task, attempt, runner in claims:
            takeover, refusal = await self._takeover(flow_id, task, attempt, runner)
            if takeover is not None:
                commands.append((flow_id, takeover))
            elif refusal is not None:
                log_refused_heartbeat(runner, flow_id, task, attempt, refusal)
        if commands:
            await self.apply(commands)

    async def _takeover(
        self, flow_id: str, task: str, attempt: int, runner: str
    ) -> tuple[TakeOver | None, Refusal | None]:
        """The takeover of an attempt by `runner`, proven to hold its token, or why not."""
        if self.takeover_after is None:
            return None, TAKEN
        silent_for = await self.store.attempt_silence(flow_id, task, attempt)
        refusal = takeover_refusal(silent_for, self.takeover_after)
        if refusal is not None or silent_for is None:
            return None, refusal
        return TakeOver(task, attempt, runner, round(silent_for, 3)), None

    async def _apply(
        self,
        commands: Sequence[tuple[str, Command]],
        tx: DataLayer | None = None,
        optimistic: bool = False,
    ) -> tuple[dict[str, FoldedFlow], list[Change]] | None:
        """Decide and record `commands`. None (`optimistic` only): a flow taken from the
        cache decided nothing for a command, or refused it; the log may know more (another
        replica's events), so the caller decides the batch again on it."""
        now = self.clock()
        by_flow: dict[str, list[Command]] = {}
        for flow_id, command in commands:
            by_flow.setdefault(flow_id, []).append(command)
        unverified: set[str] = set()
        if optimistic:
            current, unverified = await self.store.load_optimistic(list(by_flow))
        else:
            current = await self.store.load_many(list(by_flow))
        changes = []
        for flow_id, flow_commands in by_flow.items():
            before = current[flow_id]
            if not before.exists:
                log.warning("command for unknown flow ignored", extra={"flow_id": flow_id})
                continue
            after = before
            events = []
            for command in flow_commands:
                if isinstance(command, RecordStarted | RecordFinished):
                    report = command.report
                    refusal = report_refusal(after, report)
                    if refusal == TAKEN:
                        takeover, refusal = await self._takeover(
                            flow_id, report.task, report.attempt, report.runner
                        )
                        if takeover is not None:
                            decided, after = decide_and_evolve(after, takeover, now, self.policy)
                            events.extend(decided)
                            refusal = report_refusal(after, report)
                    if refusal is not None:
                        if flow_id in unverified:
                            return None
                        log_refused_report(report, refusal)
                        continue
                decided, after = decide_and_evolve(after, command, now, self.policy)
                if not decided and flow_id in unverified:
                    return None
                events.extend(decided)
            changes.append(Change(before, after, events))
            current[flow_id] = after
        await self.store.append(changes, tx=tx)
        return current, changes


def report_command(report: AttemptStatus) -> Command:
    match report:
        case AttemptStarted():
            return RecordStarted(report)
        case AttemptFinished():
            return RecordFinished(report)
