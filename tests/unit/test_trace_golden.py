"""`weir trace` draws the same waterfall and prints the same JSON for the same events.

Each history below is a flow's event log as the scheduler writes it; its plain waterfall,
coloured waterfall and `--json` document are kept in `tests/unit/golden/trace/`. A change to
any of them is a change users see: regenerate with `WEIR_UPDATE_GOLDEN=1` only on purpose,
and read the diff.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

import msgspec
import pytest
from rich.console import Console
from weir import telemetry, waterfall
from weir.telemetry import flow_timeline
from weir_proto import events as ev
from weir_proto.errors import SpecError
from weir_proto.events import FlowEvent
from weir_proto.spec import FlowSpec, TaskSpec

from tests.unit.test_telemetry import T0, Log, at, retried_then_failed

GOLDEN = Path(__file__).parent / "golden" / "trace"
NOW = T0 + timedelta(seconds=30)
"""`now` for flows still running: their open bars extend to it."""


def submit(
    flow_id: str, name: str, *tasks: str, start_at: datetime | None = None, queue: str | None = None
) -> Log:
    spec = FlowSpec(name=name, tasks=[TaskSpec(name=t, cmd=["true"], queue=queue) for t in tasks])
    return Log(flow_id).add(ev.FlowSubmitted, 0.0, spec=spec, start_at=start_at)


def dispatched(
    log: Log, seconds: float, *tasks: str, attempt: int = 1, queue: str = "default"
) -> None:
    for name in tasks:
        log.add(ev.TaskDispatched, seconds, task=name, attempt=attempt, queue=queue)


def started(log: Log, seconds: float, *tasks: str, attempt: int = 1) -> None:
    for name in tasks:
        log.add(ev.TaskStarted, seconds, task=name, attempt=attempt, runner="r")


def timed_out_then_succeeded_with_exit_code() -> Log:
    log = submit("timeout-1", "slow", "crunch")
    dispatched(log, 0.1, "crunch")
    started(log, 0.2, "crunch")
    failure = {"error_type": "timeout", "message": "ran past 5s", "exit_code": None}
    log.add(ev.TaskAttemptFailed, 5.2, task="crunch", attempt=1, retry_at=at(6.0), **failure)
    dispatched(log, 6.0, "crunch", attempt=2)
    started(log, 6.05, "crunch", attempt=2)
    log.add(ev.TaskSucceeded, 9.0, task="crunch", attempt=2, exit_code=3)
    log.add(ev.FlowSucceeded, 9.0)
    return log


def snoozed_then_succeeded() -> Log:
    log = submit("snooze-1", "poll", "wait-for-file", queue="limited")
    log.add(ev.TaskQueued, 0.0, task="wait-for-file", queue="limited", priority=0)
    dispatched(log, 0.4, "wait-for-file", queue="limited")
    started(log, 0.5, "wait-for-file")
    log.add(ev.TaskSnoozed, 0.8, task="wait-for-file", attempt=1, until=at(10.8))
    dispatched(log, 10.8, "wait-for-file", attempt=2, queue="limited")
    started(log, 10.9, "wait-for-file", attempt=2)
    log.add(ev.TaskSucceeded, 11.5, task="wait-for-file", attempt=2)
    log.add(ev.FlowSucceeded, 11.5)
    return log


def cancelled() -> Log:
    """a runs and is killed; b was handed out but never started; c never ran."""
    log = submit("cancel-1", "long", "a", "b", "c")
    dispatched(log, 0.1, "a", "b")
    started(log, 0.2, "a")
    log.add(ev.FlowCancelRequested, 5.0, reason="cancelled by request")
    reason = "cancelled by request (before it started)"
    log.add(ev.TaskCancelled, 5.0, task="b", attempt=1, reason=reason)
    log.add(ev.TaskCancelled, 5.0, task="c", reason="cancelled by request")
    log.add(ev.TaskCancelled, 5.5, task="a", attempt=1, reason="cancelled by request")
    log.add(ev.FlowCancelled, 5.5, reason="cancelled by request")
    return log


def fail_fast() -> Log:
    """b fails for good; fail_fast cancels the running a and a's snooze is never rerun."""
    log = submit("failfast-1", "strict", "a", "b")
    dispatched(log, 0.1, "a", "b")
    started(log, 0.2, "a", "b")
    failure = {"error_type": "oom_killed", "message": "out of memory", "exit_code": 137}
    log.add(ev.TaskFailed, 1.0, task="b", attempt=1, **failure)
    reason = 'fail_fast: task "b" failed'
    log.add(ev.FlowCancelRequested, 1.0, reason=reason, fail_fast=True)
    log.add(ev.TaskCancelled, 1.7, task="a", attempt=1, reason=reason)
    log.add(ev.FlowFailed, 1.7, failed_tasks=["b"])
    return log


def running() -> Log:
    """Still going: one attempt running, one waiting for a runner, one retry due."""
    log = submit("running-1", "busy", "a", "b", "c")
    dispatched(log, 0.1, "a", "b", "c")
    started(log, 0.3, "a", "c")
    failure = {"error_type": "exit_code", "message": "exited with 1", "exit_code": 1}
    log.add(ev.TaskAttemptFailed, 2.0, task="c", attempt=1, retry_at=at(60), **failure)
    return log


def cancelling() -> Log:
    log = submit("cancelling-1", "stopping", "a")
    dispatched(log, 0.1, "a")
    started(log, 0.3, "a")
    log.add(ev.FlowCancelRequested, 4.0, reason="cancelled by request")
    return log


def waiting_for_start() -> Log:
    return submit("later-1", "nightly", "a", start_at=at(3600))


def dispatched_not_started() -> Log:
    log = submit("pending-1", "queued", "a")
    dispatched(log, 0.5, "a")
    return log


def rejected() -> Log:
    errors = [SpecError(path="$.tasks[0].depends[0]", message='"b" does not exist')]
    return Log("rejected-1").add(ev.FlowRejected, 0.0, errors=errors, name="broken")


def deduplicated() -> Log:
    return Log("dup-1").add(ev.FlowDeduplicated, 0.0, existing="orig-1", key="k", name="once")


HISTORIES: dict[str, Callable[[], Log]] = {
    "retried_then_failed": lambda: retried_then_failed("retry-1"),
    "timed_out_then_succeeded_with_exit_code": timed_out_then_succeeded_with_exit_code,
    "snoozed_then_succeeded": snoozed_then_succeeded,
    "cancelled": cancelled,
    "fail_fast": fail_fast,
    "running": running,
    "cancelling": cancelling,
    "waiting_for_start": waiting_for_start,
    "dispatched_not_started": dispatched_not_started,
    "rejected": rejected,
    "deduplicated": deduplicated,
}


def trace_json(events: list[FlowEvent]) -> str:
    """What `weir trace --json` prints."""
    flow_id = events[0].flow_id
    document = {"flow": flow_timeline(events), "trace_id": telemetry.flow_trace_id_hex(flow_id)}
    return msgspec.json.encode(document).decode() + "\n"


def coloured(events: list[FlowEvent]) -> str:
    console = Console(file=io.StringIO(), width=100, color_system="truecolor", force_terminal=True)
    console.print(waterfall.renderable(events, width=100, now=NOW))
    output = console.file.getvalue()  # type: ignore[attr-defined]
    assert isinstance(output, str)
    return output


def outputs(events: list[FlowEvent]) -> dict[str, str]:
    return {
        "txt": waterfall.render(events, width=100, now=NOW),
        "ansi": coloured(events),
        "json": trace_json(events),
    }


@pytest.mark.parametrize("name", list(HISTORIES))
def test_trace_output_is_unchanged_for_recorded_histories(name: str) -> None:
    events = HISTORIES[name]().events
    for suffix, got in outputs(events).items():
        path = GOLDEN / f"{name}.{suffix}"
        if os.environ.get("WEIR_UPDATE_GOLDEN") == "1":
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(got)
        assert got == path.read_text(), f"{path.name} differs"
