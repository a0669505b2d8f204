"""The bookkeeping behind a task's change of status, shared by every fold in `evolve.py`.

A `FoldedFlow` keeps indexes derived from its tasks (the counters `active`, `retrying`,
`unfinished`; per queue the attempts not started and the tasks held; the ready line; the
tasks due to be skipped; the fan-outs); these functions move a task and keep each index in
step. Whether a task whose dependencies have ended runs is its trigger rule and condition
(`triggers.py`), so a replay of the log arrives at the same tasks ready and the same tasks
due to be skipped.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Mapping

import immutables
from weir_proto.status import TaskStatus

from weir_scheduler.decider.copying import replace
from weir_scheduler.decider.state import FanOut, FoldedFlow, FoldedTask
from weir_scheduler.decider.triggers import must_read, skip_reason, tolerates_failure
from weir_scheduler.map_plan import parent_of


def with_task(flow: FoldedFlow, task: FoldedTask) -> FoldedFlow:
    before = flow.tasks[task.name].status
    after = task.status
    active = flow.active + int(after.active) - int(before.active)
    holding = (TaskStatus.RETRYING, TaskStatus.QUEUED)
    retrying = flow.retrying + int(after in holding) - int(before in holding)
    unfinished = flow.unfinished + int(before.terminal) - int(after.terminal)
    unstarted, held = flow.unstarted, flow.held
    dispatched = TaskStatus.DISPATCHED
    if (before is dispatched) != (after is dispatched):
        count = unstarted.get(task.queue, 0) + (1 if after is dispatched else -1)
        unstarted = unstarted.set(task.queue, count) if count else unstarted.delete(task.queue)
    queued = TaskStatus.QUEUED
    if (before is queued) != (after is queued):
        names = held.get(task.queue, immutables.Map[str, bool]())
        names = names.set(task.name, True) if after is queued else names.delete(task.name)
        held = held.set(task.queue, names) if names else held.delete(task.queue)
    return replace(
        flow,
        tasks=flow.tasks.set(task.name, task),
        active=active,
        retrying=retrying,
        unfinished=unfinished,
        unstarted=unstarted,
        held=held,
    )


def sorted_out(
    flow: FoldedFlow, names: Iterable[str], ready: dict[str, bool], settled: dict[str, str]
) -> FoldedFlow:
    """`flow` with `ready` and `settled` as its ready and due-to-be-skipped tasks, and each of
    `names` (whose dependencies have all ended) added to one of them by its trigger rule and
    condition."""
    assert flow.plan is not None
    fanout = flow.fanout
    for name in names:
        if must_read(flow, name):  # its condition reads an output: the shell reads it first
            fanout = fanout.set(name, FanOut(reading=True))
            continue
        reason = skip_reason(flow, name)
        if reason is not None:
            settled[name] = reason
        elif flow.plan.tasks[name].map is not None:
            fanout = fanout.set(name, FanOut())  # the shell reads its list first
        else:
            ready[name] = True
    return replace(
        flow,
        ready=immutables.Map(ready),
        line=line_of(ready, flow.tasks, flow.plan.positions),
        settled=immutables.Map(settled),
        fanout=fanout,
    )


def dependencies_ended(flow: FoldedFlow, name: str) -> FoldedFlow:
    """`name` has ended: each dependent whose dependencies have now all ended becomes
    ready, or settled with the reason it will be skipped. A cancelling flow starts nothing
    (but the on_exit task, under fail_fast); a failing one only tasks that run after a
    failure."""
    plan = flow.plan
    assert plan is not None
    flow = _fanout_ended(flow, name)
    ready, blocked, line, settled = flow.ready, flow.blocked, flow.line, flow.settled
    fanout = flow.fanout
    for child in plan.dependents[name]:
        left = blocked.get(child, 0) - 1
        blocked = blocked.set(child, left)
        task = flow.tasks[child]
        if left or task.status is not TaskStatus.PENDING or flow.stops(child):
            continue
        if flow.failing and not tolerates_failure(plan, child):
            continue  # the failure skips it
        if child in plan.conditions and must_read(flow, child):
            fanout = fanout.set(child, FanOut(reading=True))  # the shell reads outputs first
            continue
        reason = skip_reason(replace(flow, blocked=blocked), child)
        if reason is not None:
            settled = settled.set(child, reason)
            continue
        if plan.tasks[child].map is not None:
            fanout = fanout.set(child, FanOut())  # the shell reads its list first
            continue
        ready = ready.set(child, True)
        line = _lined_up(line, task, plan.positions[child])
    return replace(flow, ready=ready, blocked=blocked, line=line, settled=settled, fanout=fanout)


def decided(flow: FoldedFlow, name: str) -> FoldedFlow:
    """`name`, whose dependencies have ended and whose condition's outputs are now read,
    becomes ready, or settled with the reason it will be skipped, or, when mapped, waits
    for its list. A cancelling flow starts nothing (but the on_exit task, under fail_fast)."""
    assert flow.plan is not None
    if flow.stops(name):
        return flow
    reason = skip_reason(flow, name)
    if reason is not None:
        return replace(flow, settled=flow.settled.set(name, reason))
    if flow.plan.tasks[name].map is not None:
        return replace(flow, fanout=flow.fanout.set(name, FanOut()))
    line = _lined_up(flow.line, flow.tasks[name], flow.plan.positions[name])
    return replace(flow, ready=flow.ready.set(name, True), line=line)


def _fanout_ended(flow: FoldedFlow, name: str) -> FoldedFlow:
    """`name` has ended: a mapped task is done with; an instance is one fewer left."""
    if not flow.fanout:
        return flow
    if name in flow.fanout:
        return replace(flow, fanout=flow.fanout.delete(name))
    parent = parent_of(name)
    state = flow.fanout.get(parent[0]) if parent is not None else None
    if parent is None or state is None:
        return flow
    return replace(flow, fanout=flow.fanout.set(parent[0], replace(state, left=state.left - 1)))


def unsettled(flow: FoldedFlow, name: str) -> FoldedFlow:
    """`flow` with `name` no longer due to be skipped (it ended)."""
    if name not in flow.settled:
        return flow
    return replace(flow, settled=flow.settled.delete(name))


def unready(flow: FoldedFlow, name: str) -> FoldedFlow:
    """`flow` with `name` no longer ready (handed out or queued)."""
    if name not in flow.ready:
        return flow
    assert flow.plan is not None
    task = flow.tasks[name]
    place = (task.priority, flow.plan.positions[name])
    waiting = flow.line[task.queue]
    at = bisect_left(waiting, place)
    left = waiting[:at] + waiting[at + 1 :]
    line = flow.line.set(task.queue, left) if left else flow.line.delete(task.queue)
    return replace(flow, ready=flow.ready.delete(name), line=line)


def line_of(
    ready: Mapping[str, bool],
    tasks: immutables.Map[str, FoldedTask],
    positions: Mapping[str, int],
) -> immutables.Map[str, tuple[tuple[int, int], ...]]:
    by_queue: dict[str, list[tuple[int, int]]] = {}
    for name in ready:
        task = tasks[name]
        by_queue.setdefault(task.queue, []).append((task.priority, positions[name]))
    return immutables.Map({queue: tuple(sorted(places)) for queue, places in by_queue.items()})


def _lined_up(
    line: immutables.Map[str, tuple[tuple[int, int], ...]], task: FoldedTask, position: int
) -> immutables.Map[str, tuple[tuple[int, int], ...]]:
    """`line` with `task` ready in its queue, in its place by (priority, `position`)."""
    place = (task.priority, position)
    waiting = line.get(task.queue, ())
    at = bisect_left(waiting, place)
    return line.set(task.queue, (*waiting[:at], place, *waiting[at:]))


def descendants(flow: FoldedFlow, names: Iterable[str]) -> set[str]:
    """Every task that runs after one of `names`, directly or not."""
    plan = flow.plan
    assert plan is not None
    seen: set[str] = set()
    stack = [child for name in names for child in plan.dependents[name]]
    while stack:
        current = stack.pop()
        if current not in seen:
            seen.add(current)
            stack.extend(plan.dependents[current])
    return seen


def mapped_parent(flow: FoldedFlow, name: str) -> str | None:
    """The expanded mapped task `name` is an instance of (None: it is none)."""
    parent = parent_of(name)
    return parent[0] if parent is not None and parent[0] in flow.expanded else None


def replanned_maps(flow: FoldedFlow, name: str, downstream: bool) -> list[str]:
    """The expanded mapped tasks a retry of `name` plans from scratch: with `downstream`,
    each after it (after its mapped task, for an instance), whose instances are dropped and
    which reads its list again once the tasks before it have run again. A retry without
    `downstream` keeps every expansion."""
    if not downstream:
        return []
    head = mapped_parent(flow, name) or name
    assert flow.plan is not None
    after = (n for n in descendants(flow, [head]) if n in flow.expanded)
    return sorted(after, key=flow.plan.positions.__getitem__)
