"""decide/evolve driven with random DAGs, random completion orders, failures, duplicated and
stale reports: every run ends, in order, with a gap-free log that folds to the same state."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st
from weir_proto.events import FlowEvent, event_type
from weir_proto.messages import AttemptFinished, AttemptStarted, ErrorType
from weir_proto.spec import FlowSpec
from weir_proto.status import FlowStatus, TaskStatus
from weir_scheduler.decider import (
    Flow,
    RecordFinished,
    RecordStarted,
    Reject,
    Submit,
    decide,
    evolve,
    fold,
)
from weir_scheduler.planner import plan

from tests.flows import task

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def submit(tasks: list[dict[str, Any]]) -> tuple[Flow, list[FlowEvent]]:
    spec = msgspec.convert({"name": "f", "tasks": tasks}, FlowSpec)
    flow = Flow(id="f1")
    events = decide(flow, Submit(spec, plan(spec)), NOW)
    for event in events:
        flow = evolve(flow, event)
    return flow, events


def started(name: str, attempt: int = 1) -> RecordStarted:
    report = AttemptStarted(flow_id="f1", task=name, attempt=attempt, runner="r", at=NOW)
    return RecordStarted(report)


def finished(name: str, ok: bool = True, attempt: int = 1) -> RecordFinished:
    return RecordFinished(
        AttemptFinished(
            flow_id="f1",
            task=name,
            attempt=attempt,
            runner="r",
            at=NOW,
            exit_code=0 if ok else 1,
            error_type=None if ok else ErrorType.EXIT_CODE,
        )
    )


def apply(flow: Flow, command: Any) -> tuple[Flow, list[FlowEvent]]:
    events = decide(flow, command, NOW)
    for event in events:
        flow = evolve(flow, event)
    return flow, events


def test_submit_dispatches_only_the_roots() -> None:
    flow, events = submit([task("b", depends=["a"]), task("a"), task("c")])
    assert [event_type(e) for e in events] == [
        "flow_submitted",
        "task_dispatched",
        "task_dispatched",
    ]
    assert {e.task for e in events[1:]} == {"a", "c"}  # type: ignore[union-attr]
    assert flow.tasks["b"].status is TaskStatus.PENDING


def test_submitting_twice_decides_nothing() -> None:
    flow, _ = submit([task("a")])
    spec = msgspec.convert({"name": "f", "tasks": [task("a")]}, FlowSpec)
    assert decide(flow, Submit(spec, plan(spec)), NOW) == []
    assert decide(flow, Reject(()), NOW) == []


def test_reports_for_other_attempts_or_unknown_tasks_decide_nothing() -> None:
    flow, _ = submit([task("a")])
    assert decide(flow, started("a", attempt=2), NOW) == []
    assert decide(flow, finished("zzz"), NOW) == []


def test_finish_without_start_report_still_completes_the_task() -> None:
    flow, _ = submit([task("a")])
    flow, events = apply(flow, finished("a"))
    assert [event_type(e) for e in events] == ["task_succeeded", "flow_succeeded"]


def test_rejected_flow_is_terminal_with_its_errors() -> None:
    from weir_proto.errors import SpecError

    error = SpecError(path="$", message="bad")
    flow, events = apply(Flow(id="f1"), Reject((error,), "name"))
    assert [event_type(e) for e in events] == ["flow_rejected"]
    assert flow.status is FlowStatus.REJECTED and flow.errors == (error,)


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[list[dict[str, Any]], st.DataObject]:
    count = draw(st.integers(1, 15))
    names = [f"t{i}" for i in range(count)]
    tasks = []
    for i, name in enumerate(names):
        depends = draw(st.lists(st.sampled_from(names[:i]), unique=True, max_size=3)) if i else []
        tasks.append(task(name, depends=depends))
    return draw(st.permutations(tasks)), draw(st.data())


@given(scenarios())
@settings(max_examples=300, deadline=None)
def test_random_runs_end_correctly_with_a_gap_free_log(
    scenario: tuple[list[dict[str, Any]], st.DataObject],
) -> None:
    tasks, data = scenario
    depends = {t["name"]: set(t["depends"]) for t in tasks}
    flow, log = submit(tasks)
    succeeded: set[str] = set()
    in_flight = [e.task for e in log if event_type(e) == "task_dispatched"]  # type: ignore[union-attr]
    done: list[str] = []
    while in_flight:
        name = data.draw(st.sampled_from(in_flight))
        in_flight.remove(name)
        ok = data.draw(st.sampled_from([True, True, True, False]))
        flow, events = apply(flow, started(name))
        log += events
        flow, events = apply(flow, finished(name, ok))
        log += events
        if ok:
            succeeded.add(name)
        done.append(name)
        for event in events:
            if event_type(event) == "task_dispatched":
                child = event.task  # type: ignore[union-attr]
                assert depends[child] <= succeeded, "dispatched before its dependencies"
                in_flight.append(child)
        # A duplicate of any report already handled decides nothing.
        again = data.draw(st.sampled_from(done))
        assert decide(flow, finished(again), NOW) == []
        assert decide(flow, started(again), NOW) == []

    assert [e.seq for e in log] == list(range(1, len(log) + 1))
    assert flow.status.terminal
    assert event_type(log[-1]) in ("flow_succeeded", "flow_failed")
    assert sum(event_type(e).startswith("flow_") for e in log) == 2
    assert all(t.status.terminal for t in flow.tasks.values())
    if flow.status is FlowStatus.SUCCEEDED:
        assert succeeded == set(depends)
    else:
        assert any(t.status is TaskStatus.FAILED for t in flow.tasks.values())
    assert flow.active == 0 and flow.unfinished == 0
    assert fold("f1", log) == flow
