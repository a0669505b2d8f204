"""MemoryData: the DataLayer in memory, for unit tests of the scheduler's shell.

The twin of PostgresData (tests/unit/test_data_contract.py holds both to one contract):
the same optimistic concurrency on (flow_id, seq), the same projections and timers, claims
that other claimers skip, locks per (Lock, name) held until the transaction ends, outbox
rows in append order. A transaction that fails puts back the state it began with (any
change made meanwhile outside it is lost with it: tests run one writer at a time).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import msgspec
from weir_proto.api import (
    FlowSummary,
    FlowView,
    ScheduleView,
    TaskSummary,
    TaskView,
)
from weir_proto.status import (
    ACTIVE_TASK_STATUSES,
    UNENDED_FLOW_STATUSES,
    FlowStatus,
    TaskStatus,
)

from weir_scheduler.data.filters import TASK_LEAVES, compile_filter
from weir_scheduler.data.layer import (
    DISPATCH_SUBJECTS,
    ConcurrencyError,
    DataLayer,
    Leadership,
)
from weir_scheduler.data.locks import Lock
from weir_scheduler.data.memory_query import (
    flow_matches,
    row_as,
    summary,
    task_matches,
    task_summary,
)
from weir_scheduler.data.rows import (
    AppendBatch,
    AttemptState,
    DueSchedule,
    FiredTimer,
    FlowKey,
    FlowRow,
    LoggedEvent,
    NewSchedule,
    OutboxRow,
    TaskKey,
    TaskRow,
)


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(slots=True)
class _Timer:
    attempt: int
    due_at: datetime
    claimed_until: datetime | None = None


@dataclass(slots=True)
class _Schedule:
    row: NewSchedule
    created_at: datetime
    last_tick_at: datetime | None = None


@dataclass(slots=True)
class _Tables:
    """What a transaction puts back when it fails."""

    events: dict[str, list[tuple[int, str]]] = field(default_factory=dict)
    """Per flow, (seq, encoded event) in seq order."""
    event_ids: set[str] = field(default_factory=set)
    flows: dict[str, FlowRow] = field(default_factory=dict)
    tasks: dict[tuple[str, str], TaskRow] = field(default_factory=dict)
    timers: dict[tuple[str, str, str], _Timer] = field(default_factory=dict)
    outbox: dict[int, OutboxRow] = field(default_factory=dict)
    outbox_at: dict[int, float] = field(default_factory=dict)
    """When each outbox row was committed (`time.monotonic`)."""
    outbox_next: int = 1
    schedules: dict[str, _Schedule] = field(default_factory=dict)


@dataclass(slots=True)
class _Shared:
    tables: _Tables = field(default_factory=_Tables)
    locks: dict[tuple[Lock, str], asyncio.Lock] = field(default_factory=dict)
    held_schedules: set[str] = field(default_factory=set)
    relay_holder: object | None = None
    listeners: list[Callable[[], None]] = field(default_factory=list)


@dataclass(slots=True)
class _Tx:
    locks: list[asyncio.Lock] = field(default_factory=list)
    schedules: set[str] = field(default_factory=set)


class MemoryData(DataLayer):
    def __init__(
        self,
        clock: Callable[[], datetime] = utcnow,
        shared: _Shared | None = None,
        tx: _Tx | None = None,
    ) -> None:
        self.clock = clock
        self._shared = shared or _Shared()
        self._tx = tx

    @property
    def _t(self) -> _Tables:
        return self._shared.tables

    # Transactions and locks ----------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _transaction(self) -> AsyncIterator[DataLayer]:
        if self._tx is not None:  # nested: part of the enclosing transaction
            yield self
            return
        tx = _Tx()
        before = copy.deepcopy(self._shared.tables)
        try:
            yield MemoryData(self.clock, self._shared, tx)
        except BaseException:
            self._shared.tables = before
            raise
        finally:
            for lock in reversed(tx.locks):
                lock.release()
            self._shared.held_schedules -= tx.schedules

    def transaction(self) -> contextlib.AbstractAsyncContextManager[DataLayer]:
        return self._transaction()

    async def lock(self, lock: Lock, name: str) -> None:
        if self._tx is None:
            raise RuntimeError("a transaction lock needs a transaction")
        held = self._shared.locks.setdefault((lock, name), asyncio.Lock())
        await held.acquire()
        self._tx.locks.append(held)

    def leadership(self) -> Leadership:
        return MemoryLeadership(self)

    async def migrate(self) -> list[str]:
        return []

    # The log and its projections -----------------------------------------------------------

    async def events_after(self, known: Mapping[str, int]) -> list[LoggedEvent]:
        return [
            LoggedEvent(flow_id, data)
            for flow_id in sorted(known)
            for seq, data in self._t.events.get(flow_id, [])
            if seq > known[flow_id]
        ]

    async def flow_events(self, flow_id: str) -> list[str]:
        return [data for _, data in self._t.events.get(flow_id, [])]

    async def flow_digests(self, flow_ids: Sequence[str]) -> dict[str, tuple[str | None, str]]:
        t = self._t
        return {
            fid: (t.flows[fid].spec_digest, t.flows[fid].status)
            for fid in flow_ids
            if fid in t.flows
        }

    async def append(self, batch: AppendBatch) -> list[int]:
        t = self._t
        seen: set[tuple[str, int]] = set()
        for event in batch.events:
            taken = {seq for seq, _ in t.events.get(event.flow_id, [])}
            at = (event.flow_id, event.seq)
            if event.seq in taken or at in seen or event.id in t.event_ids:
                raise ConcurrencyError(f"event {event.seq} of flow {event.flow_id} exists")
            seen.add(at)
        for event in batch.events:
            t.events.setdefault(event.flow_id, []).append((event.seq, bytes(event.data).decode()))
            t.events[event.flow_id].sort()
            t.event_ids.add(event.id)
        for flow in batch.flows:
            old = t.flows.get(flow.id)
            t.flows[flow.id] = (
                flow
                if old is None
                else msgspec.structs.replace(
                    old,
                    status=flow.status,
                    seq=flow.seq,
                    updated_at=flow.updated_at,
                    finished_at=flow.finished_at,
                    tags=flow.tags,  # `weir update` may change these four
                    metadata=flow.metadata,
                    start_at=flow.start_at,
                    params=flow.params,
                )
            )
        for task in batch.tasks:
            prior = t.tasks.get((task.flow_id, task.name))
            # What a task's plan fixed stays as it was; its priority `weir update` may change.
            if prior is not None:
                task = msgspec.structs.replace(
                    task,
                    position=prior.position,
                    queue=prior.queue,
                    depends=prior.depends,
                )
            t.tasks[(task.flow_id, task.name)] = task
        for gone in batch.tasks_dropped:
            t.tasks.pop((gone.flow_id, gone.task), None)
        due = {(d.flow_id, d.task, d.kind) for d in batch.timers_due}
        cleared = {(c.flow_id, c.task) for c in batch.timers_cleared}
        for key in [k for k in t.timers if (k[0], k[1]) in cleared and k not in due]:
            del t.timers[key]
        for timer in batch.timers_due:
            t.timers[(timer.flow_id, timer.task, timer.kind)] = _Timer(timer.attempt, timer.due_at)
        ids = []
        for row in batch.outbox:
            ids.append(t.outbox_next)
            t.outbox[t.outbox_next] = msgspec.structs.replace(row, id=t.outbox_next)
            t.outbox_at[t.outbox_next] = time.monotonic()
            t.outbox_next += 1
        for wake in self._shared.listeners:
            wake()
        return ids

    async def outbox_batch(self, most: int, *, young_dispatches: float = 0.0) -> list[OutboxRow]:
        t = self._t
        since = time.monotonic() - young_dispatches
        kept = [
            t.outbox[i]
            for i in sorted(t.outbox)
            if not (t.outbox[i].subject.startswith(DISPATCH_SUBJECTS) and t.outbox_at[i] > since)
        ]
        return kept[:most]

    async def outbox_delete(self, ids: Sequence[int]) -> None:
        for i in ids:
            self._t.outbox.pop(i, None)
            self._t.outbox_at.pop(i, None)

    # Timers --------------------------------------------------------------------------------

    async def claim_timers(self, most: int, hold: float) -> list[FiredTimer]:
        now = self.clock()
        due = sorted(
            (timer.due_at, key)
            for key, timer in self._t.timers.items()
            if timer.due_at <= now and (timer.claimed_until is None or timer.claimed_until < now)
        )[:most]
        claimed = []
        for _, key in due:
            timer = self._t.timers[key]
            timer.claimed_until = now + timedelta(seconds=hold)
            claimed.append(FiredTimer(key[0], key[1], key[2], timer.attempt))
        return claimed

    async def drop_fired_timers(self, fired: Sequence[FiredTimer]) -> None:
        now = self.clock()
        for f in fired:
            timer = self._t.timers.get((f.flow_id, f.task, f.kind))
            if timer is not None and timer.attempt == f.attempt and timer.due_at <= now:
                del self._t.timers[(f.flow_id, f.task, f.kind)]

    async def next_timer_in(self) -> float | None:
        now = self.clock()
        unclaimed = [
            timer.due_at
            for timer in self._t.timers.values()
            if timer.claimed_until is None or timer.claimed_until < now
        ]
        return (min(unclaimed) - now).total_seconds() if unclaimed else None

    async def extend_leases(self, attempts: Sequence[tuple[str, str, int]], lease: float) -> None:
        until = self.clock() + timedelta(seconds=lease)
        for flow_id, task, attempt in attempts:
            timer = self._t.timers.get((flow_id, task, "lease"))
            flow = self._t.flows.get(flow_id)
            if timer is None or timer.attempt != attempt:
                continue
            if (
                flow is not None
                and flow.status == FlowStatus.CANCELLING
                and not self._spared(flow_id, task)
            ):
                continue
            timer.due_at = max(timer.due_at, until)

    def _spared(self, flow_id: str, task: str) -> bool:
        """Whether `task` is the on_exit task and the flow's latest cancel spares it."""
        logged = [msgspec.json.decode(data) for _, data in self._t.events.get(flow_id, [])]
        cancels = [e for e in logged if e.get("type") == "flow_cancel_requested"]
        on_exit = (logged[0].get("spec", {}).get("on_exit") or {}) if logged else {}
        return bool(cancels and cancels[-1].get("spares_on_exit") and on_exit.get("name") == task)

    async def attempt_silence(
        self, flow_id: str, task: str, attempt: int, lease: float
    ) -> float | None:
        timer = self._t.timers.get((flow_id, task, "lease"))
        if timer is None or timer.attempt != attempt:
            return None
        heard = timer.due_at - timedelta(seconds=lease)
        return (self.clock() - heard).total_seconds()

    async def attempt_state(self, flow_id: str, task: str) -> AttemptState | None:
        row = self._t.tasks.get((flow_id, task))
        flow = self._t.flows.get(flow_id)
        if row is None or flow is None:
            return None
        return AttemptState(row.status, row.attempt, flow.status)

    # Queues, unique keys, admission --------------------------------------------------------

    async def ping(self) -> None:
        return None  # always there

    async def pending_flows(self) -> int:
        return sum(1 for f in self._t.flows.values() if f.status in UNENDED_FLOW_STATUSES)

    async def queue_in_flight(self, queue: str) -> int:
        tasks = self._t.tasks.values()
        return sum(1 for t in tasks if t.queue == queue and t.status in ACTIVE_TASK_STATUSES)

    def _paused(self, flow_id: str) -> bool:
        return self._t.flows[flow_id].status == FlowStatus.PAUSED

    async def queue_next(self, queue: str, most: int) -> list[tuple[str, str]]:
        busy: dict[str, int] = {}
        waiting: list[TaskRow] = []
        for task in self._t.tasks.values():
            if task.queue != queue:
                continue
            if task.status in ACTIVE_TASK_STATUSES:
                busy[task.flow_id] = busy.get(task.flow_id, 0) + 1
            elif task.status == TaskStatus.QUEUED and not self._paused(task.flow_id):
                waiting.append(task)
        turns: dict[tuple[str, int], int] = {}
        ranked = []
        for task in sorted(waiting, key=lambda t: (t.flow_id, t.priority, t.position)):
            turn = turns.get((task.flow_id, task.priority), 0) + 1
            turns[(task.flow_id, task.priority)] = turn
            created = self._t.flows[task.flow_id].created_at
            order = (task.priority, turn + busy.get(task.flow_id, 0), created, task.position)
            ranked.append((order, task.flow_id, task.name))
        ranked.sort(key=lambda r: r[0])
        return [(flow_id, name) for _, flow_id, name in ranked[:most]]

    async def unique_holder(
        self, key: str, statuses: Sequence[str], since: datetime | None
    ) -> tuple[str, str] | None:
        holders = [
            f
            for f in self._t.flows.values()
            if f.unique_key == key
            and f.status in statuses
            and (since is None or f.created_at > since)
        ]
        if not holders:
            return None
        newest = max(holders, key=lambda f: f.created_at)
        return newest.id, newest.status

    # Schedules -----------------------------------------------------------------------------

    def _view(self, schedule: _Schedule) -> ScheduleView:
        row = schedule.row
        spec = msgspec.json.decode(row.spec)
        return row_as(
            ScheduleView,
            row,
            last_tick_at=schedule.last_tick_at,
            created_at=schedule.created_at,
            flow_name=spec["name"],
            params=spec.get("arguments", {}),
        )

    async def schedule_upsert(self, schedule: NewSchedule) -> ScheduleView:
        old = self._t.schedules.get(schedule.name)
        if old is None:
            self._t.schedules[schedule.name] = _Schedule(schedule, self.clock())
        else:
            old.row = schedule
        return self._view(self._t.schedules[schedule.name])

    async def schedule_list(self) -> list[ScheduleView]:
        return [self._view(self._t.schedules[name]) for name in sorted(self._t.schedules)]

    async def schedule_pause(self, name: str, paused: bool) -> ScheduleView | None:
        schedule = self._t.schedules.get(name)
        if schedule is None:
            return None
        schedule.row = msgspec.structs.replace(schedule.row, paused=paused)
        return self._view(schedule)

    async def schedule_delete(self, name: str) -> bool:
        return self._t.schedules.pop(name, None) is not None

    async def schedules_due(self, most: int) -> list[DueSchedule]:
        now = self.clock()
        held = self._shared.held_schedules
        due = sorted(
            (s for s in self._t.schedules.values() if not s.row.paused),
            key=lambda s: s.row.next_run_at,
        )
        due = [s for s in due if s.row.next_run_at <= now and s.row.name not in held][:most]
        if self._tx is not None:
            names = {s.row.name for s in due}
            self._tx.schedules |= names
            held |= names
        return [row_as(DueSchedule, s.row, last_tick_at=s.last_tick_at) for s in due]

    async def schedule_advance(
        self, name: str, next_run_at: datetime, last_tick_at: datetime
    ) -> None:
        schedule = self._t.schedules.get(name)
        if schedule is not None:
            schedule.row = msgspec.structs.replace(schedule.row, next_run_at=next_run_at)
            schedule.last_tick_at = last_tick_at

    async def schedule_next_in(self) -> float | None:
        due = [s.row.next_run_at for s in self._t.schedules.values() if not s.row.paused]
        return (min(due) - self.clock()).total_seconds() if due else None

    # Read side -----------------------------------------------------------------------------

    async def flow_view(self, flow_id: str) -> FlowView | None:
        flow = self._t.flows.get(flow_id)
        if flow is None:
            return None
        rows = self._tasks_of(flow_id)
        tasks = [row_as(TaskView, t) for t in rows]
        return row_as(
            FlowView,
            flow,
            task_counts=dict(Counter(t.status for t in tasks)),
            tasks=tasks,
            errors=list(flow.errors or ()),
        )

    def _tasks_of(self, flow_id: str) -> list[TaskRow]:
        return sorted(
            (t for (fid, _), t in self._t.tasks.items() if fid == flow_id),
            key=lambda t: t.position,
        )

    def _newest(
        self, keep: Callable[[FlowRow], bool], after: FlowKey | None, most: int
    ) -> list[FlowSummary]:
        flows = [
            f
            for f in self._t.flows.values()
            if keep(f) and (after is None or (f.created_at, f.id) < (after.created_at, after.id))
        ]
        flows.sort(key=lambda f: (f.created_at, f.id), reverse=True)
        return [summary(f, self._tasks_of(f.id)) for f in flows[:most]]

    async def flow_page(
        self, status: str | None, after: FlowKey | None, most: int
    ) -> list[FlowSummary]:
        return self._newest(lambda f: status is None or f.status == status, after, most)

    async def flow_query(
        self, where: object, after: FlowKey | None, most: int
    ) -> list[FlowSummary]:
        compile_filter(where)  # the same errors as Postgres for a bad filter

        def keep(flow: FlowRow) -> bool:
            return flow_matches(where, flow, lambda: {t.queue for t in self._tasks_of(flow.id)})

        return self._newest(lambda f: where is None or keep(f), after, most)

    async def task_query(
        self, where: object, after: TaskKey | None, most: int
    ) -> list[TaskSummary]:
        compile_filter(where, leaves=TASK_LEAVES)
        flows = sorted(self._t.flows.values(), key=lambda f: (f.created_at, f.id), reverse=True)
        found: list[TaskSummary] = []
        for flow in flows:
            key = (flow.created_at, flow.id)
            if after is not None and key > (after.flow_created_at, after.flow_id):
                continue
            seen = -1  # positions up to this one came on an earlier page
            if after is not None and key == (after.flow_created_at, after.flow_id):
                seen = after.position
            for task in self._tasks_of(flow.id):
                if task.position <= seen:
                    continue
                if where is None or task_matches(where, flow, task):
                    found.append(task_summary(flow, task))
                    if len(found) == most:
                        return found
        return found

    async def prune_batch(
        self, statuses: Sequence[str], keep_last: int, older_than: datetime, most: int
    ) -> list[str]:
        ended = [
            f for f in self._t.flows.values() if f.status in statuses and f.finished_at is not None
        ]
        ended.sort(key=lambda f: (f.finished_at, f.id), reverse=True)
        old = [f for f in ended[keep_last:] if f.finished_at and f.finished_at < older_than]
        old.sort(key=lambda f: f.finished_at or older_than)
        ids = [f.id for f in old[:most]]
        t = self._t
        for flow_id in ids:
            for _, data in t.events.pop(flow_id, []):
                t.event_ids.discard(msgspec.json.decode(data)["id"])
            del t.flows[flow_id]
            for key in [k for k in t.tasks if k[0] == flow_id]:
                del t.tasks[key]
            for timer in [k for k in t.timers if k[0] == flow_id]:
                del t.timers[timer]
        return ids


class MemoryLeadership(Leadership):
    def __init__(self, data: MemoryData) -> None:
        self.data = data
        self._wake: Callable[[], None] | None = None

    async def try_lead(self, wake: Callable[[], None]) -> bool:
        shared = self.data._shared
        if shared.relay_holder is None:
            shared.relay_holder = self
            self._wake = wake
            shared.listeners.append(wake)
        return shared.relay_holder is self

    async def outbox_batch(self, most: int, *, young_dispatches: float = 0.0) -> list[OutboxRow]:
        return await self.data.outbox_batch(most, young_dispatches=young_dispatches)

    async def outbox_delete(self, ids: Sequence[int]) -> None:
        await self.data.outbox_delete(ids)

    async def close(self) -> None:
        shared = self.data._shared
        if shared.relay_holder is self:
            shared.relay_holder = None
            if self._wake in shared.listeners:
                shared.listeners.remove(self._wake)
