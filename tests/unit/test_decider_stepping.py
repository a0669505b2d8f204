"""Stepping in, decided: pause holds work and resume releases it (retries that fell due
first), retry plans a task and what it skipped again with a fresh retry budget, update
replans a flow not started; each refusal decides nothing and says why."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import msgspec
from weir_proto.events import FlowEvent, event_type
from weir_proto.spec import FlowSpec
from weir_proto.status import FlowStatus, TaskStatus
from weir_scheduler.decider import (
    Expand,
    FireTimer,
    FoldedFlow,
    Pause,
    ReadCondition,
    Resume,
    Retry,
    Submit,
    Update,
    decide_and_evolve,
    fold,
)
from weir_scheduler.decider.fanout import CONDITION_PHASE, due
from weir_scheduler.decider.stepping import retry_refusal, update_refusal
from weir_scheduler.planner import plan

from tests.flows import task
from tests.unit.test_decider import NOW, apply, finished, started, submit


def kinds(events: list[FlowEvent]) -> list[str]:
    return [event_type(e) for e in events]


def statuses(flow: FoldedFlow) -> dict[str, str]:
    return {name: str(t.status) for name, t in flow.tasks.items()}


def run(flow: FoldedFlow, *names: str, ok: bool = True) -> FoldedFlow:
    for name in names:
        attempt = flow.tasks[name].attempt
        flow, _ = apply(flow, started(name, attempt))
        flow, _ = apply(flow, finished(name, ok, attempt))
    return flow


def test_pause_holds_new_work_and_resume_releases_it() -> None:
    flow, _ = submit([task("a"), task("b", depends=["a"])])
    flow, events = apply(flow, Pause("hold"))
    assert kinds(events) == ["flow_paused"] and flow.status is FlowStatus.PAUSED
    assert apply(flow, Pause("again"))[1] == [], "a second pause decides nothing"
    flow = run(flow, "a")  # the running attempt ends and is recorded; `b` waits
    assert statuses(flow) == {"a": "succeeded", "b": "pending"}
    assert flow.status is FlowStatus.PAUSED
    flow, events = apply(flow, Resume())
    assert kinds(events) == ["flow_resumed", "task_dispatched"]
    assert events[0].status == "running"  # type: ignore[union-attr]
    assert apply(flow, Resume())[1] == []


def test_a_retry_falling_due_while_paused_is_dispatched_at_resume() -> None:
    retry = {"max_attempts": 2, "backoff": {"strategy": "constant", "base": 1, "jitter": None}}
    flow, _ = submit([task("a", retry=retry)])
    flow, _ = apply(flow, Pause())
    flow = run(flow, "a", ok=False)
    assert flow.tasks["a"].status is TaskStatus.RETRYING
    assert apply(flow, FireTimer("retry", "a", 1))[1] == [], "the timer hands nothing out"
    later = NOW + timedelta(seconds=5)
    events, _ = _decided(flow, Resume(), later)
    assert kinds(events) == ["flow_resumed", "task_dispatched"]
    assert (events[1].task, events[1].attempt) == ("a", 2)  # type: ignore[union-attr]


def _decided(flow: FoldedFlow, command: Any, now: datetime) -> tuple[list[FlowEvent], FoldedFlow]:
    return decide_and_evolve(flow, command, now)


def test_retry_of_a_failed_task_in_a_failed_flow_plans_it_and_what_it_skipped() -> None:
    once = {"max_attempts": 1}
    flow, _ = submit(
        [
            task("a", retry=once),
            task("b", depends=["a"]),
            task("c"),
            task("d", depends=["c"]),
        ]
    )
    flow = run(flow, "a", ok=False)
    flow = run(flow, "c")
    assert flow.status is FlowStatus.FAILED
    assert statuses(flow) == {"a": "failed", "b": "skipped", "c": "succeeded", "d": "skipped"}

    flow, events = apply(flow, Retry("a"))
    assert kinds(events) == ["task_retried", "task_dispatched", "task_dispatched"]
    assert events[0].tasks == ["a", "b", "d"]  # type: ignore[union-attr]
    assert flow.status is FlowStatus.RUNNING and not flow.failing
    assert (flow.tasks["a"].attempt, flow.tasks["a"].spent) == (2, 1), "dispatched again"
    flow = run(flow, "a", "d", "b")
    assert flow.status is FlowStatus.SUCCEEDED
    assert statuses(flow) == dict.fromkeys("abcd", "succeeded")
    assert flow.tasks["a"].attempt == 2 and len(flow.tasks["a"].failures) == 1


def test_a_retried_task_in_a_flow_still_failing_runs_but_what_needs_it_is_skipped() -> None:
    once = {"max_attempts": 1}
    flow, _ = submit([task("a", retry=once), task("b", retry=once), task("c", depends=["a"])])
    flow = run(flow, "a", "b", ok=False)
    assert flow.status is FlowStatus.FAILED
    flow, events = apply(flow, Retry("a"))
    assert kinds(events) == ["task_retried", "task_skipped", "task_dispatched"]
    assert events[1].reason == 'flow is failing: task "b" failed'  # type: ignore[union-attr]
    flow = run(flow, "a")
    assert flow.status is FlowStatus.FAILED
    assert flow.tasks["a"].status is TaskStatus.SUCCEEDED


def test_retry_downstream_and_its_refusals() -> None:
    flow, _ = submit([task("a"), task("b", depends=["a"]), task("c", depends=["b"])])
    assert retry_refusal(flow, "b", False) == (
        'task "b" is pending: only a task that failed or succeeded can be retried; '
        "wait for it to end"
    )
    assert retry_refusal(flow, "zz", False) == 'flow "f1" has no task "zz" (its tasks: a, b, c)'
    flow = run(flow, "a")
    assert retry_refusal(flow, "a", False) == (
        'task "b", which runs after a task the retry plans again, is dispatched: retry once it '
        "has ended"
    )
    assert apply(flow, Retry("a"))[1] == []
    said = (
        'task "b", which the retry plans again, is dispatched: its attempt would run on '
        "beside the new one; retry once it has ended"
    )
    assert retry_refusal(flow, "a", True) == said, "downstream: not over a handed-out attempt"
    assert apply(flow, Retry("a", downstream=True))[1] == []
    flow, _ = apply(flow, started("b", 1))
    assert retry_refusal(flow, "a", True) == said.replace("dispatched", "running")
    flow = run(flow, "b", "c")
    flow, events = apply(flow, Retry("a", downstream=True))
    assert events[0].tasks == ["a", "b", "c"]  # type: ignore[union-attr]
    flow = run(flow, "a", "b", "c")
    assert flow.status is FlowStatus.SUCCEEDED
    assert [flow.tasks[n].attempt for n in "abc"] == [2, 2, 2]


def test_update_replans_a_flow_not_started_and_is_refused_after() -> None:
    doc = {
        "name": "f",
        "delay": 60,
        "params": {"n": {"type": "int", "default": 1}},
        "tasks": [task("a")],
    }
    spec = msgspec.convert(doc, FlowSpec)
    flow, _ = submit([task("a")])
    assert update_refusal(flow) == (
        'flow "f1" has started (task "a" was handed to a runner): only a scheduled or pending '
        "flow can be updated; cancel it and submit it again instead"
    )
    scheduled = fold("f2", [])
    scheduled, _ = apply(scheduled, Submit(spec, plan(spec)))
    assert scheduled.status is FlowStatus.SCHEDULED
    new = msgspec.structs.replace(spec, priority=3, arguments={"n": 9})
    scheduled, events = apply(scheduled, Update(new, plan(new), ("priority", "params"), None))
    assert kinds(events) == ["flow_updated", "task_dispatched"]
    assert scheduled.plan is not None and scheduled.plan.params == {"n": 9}
    assert scheduled.tasks["a"].priority == 3
    assert update_refusal(scheduled) is not None


MAPPED = [
    task("a", outputs=[{"name": "files", "path": "out"}]),
    task("m", depends=["a"], map={"over": "files"}),
]
REEXPAND = "has not ended: 2 of its instances"


def test_a_retry_makes_an_expanded_task_wait_again_only_once_its_instances_ended() -> None:
    flow = run(submit(MAPPED)[0], "a")
    waiting = flow
    flow, events = apply(flow, Expand("m", items=("x", "y")))
    assert kinds(events) == ["task_expanded", "task_dispatched", "task_dispatched"]
    # `m` is pending while its instances run: a retry of `a` would read its list again.
    assert REEXPAND in (retry_refusal(flow, "a", False) or "")
    assert apply(flow, Retry("a"))[1] == []
    # Expanded into no items, `m` succeeds at once; a retry with downstream of `a` plans it
    # again from scratch, one of `m` itself has nothing to run
    # (tests/unit/test_decider_map_retry).
    empty, events = apply(waiting, Expand("m", items=()))
    assert kinds(events)[:2] == ["task_expanded", "task_succeeded"]
    assert retry_refusal(empty, "a", True) is None
    assert "nothing to run again" in (retry_refusal(empty, "m", False) or "")
    assert apply(empty, Retry("m", False))[1] == []
    again, events = apply(empty, Retry("a", True))
    assert kinds(events) == ["task_retried", "task_dispatched"]
    assert "m" not in again.expanded and list(due(again)) == []
    again = run(again, "a")
    assert list(due(again)) == [("m", 0)], "it reads its list again"
    again, events = apply(empty, Retry("m", downstream=True))  # it ends again at once
    assert kinds(events) == ["task_retried", "task_succeeded", "flow_succeeded"]
    # Waiting for its list, `m` waits for `a` again after a retry of `a` (not due meanwhile).
    assert list(due(waiting)) == [("m", 0)]
    again, events = apply(waiting, Retry("a"))
    assert kinds(events) == ["task_retried", "task_dispatched"]
    assert list(due(again)) == []
    again = run(again, "a")
    assert list(due(again)) == [("m", 0)]


def test_an_update_is_refused_once_a_mapped_task_was_expanded() -> None:
    spec = msgspec.convert({"name": "f", "tasks": MAPPED}, FlowSpec)
    flow = fold("f2", [])
    flow, _ = apply(flow, Submit(spec, plan(spec), "f1", ("a",)))  # `a` reused from a rerun
    flow, _ = apply(flow, Pause("hold"))
    assert update_refusal(flow) is None
    flow, events = apply(flow, Expand("m", items=("x",)))
    assert kinds(events) == ["task_expanded"]  # paused: its instance waits
    assert update_refusal(flow) == (
        'flow "f2" has started (mapped task "m" was expanded into instances): only a scheduled '
        "or pending flow can be updated; cancel it and submit it again instead"
    )
    new = msgspec.structs.replace(spec, priority=3)
    assert apply(flow, Update(new, plan(new), ("priority",), None))[1] == []
    assert "m[0]" in flow.tasks


def test_a_rerun_updated_to_start_later_reads_its_reused_outputs_only_once_it_starts() -> None:
    """A rerun reuses `check`, so `go`'s condition can be read at once; moved to a later
    start by an update, it must not hand `go` out before then, and must still start."""
    spec = msgspec.convert(
        {
            "name": "f",
            "tasks": [
                task("check", outputs=[{"name": "decision", "path": "d"}]),
                task("go", depends=["check"], when='tasks.check.outputs.decision == "go"'),
            ],
        },
        FlowSpec,
    )
    _, flow = decide_and_evolve(
        FoldedFlow(id="f2"), Submit(spec, plan(spec), "f1", ("check",)), NOW
    )
    later = NOW + timedelta(hours=1)
    events, flow = decide_and_evolve(flow, Update(spec, plan(spec), ("priority",), later), NOW)
    assert kinds(events) == ["flow_updated"] and flow.status is FlowStatus.SCHEDULED
    read = ReadCondition("go", (("decision", "go"),))
    events, waited = decide_and_evolve(flow, read, NOW)
    assert events == [] and waited.status is FlowStatus.SCHEDULED  # not before its start
    events, flow = decide_and_evolve(flow, FireTimer("start", attempt=flow.updates), later)
    assert flow.status is FlowStatus.SCHEDULED and list(due(flow)) == [("go", CONDITION_PHASE)]
    events, flow = decide_and_evolve(flow, read, later)
    assert kinds(events) == ["task_condition_read", "task_dispatched"]
    assert flow.status is FlowStatus.PENDING
