"""The functional core: `decide(flow, command, now) -> events` and `evolve(flow, event) -> flow`.

Both are pure and total. `decide` answers every command, including repeated and stale
ones (a status the log already holds decides nothing), which is what makes every shell
around it idempotent. Flow state is immutable; tasks live in a persistent map so a
10,000-task flow evolves in O(log n) per event.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import TypedDict, assert_never

import immutables
from weir_proto.errors import SpecError
from weir_proto.events import (
    FlowEvent,
    FlowFailed,
    FlowRejected,
    FlowSubmitted,
    FlowSucceeded,
    TaskDispatched,
    TaskFailed,
    TaskSkipped,
    TaskStarted,
    TaskSucceeded,
)
from weir_proto.ids import event_id
from weir_proto.messages import AttemptFinished, AttemptStarted
from weir_proto.spec import FlowSpec
from weir_proto.status import FlowStatus, TaskStatus

from weir_scheduler.planner import Limits, Plan, plan


@dataclass(frozen=True, slots=True)
class Task:
    name: str
    queue: str
    status: TaskStatus = TaskStatus.PENDING
    attempt: int = 0
    dispatched_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    exit_code: int | None = None
    error_type: str | None = None
    error_message: str | None = None
    runner: str | None = None


@dataclass(frozen=True, slots=True)
class Flow:
    """A flow as folded from its events. `seq` 0 means the flow does not exist yet."""

    id: str
    seq: int = 0
    name: str = ""
    status: FlowStatus = FlowStatus.PENDING
    created_at: datetime | None = None
    updated_at: datetime | None = None
    plan: Plan | None = None
    tasks: immutables.Map[str, Task] = immutables.Map()  # noqa: RUF009 - immutable
    errors: tuple[SpecError, ...] = ()
    active: int = 0
    """Tasks handed to a runner and not finished."""
    unfinished: int = 0
    """Tasks not in a terminal state."""
    failing: bool = False

    @property
    def exists(self) -> bool:
        return self.seq > 0


# Commands -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Submit:
    spec: FlowSpec
    plan: Plan


@dataclass(frozen=True, slots=True)
class Reject:
    errors: tuple[SpecError, ...]
    name: str | None = None


@dataclass(frozen=True, slots=True)
class RecordStarted:
    report: AttemptStarted


@dataclass(frozen=True, slots=True)
class RecordFinished:
    report: AttemptFinished


Command = Submit | Reject | RecordStarted | RecordFinished


# decide ---------------------------------------------------------------------------------


class _Envelope(TypedDict):
    id: str
    flow_id: str
    seq: int


class _Emitter:
    """Numbers events and folds each into the state so later decisions see earlier ones."""

    def __init__(self, flow: Flow, now: datetime) -> None:
        self.flow = flow
        self.now = now
        self.events: list[FlowEvent] = []

    def envelope(self) -> _Envelope:
        seq = self.flow.seq + 1
        return {"id": event_id(self.flow.id, seq), "flow_id": self.flow.id, "seq": seq}

    def emit(self, event: FlowEvent) -> None:
        self.events.append(event)
        self.flow = evolve(self.flow, event)


def decide(flow: Flow, command: Command, now: datetime) -> list[FlowEvent]:
    """The events that `command` causes on `flow` (none when it changes nothing)."""
    out = _Emitter(flow, now)
    match command:
        case Submit(spec=spec, plan=flow_plan):
            if flow.exists:
                return []
            out.emit(FlowSubmitted(**out.envelope(), at=now, spec=spec))
            for name in flow_plan.roots:
                _dispatch(out, name)
        case Reject(errors=errors, name=name):
            if flow.exists:
                return []
            out.emit(FlowRejected(**out.envelope(), at=now, errors=list(errors), name=name))
        case RecordStarted(report=report):
            task = _current_attempt(flow, report.task, report.attempt)
            if task is None or task.status is not TaskStatus.DISPATCHED:
                return []
            out.emit(
                TaskStarted(
                    **out.envelope(),
                    at=report.at,
                    task=report.task,
                    attempt=report.attempt,
                    runner=report.runner,
                )
            )
        case RecordFinished(report=report):
            task = _current_attempt(flow, report.task, report.attempt)
            if task is None or not task.status.active:
                return []
            if report.error_type is None:
                out.emit(
                    TaskSucceeded(
                        **out.envelope(),
                        at=report.at,
                        task=report.task,
                        attempt=report.attempt,
                        exit_code=report.exit_code or 0,
                    )
                )
                _dispatch_ready_children(out, report.task)
            else:
                out.emit(
                    TaskFailed(
                        **out.envelope(),
                        at=report.at,
                        task=report.task,
                        attempt=report.attempt,
                        error_type=str(report.error_type),
                        message=report.message,
                        exit_code=report.exit_code,
                    )
                )
                _skip_pending(out, because=report.task)
            _finish_if_done(out)
        case _ as unreachable:
            assert_never(unreachable)
    return out.events


def _current_attempt(flow: Flow, name: str, attempt: int) -> Task | None:
    """The task if `attempt` is its current one; stale or unknown reports get None."""
    if not flow.exists or flow.status.terminal:
        return None
    task = flow.tasks.get(name)
    if task is None or task.attempt != attempt:
        return None
    return task


def _dispatch(out: _Emitter, name: str) -> None:
    task = out.flow.tasks[name]
    out.emit(
        TaskDispatched(
            **out.envelope(),
            at=out.now,
            task=name,
            attempt=task.attempt + 1,
            queue=task.queue,
        )
    )


def _dispatch_ready_children(out: _Emitter, name: str) -> None:
    flow = out.flow
    assert flow.plan is not None
    if flow.failing:
        return
    for child in flow.plan.dependents[name]:
        if flow.tasks[child].status is not TaskStatus.PENDING:
            continue
        if all(flow.tasks[d].status is TaskStatus.SUCCEEDED for d in flow.plan.depends[child]):
            _dispatch(out, child)


def _skip_pending(out: _Emitter, because: str) -> None:
    """After a failure no new work starts: every task not yet handed out is skipped."""
    flow = out.flow
    assert flow.plan is not None
    downstream = set(flow.plan.descendants(because))
    for name in flow.plan.order:
        if flow.tasks[name].status is TaskStatus.PENDING:
            reason = (
                f'upstream task "{because}" failed'
                if name in downstream
                else f'flow is failing: task "{because}" failed'
            )
            out.emit(TaskSkipped(**out.envelope(), at=out.now, task=name, reason=reason))


def _finish_if_done(out: _Emitter) -> None:
    flow = out.flow
    if flow.unfinished or flow.status.terminal:
        return
    failed = [t.name for t in flow.tasks.values() if t.status is TaskStatus.FAILED]
    if failed:
        out.emit(FlowFailed(**out.envelope(), at=out.now, failed_tasks=sorted(failed)))
    else:
        out.emit(FlowSucceeded(**out.envelope(), at=out.now))


# evolve ---------------------------------------------------------------------------------


def evolve(flow: Flow, event: FlowEvent) -> Flow:
    """The flow after `event`. Events must come in `seq` order."""
    flow = replace(flow, seq=event.seq, updated_at=event.at)
    match event:
        case FlowSubmitted(spec=spec):
            flow_plan = plan(spec, _UNLIMITED)
            tasks = immutables.Map(
                {name: Task(name=name, queue=t.queue) for name, t in flow_plan.tasks.items()}
            )
            return replace(
                flow,
                name=spec.name,
                created_at=event.at,
                plan=flow_plan,
                tasks=tasks,
                unfinished=len(tasks),
            )
        case FlowRejected(errors=errors, name=name):
            return replace(
                flow,
                name=name or "",
                created_at=event.at,
                status=FlowStatus.REJECTED,
                errors=tuple(errors),
            )
        case TaskDispatched(task=name, attempt=attempt):
            task = flow.tasks[name]
            return _with_task(
                flow,
                replace(
                    task,
                    status=TaskStatus.DISPATCHED,
                    attempt=attempt,
                    dispatched_at=event.at,
                    started_at=None,
                    finished_at=None,
                ),
            )
        case TaskStarted(task=name, runner=runner):
            task = replace(
                flow.tasks[name], status=TaskStatus.RUNNING, started_at=event.at, runner=runner
            )
            flow = _with_task(flow, task)
            if flow.status is FlowStatus.PENDING:
                flow = replace(flow, status=FlowStatus.RUNNING)
            return flow
        case TaskSucceeded(task=name, exit_code=code):
            task = replace(
                flow.tasks[name], status=TaskStatus.SUCCEEDED, finished_at=event.at, exit_code=code
            )
            return _with_task(flow, task)
        case TaskFailed(task=name, exit_code=code, error_type=error_type, message=message):
            task = replace(
                flow.tasks[name],
                status=TaskStatus.FAILED,
                finished_at=event.at,
                exit_code=code,
                error_type=error_type,
                error_message=message,
            )
            return replace(_with_task(flow, task), failing=True)
        case TaskSkipped(task=name, reason=reason):
            task = replace(flow.tasks[name], status=TaskStatus.SKIPPED, error_message=reason)
            return _with_task(flow, task)
        case FlowSucceeded():
            return replace(flow, status=FlowStatus.SUCCEEDED)
        case FlowFailed():
            return replace(flow, status=FlowStatus.FAILED)
        case _ as unreachable:
            assert_never(unreachable)


def _with_task(flow: Flow, task: Task) -> Flow:
    before = flow.tasks[task.name].status
    active = flow.active + int(task.status.active) - int(before.active)
    unfinished = flow.unfinished + int(before.terminal) - int(task.status.terminal)
    return replace(
        flow, tasks=flow.tasks.set(task.name, task), active=active, unfinished=unfinished
    )


def fold(flow_id: str, events: list[FlowEvent]) -> Flow:
    flow = Flow(id=flow_id)
    for event in events:
        flow = evolve(flow, event)
    return flow


_UNLIMITED = Limits(max_tasks=1 << 62, max_submit_bytes=1 << 62)
"""Specs already in the log are trusted, whatever today's limits are."""
