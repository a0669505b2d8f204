"""Trigger rules and `when` conditions: whether a task whose dependencies have all ended
runs, or is skipped and why. Pure functions of the flow's state, so `evolve` derives the
same verdict live and on replay.

A failure stops new work in a flow, except for tasks whose trigger rule is meant to run
after one (`all_done`, `all_failed`, `one_failed`) and the flow's `on_exit` task.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from weir_proto.conditions import OUTPUTS, Ref, evaluate, output_refs
from weir_proto.status import TaskStatus

from weir_scheduler.planner import Plan

if TYPE_CHECKING:
    from weir_scheduler.decider.state import FoldedFlow

AFTER_FAILURE = frozenset({"all_done", "all_failed", "one_failed"})
"""Trigger rules that may still run once the flow is failing."""
_FAILED = (TaskStatus.FAILED, TaskStatus.CANCELLED)
_SUCCEEDED = TaskStatus.SUCCEEDED


def tolerates_failure(plan: Plan, name: str) -> bool:
    """Whether `name` may still start once a task of the flow has failed."""
    return name == plan.on_exit or plan.tasks[name].trigger in AFTER_FAILURE


def skip_reason(flow: FoldedFlow, name: str) -> str | None:
    """None when `name`, whose dependencies have all ended, should run; else why it is
    skipped: its trigger rule does not hold, or its `when` condition is false."""
    reason = trigger_reason(flow, name)
    if reason is not None:
        return reason
    assert flow.plan is not None
    condition = flow.plan.conditions.get(name)
    if condition is not None and not evaluate(condition, lambda ref: _read(flow, ref)):
        return f"condition is false: {flow.plan.tasks[name].when}"
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
    spec = plan.tasks[name]
    deps = plan.depends[name]
    ended = {d: flow.tasks[d].status for d in deps}
    failed = [d for d, s in ended.items() if s in _FAILED]
    succeeded = [d for d, s in ended.items() if s is TaskStatus.SUCCEEDED]
    others = [d for d in deps if d not in succeeded]
    rule = spec.trigger
    holds = {
        "all_success": not others,
        "all_done": True,
        "all_failed": len(failed) == len(deps),
        "one_failed": bool(failed),
        "one_success": bool(succeeded),
        "none_failed": not failed,
    }[rule]
    if not holds:
        return f"trigger {rule}: {_how_they_ended(rule, deps, ended)}"
    return None


def _how_they_ended(rule: str, deps: tuple[str, ...], ended: dict[str, TaskStatus]) -> str:
    if rule in ("all_success", "none_failed"):
        bad = (
            _FAILED
            if rule == "none_failed"
            else tuple(s for s in TaskStatus if s is not TaskStatus.SUCCEEDED)
        )
        first = next(d for d in deps if ended[d] in bad)
        return f'upstream task "{first}" {_ended_as(ended[first])}'
    if rule == "all_failed":
        first = next(d for d in deps if ended[d] not in _FAILED)
        return f'upstream task "{first}" {_ended_as(ended[first])}'
    wanted = "failed" if rule == "one_failed" else "succeeded"
    return f"no upstream task {wanted}"


def _ended_as(status: TaskStatus) -> str:
    return "was skipped" if status is TaskStatus.SKIPPED else str(status)


def _read(flow: FoldedFlow, ref: Ref) -> Any:
    assert flow.plan is not None
    if ref.path[0] == "params":
        return flow.plan.params.get(ref.path[1])
    task = flow.tasks[ref.path[1]]
    if ref.path[2] == "status":
        return str(task.status)
    if ref.path[2] == OUTPUTS:  # recorded by `task_condition_read` (gates.py)
        return flow.read_outputs.get(ref.path[3])
    return task.exit_code
