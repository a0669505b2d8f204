"""decide/evolve driven with random DAGs, random completion orders, failures, duplicated and
stale reports: every run ends, in order, with a gap-free log that folds to the same state."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st
from weir_proto.events import TERMINAL_FLOW_EVENTS, FlowEvent, event_type
from weir_proto.messages import AttemptFinished, AttemptStarted, ErrorType, OutputDigest
from weir_proto.spec import FlowSpec
from weir_proto.status import FlowStatus, TaskStatus
from weir_scheduler.decider import (
    Cancel,
    FireTimer,
    FoldedFlow,
    Policy,
    RecordFinished,
    RecordStarted,
    Reject,
    Release,
    Submit,
    decide,
    evolve,
    fold,
)
from weir_scheduler.planner import plan

from tests.flows import task, types

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def submit(tasks: list[dict[str, Any]]) -> tuple[FoldedFlow, list[FlowEvent]]:
    spec = msgspec.convert({"name": "f", "tasks": tasks}, FlowSpec)
    flow = FoldedFlow(id="f1")
    events = decide(flow, Submit(spec, plan(spec)), NOW)
    for event in events:
        flow = evolve(flow, event)
    return flow, events


def started(name: str, attempt: int = 1) -> RecordStarted:
    report = AttemptStarted(flow_id="f1", task=name, attempt=attempt, runner="r", token="t", at=NOW)
    return RecordStarted(report)


def finished(
    name: str, ok: bool = True, attempt: int = 1, outputs: list[OutputDigest] | None = None
) -> RecordFinished:
    """The report of `name`'s attempt ending: exit 0 (with `outputs`), or exit 1."""
    return RecordFinished(
        AttemptFinished(
            flow_id="f1",
            task=name,
            attempt=attempt,
            runner="r",
            token="t",
            at=NOW,
            exit_code=0 if ok else 1,
            error_type=None if ok else ErrorType.EXIT_CODE,
            outputs=outputs or [],
        )
    )


def typed(events: list[FlowEvent]) -> list[tuple[str, str]]:
    """Each event's type and task ("" for an event of the whole flow)."""
    return [(event_type(e), getattr(e, "task", "")) for e in events]


def apply(flow: FoldedFlow, command: Any) -> tuple[FoldedFlow, list[FlowEvent]]:
    events = decide(flow, command, NOW)
    for event in events:
        flow = evolve(flow, event)
    return flow, events


def test_submit_dispatches_only_the_roots() -> None:
    flow, events = submit([task("b", depends=["a"]), task("a"), task("c")])
    assert types(events) == [
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
    assert types(events) == ["task_succeeded", "flow_succeeded"]


def test_one_report_of_a_short_attempt_records_its_start_then_its_end() -> None:
    flow, _ = submit([task("a"), task("b", depends=["a"])])
    began = datetime(2025, 12, 31, 23, 59, tzinfo=UTC)
    report = msgspec.structs.replace(finished("a").report, started_at=began)
    flow, events = apply(flow, RecordFinished(report))
    assert types(events) == ["task_started", "task_succeeded", "task_dispatched"]
    assert events[0].at == began and events[0].runner == "r"  # type: ignore[union-attr]
    assert flow.tasks["a"].started_at == began and flow.tasks["a"].runner == "r"
    # the `started` report that went out anyway, late, changes nothing
    assert decide(flow, started("a"), NOW) == []


def test_the_start_in_a_finished_report_is_ignored_once_the_start_was_recorded() -> None:
    flow, _ = submit([task("a")])
    flow, _ = apply(flow, started("a"))
    report = msgspec.structs.replace(finished("a").report, started_at=NOW)
    flow, events = apply(flow, RecordFinished(report))
    assert types(events) == ["task_succeeded", "flow_succeeded"]


def test_rejected_flow_is_terminal_with_its_errors() -> None:
    from weir_proto.errors import SpecError

    error = SpecError(path="$", message="bad")
    flow, events = apply(FoldedFlow(id="f1"), Reject((error,), "name"))
    assert types(events) == ["flow_rejected"]
    assert flow.status is FlowStatus.REJECTED and flow.errors == (error,)


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[list[dict[str, Any]], st.DataObject]:
    count = draw(st.integers(1, 12))
    names = [f"t{i}" for i in range(count)]
    tasks = []
    for i, name in enumerate(names):
        depends = draw(st.lists(st.sampled_from(names[:i]), unique=True, max_size=3)) if i else []
        extra: dict[str, Any] = {}
        if draw(st.booleans()):
            extra["retry"] = {"max_attempts": draw(st.integers(1, 4))}
        tasks.append(task(name, depends=depends, **extra))
    flow_extra = {}
    if draw(st.booleans()):
        flow_extra["max_parallel"] = draw(st.integers(1, 3))
    if draw(st.booleans()):
        flow_extra["fail_fast"] = True
    return [{"__flow__": flow_extra}, *draw(st.permutations(tasks))], draw(st.data())


OUTCOMES = ["ok", "ok", "ok", "fail", "snooze", "lost", "cancel"]


@given(scenarios())
@settings(max_examples=300, deadline=None)
def test_random_runs_end_correctly_with_a_gap_free_log(
    scenario: tuple[list[dict[str, Any]], st.DataObject],
) -> None:
    """Whatever happens (successes, failures, snoozes, lost attempts, a cancel), the flow
    ends; no task starts before its dependencies; attempts never exceed max_attempts
    (snoozes aside); max_parallel holds; duplicates decide nothing; the log folds back."""
    head, *tasks = scenario[0]
    data = scenario[1]
    spec_doc = {"name": "f", "tasks": tasks, **head["__flow__"]}
    spec = msgspec.convert(spec_doc, FlowSpec)
    flow_plan = plan(spec)
    flow = FoldedFlow(id="f1")
    log = decide(flow, Submit(spec, flow_plan), NOW)
    for event in log:
        flow = evolve(flow, event)
    depends = {t["name"]: set(t["depends"]) for t in tasks}
    max_attempts = {n: flow_plan.tasks[n].retry.max_attempts for n in depends}  # type: ignore[union-attr]
    succeeded: set[str] = set()
    snoozes: dict[str, int] = dict.fromkeys(depends, 0)
    waiting: list[tuple[str, int]] = []  # (task, attempt) whose retry timer is due
    handled: list[Any] = []

    def run(command: Any) -> None:
        nonlocal flow
        events = decide(flow, command, NOW)
        for event in events:
            flow = evolve(flow, event)
            kind = event_type(event)
            if kind == "task_dispatched":
                assert depends[event.task] <= succeeded, "dispatched before its dependencies"  # type: ignore[union-attr]
            if kind in ("task_attempt_failed", "task_snoozed"):
                waiting.append((event.task, event.attempt))  # type: ignore[union-attr]
            if kind == "task_snoozed":
                snoozes[event.task] += 1  # type: ignore[union-attr]
            if kind == "task_succeeded":
                succeeded.add(event.task)  # type: ignore[union-attr]
        log.extend(events)
        handled.append(command)
        limit = spec.max_parallel
        assert limit is None or flow.active <= limit

    for _ in range(200):
        active = [t for t in flow.tasks.values() if t.status.active]
        if not active and not waiting:
            break
        if waiting and (not active or data.draw(st.booleans())):
            name, attempt = waiting.pop(data.draw(st.integers(0, len(waiting) - 1)))
            run(FireTimer("retry", name, attempt))
            continue
        current = data.draw(st.sampled_from(active))
        outcome = data.draw(st.sampled_from(OUTCOMES))
        if outcome != "lost":
            run(started(current.name, current.attempt))
        if outcome == "ok":
            run(finished(current.name, True, current.attempt))
        elif outcome == "fail":
            run(finished(current.name, False, current.attempt))
        elif outcome == "snooze":
            report = msgspec.structs.replace(
                finished(current.name, True, current.attempt).report, snooze_seconds=5.0
            )
            run(RecordFinished(report))
        elif outcome == "lost":
            run(FireTimer("lease", current.name, current.attempt))
        else:
            run(Cancel("test"))
        # A duplicate of anything already handled decides nothing.
        assert decide(flow, data.draw(st.sampled_from(handled)), NOW) == []

    assert [e.seq for e in log] == list(range(1, len(log) + 1))
    assert flow.status.terminal, flow
    assert event_type(log[-1]) in ("flow_succeeded", "flow_failed", "flow_cancelled")
    assert sum(event_type(e) in TERMINAL_FLOW_EVENTS for e in log) == 1
    assert all(t.status.terminal for t in flow.tasks.values())
    for name, t in flow.tasks.items():
        assert len(t.failures) <= max_attempts[name]
        assert t.attempt <= max_attempts[name] + snoozes[name]
    if flow.status is FlowStatus.SUCCEEDED:
        assert succeeded == set(depends)
    elif flow.status is FlowStatus.FAILED:
        assert any(t.status is TaskStatus.FAILED for t in flow.tasks.values())
    assert flow.active == 0 and flow.unfinished == 0
    assert fold("f1", log) == flow


def test_limited_queue_tasks_wait_queued_until_released() -> None:
    policy = Policy(limited_queues=frozenset({"gpu"}))
    spec = msgspec.convert(
        {"name": "f", "tasks": [task("a", queue="gpu"), task("b", depends=["a"])]}, FlowSpec
    )
    flow = FoldedFlow(id="f1")
    events = decide(flow, Submit(spec, plan(spec)), NOW, policy)
    assert types(events) == ["flow_submitted", "task_queued"]
    for event in events:
        flow = evolve(flow, event)
    assert flow.tasks["a"].status is TaskStatus.QUEUED and flow.active == 0
    released = decide(flow, Release("a"), NOW, policy)
    assert [(event_type(e), e.attempt) for e in released] == [("task_dispatched", 1)]  # type: ignore[union-attr]
    assert decide(flow, Release("b"), NOW, policy) == []  # not queued: nothing to release
    cancelled = decide(flow, Cancel("stop"), NOW, policy)
    assert typed(cancelled) == [
        ("flow_cancel_requested", ""),
        ("task_cancelled", "a"),
        ("task_cancelled", "b"),
        ("flow_cancelled", ""),
    ]


def test_cancel_ends_an_attempt_dispatched_but_not_started_at_once() -> None:
    """The reported defect: an attempt nobody took (its queue has no runner, or its
    dispatch was purged by the cancel) never reports, so the cancel ends it itself."""
    flow, _ = submit([task("train", queue="gpu"), task("prep")])
    flow, _ = apply(flow, started("prep"))
    flow, events = apply(flow, Cancel("stop"))
    assert [(event_type(e), getattr(e, "task", None)) for e in events] == [
        ("flow_cancel_requested", None),
        ("task_cancelled", "train"),
    ]
    assert flow.tasks["train"].status is TaskStatus.CANCELLED
    assert flow.status is FlowStatus.CANCELLING and flow.active == 1  # prep is being killed
    assert decide(flow, Cancel("again"), NOW) == []  # a second cancel changes nothing
    assert decide(flow, started("train"), NOW) == []  # a late start is stale
    killed = RecordFinished(
        msgspec.structs.replace(finished("prep", False).report, error_type=ErrorType.CANCELLED)
    )
    flow, events = apply(flow, killed)
    assert types(events) == ["task_cancelled", "flow_cancelled"]


def test_cancel_again_ends_a_flow_left_cancelling_by_an_earlier_version() -> None:
    flow, _ = submit([task("train", queue="gpu")])
    # What a cancel used to record: the request, and the dispatched attempt left waiting.
    request = decide(flow, Cancel("stop"), NOW)[0]
    flow = evolve(flow, request)
    assert flow.tasks["train"].status is TaskStatus.DISPATCHED
    flow, events = apply(flow, Cancel("again"))
    assert types(events) == ["task_cancelled", "flow_cancelled"]


def test_fail_fast_ends_siblings_dispatched_but_not_started() -> None:
    spec = msgspec.convert(
        {
            "name": "f",
            "fail_fast": True,
            "tasks": [task("a", retry={"max_attempts": 1}), task("b")],
        },
        FlowSpec,
    )
    flow = fold("f1", decide(FoldedFlow(id="f1"), Submit(spec, plan(spec)), NOW))
    flow, events = apply(flow, finished("a", ok=False))
    assert types(events) == [
        "task_failed",
        "flow_cancel_requested",
        "task_cancelled",
        "flow_failed",
    ]


def test_deterministic_failures_are_not_retried_whatever_max_attempts() -> None:
    for error_type in (ErrorType.SECRET, ErrorType.INVALID_IMAGE, ErrorType.CANCELLED):
        flow, _ = submit([task("a", retry={"max_attempts": 5})])
        report = msgspec.structs.replace(finished("a", False).report, error_type=error_type)
        flow, events = apply(flow, RecordFinished(report))
        assert types(events) == ["task_failed", "flow_failed"], error_type
    flow, _ = submit([task("a", retry={"max_attempts": 5})])
    flow, events = apply(flow, finished("a", False))
    assert types(events) == ["task_attempt_failed"]


def test_the_dispatch_window_holds_back_ready_tasks_until_attempts_start() -> None:
    policy = Policy(dispatch_window=2)
    retry = {"max_attempts": 2, "backoff": {"strategy": "constant", "base": 1, "jitter": None}}
    spec = msgspec.convert(
        {"name": "f", "tasks": [task(f"t{i}", retry=retry) for i in range(4)]}, FlowSpec
    )

    def run(flow: FoldedFlow, command: Any) -> tuple[FoldedFlow, list[tuple[str, str]]]:
        events = decide(flow, command, NOW, policy)
        for event in events:
            flow = evolve(flow, event)
        return flow, [(event_type(e), getattr(e, "task", "")) for e in events]

    flow, events = run(FoldedFlow(id="f1"), Submit(spec, plan(spec)))
    assert events[1:] == [("task_dispatched", "t0"), ("task_dispatched", "t1")]
    assert set(flow.ready) == {"t2", "t3"}
    # A start makes room: the next ready task goes out in the same decision.
    flow, events = run(flow, started("t0"))
    assert events == [("task_started", "t0"), ("task_dispatched", "t2")]
    # t0 fails; its retry comes due while the window is full, so it waits queued...
    flow, events = run(flow, finished("t0", ok=False))
    assert events == [("task_attempt_failed", "t0")]
    flow, events = run(flow, FireTimer("retry", "t0", 1))
    assert events == [("task_queued", "t0")]
    # ...and goes out before the ready t3 (it was handed out before) when t1 starts.
    flow, events = run(flow, started("t1"))
    assert events == [("task_started", "t1"), ("task_dispatched", "t0")]
    assert flow.tasks["t0"].attempt == 2 and set(flow.ready) == {"t3"}


def run_flow(doc: dict[str, Any], outcomes: dict[str, bool]) -> tuple[FoldedFlow, list[FlowEvent]]:
    """Submit `doc` and finish every dispatched task as `outcomes` says (default: ok)."""
    spec = msgspec.convert({"name": "f", **doc}, FlowSpec)
    flow, log = apply(FoldedFlow(id="f1"), Submit(spec, plan(spec)))
    for _ in range(50):
        running = [t for t in flow.tasks.values() if t.status.active]
        if not running:
            break
        flow, events = apply(flow, finished(running[0].name, outcomes.get(running[0].name, True)))
        log += events
    return flow, log


def statuses(flow: FoldedFlow) -> dict[str, str]:
    return {name: str(t.status) for name, t in flow.tasks.items()}


def test_a_cleanup_task_runs_after_a_failure_and_the_flow_still_fails() -> None:
    flow, _ = run_flow(
        {
            "tasks": [
                task("extract"),
                task("load", depends=["extract"], retry={"max_attempts": 1}),
                task("report", depends=["load"]),
                task("cleanup", depends=["load"], trigger="all_done"),
                task("alert", depends=["load"], trigger="one_failed"),
            ]
        },
        {"load": False},
    )
    assert statuses(flow) == {
        "extract": "succeeded",
        "load": "failed",
        "report": "skipped",
        "cleanup": "succeeded",
        "alert": "succeeded",
    }
    assert flow.status is FlowStatus.FAILED
    assert flow.tasks["report"].error_message == 'upstream task "load" failed'


def test_a_one_success_join_runs_when_one_branch_failed_and_another_succeeded() -> None:
    """`one_success` joins branches that may fail: the flow still fails, but the join runs
    once its branches have ended with one success (and is skipped when none succeeded)."""
    spec = {
        "tasks": [
            task("a", retry={"max_attempts": 1}),
            task("b", retry={"max_attempts": 1}),
            task("join", depends=["a", "b"], trigger="one_success"),
            task("after-a", depends=["a"]),
        ]
    }
    flow, _ = run_flow(spec, {"a": False})
    assert statuses(flow) == {
        "a": "failed",
        "b": "succeeded",
        "join": "succeeded",
        "after-a": "skipped",
    }
    assert flow.status is FlowStatus.FAILED
    flow, _ = run_flow(spec, {"a": False, "b": False})
    assert flow.tasks["join"].status is TaskStatus.SKIPPED
    assert flow.tasks["join"].error_message == "trigger one_success: no upstream task succeeded"


def test_a_failure_handler_is_skipped_when_nothing_failed() -> None:
    flow, _ = run_flow(
        {"tasks": [task("a"), task("alert", depends=["a"], trigger="one_failed")]}, {}
    )
    assert statuses(flow) == {"a": "succeeded", "alert": "skipped"}
    assert flow.tasks["alert"].error_message == "trigger one_failed: no upstream task failed"
    assert flow.status is FlowStatus.SUCCEEDED


def test_a_false_condition_skips_the_task_and_its_dependents_follow_their_trigger() -> None:
    flow, log = run_flow(
        {
            "params": {"env": {"default": "dev"}},
            "tasks": [
                task("check"),
                task("deploy", depends=["check"], when='params.env == "prod"'),
                task("smoke", depends=["deploy"]),
                task("notify", depends=["deploy"], trigger="none_failed"),
                task("prod-only", when="params.env == 'prod' and tasks.check.exit_code == 0")
                | {"depends": ["check"]},
            ],
        },
        {},
    )
    assert statuses(flow) == {
        "check": "succeeded",
        "deploy": "skipped",
        "smoke": "skipped",
        "notify": "succeeded",
        "prod-only": "skipped",
    }
    assert flow.tasks["deploy"].error_message == 'condition is false: params.env == "prod"'
    reason = 'trigger all_success: upstream task "deploy" was skipped'
    assert flow.tasks["smoke"].error_message == reason
    assert flow.status is FlowStatus.SUCCEEDED
    assert fold("f1", log) == flow


def test_a_condition_over_an_upstream_exit_code_decides_the_branch() -> None:
    tasks = [
        task("check", retry={"max_attempts": 1}),
        task("go", depends=["check"], trigger="all_done", when="tasks.check.exit_code == 0"),
        task("stop", depends=["check"], trigger="all_done", when="tasks.check.exit_code != 0"),
    ]
    flow, _ = run_flow({"tasks": tasks}, {"check": False})
    assert statuses(flow) == {"check": "failed", "go": "skipped", "stop": "succeeded"}


def test_on_exit_runs_last_and_gets_the_flow_outcome() -> None:
    doc = {
        "tasks": [task("a", retry={"max_attempts": 1}), task("b", depends=["a"])],
        "on_exit": task("bye"),
    }
    flow, log = run_flow(doc, {"a": False})
    dispatched = [e.task for e in log if event_type(e) == "task_dispatched"]  # type: ignore[union-attr]
    assert dispatched == ["a", "bye"]
    assert statuses(flow) == {"a": "failed", "b": "skipped", "bye": "succeeded"}
    assert flow.status is FlowStatus.FAILED
    from weir_scheduler.decider import dispatch_spec

    env = {v.name: v.value for v in dispatch_spec(flow, "bye").env}
    assert env["WEIR_FLOW_STATUS"] == "failed"
    ok, _ = run_flow(doc, {})
    assert {v.name: v.value for v in dispatch_spec(ok, "bye").env}["WEIR_FLOW_STATUS"] == (
        "succeeded"
    )
