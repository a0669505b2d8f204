"""The health responder says ready when NATS and Postgres answer, and degraded (still live)
while Postgres is down; per-instance and per-service subjects both answer."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from weir.embedded import EmbeddedNats, EmbeddedPostgres
from weir.health import probe, serve_health
from weir.jetstream import close, connect
from weir_scheduler.data.postgres import PostgresData, create_pool

from tests.waiting import eventually

pytestmark = pytest.mark.slow


async def test_health_reports_ready_then_degraded_while_postgres_is_down(
    tmp_path: Path, nats_server: EmbeddedNats
) -> None:
    pg = EmbeddedPostgres(tmp_path / "pg")
    await asyncio.to_thread(pg.start)
    nc = await connect(nats_server.url, "health-test")
    pool = await create_pool(pg.url, min_size=1, max_size=2)
    try:
        data = PostgresData(pool, pg.url)
        health = await serve_health(nc, "scheduler", "replica-a", postgres=data.ping)
        other = await serve_health(nc, "scheduler", "replica-b", postgres=data.ping)
        starting = await probe(nc, "scheduler", "replica-a")
        assert starting["status"] == "starting" and starting["ready"] is False

        health.set_ready()
        report = await probe(nc, "scheduler", "replica-a")
        assert report["status"] == "ok" and report["ready"] is True
        assert report["checks"] == {"nats": {"ok": True}, "postgres": {"ok": True}}
        assert report["instance"] == "replica-a"
        anyone = await probe(nc, "scheduler")
        assert anyone["instance"] in {"replica-a", "replica-b"}

        await asyncio.to_thread(pg.stop)
        down = await probe(nc, "scheduler", "replica-a", timeout=5)
        assert down["status"] == "degraded" and down["live"] is True and down["ready"] is False
        assert down["checks"]["postgres"]["ok"] is False
        assert "postgresql://" not in down["checks"]["postgres"]["error"]

        await asyncio.to_thread(pg.start)
        await eventually(
            lambda: probe(nc, "scheduler", "replica-a", timeout=5),
            lambda report: report["status"] == "ok",
            "replica-a healthy again once Postgres is back",
        )
        await health.stop()
        await other.stop()
        with pytest.raises(Exception):  # noqa: B017 - nobody answers: a NATS no-responders error
            await probe(nc, "scheduler", timeout=0.5)
    finally:
        await asyncio.wait_for(pool.close(), 5)
        await close(nc)
        pg.stop()
