"""`evolve(flow, event) -> flow`: the state after each event, pure and total.

Events that move one task are a case each; those that plan many tasks anew (a submit or an
update, an expansion, a condition read, a retry) have a function each below it. The
bookkeeping every status change needs is in `transitions.py`.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, assert_never

import immutables
from weir_proto.api import AttemptFailure
from weir_proto.errors import SpecError
from weir_proto.events import (
    FlowCancelled,
    FlowCancelRequested,
    FlowDeduplicated,
    FlowEvent,
    FlowFailed,
    FlowPaused,
    FlowRejected,
    FlowResumed,
    FlowSubmitted,
    FlowSucceeded,
    FlowUpdated,
    TaskAttemptFailed,
    TaskCancelled,
    TaskConditionRead,
    TaskDispatched,
    TaskExpanded,
    TaskFailed,
    TaskQueued,
    TaskRetried,
    TaskSkipped,
    TaskSnoozed,
    TaskStarted,
    TaskSucceeded,
    TaskTakenOver,
)
from weir_proto.messages import OutputDigest
from weir_proto.status import TaskStatus, flow_status_after

from weir_scheduler.decider.copying import replace
from weir_scheduler.decider.state import FanOut, FoldedFlow, FoldedTask
from weir_scheduler.decider.transitions import (
    decided,
    dependencies_ended,
    descendants,
    line_of,
    mapped_parent,
    replanned_maps,
    sorted_out,
    unready,
    unsettled,
    with_task,
)
from weir_scheduler.decider.triggers import must_read, tolerates_failure
from weir_scheduler.map_plan import instances, with_instances, without_instances
from weir_scheduler.planner import Limits, Plan, planned


def evolve(flow: FoldedFlow, event: FlowEvent) -> FoldedFlow:
    """The flow after `event`. Events must come in `seq` order."""
    status = flow_status_after(flow.status, event)
    flow = replace(flow, seq=event.seq, updated_at=event.at, status=status)
    match event:
        case FlowSubmitted(spec=spec, start_at=start_at, rerun_of=rerun_of, reused=reused):
            flow_plan = planned(spec, _UNLIMITED)
            done = frozenset(reused).intersection(flow_plan.tasks)  # never an instance
            carried: dict[str, tuple[OutputDigest, ...]] = {}
            for digest in event.reused_outputs:
                producer = flow_plan.producers.get(digest.name)
                if producer in done:
                    carried[producer] = (*carried.get(producer, ()), digest)
            flow = replace(flow, created_at=event.at, rerun_of=rerun_of)
            return _from_plan(flow, flow_plan, start_at, done, carried)
        case FlowUpdated(spec=spec, start_at=start_at):
            carried = {name: flow.tasks[name].outputs for name in flow.reused}
            flow = replace(flow, updates=flow.updates + 1)
            return _from_plan(flow, planned(spec, _UNLIMITED), start_at, flow.reused, carried)
        case FlowPaused() | FlowResumed():
            return flow
        case TaskRetried():
            return _retried(flow, event)
        case FlowRejected(errors=errors, name=name):
            return replace(
                flow,
                name=name or "",
                created_at=event.at,
                errors=tuple(errors),
            )
        case FlowDeduplicated(existing=existing, key=key, name=name):
            message = f'a flow with unique key "{key}" exists already: {existing}'
            return replace(
                flow,
                name=name or "",
                created_at=event.at,
                errors=(SpecError(path="$.unique.key", message=message),),
            )
        case TaskDispatched(task=name, attempt=attempt, token_digest=digest):
            task = replace(
                flow.tasks[name],
                status=TaskStatus.DISPATCHED,
                attempt=attempt,
                dispatched_at=event.at,
                started_at=None,
                finished_at=None,
                retry_at=None,
                runner=None,
                token_digest=digest,
            )
            return unready(with_task(flow, task), name)
        case TaskQueued(task=name):
            task = replace(flow.tasks[name], status=TaskStatus.QUEUED, retry_at=None)
            return unready(with_task(flow, task), name)
        case TaskStarted(task=name, runner=runner):
            task = replace(
                flow.tasks[name], status=TaskStatus.RUNNING, started_at=event.at, runner=runner
            )
            return with_task(flow, task)
        case TaskTakenOver(task=name, runner=runner):
            # The attempt runs on under its new runner from now: its lease (and deadline)
            # count from the takeover, as the new runner's own timeout does.
            task = replace(flow.tasks[name], started_at=event.at, runner=runner)
            return with_task(flow, task)
        case TaskSucceeded(task=name, exit_code=code, outputs=outputs):
            task = replace(
                flow.tasks[name],
                status=TaskStatus.SUCCEEDED,
                finished_at=event.at,
                exit_code=code,
                error_type=None,
                error_message=None,
                outputs=tuple(outputs),
            )
            if flow.read_outputs:  # a task run again: its outputs are read afresh
                flow = _forget_reads(flow, name)
            return dependencies_ended(with_task(flow, task), name)
        case TaskAttemptFailed(task=name):
            task = _failed_attempt(flow.tasks[name], event, TaskStatus.RETRYING, event.retry_at)
            return with_task(flow, task)
        case TaskSnoozed(task=name, until=until):
            task = replace(
                flow.tasks[name],
                status=TaskStatus.RETRYING,
                finished_at=event.at,
                retry_at=until,
                error_message=f"snoozed until {until.isoformat()}",
            )
            return with_task(flow, task)
        case TaskFailed(task=name):
            task = _failed_attempt(flow.tasks[name], event, TaskStatus.FAILED, None)
            return dependencies_ended(replace(with_task(flow, task), failing=True), name)
        case TaskSkipped(task=name, reason=reason):
            task = replace(
                flow.tasks[name], status=TaskStatus.SKIPPED, error_message=reason, retry_at=None
            )
            return dependencies_ended(unsettled(unready(with_task(flow, task), name), name), name)
        case TaskCancelled(task=name, reason=reason):
            task = replace(
                flow.tasks[name],
                status=TaskStatus.CANCELLED,
                error_message=reason,
                retry_at=None,
                finished_at=event.at,
            )
            return dependencies_ended(unsettled(unready(with_task(flow, task), name), name), name)
        case TaskExpanded(task=name, items=items):
            return _expanded(flow, name, items)
        case TaskConditionRead(task=name, values=values):
            return _condition_read(flow, name, values)
        case FlowCancelRequested(reason=reason, fail_fast=fail_fast) as request:
            ready, line = _spared_ready(flow, request.spares)
            return replace(
                flow,
                cancelling=True,
                cancel_reason=reason,
                fail_fast=fail_fast,
                spares_on_exit=request.spares,
                ready=ready,
                line=line,
            )
        case FlowSucceeded() | FlowFailed() | FlowCancelled():
            return flow
        case _ as unreachable:
            assert_never(unreachable)


def fold(flow_id: str, events: list[FlowEvent]) -> FoldedFlow:
    flow = FoldedFlow(id=flow_id)
    for event in events:
        flow = evolve(flow, event)
    return flow


_UNLIMITED = Limits(max_tasks=1 << 62, max_submit_bytes=1 << 62)
"""Specs already in the log are trusted, whatever today's limits are."""


def _failed_attempt(
    task: FoldedTask,
    event: TaskAttemptFailed | TaskFailed,
    status: TaskStatus,
    retry_at: datetime | None,
) -> FoldedTask:
    """`task` once its attempt failed: the failure added to its record, `status` next (to
    be retried at `retry_at`, or failed for good)."""
    failure = AttemptFailure(
        attempt=event.attempt, error_type=event.error_type, message=event.message, at=event.at
    )
    return replace(
        task,
        status=status,
        finished_at=event.at,
        retry_at=retry_at,
        exit_code=event.exit_code,
        error_type=event.error_type,
        error_message=event.message,
        failures=(*task.failures, failure),
    )


def _from_plan(
    flow: FoldedFlow,
    flow_plan: Plan,
    start_at: datetime | None,
    done: frozenset[str],
    carried: Mapping[str, tuple[OutputDigest, ...]],
) -> FoldedFlow:
    """`flow` as planned from scratch: every task pending but the `done` (reused) ones,
    which keep their `carried` output digests."""
    tasks = immutables.Map(
        {
            name: FoldedTask(
                name=name,
                queue=t.queue or "default",
                priority=t.priority or 0,
                status=TaskStatus.SUCCEEDED if name in done else TaskStatus.PENDING,
                outputs=carried.get(name, ()),
            )
            for name, t in flow_plan.tasks.items()
        }
    )
    blocked = immutables.Map(
        {
            name: sum(1 for d in flow_plan.depends[name] if d not in done)
            for name in flow_plan.order
            if name not in done
        }
    )
    flow = replace(
        flow,
        name=flow_plan.spec.name,
        start_at=start_at,
        plan=flow_plan,
        tasks=tasks,
        blocked=blocked,
        unfinished=len(tasks) - len(done),
        reused=done,
        active=0,
        retrying=0,
        unstarted=immutables.Map(),
        held=immutables.Map(),
        fanout=immutables.Map(),
        expanded=frozenset(),
    )
    return sorted_out(flow, [name for name, n in blocked.items() if n == 0], {}, {})


def _expanded(flow: FoldedFlow, name: str, items: list[Any]) -> FoldedFlow:
    """Mapped task `name` became one instance per item, each ready at once (unless the
    flow is cancelling)."""
    assert flow.plan is not None
    plan = with_instances(flow.plan, name, items)
    names = plan.names[len(flow.plan.names) :]
    # While the flow fails, a mapped task is expanded only when it runs despite the failure
    # (its trigger rule, or a retry of it: `on_final_failure` skipped any other), and so do
    # its instances.
    starts = not flow.cancelling
    tasks = flow.tasks.mutate()
    ready = flow.ready.mutate()
    for instance in names:
        spec = plan.tasks[instance]
        tasks[instance] = FoldedTask(
            name=instance,
            queue=spec.queue or "default",
            priority=spec.priority or 0,
            attempt=flow.retired.get(instance, 0),  # a dropped one's attempts count on
        )
        if starts:
            ready[instance] = True
    done = tasks.finish()
    line = flow.line
    if starts:
        for queue, places in line_of(dict.fromkeys(names, True), done, plan.positions).items():
            line = line.set(queue, tuple(sorted((*line.get(queue, ()), *places))))
    fanout = FanOut(expanded=True, count=len(names), left=len(names))
    return replace(
        flow,
        plan=plan,
        tasks=done,
        ready=ready.finish(),
        line=line,
        unfinished=flow.unfinished + len(names),
        fanout=flow.fanout.set(name, fanout),
        expanded=flow.expanded | {name},
    )


def _condition_read(flow: FoldedFlow, name: str, values: Mapping[str, Any]) -> FoldedFlow:
    """The outputs `name`'s condition reads were read: it is decided, and so is every other
    task waiting for outputs that are all read now."""
    assert flow.plan is not None
    positions = flow.plan.positions
    flow = replace(flow, read_outputs=flow.read_outputs.update(values))
    waiting = [n for n, state in flow.fanout.items() if state.reading]
    for task in sorted(waiting, key=positions.__getitem__):
        if task == name or not must_read(flow, task):
            flow = decided(replace(flow, fanout=flow.fanout.delete(task)), task)
    return flow


def _forget_reads(flow: FoldedFlow, name: str) -> FoldedFlow:
    """`flow` without the values read of `name`'s outputs."""
    assert flow.plan is not None
    read = flow.read_outputs.mutate()
    for output in flow.plan.tasks[name].outputs:
        read.pop(output.name, None)
    return replace(flow, read_outputs=read.finish())


def _retried(flow: FoldedFlow, event: TaskRetried) -> FoldedFlow:
    """`flow` after `task_retried`: the listed tasks pending again with their attempts
    counting on, every pending task after them waiting for them again, and what is ready or
    due to be skipped derived anew (as `evolve` derives it after a submit). An expanded
    mapped task after the retried one, with `downstream`, is planned from scratch
    (`_unexpanded`); another listed waits for its instances again, with the items it was
    expanded into; an instance listed is ready at once, as at its expansion."""
    for mapped in replanned_maps(flow, event.task, event.downstream):
        flow = _unexpanded(flow, mapped)
    plan = flow.plan
    assert plan is not None
    reset = set(event.tasks)
    for name in event.tasks:
        old = flow.tasks[name]
        fresh = FoldedTask(
            name=name,
            queue=old.queue,
            priority=old.priority,
            attempt=old.attempt,
            failures=old.failures,
            spent=len(old.failures),
        )
        flow = with_task(flow, fresh)
    waiting = [
        n
        for n in sorted(reset | descendants(flow, event.tasks), key=plan.positions.__getitem__)
        if flow.tasks[n].status is TaskStatus.PENDING
    ]
    for name in waiting:  # a mapped task waiting for its list waits for its dependencies again
        flow = unsettled(unready(flow, name), name)
        if name in flow.fanout:
            flow = replace(flow, fanout=flow.fanout.delete(name))
    failed = next((n for n in plan.order if flow.tasks[n].status is TaskStatus.FAILED), None)
    flow = replace(
        flow,
        failing=failed is not None,
        cancelling=False,
        cancel_reason=None,
        fail_fast=False,
        spares_on_exit=False,
        reused=flow.reused - reset,
    )
    blocked, ready, settled = flow.blocked, dict(flow.ready), dict(flow.settled)
    for name in waiting:
        left = sum(1 for d in plan.depends[name] if not flow.tasks[d].status.terminal)
        blocked = blocked.set(name, left)
    flow = replace(flow, blocked=blocked)
    parents = {name: mapped_parent(flow, name) for name in waiting}
    exempt = {event.task} | {n for n, p in parents.items() if p == event.task}
    fanned = {n for n in waiting if n in flow.expanded} | {p for p in parents.values() if p}
    for name in waiting:
        if name in flow.expanded:
            continue  # it ends as its instances do
        if failed is not None and name not in exempt and not tolerates_failure(plan, name):
            settled[name] = f'flow is failing: task "{failed}" failed'
    free = []
    for name in waiting:
        if blocked[name] or name in settled or name in flow.expanded:
            continue
        if parents[name] is not None:
            ready[name] = True  # no trigger rule: it ran at its expansion without one
        else:
            free.append(name)
    flow = sorted_out(flow, free, ready, settled)
    fanout = flow.fanout
    for name in sorted(fanned, key=plan.positions.__getitem__):
        if flow.tasks[name].status is TaskStatus.PENDING:
            names = instances(plan, name)
            left = sum(1 for n in names if not flow.tasks[n].status.terminal)
            fanout = fanout.set(name, FanOut(expanded=True, count=len(names), left=left))
    return replace(flow, fanout=fanout)


def _spared_ready(
    flow: FoldedFlow, spares: bool
) -> tuple[immutables.Map[str, bool], immutables.Map[str, tuple[tuple[int, int], ...]]]:
    """What stays ready under a cancel: nothing, but the on_exit task when the cancel spares
    it and it was ready already (every other task had ended, e.g. in a paused flow)."""
    on_exit = flow.plan.on_exit if spares and flow.plan is not None else None
    if on_exit is None or on_exit not in flow.ready:
        return immutables.Map(), immutables.Map()
    assert flow.plan is not None
    place = flow.plan.positions[on_exit]
    line: immutables.Map[str, tuple[tuple[int, int], ...]] = immutables.Map()
    for queue, waiting in flow.line.items():
        kept = tuple(entry for entry in waiting if entry[1] == place)
        if kept:
            line = line.set(queue, kept)
    return immutables.Map({on_exit: flow.ready[on_exit]}), line


def _unexpanded(flow: FoldedFlow, name: str) -> FoldedFlow:
    """`flow` with expanded mapped task `name` as before its expansion: its instances gone
    from the plan and every index (they have all ended: `weir retry` refuses otherwise),
    the positions after them numbered again, so the ready line is derived anew."""
    plan = flow.plan
    assert plan is not None
    dropped = instances(plan, name)
    smaller = without_instances(plan, name)
    tasks, ready = flow.tasks.mutate(), flow.ready.mutate()
    blocked, settled = flow.blocked.mutate(), flow.settled.mutate()
    retired = flow.retired.mutate()
    left = 0
    for instance in dropped:
        left += int(not tasks[instance].status.terminal)
        retired[instance] = tasks[instance].attempt
        for index in (tasks, ready, blocked, settled):
            index.pop(instance, None)
    kept, still_ready = tasks.finish(), ready.finish()
    return replace(
        flow,
        plan=smaller,
        tasks=kept,
        ready=still_ready,
        line=line_of(still_ready, kept, smaller.positions),
        blocked=blocked.finish(),
        settled=settled.finish(),
        unfinished=flow.unfinished - left,
        fanout=flow.fanout.delete(name) if name in flow.fanout else flow.fanout,
        expanded=flow.expanded - {name},
        retired=retired.finish(),
    )
