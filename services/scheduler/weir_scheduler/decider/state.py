"""A flow's state as folded from its events: `evolve(flow, event) -> flow`, pure and total.

Flow state is immutable; tasks live in a persistent map so a 10,000-task flow evolves in
O(log n) per event. Whether a task may run once its dependencies have ended (its trigger
rule and `when` condition, `triggers.py`) is derived here too, so a replay of the log
arrives at the same tasks ready and the same tasks due to be skipped.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, assert_never

import immutables
import msgspec
from weir_proto import triggers as rules
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
from weir_proto.spec import EnvVar, TaskSpec
from weir_proto.status import FlowStatus, TaskStatus, flow_status_after

from weir_scheduler.decider.copying import replace
from weir_scheduler.decider.triggers import must_read, skip_reason, tolerates_failure
from weir_scheduler.map_plan import parent_of, with_instances
from weir_scheduler.planner import Limits, Plan, planned


@dataclass(frozen=True, slots=True)
class FoldedTask:
    name: str
    queue: str
    priority: int
    status: TaskStatus = TaskStatus.PENDING
    attempt: int = 0
    """The current (or last) attempt number; snoozes and retries each start a new one."""
    failures: tuple[AttemptFailure, ...] = ()
    dispatched_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    retry_at: datetime | None = None
    exit_code: int | None = None
    error_type: str | None = None
    error_message: str | None = None
    runner: str | None = None
    """The runner that started the current attempt: only its reports count."""
    token_digest: str = ""
    """Digest of the current attempt's token: only reports carrying the token count."""
    outputs: tuple[OutputDigest, ...] = ()
    """Once succeeded: the size and SHA-256 of each output as it was uploaded."""
    spent: int = 0
    """Failures recorded before the task's latest `weir retry`: they do not count against
    its max_attempts."""


@dataclass(frozen=True, slots=True)
class FanOut:
    """A mapped task whose dependencies have ended and that runs: before its expansion
    (`expanded` false) the shell reads the list it maps over; then `left` of its `count`
    instances have not ended; at 0 it ends as they did (gathering their outputs first)."""

    expanded: bool = False
    count: int = 0
    left: int = 0
    reading: bool = False
    """Not a fan-out (yet): the task waits for the shell to read the upstream outputs its
    `when` condition names (`decider/gates.py`)."""


@dataclass(frozen=True, slots=True)
class FoldedFlow:
    """A flow as folded from its events. `seq` 0 means the flow does not exist yet."""

    id: str
    seq: int = 0
    name: str = ""
    status: FlowStatus = FlowStatus.PENDING
    created_at: datetime | None = None
    updated_at: datetime | None = None
    start_at: datetime | None = None
    plan: Plan | None = None
    tasks: immutables.Map[str, FoldedTask] = immutables.Map()  # noqa: RUF009 - immutable
    ready: immutables.Map[str, bool] = immutables.Map()  # noqa: RUF009 - immutable
    """Tasks whose dependencies all succeeded and that wait for a slot (max_parallel) or
    for room in the dispatch window."""
    line: immutables.Map[str, tuple[tuple[int, int], ...]] = immutables.Map()  # noqa: RUF009
    """The ready tasks again, per queue, as sorted (priority, position in the spec): the
    next to hand out are a prefix, so a start that frees one window place costs a lookup,
    not a sort of every ready task."""
    blocked: immutables.Map[str, int] = immutables.Map()  # noqa: RUF009 - immutable
    """Per pending task, how many of its dependencies have not ended yet (so a fan-in of
    10,000 costs one decrement per parent, not a scan of every parent)."""
    settled: immutables.Map[str, str] = immutables.Map()  # noqa: RUF009 - immutable
    """Pending tasks whose dependencies have all ended and that do not run: why (their
    trigger rule does not hold, or their `when` is false). `decide` skips them."""
    errors: tuple[SpecError, ...] = ()
    active: int = 0
    """Tasks handed to a runner and not finished."""
    retrying: int = 0
    """Tasks waiting for their next attempt or for queue capacity; they keep their
    max_parallel slot."""
    unfinished: int = 0
    """Tasks not in a terminal state."""
    unstarted: immutables.Map[str, int] = immutables.Map()  # noqa: RUF009 - immutable
    """Per queue, attempts handed to a runner that no runner has started yet: what the
    flow holds of the queue's dispatch stream (bounded by `Policy.dispatch_window`)."""
    held: immutables.Map[str, immutables.Map[str, bool]] = immutables.Map()  # noqa: RUF009
    """Per queue, the tasks `queued` there: for a limited queue, waiting for the
    QueueDispatcher; for another, waiting for room in the flow's dispatch window."""
    failing: bool = False
    cancelling: bool = False
    cancel_reason: str | None = None
    rerun_of: str | None = None
    reused: frozenset[str] = frozenset()
    fanout: immutables.Map[str, FanOut] = immutables.Map()  # noqa: RUF009 - immutable
    """Mapped tasks being expanded or run as instances (`decider/fanout.py`), and tasks
    waiting for the outputs their condition reads (`decider/gates.py`)."""
    read_outputs: immutables.Map[str, Any] = immutables.Map()  # noqa: RUF009 - immutable
    """Output name -> value, as `task_condition_read` recorded it for a condition."""
    expanded: frozenset[str] = frozenset()
    """Mapped tasks expanded into instances (also into none), which neither a retry nor an
    update plans again (`decider/stepping.py`)."""
    updates: int = 0
    """`flow_updated` events so far: a start timer set before the latest update is stale."""

    @property
    def exists(self) -> bool:
        return self.seq > 0

    @property
    def paused(self) -> bool:
        """`weir pause`d: nothing new is handed out."""
        return self.status is FlowStatus.PAUSED

    def output_digest(self, output: str) -> OutputDigest | None:
        """What the log recorded for `output` when its task uploaded it (None: nothing, as
        for outputs stored before digests were recorded)."""
        producer = self.plan.producers.get(output) if self.plan is not None else None
        task = self.tasks.get(producer) if producer is not None else None
        if task is None:
            return None
        return next((d for d in task.outputs if d.name == output), None)


# evolve ---------------------------------------------------------------------------------


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
            from weir_scheduler.decider.stepping import retried  # it builds on this module

            return retried(flow, event)
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
            return _unready(_with_task(flow, task), name)
        case TaskQueued(task=name):
            task = replace(flow.tasks[name], status=TaskStatus.QUEUED, retry_at=None)
            return _unready(_with_task(flow, task), name)
        case TaskStarted(task=name, runner=runner):
            task = replace(
                flow.tasks[name], status=TaskStatus.RUNNING, started_at=event.at, runner=runner
            )
            return _with_task(flow, task)
        case TaskTakenOver(task=name, runner=runner):
            # The attempt runs on under its new runner from now: its lease (and deadline)
            # count from the takeover, as the new runner's own timeout does.
            task = replace(flow.tasks[name], started_at=event.at, runner=runner)
            return _with_task(flow, task)
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
            return _dependencies_ended(_with_task(flow, task), name)
        case TaskAttemptFailed(
            task=name, attempt=attempt, error_type=error_type, message=message, exit_code=code
        ):
            previous = flow.tasks[name]
            task = replace(
                previous,
                status=TaskStatus.RETRYING,
                finished_at=event.at,
                retry_at=event.retry_at,
                exit_code=code,
                error_type=error_type,
                error_message=message,
                failures=(
                    *previous.failures,
                    AttemptFailure(
                        attempt=attempt, error_type=error_type, message=message, at=event.at
                    ),
                ),
            )
            return _with_task(flow, task)
        case TaskSnoozed(task=name, until=until):
            task = replace(
                flow.tasks[name],
                status=TaskStatus.RETRYING,
                finished_at=event.at,
                retry_at=until,
                error_message=f"snoozed until {until.isoformat()}",
            )
            return _with_task(flow, task)
        case TaskFailed(
            task=name, attempt=attempt, exit_code=code, error_type=error_type, message=message
        ):
            previous = flow.tasks[name]
            task = replace(
                previous,
                status=TaskStatus.FAILED,
                finished_at=event.at,
                exit_code=code,
                error_type=error_type,
                error_message=message,
                retry_at=None,
                failures=(
                    *previous.failures,
                    AttemptFailure(
                        attempt=attempt, error_type=error_type, message=message, at=event.at
                    ),
                ),
            )
            return _dependencies_ended(replace(_with_task(flow, task), failing=True), name)
        case TaskSkipped(task=name, reason=reason):
            task = replace(
                flow.tasks[name], status=TaskStatus.SKIPPED, error_message=reason, retry_at=None
            )
            return _dependencies_ended(
                _unsettled(_unready(_with_task(flow, task), name), name), name
            )
        case TaskCancelled(task=name, reason=reason):
            task = replace(
                flow.tasks[name],
                status=TaskStatus.CANCELLED,
                error_message=reason,
                retry_at=None,
                finished_at=event.at,
            )
            return _dependencies_ended(
                _unsettled(_unready(_with_task(flow, task), name), name), name
            )
        case TaskExpanded(task=name, items=items):
            return _expanded(flow, name, items)
        case TaskConditionRead(task=name, values=values):
            return _condition_read(flow, name, values)
        case FlowCancelRequested(reason=reason):
            return replace(
                flow,
                cancelling=True,
                cancel_reason=reason,
                ready=immutables.Map(),
                line=immutables.Map(),
            )
        case FlowSucceeded() | FlowFailed() | FlowCancelled():
            return flow
        case _ as unreachable:
            assert_never(unreachable)


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
        line=_line_of(ready, flow.tasks, flow.plan.positions),
        settled=immutables.Map(settled),
        fanout=fanout,
    )


def with_token_digest(flow: FoldedFlow, dispatched: TaskDispatched) -> FoldedFlow:
    """`flow` as evolving `dispatched` would have left it, given that it was decided without
    its token digest. Tokens are random, so the store mints them after deciding (`decide`
    stays pure) and puts their digests into the events it appends and into the state."""
    task = flow.tasks.get(dispatched.task) if flow.exists else None
    if task is None or task.attempt != dispatched.attempt:
        return flow  # the attempt has moved on within the same decision
    sealed = replace(task, token_digest=dispatched.token_digest)
    return replace(flow, tasks=flow.tasks.set(task.name, sealed))


def _with_task(flow: FoldedFlow, task: FoldedTask) -> FoldedFlow:
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


def _dependencies_ended(flow: FoldedFlow, name: str) -> FoldedFlow:
    """`name` has ended: each dependent whose dependencies have now all ended becomes
    ready, or settled with the reason it will be skipped. A cancelling flow starts nothing;
    a failing one only tasks that run after a failure."""
    plan = flow.plan
    assert plan is not None
    flow = _fanout_ended(flow, name)
    ready, blocked, line, settled = flow.ready, flow.blocked, flow.line, flow.settled
    fanout = flow.fanout
    for child in plan.dependents[name]:
        left = blocked.get(child, 0) - 1
        blocked = blocked.set(child, left)
        task = flow.tasks[child]
        if left or task.status is not TaskStatus.PENDING or flow.cancelling:
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
        place = (task.priority, plan.positions[child])
        waiting = line.get(task.queue, ())
        at = bisect_left(waiting, place)
        line = line.set(task.queue, (*waiting[:at], place, *waiting[at:]))
    return replace(flow, ready=ready, blocked=blocked, line=line, settled=settled, fanout=fanout)


def _condition_read(flow: FoldedFlow, name: str, values: Mapping[str, Any]) -> FoldedFlow:
    """The outputs `name`'s condition reads were read: it is decided, and so is every other
    task waiting for outputs that are all read now."""
    assert flow.plan is not None
    positions = flow.plan.positions
    flow = replace(flow, read_outputs=flow.read_outputs.update(values))
    waiting = [n for n, state in flow.fanout.items() if state.reading]
    for task in sorted(waiting, key=positions.__getitem__):
        if task == name or not must_read(flow, task):
            flow = _decided(replace(flow, fanout=flow.fanout.delete(task)), task)
    return flow


def _forget_reads(flow: FoldedFlow, name: str) -> FoldedFlow:
    """`flow` without the values read of `name`'s outputs."""
    assert flow.plan is not None
    read = flow.read_outputs.mutate()
    for output in flow.plan.tasks[name].outputs:
        read.pop(output.name, None)
    return replace(flow, read_outputs=read.finish())


def _decided(flow: FoldedFlow, name: str) -> FoldedFlow:
    """`name`, whose dependencies have ended and whose condition's outputs are now read,
    becomes ready, or settled with the reason it will be skipped, or, when mapped, waits
    for its list. A cancelling flow starts nothing."""
    assert flow.plan is not None
    if flow.cancelling:
        return flow
    reason = skip_reason(flow, name)
    if reason is not None:
        return replace(flow, settled=flow.settled.set(name, reason))
    if flow.plan.tasks[name].map is not None:
        return replace(flow, fanout=flow.fanout.set(name, FanOut()))
    task = flow.tasks[name]
    place = (task.priority, flow.plan.positions[name])
    waiting = flow.line.get(task.queue, ())
    at = bisect_left(waiting, place)
    line = flow.line.set(task.queue, (*waiting[:at], place, *waiting[at:]))
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


def _expanded(flow: FoldedFlow, name: str, items: list[Any]) -> FoldedFlow:
    """Mapped task `name` became one instance per item, each ready at once (unless the
    flow is cancelling or failing and the task does not run after a failure)."""
    assert flow.plan is not None
    plan = with_instances(flow.plan, name, items)
    names = plan.names[len(flow.plan.names) :]
    starts = not flow.cancelling and not (flow.failing and not tolerates_failure(plan, name))
    tasks = flow.tasks.mutate()
    ready = flow.ready.mutate()
    for instance in names:
        spec = plan.tasks[instance]
        tasks[instance] = FoldedTask(
            name=instance, queue=spec.queue or "default", priority=spec.priority or 0
        )
        if starts:
            ready[instance] = True
    done = tasks.finish()
    line = flow.line
    if starts:
        for queue, places in _line_of(dict.fromkeys(names, True), done, plan.positions).items():
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


def _unsettled(flow: FoldedFlow, name: str) -> FoldedFlow:
    """`flow` with `name` no longer due to be skipped (it ended)."""
    if name not in flow.settled:
        return flow
    return replace(flow, settled=flow.settled.delete(name))


def _unready(flow: FoldedFlow, name: str) -> FoldedFlow:
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


def _line_of(
    ready: Mapping[str, bool],
    tasks: immutables.Map[str, FoldedTask],
    positions: Mapping[str, int],
) -> immutables.Map[str, tuple[tuple[int, int], ...]]:
    by_queue: dict[str, list[tuple[int, int]]] = {}
    for name in ready:
        task = tasks[name]
        by_queue.setdefault(task.queue, []).append((task.priority, positions[name]))
    return immutables.Map({queue: tuple(sorted(places)) for queue, places in by_queue.items()})


def flow_outcome(flow: FoldedFlow) -> str:
    """`failed` when a task of the flow (other than its on_exit task) failed, else
    `succeeded`: what the on_exit task gets as WEIR_FLOW_STATUS."""
    assert flow.plan is not None
    on_exit = flow.plan.on_exit
    return rules.flow_outcome(t.status for t in flow.tasks.values() if t.name != on_exit)


def dispatch_spec(flow: FoldedFlow, name: str) -> TaskSpec:
    """What a runner gets to run for `name`: the planned task, and for the on_exit task
    the flow's outcome so far in WEIR_FLOW_STATUS."""
    assert flow.plan is not None
    spec = flow.plan.tasks[name]
    if name != flow.plan.on_exit:
        return spec
    status = EnvVar(name=FLOW_STATUS_ENV, value=flow_outcome(flow))
    env = [var for var in spec.env if var.name != FLOW_STATUS_ENV]
    return msgspec.structs.replace(spec, env=[*env, status])


FLOW_STATUS_ENV = rules.FLOW_STATUS_ENV


def fold(flow_id: str, events: list[FlowEvent]) -> FoldedFlow:
    flow = FoldedFlow(id=flow_id)
    for event in events:
        flow = evolve(flow, event)
    return flow


_UNLIMITED = Limits(max_tasks=1 << 62, max_submit_bytes=1 << 62)
"""Specs already in the log are trusted, whatever today's limits are."""
