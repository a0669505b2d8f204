"""`weir trace`'s timeline reads the decider's fold: for every log the decider machines write
(random flows, reports in any order, retries, snoozes, cancels, mapped tasks, reruns), the
timeline agrees with `evolve`'s state, and each of its attempts with the events that began
and ended it."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import settings
from hypothesis.stateful import invariant
from weir.telemetry import FlowTimeline, flow_timeline
from weir_proto import events as ev
from weir_proto.events import FlowEvent
from weir_proto.spec import FlowSpec
from weir_proto.status import AttemptState, TaskStatus
from weir_scheduler.decider import FoldedFlow

from tests.flows import task as task_spec
from tests.unit.test_decider_machine import DeciderMachine, MappedDeciderMachine
from tests.unit.test_telemetry import Log, at, submitted

ENDED_BY = {
    ev.TaskSucceeded: AttemptState.SUCCEEDED,
    ev.TaskFailed: AttemptState.FAILED,
    ev.TaskAttemptFailed: AttemptState.FAILED,
    ev.TaskSnoozed: AttemptState.SNOOZED,
    ev.TaskCancelled: AttemptState.CANCELLED,
    ev.TaskSkipped: AttemptState.SNOOZED,
}
"""The state an open attempt is left in by the event that ends it (a skip ends an open
attempt only when its snooze comes while the flow is failing)."""


def attempts_from_events(log: list[FlowEvent]) -> dict[tuple[str, int], AttemptState]:
    """Each attempt's state as its own events tell it, without the decider: opened by its
    dispatch, running once started, ended by the first event that ends it."""
    states: dict[tuple[str, int], AttemptState] = {}
    current: dict[str, int] = {}
    for event in log:
        name = getattr(event, "task", "")
        ended = ENDED_BY.get(type(event))
        if isinstance(event, ev.TaskDispatched):
            states[name, event.attempt] = AttemptState.DISPATCHED
            current[name] = event.attempt
        elif isinstance(event, ev.TaskStarted):
            states[name, current[name]] = AttemptState.RUNNING
        elif isinstance(event, ev.TaskRetried):  # planned again while handed out: dropped
            for again in event.tasks:
                if again in current and not states[again, current[again]].ended:
                    states[again, current[again]] = AttemptState.CANCELLED
        elif ended is not None and name in current and not states[name, current[name]].ended:
            states[name, current[name]] = ended
    return states


def check(flow: FoldedFlow, log: list[FlowEvent]) -> FlowTimeline:
    timeline = flow_timeline(log)
    assert (timeline.flow_id, timeline.name) == (flow.id, flow.name)
    assert timeline.status is flow.status
    assert timeline.submitted_at == flow.created_at
    assert timeline.finished == (timeline.finished_at is not None) == flow.status.terminal
    recorded = {(a.task, a.attempt): a for a in timeline.attempts}
    assert len(recorded) == len(timeline.attempts), "an attempt is recorded twice"
    assert {k: a.status for k, a in recorded.items()} == attempts_from_events(log)
    for attempt in timeline.attempts:
        assert attempt.finished == (attempt.finished_at is not None)
        if attempt.started_at is not None:
            assert attempt.dispatched_at is not None
            assert attempt.dispatched_at <= attempt.started_at
    skipped = {s.task for s in timeline.skipped}
    for name, task in flow.tasks.items():
        current = recorded.get((name, task.attempt))
        match task.status:
            case TaskStatus.DISPATCHED | TaskStatus.RUNNING:
                assert current is not None and current.status.value == task.status.value
                assert current.dispatched_at == task.dispatched_at
            case TaskStatus.SUCCEEDED if current is not None:
                assert current.status is AttemptState.SUCCEEDED
                assert current.exit_code == task.exit_code
            case TaskStatus.RETRYING:
                assert current is not None
                assert current.status in (AttemptState.FAILED, AttemptState.SNOOZED)
            case TaskStatus.SKIPPED:
                assert name in skipped
            case TaskStatus.CANCELLED:
                assert name in skipped or (
                    current is not None and current.status is AttemptState.CANCELLED
                )
            case TaskStatus.PENDING | TaskStatus.QUEUED:
                assert name not in skipped, f"{name} is planned again but listed as skipped"
    for skip in timeline.skipped:
        assert flow.tasks[skip.task].status in (TaskStatus.SKIPPED, TaskStatus.CANCELLED)
    return timeline


def test_a_take_over_keeps_the_first_start_and_names_the_new_runner() -> None:
    log = submitted(Log("take-1"), tasks=("a",))
    log.add(ev.TaskDispatched, 0.1, task="a", attempt=1, queue="default")
    log.add(ev.TaskStarted, 0.2, task="a", attempt=1, runner="r1")
    taken = {"runner": "r2", "previous_runner": "r1", "silent_for": 30.0}
    log.add(ev.TaskTakenOver, 30.2, task="a", attempt=1, **taken)
    log.add(ev.TaskSucceeded, 31.0, task="a", attempt=1)
    [attempt] = flow_timeline(log.events).attempts
    assert (attempt.started_at, attempt.runner) == (at(0.2), "r2")
    assert attempt.run_s == pytest.approx(30.8)


def test_a_mapped_task_runs_as_its_instances_and_a_retry_counts_on() -> None:
    spec = [task_spec("src", outputs=[{"name": "l", "path": "l"}])]
    spec.append(task_spec("m", depends=["src"], map={"over": "l"}))
    log = Log("map-1").add(
        ev.FlowSubmitted, 0.0, spec=msgspec.convert({"name": "m", "tasks": spec}, FlowSpec)
    )
    log.add(ev.TaskDispatched, 0.1, task="src", attempt=1, queue="default")
    log.add(ev.TaskSucceeded, 0.2, task="src", attempt=1)
    log.add(ev.TaskExpanded, 0.3, task="m", count=2, items=[1, 2])
    for i in (0, 1):
        log.add(ev.TaskDispatched, 0.4, task=f"m[{i}]", attempt=1, queue="default")
    log.add(ev.TaskSucceeded, 0.5, task="m[0]", attempt=1)
    failure = {"error_type": "exit_code", "message": "exited with 1", "exit_code": 1}
    log.add(ev.TaskFailed, 0.6, task="m[1]", attempt=1, **failure)
    log.add(ev.TaskFailed, 0.6, task="m", attempt=0, **failure)
    log.add(ev.FlowFailed, 0.7, failed_tasks=["m"])
    log.add(ev.TaskRetried, 1.0, task="m[1]", tasks=["m", "m[1]"])
    log.add(ev.TaskDispatched, 1.1, task="m[1]", attempt=2, queue="default")
    timeline = flow_timeline(log.events)
    assert [(a.task, a.attempt, a.status) for a in timeline.attempts] == [
        ("src", 1, "succeeded"),
        ("m[0]", 1, "succeeded"),
        ("m[1]", 1, "failed"),
        ("m[1]", 2, "dispatched"),
    ]
    assert (timeline.status, timeline.finished_at, timeline.skipped) == ("running", None, ())


class TimelineMachine(DeciderMachine):
    @invariant()
    def the_timeline_reads_the_fold(self) -> None:
        check(self.flow, self.logs[self.current])


class MappedTimelineMachine(MappedDeciderMachine):
    @invariant()
    def the_timeline_reads_the_fold(self) -> None:
        check(self.flow, self.logs[self.current])


TimelineMachine.TestCase.settings = settings(max_examples=60, stateful_step_count=30, deadline=None)
test_timeline_machine = TimelineMachine.TestCase
MappedTimelineMachine.TestCase.settings = settings(
    max_examples=60, stateful_step_count=30, deadline=None
)
test_mapped_timeline_machine = MappedTimelineMachine.TestCase
