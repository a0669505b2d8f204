"""`when` conditions over upstream outputs: `tasks.check.outputs.decision == "go"`.

A task whose condition names outputs of succeeded upstream tasks cannot be decided from the
log alone. Once its dependencies have ended and its trigger rule holds, it waits
(`FanOut(reading=True)` in `FoldedFlow.fanout`) for the shell to read those outputs
(`fanout_io.FanOutIO`, woken by a `fanout` timer at CONDITION_PHASE, so a crash loses
nothing). `ReadCondition` records `task_condition_read` with the values; the condition is
then evaluated on them, live and on replay alike, and the task runs or is skipped with the
reason (`triggers.skip_reason`).

- A value is the output's text, JSON-decoded when it parses (`echo go` reads as `"go"`,
  `echo 3` as `3`); a trailing newline is dropped from text.
- An output of a task that did not succeed (skipped, or failed under `all_done`) reads as
  `null`, without the shell.
- An output a succeeded task should have stored but the store does not hold, one that fails
  its digest, is larger than VALUE_BYTES_MAX or holds a NUL character fails the task
  (`error_type` CONDITION_ERROR) with the reason: a skip would hide a broken output behind
  a branch not taken.
"""

from __future__ import annotations

from weir_proto.conditions import VALUE_BYTES_MAX, output_refs, output_value
from weir_proto.events import TaskConditionRead
from weir_proto.status import TaskStatus
from weir_proto.triggers import CONDITION_ERROR

from weir_scheduler.decider.commands import ReadCondition
from weir_scheduler.decider.emitter import Emitter
from weir_scheduler.decider.fanout import CONDITION_PHASE, fail_whole, waiting
from weir_scheduler.decider.state import FoldedFlow

__all__ = ["CONDITION_ERROR", "VALUE_BYTES_MAX", "decide_condition", "output_value", "to_read"]


def to_read(flow: FoldedFlow, task: str) -> list[tuple[str, str]]:
    """(producer, output) of each output `task`'s condition names whose producer succeeded:
    what the shell reads for it."""
    assert flow.plan is not None
    condition = flow.plan.conditions.get(task)
    if condition is None:
        return []
    return [
        (producer, output)
        for producer, output in output_refs(condition)
        if flow.tasks[producer].status is TaskStatus.SUCCEEDED
    ]


def decide_condition(out: Emitter, answer: ReadCondition) -> None:
    """Record what the shell read for a task still waiting for its condition's outputs, or
    fail the task when an output could not be read."""
    name = answer.task
    if waiting(out.flow, name, CONDITION_PHASE) is None:
        return
    if answer.error is not None:
        fail_whole(out, name, answer.error, CONDITION_ERROR)
        return
    values = dict(answer.values)
    out.emit(TaskConditionRead(**out.envelope(), at=out.now, task=name, values=values))
