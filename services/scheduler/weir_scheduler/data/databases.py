"""Making and dropping a whole database on a cluster's admin connection: what the dev stack,
the tests and the benchmarks do before a `PostgresData` can open it. A database name cannot
be a bound parameter, so Postgres's own `quote_ident` quotes it into the named statement."""

from __future__ import annotations

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
