"""PostgresData: the DataLayer on Postgres. The only code that holds the pool and runs SQL;
every statement is a named query of queries.sql."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from datetime import datetime
from importlib import resources
from typing import Any

import asyncpg
import msgspec
from weir_proto.api import (
    AttemptFailure,
    FlowSummary,
    FlowView,
    ScheduleView,
    TaskSummary,
    TaskView,
)
from weir_proto.errors import SpecError
from weir_proto.messages import OutputDigest

from weir_scheduler.data.filters import TASK_LEAVES, compile_filter
from weir_scheduler.data.layer import (
    DISPATCH_SUBJECTS,
    ConcurrencyError,
    DataLayer,
    Leadership,
)
from weir_scheduler.data.locks import Lock
from weir_scheduler.data.queries import QUERIES as Q
from weir_scheduler.data.rows import (
    AppendBatch,
    AttemptState,
    DueSchedule,
    FiredTimer,
    FlowKey,
    LoggedEvent,
    NewSchedule,
    OutboxRow,
    TaskKey,
)

log = logging.getLogger("weir.scheduler.data")

POOL_SIZE_MIN = 2
POOL_SIZE_MAX = 10
CONNECT_RETRY_MAX = 5.0
OUTBOX_CHANNEL = "weir_outbox"
"""The NOTIFY channel an append wakes the relay on (see the `append` statement)."""

UNAVAILABLE = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError)
"""Errors of a database that is down or went away (a caller that can leave the work for
later catches these; anything else is a bug)."""

Conn = asyncpg.Connection | asyncpg.pool.PoolConnectionProxy

_encoder = msgspec.json.Encoder()
_failures = msgspec.json.Decoder(list[AttemptFailure])
_outputs = msgspec.json.Decoder(list[OutputDigest])
_errors = msgspec.json.Decoder(list[SpecError])
_SUMMARY_FIELDS = tuple(f for f in FlowSummary.__struct_fields__ if f != "task_counts")


class PostgresData(DataLayer):
    def __init__(self, pool: asyncpg.Pool, database_url: str, conn: Conn | None = None) -> None:
        self.pool = pool
        """Also for the health check, which pings it."""
        self.database_url = database_url
        self._conn = conn
        """The connection of the transaction this layer is bound to, if any."""

    @classmethod
    async def open(cls, database_url: str, stop: asyncio.Event) -> PostgresData | None:
        """Connect, waiting for Postgres with back-off (None once `stop` is set)."""
        delay = 0.2
        while not stop.is_set():
            try:
                return cls(await create_pool(database_url), database_url)
            except (OSError, asyncpg.PostgresError) as exc:
                log.warning(
                    "postgres not reachable; retrying", extra={"error": str(exc), "in": delay}
                )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
                delay = min(delay * 2, CONNECT_RETRY_MAX)
        return None

    async def close(self) -> None:
        await self.pool.close()

    @contextlib.asynccontextmanager
    async def _connection(self) -> AsyncIterator[Conn]:
        if self._conn is not None:
            yield self._conn
        else:
            async with self.pool.acquire() as conn:
                yield conn

    # Transactions and locks ----------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _transaction(self) -> AsyncIterator[DataLayer]:
        async with self._connection() as conn, conn.transaction():
            yield PostgresData(self.pool, self.database_url, conn)

    def transaction(self) -> contextlib.AbstractAsyncContextManager[DataLayer]:
        return self._transaction()

    async def lock(self, lock: Lock, name: str) -> None:
        if self._conn is None:
            raise RuntimeError("a transaction lock needs a transaction")
        await self._conn.execute(Q["lock_name_transaction"], name, int(lock))

    def leadership(self) -> Leadership:
        return PostgresLeadership(self.database_url)

    async def migrate(self) -> list[str]:
        applied: list[str] = []
        async with self._connection() as conn, conn.transaction():
            await conn.execute(Q["lock_transaction"], int(Lock.MIGRATIONS))
            await conn.execute(Q["migrations_table"])
            done = {r["name"] for r in await conn.fetch(Q["migrations_applied"])}
            folder = resources.files("weir_scheduler").joinpath("migrations")
            for entry in sorted(folder.iterdir(), key=lambda e: e.name):
                if not entry.name.endswith(".sql") or entry.name in done:
                    continue
                await conn.execute(entry.read_text())
                await conn.execute(Q["migration_record"], entry.name)
                applied.append(entry.name)
        return applied

    # The log and its projections -----------------------------------------------------------

    async def events_after(self, known: Mapping[str, int]) -> list[LoggedEvent]:
        async with self._connection() as conn:
            rows = await conn.fetch(Q["events_after"], list(known), list(known.values()))
        return [LoggedEvent(row[0], row[1]) for row in rows]

    async def flow_events(self, flow_id: str) -> list[str]:
        async with self._connection() as conn:
            rows = await conn.fetch(Q["flow_events"], flow_id)
        return [row[0] for row in rows]

    async def flow_digests(self, flow_ids: Sequence[str]) -> dict[str, tuple[str | None, str]]:
        async with self._connection() as conn:
            rows = await conn.fetch(Q["flow_digests"], list(flow_ids))
        return {row["id"]: (row["spec_digest"], row["status"]) for row in rows}

    async def append(self, batch: AppendBatch) -> list[int]:
        outbox = batch.outbox
        try:
            async with self._connection() as conn:
                row = await conn.fetchrow(
                    Q["append"],
                    _encoder.encode(batch.events).decode(),
                    _encoder.encode(batch.flows).decode(),
                    _encoder.encode(batch.tasks).decode(),
                    _encoder.encode(batch.timers_cleared).decode(),
                    _encoder.encode(batch.timers_due).decode(),
                    [r.subject for r in outbox],
                    [r.msg_id for r in outbox],
                    [r.payload for r in outbox],
                    _encoder.encode(batch.tasks_dropped).decode(),
                )
        except asyncpg.UniqueViolationError as exc:
            raise ConcurrencyError(str(exc)) from exc
        return list((row["outbox_ids"] if row else None) or [])

    async def outbox_batch(self, most: int, *, young_dispatches: float = 0.0) -> list[OutboxRow]:
        async with self._connection() as conn:
            rows = await conn.fetch(Q["outbox_batch"], most, DISPATCH_SUBJECTS, young_dispatches)
        return [OutboxRow(r["id"], r["subject"], r["msg_id"], r["payload"]) for r in rows]

    async def outbox_delete(self, ids: Sequence[int]) -> None:
        async with self._connection() as conn:
            await conn.execute(Q["outbox_delete"], list(ids))

    # Timers --------------------------------------------------------------------------------

    async def claim_timers(self, most: int, hold: float) -> list[FiredTimer]:
        async with self._connection() as conn:
            rows = await conn.fetch(Q["claim_timers"], most, hold)
        return [FiredTimer(r["flow_id"], r["task"], r["kind"], r["attempt"]) for r in rows]

    async def drop_fired_timers(self, fired: Sequence[FiredTimer]) -> None:
        if not fired:
            return
        async with self._connection() as conn:
            await conn.execute(
                Q["drop_fired_timers"],
                [f.flow_id for f in fired],
                [f.task for f in fired],
                [f.kind for f in fired],
                [f.attempt for f in fired],
            )

    async def next_timer_in(self) -> float | None:
        async with self._connection() as conn:
            value = await conn.fetchval(Q["next_timer_due"])
        return None if value is None else float(value)

    async def extend_leases(self, attempts: Sequence[tuple[str, str, int]], lease: float) -> None:
        if not attempts:
            return
        flow_ids, tasks, numbers = (list(col) for col in zip(*attempts, strict=True))
        async with self._connection() as conn:
            await conn.execute(Q["extend_leases"], flow_ids, tasks, numbers, lease)

    async def attempt_silence(
        self, flow_id: str, task: str, attempt: int, lease: float
    ) -> float | None:
        async with self._connection() as conn:
            value = await conn.fetchval(Q["attempt_silence"], flow_id, task, attempt, lease)
        return None if value is None else float(value)

    async def attempt_state(self, flow_id: str, task: str) -> AttemptState | None:
        async with self._connection() as conn:
            row = await conn.fetchrow(Q["attempt_status"], flow_id, task)
        return None if row is None else AttemptState(row[0], row[1], row[2])

    # Queues, unique keys, admission --------------------------------------------------------

    async def ping(self) -> None:
        async with self._connection() as conn:
            await conn.fetchval(Q["ping"])

    async def pending_flows(self) -> int:
        async with self._connection() as conn:
            return int(await conn.fetchval(Q["pending_flows"]))

    async def queue_in_flight(self, queue: str) -> int:
        async with self._connection() as conn:
            return int(await conn.fetchval(Q["queue_in_flight"], queue))

    async def queue_next(self, queue: str, most: int) -> list[tuple[str, str]]:
        async with self._connection() as conn:
            rows = await conn.fetch(Q["queue_next"], queue, most)
        return [(r["flow_id"], r["name"]) for r in rows]

    async def unique_holder(
        self, key: str, statuses: Sequence[str], since: datetime | None
    ) -> tuple[str, str] | None:
        async with self._connection() as conn:
            row = await conn.fetchrow(Q["unique_holder"], key, list(statuses), since)
        return None if row is None else (row["id"], row["status"])

    # Schedules -----------------------------------------------------------------------------

    async def schedule_upsert(self, schedule: NewSchedule) -> ScheduleView:
        async with self._connection() as conn:
            row = await conn.fetchrow(
                Q["schedule_upsert"],
                schedule.name,
                schedule.cron,
                schedule.timezone,
                schedule.spec,
                schedule.missed,
                schedule.paused,
                schedule.next_run_at,
            )
        assert row is not None  # INSERT ... RETURNING always returns the row
        return _schedule_view(row)

    async def schedule_list(self) -> list[ScheduleView]:
        async with self._connection() as conn:
            rows = await conn.fetch(Q["schedule_list"])
        return [_schedule_view(r) for r in rows]

    async def schedule_pause(self, name: str, paused: bool) -> ScheduleView | None:
        async with self._connection() as conn:
            row = await conn.fetchrow(Q["schedule_pause"], name, paused)
        return None if row is None else _schedule_view(row)

    async def schedule_delete(self, name: str) -> bool:
        async with self._connection() as conn:
            return await conn.fetchrow(Q["schedule_delete"], name) is not None

    async def schedules_due(self, most: int) -> list[DueSchedule]:
        async with self._connection() as conn:
            rows = await conn.fetch(Q["schedule_due"], most)
        return [DueSchedule(**dict(r)) for r in rows]

    async def schedule_advance(
        self, name: str, next_run_at: datetime, last_tick_at: datetime
    ) -> None:
        async with self._connection() as conn:
            await conn.execute(Q["schedule_advance"], name, next_run_at, last_tick_at)

    async def schedule_next_in(self) -> float | None:
        async with self._connection() as conn:
            value = await conn.fetchval(Q["schedule_next_due"])
        return None if value is None else float(value)

    # Read side -----------------------------------------------------------------------------

    async def flow_view(self, flow_id: str) -> FlowView | None:
        async with self._connection() as conn:
            row = await conn.fetchrow(Q["get_flow"], flow_id)
            if row is None:
                return None
            task_rows = await conn.fetch(Q["get_tasks"], flow_id)
        tasks = []
        for r in task_rows:
            fields = dict(r)
            fields["failures"] = _failures.decode(fields["failures"])
            fields["outputs"] = _outputs.decode(fields["outputs"])
            tasks.append(TaskView(**fields))
        return FlowView(
            **_summary_fields(row),
            task_counts=dict(Counter(t.status for t in tasks)),
            tasks=tasks,
            errors=_errors.decode(row["errors"]) if row["errors"] else [],
            metadata=msgspec.json.decode(row["metadata"]),
            start_at=row["start_at"],
            rerun_of=row["rerun_of"],
            params=msgspec.json.decode(row["params"]),
        )

    async def flow_page(
        self, status: str | None, after: FlowKey | None, most: int
    ) -> list[FlowSummary]:
        after_time, after_id = (after.created_at, after.id) if after else (None, None)
        async with self._connection() as conn:
            rows = await conn.fetch(Q["list_flows"], status, after_time, after_id, most)
            return await _with_counts(conn, rows)

    async def flow_query(
        self, where: object, after: FlowKey | None, most: int
    ) -> list[FlowSummary]:
        condition, params = compile_filter(where, first_param=1)
        after_time, after_id = (after.created_at, after.id) if after else (None, None)
        n = len(params)
        # Only the structure comes from the filter; every value is a bound parameter.
        sql = (
            f"{Q['query_flows_select']} WHERE {condition} AND (${n + 1}::timestamptz IS NULL "
            f"OR (f.created_at, f.id) < (${n + 1}, ${n + 2}::text)) "
            f"ORDER BY f.created_at DESC, f.id DESC LIMIT ${n + 3}"
        )
        async with self._connection() as conn:
            rows = await conn.fetch(sql, *params, after_time, after_id, most)
            return await _with_counts(conn, rows)

    async def task_query(
        self, where: object, after: TaskKey | None, most: int
    ) -> list[TaskSummary]:
        condition, params = compile_filter(where, first_param=1, leaves=TASK_LEAVES)
        at, flow_id, position = (
            (after.flow_created_at, after.flow_id, after.position) if after else (None, None, 0)
        )
        n = len(params)
        sql = (
            f"{Q['query_tasks_select']} WHERE {condition} AND (${n + 1}::timestamptz IS NULL "
            f"OR (t.flow_created_at, t.flow_id) < (${n + 1}, ${n + 2}::text) "
            f"OR ((t.flow_created_at, t.flow_id) = (${n + 1}, ${n + 2}::text) "
            f"AND t.position > ${n + 3})) "
            f"ORDER BY t.flow_created_at DESC, t.flow_id DESC, t.position LIMIT ${n + 4}"
        )
        async with self._connection() as conn:
            rows = await conn.fetch(sql, *params, at, flow_id, position, most)
        return [TaskSummary(**dict(r)) for r in rows]

    async def prune_batch(
        self, statuses: Sequence[str], keep_last: int, older_than: datetime, most: int
    ) -> list[str]:
        async with self._connection() as conn, conn.transaction():
            rows = await conn.fetch(
                Q["prune_candidates"], list(statuses), keep_last, older_than, most
            )
            ids = [r["id"] for r in rows]
            if ids:
                await conn.execute(Q["prune_events"], ids)
                await conn.execute(Q["prune_timers"], ids)
                await conn.execute(Q["prune_flows"], ids)
        return ids


async def create_pool(
    database_url: str, min_size: int = POOL_SIZE_MIN, max_size: int = POOL_SIZE_MAX
) -> asyncpg.Pool:
    """The layer's connection pool. A connection goes back to it without asyncpg's reset
    query (advisory unlock, `CLOSE ALL`, `UNLISTEN *`, `RESET ALL`: a second round trip
    after every statement, and the server's work for it), because no statement of the layer
    leaves session state behind: its locks are transaction locks, the relay's session lock
    and LISTEN live on a connection of their own (`PostgresLeadership`), and it sets no
    session setting. asyncpg still rolls back a transaction left open. The contract suite
    checks every pooled connection comes back clean."""
    return await asyncpg.create_pool(
        database_url,
        min_size=min_size,
        max_size=max_size,
        # A time without a zone in a JSON row means UTC, as asyncpg's own encoding of a
        # naive datetime does.
        server_settings={"timezone": "UTC"},
        reset=_no_session_state,
    )


async def _no_session_state(conn: asyncpg.Connection) -> None:
    """Nothing to reset: see `create_pool`."""


class PostgresLeadership(Leadership):
    """The relay lock is a session lock, so it lives on a connection outside the pool."""

    def __init__(self, database_url: str) -> None:
        self.database_url = database_url
        self._conn: asyncpg.Connection | None = None
        self._leads = False

    async def try_lead(self, wake: Callable[[], None]) -> bool:
        if self._conn is None or self._conn.is_closed():
            self._conn = await asyncpg.connect(self.database_url)
            self._leads = False
        if not self._leads:
            if not await self._conn.fetchval(Q["try_session_lock"], int(Lock.RELAY)):
                return False
            self._leads = True
            await self._conn.add_listener(OUTBOX_CHANNEL, lambda *_: wake())
        return True

    async def outbox_batch(self, most: int, *, young_dispatches: float = 0.0) -> list[OutboxRow]:
        assert self._conn is not None and self._leads
        rows = await self._conn.fetch(Q["outbox_batch"], most, DISPATCH_SUBJECTS, young_dispatches)
        return [OutboxRow(r["id"], r["subject"], r["msg_id"], r["payload"]) for r in rows]

    async def outbox_delete(self, ids: Sequence[int]) -> None:
        assert self._conn is not None
        await self._conn.execute(Q["outbox_delete"], list(ids))

    async def close(self) -> None:
        conn, self._conn, self._leads = self._conn, None, False
        if conn is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.close(), 5)


def _summary_fields(row: Any) -> dict[str, Any]:
    return {key: row[key] for key in _SUMMARY_FIELDS}


async def _with_counts(conn: Any, rows: Sequence[Any]) -> list[FlowSummary]:
    """Summaries of flow rows, each with how many of its tasks are in each status."""
    counts: dict[str, dict[str, int]] = {r["id"]: {} for r in rows}
    if counts:
        for c in await conn.fetch(Q["task_counts"], list(counts)):
            counts[c["flow_id"]][c["status"]] = c["n"]
    return [FlowSummary(**_summary_fields(r), task_counts=counts[r["id"]]) for r in rows]


def _schedule_view(row: Any) -> ScheduleView:
    fields = dict(row)
    fields["params"] = msgspec.json.decode(fields["params"])
    return ScheduleView(**fields)
