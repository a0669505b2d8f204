"""What "nothing is lost" means, checked against the Postgres log, the NATS stream and the
trail the tasks wrote. Every rule that does not hold is a violation with a precise message."""

from __future__ import annotations

import contextlib
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import msgspec
import nats.errors
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from weir.jetstream import close, connect
from weir_proto import subjects
from weir_proto.status import TERMINAL_FLOW_STATUSES

STREAM_READ_BATCH = 500
STREAM_READ_WAIT = 2.0
STREAM_READ_MAX_ROUNDS = 10_000
"""Bounds the stream read: 10,000 batches of 500 events is more than any run produces."""


@dataclass
class Execution:
    """One run of one attempt as the trail saw it: start and (if it got there) end."""

    flow_id: str
    task: str
    attempt: int
    pid: str
    start: float
    end: float | None = None


@dataclass
class Verdict:
    flows: int = 0
    events: int = 0
    executions: int = 0
    rerun_attempts: int = 0
    """Attempts executed more than once (a runner died under them and they were redelivered)."""
    statuses: Counter[str] = field(default_factory=Counter)
    violations: list[str] = field(default_factory=list)

    def violate(self, message: str) -> None:
        self.violations.append(message)


class _EventId(msgspec.Struct):
    id: str
    flow_id: str
    seq: int


def read_trail(path: Path) -> list[Execution]:
    """Pair `start` and `end` lines by (flow, task, attempt, pid)."""
    open_runs: dict[tuple[str, str, int, str], Execution] = {}
    runs: list[Execution] = []
    for line in path.read_text(errors="replace").splitlines():
        parts = line.split()
        if len(parts) != 6:
            continue  # a line torn by a kill -9 mid-write
        word, flow_id, task, attempt, pid, at = parts
        key = (flow_id, task, int(attempt), pid)
        if word == "start":
            run = Execution(flow_id, task, int(attempt), pid, float(at))
            open_runs[key] = run
            runs.append(run)
        elif word == "end" and key in open_runs:
            open_runs.pop(key).end = float(at)
    return runs


def overlaps(runs: Iterable[Execution], runner_kills: list[float]) -> list[str]:
    """Executions of one task that ran at the same time. A run without an end was killed with
    its runner: it ended no later than the first runner kill after it started."""
    by_task: dict[tuple[str, str], list[tuple[float, float, Execution]]] = defaultdict(list)
    problems: list[str] = []
    for run in runs:
        end = run.end
        if end is None:
            end = next((k for k in sorted(runner_kills) if k >= run.start), None)
            if end is None:
                problems.append(
                    f"flow {run.flow_id}: task {run.task} attempt {run.attempt} (pid {run.pid}) "
                    "started and never ended, and no runner was killed after it started"
                )
                continue
        by_task[(run.flow_id, run.task)].append((run.start, end, run))
    for (flow_id, task), spans in by_task.items():
        spans.sort(key=lambda s: s[0])
        longest: tuple[float, Execution] | None = None  # the run reaching furthest so far
        for start, end, run in spans:
            if longest is not None and start < longest[0]:
                earlier = longest[1]
                problems.append(
                    f"flow {flow_id}: task {task} attempt {run.attempt} (pid {run.pid}) started "
                    f"{longest[0] - start:.3f}s before attempt {earlier.attempt} "
                    f"(pid {earlier.pid}) ended"
                )
            if longest is None or end > longest[0]:
                longest = (end, run)
    return problems


async def read_stream_events(nats_url: str) -> list[_EventId]:
    """Every event in WEIR_EVENTS, in stream order."""
    nc = await connect(nats_url, "weir-chaos-checker", max_reconnect_attempts=20)
    try:
        js = nc.jetstream()
        sub = await js.pull_subscribe(
            f"{subjects.EVENTS_PREFIX}.>",
            durable=None,
            stream=subjects.STREAM_EVENTS,
            config=ConsumerConfig(
                ack_policy=AckPolicy.NONE,
                deliver_policy=DeliverPolicy.ALL,
                inactive_threshold=60.0,
            ),
        )
        out: list[_EventId] = []
        decoder = msgspec.json.Decoder(_EventId)
        for _ in range(STREAM_READ_MAX_ROUNDS):
            try:
                msgs = await sub.fetch(STREAM_READ_BATCH, timeout=STREAM_READ_WAIT)
            except (TimeoutError, nats.errors.TimeoutError):
                break
            out.extend(decoder.decode(m.data) for m in msgs)
            if msgs and msgs[-1].metadata.num_pending == 0:
                break
        with contextlib.suppress(Exception):
            await sub.unsubscribe()
        return out
    finally:
        await close(nc)


async def check(
    database_url: str,
    nats_url: str,
    trail: Path,
    acked: dict[str, bool],
    runner_kills: list[float],
) -> Verdict:
    """`acked` maps each acknowledged submit's flow id to whether it must be a rejection."""
    verdict = Verdict()
    conn = await asyncpg.connect(database_url)
    try:
        flows = {r["id"]: r["status"] for r in await conn.fetch("SELECT id, status FROM flows")}
        rows = await conn.fetch(
            "SELECT id, flow_id, seq, type, data->>'task' AS task FROM events ORDER BY flow_id, seq"
        )
    finally:
        await conn.close()
    verdict.flows = len(flows)
    verdict.events = len(rows)
    terminal = {str(s) for s in TERMINAL_FLOW_STATUSES}

    # Every acknowledged submit is a flow (ended) or a rejection.
    for flow_id, must_reject in sorted(acked.items()):
        status = flows.get(flow_id)
        if status is None:
            verdict.violate(f"acknowledged submit {flow_id} is neither a flow nor a rejection")
        elif status not in terminal:
            verdict.violate(f"flow {flow_id} is still {status}")
        elif must_reject and status != "rejected":
            verdict.violate(f"invalid submit {flow_id} ended {status}, not rejected")
    for flow_id, status in flows.items():
        verdict.statuses[status] += 1
        if status not in terminal:
            verdict.violate(f"flow {flow_id} (not submitted by this run) is still {status}")

    # Per-flow seq is 1..n; no task succeeded twice.
    log_ids: dict[str, list[str]] = defaultdict(list)
    seqs: dict[str, list[int]] = defaultdict(list)
    succeeded: Counter[tuple[str, str]] = Counter()
    for row in rows:
        log_ids[row["flow_id"]].append(row["id"])
        seqs[row["flow_id"]].append(row["seq"])
        if row["type"] == "task_succeeded":
            succeeded[(row["flow_id"], row["task"])] += 1
    for flow_id, numbers in seqs.items():
        if numbers != list(range(1, len(numbers) + 1)):
            verdict.violate(f"flow {flow_id}: seq is not gap-free from 1: {numbers}")
    for (flow_id, task), times in succeeded.items():
        if times > 1:
            verdict.violate(f"flow {flow_id}: task {task} succeeded {times} times")

    # The stream holds the same events as the log, each once, in seq order per flow.
    streamed = await read_stream_events(nats_url)
    stream_ids: dict[str, list[str]] = defaultdict(list)
    for event in streamed:
        stream_ids[event.flow_id].append(event.id)
    for flow_id in sorted(set(log_ids) | set(stream_ids)):
        in_log, in_stream = log_ids.get(flow_id, []), stream_ids.get(flow_id, [])
        if in_log != in_stream:
            missing = [e for e in in_log if e not in in_stream]
            extra = [e for e in in_stream if e not in in_log]
            dupes = [e for e, n in Counter(in_stream).items() if n > 1]
            verdict.violate(
                f"flow {flow_id}: stream differs from log (missing {missing[:5]}, "
                f"not in log {extra[:5]}, duplicated {dupes[:5]}, log {len(in_log)} events, "
                f"stream {len(in_stream)})"
            )

    # No two executions of one task overlapped.
    runs = read_trail(trail)
    verdict.executions = len(runs)
    per_attempt = Counter((r.flow_id, r.task, r.attempt) for r in runs)
    verdict.rerun_attempts = sum(1 for n in per_attempt.values() if n > 1)
    for problem in overlaps(runs, runner_kills):
        verdict.violate(problem)
    return verdict
