"""What "nothing is lost" means, checked against the Postgres log, the NATS stream and the
trail the tasks wrote. Every rule that does not hold is a violation with a precise message.

- Every acknowledged submit ended as a flow, or (only an invalid one) as a rejection; every
  pause, resume, retry and update the API said it made is in the log.
- Per flow, seq is gap-free from 1, and the stream holds the log's events, each once.
- No finished task ran again: a task (or a mapped task's instance) succeeds at most once,
  unless a `task_retried` planned it again in between.
- No two executions of one task overlapped.
- Each flow ended as its spec implies, as a user would see it (`expectations`): its status
  follows from its tasks'; in `gates` flows each task ran or was skipped (with the reason)
  as its trigger rule and `when` say, the cleanup ran once, the on_exit task ran last, once,
  with the flow's outcome; an updated flow started no earlier than its new start, with its
  new params.
"""

from __future__ import annotations

import contextlib
import json
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import msgspec
import nats.errors
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from weir.jetstream import close, connect
from weir_proto import subjects
from weir_proto.status import TERMINAL_FLOW_STATUSES

from tests.chaos.expectations import flow_logs, observe, read_notes

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
    instances: int = 0
    """Instances of mapped tasks that ran (`NAME[i]`)."""
    gates: int = 0
    """`gates` flows checked against what their spec implies."""
    disturbed: int = 0
    """Of those, flows where a fault made a task fail (only the rules that hold anyway)."""
    updated: int = 0
    """Flows changed by `weir update` before their start."""
    steps: Counter[str] = field(default_factory=Counter)
    """flow_paused, flow_resumed and task_retried events in the log."""
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


STEP_EVENTS = {
    "pause": "flow_paused",
    "resume": "flow_resumed",
    "retry": "task_retried",
    "update": "flow_updated",
}


def succeeded_again(rows: Iterable[Mapping[str, Any]]) -> list[str]:
    """Tasks that succeeded a second time with no `task_retried` planning them (or, for a
    mapped task's instance, its mapped task) again in between. `rows` are the log's events
    (flow_id, type, task, planned: the JSON list of `task_retried`), in seq order per flow."""
    problems: list[str] = []
    done: set[tuple[str, str]] = set()
    for row in rows:
        flow_id, task = row["flow_id"], row["task"]
        if row["type"] == "task_succeeded":
            if (flow_id, task) in done:
                problems.append(f"flow {flow_id}: task {task} succeeded again without a retry")
            done.add((flow_id, task))
        elif row["type"] == "task_retried":
            planned = set(json.loads(row["planned"] or "[]"))
            done = {(f, t) for f, t in done if f != flow_id or t.partition("[")[0] not in planned}
    return problems


def steps_missing(
    rows: Iterable[Mapping[str, Any]], stepped: Iterable[tuple[str, str, str | None]]
) -> list[str]:
    """Pauses, resumes and retries the API said it made that the log does not hold."""
    logged: Counter[tuple[str, str, str | None]] = Counter()
    for row in rows:
        for kind, event in STEP_EVENTS.items():
            if row["type"] == event:
                logged[(row["flow_id"], kind, row["task"] if kind == "retry" else None)] += 1
    made = Counter((f, kind, task if kind == "retry" else None) for f, kind, task in stepped)
    return [
        f"flow {flow_id}: {kind}{f' of task {task}' if task else ''} was answered as made "
        f"{times} time(s), but the log holds {logged[(flow_id, kind, task)]} {STEP_EVENTS[kind]}"
        for (flow_id, kind, task), times in sorted(made.items(), key=str)
        if logged[(flow_id, kind, task)] < times
    ]


async def check(
    database_url: str,
    nats_url: str,
    trail: Path,
    acked: dict[str, bool],
    runner_kills: list[float],
    stepped: Iterable[tuple[str, str, str | None]] = (),
    updates: Mapping[str, Mapping[str, Any]] | None = None,
) -> Verdict:
    """`acked` maps each acknowledged submit's flow id to whether it must be a rejection;
    `stepped` lists the (flow, pause|resume|retry|update, task) steps the API said it made,
    `updates` the params of each update it said it made."""
    verdict = Verdict()
    conn = await asyncpg.connect(database_url)
    try:
        flows = {r["id"]: r["status"] for r in await conn.fetch("SELECT id, status FROM flows")}
        rows: list[dict[str, Any]] = [
            dict(row)
            for row in await conn.fetch(
                "SELECT id, flow_id, seq, type, data->>'task' AS task, data->'tasks' AS planned, "
                "data::text AS data FROM events ORDER BY flow_id, seq"
            )
        ]
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
        elif not must_reject and status == "rejected":
            verdict.violate(f"valid submit {flow_id} was rejected")
    for flow_id, status in flows.items():
        verdict.statuses[status] += 1
        if status not in terminal:
            verdict.violate(f"flow {flow_id} (not submitted by this run) is still {status}")

    # Per-flow seq is 1..n; no finished task ran again; every step made is in the log.
    log_ids: dict[str, list[str]] = defaultdict(list)
    seqs: dict[str, list[int]] = defaultdict(list)
    for row in rows:
        log_ids[row["flow_id"]].append(row["id"])
        seqs[row["flow_id"]].append(row["seq"])
    for flow_id, numbers in seqs.items():
        if numbers != list(range(1, len(numbers) + 1)):
            verdict.violate(f"flow {flow_id}: seq is not gap-free from 1: {numbers}")
    for problem in succeeded_again(rows):
        verdict.violate(problem)
    for problem in steps_missing(rows, stepped):
        verdict.violate(problem)
    verdict.steps = Counter(r["type"] for r in rows if r["type"] in STEP_EVENTS.values())
    verdict.instances = len(
        {(r["flow_id"], r["task"]) for r in rows if r["task"] and r["task"].endswith("]")}
    )

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

    # Each flow as a user sees it.
    seen = observe(
        flow_logs(rows),
        flows,
        read_notes(trail),
        [(r.flow_id, r.start) for r in runs],
        updates or {},
    )
    verdict.gates, verdict.disturbed, verdict.updated = seen.gates, seen.disturbed, seen.updated
    for problem in seen.problems:
        verdict.violate(problem)
    return verdict
