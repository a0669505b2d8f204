"""The design's floor: weir's messages and writes per single-task flow, with none of its logic.

    .venv/bin/python -m bench.skeleton [--flows 20000] [--code REV] [--workdir DIR]

Three processes move the same messages as a single-task flow through weir, on weir's own
streams and with its own `Publisher` and `fetch_batch`, but decide nothing: a "scheduler"
that takes submits (256 at a time, as weir's intake), writes two event rows per flow in one
statement, publishes the flow's dispatch and its two events and acks the submits; a
"runner" that takes dispatches, publishes one report for each and acks them; and the same
"scheduler" taking the reports, writing three event rows per flow and publishing those three
events. Eight acknowledged publishes and two appends per flow, as weir does, and no
validation, planning, deciding, projections, outbox, tokens, telemetry or executor.

What it prints is a bound on what any implementation of this design could reach on this
machine: single-task flows per second and each process's CPU per flow (skeleton scheduler,
skeleton runner, nats-server, Postgres). weir's own figures in the same units are in
`bench/README.md`; the difference is the cost of weir's per-flow work.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import msgspec
import nats
import psutil
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from weir.embedded import EmbeddedNats
from weir.jetstream import Outgoing, Publisher, fetch_batch, stream_configs
from weir_proto import subjects

from bench.__main__ import use_code
from bench.scenarios import _log
from bench.weirstack import Cluster

BATCH = 256
"""Messages a pull takes at most (weir's intake batch)."""
RUNNER_SLOTS = 32
"""Dispatches the skeleton runner takes at once (the bench's runner concurrency)."""
IN_FLIGHT = 256
"""Submits the driver keeps unacknowledged (as the bench's one-submit-per-flow clients)."""
ACK_TIMEOUT = 30.0
SPEC = msgspec.json.encode(
    {"name": "single", "tasks": [{"name": "only", "cmd": ["true"], "queue": "default"}]}
)
SCHEMA = """
CREATE TABLE IF NOT EXISTS skeleton_events (
    flow_id text NOT NULL, seq int NOT NULL, type text NOT NULL, payload bytea NOT NULL,
    at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (flow_id, seq)
);
"""
APPEND = """
INSERT INTO skeleton_events (flow_id, seq, type, payload)
SELECT * FROM unnest($1::text[], $2::int[], $3::text[], $4::bytea[])
"""
DONE_SUBJECT = "skeleton.done"
TASKS_HEADER = "Skeleton-Tasks"
GROUPED_ENV = "WEIR_SKELETON_GROUPED"
GROUPED = os.environ.get(GROUPED_ENV) == "1"
"""Whether this process publishes each append's events as one message (`--grouped`)."""
START_WAIT = 2.0
"""Seconds the skeleton processes get to connect and start pulling."""
RUN_TIMEOUT = 600.0


class _Event(msgspec.Struct):
    id: str
    flow_id: str
    seq: int
    type: str
    spec: msgspec.Raw | None = None
    task: str | None = None


class _Work(msgspec.Struct):
    """A skeleton dispatch, and the report that echoes it."""

    flow_id: str
    task: str
    index: int
    tasks: int
    exit_code: int | None = None


def _event(flow_id: str, seq: int, kind: str, task: str | None = None) -> _Event:
    return _Event(f"{flow_id}.{seq}", flow_id, seq, kind, task=task)


_encode = msgspec.json.encode
_report_decoder = msgspec.json.Decoder(_Work)


async def _append(pool: asyncpg.Pool, events: list[_Event], payloads: list[bytes]) -> None:
    async with pool.acquire() as conn:
        await conn.execute(
            APPEND,
            [e.flow_id for e in events],
            [e.seq for e in events],
            [e.type for e in events],
            payloads,
        )


def _events_out(events: list[_Event], payloads: list[bytes]) -> list[Outgoing]:
    if GROUPED:  # one message per flow's append (a wire weir does not have: see --grouped)
        by_flow: dict[str, list[bytes]] = {}
        for e, p in zip(events, payloads, strict=True):
            by_flow.setdefault(e.flow_id, []).append(p)
        return [
            (
                subjects.event(flow_id, "batch"),
                b"[" + b",".join(ps) + b"]",
                {"Nats-Msg-Id": f"{flow_id}.{len(ps)}"},
            )
            for flow_id, ps in by_flow.items()
        ]
    return [
        (subjects.event(e.flow_id, e.type), p, {"Nats-Msg-Id": e.id})
        for e, p in zip(events, payloads, strict=True)
    ]


async def _publish(publisher: Publisher, messages: list[Outgoing]) -> None:
    for outcome in await publisher.publish(messages, ACK_TIMEOUT):
        if isinstance(outcome, BaseException):
            raise outcome


async def scheduler(nats_url: str, dsn: str) -> None:
    """Submits in, two events and a dispatch out; reports in, three events out."""
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    publisher = Publisher(nc)
    pool = await asyncpg.create_pool(dsn, min_size=2, max_size=4)
    config = ConsumerConfig(ack_policy=AckPolicy.EXPLICIT, ack_wait=60, max_ack_pending=-1)
    submits = await js.pull_subscribe(
        subjects.SUBMIT, durable="skeleton-submit", stream=subjects.STREAM_COMMANDS, config=config
    )
    reports = await js.pull_subscribe(
        f"{subjects.STATUS_PREFIX}.>",
        durable="skeleton-status",
        stream=subjects.STREAM_STATUS,
        config=config,
    )

    async def take_submits() -> None:
        while True:
            msgs = await fetch_batch(submits, BATCH, 1.0)
            if not msgs:
                continue
            events: list[_Event] = []
            dispatches: list[Outgoing] = []
            for msg in msgs:
                headers = msg.headers or {}
                flow_id = headers.get("Nats-Msg-Id", "")
                tasks = int(headers.get(TASKS_HEADER, "1"))
                spec = msgspec.Raw(msg.data)
                events.append(_Event(f"{flow_id}.1", flow_id, 1, "flow_submitted", spec=spec))
                subject = subjects.dispatch("default", flow_id, on_exit=False)
                for i in range(tasks):
                    seq = 2 + i
                    name = f"t{i}"
                    events.append(
                        _Event(f"{flow_id}.{seq}", flow_id, seq, "task_dispatched", task=name)
                    )
                    dispatch = _encode(
                        {"flow_id": flow_id, "task": name, "index": i, "tasks": tasks}
                    )
                    dispatches.append((subject, dispatch, {"Nats-Msg-Id": f"{flow_id}.{seq}"}))
            payloads = [_encode(e) for e in events]
            await _append(pool, events, payloads)
            await _publish(publisher, dispatches + _events_out(events, payloads))
            for msg in msgs:
                await msg.ack()

    async def take_reports() -> None:
        while True:
            msgs = await fetch_batch(reports, BATCH, 1.0)
            if not msgs:
                continue
            events = []
            for msg in msgs:
                report = _report_decoder.decode(msg.data)
                flow_id, name, first = (
                    report.flow_id,
                    report.task,
                    2 + report.tasks + 2 * report.index,
                )
                events.append(
                    _Event(f"{flow_id}.{first}", flow_id, first, "task_started", task=name)
                )
                events.append(
                    _Event(
                        f"{flow_id}.{first + 1}", flow_id, first + 1, "task_succeeded", task=name
                    )
                )
                if report.tasks == 1:
                    events.append(
                        _Event(f"{flow_id}.{first + 2}", flow_id, first + 2, "flow_succeeded")
                    )
            payloads = [_encode(e) for e in events]
            await _append(pool, events, payloads)
            await _publish(publisher, _events_out(events, payloads))
            for msg in msgs:
                await msg.ack()
            await nc.publish(DONE_SUBJECT, str(len(msgs)).encode())

    await asyncio.gather(take_submits(), take_reports())


async def runner(nats_url: str) -> None:
    """Dispatches in, one report each out."""
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    publisher = Publisher(nc)
    sub = await js.pull_subscribe(
        subjects.queue_dispatches("default"),
        durable="skeleton-runner",
        stream=subjects.STREAM_DISPATCH,
        config=ConsumerConfig(
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.ALL,
            ack_wait=60,
            max_deliver=-1,
            max_ack_pending=-1,
        ),
    )
    while True:
        msgs = await fetch_batch(sub, RUNNER_SLOTS, 1.0)
        reports: list[Outgoing] = []
        for msg in msgs:
            dispatch = _report_decoder.decode(msg.data)
            report = _encode(msgspec.structs.replace(dispatch, exit_code=0))
            msg_id = f"{dispatch.flow_id}.{dispatch.task}:finished"
            reports.append((subjects.status(dispatch.flow_id), report, {"Nats-Msg-Id": msg_id}))
        if reports:
            await _publish(publisher, reports)
        for msg in msgs:
            await msg.ack()


async def _drive(nats_url: str, flows: int, tasks: int) -> float:
    """Submit `flows` flows of `tasks` parallel tasks each, `IN_FLIGHT` unacknowledged at
    most; seconds from the first submit until the skeleton scheduler has recorded the end of
    every task."""
    nc = await nats.connect(nats_url)
    publisher = Publisher(nc)
    reported = 0
    all_reported = asyncio.Event()

    async def on_done(msg: Any) -> None:
        nonlocal reported
        reported += int(msg.data)
        if reported >= flows * tasks:
            all_reported.set()

    await nc.subscribe(DONE_SUBJECT, cb=on_done)
    stamp = int(time.time() * 1000)
    headers = {TASKS_HEADER: str(tasks)}
    t0 = time.perf_counter()
    for start in range(0, flows, IN_FLIGHT):
        batch = [
            (subjects.SUBMIT, SPEC, {**headers, "Nats-Msg-Id": f"sk-{stamp}-{i}"})
            for i in range(start, min(flows, start + IN_FLIGHT))
        ]
        await _publish(publisher, batch)
    await asyncio.wait_for(all_reported.wait(), RUN_TIMEOUT)
    elapsed = time.perf_counter() - t0
    await nc.close()
    return elapsed


async def _create_streams(nats_url: str) -> None:
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    for config in stream_configs():
        await js.add_stream(config)
    await nc.close()


async def _counts(nats_url: str, dsn: str) -> dict[str, int]:
    """What the run left: event messages on `WEIR_EVENTS` and event rows in Postgres, and
    the work streams' messages still there (none once every one was acknowledged)."""
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    left = 0
    for stream in (subjects.STREAM_DISPATCH, subjects.STREAM_STATUS):
        left += (await js.stream_info(stream)).state.messages
    events = (await js.stream_info(subjects.STREAM_EVENTS)).state.messages
    await nc.close()
    conn = await asyncpg.connect(dsn)
    rows = await conn.fetchval("SELECT count(*) FROM skeleton_events")
    await conn.close()
    return {"event_messages": events, "event_rows": int(rows), "work_left": left}


async def _create_schema(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    await conn.execute(SCHEMA)
    await conn.close()


def _cpu_seconds(processes: list[psutil.Process]) -> float:
    total = 0.0
    for proc in processes:
        try:
            times = proc.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def _pid(server: Any) -> int:
    """The pid of an embedded server's process (as `weirstack` watches it)."""
    proc = getattr(server, "_proc", None)
    assert proc is not None, "the server is not running"
    return int(proc.pid)


def _tree(pid: int) -> list[psutil.Process]:
    root = psutil.Process(pid)
    return [root, *root.children(recursive=True)]


def run(
    cluster: Cluster, workdir: Path, flows: int, tasks: int = 1, grouped: bool = False
) -> dict[str, Any]:
    """One skeleton run on `cluster`'s Postgres (a database of its own) and a nats-server of
    its own: `flows` flows of `tasks` tasks; tasks/s and CPU ms per task of each process."""
    server = EmbeddedNats(workdir / f"skeleton-nats-{uuid.uuid4().hex[:8]}")
    procs: list[subprocess.Popen[bytes]] = []
    database = ""
    try:
        nats_url = server.start()
        database, dsn = cluster.new_database("skeleton")
        asyncio.run(_create_streams(nats_url))
        asyncio.run(_create_schema(dsn))
        env = {
            **os.environ,
            "PYTHONPATH": str(Path(__file__).resolve().parent.parent),
            GROUPED_ENV: "1" if grouped else "",
        }
        for role in ("scheduler", "runner"):
            command = [sys.executable, "-m", "bench.skeleton", "--role", role]
            procs.append(subprocess.Popen([*command, "--nats", nats_url, "--dsn", dsn], env=env))
        time.sleep(START_WAIT)
        watched = {
            "scheduler": [psutil.Process(procs[0].pid)],
            "runner": [psutil.Process(procs[1].pid)],
            "nats": _tree(_pid(server)),
            "postgres": _tree(_pid(cluster.postgres)),
        }
        before = {name: _cpu_seconds(ps) for name, ps in watched.items()}
        elapsed = asyncio.run(_drive(nats_url, flows, tasks))
        after = {name: _cpu_seconds(ps) for name, ps in watched.items()}
        counts = asyncio.run(_counts(nats_url, dsn))
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()
        server.stop()
        if database:
            cluster.drop_database(database)
    done = flows * tasks
    return {
        "flows": flows,
        "tasks_per_flow": tasks,
        "grouped_events": grouped,
        "seconds": elapsed,
        "tasks_per_s": done / elapsed,
        "cpu_ms_per_task": {name: 1000.0 * (after[name] - before[name]) / done for name in watched},
        **counts,
    }


def scenario(cluster: Cluster, workdir: Path, flows: int, fan: int) -> dict[str, Any]:
    """The bench's `skeleton` scenario: `flows` single-task flows, then one `fan`-task flow."""
    _log(f"skeleton: {flows:,} single-task flows, then one flow of {fan:,} tasks, no weir logic")
    result = {
        "single_task_flows": run(cluster, workdir, flows),
        "fan": run(cluster, workdir, 1, fan),
    }
    for name, one in result.items():
        _log(f"    {name}: {one['tasks_per_s']:,.0f} tasks/s, {_cpu_line(one)}")
    return result


def _cpu_line(result: dict[str, Any]) -> str:
    cpu = result["cpu_ms_per_task"]
    return (
        "CPU ms per task: "
        + ", ".join(f"{name} {ms:.3f}" for name, ms in cpu.items())
        + f" (in all {sum(cpu.values()):.3f})"
    )


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.skeleton", description=__doc__)
    p.add_argument("--flows", type=int, default=20_000)
    p.add_argument("--tasks", type=int, default=1, help="parallel tasks per flow (1)")
    p.add_argument("--workdir", type=Path, default=None)
    p.add_argument("--code", default="tree", help="a git revision to measure (as the bench's)")
    p.add_argument(
        "--grouped",
        action="store_true",
        help="publish each append's events as one message (5 publishes per flow, not 8)",
    )
    p.add_argument("--role", choices=("scheduler", "runner"), help=argparse.SUPPRESS)
    p.add_argument("--nats", help=argparse.SUPPRESS)
    p.add_argument("--dsn", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.role == "scheduler":
        asyncio.run(scheduler(args.nats, args.dsn))
        return
    if args.role == "runner":
        asyncio.run(runner(args.nats))
        return
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="weir-skeleton-"))
    print(f"measuring {use_code(args.code, workdir / 'code')}")
    cluster = Cluster(workdir)
    cluster.start()
    try:
        result = run(cluster, workdir, args.flows, args.tasks, args.grouped)
    finally:
        cluster.stop()
    print(json.dumps(result))
    print(
        f"{args.flows:,} flows of {args.tasks:,} tasks through the skeleton: "
        f"{result['tasks_per_s']:,.0f} tasks/s; {_cpu_line(result)}"
    )


if __name__ == "__main__":
    main()
