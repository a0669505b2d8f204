"""A user's cancel of a flow with an on_exit task, like Argo's stop: running attempts of
the other tasks are killed, unstarted ones cancelled, then the on_exit task runs last with
WEIR_FLOW_STATUS=cancelled and the flow ends cancelled (also when the on_exit task fails).
A second cancel ends the on_exit task too, like Argo's terminate."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from weir_proto.events import FlowCancelRequested, FlowEvent
from weir_proto.messages import ErrorType
from weir_proto.status import FlowStatus
from weir_scheduler.decider import Cancel, FoldedFlow, Pause, fold

from tests.flows import task
from tests.unit.test_decider import NOW, finished, started, typed
from tests.unit.test_decider_fail_fast import (
    ONCE,
    apply,
    assert_cancels_all,
    ended,
    flow_status_env,
    run_to_success,
    statuses,
    submitted,
)

FLOW: dict[str, Any] = {
    "fail_fast": False,
    "tasks": [task("a"), task("b", depends=["a"])],
    "on_exit": task("bye", retry=ONCE),
}


def test_cancel_kills_running_tasks_then_runs_on_exit_with_status_cancelled() -> None:
    flow, log = submitted(FLOW)
    flow, _ = apply(flow, started("a"), log)
    flow, events = apply(flow, Cancel("stop"), log)
    assert typed(events) == [("flow_cancel_requested", ""), ("task_cancelled", "b")]
    request = events[0]
    assert isinstance(request, FlowCancelRequested)
    assert request.spares_on_exit and not request.fail_fast
    assert flow.status is FlowStatus.CANCELLING
    assert flow.tasks["bye"].status.value == "pending"  # waits for "a"'s end to be recorded
    flow, events = apply(flow, ended("a", ErrorType.CANCELLED), log)
    assert typed(events) == [("task_cancelled", "a"), ("task_dispatched", "bye")]
    assert flow_status_env(flow) == "cancelled"
    flow, events = run_to_success(flow, "bye", log)
    assert typed(events) == [("task_succeeded", "bye"), ("flow_cancelled", "")]
    assert statuses(flow) == {"a": "cancelled", "b": "cancelled", "bye": "succeeded"}
    assert fold("f1", log) == flow


def test_a_failed_on_exit_task_leaves_the_cancelled_flow_cancelled() -> None:
    flow, log = submitted(FLOW)
    flow, _ = apply(flow, Cancel("stop"), log)  # nothing ran: the on_exit task runs at once
    assert flow.tasks["bye"].status.value == "dispatched"
    flow, events = apply(flow, finished("bye", ok=False), log)
    assert typed(events) == [("task_failed", "bye"), ("flow_cancelled", "")]
    assert flow.status is FlowStatus.CANCELLED
    assert fold("f1", log) == flow


def cancelled_twice(running: str) -> tuple[FoldedFlow, list[FlowEvent], list[FlowEvent]]:
    """FLOW cancelled twice with task `running` running at the second cancel ("bye", the
    on_exit task, started after the first): the state, the log, the second's events."""
    flow, log = submitted(FLOW)
    if running != "bye":
        flow, _ = apply(flow, started(running), log)
    flow, _ = apply(flow, Cancel("stop"), log)
    if running == "bye":
        flow, _ = apply(flow, started("bye"), log)
    flow, events = apply(flow, Cancel("now"), log)
    assert_cancels_all(flow, events)
    return flow, log, events


def test_a_second_cancel_kills_the_running_on_exit_task() -> None:
    flow, log, events = cancelled_twice("bye")
    assert typed(events) == [("flow_cancel_requested", "")]
    flow, events = apply(flow, ended("bye", ErrorType.CANCELLED), log)
    assert typed(events) == [("task_cancelled", "bye"), ("flow_cancelled", "")]
    assert fold("f1", log) == flow


def test_a_second_cancel_ends_a_waiting_on_exit_task() -> None:
    flow, log, events = cancelled_twice("a")
    assert typed(events) == [("flow_cancel_requested", ""), ("task_cancelled", "bye")]
    flow, events = apply(flow, ended("a", ErrorType.CANCELLED), log)
    assert typed(events) == [("task_cancelled", "a"), ("flow_cancelled", "")]
    assert statuses(flow) == {"a": "cancelled", "b": "cancelled", "bye": "cancelled"}


def test_a_task_failed_before_the_cancel_still_fails_the_flow() -> None:
    doc = {**FLOW, "tasks": [task("a", retry=ONCE), task("c")]}
    flow, log = submitted(doc)
    flow, _ = apply(flow, started("c"), log)
    flow, _ = apply(flow, finished("a", ok=False), log)
    flow, _ = apply(flow, Cancel("stop"), log)
    flow, _ = apply(flow, ended("c", ErrorType.CANCELLED), log)
    assert flow_status_env(flow) == "failed"
    flow, events = apply(flow, finished("bye"), log)
    assert typed(events) == [("task_succeeded", "bye"), ("flow_failed", "")]


def test_a_flow_cancelled_before_its_start_time_runs_no_on_exit_task() -> None:
    later = (NOW + timedelta(hours=1)).isoformat()
    flow, log = submitted({**FLOW, "scheduled_at": later})
    flow, events = apply(flow, Cancel("stop"), log)
    assert_cancels_all(flow, events)
    assert flow.status is FlowStatus.CANCELLED
    assert statuses(flow) == {"a": "cancelled", "b": "cancelled", "bye": "cancelled"}


def test_a_flow_without_on_exit_is_cancelled_as_before() -> None:
    flow, log = submitted({"fail_fast": False, "tasks": [task("a"), task("b", depends=["a"])]})
    flow, _ = apply(flow, started("a"), log)
    flow, events = apply(flow, Cancel("stop"), log)
    assert typed(events) == [("flow_cancel_requested", ""), ("task_cancelled", "b")]
    assert_cancels_all(flow, events)
    flow, events = apply(flow, ended("a", ErrorType.CANCELLED), log)
    assert typed(events) == [("task_cancelled", "a"), ("flow_cancelled", "")]


def test_a_cancel_of_a_paused_flow_whose_other_tasks_ended_runs_on_exit_at_once() -> None:
    """Found by the decider machine: with every other task ended while paused, the on_exit
    task was ready but held by the pause, and the cancel's event cleared what was ready: the
    flow stayed cancelling with nothing left to run."""
    once = {**FLOW, "tasks": [task("a", retry=ONCE), task("b", depends=["a"])]}
    flow, log = submitted(once)
    flow, _ = apply(flow, started("a"), log)
    flow, _ = apply(flow, Pause("hold"), log)
    flow, _ = apply(flow, finished("a", ok=False), log)  # "b" is skipped: the flow is failing
    assert statuses(flow) == {"a": "failed", "b": "skipped", "bye": "pending"}
    flow, events = apply(flow, Cancel("stop"), log)
    assert typed(events) == [("flow_cancel_requested", ""), ("task_dispatched", "bye")]
    assert flow_status_env(flow) == "failed"  # a task had failed before the cancel
    flow, events = run_to_success(flow, "bye", log)
    assert typed(events) == [("task_succeeded", "bye"), ("flow_failed", "")]
    assert fold("f1", log) == flow
