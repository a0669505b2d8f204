"""Peers on the same private Postgres: PgQueuer and procrastinate with no-op jobs.

Each peer runs in its own process (`python -m bench.peers --peer NAME --dsn URL ...`) and
prints one JSON line: enqueue rate, enqueue-then-drain rate, steady-state rate (producer and
worker at once), enqueue->start latency on an idle queue, and its own peak RSS.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import resource
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

from bench.stats import latency_summary

ENQUEUE_BATCH = 1000
STEADY_BATCH = 100
LATENCY_GAP = 0.05
PHASE_TIMEOUT = 300.0


def _peak_rss_mib() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


class _Counter:
    def __init__(self, target: int) -> None:
        self.target = target
        self.count = 0
        self.first = 0.0
        self.last = 0.0
        self.done = asyncio.Event()

    def hit(self) -> None:
        now = time.time()
        if self.count == 0:
            self.first = now
        self.count += 1
        self.last = now
        if self.count >= self.target:
            self.done.set()


Enqueue = Callable[[int, int], Awaitable[None]]
"""Enqueue `n` no-op jobs in batches of `batch`."""


async def _steady_seconds(state: dict[str, Any], jobs: int, enqueue: Enqueue) -> float:
    """Phase 2, with the worker running: seconds from the first of `jobs` enqueued (in small
    batches, as a producer does) to the start of the last."""
    counter = state["counter"] = _Counter(jobs)
    await asyncio.sleep(0.5)  # the worker is up and idle
    started = time.time()
    await enqueue(jobs, STEADY_BATCH)
    await asyncio.wait_for(counter.done.wait(), PHASE_TIMEOUT)
    return counter.last - started


async def _sample_latency(
    state: dict[str, Any], samples: int, send: Callable[[], Awaitable[Any]]
) -> None:
    """Phase 3: `samples` latency jobs on the idle queue, one at a time; each job appends its
    enqueue-to-start time to `state["samples"]`."""
    for _ in range(samples):
        state["counter"] = _Counter(1)
        await send()
        await asyncio.wait_for(state["counter"].done.wait(), 10.0)
        await asyncio.sleep(LATENCY_GAP)


def _result(
    state: dict[str, Any],
    jobs: int,
    drained: int,
    config: dict[str, Any],
    phases: tuple[float, float, float],
) -> dict[str, Any]:
    """The JSON line of one peer; `phases` are the enqueue, drain and steady seconds."""
    enqueue_s, drain_s, steady_s = phases
    return {
        "jobs": jobs,
        "drained": drained,
        "config": config,
        "enqueue_per_s": jobs / enqueue_s,
        "drain_per_s": jobs / drain_s,
        "enqueue_drain_per_s": jobs / (enqueue_s + drain_s),
        "steady_per_s": jobs / steady_s,
        "enqueue_to_start_ms": latency_summary(state["samples"]),
        "peak_rss_mib": _peak_rss_mib(),
    }


# PgQueuer -----------------------------------------------------------------------------------


async def run_pgqueuer(dsn: str, jobs: int, samples: int, concurrency: int) -> dict[str, Any]:
    import asyncpg
    from pgqueuer import PgQueuer, Queries
    from pgqueuer.models import Job
    from pgqueuer.types import QueueExecutionMode

    setup = await asyncpg.connect(dsn)
    queries = Queries.from_asyncpg_connection(setup)
    await queries.install()

    async def enqueue(n: int, batch: int) -> None:
        for start in range(0, n, batch):
            k = min(batch, n - start)
            await queries.enqueue(["noop"] * k, [None] * k, [0] * k)

    state: dict[str, Any] = {"counter": _Counter(jobs), "samples": []}

    def worker(conn: Any) -> Any:
        pgq = PgQueuer.from_asyncpg_connection(conn)

        @pgq.entrypoint("noop")
        async def noop(job: Job) -> None:
            state["counter"].hit()

        @pgq.entrypoint("latency")
        async def lat(job: Job) -> None:
            sent = float((job.payload or b"0").decode())
            state["samples"].append((time.time() - sent) * 1000.0)
            state["counter"].hit()

        return pgq

    # 1. enqueue N, then drain them with a worker in drain mode.
    t0 = time.time()
    await enqueue(jobs, ENQUEUE_BATCH)
    enqueue_s = time.time() - t0
    conn = await asyncpg.connect(dsn)
    pgq = worker(conn)
    t1 = time.time()
    await asyncio.wait_for(
        pgq.run(mode=QueueExecutionMode.drain, batch_size=concurrency), PHASE_TIMEOUT
    )
    drain_s = time.time() - t1
    drained = state["counter"].count
    await conn.close()

    # 2. steady state: the worker runs while the producer enqueues.
    conn = await asyncpg.connect(dsn)
    pgq = worker(conn)
    running = asyncio.create_task(pgq.run(batch_size=concurrency))
    steady_s = await _steady_seconds(state, jobs, enqueue)

    # 3. latency on an idle queue, one job at a time.
    await _sample_latency(
        state, samples, lambda: queries.enqueue("latency", str(time.time()).encode())
    )
    pgq.shutdown.set()
    await asyncio.wait_for(running, 30.0)
    await conn.close()
    await setup.close()
    config = {"batch_size": concurrency, "driver": "asyncpg"}
    return _result(state, jobs, drained, config, (enqueue_s, drain_s, steady_s))


# procrastinate ------------------------------------------------------------------------------


async def run_procrastinate(dsn: str, jobs: int, samples: int, concurrency: int) -> dict[str, Any]:
    from procrastinate import App, PsycopgConnector

    app = App(connector=PsycopgConnector(conninfo=dsn))
    state: dict[str, Any] = {"counter": _Counter(jobs), "samples": []}

    @app.task(name="noop")
    async def noop() -> None:
        state["counter"].hit()

    @app.task(name="latency")
    async def lat(t: float) -> None:
        state["samples"].append((time.time() - t) * 1000.0)
        state["counter"].hit()

    worker_options: dict[str, Any] = {
        "concurrency": concurrency,
        "install_signal_handlers": False,
        "listen_notify": True,
    }

    async with app.open_async():
        await app.schema_manager.apply_schema_async()

        async def enqueue(n: int, batch: int) -> None:
            for start in range(0, n, batch):
                k = min(batch, n - start)
                await noop.batch_defer_async(*([{}] * k))

        # 1. enqueue N, then a worker that stops once it caught up.
        t0 = time.time()
        await enqueue(jobs, ENQUEUE_BATCH)
        enqueue_s = time.time() - t0
        t1 = time.time()
        await asyncio.wait_for(app.run_worker_async(wait=False, **worker_options), PHASE_TIMEOUT)
        drain_s = time.time() - t1
        drained = state["counter"].count

        # 2. steady state.
        running = asyncio.create_task(app.run_worker_async(wait=True, **worker_options))
        steady_s = await _steady_seconds(state, jobs, enqueue)

        # 3. latency on an idle queue.
        await _sample_latency(state, samples, lambda: lat.defer_async(t=time.time()))
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError, TimeoutError):
            await asyncio.wait_for(running, 30.0)
    config = {"concurrency": concurrency, "connector": "psycopg", "listen_notify": True}
    return _result(state, jobs, drained, config, (enqueue_s, drain_s, steady_s))


RUNNERS = {"pgqueuer": run_pgqueuer, "procrastinate": run_procrastinate}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.peers")
    parser.add_argument("--peer", choices=sorted(RUNNERS), required=True)
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args(argv)
    result = asyncio.run(RUNNERS[args.peer](args.dsn, args.jobs, args.samples, args.concurrency))
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
