"""Submissions: every submit becomes a flow or a visible rejection, exactly once.

Used by the durable `weir.cmd.submit` consumer and by the `weir.api.submit` endpoint.
A resubmit of the same spec under the same id is a no-op that names the existing flow;
a different spec under an id already taken is rejected under the message's own id.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from weir_proto.errors import SpecError
from weir_proto.ids import DNS1123_LABEL, DNS1123_LABEL_MAX
from weir_proto.status import FlowStatus

from weir_scheduler.decider import Command, Flow, Reject, Submit, decide, evolve
from weir_scheduler.planner import Limits, Rejected, decode, plan
from weir_scheduler.store import Change, ConcurrencyError, EventStore, spec_digest

log = logging.getLogger("weir.scheduler.submissions")

APPEND_RETRIES_DEFAULT = 5


@dataclass(frozen=True, slots=True)
class Submission:
    data: bytes
    fallback_id: str
    """The flow id to use when the spec has none (or a rejection cannot use the spec's)."""


@dataclass(frozen=True, slots=True)
class Outcome:
    flow_id: str
    status: FlowStatus
    created: bool
    errors: tuple[SpecError, ...] = ()


@dataclass(frozen=True, slots=True)
class _Intent:
    flow_id: str
    command: Command
    digest: str | None


class SubmissionHandler:
    def __init__(self, store: EventStore, limits: Limits, clock: Callable[[], datetime]) -> None:
        self.store = store
        self.limits = limits
        self.clock = clock

    async def submit_many(self, submissions: Sequence[Submission]) -> list[Outcome]:
        """Record a batch in one transaction; falls back to one at a time on a race."""
        intents = [self._intent(s) for s in submissions]
        ids = [i.flow_id for i in intents]
        if len(set(ids)) == len(ids):
            for _ in range(APPEND_RETRIES_DEFAULT):
                try:
                    return await self._record(submissions, intents)
                except ConcurrencyError:
                    continue
        return [await self._record_one(s, i) for s, i in zip(submissions, intents, strict=True)]

    async def submit(self, submission: Submission) -> Outcome:
        return await self._record_one(submission, self._intent(submission))

    async def _record_one(self, submission: Submission, intent: _Intent) -> Outcome:
        for _ in range(APPEND_RETRIES_DEFAULT):
            try:
                return (await self._record([submission], [intent]))[0]
            except ConcurrencyError:
                continue
        raise ConcurrencyError(f"could not record submit of flow {intent.flow_id}")

    async def _record(
        self, submissions: Sequence[Submission], intents: Sequence[_Intent]
    ) -> list[Outcome]:
        now = self.clock()
        existing = await self.store.digests(
            [i.flow_id for i in intents] + [s.fallback_id for s in submissions]
        )
        outcomes: list[Outcome] = []
        changes: list[Change] = []
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
            before = Flow(id=intent.flow_id)
            events = decide(before, intent.command, now)
            after = before
            for event in events:
                after = evolve(after, event)
            changes.append(Change(before, after, events))
            errors = intent.command.errors if isinstance(intent.command, Reject) else ()
            outcomes.append(Outcome(intent.flow_id, after.status, created=True, errors=errors))
        await self.store.append(changes)
        for outcome in outcomes:
            if outcome.created and outcome.status is FlowStatus.REJECTED:
                log.info(
                    "flow rejected",
                    extra={
                        "flow_id": outcome.flow_id,
                        "errors": [e.message for e in outcome.errors],
                    },
                )
        return outcomes

    def _intent(self, submission: Submission) -> _Intent:
        try:
            spec = decode(submission.data, self.limits)
            flow_plan = plan(spec, self.limits)
        except Rejected as rejected:
            flow_id = rejected.flow_id
            if not flow_id or len(flow_id) > DNS1123_LABEL_MAX or not DNS1123_LABEL.match(flow_id):
                flow_id = submission.fallback_id
            name = rejected.name[:253] if rejected.name else None
            return _Intent(flow_id, Reject(tuple(rejected.errors), name), None)
        return _Intent(
            spec.id or submission.fallback_id, Submit(spec, flow_plan), spec_digest(spec)
        )


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
