"""The event store: loading flows from the log, appending with optimistic concurrency
(projections and outbox rows in the same statement), and the read side. Every query goes
through the data layer (data/); this module turns flows into its rows and back."""

from __future__ import annotations

import contextlib
import hashlib
import logging
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar

import msgspec
from weir.config import DEADLINE_GRACE_DEFAULT, LEASE_DEFAULT
from weir_proto import subjects
from weir_proto.api import FlowPage, FlowSummary, FlowView, TaskPage, TaskSummary
from weir_proto.events import (
    FlowEvent,
    FlowSubmitted,
    FlowUpdated,
    TaskDispatched,
    TaskEvent,
    TaskExpanded,
    TaskRetried,
    event_type,
)
from weir_proto.ids import attempt_id
from weir_proto.messages import Dispatch
from weir_proto.spec import FlowSpec
from weir_proto.status import ACTIVE_TASK_STATUSES, FlowStatus, TaskStatus

from weir_scheduler.data import (
    AppendBatch,
    ConcurrencyError,
    DataLayer,
    EventRow,
    FiredTimer,
    FlowKey,
    FlowRow,
    OutboxRow,
    TaskKey,
    TaskRow,
    TimerKey,
    TimerRow,
)
from weir_scheduler.decider import FoldedFlow, dispatch_spec, evolve, fanout, with_token_digest
from weir_scheduler.map_plan import instance_name
from weir_scheduler.provenance import new_attempt_token, token_digest

__all__ = ["ConcurrencyError", "OutboxRow"]  # re-exported: what callers of the store catch

log = logging.getLogger("weir.scheduler.store")

FLOW_CACHE_SIZE_DEFAULT = 2_000

_event_decoder = msgspec.json.Decoder(FlowEvent)
_encoder = msgspec.json.Encoder()


def spec_digest(spec: FlowSpec) -> str:
    return hashlib.sha256(_encoder.encode(spec)).hexdigest()


@dataclass(frozen=True, slots=True)
class Change:
    """Events decided for one flow, and the flow after them."""

    before: FoldedFlow
    after: FoldedFlow
    events: Sequence[FlowEvent]
    tokens: Mapping[str, str] = field(default_factory=dict)
    """The attempt token of each `task_dispatched` (by event id), once `sealed`."""


def sealed(change: Change) -> Change:
    """`change` with a fresh token minted for every attempt it dispatches: the digest goes
    into the `task_dispatched` event (and the state), the token only into the dispatch."""
    if not any(isinstance(e, TaskDispatched) for e in change.events):
        return change
    events: list[FlowEvent] = []
    tokens: dict[str, str] = {}
    after = change.after
    for event in change.events:
        if isinstance(event, TaskDispatched):
            token = new_attempt_token()
            event = msgspec.structs.replace(event, token_digest=token_digest(token))
            tokens[event.id] = token
            after = with_token_digest(after, event)
        events.append(event)
    return Change(change.before, after, events, tokens)


class FlowCache:
    """Recently used flows, so a status report does not refold the whole log."""

    def __init__(self, size: int = FLOW_CACHE_SIZE_DEFAULT) -> None:
        self.size = size
        self._flows: OrderedDict[str, FoldedFlow] = OrderedDict()

    def get(self, flow_id: str) -> FoldedFlow | None:
        flow = self._flows.get(flow_id)
        if flow is not None:
            self._flows.move_to_end(flow_id)
        return flow

    def put(self, flow: FoldedFlow) -> None:
        self._flows[flow.id] = flow
        self._flows.move_to_end(flow.id)
        while len(self._flows) > self.size:
            self._flows.popitem(last=False)

    def drop(self, flow_ids: Iterable[str]) -> None:
        for flow_id in flow_ids:
            self._flows.pop(flow_id, None)


@dataclass(frozen=True, slots=True)
class Timing:
    """How the projection turns running attempts into due times."""

    lease: float = LEASE_DEFAULT
    """Seconds without a runner heartbeat after which a running attempt is lost."""
    deadline_grace: float = DEADLINE_GRACE_DEFAULT
    """Seconds past a task's timeout before the scheduler declares its attempt lost."""


class EventStore:
    def __init__(
        self, data: DataLayer, cache: FlowCache | None = None, timing: Timing | None = None
    ) -> None:
        self.data = data
        self.cache = cache or FlowCache()
        self.timing = timing or Timing()
        self.on_commit: list[Callable[[Sequence[Change]], Awaitable[None]]] = []
        """Called after every committed append (metrics and traces; never for decisions)."""
        self.on_prune: list[Callable[[list[str]], Awaitable[None]]] = []
        """Called with the ids of each pruned batch (to delete what lives outside Postgres)."""
        self.on_outbox: list[Callable[[list[OutboxRow]], Awaitable[None]]] = []
        """Given the outbox rows an append just committed, to publish them at once (the relay
        would find them anyway; this saves its wake-up and query on the hot path)."""
        self._held: dict[int, list[OutboxRow]] = {}
        """Outbox rows appended inside an open `transaction()`, by the id of its layer."""

    async def load(self, flow_id: str) -> FoldedFlow:
        return (await self.load_many([flow_id]))[flow_id]

    async def load_many(self, flow_ids: Sequence[str]) -> dict[str, FoldedFlow]:
        """The current state of each flow: cached state caught up with any events other
        replicas appended since, in one round trip. Never trust the cache alone: a stale
        state could decide "nothing to do" and lose a report."""
        flows = {fid: self.cache.get(fid) or FoldedFlow(id=fid) for fid in dict.fromkeys(flow_ids)}
        return await self._caught_up(flows)

    async def load_optimistic(
        self, flow_ids: Sequence[str]
    ) -> tuple[dict[str, FoldedFlow], set[str]]:
        """Like `load_many`, but a cached flow is taken as it is, without asking the log:
        returns the flows and the ids of those taken from the cache. Only for deciding
        commands that are then appended: a stale flow decides events whose `seq` the log
        holds already, so the append fails (ConcurrencyError) and the caller reloads. A
        command such a flow decides nothing for must be decided again on `load_many`'s
        state (a stale flow may not know the attempt a report is about)."""
        flows: dict[str, FoldedFlow] = {}
        cached: set[str] = set()
        missing: dict[str, FoldedFlow] = {}
        for fid in dict.fromkeys(flow_ids):
            flow = self.cache.get(fid)
            if flow is None:
                missing[fid] = FoldedFlow(id=fid)
            else:
                flows[fid] = flow
                cached.add(fid)
        if missing:
            flows.update(await self._caught_up(missing))
        return flows, cached

    async def _caught_up(self, flows: dict[str, FoldedFlow]) -> dict[str, FoldedFlow]:
        """`flows` with the events the log holds after each one's `seq` folded in."""
        logged = await self.data.events_after({fid: flow.seq for fid, flow in flows.items()})
        for event in logged:
            flows[event.flow_id] = evolve(flows[event.flow_id], _event_decoder.decode(event.data))
        for flow in flows.values():
            if flow.exists:
                self.cache.put(flow)
        return flows

    async def digests(self, flow_ids: Sequence[str]) -> dict[str, tuple[str | None, str]]:
        """`{flow_id: (spec_digest, status)}` for those of `flow_ids` that exist."""
        return await self.data.flow_digests(flow_ids)

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[DataLayer]:
        """A data-layer transaction for `append(..., tx=)`: the outbox rows appended inside it
        go to `on_outbox` once it has committed (never if it rolls back), as an append's own
        do. The relay leaves young dispatches to this fast path, so a dispatch committed in
        a caller's transaction (a queue's release, a unique-key submit) must take it too."""
        held: list[OutboxRow] = []
        async with self.data.transaction() as tx:
            self._held[id(tx)] = held
            try:
                yield tx
            finally:
                del self._held[id(tx)]
        if held:
            for publish in self.on_outbox:
                await publish(held)

    async def append(self, changes: Sequence[Change], tx: DataLayer | None = None) -> None:
        """Append every change in one statement, or none (ConcurrencyError on a race).
        With `tx` (from `transaction()`), run inside the caller's transaction; the caller
        tells `committed` once it has committed. Each dispatched attempt gets its token here
        (see `sealed`)."""
        changes = [sealed(c) for c in changes if c.events]
        if not changes:
            return
        batch = append_batch(changes, self.timing)
        try:
            ids = await (tx or self.data).append(batch)
        except ConcurrencyError:
            raise  # the cached flows are behind the log, which the next load catches up on
        except BaseException:
            self.cache.drop(c.after.id for c in changes)
            raise
        outbox = [
            OutboxRow(id, row.subject, row.msg_id, row.payload)
            for id, row in zip(ids, batch.outbox, strict=True)
        ]
        if tx is not None:
            held = self._held.get(id(tx))
            if held is None:
                raise RuntimeError("append(tx=) needs a transaction from EventStore.transaction()")
            held.extend(outbox)
        if tx is None:
            # In the caller's transaction, the flows stay cached as they were before (behind
            # the log once it commits): a cached flow must never be ahead of the log.
            for change in changes:
                self.cache.put(change.after)
            for publish in self.on_outbox:
                await publish(outbox)
            await self.committed(changes)

    async def committed(self, changes: Sequence[Change]) -> None:
        """Tell the on_commit hooks; callers that appended inside their own transaction
        call this once it has committed."""
        for hook in self.on_commit:
            try:
                await hook(changes)
            except Exception:
                log.exception("on_commit hook failed")

    async def claim_timers(self, most: int, hold: float) -> list[FiredTimer]:
        return await self.data.claim_timers(most, hold)

    async def drop_fired_timers(self, fired: Sequence[FiredTimer]) -> None:
        await self.data.drop_fired_timers(fired)

    async def next_timer_in(self) -> float | None:
        """Seconds until the next unclaimed timer is due (None when there is none)."""
        return await self.data.next_timer_in()

    async def extend_leases(self, attempts: Sequence[tuple[str, str, int]]) -> None:
        await self.data.extend_leases(attempts, self.timing.lease)

    async def attempt_silence(self, flow_id: str, task: str, attempt: int) -> float | None:
        """Seconds since the runner of this running attempt was last heard from (its start
        or its latest heartbeat); None when the attempt is not running."""
        return await self.data.attempt_silence(flow_id, task, attempt, self.timing.lease)

    async def attempt_is_current(self, flow_id: str, task: str, attempt: int) -> tuple[bool, str]:
        """Whether a runner should (still) run this attempt, and why not."""
        state = await self.data.attempt_state(flow_id, task)
        if state is None:
            return False, "no such flow or task"
        if state.flow_status in (FlowStatus.CANCELLING, FlowStatus.CANCELLED):
            return False, f"flow is {state.flow_status}"
        if state.attempt != attempt:
            return False, f"attempt {attempt} was superseded by attempt {state.attempt}"
        if state.status not in ACTIVE_TASK_STATUSES:
            return False, f"task is {state.status}"
        return True, ""

    # Read side ---------------------------------------------------------------------------

    async def get(self, flow_id: str) -> FlowView | None:
        return await self.data.flow_view(flow_id)

    async def list(self, status: str | None, limit: int, cursor: str | None) -> FlowPage:
        summaries = await self.data.flow_page(status, cursor_bounds(cursor), limit + 1)
        return _page(summaries, limit)

    async def query(self, where: Any, limit: int, cursor: str | None) -> FlowPage:
        """Flows matching a filter (see data/filters.py), newest first, one page."""
        summaries = await self.data.flow_query(where, cursor_bounds(cursor), limit + 1)
        return _page(summaries, limit)

    async def tasks(self, where: Any, limit: int, cursor: str | None) -> TaskPage:
        """Tasks across flows matching a filter (filters.TASK_LEAVES), one page: the newest
        flows' first, each flow's in its listed order."""
        found = await self.data.task_query(where, task_cursor_bounds(cursor), limit + 1)
        page, following = _split_page(found, limit, _task_cursor)
        return TaskPage(tasks=page, next=following)

    async def prune(
        self, statuses: Sequence[str], older_than: datetime, keep_last: int, batch: int
    ) -> int:
        """Delete terminal flows (log, projections, timers) in bounded batches, each its own
        short transaction so live traffic is never blocked for long. Returns how many."""
        pruned = 0
        while True:
            ids = await self.data.prune_batch(statuses, keep_last, older_than, batch)
            if not ids:
                return pruned
            self.cache.drop(ids)
            pruned += len(ids)
            for hook in self.on_prune:
                try:
                    await hook(ids)
                except Exception:
                    log.exception("on_prune hook failed")


def cursor_bounds(cursor: str | None) -> FlowKey | None:
    """The (created_at, id) a page continues after; ValueError for a cursor we did not hand
    out. Pages are keyset-paginated, newest first, so there is no offset and no hidden cap."""
    if not cursor:
        return None
    stamp, sep, flow_id = cursor.partition("~")
    if not sep or not flow_id:
        raise ValueError("cursor must be the `next` value of a previous page")
    return FlowKey(datetime.fromisoformat(stamp), flow_id)


def task_cursor_bounds(cursor: str | None) -> TaskKey | None:
    """The task a page of `tasks` continues after; ValueError for a cursor we did not hand
    out."""
    if not cursor:
        return None
    stamp, _, rest = cursor.partition("~")
    flow_id, sep, position = rest.rpartition("~")
    if not sep or not flow_id or not position.isdigit():
        raise ValueError("cursor must be the `next` value of a previous page")
    return TaskKey(datetime.fromisoformat(stamp), flow_id, int(position))


def parse_cursor(cursor: str) -> None:
    """Raise ValueError when `cursor` is not one we handed out."""
    cursor_bounds(cursor)


_Row = TypeVar("_Row")


def _split_page(
    found: Sequence[_Row], limit: int, cursor_after: Callable[[_Row], str]
) -> tuple[list[_Row], str | None]:
    """One page from `limit + 1` rows: the extra one only says whether there is a next, and
    the next page's cursor is the one after the page's last row."""
    page = list(found[:limit])
    return page, cursor_after(page[-1]) if len(found) > limit else None


def _flow_cursor(last: FlowSummary) -> str:
    return f"{last.created_at.isoformat()}~{last.id}"


def _task_cursor(last: TaskSummary) -> str:
    return f"{last.flow_created_at.isoformat()}~{last.flow_id}~{last.position}"


def _page(summaries: Sequence[FlowSummary], limit: int) -> FlowPage:
    page, following = _split_page(summaries, limit, _flow_cursor)
    return FlowPage(flows=page, next=following)


def dispatches(change: Change) -> list[tuple[str, str, bytes]]:
    """The dispatch messages a sealed change sends to runners (one per task_dispatched)."""
    flow = change.after
    out = []
    for event in change.events:
        if not isinstance(event, TaskDispatched):
            continue
        assert flow.plan is not None
        spec = dispatch_spec(flow, event.task)
        input_flows = {}
        if flow.rerun_of and flow.reused:
            for item in spec.inputs:
                producer = flow.plan.producers.get(item.from_)
                if producer in flow.reused:
                    input_flows[item.from_] = flow.rerun_of
        expected = (flow.output_digest(item.from_) for item in spec.inputs)
        message = Dispatch(
            flow_id=flow.id,
            attempt=event.attempt,
            attempt_id=attempt_id(flow.id, event.task, event.attempt),
            task=spec,
            dispatched_at=event.at,
            token=change.tokens[event.id],
            seq=event.seq,
            input_flows=input_flows,
            input_digests=[digest for digest in expected if digest is not None],
        )
        subject = subjects.dispatch(event.queue, flow.id, on_exit=event.task == flow.plan.on_exit)
        out.append((subject, event.id, _encoder.encode(message)))
    return out


def _touched_tasks(change: Change) -> list[str]:
    flow = change.after
    if flow.plan is None:
        return []
    if any(isinstance(e, FlowSubmitted | FlowUpdated) for e in change.events):
        return list(flow.plan.order)
    names: list[str] = []
    for event in change.events:
        if isinstance(event, TaskRetried):  # (an instance a retry dropped has no row left)
            names.extend(event.tasks)  # planned again: each row changes
            names.extend(_renumbered(change))
        elif isinstance(event, TaskExpanded):  # its instances get their rows
            names.append(event.task)
            names.extend(instance_name(event.task, i) for i in range(event.count))
        elif isinstance(event, TaskEvent):
            names.append(event.task)
    if flow.fanout:  # a mapped task that now waits for the shell gets its timer
        waited = set(fanout.due(change.before)) if change.before.fanout else set()
        names.extend(name for name, phase in fanout.due(flow) if (name, phase) not in waited)
    return [name for name in dict.fromkeys(names) if name in flow.tasks]


def _renumbered(change: Change) -> list[str]:
    """The tasks whose position in the plan changed (instances listed after those a retry
    dropped from it move up): their rows keep the order the plan has."""
    before, after = change.before.plan, change.after.plan
    if before is None or after is None or len(before.names) == len(after.names):
        return []
    return [n for n in after.names if before.positions.get(n) != after.positions[n]]


def _dropped_tasks(changes: Sequence[Change], kept: set[tuple[str, str]]) -> list[TimerKey]:
    """The instances a retry dropped from the plan (their mapped task reads its list again),
    whose rows go, but those this append writes again (expanded anew in the same append)."""
    dropped: dict[tuple[str, str], None] = {}
    for change in changes:
        before = change.before.plan
        if before is not None and any(isinstance(e, TaskRetried) for e in change.events):
            after = change.after.tasks
            gone = (n for n in before.names if n not in after)  # in the plan's order
            dropped.update(dict.fromkeys((change.after.id, n) for n in gone))
    return [TimerKey(flow_id, name) for flow_id, name in dropped if (flow_id, name) not in kept]


def append_batch(changes: Sequence[Change], timing: Timing) -> AppendBatch:
    """The rows one append writes for sealed changes: each event (also to the outbox, for
    NATS), each flow's projection, its touched tasks and their timers, and the dispatches."""
    events: list[EventRow] = []
    outbox: list[OutboxRow] = []
    for change in changes:
        for event in change.events:
            payload = _encoder.encode(event)
            kind = event_type(event)
            events.append(EventRow(event.id, event.flow_id, event.seq, kind, msgspec.Raw(payload)))
            outbox.append(OutboxRow(0, subjects.event(event.flow_id, kind), event.id, payload))
        for subject, msg_id, payload in dispatches(change):
            outbox.append(OutboxRow(0, subject, msg_id, payload))
    touched = [(c.after, _touched_tasks(c)) for c in changes]
    cleared, timers = _timer_rows(touched, timing)
    tasks = [_task_row(flow, name) for flow, names in touched if flow.plan for name in names]
    dropped = _dropped_tasks(changes, {(t.flow_id, t.name) for t in tasks})
    return AppendBatch(
        events=events,
        flows=[_flow_row(change) for change in changes],
        tasks=tasks,
        tasks_dropped=dropped,
        timers_cleared=[*cleared, *dropped],
        timers_due=timers,
        outbox=outbox,
    )


def _flow_row(change: Change) -> FlowRow:
    flow = change.after
    assert flow.created_at is not None and flow.updated_at is not None  # it has events
    spec = flow.plan.spec if flow.plan else None
    digest = None
    for event in change.events:
        if isinstance(event, FlowSubmitted):
            digest = spec_digest(event.spec)
    return FlowRow(
        id=flow.id,
        name=flow.name,
        status=str(flow.status),
        seq=flow.seq,
        task_count=len(flow.tasks),
        created_at=flow.created_at,
        updated_at=flow.updated_at,
        spec_digest=digest,
        errors=flow.errors or None,
        tags=spec.tags if spec else [],
        metadata=spec.metadata if spec else {},
        start_at=flow.start_at,
        rerun_of=flow.rerun_of,
        unique_key=spec.unique.key if spec and spec.unique else None,
        finished_at=flow.updated_at if flow.status.terminal else None,
        params=dict(flow.plan.params) if flow.plan else {},
    )


def _task_row(flow: FoldedFlow, name: str) -> TaskRow:
    assert flow.plan is not None and flow.created_at is not None  # a planned flow has events
    task = flow.tasks[name]
    return TaskRow(
        flow_id=flow.id,
        flow_created_at=flow.created_at,
        name=name,
        position=flow.plan.positions[name],
        status=str(task.status),
        attempt=task.attempt,
        queue=task.queue,
        depends=flow.plan.depends[name],
        dispatched_at=task.dispatched_at,
        started_at=task.started_at,
        finished_at=task.finished_at,
        exit_code=task.exit_code,
        error_type=task.error_type,
        error_message=task.error_message,
        runner=task.runner,
        priority=task.priority,
        failures=task.failures,
        retry_at=task.retry_at,
        outputs=task.outputs,
    )


def _timer_rows(
    touched: Sequence[tuple[FoldedFlow, list[str]]], timing: Timing
) -> tuple[list[TimerKey], list[TimerRow]]:
    """Timers to clear (every touched task and the flow's own) and the ones now due."""
    cleared: list[TimerKey] = []
    due: list[TimerRow] = []
    for flow, names in touched:
        cleared.extend(TimerKey(flow.id, name) for name in ["", *names])
        if flow.status is FlowStatus.SCHEDULED and flow.start_at is not None:
            due.append(TimerRow(flow.id, "", "start", flow.updates, flow.start_at))
        if flow.plan is None or flow.status.terminal:
            continue
        waiting = dict(fanout.due(flow)) if flow.fanout else {}
        for name in names:
            task = flow.tasks[name]
            if name in waiting and flow.updated_at is not None:
                at = flow.updated_at  # at once; a flow waiting to start, at its start
                if flow.status is FlowStatus.SCHEDULED and flow.start_at is not None:
                    at = max(flow.start_at, at)
                due.append(TimerRow(flow.id, name, "fanout", waiting[name], at))
            elif task.status is TaskStatus.RETRYING and task.retry_at is not None:
                due.append(TimerRow(flow.id, name, "retry", task.attempt, task.retry_at))
            elif task.status is TaskStatus.RUNNING and task.started_at is not None:
                lease = task.started_at + timedelta(seconds=timing.lease)
                due.append(TimerRow(flow.id, name, "lease", task.attempt, lease))
                timeout = flow.plan.tasks[name].timeout
                if timeout:
                    deadline = task.started_at + timedelta(seconds=timeout + timing.deadline_grace)
                    due.append(TimerRow(flow.id, name, "deadline", task.attempt, deadline))
    return cleared, due
