"""Handing out ready work: max_parallel, limited queues and the flow's dispatch window."""

from __future__ import annotations

from weir_proto.events import TaskDispatched, TaskQueued

from weir_scheduler.decider.emitter import Emitter
from weir_scheduler.decider.failures import skip_settled
from weir_scheduler.decider.fanout import close_fanouts
from weir_scheduler.decider.state import FoldedTask


def dispatch_ready(out: Emitter) -> None:
    """Skip the tasks whose trigger rule or condition says so, then hand out waiting work,
    highest priority first: first the tasks queued for room in the
    dispatch window (they hold their max_parallel slot already), then ready tasks as far as
    max_parallel and the window allow. A cancel starts nothing more, but fail_fast's and a
    user's first leave the on_exit task to start. A ready task whose queue's window is full stays
    ready: the start of one of the flow's attempts there calls this again."""
    flow, plan = out.flow, out.flow.plan
    assert plan is not None
    if flow.halted:
        return  # (a sparing cancel left nothing to start but the on_exit task)
    close_fanouts(out)
    if out.flow.halted:
        return
    skip_settled(out)
    flow = out.flow
    if flow.paused:
        return  # `resume` hands the work out
    positions = plan.positions

    def order(name: str) -> tuple[int, int]:
        return (flow.tasks[name].priority, positions[name])

    for queue, names in flow.held.items():
        room = _window_room(out, queue)
        if queue not in out.policy.limited_queues and room > 0:
            for name in sorted(names, key=order)[:room]:
                dispatch(out, out.flow.tasks[name])
    flow = out.flow
    if not flow.ready:
        return
    limit = plan.spec.max_parallel
    slots = len(flow.ready) if limit is None else limit - flow.active - flow.retrying
    if slots <= 0:
        return
    candidates: list[tuple[int, int]] = []
    for queue, waiting in flow.line.items():
        room = len(waiting) if queue in out.policy.limited_queues else _window_room(out, queue)
        candidates.extend(waiting[: max(room, 0)])
    for _, position in sorted(candidates)[:slots]:
        hand_out(out, out.flow.tasks[plan.names[position]])


def _window_room(out: Emitter, queue: str) -> int:
    """How many more attempts the flow may hand to runners of `queue` now."""
    window = out.policy.dispatch_window
    if window is None:
        return 1 << 62
    return window - out.flow.unstarted.get(queue, 0)


def hand_out(out: Emitter, task: FoldedTask) -> None:
    """Dispatch the task's next attempt; queue it when its queue has a global limit, or when
    the flow's dispatch window on its queue is full."""
    if task.queue in out.policy.limited_queues or _window_room(out, task.queue) <= 0:
        out.emit(
            TaskQueued(
                **out.envelope(),
                at=out.now,
                task=task.name,
                queue=task.queue,
                priority=task.priority,
            )
        )
    else:
        dispatch(out, task)


def dispatch(out: Emitter, task: FoldedTask) -> None:
    out.emit(
        TaskDispatched(
            **out.envelope(), at=out.now, task=task.name, attempt=task.attempt + 1, queue=task.queue
        )
    )
