"""Trigger rules, the skips a failure causes and a flow's outcome: the pure rules behind
`trigger:`, `when:` and `on_exit:`, in one copy for the scheduler's decider
(`weir_scheduler.decider.triggers`) and the SDK's `run_local()` (`weir.sdk.local`), so both
skip the same tasks with the same reasons (docs/jobs.md, "Trigger rules").

- A task whose dependencies have all ended runs when they ended as its trigger asks
  (`trigger_reason`), then when its condition holds (`condition_false_reason` otherwise).
- A task's final failure makes the flow *failing*: every task not handed out yet is
  skipped (`failure_skip_reason`), except tasks whose rule runs after a failure
  (`runs_after_failure`) and the on_exit task.
- With `fail_fast`, every task not started is then cancelled (`fail_fast_reason`), whatever
  else runs, those whose rule runs after a failure too, but the on_exit task: it still runs
  last.
- A flow fails when any of its tasks failed, whatever ran after it (`flow_outcome`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Literal

from weir_proto.spec import Trigger
from weir_proto.status import TaskStatus

AFTER_FAILURE: frozenset[str] = frozenset({"all_done", "all_failed", "one_failed", "one_success"})
"""Trigger rules that may still run once the flow is failing."""
FLOW_STATUS_ENV = "WEIR_FLOW_STATUS"
"""The flow's outcome so far (`succeeded`, `failed`, or `cancelled` when a user cancelled
it), given to its on_exit task."""
CONDITION_ERROR = "condition"
"""`error_type` of a task whose condition's outputs could not be read."""

_FAILED = (TaskStatus.FAILED, TaskStatus.CANCELLED)


def runs_after_failure(trigger: Trigger, on_exit: bool = False) -> bool:
    """Whether a task with this rule (or the on_exit task) may still start once a task of
    the flow has failed."""
    return on_exit or trigger in AFTER_FAILURE


def trigger_reason(
    rule: Trigger, deps: Sequence[str], ended: Mapping[str, TaskStatus]
) -> str | None:
    """None when `rule` holds for dependencies `deps` that ended as `ended` says; else how
    they ended instead (`trigger all_success: upstream task "load" failed`)."""
    failed = [d for d in deps if ended[d] in _FAILED]
    succeeded = [d for d in deps if ended[d] is TaskStatus.SUCCEEDED]
    holds = {
        "all_success": len(succeeded) == len(deps),
        "all_done": True,
        "all_failed": len(failed) == len(deps),
        "one_failed": bool(failed),
        "one_success": bool(succeeded),
        "none_failed": not failed,
    }[rule]
    if not holds:
        return f"trigger {rule}: {_how_they_ended(rule, deps, ended)}"
    return None


def condition_false_reason(when: str) -> str:
    """Why a task whose `when` condition is false is skipped."""
    return f"condition is false: {when}"


def failure_skip_reason(failed: str, downstream: bool) -> str:
    """Why a task not handed out yet is skipped once task `failed` failed: it is
    `downstream` of it, or the flow is failing."""
    if downstream:
        return f'upstream task "{failed}" failed'
    return f'flow is failing: task "{failed}" failed'


def fail_fast_reason(failed: str) -> str:
    """Why, in a flow with `fail_fast`, every task not started is cancelled (those a failure
    does not skip included, but the on_exit task) once task `failed` failed."""
    return f'fail_fast: task "{failed}" failed'


def flow_outcome(statuses: Iterable[TaskStatus]) -> Literal["succeeded", "failed"]:
    """`failed` when any of these tasks failed, else `succeeded`: a cleanup that succeeds
    after a failure does not make the flow succeed. Given every task but the on_exit task,
    it is what the on_exit task gets as WEIR_FLOW_STATUS."""
    return "failed" if any(s is TaskStatus.FAILED for s in statuses) else "succeeded"


def _how_they_ended(rule: str, deps: Sequence[str], ended: Mapping[str, TaskStatus]) -> str:
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
