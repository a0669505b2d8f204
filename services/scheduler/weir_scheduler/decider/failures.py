"""What a failure and a cancel do to the work not handed out yet."""

from __future__ import annotations

from weir_proto.events import FlowCancelRequested, TaskCancelled, TaskSkipped
from weir_proto.status import TaskStatus
from weir_proto.triggers import fail_fast_reason, failure_skip_reason

from weir_scheduler.decider.emitter import Emitter
from weir_scheduler.decider.state import FoldedFlow
from weir_scheduler.decider.triggers import tolerates_failure
from weir_scheduler.map_plan import instances


def on_final_failure(out: Emitter, failed: str) -> None:
    """No new work starts: every task not handed out is skipped, but for those whose
    trigger rule runs after a failure (and the on_exit task). With fail_fast, whatever else
    runs at that moment, every task not started is cancelled too (cleanup tasks included)
    but the on_exit task, which still runs last; running siblings are killed (and their
    dispatches purged) by a `flow_cancel_requested` that spares the on_exit task."""
    flow = out.flow
    assert flow.plan is not None
    downstream = set(flow.plan.descendants(failed))
    for name in flow.plan.order:
        if tolerates_failure(flow.plan, name):
            continue
        if out.flow.tasks[name].status in WAITING and not _has_instances(out.flow, name):
            reason = failure_skip_reason(failed, downstream=name in downstream)
            out.emit(TaskSkipped(**out.envelope(), at=out.now, task=name, reason=reason))
    if flow.plan.spec.fail_fast and not out.flow.cancelling:
        reason = fail_fast_reason(failed)
        if out.flow.active:  # attempts handed to runners: killed, or purged if not taken
            out.emit(
                FlowCancelRequested(**out.envelope(), at=out.now, reason=reason, fail_fast=True)
            )
        cancel_unstarted(out, reason, spare=flow.plan.on_exit)


def _has_instances(flow: FoldedFlow, name: str) -> bool:
    """A mapped task whose instances exist ends as they do, not by being skipped."""
    state = flow.fanout.get(name)
    return state is not None and state.expanded


def skip_settled(out: Emitter) -> None:
    """Skip every task whose dependencies have ended as its trigger rule does not accept,
    or whose condition is false, in the order of the spec. A skip ends a dependency in
    turn, so this runs until none is left."""
    plan = out.flow.plan
    assert plan is not None
    while out.flow.settled:
        name = min(out.flow.settled, key=plan.positions.__getitem__)
        reason = out.flow.settled[name]
        out.emit(TaskSkipped(**out.envelope(), at=out.now, task=name, reason=reason))


def cancel_unstarted(out: Emitter, reason: str, spare: str | None = None) -> None:
    """End every task that has not started, at once: waiting ones, and attempts handed to a
    runner that has not reported their start. Those may never start (a cancel purges the
    flow's dispatches, runners drop attempts of flows they saw cancelled, and nobody may
    serve their queue), so waiting for their report could wait forever and hold their
    queue's slot. A start or finish reported for them later is stale and ignored; a runner
    that did start one kills it when it sees the cancel. Task `spare` (the on_exit task, under a
    cancel that spares it) is left to run."""
    flow = out.flow
    assert flow.plan is not None
    for name in flow.plan.order:
        task = flow.tasks[name]
        if name == spare:
            continue
        if spare is not None and _instances_run(out.flow, name):
            continue  # ends as its instances do (close_fanouts), before the on_exit task runs
        if task.status in WAITING:
            out.emit(TaskCancelled(**out.envelope(), at=out.now, task=name, reason=reason))
        elif task.status is TaskStatus.DISPATCHED:
            out.emit(
                TaskCancelled(
                    **out.envelope(),
                    at=out.now,
                    task=name,
                    attempt=task.attempt,
                    reason=f"{reason} (before it started)",
                )
            )


def _instances_run(flow: FoldedFlow, name: str) -> bool:
    """Whether `name` is a mapped task with an instance still running (killed by the cancel,
    it has yet to be reported)."""
    state = flow.fanout.get(name)
    if state is None or not state.expanded or flow.plan is None:
        return False
    return any(not flow.tasks[i].status.terminal for i in instances(flow.plan, name))


WAITING = (TaskStatus.PENDING, TaskStatus.RETRYING, TaskStatus.QUEUED)
"""Not handed to a runner and not finished: what a failure skips and a cancel cancels."""
