"""The functional core: `decide(flow, command, now) -> events` and `evolve(flow, event) -> flow`.

Both are pure and total. `decide` answers every command, including repeated and stale
ones (a report the log already holds, a timer that already fired, decides nothing), which
is what makes every shell around it idempotent. Flow state is immutable; tasks live in a
persistent map so a 10,000-task flow evolves in O(log n) per event.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Literal, TypedDict, assert_never

import immutables
from weir_proto.errors import SpecError
from weir_proto.events import (
    FlowCancelled,
    FlowCancelRequested,
    FlowDeduplicated,
    FlowEvent,
    FlowFailed,
    FlowRejected,
    FlowSubmitted,
    FlowSucceeded,
    TaskAttemptFailed,
    TaskCancelled,
    TaskDispatched,
    TaskFailed,
    TaskQueued,
    TaskSkipped,
    TaskSnoozed,
    TaskStarted,
    TaskSucceeded,
    TaskTakenOver,
)
from weir_proto.ids import event_id
from weir_proto.messages import AttemptFinished, AttemptStarted, ErrorType, OutputDigest
from weir_proto.spec import FlowSpec
from weir_proto.status import FlowStatus, TaskStatus, flow_status_after

from weir_scheduler.backoff import retry_delay
from weir_scheduler.planner import Limits, Plan, planned


@dataclass(frozen=True, slots=True)
class AttemptFailure:
    attempt: int
    error_type: str
    message: str
    at: datetime


@dataclass(frozen=True, slots=True)
class Task:
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


@dataclass(frozen=True, slots=True)
class Flow:
    """A flow as folded from its events. `seq` 0 means the flow does not exist yet."""

    id: str
    seq: int = 0
    name: str = ""
    status: FlowStatus = FlowStatus.PENDING
    created_at: datetime | None = None
    updated_at: datetime | None = None
    start_at: datetime | None = None
    plan: Plan | None = None
    tasks: immutables.Map[str, Task] = immutables.Map()  # noqa: RUF009 - immutable
    ready: immutables.Map[str, bool] = immutables.Map()  # noqa: RUF009 - immutable
    """Tasks whose dependencies all succeeded and that wait for a slot (max_parallel) or
    for room in the dispatch window."""
    line: immutables.Map[str, tuple[tuple[int, int], ...]] = immutables.Map()  # noqa: RUF009
    """The ready tasks again, per queue, as sorted (priority, position in the spec): the
    next to hand out are a prefix, so a start that frees one window place costs a lookup,
    not a sort of every ready task."""
    blocked: immutables.Map[str, int] = immutables.Map()  # noqa: RUF009 - immutable
    """Per pending task, how many of its dependencies have not succeeded yet (so a fan-in
    of 10,000 costs one decrement per parent, not a scan of every parent)."""
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

    @property
    def exists(self) -> bool:
        return self.seq > 0

    def output_digest(self, output: str) -> OutputDigest | None:
        """What the log recorded for `output` when its task uploaded it (None: nothing, as
        for outputs stored before digests were recorded)."""
        producer = self.plan.producers.get(output) if self.plan is not None else None
        task = self.tasks.get(producer) if producer is not None else None
        if task is None:
            return None
        return next((d for d in task.outputs if d.name == output), None)


# Commands -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Submit:
    spec: FlowSpec
    plan: Plan
    rerun_of: str | None = None
    reused: tuple[str, ...] = ()
    reused_outputs: tuple[OutputDigest, ...] = ()
    """The digests `rerun_of` recorded for the outputs of the `reused` tasks."""


@dataclass(frozen=True, slots=True)
class Reject:
    errors: tuple[SpecError, ...]
    name: str | None = None


@dataclass(frozen=True, slots=True)
class Deduplicate:
    existing: str
    key: str
    name: str | None = None


@dataclass(frozen=True, slots=True)
class RecordStarted:
    report: AttemptStarted


@dataclass(frozen=True, slots=True)
class RecordFinished:
    report: AttemptFinished


@dataclass(frozen=True, slots=True)
class TakeOver:
    """`runner`, which proved it holds the attempt's dispatch (its token), claims a running
    attempt whose runner has been silent for `silent_for` seconds. The shell builds it only
    after both checks (provenance.py); deciding it only records the change of runner."""

    task: str
    attempt: int
    runner: str
    silent_for: float


TimerKind = Literal["start", "retry", "deadline", "lease"]


@dataclass(frozen=True, slots=True)
class FireTimer:
    """A due time kept in the timers projection has passed."""

    kind: TimerKind
    task: str = ""
    attempt: int = 0


@dataclass(frozen=True, slots=True)
class Release:
    """A limited queue has room: dispatch this queued task."""

    task: str


@dataclass(frozen=True, slots=True)
class Cancel:
    reason: str = "cancelled by request"


Command = (
    Submit
    | Reject
    | Deduplicate
    | RecordStarted
    | RecordFinished
    | TakeOver
    | FireTimer
    | Cancel
    | Release
)


@dataclass(frozen=True, slots=True)
class Policy:
    """Settings of the deployment that decisions depend on."""

    limited_queues: frozenset[str] = frozenset()
    """Queues with a global concurrency limit: their tasks are queued, then released by the
    QueueDispatcher in priority order as capacity frees up."""
    dispatch_window: int | None = None
    """Dispatches per flow and (unlimited) queue that no runner has started yet. Runners
    take dispatches in order, so another flow's task waits behind at most this many of
    each flow's; the flow's other ready tasks wait here and go out as its attempts start.
    None: no window."""


DEFAULT_POLICY = Policy()


# decide ---------------------------------------------------------------------------------


class _Envelope(TypedDict):
    id: str
    flow_id: str
    seq: int


class _Emitter:
    """Numbers events and folds each into the state so later decisions see earlier ones."""

    def __init__(self, flow: Flow, now: datetime, policy: Policy) -> None:
        self.flow = flow
        self.now = now
        self.policy = policy
        self.events: list[FlowEvent] = []

    def envelope(self) -> _Envelope:
        seq = self.flow.seq + 1
        return {"id": event_id(self.flow.id, seq), "flow_id": self.flow.id, "seq": seq}

    def emit(self, event: FlowEvent) -> None:
        self.events.append(event)
        self.flow = evolve(self.flow, event)


def decide(
    flow: Flow, command: Command, now: datetime, policy: Policy = DEFAULT_POLICY
) -> list[FlowEvent]:
    """The events that `command` causes on `flow` (none when it changes nothing)."""
    return decide_and_evolve(flow, command, now, policy)[0]


def decide_and_evolve(
    flow: Flow, command: Command, now: datetime, policy: Policy = DEFAULT_POLICY
) -> tuple[list[FlowEvent], Flow]:
    """`decide`, plus the flow with those events applied (deciding folds them in anyway,
    so the shells need not evolve every event a second time)."""
    out = _Emitter(flow, now, policy)
    _decide(out, flow, command, now)
    return out.events, out.flow


def _decide(out: _Emitter, flow: Flow, command: Command, now: datetime) -> None:
    match command:
        case Submit(spec=spec, rerun_of=rerun_of, reused=reused, reused_outputs=digests):
            if flow.exists:
                return
            start_at = _start_at(spec, now)
            out.emit(
                FlowSubmitted(
                    **out.envelope(),
                    at=now,
                    spec=spec,
                    start_at=start_at,
                    rerun_of=rerun_of,
                    reused=list(reused),
                    reused_outputs=list(digests),
                )
            )
            if start_at is None:
                _dispatch_ready(out)
                _finish_if_done(out)
        case Reject(errors=errors, name=name):
            if flow.exists:
                return
            out.emit(FlowRejected(**out.envelope(), at=now, errors=list(errors), name=name))
        case Deduplicate(existing=existing, key=key, name=name):
            if flow.exists:
                return
            out.emit(
                FlowDeduplicated(**out.envelope(), at=now, existing=existing, key=key, name=name)
            )
        case RecordStarted(report=report):
            task = _current_attempt(flow, report.task, report.attempt)
            if task is None or task.status is not TaskStatus.DISPATCHED:
                return
            out.emit(
                TaskStarted(
                    **out.envelope(),
                    at=report.at,
                    task=report.task,
                    attempt=report.attempt,
                    runner=report.runner,
                )
            )
            _dispatch_ready(out)  # the start made room in the flow's dispatch window
        case TakeOver(task=name, attempt=attempt, runner=runner, silent_for=silent_for):
            task = _current_attempt(flow, name, attempt)
            running = task is not None and task.status is TaskStatus.RUNNING
            if not running or task is None or task.runner == runner or flow.cancelling:
                return  # a cancelling flow's attempts end; none moves to another runner
            out.emit(
                TaskTakenOver(
                    **out.envelope(),
                    at=now,
                    task=name,
                    attempt=attempt,
                    runner=runner,
                    previous_runner=task.runner or "",
                    silent_for=silent_for,
                )
            )
        case RecordFinished(report=report):
            task = _current_attempt(flow, report.task, report.attempt)
            if task is None or not task.status.active:
                return
            _attempt_ended(out, task, report)
        case FireTimer(kind="start"):
            if flow.status is not FlowStatus.SCHEDULED:
                return
            _dispatch_ready(out)
            _finish_if_done(out)
        case FireTimer(kind="retry", task=name, attempt=attempt):
            task = _current_attempt(flow, name, attempt)
            if task is None or task.status is not TaskStatus.RETRYING or flow.cancelling:
                return
            _hand_out(out, task)
        case Release(task=name):
            task = flow.tasks.get(name) if flow.exists else None
            if task is None or task.status is not TaskStatus.QUEUED or flow.cancelling:
                return
            _dispatch(out, task)
        case FireTimer(kind="deadline" | "lease" as kind, task=name, attempt=attempt):
            task = _current_attempt(flow, name, attempt)
            if task is None or not task.status.active:
                return
            why = (
                "its runner did not report within the task's timeout"
                if kind == "deadline"
                else "its runner stopped sending heartbeats"
            )
            lost = AttemptFinished(
                flow_id=flow.id,
                task=name,
                attempt=attempt,
                runner=task.runner or "",
                token="",  # the scheduler's own verdict: no runner reported it
                at=now,
                error_type=ErrorType.LOST,
                message=f'task "{name}" attempt {attempt} was lost: {why}',
            )
            _attempt_ended(out, task, lost)
        case FireTimer():
            return
        case Cancel(reason=reason):
            if not flow.exists or flow.status.terminal:
                return
            if not flow.cancelling:
                out.emit(FlowCancelRequested(**out.envelope(), at=now, reason=reason))
            # Again on a cancelling flow: ends what a cancel recorded before this rule left
            # waiting (nothing, for a cancel recorded since).
            _cancel_unstarted(out, out.flow.cancel_reason or reason)
            _finish_if_done(out)
        case _ as unreachable:
            assert_never(unreachable)


def _start_at(spec: FlowSpec, now: datetime) -> datetime | None:
    if spec.scheduled_at is not None:
        return spec.scheduled_at if spec.scheduled_at > now else None
    if spec.delay:
        return now + timedelta(seconds=spec.delay)
    return None


def _current_attempt(flow: Flow, name: str, attempt: int) -> Task | None:
    """The task if `attempt` is its current one; stale or unknown reports get None."""
    if not flow.exists or flow.status.terminal:
        return None
    task = flow.tasks.get(name)
    if task is None or task.attempt != attempt:
        return None
    return task


def _attempt_ended(out: _Emitter, task: Task, report: AttemptFinished) -> None:
    flow = out.flow
    assert flow.plan is not None
    envelope = out.envelope
    if report.error_type is None and report.snooze_seconds is None:
        declared = {o.name for o in flow.plan.tasks[task.name].outputs}
        out.emit(
            TaskSucceeded(
                **envelope(),
                at=report.at,
                task=task.name,
                attempt=report.attempt,
                exit_code=report.exit_code or 0,
                outputs=[d for d in report.outputs if d.name in declared],
            )
        )
    elif flow.cancelling and (not flow.failing or report.error_type in (None, ErrorType.CANCELLED)):
        out.emit(
            TaskCancelled(
                **envelope(),
                at=report.at,
                task=task.name,
                attempt=report.attempt,
                reason=flow.cancel_reason or "flow cancelled",
            )
        )
    elif report.error_type is None and flow.failing:
        reason = "flow is failing: a snoozed task does not run again"
        out.emit(TaskSkipped(**envelope(), at=report.at, task=task.name, reason=reason))
    elif report.error_type is None:
        assert report.snooze_seconds is not None
        until = out.now + timedelta(seconds=max(report.snooze_seconds, 0.0))
        out.emit(
            TaskSnoozed(
                **envelope(), at=report.at, task=task.name, attempt=report.attempt, until=until
            )
        )
    else:
        spec = flow.plan.tasks[task.name]
        assert spec.retry is not None
        failures = len(task.failures) + 1
        retryable = report.error_type.retryable and not flow.failing
        if retryable and failures < spec.retry.max_attempts:
            delay = retry_delay(
                spec.retry.backoff, failures, f"{flow.id}/{task.name}/{task.attempt}"
            )
            out.emit(
                TaskAttemptFailed(
                    **envelope(),
                    at=report.at,
                    task=task.name,
                    attempt=report.attempt,
                    error_type=str(report.error_type),
                    message=report.message,
                    exit_code=report.exit_code,
                    retry_at=out.now + timedelta(seconds=delay),
                )
            )
        else:
            out.emit(
                TaskFailed(
                    **envelope(),
                    at=report.at,
                    task=task.name,
                    attempt=report.attempt,
                    error_type=str(report.error_type),
                    message=report.message,
                    exit_code=report.exit_code,
                )
            )
            _on_final_failure(out, task.name)
    _dispatch_ready(out)
    _finish_if_done(out)


def _on_final_failure(out: _Emitter, failed: str) -> None:
    """No new work starts: every task not handed out is skipped; with fail_fast, running
    siblings are cancelled too."""
    flow = out.flow
    assert flow.plan is not None
    downstream = set(flow.plan.descendants(failed))
    for name in flow.plan.order:
        if flow.tasks[name].status in _WAITING:
            reason = (
                f'upstream task "{failed}" failed'
                if name in downstream
                else f'flow is failing: task "{failed}" failed'
            )
            out.emit(TaskSkipped(**out.envelope(), at=out.now, task=name, reason=reason))
    if flow.plan.spec.fail_fast and out.flow.active and not out.flow.cancelling:
        reason = f'fail_fast: task "{failed}" failed'
        out.emit(FlowCancelRequested(**out.envelope(), at=out.now, reason=reason, fail_fast=True))
        _cancel_unstarted(out, reason)


def _cancel_unstarted(out: _Emitter, reason: str) -> None:
    """End every task that has not started, at once: waiting ones, and attempts handed to a
    runner that has not reported their start. Those may never start (a cancel purges the
    flow's dispatches, runners drop attempts of flows they saw cancelled, and nobody may
    serve their queue), so waiting for their report could wait forever and hold their
    queue's slot. A start or finish reported for them later is stale and ignored; a runner
    that did start one kills it when it sees the cancel."""
    flow = out.flow
    assert flow.plan is not None
    for name in flow.plan.order:
        task = flow.tasks[name]
        if task.status in _WAITING:
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


_WAITING = (TaskStatus.PENDING, TaskStatus.RETRYING, TaskStatus.QUEUED)
"""Not handed to a runner and not finished: what a failure skips and a cancel cancels."""


def _dispatch_ready(out: _Emitter) -> None:
    """Hand out waiting work, highest priority first: first the tasks queued for room in the
    dispatch window (they hold their max_parallel slot already), then ready tasks as far as
    max_parallel and the window allow. A ready task whose queue's window is full stays
    ready: the start of one of the flow's attempts there calls this again."""
    flow, plan = out.flow, out.flow.plan
    assert plan is not None
    if flow.failing or flow.cancelling:
        return
    positions = plan.positions

    def order(name: str) -> tuple[int, int]:
        return (flow.tasks[name].priority, positions[name])

    for queue, names in flow.held.items():
        room = _window_room(out, queue)
        if queue not in out.policy.limited_queues and room > 0:
            for name in sorted(names, key=order)[:room]:
                _dispatch(out, out.flow.tasks[name])
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
        _hand_out(out, out.flow.tasks[plan.spec.tasks[position].name])


def _window_room(out: _Emitter, queue: str) -> int:
    """How many more attempts the flow may hand to runners of `queue` now."""
    window = out.policy.dispatch_window
    if window is None:
        return 1 << 62
    return window - out.flow.unstarted.get(queue, 0)


def _hand_out(out: _Emitter, task: Task) -> None:
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
        _dispatch(out, task)


def _dispatch(out: _Emitter, task: Task) -> None:
    out.emit(
        TaskDispatched(
            **out.envelope(), at=out.now, task=task.name, attempt=task.attempt + 1, queue=task.queue
        )
    )


def _finish_if_done(out: _Emitter) -> None:
    flow = out.flow
    if flow.unfinished or flow.status.terminal or flow.status is FlowStatus.SCHEDULED:
        return
    failed = [t.name for t in flow.tasks.values() if t.status is TaskStatus.FAILED]
    if failed:
        out.emit(FlowFailed(**out.envelope(), at=out.now, failed_tasks=sorted(failed)))
    elif flow.cancelling:
        reason = flow.cancel_reason or "cancelled"
        out.emit(FlowCancelled(**out.envelope(), at=out.now, reason=reason))
    else:
        out.emit(FlowSucceeded(**out.envelope(), at=out.now))


# evolve ---------------------------------------------------------------------------------


def evolve(flow: Flow, event: FlowEvent) -> Flow:
    """The flow after `event`. Events must come in `seq` order."""
    status = flow_status_after(flow.status, event)
    flow = replace(flow, seq=event.seq, updated_at=event.at, status=status)
    match event:
        case FlowSubmitted(spec=spec, start_at=start_at, rerun_of=rerun_of, reused=reused):
            flow_plan = planned(spec, _UNLIMITED)
            done = frozenset(reused)
            carried: dict[str, tuple[OutputDigest, ...]] = {}
            for digest in event.reused_outputs:
                producer = flow_plan.producers.get(digest.name)
                if producer in done:
                    carried[producer] = (*carried.get(producer, ()), digest)
            tasks = immutables.Map(
                {
                    name: Task(
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
            ready = immutables.Map({name: True for name, n in blocked.items() if n == 0})
            return replace(
                flow,
                name=spec.name,
                created_at=event.at,
                start_at=start_at,
                plan=flow_plan,
                tasks=tasks,
                ready=ready,
                line=_line_of(ready, tasks, flow_plan.positions),
                blocked=blocked,
                unfinished=len(tasks) - len(done),
                rerun_of=rerun_of,
                reused=done,
            )
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
            return _mark_children_ready(_with_task(flow, task), name)
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
                    AttemptFailure(attempt, error_type, message, event.at),
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
                    AttemptFailure(attempt, error_type, message, event.at),
                ),
            )
            return replace(_with_task(flow, task), failing=True)
        case TaskSkipped(task=name, reason=reason):
            task = replace(
                flow.tasks[name], status=TaskStatus.SKIPPED, error_message=reason, retry_at=None
            )
            return _with_task(flow, task)
        case TaskCancelled(task=name, reason=reason):
            task = replace(
                flow.tasks[name],
                status=TaskStatus.CANCELLED,
                error_message=reason,
                retry_at=None,
                finished_at=event.at,
            )
            return _with_task(flow, task)
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


def with_token_digest(flow: Flow, dispatched: TaskDispatched) -> Flow:
    """`flow` as evolving `dispatched` would have left it, given that it was decided without
    its token digest. Tokens are random, so the store mints them after deciding (`decide`
    stays pure) and puts their digests into the events it appends and into the state."""
    task = flow.tasks.get(dispatched.task) if flow.exists else None
    if task is None or task.attempt != dispatched.attempt:
        return flow  # the attempt has moved on within the same decision
    sealed = replace(task, token_digest=dispatched.token_digest)
    return replace(flow, tasks=flow.tasks.set(task.name, sealed))


def _with_task(flow: Flow, task: Task) -> Flow:
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


def _mark_children_ready(flow: Flow, name: str) -> Flow:
    assert flow.plan is not None
    ready, blocked, line = flow.ready, flow.blocked, flow.line
    open_for_work = not (flow.failing or flow.cancelling)
    for child in flow.plan.dependents[name]:
        left = blocked.get(child, 0) - 1
        blocked = blocked.set(child, left)
        if left == 0 and open_for_work and flow.tasks[child].status is TaskStatus.PENDING:
            ready = ready.set(child, True)
            task = flow.tasks[child]
            place = (task.priority, flow.plan.positions[child])
            waiting = line.get(task.queue, ())
            at = bisect_left(waiting, place)
            line = line.set(task.queue, (*waiting[:at], place, *waiting[at:]))
    return replace(flow, ready=ready, blocked=blocked, line=line)


def _unready(flow: Flow, name: str) -> Flow:
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
    ready: immutables.Map[str, bool],
    tasks: immutables.Map[str, Task],
    positions: Mapping[str, int],
) -> immutables.Map[str, tuple[tuple[int, int], ...]]:
    by_queue: dict[str, list[tuple[int, int]]] = {}
    for name in ready:
        task = tasks[name]
        by_queue.setdefault(task.queue, []).append((task.priority, positions[name]))
    return immutables.Map({queue: tuple(sorted(places)) for queue, places in by_queue.items()})


def fold(flow_id: str, events: list[FlowEvent]) -> Flow:
    flow = Flow(id=flow_id)
    for event in events:
        flow = evolve(flow, event)
    return flow


_UNLIMITED = Limits(max_tasks=1 << 62, max_submit_bytes=1 << 62)
"""Specs already in the log are trusted, whatever today's limits are."""
