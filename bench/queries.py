"""The query paths of `weir flows --where` and `weir tasks --where` on many flows.

    .venv/bin/python -m bench.queries [FLOWS]      # default 100,000 flows of 3 tasks

Fills a private Postgres (migrated as the scheduler migrates it) with FLOWS flows and three
tasks each, then runs each filter as the scheduler's data layer does (a page of 50, newest
first) and prints the best of 5 timings with the scans of the plan. Not part of the suite.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import asyncpg
from weir.embedded import EmbeddedPostgres
from weir_scheduler.data.filters import FLOW_LEAVES, TASK_LEAVES, compile_filter
from weir_scheduler.data.postgres import PostgresData
from weir_scheduler.data.queries import QUERIES

from bench.measure import measuring

FLOWS_DEFAULT = 100_000
PAGE = 51  # a page of 50 and the one that says there is a next

CASES: dict[str, tuple[Any, bool]] = {
    "flows: status=failed": ({"status": "failed"}, False),
    "flows: id=a,b,c": ({"id": ["f10", "f20000", "f99999"]}, False),
    "flows: queue=gpu (1% of flows)": ({"queue": "gpu"}, False),
    "flows: queue=default (all)": ({"queue": "default"}, False),
    "flows: param.date=X (0.3%)": ({"params": {"date": "2026-42"}}, False),
    "flows: scheduled>T": ({"scheduled_after": "2030-01-01T00:00:00Z"}, False),
    "tasks: status=failed and queue=gpu": ({"and": [{"status": "failed"}, {"queue": "gpu"}]}, True),
    "tasks: status=failed (1%)": ({"status": "failed"}, True),
}


def statement(where: Any, tasks: bool) -> tuple[str, list[Any]]:
    """A first page as the data layer asks for it (postgres.py flow_query / task_query)."""
    condition, params = compile_filter(where, leaves=TASK_LEAVES if tasks else FLOW_LEAVES)
    if tasks:
        order = "t.flow_created_at DESC, t.flow_id DESC, t.position"
        return (
            f"{QUERIES['query_tasks_select']} WHERE {condition} ORDER BY {order} LIMIT {PAGE}",
            params,
        )
    order = "f.created_at DESC, f.id DESC"
    return (
        f"{QUERIES['query_flows_select']} WHERE {condition} ORDER BY {order} LIMIT {PAGE}",
        params,
    )


async def best_of(conn: asyncpg.Connection, sql: str, params: list[Any], runs: int = 5) -> float:
    timings = []
    for _ in range(runs):
        start = time.perf_counter()
        await conn.fetch(sql, *params)
        timings.append(time.perf_counter() - start)
    return min(timings)


async def measure(flows: int, folder: Path) -> None:
    cluster = EmbeddedPostgres(folder)
    cluster.start()
    try:
        pool = await asyncpg.create_pool(cluster.url, min_size=1, max_size=2)
        await PostgresData(pool, cluster.url).migrate()
        await pool.close()
        async with measuring(cluster.url) as db:
            await db.fill(flows)
        conn = await asyncpg.connect(cluster.url)
        print(f"{flows:,} flows, {3 * flows:,} tasks; a page of 50, best of 5")
        for label, (where, tasks) in CASES.items():
            sql, params = statement(where, tasks)
            await conn.fetch(sql, *params)
            seconds = await best_of(conn, sql, params)
            plan = [row[0] for row in await conn.fetch("EXPLAIN " + sql, *params)]
            scans = "; ".join(
                line.strip().split("  (")[0].removeprefix("->").strip()
                for line in plan
                if "Scan" in line
            )
            print(f"{label:38s} {seconds * 1000:7.2f} ms  {scans}")
        ids = [f"f{i}" for i in range(1, 51)]
        seconds = await best_of(conn, QUERIES["task_counts"], [ids])
        print(f"{'task counts of a page of 50 flows':38s} {seconds * 1000:7.2f} ms")
        await conn.close()
    finally:
        cluster.stop()


def main() -> None:
    flows = int(sys.argv[1]) if len(sys.argv) > 1 else FLOWS_DEFAULT
    with tempfile.TemporaryDirectory(prefix="weir-bench-queries-") as folder:
        asyncio.run(measure(flows, Path(folder)))


if __name__ == "__main__":
    main()
