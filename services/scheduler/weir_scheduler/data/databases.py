"""Making and dropping a whole database on a cluster's admin connection: what the dev stack,
the tests and the benchmarks do before a `PostgresData` can open it. A database name cannot
be a bound parameter, so Postgres's own `quote_ident` quotes it into the named statement.

`NamedStatementsConnection` is the base of what reads weir's database beside the scheduler
(`tests/inspection.py`, `bench/measure.py`): each runs statements of its own `.sql` file."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Self

import asyncpg

from weir_scheduler.data.queries import QUERIES as Q


async def _quoted(conn: asyncpg.Connection, name: str) -> str:
    return str(await conn.fetchval(Q["quoted_identifier"], name))


async def create_database(admin_url: str, name: str) -> None:
    """Create database `name` on the cluster of `admin_url` unless it exists."""
    conn = await asyncpg.connect(admin_url)
    try:
        if not await conn.fetchval(Q["database_exists"], name):
            await conn.execute(Q["database_create"].format(database=await _quoted(conn, name)))
    finally:
        await conn.close()


async def drop_database(admin_url: str, name: str) -> None:
    """Drop database `name` (if it exists), ending the sessions still connected to it."""
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(Q["database_drop"].format(database=await _quoted(conn, name)))
    finally:
        await conn.close()


class NamedStatementsConnection:
    """One connection to weir's database for code beside the scheduler that reads or
    prepares it on its own terms (the tests' inspection, the benchmarks' measures): a
    subclass runs the statements of its own `.sql` file, loaded by name with
    `queries.parse`, through typed methods."""

    def __init__(self, conn: asyncpg.Connection | asyncpg.pool.PoolConnectionProxy) -> None:
        self.conn = conn

    @classmethod
    async def connect(cls, database_url: str) -> Self:
        """A connection to `close` when done (`opened` closes it itself)."""
        return cls(await asyncpg.connect(database_url))

    async def close(self) -> None:
        await self.conn.close()

    @classmethod
    @contextlib.asynccontextmanager
    async def opened(cls, database_url: str) -> AsyncIterator[Self]:
        """A connection for the block."""
        db = await cls.connect(database_url)
        try:
            yield db
        finally:
            await db.close()
