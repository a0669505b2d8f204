"""fail_fast and the on_exit task: a task's final failure ends every other task not started
(cleanup tasks of trigger rules included) whatever else runs at that moment, kills the
running ones, and the on_exit task still runs last with WEIR_FLOW_STATUS=failed. A user's
first cancel spares the on_exit task too; a second ends it."""

from __future__ import annotations

from typing import Any

import msgspec
from weir_proto.events import FlowCancelRequested, FlowEvent
from weir_proto.messages import ErrorType
from weir_proto.spec import FlowSpec
from weir_proto.status import FlowStatus, TaskStatus
from weir_scheduler.decider import (
    Cancel,
    Expand,
    FireTimer,
    FoldedFlow,
    Policy,
    RecordFinished,
    Release,
    Submit,
    decide,
    dispatch_spec,
    evolve,
    fold,
)
from weir_scheduler.planner import plan

from tests.flows import task
from tests.unit.test_decider import NOW, finished, started, typed

ONCE = {"max_attempts": 1}


def submitted(doc: dict[str, Any], policy: Policy | None = None) -> tuple[FoldedFlow, list[Any]]:
    spec = msgspec.convert({"name": "f", "fail_fast": True, **doc}, FlowSpec)
    events = decide(FoldedFlow(id="f1"), Submit(spec, plan(spec)), NOW, policy or Policy())
    return fold("f1", events), events


def apply(
    flow: FoldedFlow, command: Any, log: list[FlowEvent], policy: Policy | None = None
) -> tuple[FoldedFlow, list[FlowEvent]]:
    events = decide(flow, command, NOW, policy or Policy())
    for event in events:
        flow = evolve(flow, event)
    log.extend(events)
    return flow, events


def ended(name: str, error_type: ErrorType, attempt: int = 1) -> RecordFinished:
    """The report of `name`'s attempt failing with `error_type` (CANCELLED: killed)."""
    report = finished(name, ok=False, attempt=attempt).report
    return RecordFinished(msgspec.structs.replace(report, error_type=error_type))


def statuses(flow: FoldedFlow) -> dict[str, str]:
    return {name: str(t.status) for name, t in flow.tasks.items()}


def run_to_success(
    flow: FoldedFlow, name: str, log: list[FlowEvent]
) -> tuple[FoldedFlow, list[FlowEvent]]:
    """Task `name` started and reported succeeded: the state and the events of its success."""
    flow, _ = apply(flow, started(name), log)
    return apply(flow, finished(name), log)


def assert_cancels_all(flow: FoldedFlow, events: list[FlowEvent]) -> None:
    """`events` begin with a cancel request that spares nothing (not even the on_exit task),
    after which a further cancel decides nothing."""
    request = events[0]
    assert isinstance(request, FlowCancelRequested) and not request.spares
    assert decide(flow, Cancel("again"), NOW) == []


def flow_status_env(flow: FoldedFlow, name: str = "bye") -> str | None:
    env = {v.name: v.value for v in dispatch_spec(flow, name).env}
    return env.get("WEIR_FLOW_STATUS")


CLEANUP = [
    task("a", retry=ONCE),
    task("b", depends=["a"]),
    task("clean", depends=["a"], trigger="all_done"),
    task("alert", depends=["a"], trigger="one_failed"),
]
A_FAILED = [("task_failed", "a"), ("task_skipped", "b")]
"""What the final failure of CLEANUP's "a" decides first: "b" (all_success) will not run."""
CLEANUP_CANCELLED = [("task_cancelled", "alert"), ("task_cancelled", "clean")]
"""fail_fast ends CLEANUP's cleanup tasks too, although their triggers would let them run."""


def test_lone_failing_task_cancels_cleanup_tasks_and_on_exit_still_runs_last() -> None:
    flow, log = submitted({"tasks": CLEANUP, "on_exit": task("bye")})
    flow, _ = apply(flow, started("a"), log)
    flow, events = apply(flow, finished("a", ok=False), log)
    # Nothing else ran: no cancel request (nothing to kill), but every task not started
    # ends at once, the cleanup tasks too; the on_exit task is handed out.
    assert typed(events) == [*A_FAILED, *CLEANUP_CANCELLED, ("task_dispatched", "bye")]
    assert flow_status_env(flow) == "failed"
    flow, events = run_to_success(flow, "bye", log)
    assert typed(events) == [("task_succeeded", "bye"), ("flow_failed", "")]
    assert statuses(flow) == {
        "a": "failed",
        "b": "skipped",
        "clean": "cancelled",
        "alert": "cancelled",
        "bye": "succeeded",
    }
    assert flow.status is FlowStatus.FAILED
    assert fold("f1", log) == flow


def test_running_sibling_is_killed_and_on_exit_runs_once_its_cancel_is_reported() -> None:
    tasks = [*CLEANUP, task("slow")]
    flow, log = submitted({"tasks": tasks, "on_exit": task("bye")})
    flow, _ = apply(flow, started("a"), log)
    flow, _ = apply(flow, started("slow"), log)
    flow, events = apply(flow, finished("a", ok=False), log)
    assert typed(events) == [*A_FAILED, ("flow_cancel_requested", ""), *CLEANUP_CANCELLED]
    request = events[2]
    assert isinstance(request, FlowCancelRequested) and request.fail_fast
    assert flow.tasks["bye"].status is TaskStatus.PENDING  # waits for "slow" to end
    killed = ended("slow", ErrorType.CANCELLED)
    flow, events = apply(flow, killed, log)
    assert typed(events) == [("task_cancelled", "slow"), ("task_dispatched", "bye")]
    assert flow_status_env(flow) == "failed"
    flow, events = run_to_success(flow, "bye", log)
    assert typed(events) == [("task_succeeded", "bye"), ("flow_failed", "")]
    assert flow.status is FlowStatus.FAILED
    assert statuses(flow)["slow"] == "cancelled"
    assert fold("f1", log) == flow


def test_sibling_dispatched_but_not_started_ends_at_once_and_on_exit_is_handed_out() -> None:
    flow, log = submitted({"tasks": [task("a", retry=ONCE), task("b")], "on_exit": task("bye")})
    flow, events = apply(flow, finished("a", ok=False), log)
    assert typed(events) == [
        ("task_failed", "a"),
        ("flow_cancel_requested", ""),
        ("task_cancelled", "b"),
        ("task_dispatched", "bye"),
    ]
    assert decide(flow, started("b"), NOW) == []  # its late start is stale
    flow, _ = apply(flow, finished("bye"), log)
    assert flow.status is FlowStatus.FAILED
    assert fold("f1", log) == flow


def test_on_exit_failing_under_fail_fast_fails_the_flow_and_retries_first() -> None:
    retry = {"max_attempts": 2, "backoff": {"strategy": "constant", "base": 1, "jitter": None}}
    flow, log = submitted(
        {"tasks": [task("a", retry=ONCE), task("slow")], "on_exit": task("bye", retry=retry)}
    )
    flow, _ = apply(flow, started("a"), log)
    flow, _ = apply(flow, started("slow"), log)
    flow, _ = apply(flow, finished("a", ok=False), log)
    flow, _ = apply(flow, ended("slow", ErrorType.CANCELLED), log)
    flow, _ = apply(flow, started("bye"), log)
    # Still the flow cancelling for fail_fast: the on_exit task is not cancelled for that;
    # it takes its retry, and its timer hands it out again.
    flow, events = apply(flow, finished("bye", ok=False), log)
    assert typed(events) == [("task_attempt_failed", "bye")]
    flow, events = apply(flow, FireTimer(kind="retry", task="bye", attempt=1), log)
    assert typed(events) == [("task_dispatched", "bye")]
    flow, _ = apply(flow, started("bye", attempt=2), log)
    flow, events = apply(flow, finished("bye", ok=False, attempt=2), log)
    assert typed(events) == [("task_failed", "bye"), ("flow_failed", "")]
    assert flow.status is FlowStatus.FAILED
    assert statuses(flow) == {"a": "failed", "slow": "cancelled", "bye": "failed"}
    assert fold("f1", log) == flow


def test_on_exit_in_a_limited_queue_is_released_after_fail_fast() -> None:
    policy = Policy(limited_queues=frozenset({"gpu"}))
    flow, log = submitted(
        {"tasks": [task("a", retry=ONCE), task("slow")], "on_exit": task("bye", queue="gpu")},
        policy,
    )
    flow, _ = apply(flow, started("a"), log, policy)
    flow, _ = apply(flow, started("slow"), log, policy)
    flow, _ = apply(flow, finished("a", ok=False), log, policy)
    killed = ended("slow", ErrorType.CANCELLED)
    flow, events = apply(flow, killed, log, policy)
    assert typed(events) == [("task_cancelled", "slow"), ("task_queued", "bye")]
    flow, events = apply(flow, Release(task="bye"), log, policy)
    assert typed(events) == [("task_dispatched", "bye")]


def test_user_cancel_after_fail_fast_spares_the_on_exit_task_and_a_second_ends_it() -> None:
    flow, log = submitted({"tasks": [task("a", retry=ONCE), task("slow")], "on_exit": task("bye")})
    flow, _ = apply(flow, started("a"), log)
    flow, _ = apply(flow, started("slow"), log)
    flow, _ = apply(flow, finished("a", ok=False), log)
    flow, events = apply(flow, Cancel("stop it"), log)
    # A user's cancel of its own, which spares the on_exit task as Argo's stop does.
    assert typed(events) == [("flow_cancel_requested", "")]
    request = events[0]
    assert isinstance(request, FlowCancelRequested)
    assert not request.fail_fast and request.spares_on_exit
    assert flow.status is FlowStatus.CANCELLING
    # A second ends the on_exit task too (Argo's terminate); a third changes nothing.
    flow, events = apply(flow, Cancel("now"), log)
    assert typed(events) == [("flow_cancel_requested", ""), ("task_cancelled", "bye")]
    assert_cancels_all(flow, events)
    flow, events = apply(flow, ended("slow", ErrorType.CANCELLED), log)
    assert typed(events) == [("task_cancelled", "slow"), ("flow_failed", "")]
    assert statuses(flow) == {"a": "failed", "slow": "cancelled", "bye": "cancelled"}
    assert fold("f1", log) == flow


def test_user_cancel_of_a_running_on_exit_task_after_fail_fast_lets_it_finish() -> None:
    flow, log = submitted({"tasks": [task("a", retry=ONCE)], "on_exit": task("bye")})
    flow, _ = apply(flow, finished("a", ok=False), log)
    flow, _ = apply(flow, started("bye"), log)
    flow, events = apply(flow, Cancel("stop it"), log)
    assert typed(events) == [("flow_cancel_requested", "")]
    flow, events = apply(flow, finished("bye"), log)
    # A task failed before the cancel: the flow ends failed, as it would have.
    assert typed(events) == [("task_succeeded", "bye"), ("flow_failed", "")]


def test_a_second_user_cancel_of_a_running_on_exit_task_after_fail_fast_kills_it() -> None:
    flow, log = submitted({"tasks": [task("a", retry=ONCE)], "on_exit": task("bye")})
    flow, _ = apply(flow, finished("a", ok=False), log)
    flow, _ = apply(flow, started("bye"), log)
    flow, _ = apply(flow, Cancel("stop it"), log)
    flow, events = apply(flow, Cancel("now"), log)
    assert typed(events) == [("flow_cancel_requested", "")]
    flow, events = apply(flow, ended("bye", ErrorType.CANCELLED), log)
    assert typed(events) == [("task_cancelled", "bye"), ("flow_failed", "")]


def test_on_exit_waits_for_a_mapped_tasks_running_instance_to_be_reported() -> None:
    """One instance of a mapped task fails while another runs: fail_fast kills the running
    one, and the mapped task ends as its instances do, so the on_exit task is handed out
    only once the killed instance is reported, never while it still runs."""
    doc = {
        "tasks": [
            task("list", outputs=[{"name": "items", "path": "i"}]),
            task("each", depends=["list"], retry=ONCE, map={"over": "items"}),
        ],
        "on_exit": task("bye"),
    }
    flow, log = submitted(doc)
    flow, _ = apply(flow, started("list"), log)
    flow, _ = apply(flow, finished("list"), log)
    flow, _ = apply(flow, Expand("each", items=("a", "b")), log)
    for name in ("each[0]", "each[1]"):
        flow, _ = apply(flow, started(name), log)
    flow, events = apply(flow, finished("each[1]", ok=False), log)
    assert flow.tasks["each[0]"].status is TaskStatus.RUNNING
    assert flow.tasks["each"].status is TaskStatus.PENDING  # waits for its instance
    assert flow.tasks["bye"].status is TaskStatus.PENDING, typed(events)
    flow, events = apply(flow, ended("each[0]", ErrorType.CANCELLED), log)
    assert flow.tasks["each"].status is TaskStatus.FAILED
    assert ("task_dispatched", "bye") in typed(events)
    assert flow_status_env(flow) == "failed"
    assert fold("f1", log) == flow


def test_a_mapped_tasks_instances_that_succeed_despite_the_cancel_end_it_cancelled() -> None:
    """Found by the mapped decider machine: another task fails under fail_fast while a mapped
    task's instances run; they succeed all the same (they ended before the kill reached
    them). The mapped task, which has outputs to gather, waited for a gather that a
    cancelling flow never does: the flow stayed cancelling for ever. It ends cancelled now,
    and the on_exit task runs."""
    doc = {
        "tasks": [
            task("list", outputs=[{"name": "items", "path": "i"}]),
            task(
                "each",
                depends=["list"],
                map={"over": "items"},
                outputs=[{"name": "r", "path": "r"}],
            ),
            task("check", depends=["list"], retry=ONCE),
        ],
        "on_exit": task("bye"),
    }
    flow, log = submitted(doc)
    flow, _ = apply(flow, started("list"), log)
    flow, _ = apply(flow, finished("list"), log)
    flow, _ = apply(flow, Expand("each", items=("a", "b")), log)
    for name in ("check", "each[0]", "each[1]"):
        flow, _ = apply(flow, started(name), log)
    flow, events = apply(flow, finished("check", ok=False), log)
    assert ("flow_cancel_requested", "") in typed(events)
    assert flow.tasks["each"].status is TaskStatus.PENDING  # it waits for its instances
    for name in ("each[0]", "each[1]"):
        flow, events = apply(flow, finished(name), log)
    assert typed(events) == [
        ("task_succeeded", "each[1]"),
        ("task_cancelled", "each"),
        ("task_dispatched", "bye"),
    ]
    assert flow.tasks["each"].error_message == 'fail_fast: task "check" failed'
    flow, events = run_to_success(flow, "bye", log)
    assert typed(events)[-1] == ("flow_failed", "")
    assert fold("f1", log) == flow
