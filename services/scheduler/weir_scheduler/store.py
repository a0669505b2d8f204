"""The event store: migrations, loading flows from the log, appending with optimistic
concurrency, projections and outbox rows in the same transaction, and the read side."""

from __future__ import annotations

import hashlib
import re
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from typing import Any

import asyncpg
import msgspec
from weir_proto import subjects
from weir_proto.api import FlowPage, FlowSummary, FlowView, TaskView
from weir_proto.errors import SpecError
from weir_proto.events import FlowEvent, FlowSubmitted, event_type
from weir_proto.ids import attempt_id
from weir_proto.messages import Dispatch
from weir_proto.spec import FlowSpec

from weir_scheduler.decider import Flow, evolve

FLOW_CACHE_SIZE_DEFAULT = 2_000
MIGRATIONS_LOCK = 7261020300

_QUERY_HEADER = re.compile(r"^-- name: (\w+)\s*$", re.MULTILINE)


def _load_queries() -> dict[str, str]:
    text = resources.files("weir_scheduler").joinpath("queries.sql").read_text()
    parts = _QUERY_HEADER.split(text)
    return {parts[i]: parts[i + 1].strip() for i in range(1, len(parts), 2)}


Q = _load_queries()

_event_decoder = msgspec.json.Decoder(FlowEvent)
_encoder = msgspec.json.Encoder()


class ConcurrencyError(Exception):
    """Another writer appended to one of these flows first; reload and decide again."""


async def migrate(conn: asyncpg.Connection | asyncpg.pool.PoolConnectionProxy) -> list[str]:
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
class Change:
    """Events decided for one flow, and the flow after them."""

    before: Flow
    after: Flow
    events: Sequence[FlowEvent]


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


class EventStore:
    def __init__(self, pool: asyncpg.Pool, cache: FlowCache | None = None) -> None:
        self.pool = pool
        self.cache = cache or FlowCache()

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

    async def append(self, changes: Sequence[Change]) -> None:
        """Append every change in one transaction, or none (ConcurrencyError on a race)."""
        changes = [c for c in changes if c.events]
        if not changes:
            return
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
            for subject, msg_id, payload in dispatches(change.after, change.events):
                out_subjects.append(subject)
                out_ids.append(msg_id)
                out_payloads.append(payload)
        flows = _flow_rows(changes)
        tasks = _task_rows(changes)
        try:
            async with self.pool.acquire() as conn, conn.transaction():
                await conn.execute(Q["append_events"], ev_ids, ev_flows, ev_seqs, ev_types, ev_data)
                await conn.execute(Q["upsert_flows"], *flows)
                if tasks[0]:
                    await conn.execute(Q["upsert_tasks"], *tasks)
                await conn.execute(Q["append_outbox"], out_subjects, out_ids, out_payloads)
                await conn.execute(Q["notify_outbox"])
        except asyncpg.UniqueViolationError as exc:
            self.cache.drop(c.after.id for c in changes)
            raise ConcurrencyError(str(exc)) from exc
        except BaseException:
            self.cache.drop(c.after.id for c in changes)
            raise
        for change in changes:
            self.cache.put(change.after)

    # Read side ---------------------------------------------------------------------------

    async def get(self, flow_id: str) -> FlowView | None:
        async with self.pool.acquire() as conn:
            row = await conn.fetchrow(Q["get_flow"], flow_id)
            if row is None:
                return None
            task_rows = await conn.fetch(Q["get_tasks"], flow_id)
        errors = msgspec.json.decode(row["errors"], type=list[SpecError]) if row["errors"] else []
        return FlowView(
            **_summary_fields(row),
            tasks=[TaskView(**dict(r)) for r in task_rows],
            errors=errors,
        )

    async def list(self, status: str | None, limit: int, cursor: str | None) -> FlowPage:
        after_time: datetime | None = None
        after_id: str | None = None
        if cursor:
            stamp, _, after_id = cursor.partition("~")
            after_time = datetime.fromisoformat(stamp)
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(Q["list_flows"], status, after_time, after_id, limit + 1)
        page = [FlowSummary(**_summary_fields(r)) for r in rows[:limit]]
        following = None
        if len(rows) > limit:
            last = page[-1]
            following = f"{last.created_at.isoformat()}~{last.id}"
        return FlowPage(flows=page, next=following)


def parse_cursor(cursor: str) -> None:
    """Raise ValueError when `cursor` is not one we handed out."""
    stamp, sep, flow_id = cursor.partition("~")
    if not sep or not flow_id:
        raise ValueError("cursor must be the `next` value of a previous page")
    datetime.fromisoformat(stamp)


def _summary_fields(row: Any) -> dict[str, Any]:
    return {
        key: row[key]
        for key in ("id", "name", "status", "created_at", "updated_at", "task_count", "seq")
    }


def dispatches(flow: Flow, events: Iterable[FlowEvent]) -> list[tuple[str, str, bytes]]:
    """The dispatch messages a batch of events sends to runners (one per task_dispatched)."""
    out = []
    for event in events:
        if event_type(event) != "task_dispatched":
            continue
        assert flow.plan is not None
        name: str = event.task  # type: ignore[union-attr]
        attempt: int = event.attempt  # type: ignore[union-attr]
        spec = flow.plan.tasks[name]
        message = Dispatch(
            flow_id=flow.id,
            attempt=attempt,
            attempt_id=attempt_id(flow.id, name, attempt),
            task=spec,
            dispatched_at=event.at,
        )
        out.append((subjects.dispatch(spec.queue), event.id, _encoder.encode(message)))
    return out


def _flow_rows(changes: Sequence[Change]) -> list[list[Any]]:
    cols: list[list[Any]] = [[] for _ in range(9)]
    for change in changes:
        flow = change.after
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
        )
        for col, value in zip(cols, values, strict=True):
            col.append(value)
    return cols


def _task_rows(changes: Sequence[Change]) -> list[list[Any]]:
    cols: list[list[Any]] = [[] for _ in range(14)]
    for change in changes:
        flow = change.after
        if flow.plan is None:
            continue
        touched: Iterable[str]
        if any(isinstance(e, FlowSubmitted) for e in change.events):
            touched = flow.plan.order
        else:
            touched = dict.fromkeys(e.task for e in change.events if hasattr(e, "task"))
        positions = flow.plan.positions
        for name in touched:
            task = flow.tasks[name]
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
            )
            for col, value in zip(cols, values, strict=True):
                col.append(value)
    return cols
