"""What the benchmarks read from weir's database to measure a run (and the rows
`bench/queries.py` fills it with). Every statement is named in `measure.sql`, loaded by the
data layer's loader and run through a typed method here; weir's own SQL stays in
`weir_scheduler.data`, the peers' (`bench/peers.py`) in their libraries."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal, NamedTuple

from weir_scheduler.data.databases import NamedStatementsConnection
from weir_scheduler.data.queries import parse

Q = parse((Path(__file__).parent / "measure.sql").read_text())

FlowSeconds = Literal["first_started_epoch", "expansion_seconds"]
"""The statements that read one number of seconds off a flow's log."""


class EventTime(NamedTuple):
    type: str
    task: str | None
    at: float


class Measure(NamedStatementsConnection):
    """One connection to weir's database, and the statements of `measure.sql`."""

    async def flows_with_status(self, statuses: Sequence[str]) -> int:
        return int(await self.conn.fetchval(Q["flows_with_status_count"], list(statuses)))

    async def flow_status(self, flow_id: str) -> str | None:
        status: str | None = await self.conn.fetchval(Q["flow_status"], flow_id)
        return status

    async def flow_status_counts(self) -> dict[str, int]:
        return {r["status"]: int(r["n"]) for r in await self.conn.fetch(Q["flow_status_counts"])}

    async def last_terminal_epoch(self) -> float | None:
        last = await self.conn.fetchval(Q["last_terminal_epoch"])
        return float(last) if last is not None else None

    async def event_count(self) -> int:
        return int(await self.conn.fetchval(Q["event_count"]))

    async def event_bytes(self) -> int:
        return int(await self.conn.fetchval(Q["event_bytes"]))

    async def task_count(self) -> int:
        return int(await self.conn.fetchval(Q["task_count"]))

    async def event_times(self, flow_id: str) -> list[EventTime]:
        return [EventTime(*row) for row in await self.conn.fetch(Q["event_times"], flow_id)]

    async def flow_seconds(self, statement: FlowSeconds, flow_id: str) -> float | None:
        """The one number `statement` reads from the log of `flow_id`, as seconds; None when
        the log has none."""
        value = await self.conn.fetchval(Q[statement], flow_id)
        return float(value) if value is not None else None

    async def fill(self, flows: int) -> None:
        """`flows` flows of three tasks each (bench/queries.py), then fresh statistics."""
        await self.conn.execute(Q["fill_flows"], flows)
        await self.conn.execute(Q["fill_tasks"], flows)
        await self.conn.execute(Q["vacuum_analyze"])


measuring = Measure.opened
"""A `Measure` of the database at a URL, for the block."""
