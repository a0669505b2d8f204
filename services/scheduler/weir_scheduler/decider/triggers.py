"""Trigger rules and `when` conditions: whether a task whose dependencies have all ended
runs, or is skipped and why. Pure functions of the flow's state, so `evolve` derives the
same verdict live and on replay.

A failure stops new work in a flow, except for tasks whose trigger rule is meant to run
after one (`all_done`, `all_failed`, `one_failed`) and the flow's `on_exit` task.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from weir_proto import triggers as rules
from weir_proto.conditions import Ref, evaluate, output_refs, ref_value
from weir_proto.status import TaskStatus

from weir_scheduler.planner import Plan

if TYPE_CHECKING:
    from weir_scheduler.decider.state import FoldedFlow

AFTER_FAILURE = rules.AFTER_FAILURE
"""Trigger rules that may still run once the flow is failing (`weir_proto.triggers`)."""


def tolerates_failure(plan: Plan, name: str) -> bool:
    """Whether `name` may still start once a task of the flow has failed."""
    return rules.runs_after_failure(plan.tasks[name].trigger, on_exit=name == plan.on_exit)


def skip_reason(flow: FoldedFlow, name: str) -> str | None:
    """None when `name`, whose dependencies have all ended, should run; else why it is
    skipped: its trigger rule does not hold, or its `when` condition is false."""
    reason = trigger_reason(flow, name)
    if reason is not None:
        return reason
    assert flow.plan is not None
    condition = flow.plan.conditions.get(name)
    if condition is not None and not evaluate(condition, lambda ref: _read(flow, ref)):
        return rules.condition_false_reason(flow.plan.tasks[name].when or "")
    return None


def must_read(flow: FoldedFlow, name: str) -> bool:
    """Whether `name`, whose dependencies have all ended and whose trigger rule holds, waits
    for the shell to read outputs its condition names (`gates.py`) before it is decided."""
    assert flow.plan is not None
    condition = flow.plan.conditions.get(name)
    if condition is None:
        return False
    unread = [
        output
        for producer, output in output_refs(condition)
        if flow.tasks[producer].status is TaskStatus.SUCCEEDED and output not in flow.read_outputs
    ]
    return bool(unread) and trigger_reason(flow, name) is None


def trigger_reason(flow: FoldedFlow, name: str) -> str | None:
    """None when the trigger rule of `name`, whose dependencies have all ended, holds; else
    how its dependencies ended instead."""
    plan = flow.plan
    assert plan is not None
    deps = plan.depends[name]
    return rules.trigger_reason(
        plan.tasks[name].trigger, deps, {d: flow.tasks[d].status for d in deps}
    )


def _read(flow: FoldedFlow, ref: Ref) -> Any:
    assert flow.plan is not None
    return ref_value(
        ref,
        flow.plan.params,
        lambda task: flow.tasks[task].status,
        lambda task: flow.tasks[task].exit_code,
        flow.read_outputs,  # recorded by `task_condition_read` (gates.py)
    )
