"""The event store: migrations, loading flows from the log, appending with optimistic
concurrency, projections and outbox rows in the same transaction, and the read side."""

from __future__ import annotations

import hashlib
import logging
import re
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from importlib import resources
from typing import Any

import asyncpg
import msgspec
from weir_proto import subjects
from weir_proto.api import AttemptFailure, FlowPage, FlowSummary, FlowView, TaskView
from weir_proto.errors import SpecError
from weir_proto.events import FlowEvent, FlowSubmitted, TaskDispatched, event_type
from weir_proto.ids import attempt_id
from weir_proto.messages import Dispatch, OutputDigest
from weir_proto.spec import FlowSpec
from weir_proto.status import FlowStatus, TaskStatus

from weir_scheduler.decider import Flow, dispatch_spec, evolve, with_token_digest
from weir_scheduler.filters import compile_filter
from weir_scheduler.provenance import new_attempt_token, token_digest

log = logging.getLogger("weir.scheduler.store")

FLOW_CACHE_SIZE_DEFAULT = 2_000
LEASE_DEFAULT = 60.0
DEADLINE_GRACE_DEFAULT = 30.0
MIGRATIONS_LOCK = 7261020300

_QUERY_HEADER = re.compile(r"^-- name: (\w+)\s*$", re.MULTILINE)


def _load_queries() -> dict[str, str]:
    text = resources.files("weir_scheduler").joinpath("queries.sql").read_text()
    parts = _QUERY_HEADER.split(text)
    return {parts[i]: parts[i + 1].strip() for i in range(1, len(parts), 2)}


Q = _load_queries()

_event_decoder = msgspec.json.Decoder(FlowEvent)
_encoder = msgspec.json.Encoder()


Conn = asyncpg.Connection | asyncpg.pool.PoolConnectionProxy
"""A connection of our own or one lent by the pool."""


class ConcurrencyError(Exception):
    """Another writer appended to one of these flows first; reload and decide again."""


async def migrate(conn: Conn) -> list[str]:
    """Apply pending migrations in one transaction; safe when replicas start together."""
    applied: list[str] = []
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATIONS_LOCK)
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS weir_migrations ("
            " name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {r["name"] for r in await conn.fetch("SELECT name FROM weir_migrations")}
        folder = resources.files("weir_scheduler").joinpath("migrations")
        for entry in sorted(folder.iterdir(), key=lambda e: e.name):
            if not entry.name.endswith(".sql") or entry.name in done:
                continue
            await conn.execute(entry.read_text())
            await conn.execute("INSERT INTO weir_migrations (name) VALUES ($1)", entry.name)
            applied.append(entry.name)
    return applied


def spec_digest(spec: FlowSpec) -> str:
    return hashlib.sha256(_encoder.encode(spec)).hexdigest()


@dataclass(frozen=True, slots=True)
class OutboxRow:
    id: int
    subject: str
    msg_id: str
    payload: bytes


@dataclass(frozen=True, slots=True)
class Change:
    """Events decided for one flow, and the flow after them."""

    before: Flow
    after: Flow
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
        self._flows: OrderedDict[str, Flow] = OrderedDict()

    def get(self, flow_id: str) -> Flow | None:
        flow = self._flows.get(flow_id)
        if flow is not None:
            self._flows.move_to_end(flow_id)
        return flow

    def put(self, flow: Flow) -> None:
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
        self, pool: asyncpg.Pool, cache: FlowCache | None = None, timing: Timing | None = None
    ) -> None:
        self.pool = pool
        self.cache = cache or FlowCache()
        self.timing = timing or Timing()
        self.on_commit: list[Callable[[Sequence[Change]], Awaitable[None]]] = []
        """Called after every committed append (metrics and traces; never for decisions)."""
        self.on_prune: list[Callable[[list[str]], Awaitable[None]]] = []
        self.on_outbox: list[Callable[[list[OutboxRow]], Awaitable[None]]] = []
        """Given the outbox rows an append just committed, to publish them at once (the relay
        would find them anyway; this saves its wake-up and query on the hot path)."""
        """Called with the ids of each pruned batch (to delete what lives outside Postgres)."""

    async def load(self, flow_id: str) -> Flow:
        return (await self.load_many([flow_id]))[flow_id]

    async def load_many(self, flow_ids: Sequence[str]) -> dict[str, Flow]:
        """The current state of each flow: cached state caught up with any events other
        replicas appended since, in one round trip. Never trust the cache alone: a stale
        state could decide "nothing to do" and lose a report."""
        flows = {fid: self.cache.get(fid) or Flow(id=fid) for fid in dict.fromkeys(flow_ids)}
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(
                Q["events_after"], list(flows), [flow.seq for flow in flows.values()]
            )
        for row in rows:
            flow_id = row["flow_id"]
            flows[flow_id] = evolve(flows[flow_id], _event_decoder.decode(row["data"]))
        for flow in flows.values():
            if flow.exists:
                self.cache.put(flow)
        return flows

    async def digests(self, flow_ids: Sequence[str]) -> dict[str, tuple[str | None, str]]:
        """`{flow_id: (spec_digest, status)}` for those of `flow_ids` that exist."""
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(Q["flow_digests"], list(flow_ids))
        return {row["id"]: (row["spec_digest"], row["status"]) for row in rows}

    async def append(self, changes: Sequence[Change], conn: Conn | None = None) -> None:
        """Append every change in one transaction, or none (ConcurrencyError on a race).
        With `conn`, run inside the caller's transaction on that connection. Each dispatched
        attempt gets its token here (see `sealed`)."""
        changes = [sealed(c) for c in changes if c.events]
        if not changes:
            return
        try:
            if conn is not None:
                await self._write(conn, changes)
            else:
                async with self.pool.acquire() as own:
                    outbox = await self._write(own, changes)  # one statement: atomic by itself
        except asyncpg.UniqueViolationError as exc:
            self.cache.drop(c.after.id for c in changes)
            raise ConcurrencyError(str(exc)) from exc
        except BaseException:
            self.cache.drop(c.after.id for c in changes)
            raise
        for change in changes:
            self.cache.put(change.after)
        if conn is None:
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

    async def _write(self, conn: Conn, changes: Sequence[Change]) -> list[OutboxRow]:
        ev_ids, ev_flows, ev_seqs, ev_types, ev_data = [], [], [], [], []
        out_subjects, out_ids, out_payloads = [], [], []
        for change in changes:
            for event in change.events:
                payload = _encoder.encode(event)
                kind = event_type(event)
                ev_ids.append(event.id)
                ev_flows.append(event.flow_id)
                ev_seqs.append(event.seq)
                ev_types.append(kind)
                ev_data.append(payload.decode())
                out_subjects.append(subjects.event(event.flow_id, kind))
                out_ids.append(event.id)
                out_payloads.append(payload)
            for subject, msg_id, payload in dispatches(change):
                out_subjects.append(subject)
                out_ids.append(msg_id)
                out_payloads.append(payload)
        touched = [(c.after, _touched_tasks(c)) for c in changes]
        cleared, timers = _timer_rows(touched, self.timing)
        row = await conn.fetchrow(
            Q["append"],
            ev_ids,
            ev_flows,
            ev_seqs,
            ev_types,
            ev_data,
            *_flow_rows(changes),
            *_task_rows(touched),
            *cleared,
            *timers,
            out_subjects,
            out_ids,
            out_payloads,
            _task_outputs(touched),
        )
        ids = (row["outbox_ids"] if row else None) or []
        return [
            OutboxRow(id, subject, msg_id, payload)
            for id, subject, msg_id, payload in zip(
                ids, out_subjects, out_ids, out_payloads, strict=True
            )
        ]

    async def claim_timers(self, most: int, hold: float) -> list[tuple[str, str, str, int]]:
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(Q["claim_timers"], most, hold)
        return [(r["flow_id"], r["task"], r["kind"], r["attempt"]) for r in rows]

    async def drop_fired_timers(self, fired: Sequence[tuple[str, str, str, int]]) -> None:
        if not fired:
            return
        columns = [list(col) for col in zip(*fired, strict=True)]
        async with self.pool.acquire() as conn:
            await conn.execute(Q["drop_fired_timers"], *columns)

    async def next_timer_in(self) -> float | None:
        """Seconds until the next unclaimed timer is due (None when there is none)."""
        async with self.pool.acquire() as conn:
            value = await conn.fetchval(Q["next_timer_due"])
        return None if value is None else float(value)

    async def extend_leases(self, attempts: Sequence[tuple[str, str, int]]) -> None:
        if not attempts:
            return
        flow_ids, tasks, numbers = (list(col) for col in zip(*attempts, strict=True))
        async with self.pool.acquire() as conn:
            await conn.execute(Q["extend_leases"], flow_ids, tasks, numbers, self.timing.lease)

    async def attempt_silence(self, flow_id: str, task: str, attempt: int) -> float | None:
        """Seconds since the runner of this running attempt was last heard from (its start
        or its latest heartbeat); None when the attempt is not running."""
        async with self.pool.acquire() as conn:
            value = await conn.fetchval(
                Q["attempt_silence"], flow_id, task, attempt, self.timing.lease
            )
        return None if value is None else float(value)

    async def attempt_is_current(self, flow_id: str, task: str, attempt: int) -> tuple[bool, str]:
        """Whether a runner should (still) run this attempt, and why not."""
        async with self.pool.acquire() as conn:
            row = await conn.fetchrow(Q["attempt_status"], flow_id, task)
        if row is None:
            return False, "no such flow or task"
        if row["flow_status"] in ("cancelling", "cancelled"):
            return False, f"flow is {row['flow_status']}"
        if row["attempt"] != attempt:
            return False, f"attempt {attempt} was superseded by attempt {row['attempt']}"
        if row["status"] not in ("dispatched", "running"):
            return False, f"task is {row['status']}"
        return True, ""

    # Read side ---------------------------------------------------------------------------

    async def get(self, flow_id: str) -> FlowView | None:
        async with self.pool.acquire() as conn:
            row = await conn.fetchrow(Q["get_flow"], flow_id)
            if row is None:
                return None
            task_rows = await conn.fetch(Q["get_tasks"], flow_id)
        errors = msgspec.json.decode(row["errors"], type=list[SpecError]) if row["errors"] else []
        tasks = []
        for r in task_rows:
            fields = dict(r)
            fields["failures"] = msgspec.json.decode(fields["failures"], type=list[AttemptFailure])
            fields["outputs"] = msgspec.json.decode(fields["outputs"], type=list[OutputDigest])
            tasks.append(TaskView(**fields))
        return FlowView(
            **_summary_fields(row),
            tasks=tasks,
            errors=errors,
            metadata=msgspec.json.decode(row["metadata"]),
            start_at=row["start_at"],
            rerun_of=row["rerun_of"],
        )

    async def list(self, status: str | None, limit: int, cursor: str | None) -> FlowPage:
        after_time, after_id = cursor_bounds(cursor)
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(Q["list_flows"], status, after_time, after_id, limit + 1)
        return _page(rows, limit)

    async def query(self, where: Any, limit: int, cursor: str | None) -> FlowPage:
        """Flows matching a filter (see filters.py), newest first, one page."""
        condition, params = compile_filter(where, first_param=1)
        after_time, after_id = cursor_bounds(cursor)
        n = len(params)
        # Only the structure comes from the filter; every value is a bound parameter.
        sql = (
            f"{Q['query_flows_select']} WHERE {condition} "
            f"AND (${n + 1}::timestamptz IS NULL OR (created_at, id) < (${n + 1}, ${n + 2}::text)) "
            f"ORDER BY created_at DESC, id DESC LIMIT ${n + 3}"
        )
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(sql, *params, after_time, after_id, limit + 1)
        return _page(rows, limit)

    async def prune(
        self, statuses: Sequence[str], older_than: datetime, keep_last: int, batch: int
    ) -> int:
        """Delete terminal flows (log, projections, timers) in bounded batches, each its own
        short transaction so live traffic is never blocked for long. Returns how many."""
        pruned = 0
        while True:
            async with self.pool.acquire() as conn, conn.transaction():
                ids = [
                    r["id"]
                    for r in await conn.fetch(
                        Q["prune_candidates"], list(statuses), keep_last, older_than, batch
                    )
                ]
                if not ids:
                    return pruned
                await conn.execute(Q["prune_events"], ids)
                await conn.execute(Q["prune_timers"], ids)
                await conn.execute(Q["prune_flows"], ids)
            self.cache.drop(ids)
            pruned += len(ids)
            for hook in self.on_prune:
                try:
                    await hook(ids)
                except Exception:
                    log.exception("on_prune hook failed")


def cursor_bounds(cursor: str | None) -> tuple[datetime | None, str | None]:
    """The (created_at, id) a page continues after; ValueError for a cursor we did not hand
    out. Pages are keyset-paginated, newest first, so there is no offset and no hidden cap."""
    if not cursor:
        return None, None
    stamp, sep, flow_id = cursor.partition("~")
    if not sep or not flow_id:
        raise ValueError("cursor must be the `next` value of a previous page")
    return datetime.fromisoformat(stamp), flow_id


def parse_cursor(cursor: str) -> None:
    """Raise ValueError when `cursor` is not one we handed out."""
    cursor_bounds(cursor)


def _page(rows: Sequence[Any], limit: int) -> FlowPage:
    """One page from `limit + 1` rows: the extra row only says whether there is a next."""
    page = [FlowSummary(**_summary_fields(r)) for r in rows[:limit]]
    following = None
    if len(rows) > limit:
        last = page[-1]
        following = f"{last.created_at.isoformat()}~{last.id}"
    return FlowPage(flows=page, next=following)


def _summary_fields(row: Any) -> dict[str, Any]:
    return {
        key: row[key]
        for key in (
            "id",
            "name",
            "status",
            "created_at",
            "updated_at",
            "task_count",
            "seq",
            "tags",
            "finished_at",
        )
    }


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
            input_flows=input_flows,
            input_digests=[digest for digest in expected if digest is not None],
        )
        out.append((subjects.dispatch(event.queue, flow.id), event.id, _encoder.encode(message)))
    return out


def _touched_tasks(change: Change) -> list[str]:
    flow = change.after
    if flow.plan is None:
        return []
    if any(isinstance(e, FlowSubmitted) for e in change.events):
        return list(flow.plan.order)
    return list(dict.fromkeys(e.task for e in change.events if hasattr(e, "task")))


def _flow_rows(changes: Sequence[Change]) -> list[list[Any]]:
    cols: list[list[Any]] = [[] for _ in range(15)]
    for change in changes:
        flow = change.after
        spec = flow.plan.spec if flow.plan else None
        digest = None
        for event in change.events:
            if isinstance(event, FlowSubmitted):
                digest = spec_digest(event.spec)
        values = (
            flow.id,
            flow.name,
            str(flow.status),
            flow.seq,
            len(flow.tasks),
            flow.created_at,
            flow.updated_at,
            digest,
            _encoder.encode(list(flow.errors)).decode() if flow.errors else None,
            _encoder.encode(spec.tags).decode() if spec else "[]",
            _encoder.encode(spec.metadata).decode() if spec else "{}",
            flow.start_at,
            flow.rerun_of,
            spec.unique.key if spec and spec.unique else None,
            flow.updated_at if flow.status.terminal else None,
        )
        for col, value in zip(cols, values, strict=True):
            col.append(value)
    return cols


def _task_rows(touched: Sequence[tuple[Flow, list[str]]]) -> list[list[Any]]:
    cols: list[list[Any]] = [[] for _ in range(17)]
    for flow, names in touched:
        if flow.plan is None:
            continue
        positions = flow.plan.positions
        for name in names:
            task = flow.tasks[name]
            failures = [
                {"attempt": f.attempt, "error_type": f.error_type, "message": f.message, "at": f.at}
                for f in task.failures
            ]
            values = (
                flow.id,
                name,
                positions[name],
                str(task.status),
                task.attempt,
                task.queue,
                ",".join(flow.plan.depends[name]),
                task.dispatched_at,
                task.started_at,
                task.finished_at,
                task.exit_code,
                task.error_type,
                task.error_message,
                task.runner,
                task.priority,
                _encoder.encode(failures).decode(),
                task.retry_at,
            )
            for col, value in zip(cols, values, strict=True):
                col.append(value)
    return cols


def _task_outputs(touched: Sequence[tuple[Flow, list[str]]]) -> list[str]:
    """The `outputs` column of the rows `_task_rows` writes, in the same order."""
    return [
        _encoder.encode(list(flow.tasks[name].outputs)).decode()
        for flow, names in touched
        if flow.plan is not None
        for name in names
    ]


def _timer_rows(
    touched: Sequence[tuple[Flow, list[str]]], timing: Timing
) -> tuple[list[list[str]], list[list[Any]]]:
    """Timers to clear (every touched task and the flow's own) and the ones now due."""
    cleared: list[list[str]] = [[], []]
    cols: list[list[Any]] = [[] for _ in range(5)]

    def add(flow_id: str, task: str, kind: str, attempt: int, due: datetime) -> None:
        for col, value in zip(cols, (flow_id, task, kind, attempt, due), strict=True):
            col.append(value)

    for flow, names in touched:
        for name in ["", *names]:
            cleared[0].append(flow.id)
            cleared[1].append(name)
        if flow.status is FlowStatus.SCHEDULED and flow.start_at is not None:
            add(flow.id, "", "start", 0, flow.start_at)
        if flow.plan is None or flow.status.terminal:
            continue
        for name in names:
            task = flow.tasks[name]
            if task.status is TaskStatus.RETRYING and task.retry_at is not None:
                add(flow.id, name, "retry", task.attempt, task.retry_at)
            elif task.status is TaskStatus.RUNNING and task.started_at is not None:
                add(
                    flow.id,
                    name,
                    "lease",
                    task.attempt,
                    task.started_at + timedelta(seconds=timing.lease),
                )
                timeout = flow.plan.tasks[name].timeout
                if timeout:
                    due = task.started_at + timedelta(seconds=timeout + timing.deadline_grace)
                    add(flow.id, name, "deadline", task.attempt, due)
    return cleared, cols
