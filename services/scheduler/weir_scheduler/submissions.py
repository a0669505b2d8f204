"""Submissions: every submit becomes a flow or a visible rejection, exactly once.

Used by the durable `weir.cmd.submit` consumer and by the `weir.api.submit` endpoint.
A resubmit of the same spec under the same id is a no-op that names the existing flow;
a different spec under an id already taken is rejected under the message's own id.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import msgspec
from weir_proto.errors import SpecError
from weir_proto.ids import is_dns_label, new_flow_id
from weir_proto.spec import Unique
from weir_proto.status import FlowStatus

from weir_scheduler.commands import APPEND_RETRIES
from weir_scheduler.data import DataLayer, Lock
from weir_scheduler.decider import (
    DEFAULT_POLICY,
    Cancel,
    Command,
    Deduplicate,
    FoldedFlow,
    Policy,
    Reject,
    Submit,
    decide_and_evolve,
)
from weir_scheduler.planner import Limits, Rejected, decode, plan
from weir_scheduler.store import Change, ConcurrencyError, EventStore, spec_digest

log = logging.getLogger("weir.scheduler.submissions")

UNIQUE_STATUSES_DEFAULT = (
    FlowStatus.SCHEDULED,
    FlowStatus.PENDING,
    FlowStatus.RUNNING,
    FlowStatus.PAUSED,
    FlowStatus.CANCELLING,
)
"""By default a unique key is held while a flow is waiting or running."""


@dataclass(frozen=True, slots=True)
class Submission:
    data: bytes
    fallback: str | Callable[[], str]
    """The flow id to use when the spec has none (or a rejection cannot use the spec's), or
    how to make it: most specs name their id, so a submit pulled from the stream derives
    its fallback from the message only when it is needed."""

    @property
    def fallback_id(self) -> str:
        return self.fallback if isinstance(self.fallback, str) else self.fallback()


@dataclass(frozen=True, slots=True)
class Outcome:
    flow_id: str
    status: FlowStatus
    created: bool
    errors: tuple[SpecError, ...] = ()
    existing: str | None = None
    """The flow that holds the unique key, when this submit ran into it."""


@dataclass(frozen=True, slots=True)
class _Intent:
    flow_id: str
    command: Command
    digest: str | None


class SubmissionHandler:
    def __init__(
        self,
        store: EventStore,
        limits: Limits,
        clock: Callable[[], datetime],
        policy: Policy = DEFAULT_POLICY,
    ) -> None:
        self.store = store
        self.limits = limits
        self.clock = clock
        self.policy = policy

    async def submit_many(self, submissions: Sequence[Submission]) -> list[Outcome]:
        """Record a batch in one transaction; falls back to one at a time on a race."""
        intents = [self._intent(s) for s in submissions]
        ids = [i.flow_id for i in intents]
        if len(set(ids)) == len(ids):
            for attempt in range(APPEND_RETRIES):
                try:
                    return await self._record(submissions, intents, assume_new=attempt == 0)
                except ConcurrencyError:
                    continue
        return [await self._record_one(s, i) for s, i in zip(submissions, intents, strict=True)]

    async def submit(self, submission: Submission) -> Outcome:
        return await self._record_one(submission, self._intent(submission))

    async def _record_one(self, submission: Submission, intent: _Intent) -> Outcome:
        for attempt in range(APPEND_RETRIES):
            try:
                return (await self._record([submission], [intent], assume_new=attempt == 0))[0]
            except ConcurrencyError:
                continue
        raise ConcurrencyError(f"could not record submit of flow {intent.flow_id}")

    async def _record(
        self,
        submissions: Sequence[Submission],
        intents: Sequence[_Intent],
        assume_new: bool = False,
    ) -> list[Outcome]:
        """Record a batch. `assume_new`: append every flow as new without first asking which
        exist (one round trip less for the usual submit); a flow that exists (a redelivery,
        a re-submit of the same id) fails the append on `(flow_id, seq)`, and the caller's
        retry asks. Submits with unique keys always ask, under their keys' locks."""
        keys = sorted({k for i in intents if (k := _unique_key(i)) is not None})
        if not keys:
            return (await self._record_in(None, submissions, intents, assume_new))[0]
        async with self.store.transaction() as tx:
            # Submits sharing a unique key queue up here, on every replica.
            for key in keys:
                await tx.lock(Lock.UNIQUE_KEY, key)
            outcomes, changes = await self._record_in(tx, submissions, intents)
        await self.store.committed(changes)
        return outcomes

    async def _record_in(
        self,
        tx: DataLayer | None,
        submissions: Sequence[Submission],
        intents: Sequence[_Intent],
        assume_new: bool = False,
    ) -> tuple[list[Outcome], list[Change]]:
        now = self.clock()
        existing = (
            {}
            if assume_new
            else await self.store.digests(
                [i.flow_id for i in intents] + [s.fallback_id for s in submissions]
            )
        )
        outcomes: list[Outcome] = []
        changes: list[Change] = []
        holders: dict[str, tuple[str, FlowStatus]] = {}
        for submission, wanted in zip(submissions, intents, strict=True):
            intent = wanted
            if intent.flow_id in existing:
                digest, status = existing[intent.flow_id]
                if intent.digest is not None and digest == intent.digest:
                    outcomes.append(Outcome(intent.flow_id, FlowStatus(status), created=False))
                    continue
                if submission.fallback_id in existing:
                    # Redelivery of a submit that was already turned into a rejection.
                    fallback_status = FlowStatus(existing[submission.fallback_id][1])
                    outcomes.append(Outcome(submission.fallback_id, fallback_status, created=False))
                    continue
                intent = _Intent(submission.fallback_id, _taken(intent), None)
            key = _unique_key(intent)
            if key is not None and isinstance(intent.command, Submit):
                assert tx is not None and intent.command.spec.unique is not None
                unique = intent.command.spec.unique
                holder = holders.get(key) or await self._holder(tx, unique, now)
                if holder is not None:
                    outcome, extra = await self._conflict(intent, unique, holder, now)
                    if extra is not None:
                        changes.append(extra)
                    if outcome is not None:
                        outcomes.append(outcome)
                        continue
                holders[key] = (intent.flow_id, FlowStatus.PENDING)
            before = FoldedFlow(id=intent.flow_id)
            events, after = decide_and_evolve(before, intent.command, now, self.policy)
            changes.append(Change(before, after, events))
            errors = intent.command.errors if isinstance(intent.command, Reject) else ()
            outcomes.append(Outcome(intent.flow_id, after.status, created=True, errors=errors))
        await self.store.append(changes, tx=tx)
        for outcome in outcomes:
            if outcome.created and outcome.status is FlowStatus.REJECTED:
                log.info(
                    "flow rejected",
                    extra={
                        "flow_id": outcome.flow_id,
                        "errors": [e.message for e in outcome.errors],
                    },
                )
        return outcomes, changes

    async def reject_unrecordable(self, submission: Submission, why: str) -> Outcome:
        """The last resort for a submit that fails every time it is recorded: a rejection
        under the message's own id, so the submitter still sees what became of it."""
        error = SpecError(
            path="$",
            message=f"submit could not be recorded ({why[:300]}); check it and submit again",
        )
        intent = _Intent(submission.fallback_id, Reject((error,)), None)
        return await self._record_one(submission, intent)

    async def rerun(self, source: FoldedFlow, reused: tuple[str, ...]) -> Outcome:
        """A new run of `source`'s spec; tasks in `reused` count as succeeded with their
        outputs taken from `source`, and the digests `source` recorded for them."""
        assert source.plan is not None
        flow_id = new_flow_id()
        spec = msgspec.structs.replace(source.plan.spec, id=flow_id, unique=None)
        digests = tuple(d for name in reused for d in source.tasks[name].outputs)
        command = Submit(
            spec,
            plan(spec, self.limits),
            rerun_of=source.id,
            reused=reused,
            reused_outputs=digests,
        )
        before = FoldedFlow(id=flow_id)
        events, after = decide_and_evolve(before, command, self.clock(), self.policy)
        await self.store.append([Change(before, after, events)])
        return Outcome(flow_id, after.status, created=True)

    async def _holder(
        self, tx: DataLayer, unique: Unique, now: datetime
    ) -> tuple[str, FlowStatus] | None:
        """The newest flow holding `unique.key` in one of the statuses, within the window."""
        since = now - timedelta(seconds=unique.window) if unique.window else None
        statuses = unique.statuses or list(UNIQUE_STATUSES_DEFAULT)
        holder = await tx.unique_holder(unique.key, [str(s) for s in statuses], since)
        return None if holder is None else (holder[0], FlowStatus(holder[1]))

    async def _conflict(
        self, intent: _Intent, unique: Unique, holder: tuple[str, FlowStatus], now: datetime
    ) -> tuple[Outcome | None, Change | None]:
        """What a submit does about an existing flow with its unique key: an outcome that
        ends it, and/or a change to record (the deduplication, or cancelling the holder)."""
        existing, status = holder
        assert isinstance(intent.command, Submit)
        name = intent.command.spec.name
        if unique.on_conflict == "replace":
            if status.terminal:
                return None, None
            before = await self.store.load(existing)
            events, after = decide_and_evolve(
                before, Cancel(f'replaced by flow "{intent.flow_id}"'), now, self.policy
            )
            return None, Change(before, after, events)
        if unique.on_conflict == "reject":
            message = (
                f'flow "{name}": unique key "{unique.key}" is held by flow {existing} '
                f"({status}); wait for it, or submit with on_conflict: replace"
            )
            error = SpecError(path="$.unique.key", message=message)
            command: Command = Reject((error,), name)
        else:
            command = Deduplicate(existing, unique.key, name)
        before = FoldedFlow(id=intent.flow_id)
        events, after = decide_and_evolve(before, command, now, self.policy)
        errors = command.errors if isinstance(command, Reject) else ()
        outcome = Outcome(
            intent.flow_id, after.status, created=True, errors=errors, existing=existing
        )
        return outcome, Change(before, after, events)

    def _intent(self, submission: Submission) -> _Intent:
        try:
            spec = decode(submission.data, self.limits)
            flow_plan = plan(spec, self.limits)
        except Rejected as rejected:
            flow_id = rejected.flow_id
            if not flow_id or not is_dns_label(flow_id):
                flow_id = submission.fallback_id
            name = rejected.name[:253] if rejected.name else None
            return _Intent(flow_id, Reject(tuple(rejected.errors), name), None)
        return _Intent(
            spec.id or submission.fallback_id, Submit(spec, flow_plan), spec_digest(spec)
        )


def _unique_key(intent: _Intent) -> str | None:
    if isinstance(intent.command, Submit) and intent.command.spec.unique is not None:
        return intent.command.spec.unique.key
    return None


def _taken(intent: _Intent) -> Reject:
    """The rejection for a submit whose id belongs to another flow."""
    if isinstance(intent.command, Reject):
        return intent.command
    error = SpecError(
        path="$.id",
        message=(
            f'flow id "{intent.flow_id}" is already used by another flow with a different '
            "spec; choose a new id, or omit it to get one"
        ),
    )
    assert isinstance(intent.command, Submit)
    return Reject((error,), intent.command.spec.name)
