"""Dynamic fan-out: a mapped task (`map: {over: OUTPUT}`) runs once per item of a list.

Once its dependencies have ended and it may run, the task waits (`FoldedFlow.fanout`) for the
shell to read the list (`fanout_io.FanOutIO`, woken by a `fanout` timer so a crash loses
nothing); `Expand` records `task_expanded` with the items, and the instances `NAME[i]`
run as tasks of their own. When the last one ends the task ends as they did: failed if one
failed, cancelled or skipped likewise, else succeeded, after the shell stored each of its
outputs as the list of its instances' (`Gather`). A list of 0 items: the task succeeds at
once with empty lists as its outputs.
"""

from __future__ import annotations

from collections.abc import Iterator

import msgspec
from weir_proto.events import TaskCancelled, TaskExpanded, TaskFailed, TaskSkipped, TaskSucceeded
from weir_proto.status import TaskStatus
from weir_proto.validation import find_nul, printable

from weir_scheduler.decider.commands import Expand, Gather
from weir_scheduler.decider.emitter import Emitter
from weir_scheduler.decider.failures import on_final_failure
from weir_scheduler.decider.state import FanOut, FoldedFlow
from weir_scheduler.map_plan import fill_item, instance_name, part_name
from weir_scheduler.planner.fields import path_problem

MAP_ERROR = "map"
"""`error_type` of a mapped task that failed as a whole (its list, a limit, an instance)."""
LIST_BYTES_MAX = 4 * 1024 * 1024
"""Largest list a task may map over, in bytes (the items are kept in the event log)."""
EXPAND_PHASE, GATHER_PHASE, CONDITION_PHASE = 0, 1, 2
"""The `attempt` of a `fanout` timer: reading the list, gathering the outputs, or reading
the outputs a `when` condition names (`gates.py`)."""


def due(flow: FoldedFlow) -> Iterator[tuple[str, int]]:
    """(task, phase) of each mapped task waiting for the shell."""
    for name, state in flow.fanout.items():
        if state.reading:
            yield name, CONDITION_PHASE
        elif not state.expanded:
            yield name, EXPAND_PHASE
        elif state.left == 0:
            yield name, GATHER_PHASE


def oversized(flow: FoldedFlow, task: str, size: int) -> Expand | None:
    """The refusal of a list of `size` bytes for `task`, when it is over LIST_BYTES_MAX."""
    if size <= LIST_BYTES_MAX:
        return None
    assert flow.plan is not None
    spec = flow.plan.tasks[task]
    over = spec.map.over if spec.map is not None else "?"
    limit = f"the limit is {LIST_BYTES_MAX:,}"
    return Expand(task, error=f'task "{task}": map.over output "{over}" is {size:,} bytes; {limit}')


def expansion(flow: FoldedFlow, task: str, data: bytes, max_tasks: int) -> Expand:
    """What the shell read for `task` (the bytes of the output it maps over) as a decision:
    the items, or why they cannot be used."""
    assert flow.plan is not None
    spec = flow.plan.tasks[task]
    assert spec.map is not None
    what = f'task "{task}": map.over output "{spec.map.over}"'
    too_big = oversized(flow, task, len(data))
    if too_big is not None:
        return too_big
    try:
        items = msgspec.json.decode(data)
    except msgspec.DecodeError as exc:
        return Expand(task, error=f'{what} is not JSON ({exc}); write a JSON list like ["a", "b"]')
    except RecursionError:
        return Expand(task, error=f"{what} nests too deeply to be a list of items")
    if not isinstance(items, list):
        kind = "an object" if isinstance(items, dict) else f"a {type(items).__name__}"
        return Expand(task, error=f"{what} is {kind}, not a JSON list")
    nul = find_nul(items)
    if nul is not None:  # the items go into the event log, which cannot hold one
        at = nul.replace("$", "items", 1)
        return Expand(task, error=f"{what} has a NUL character (\\u0000) at {at}; remove it")
    paths = [*(i.path for i in spec.inputs), *(o.path for o in spec.outputs)]
    templates = [path for path in paths if "{{" in path]
    for index, item in enumerate(items if templates else ()):
        for template in templates:
            path = fill_item(template, item)
            problem = path_problem(path)
            if problem:
                return Expand(
                    task,
                    error=f"{what} has item {index}, which makes the path "
                    f"{printable(path)}: it {problem}",
                )
    most = spec.map.max_items
    if most is not None and len(items) > most:
        return Expand(
            task, error=f"{what} has {len(items):,} items; the limit is {most:,} (map.max_items)"
        )
    total = len(flow.tasks) + len(items)
    if total > max_tasks:
        return Expand(
            task,
            error=f"{what} has {len(items):,} items: the flow would have {total:,} tasks; "
            f"the limit is {max_tasks:,} (WEIR_MAX_TASKS): map over fewer items or raise the "
            "scheduler's WEIR_MAX_TASKS",
        )
    return Expand(task, items=tuple(items))


def decide_fanout(out: Emitter, answer: Expand | Gather) -> None:
    """Record what the shell found for a mapped task still waiting for it: its expansion,
    its success with the gathered outputs, or its failure (`answer.error`)."""
    name = answer.task
    phase = EXPAND_PHASE if isinstance(answer, Expand) else GATHER_PHASE
    if waiting(out.flow, name, phase) is None:
        return
    if answer.error is not None:
        fail_whole(out, name, answer.error)
    elif isinstance(answer, Expand):
        count, items = len(answer.items), list(answer.items)
        out.emit(TaskExpanded(**out.envelope(), at=out.now, task=name, count=count, items=items))
    else:
        outputs = list(answer.outputs)
        out.emit(TaskSucceeded(**out.envelope(), at=out.now, task=name, attempt=0, outputs=outputs))


def close_fanouts(out: Emitter) -> None:
    """End every mapped task whose instances have all ended: as they did, or, when they all
    succeeded and it has no outputs to gather, succeeded; with outputs, in a cancelling flow
    (a sparing cancel waited for its last instances, which succeeded all the same),
    cancelled. One that fails may end the instances of another in turn (a failure skips
    those waiting), so this goes on until a round ends none."""
    ended_before = -1
    while ended_before != len(out.events):
        ended_before = len(out.events)
        for name in list(out.flow.fanout):
            _close(out, name)


def _close(out: Emitter, name: str) -> None:
    """End mapped task `name` if its instances have all ended (see `close_fanouts`)."""
    plan = out.flow.plan
    state = out.flow.fanout.get(name)
    assert plan is not None
    if state is None or not state.expanded or state.left or out.flow.tasks[name].status.terminal:
        return
    ended = [out.flow.tasks[instance_name(name, i)] for i in range(state.count)]
    failed = [t.name for t in ended if t.status is TaskStatus.FAILED]
    cancelled = [t for t in ended if t.status is TaskStatus.CANCELLED]
    skipped = [t for t in ended if t.status is TaskStatus.SKIPPED]
    if failed:
        shown = ", ".join(f'"{n}"' for n in failed[:5]) + (", …" if len(failed) > 5 else "")
        fail_whole(out, name, f"{len(failed):,} of {state.count:,} instances failed: {shown}")
    elif cancelled:
        reason = cancelled[0].error_message or "cancelled"
        out.emit(TaskCancelled(**out.envelope(), at=out.now, task=name, reason=reason))
    elif skipped:
        reason = f'instance "{skipped[0].name}" was skipped: {skipped[0].error_message}'
        out.emit(TaskSkipped(**out.envelope(), at=out.now, task=name, reason=reason))
    elif not plan.tasks[name].outputs:
        out.emit(TaskSucceeded(**out.envelope(), at=out.now, task=name, attempt=0))
    elif out.flow.cancelling:  # nothing after it will run: its outputs are not gathered
        reason = out.flow.cancel_reason or "flow cancelled"
        out.emit(TaskCancelled(**out.envelope(), at=out.now, task=name, reason=reason))


def gathered(flow: FoldedFlow, task: str) -> list[tuple[str, list[str]]]:
    """For each output of mapped `task`: its name and the names of its instances' parts, in
    item order (what the shell gathers into one list)."""
    assert flow.plan is not None
    state = flow.fanout[task]
    return [
        (o.name, [part_name(o.name, i) for i in range(state.count)])
        for o in flow.plan.tasks[task].outputs
    ]


def waiting(flow: FoldedFlow, name: str, phase: int) -> FanOut | None:
    if not flow.exists or flow.status.terminal or flow.cancelling:
        return None
    state = flow.fanout.get(name)
    task = flow.tasks.get(name)
    if state is None or task is None or task.status is not TaskStatus.PENDING:
        return None
    return state if (name, phase) in due(flow) else None


def fail_whole(out: Emitter, name: str, message: str, error_type: str = MAP_ERROR) -> None:
    """`name` fails as a whole (no attempt of its own ran) with `message`."""
    out.emit(
        TaskFailed(
            **out.envelope(),
            at=out.now,
            task=name,
            attempt=0,
            error_type=error_type,
            message=message,
        )
    )
    on_final_failure(out, name)
