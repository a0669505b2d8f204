"""What a user must see of each flow once the chaos has passed, checked against the log and
the trail: every task ended as its spec implies, the flow's status follows from its tasks,
the on_exit task ran last and once with the flow's outcome, and an updated flow started no
earlier than its new start, with its new params.

The rules are written out here from docs/jobs.md, not taken from the scheduler's code, so a
scheduler that gets a rule wrong is caught. How `check` of a `gates` flow ended (succeeded
or failed) decides every other task's end; any other task is meant to succeed, and one that
failed all the same because its attempts were lost to killed runners makes the flow
`disturbed`: then only the rules that hold whatever failed are checked.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from tests.chaos.workload import GATES_WHEN

TASK_ENDS = ("task_succeeded", "task_failed", "task_skipped", "task_cancelled")
FLOW_ENDS = {"flow_succeeded": "succeeded", "flow_failed": "failed", "flow_cancelled": "cancelled"}
BY_A_FAULT = "lost"
"""The `error_type` of an attempt a fault took (its runner killed, its heartbeats gone):
three in a row fail a task meant to succeed. Any other failure of such a task (its exit, a
condition's output that could not be read) is a violation."""


@dataclass(frozen=True)
class Note:
    """A `param` or `status` line of the trail: what one execution of a task saw."""

    word: str
    flow_id: str
    task: str
    attempt: int
    value: str


def read_notes(path: Path) -> list[Note]:
    notes = []
    for line in path.read_text(errors="replace").splitlines():
        parts = line.split()
        if len(parts) == 6 and parts[0] in ("param", "status") and parts[3].isdigit():
            word, flow_id, task, attempt, _pid, value = parts
            notes.append(Note(word, flow_id, task, int(attempt), value))
    return notes


@dataclass(frozen=True)
class Event:
    seq: int
    type: str
    task: str | None
    at: datetime
    data: Mapping[str, Any]


@dataclass
class FlowLog:
    """One flow as its log tells it."""

    flow_id: str
    events: list[Event] = field(default_factory=list)

    @property
    def spec(self) -> Mapping[str, Any]:
        """The spec in force: the last `flow_updated`'s, else the submitted one."""
        for event in reversed(self.events):
            if event.type in ("flow_updated", "flow_submitted"):
                return dict(event.data["spec"])
        return {}

    def ends(self) -> dict[str, Event]:
        """Each task's last end (succeeded, failed, skipped, cancelled)."""
        return {e.task: e for e in self.events if e.type in TASK_ENDS and e.task}

    def status(self) -> str | None:
        ended = [FLOW_ENDS[e.type] for e in self.events if e.type in FLOW_ENDS]
        return ended[-1] if ended else None


def flow_logs(rows: Iterable[Mapping[str, Any]]) -> dict[str, FlowLog]:
    """`rows`: the log's events in seq order per flow, with `data` as JSON text."""
    logs: dict[str, FlowLog] = {}
    for row in rows:
        data = json.loads(row["data"])
        log = logs.setdefault(row["flow_id"], FlowLog(row["flow_id"]))
        at = datetime.fromisoformat(data["at"])
        log.events.append(Event(row["seq"], row["type"], data.get("task"), at, data))
    return logs


@dataclass(frozen=True)
class Expected:
    status: str
    reason: str | None = None
    """For a skip: the reason its `task_skipped` must give."""


def expected_gates(spec: Mapping[str, Any], check_succeeded: bool) -> dict[str, Expected]:
    """Every task's end in a `gates` flow (workload._gates), given how `check` ended."""
    env = spec.get("arguments", {}).get("env", "dev")
    decision = spec["metadata"]["decision"]
    alert = next(t for t in spec["tasks"] if t["name"] == "alert")["trigger"]
    ran = Expected("succeeded")
    if not check_succeeded:
        upstream = Expected("skipped", 'upstream task "check" failed')
        return {
            "check": Expected("failed"),
            "deploy": upstream,
            "hold": upstream,
            "prod-only": upstream,
            "audit": upstream,
            "notify": Expected("skipped", "trigger one_success: no upstream task succeeded"),
            "cleanup": ran,
            "alert": ran,
            "report": ran,
        }

    def gated(name: str, holds: bool) -> Expected:
        return ran if holds else Expected("skipped", f"condition is false: {GATES_WHEN[name]}")

    deploy = gated("deploy", decision == "go" and env == "prod")
    hold = gated("hold", decision == "stop")
    notify = (
        ran
        if ran in (deploy, hold)
        else Expected("skipped", "trigger one_success: no upstream task succeeded")
    )
    alert_reason = {
        "one_failed": "trigger one_failed: no upstream task failed",
        "all_failed": 'trigger all_failed: upstream task "check" succeeded',
    }[alert]
    return {
        "check": ran,
        "deploy": deploy,
        "hold": hold,
        "prod-only": gated("prod-only", env == "prod"),
        "audit": ran,
        "notify": notify,
        "cleanup": ran,
        "alert": Expected("skipped", alert_reason),
        "report": ran,
    }


def outcome_problems(log: FlowLog, status: str) -> list[str]:
    """The flow's status follows from its tasks: failed when one failed, else succeeded."""
    ends = log.ends()
    failed = sorted(t for t, e in ends.items() if e.type == "task_failed")
    want = "failed" if failed else "succeeded"
    if status in ("cancelled", "rejected", "duplicate") or status == want:
        return []
    why = f"tasks {failed} failed" if failed else "no task failed"
    return [f"flow {log.flow_id}: ended {status}, but {why}: it must be {want}"]


def gates_problems(log: FlowLog, status: str, notes: list[Note]) -> tuple[list[str], bool]:
    """Problems of a `gates` flow, and whether a fault made a task fail (`disturbed`)."""
    flow = f"flow {log.flow_id}"
    spec, ends = log.spec, log.ends()
    check = ends.get("check")
    if check is None or check.type not in ("task_succeeded", "task_failed"):
        return [f"{flow}: task check did not end succeeded or failed ({check})"], False
    expected = expected_gates(spec, check.type == "task_succeeded")
    problems: list[str] = []
    if spec["metadata"]["broken"] and check.type == "task_succeeded":
        problems.append(f"{flow}: task check exits 1 on every attempt, yet it succeeded")
    # A task meant to succeed that a fault failed (its attempts lost) makes the flow fail,
    # and what was handed out by then is a matter of timing.
    disturbed = any(
        e.type == "task_failed" and e.data.get("error_type") == BY_A_FAULT
        for name, e in ends.items()
        if name != "check" and expected.get(name, Expected("succeeded")).status == "succeeded"
    )
    for name, want in sorted(expected.items()):
        if disturbed:
            break
        event = ends.get(name)
        got = event.type.removeprefix("task_") if event else "not ended"
        if got != want.status:
            problems.append(f"{flow}: task {name} ended {got}, the spec implies {want.status}")
        elif want.reason is not None and event and event.data.get("reason") != want.reason:
            problems.append(
                f"{flow}: task {name} was skipped with reason {event.data.get('reason')!r}, "
                f"the spec implies {want.reason!r}"
            )
    problems += never_started(log, {n for n, e in ends.items() if e.type == "task_skipped"}, notes)
    problems += on_exit_problems(log, notes, "report")
    problems += ran_once(log, "cleanup")
    env = spec.get("arguments", {}).get("env", "dev")
    problems += [
        f"{flow}: task {n.task} attempt {n.attempt} got params {n.value}, not env={env}"
        for n in notes
        if n.word == "param" and n.value != f"env={env}"
    ]
    if not disturbed:
        want_status = "succeeded" if check.type == "task_succeeded" else "failed"
        if status != want_status:
            problems.append(f"{flow}: ended {status}, the spec implies {want_status}")
    return problems, disturbed


def never_started(log: FlowLog, skipped: set[str], notes: list[Note]) -> list[str]:
    """A skipped task was never handed to a runner and never ran."""
    handed = {e.task for e in log.events if e.type == "task_dispatched"}
    ran = {n.task for n in notes}
    return [
        f"flow {log.flow_id}: task {t} was skipped, yet it was "
        f"{'handed to a runner' if t in handed else 'run'}"
        for t in sorted(skipped & (handed | ran))
    ]


def ran_once(log: FlowLog, task: str) -> list[str]:
    """`task`, if it ended succeeded, succeeded exactly once (no retry planned it again)."""
    end = log.ends().get(task)
    times = sum(1 for e in log.events if e.type == "task_succeeded" and e.task == task)
    if end is None or end.type != "task_succeeded" or times == 1:
        return []
    return [f"flow {log.flow_id}: task {task} succeeded {times} times, not once"]


def on_exit_problems(log: FlowLog, notes: list[Note], name: str) -> list[str]:
    """The on_exit task `name` succeeded once, was first handed out after every other task
    had ended, and saw the flow's outcome so far in WEIR_FLOW_STATUS (every execution)."""
    flow = f"flow {log.flow_id}"
    problems = ran_once(log, name)
    ends = {t: e for t, e in log.ends().items() if t != name}
    handed = [e.seq for e in log.events if e.type == "task_dispatched" and e.task == name]
    last_end = max((e.seq for e in ends.values()), default=0)
    if handed and handed[0] < last_end:
        late = sorted(t for t, e in ends.items() if e.seq > handed[0])
        problems.append(f"{flow}: on_exit task {name} was handed out before {late} ended")
    failed = any(e.type == "task_failed" for e in ends.values())
    want = "failed" if failed else "succeeded"
    seen = [n.value for n in notes if n.word == "status" and n.task == name]
    if not seen:
        problems.append(f"{flow}: on_exit task {name} left no WEIR_FLOW_STATUS in the trail")
    problems += [
        f"{flow}: on_exit task {name} got WEIR_FLOW_STATUS={value}, not {want}"
        for value in seen
        if value != want
    ]
    return problems


def scheduled_problems(
    log: FlowLog, notes: list[Note], starts: list[float], sent: Mapping[str, Any] | None
) -> list[str]:
    """An updated `scheduled` flow: no task handed out or started before the start its last
    update set, every execution got the params in force (the update's, when one was answered
    as made: `sent`), and the flow succeeded."""
    flow = f"flow {log.flow_id}"
    problems: list[str] = []
    updates = [e for e in log.events if e.type == "flow_updated"]
    if sent is not None and not updates:
        problems.append(f"{flow}: an update was answered as made, but the log holds none")
    spec = log.spec
    args = spec.get("arguments", {})
    if sent is not None and updates and args.get("tag") != sent["tag"]:
        problems.append(f"{flow}: the update set tag={sent['tag']}, the log's spec has {args}")
    start_at = None  # the start in force: the update's scheduled_at, else the submit's
    for event in log.events:
        if event.type in ("flow_submitted", "flow_updated"):
            raw = event.data["spec"].get("scheduled_at") or event.data.get("start_at")
            start_at = datetime.fromisoformat(raw) if raw else None
    if start_at is not None:
        early = [e for e in log.events if e.type == "task_dispatched" and e.at < start_at]
        problems += [
            f"{flow}: task {e.task} was handed out at {e.at.isoformat()}, before its start "
            f"{start_at.isoformat()}"
            for e in early
        ]
        problems += [
            f"{flow}: a task started at {t:.3f}, {start_at.timestamp() - t:.3f}s before the "
            f"flow's start"
            for t in starts
            if t < start_at.timestamp()
        ]
    want = f"tag={args.get('tag')},n={args.get('n', 1)}"
    seen = [n for n in notes if n.word == "param"]
    if not seen:
        problems.append(f"{flow}: no task left its params in the trail")
    problems += [
        f"{flow}: task {n.task} attempt {n.attempt} got params {n.value}, not {want}"
        for n in seen
        if n.value != want
    ]
    return problems


@dataclass
class Observed:
    """What the per-flow checks found, beside their violations."""

    gates: int = 0
    disturbed: int = 0
    updated: int = 0
    problems: list[str] = field(default_factory=list)


def observe(
    logs: Mapping[str, FlowLog],
    statuses: Mapping[str, str],
    notes: Iterable[Note],
    starts: Iterable[tuple[str, float]],
    updates: Mapping[str, Mapping[str, Any]],
) -> Observed:
    """Check every flow as a user would see it. `starts` are (flow, wall time) of every
    execution's start; `updates` the params each update answered as made set, by flow."""
    by_flow: dict[str, list[Note]] = defaultdict(list)
    for note in notes:
        by_flow[note.flow_id].append(note)
    started: dict[str, list[float]] = defaultdict(list)
    for flow_id, at in starts:
        started[flow_id].append(at)
    seen = Observed()
    for flow_id, log in sorted(logs.items()):
        status = statuses.get(flow_id)
        if status is None or log.spec.get("name") is None:
            continue
        seen.problems += outcome_problems(log, status)
        name = log.spec["name"]
        if name == "chaos-gates":
            problems, disturbed = gates_problems(log, status, by_flow[flow_id])
            seen.problems += problems
            seen.gates += 1
            seen.disturbed += disturbed
        elif name == "chaos-scheduled":
            seen.problems += scheduled_problems(
                log, by_flow[flow_id], started[flow_id], updates.get(flow_id)
            )
            seen.updated += any(e.type == "flow_updated" for e in log.events)
    return seen
