"""The tests' look into the scheduler's database behind its back: what a test asserts about
the rows (the log's order, nothing written, no secret stored) and the faults it injects
(a dropped table, an aged outbox row). Every statement is named in `inspection.sql`, loaded
by the data layer's loader, and run through a typed method here; the scheduler's own SQL
stays in `weir_scheduler.data`."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import NamedTuple

import asyncpg
from asyncpg.transaction import Transaction
from weir_scheduler.data.databases import NamedStatementsConnection
from weir_scheduler.data.queries import parse

Q = parse((Path(__file__).parent / "inspection.sql").read_text())

TABLES = ("events", "flows", "tasks", "timers", "schedules")
"""The tables `row_counts` counts."""


class LoggedRow(NamedTuple):
    id: str
    seq: int
    type: str
    task: str | None


class FlowSeqs(NamedTuple):
    flow_id: str
    seqs: list[int]
    succeeded: int


class SessionState(NamedTuple):
    advisory_locks: int
    listening: int
    cursors: int
    settings: list[str]


class Inspection(NamedStatementsConnection):
    """One connection to the database, and the statements of `inspection.sql`."""

    def transaction(self) -> Transaction:
        return self.conn.transaction()

    async def ping(self) -> int:
        return int(await self.conn.fetchval(Q["ping"]))

    async def session_state(self) -> SessionState:
        """What this connection keeps between statements (see `inspection.sql`)."""
        row = await self.conn.fetchrow(Q["session_state"])
        assert row is not None  # one row, always
        return SessionState(row[0], row[1], row[2], list(row[3]))

    async def current_database(self) -> str:
        return str(await self.conn.fetchval(Q["current_database"]))

    async def table_columns(self, table: str) -> set[str]:
        return {row[0] for row in await self.conn.fetch(Q["table_columns"], table)}

    async def event_log(self, flow_id: str) -> list[LoggedRow]:
        return [LoggedRow(*row) for row in await self.conn.fetch(Q["event_log"], flow_id)]

    async def event_texts(self, flow_id: str | None = None) -> list[str]:
        """Every event's data (and metadata) as text; of one flow, its data."""
        if flow_id is None:
            rows = await self.conn.fetch(Q["event_texts"])
        else:
            rows = await self.conn.fetch(Q["event_texts_of_flow"], flow_id)
        return [row[0] for row in rows]

    async def event_seqs_by_flow(self) -> list[FlowSeqs]:
        return [FlowSeqs(*row) for row in await self.conn.fetch(Q["event_seqs_by_flow"])]

    async def event_count(self, flow_ids: Sequence[str]) -> int:
        return int(await self.conn.fetchval(Q["event_count_of_flows"], list(flow_ids)))

    async def flows_by_finish(self, flow_ids: Sequence[str]) -> list[str]:
        """`flow_ids` in the order they finished."""
        return [row[0] for row in await self.conn.fetch(Q["flows_by_finish"], list(flow_ids))]

    async def flow_verdicts(self) -> list[asyncpg.Record]:
        """Every flow's `id`, `status` and `errors` (JSON text)."""
        return list(await self.conn.fetch(Q["flow_verdicts"]))

    async def flow_count_named(self, name: str) -> int:
        return int(await self.conn.fetchval(Q["flow_count_named"], name))

    async def flow_count_with_status(self, status: str) -> int:
        return int(await self.conn.fetchval(Q["flow_count_with_status"], status))

    async def row_counts(self) -> dict[str, int]:
        row = await self.conn.fetchrow(Q["row_counts"])
        assert row is not None
        return {table: int(row[table]) for table in TABLES}

    async def timer_count(self, flow_id: str, kind: str) -> int:
        return int(await self.conn.fetchval(Q["timer_count"], flow_id, kind))

    async def outbox_count(self) -> int:
        return int(await self.conn.fetchval(Q["outbox_count"]))

    async def every_row_as_text(self) -> AsyncIterator[tuple[str, int, str]]:
        """(table, row number, row as text) for every row of every table."""
        for table, query in await self.conn.fetch(Q["every_table_as_text"]):
            for n, (row,) in enumerate(await self.conn.fetch(query)):
                yield table, n, row

    # Faults -------------------------------------------------------------------------------

    async def outbox_insert(self, subject: str, msg_id: str) -> int:
        """An outbox row with an empty payload, as an append would write it; its id."""
        return int(await self.conn.fetchval(Q["outbox_insert"], subject, msg_id))

    async def outbox_notify(self) -> None:
        await self.conn.execute(Q["outbox_notify"])

    async def outbox_age(self, row_id: int) -> None:
        """Make the outbox row a minute old."""
        await self.conn.execute(Q["outbox_age"], row_id)

    async def schedules_overdue(self) -> None:
        """Every schedule's next run five seconds in the past."""
        await self.conn.execute(Q["schedules_overdue"])

    async def timers_table_drop(self) -> None:
        await self.conn.execute(Q["timers_table_drop"])


inspecting = Inspection.opened
"""An `Inspection` of the database at a URL, for the block."""
