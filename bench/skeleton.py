"""The design's floor: weir's messages and writes per single-task flow, with none of its logic.

    .venv/bin/python -m bench.skeleton [--flows 20000] [--tasks 1] [--grouped] [--lean-pull]
                                       [--code REV] [--workdir DIR]
    .venv/bin/python -m bench.skeleton --latency 100 [--chain 200]

Three processes move the same messages as a single-task flow through weir, on weir's own
streams and with its own `Publisher` and `Puller`, but decide nothing: the driver (this
process, not measured) that submits; a "scheduler" that takes submits (256 at a time, as
weir's intake), writes two event rows per flow in one statement, publishes the flow's
dispatch and its two events and acks the submits; a "runner" that takes dispatches,
publishes one report for each and acks them; and the same "scheduler" taking the reports,
writing three event rows per flow and publishing those three events. Eight acknowledged
publishes and two appends per flow, as weir does, and no validation, planning, deciding,
projections, outbox, tokens, telemetry or executor. (A flow of many tasks writes no
`flow_succeeded`: one event short of weir's, for the flow.)

What it prints bounds what an implementation of this wire as weir is built (Python asyncio
services on nats-py and asyncpg) can reach on this machine: tasks per second and each
process's CPU per task (skeleton scheduler, skeleton runner, nats-server, Postgres). weir's
own figures in the same units are in `bench/README.md`; the difference is the cost of
weir's per-flow work. Two variants price changes weir has not made: `--grouped` publishes
each append's events as one message (five publishes per flow, not eight: a wire change);
`--lean-pull` keeps one pull request for a batch open across takes, gathering what it
brings with a subscription callback (weir's `Puller` gathers the same way, but asks for one
message and then for what is pending, so that no request outlives its take).

`--latency` bounds the bench's latency scenario the same way: single-task flows submitted
one at a time on an idle skeleton (submit until the runner took the dispatch), then one
chain whose scheduler dispatches each task when the one before it reports, in the append
that records that report (a task's report sent until the runner took the next).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import msgspec
import nats
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from weir.embedded import EmbeddedNats
from weir.jetstream import Outgoing, Publisher, pull_consumer, stream_configs
from weir_proto import subjects
from weir_scheduler.data.databases import NamedStatementsConnection
from weir_scheduler.data.postgres import create_pool
from weir_scheduler.data.queries import parse

from bench.stats import latency_summary
from bench.weirstack import Cluster, RssSampler

BATCH = 256
"""Messages a pull takes at most (weir's intake batch)."""
RUNNER_SLOTS = 32
"""Dispatches the skeleton runner takes at once (the bench's runner concurrency)."""
IN_FLIGHT = 256
"""Submits the driver keeps unacknowledged (as the bench's one-submit-per-flow clients)."""
ACK_TIMEOUT = 30.0
"""Seconds a batch of publishes waits for its acks (any more is a failed run)."""
SPEC = msgspec.json.encode(
    {"name": "single", "tasks": [{"name": "only", "cmd": ["true"], "queue": "default"}]}
)
T = TypeVar("T")

DONE_SUBJECT = "skeleton.done"
TASKS_HEADER = "Skeleton-Tasks"
CHAIN_HEADER = "Skeleton-Chain"
TIMES_SUBJECT = "skeleton.times"
TIMES_ENV = "WEIR_SKELETON_TIMES"
TIMES = os.environ.get(TIMES_ENV) == "1"
"""Whether the runner keeps, for each dispatch, when it took it and when it reported it
(`latency`), to hand over on `TIMES_SUBJECT` at the end: nothing is sent while measuring."""
IDLE = 0.05
"""Seconds between two latency samples (as the bench's latency scenario)."""
READY_SUBJECT = "skeleton.ready"
GROUPED_ENV = "WEIR_SKELETON_GROUPED"
GROUPED = os.environ.get(GROUPED_ENV) == "1"
"""Whether this process publishes each append's events as one message (`--grouped`)."""
LEAN_ENV = "WEIR_SKELETON_LEAN_PULL"
LEAN_PULL = os.environ.get(LEAN_ENV) == "1"
"""Whether this process takes messages with `_LeanPull`, not weir's `Puller` (`--lean-pull`)."""
PULL_WAIT = 1.0
"""Seconds a pull request waits for its first message (as weir's intakes wait)."""
START_TIMEOUT = 60.0
"""Seconds the two processes get to import, connect and make their consumers."""
RUN_TIMEOUT = 600.0
"""Seconds a run may take before it is a failure."""
SETTLE_TIMEOUT = 5.0
"""Seconds the last acks (sent without waiting) get to reach the server before counting."""


class _Event(msgspec.Struct):
    id: str
    flow_id: str
    seq: int
    type: str
    spec: msgspec.Raw | None = None
    task: str | None = None


class _Work(msgspec.Struct, omit_defaults=True):
    """A skeleton dispatch, and the report that echoes it."""

    flow_id: str
    task: str
    index: int
    tasks: int
    chain: bool = False
    """The flow's tasks run one after another (the next is dispatched when one reports)."""
    exit_code: int | None = None


def _event(
    flow_id: str, seq: int, kind: str, task: str | None = None, spec: msgspec.Raw | None = None
) -> _Event:
    return _Event(f"{flow_id}.{seq}", flow_id, seq, kind, spec=spec, task=task)


_encode = msgspec.json.encode
_work_decoder = msgspec.json.Decoder(_Work)

Q = parse((Path(__file__).parent / "skeleton.sql").read_text())


class SkeletonLog(NamedStatementsConnection):
    """The skeleton's event rows, through the statements of `skeleton.sql`."""

    async def create(self) -> None:
        await self.conn.execute(Q["schema"])

    async def append(self, events: Sequence[_Event], payloads: Sequence[bytes]) -> None:
        await self.conn.execute(
            Q["append"],
            [e.flow_id for e in events],
            [e.seq for e in events],
            [e.type for e in events],
            list(payloads),
        )

    async def event_rows(self) -> int:
        return int(await self.conn.fetchval(Q["event_rows"]))


async def _append(pool: asyncpg.Pool, events: list[_Event], payloads: list[bytes]) -> None:
    async with pool.acquire() as conn:
        await SkeletonLog(conn).append(events, payloads)


def _events_out(events: list[_Event], payloads: list[bytes]) -> list[Outgoing]:
    if GROUPED:  # one message per flow's append (a wire weir does not have: see --grouped)
        by_flow: dict[str, tuple[str, list[bytes]]] = {}
        for e, p in zip(events, payloads, strict=True):
            by_flow.setdefault(e.flow_id, (e.id, []))[1].append(p)  # the first event's id
        return [
            (subjects.event(flow_id, "batch"), b"[" + b",".join(ps) + b"]", {"Nats-Msg-Id": first})
            for flow_id, (first, ps) in by_flow.items()
        ]
    return [
        (subjects.event(e.flow_id, e.type), p, {"Nats-Msg-Id": e.id})
        for e, p in zip(events, payloads, strict=True)
    ]


async def _publish(publisher: Publisher, messages: list[Outgoing]) -> None:
    for outcome in await publisher.publish(messages, ACK_TIMEOUT):
        if isinstance(outcome, BaseException):
            raise outcome


def _dispatch(work: _Work, seq: int) -> Outgoing:
    subject = subjects.dispatch("default", work.flow_id, on_exit=False)
    return (subject, _encode(work), {"Nats-Msg-Id": f"{work.flow_id}.{seq}"})


Take = Callable[[int], Awaitable[list[Msg]]]
"""Up to N messages, waiting (at most `PULL_WAIT`) for the first."""


async def _puller(
    nc: NATS, subject: str, durable: str, stream: str, config: ConsumerConfig
) -> Take:
    """A durable pull consumer, taken from with weir's `Puller` or with `_LeanPull`."""
    if not LEAN_PULL:
        puller = await pull_consumer(nc, subject, durable, stream, config)
        return lambda most: puller.take(most, PULL_WAIT)
    sub = await nc.jetstream().pull_subscribe(
        subject, durable=durable, stream=stream, config=config
    )
    await sub.unsubscribe()  # the consumer stays; only nats-py's way of pulling goes
    lean = _LeanPull(nc, stream, durable)
    await lean.start()
    return lean.take


class _LeanPull:
    """A pull consumer's messages without nats-py's machinery per message (a task, a timer
    and a future in `next_msg`): one pull request for up to N messages, the messages
    gathered by a subscription callback; a new request once the last one ended (its N
    messages came, or a status message said it expired)."""

    def __init__(self, nc: NATS, stream: str, durable: str) -> None:
        self.nc = nc
        self.next_subject = f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{durable}"
        self.inbox = ""
        self.msgs: list[Msg] = []
        self.left = 0
        self.arrived = asyncio.Event()

    async def start(self) -> None:
        self.inbox = self.nc.new_inbox()
        await self.nc.subscribe(self.inbox, cb=self._delivered)

    async def _delivered(self, msg: Msg) -> None:
        if msg.headers and msg.headers.get("Status"):  # 404, 408, 409: the request ended
            self.left = 0
        else:
            self.msgs.append(msg)
            self.left -= 1
        self.arrived.set()

    async def take(self, most: int) -> list[Msg]:
        if self.left <= 0 and not self.msgs:
            request = {"batch": most, "expires": int(PULL_WAIT * 1e9)}
            await self.nc.publish(self.next_subject, _encode(request), reply=self.inbox)
            self.left = most
        while not self.msgs:
            self.arrived.clear()
            try:  # the server ends the request by PULL_WAIT; a lost ending ends it here
                await asyncio.wait_for(self.arrived.wait(), PULL_WAIT + 1.0)
            except TimeoutError:
                self.left = 0
            if self.left <= 0 and not self.msgs:
                return []
        msgs, self.msgs = self.msgs, []
        return msgs


async def scheduler(nats_url: str, dsn: str) -> None:
    """Submits in, two events and a dispatch out; reports in, three events out."""
    nc = await nats.connect(nats_url)
    publisher = Publisher(nc)
    pool = await create_pool(dsn, 2, 2)  # weir's pool: no reset query on release
    config = ConsumerConfig(ack_policy=AckPolicy.EXPLICIT, ack_wait=60, max_ack_pending=-1)
    submits = await _puller(
        nc, subjects.SUBMIT, "skeleton-submit", subjects.STREAM_COMMANDS, config
    )
    reports = await _puller(
        nc, f"{subjects.STATUS_PREFIX}.>", "skeleton-status", subjects.STREAM_STATUS, config
    )
    await nc.publish(READY_SUBJECT, b"scheduler")

    async def take_submits() -> None:
        while True:
            msgs = await submits(BATCH)
            if not msgs:
                continue
            events: list[_Event] = []
            dispatches: list[Outgoing] = []
            for msg in msgs:
                headers = msg.headers or {}
                flow_id = headers.get("Nats-Msg-Id", "")
                tasks = int(headers.get(TASKS_HEADER, "1"))
                chain = headers.get(CHAIN_HEADER) == "1"
                spec = msgspec.Raw(msg.data)
                events.append(_event(flow_id, 1, "flow_submitted", spec=spec))
                for i in range(1 if chain else tasks):
                    seq = 2 + i
                    events.append(_event(flow_id, seq, "task_dispatched", f"t{i}"))
                    dispatches.append(_dispatch(_Work(flow_id, f"t{i}", i, tasks, chain), seq))
            payloads = [_encode(e) for e in events]
            await _append(pool, events, payloads)
            await _publish(publisher, dispatches + _events_out(events, payloads))
            for msg in msgs:
                await msg.ack()

    async def take_reports() -> None:
        while True:
            msgs = await reports(BATCH)
            if not msgs:
                continue
            events = []
            dispatches: list[Outgoing] = []
            for msg in msgs:
                report = _work_decoder.decode(msg.data)
                flow_id, name, index = report.flow_id, report.task, report.index
                # a chain's tasks each have dispatched, started, succeeded in turn; parallel
                # tasks' started and succeeded come after every task_dispatched
                first = 3 + 3 * index if report.chain else 2 + report.tasks + 2 * index
                events.append(_event(flow_id, first, "task_started", name))
                events.append(_event(flow_id, first + 1, "task_succeeded", name))
                if report.chain and index + 1 < report.tasks:
                    after = _Work(flow_id, f"t{index + 1}", index + 1, report.tasks, True)
                    events.append(_event(flow_id, first + 2, "task_dispatched", after.task))
                    dispatches.append(_dispatch(after, first + 2))
                elif report.tasks == 1 or report.chain:
                    events.append(_event(flow_id, first + 2, "flow_succeeded"))
            payloads = [_encode(e) for e in events]
            await _append(pool, events, payloads)
            await _publish(publisher, dispatches + _events_out(events, payloads))
            for msg in msgs:
                await msg.ack()
            await nc.publish(DONE_SUBJECT, str(len(msgs)).encode())

    await asyncio.gather(take_submits(), take_reports())


async def runner(nats_url: str) -> None:
    """Dispatches in, one report each out."""
    nc = await nats.connect(nats_url)
    publisher = Publisher(nc)
    config = ConsumerConfig(
        ack_policy=AckPolicy.EXPLICIT,
        deliver_policy=DeliverPolicy.ALL,
        ack_wait=60,
        max_deliver=-1,
        max_ack_pending=-1,
    )
    take = await _puller(
        nc,
        subjects.queue_dispatches("default"),
        "skeleton-runner",
        subjects.STREAM_DISPATCH,
        config,
    )
    times: list[tuple[str, int, float, float]] = []

    async def hand_over(msg: Msg) -> None:
        await msg.respond(_encode(times))

    if TIMES:
        await nc.subscribe(TIMES_SUBJECT, cb=hand_over)
    await nc.publish(READY_SUBJECT, b"runner")
    while True:
        msgs = await take(RUNNER_SLOTS)
        took = time.time()
        reports: list[Outgoing] = []
        for msg in msgs:
            dispatch = _work_decoder.decode(msg.data)
            report = _encode(msgspec.structs.replace(dispatch, exit_code=0))
            msg_id = f"{dispatch.flow_id}.{dispatch.task}:finished"
            reports.append((subjects.status(dispatch.flow_id), report, {"Nats-Msg-Id": msg_id}))
            if TIMES:
                times.append((dispatch.flow_id, dispatch.index, took, time.time()))
        if reports:
            await _publish(publisher, reports)
        for msg in msgs:
            await msg.ack()


class _Reports:
    """How many reports the skeleton scheduler has recorded (it says so on `DONE_SUBJECT`
    after each batch), to wait on."""

    def __init__(self) -> None:
        self.count = 0
        self._more = asyncio.Event()

    @classmethod
    async def heard(cls, nc: NATS) -> _Reports:
        reports = cls()
        await nc.subscribe(DONE_SUBJECT, cb=reports._recorded)
        await nc.flush()
        return reports

    async def _recorded(self, msg: Msg) -> None:
        self.count += int(msg.data)
        self._more.set()

    async def until(self, count: int) -> None:
        while self.count < count:
            self._more.clear()
            await self._more.wait()


async def _drive(nc: NATS, flows: int, tasks: int) -> float:
    """Submit `flows` flows of `tasks` parallel tasks each, `IN_FLIGHT` unacknowledged at
    most; seconds from the first submit until the skeleton scheduler has recorded the end of
    every task."""
    publisher = Publisher(nc)
    reports = await _Reports.heard(nc)
    stamp = int(time.time() * 1000)
    headers = {TASKS_HEADER: str(tasks)}
    t0 = time.perf_counter()
    for start in range(0, flows, IN_FLIGHT):
        batch = [
            (subjects.SUBMIT, SPEC, {**headers, "Nats-Msg-Id": f"sk-{stamp}-{i}"})
            for i in range(start, min(flows, start + IN_FLIGHT))
        ]
        await _publish(publisher, batch)
    await asyncio.wait_for(reports.until(flows * tasks), RUN_TIMEOUT)
    return time.perf_counter() - t0


async def _drive_latency(nc: NATS, samples: int, chain_len: int) -> dict[str, Any]:
    """`latency`'s samples, from the runner's times (asked for once every flow ended)."""
    publisher = Publisher(nc)
    reports = await _Reports.heard(nc)
    stamp = int(time.time() * 1000)
    submitted: dict[str, float] = {}
    for i in range(samples):
        flow_id = f"lat-{stamp}-{i}"
        submitted[flow_id] = time.time()
        await _publish(publisher, [(subjects.SUBMIT, SPEC, {"Nats-Msg-Id": flow_id})])
        await reports.until(i + 1)
        await asyncio.sleep(IDLE)
    chain_id = f"chain-{stamp}"
    headers = {"Nats-Msg-Id": chain_id, TASKS_HEADER: str(chain_len), CHAIN_HEADER: "1"}
    await _publish(publisher, [(subjects.SUBMIT, SPEC, headers)])
    await reports.until(samples + chain_len)
    answer = await nc.request(TIMES_SUBJECT, b"", timeout=ACK_TIMEOUT)
    times = msgspec.json.decode(answer.data, type=list[tuple[str, int, float, float]])
    took = {(flow_id, index): at for flow_id, index, at, _ in times}
    reported_at = {(flow_id, index): at for flow_id, index, _, at in times}
    to_start = [took[flow_id, 0] - at for flow_id, at in submitted.items()]
    steps = [took[chain_id, i + 1] - reported_at[chain_id, i] for i in range(chain_len - 1)]
    return {
        "submit_to_start_ms": latency_summary([1000.0 * s for s in to_start]),
        "step_to_step_ms": latency_summary([1000.0 * s for s in steps]),
        "chain_tasks": chain_len,
    }


async def _create_streams(nats_url: str) -> None:
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    for config in stream_configs():
        await js.add_stream(config)
    await nc.close()


async def _counts(nc: NATS, dsn: str) -> dict[str, int]:
    """What the run left: event messages on `WEIR_EVENTS` and event rows in Postgres, and the
    messages the three consumers have not had acknowledged or not delivered (none, once the
    last acks, sent without waiting, reached the server: given `SETTLE_TIMEOUT`)."""
    js = nc.jetstream()
    consumers = (
        (subjects.STREAM_COMMANDS, "skeleton-submit"),
        (subjects.STREAM_STATUS, "skeleton-status"),
        (subjects.STREAM_DISPATCH, "skeleton-runner"),
    )
    deadline = time.monotonic() + SETTLE_TIMEOUT
    while True:
        left = 0
        for stream, durable in consumers:
            info = await js.consumer_info(stream, durable)
            left += info.num_pending + info.num_ack_pending
        if not left or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.05)
    events = (await js.stream_info(subjects.STREAM_EVENTS)).state.messages
    async with SkeletonLog.opened(dsn) as log:
        rows = await log.event_rows()
    return {"event_messages": events, "event_rows": rows, "work_left": left}


async def _create_schema(dsn: str) -> None:
    async with SkeletonLog.opened(dsn) as log:
        await log.create()


def _pid(server: Any) -> int:
    """The pid of an embedded server's process (as `weirstack` watches it)."""
    proc = getattr(server, "_proc", None)
    assert proc is not None, "the server is not running"
    return int(proc.pid)


def run(
    cluster: Cluster,
    workdir: Path,
    flows: int,
    tasks: int = 1,
    grouped: bool = False,
    lean_pull: bool = False,
) -> dict[str, Any]:
    """One skeleton run on `cluster`'s Postgres (a database of its own) and a nats-server of
    its own: `flows` flows of `tasks` tasks; tasks/s and CPU ms per task of each process."""
    env = {GROUPED_ENV: "1" if grouped else "", LEAN_ENV: "1" if lean_pull else ""}
    elapsed, cpu, counts = _skeleton(cluster, workdir, env, lambda nc: _drive(nc, flows, tasks))
    done = flows * tasks
    return {
        "flows": flows,
        "tasks_per_flow": tasks,
        "grouped_events": grouped,
        "lean_pull": lean_pull,
        "seconds": elapsed,
        "tasks_per_s": done / elapsed,
        "cpu_ms_per_task": {name: 1000.0 * seconds / done for name, seconds in cpu.items()},
        **counts,
    }


def latency(cluster: Cluster, workdir: Path, samples: int, chain_len: int) -> dict[str, Any]:
    """The floor of the bench's latency scenario, measured the same way on an idle skeleton:
    `samples` single-task flows submitted one at a time (`IDLE` apart), submit until the
    runner took the dispatch; then one `chain_len`-task chain, a task's report sent until
    the runner took the next one."""
    env = {TIMES_ENV: "1"}
    result, _, counts = _skeleton(
        cluster, workdir, env, lambda nc: _drive_latency(nc, samples, chain_len)
    )
    return {**result, **counts}


def _skeleton(
    cluster: Cluster,
    workdir: Path,
    env: dict[str, str],
    drive: Callable[[NATS], Awaitable[T]],
) -> tuple[T, dict[str, float], dict[str, int]]:
    """`drive`'s result on a skeleton started with `env` added to this process's, on
    `cluster`'s Postgres (a database of its own) and a nats-server of its own; with each
    process's CPU seconds while it drove, and what the run left (`_counts`)."""
    server = EmbeddedNats(workdir / f"skeleton-nats-{uuid.uuid4().hex[:8]}")
    database = ""
    try:
        nats_url = server.start()
        database, dsn = cluster.new_database("skeleton")
        # The code measured (`--code`'s export, first on PYTHONPATH), then this checkout's bench.
        paths = [os.environ.get("PYTHONPATH", ""), str(Path(__file__).resolve().parent.parent)]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p), **env}
        cpu = RssSampler()
        cpu.watch("nats", _pid(server))
        cpu.watch_tree("postgres", _pid(cluster.postgres))
        return asyncio.run(_measure(nats_url, dsn, env, cpu, drive))
    finally:
        server.stop()
        shutil.rmtree(server.store_dir, ignore_errors=True)
        if database:
            cluster.drop_database(database)


async def _measure(
    nats_url: str,
    dsn: str,
    env: dict[str, str],
    cpu: RssSampler,
    drive: Callable[[NATS], Awaitable[T]],
) -> tuple[T, dict[str, float], dict[str, int]]:
    await _create_streams(nats_url)
    await _create_schema(dsn)
    nc = await nats.connect(nats_url)
    ready: asyncio.Queue[bytes] = asyncio.Queue()

    async def on_ready(msg: Msg) -> None:
        await ready.put(msg.data)

    await nc.subscribe(READY_SUBJECT, cb=on_ready)
    await nc.flush()
    procs: dict[str, asyncio.subprocess.Process] = {}
    try:
        for role in ("scheduler", "runner"):
            command = [sys.executable, "-m", "bench.skeleton", "--role", role]
            procs[role] = await asyncio.create_subprocess_exec(
                *command, "--nats", nats_url, "--dsn", dsn, env=env
            )
            cpu.watch(role, procs[role].pid)

        async def both_ready() -> None:
            for _ in procs:  # imports done, connected, consumers made
                await ready.get()

        await _unless_one_ends(procs, both_ready(), START_TIMEOUT)
        before = cpu.cpu_seconds()
        result = await _unless_one_ends(procs, drive(nc), RUN_TIMEOUT)
        after = cpu.cpu_seconds()
        counts = await _counts(nc, dsn)
    finally:
        for proc in procs.values():
            if proc.returncode is None:
                proc.kill()
            await proc.wait()
        await nc.close()
    return result, {name: after[name] - before[name] for name in after}, counts


async def _unless_one_ends(
    procs: dict[str, asyncio.subprocess.Process], work: Awaitable[T], timeout: float
) -> T:
    """`work`'s result; a skeleton process that ends meanwhile fails the run at once, by name."""
    doing = asyncio.ensure_future(work)
    ended = {asyncio.ensure_future(proc.wait()): role for role, proc in procs.items()}
    try:
        done, _ = await asyncio.wait(
            [doing, *ended], timeout=timeout, return_when=asyncio.FIRST_COMPLETED
        )
        if doing in done:
            return doing.result()
        for waited, role in ended.items():
            if waited in done:
                raise RuntimeError(f"the skeleton {role} ended with {waited.result()}")
        raise TimeoutError(f"the skeleton run took over {timeout:g} s")
    finally:
        for future in [doing, *ended]:
            future.cancel()


def scenario(
    cluster: Cluster, workdir: Path, flows: int, fan: int, samples: int, chain_len: int
) -> dict[str, Any]:
    """The bench's `skeleton` scenario: `flows` single-task flows, then one `fan`-task flow,
    each taken as weir takes messages (`Puller`) and with `--lean-pull`'s way; then the
    latency scenario's `samples` and `chain_len`-task chain on an idle skeleton."""
    from bench.scenarios import _log

    _log(f"skeleton: {flows:,} single-task flows, then one flow of {fan:,} tasks, no weir logic")
    result = {
        "single_task_flows": run(cluster, workdir, flows),
        "single_task_flows_lean_pull": run(cluster, workdir, flows, lean_pull=True),
        "fan": run(cluster, workdir, 1, fan),
        "fan_lean_pull": run(cluster, workdir, 1, fan, lean_pull=True),
    }
    for name, one in result.items():
        _log(f"    {name}: {one['tasks_per_s']:,.0f} tasks/s, {_cpu_line(one)}")
    _log(f"skeleton: {samples} idle single-task flows, then a {chain_len}-task chain")
    result["latency"] = latency(cluster, workdir, samples, chain_len)
    _log(f"    {_latency_line(result['latency'])}")
    return result


def _latency_line(result: dict[str, Any]) -> str:
    start, step = result["submit_to_start_ms"], result["step_to_step_ms"]
    return (
        f"idle skeleton: submit -> started p50 {start['p50']:.2f} ms; step to step "
        f"p50 {step['p50']:.2f} ms, p99 {step['p99']:.2f} ms"
    )


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
    p.add_argument(
        "--lean-pull",
        action="store_true",
        help="keep one pull request per batch open across takes, not weir's Puller",
    )
    p.add_argument(
        "--latency",
        type=int,
        metavar="SAMPLES",
        default=None,
        help="measure idle latency instead: SAMPLES single-task flows one at a time, then a chain",
    )
    p.add_argument("--chain", type=int, default=200, help="the latency run's chain length (200)")
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
    from bench.__main__ import use_code

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="weir-skeleton-"))
    print(f"measuring {use_code(args.code, workdir / 'code')}")
    cluster = Cluster(workdir)
    cluster.start()
    try:
        if args.latency is not None:
            result = latency(cluster, workdir, args.latency, args.chain)
        else:
            result = run(cluster, workdir, args.flows, args.tasks, args.grouped, args.lean_pull)
    finally:
        cluster.stop()
    print(json.dumps(result))
    if args.latency is not None:
        print(_latency_line(result))
        return
    print(
        f"{args.flows:,} flows of {args.tasks:,} tasks through the skeleton: "
        f"{result['tasks_per_s']:,.0f} tasks/s; {_cpu_line(result)}"
    )


if __name__ == "__main__":
    main()
