"""Every flow, task and attempt status, and every event, renders in `weir show`, `flows`,
`events` and `trace` (human and JSON): no markup error, and text from users and tasks is
shown exactly as written, brackets and all."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta
from typing import Any, get_args

import msgspec
import pytest
from rich.console import Console
from rich.text import Text
from weir import waterfall
from weir.cli.output import event_line, flow_details, flow_table, task_names, task_table
from weir.telemetry import flow_timeline
from weir_proto import events as ev
from weir_proto.api import AttemptFailure, FlowSummary, FlowView, TaskSummary, TaskView
from weir_proto.errors import SpecError
from weir_proto.events import FlowEvent, event_type
from weir_proto.messages import ErrorType
from weir_proto.spec import FlowSpec
from weir_proto.status import AttemptState, FlowStatus, TaskStatus

from tests.flows import flow_view

T0 = datetime(2026, 11, 25, 18, 5, 1, tzinfo=UTC)
TRICKY = "[/] [bold]x[/bold] [red"
"""Text that rich would take for markup (and fail on) if it were ever parsed."""
TASK = "t"
"""The task most histories run (a task's name is a DNS label: no markup fits in it)."""
TASKS = [
    {"name": "a", "cmd": ["true"], "outputs": [{"name": "list", "path": "l"}]},
    {"name": "b", "cmd": ["true"]},
    {"name": TASK, "cmd": ["true"]},
    {"name": "m", "cmd": ["true"], "depends": ["a"], "map": {"over": "list"}},
    {"name": "deploy", "cmd": ["true"], "depends": ["a"], "when": 'tasks.a.outputs.list != ""'},
]
"""The flow every history submits: the tasks its events name."""


def render(*parts: object) -> str:
    console = Console(file=io.StringIO(), width=160, color_system="truecolor")
    for part in parts:
        console.print(part, highlight=False)
    output = console.file.getvalue()  # type: ignore[attr-defined]
    assert isinstance(output, str)
    return output


def task_view(status: TaskStatus, error_type: str = "exit_code") -> TaskView:
    return TaskView(
        name=f"t-{status}",
        status=str(status),
        attempt=2,
        queue="default",
        depends=[],
        failures=[AttemptFailure(attempt=1, error_type=error_type, message=TRICKY, at=T0)],
        retry_at=T0 + timedelta(seconds=5),
        started_at=T0,
        finished_at=T0 + timedelta(seconds=1),
        exit_code=3,
        error_type=error_type,
        error_message=TRICKY,
    )


@pytest.mark.parametrize("flow_status", list(FlowStatus))
def test_show_and_flows_render_every_flow_status_with_every_task_status(
    flow_status: FlowStatus,
) -> None:
    tasks = [
        task_view(status, error_type)
        for status, error_type in zip(TaskStatus, [*ErrorType] * 2, strict=False)
    ]
    view = flow_view(
        tasks,
        T0,
        name=f"name {TRICKY}",
        status=str(flow_status),
        seq=3,
        tags=[TRICKY],
        errors=[SpecError(path="$", message=TRICKY)],
    )
    shown = render(*flow_details(view))
    assert str(flow_status) in shown and TRICKY in shown
    for status in TaskStatus:
        assert f"t-{status}" in shown and str(status) in shown
    listed = render(flow_table([view]))
    assert str(flow_status) in listed and "name [/]" in listed
    assert json.loads(msgspec.json.encode(view))["status"] == flow_status


def test_every_error_type_renders_in_show() -> None:
    for error_type in ErrorType:
        view = flow_view([task_view(TaskStatus.FAILED, str(error_type))], T0)
        assert str(error_type) in render(*flow_details(view))


def make(kind: type[Any], **fields: Any) -> FlowEvent:
    event: FlowEvent = kind(id="", seq=0, flow_id="f", at=T0, **fields)
    return event


def flow(*events: FlowEvent) -> list[FlowEvent]:
    """A flow's history: submitted, then `events`, numbered and a second apart."""
    spec = msgspec.convert({"name": TRICKY, "tasks": TASKS}, FlowSpec)
    history = [make(ev.FlowSubmitted, spec=spec), *events]
    return [
        msgspec.structs.replace(e, id=f"f.{n}", seq=n, at=T0 + timedelta(seconds=n))
        for n, e in enumerate(history, start=1)
    ]


def _histories() -> list[list[FlowEvent]]:
    """Flows whose attempts end in every way, and whose flows end in every way."""
    later = T0 + timedelta(minutes=1)
    dispatched = make(ev.TaskDispatched, task=TASK, attempt=1, queue="default")
    started = make(ev.TaskStarted, task=TASK, attempt=1, runner=TRICKY)
    histories = [
        flow(make(ev.TaskQueued, task="a", queue="q", priority=1)),
        flow(dispatched),
        flow(dispatched, started),
        flow(
            dispatched,
            started,
            make(ev.TaskSucceeded, task=TASK, attempt=1),
            make(ev.FlowSucceeded),
        ),
        flow(
            dispatched,
            started,
            make(
                ev.TaskTakenOver,
                task=TASK,
                attempt=1,
                runner="b",
                previous_runner=TRICKY,
                silent_for=2,
            ),
        ),
        flow(dispatched, started, make(ev.TaskSnoozed, task=TASK, attempt=1, until=later)),
        flow(
            dispatched,
            started,
            make(ev.FlowCancelRequested, reason=TRICKY),
            make(ev.TaskCancelled, task=TASK, reason=TRICKY, attempt=1),
            make(ev.TaskSkipped, task="b", reason=TRICKY),
            make(ev.FlowCancelled, reason=TRICKY),
        ),
        flow(make(ev.FlowRejected, errors=[SpecError(path="$", message=TRICKY)], name=TRICKY)),
        flow(make(ev.FlowDeduplicated, existing="g", key=TRICKY)),
        flow(
            make(ev.TaskExpanded, task="m", count=7, items=[TRICKY, 1, 2, 3, 4, 5, {"k": 6}]),
            make(ev.TaskDispatched, task="m[0]", attempt=1, queue="default"),
            make(ev.TaskSucceeded, task="m[0]", attempt=1),
            make(ev.TaskSucceeded, task="m", attempt=0),
        ),
        flow(
            make(ev.FlowPaused, reason=TRICKY),
            make(ev.FlowResumed, status="pending"),
            make(ev.FlowUpdated, spec=flow()[0].spec, changed=["tags"]),  # type: ignore[union-attr]
            dispatched,
            started,
            make(ev.TaskFailed, task=TASK, attempt=1, error_type="exit_code", message=TRICKY),
            make(ev.FlowFailed, failed_tasks=[TASK]),
            make(ev.TaskRetried, task=TASK, tasks=[TASK, "b"], downstream=True),
        ),
        flow(
            make(ev.TaskConditionRead, task="deploy", values={"decision": TRICKY}),
            make(ev.TaskDispatched, task="deploy", attempt=1, queue="default"),
        ),
    ]
    for error_type in ErrorType:
        failure = {"task": TASK, "attempt": 1, "error_type": str(error_type), "message": TRICKY}
        histories.append(
            flow(
                dispatched,
                started,
                make(ev.TaskAttemptFailed, retry_at=later, exit_code=2, **failure),
                make(ev.TaskFailed, **failure),
                make(ev.FlowFailed, failed_tasks=[TASK]),
            )
        )
    return histories


def test_events_and_trace_render_every_event_and_attempt_status() -> None:
    histories = _histories()
    seen_events = {event_type(e) for history in histories for e in history}
    every_event = {t.__struct_config__.tag for t in get_args(FlowEvent)}
    assert seen_events == every_event
    seen_attempts = {a.status for h in histories for a in flow_timeline(h).attempts}
    assert seen_attempts == set(AttemptState)
    for history in histories:
        lines = render(*(event_line(e) for e in history))
        for event in history:
            assert event_type(event) in lines
            json.loads(msgspec.json.encode(event))
        drawn = render(waterfall.renderable(history, width=120, now=T0 + timedelta(seconds=20)))
        assert "flow " in drawn
        json.loads(msgspec.json.encode(flow_timeline(history)))


def test_flows_show_task_counts_and_tasks_show_their_flow() -> None:
    summary = FlowSummary(
        id="f-9",
        name="etl",
        status="running",
        created_at=T0,
        updated_at=T0,
        task_count=11,
        seq=4,
        task_counts={"running": 3, "succeeded": 7, "failed": 1},
    )
    row = next(line for line in render(flow_table([summary])).splitlines() if "f-9" in line)
    assert [cell.strip() for cell in row.split("│")[4:8]] == ["11", "3", "7", "1"]
    task = TaskSummary(
        flow_id="f-9",
        flow_name="etl",
        flow_created_at=T0,
        position=1,
        name=TRICKY,
        status="failed",
        attempt=2,
        queue="gpu",
        finished_at=T0,
        error_type="exit_code",
        error_message=TRICKY,
    )
    shown = render(task_table([task]))
    assert "f-9" in shown and TRICKY in shown and "gpu" in shown and "exit_code" in shown
    assert "18:05:01" in shown


def test_show_lists_a_mapped_tasks_instances_under_it_with_their_names_whole() -> None:
    names = ["list-the-files", "convert-every-file", "report", "convert-every-file[0]"]
    names += ["convert-every-file[1]"]
    tasks = [msgspec.structs.replace(task_view(TaskStatus.SUCCEEDED), name=n) for n in names]
    view = flow_view(tasks, T0, name="m", status="succeeded", seq=9)
    console = Console(file=io.StringIO(), width=80)
    for part in flow_details(view):
        console.print(part)
    shown = console.file.getvalue()  # type: ignore[attr-defined]
    rows = [n for line in shown.splitlines() for n in names if f"│ {n} " in line]
    assert rows == [
        "list-the-files",
        "convert-every-file",
        "convert-every-file[0]",
        "convert-every-file[1]",
        "report",
    ], shown


def test_show_lists_the_flows_params_by_name_as_written_with_long_values_cut() -> None:
    params = {"n": 3, "date": "2026-12-01", "dry": False, "opts": {"k": [1]}, "m": TRICKY}
    view = msgspec.convert(
        {"id": "f-1", "name": "etl", "status": "succeeded", "created_at": T0.isoformat()}
        | {"updated_at": T0.isoformat(), "task_count": 0, "seq": 3, "tasks": [], "params": params},
        FlowView,
    )
    shown = render(*flow_details(view))
    (listed,) = [ln for ln in shown.splitlines() if ln.startswith("params: ")]
    assert listed == f'params: date=2026-12-01  dry=false  m={TRICKY}  n=3  opts={{"k":[1]}}'

    long = msgspec.structs.replace(view, params={"blob": "x" * 500})
    (cut,) = [p.plain for p in flow_details(long) if isinstance(p, Text)][2:3]
    assert cut == "params: blob=" + "x" * 200 + "…"
    none = msgspec.structs.replace(view, params={})
    assert "params" not in render(*flow_details(none))


def test_task_names_give_a_maps_instances_as_a_range_or_a_count() -> None:
    many = [f"proc[{i}]" for i in range(10_000)]
    assert task_names(["split", *many, "report"]) == "split, proc[0..9999], report"
    assert task_names(["proc[2]", "proc[7]"]) == "proc[2], proc[7]"
    assert task_names([f"proc[{i}]" for i in (1, 4, 5, 9)]) == "proc[..] (4 instances)"
    assert task_names(["a", "b[x]", "c[1]"]) == "a, b[x], c[1]"
    assert task_names([]) == ""
