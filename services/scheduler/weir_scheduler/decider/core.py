"""`decide(flow, command, now) -> events`: pure and total.

`decide` answers every command, including repeated and stale ones (a report the log
already holds, a timer that already fired, decides nothing), which is what makes every
shell around it idempotent.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TypedDict, assert_never

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
    TaskFailed,
    TaskSkipped,
    TaskSnoozed,
    TaskStarted,
    TaskSucceeded,
    TaskTakenOver,
)
from weir_proto.messages import AttemptFinished, AttemptStarted, ErrorType
from weir_proto.spec import FlowSpec
from weir_proto.status import FlowStatus, TaskStatus

from weir_scheduler.backoff import retry_delay
from weir_scheduler.decider import stepping
from weir_scheduler.decider.commands import (
    DEFAULT_POLICY,
    Cancel,
    Command,
    Deduplicate,
    Expand,
    FireTimer,
    Gather,
    Pause,
    Policy,
    ReadCondition,
    RecordFinished,
    RecordStarted,
    Reject,
    Release,
    Resume,
    Retry,
    Submit,
    TakeOver,
    Update,
)
from weir_scheduler.decider.dispatch import dispatch, dispatch_ready, hand_out
from weir_scheduler.decider.emitter import Emitter
from weir_scheduler.decider.failures import cancel_unstarted, on_final_failure
from weir_scheduler.decider.fanout import decide_fanout
from weir_scheduler.decider.gates import decide_condition
from weir_scheduler.decider.state import FoldedFlow, FoldedTask, flow_outcome
from weir_scheduler.decider.triggers import tolerates_failure


def _stepping(out: Emitter, command: Pause | Resume | Retry | Update) -> None:
    match command:
        case Pause():
            stepping.decide_pause(out, command)
        case Resume():
            stepping.decide_resume(out, command)
        case Retry():
            stepping.decide_retry(out, command)
        case Update():
            stepping.decide_update(out, command)
    if not out.flow.paused:  # a paused flow with nothing left ends at its resume
        _finish_if_done(out)


def decide(
    flow: FoldedFlow, command: Command, now: datetime, policy: Policy = DEFAULT_POLICY
) -> list[FlowEvent]:
    """The events that `command` causes on `flow` (none when it changes nothing)."""
    return decide_and_evolve(flow, command, now, policy)[0]


def decide_and_evolve(
    flow: FoldedFlow, command: Command, now: datetime, policy: Policy = DEFAULT_POLICY
) -> tuple[list[FlowEvent], FoldedFlow]:
    """`decide`, plus the flow with those events applied (deciding folds them in anyway,
    so the shells need not evolve every event a second time)."""
    out = Emitter(flow, now, policy)
    _decide(out, flow, command, now)
    return out.events, out.flow


def _decide(out: Emitter, flow: FoldedFlow, command: Command, now: datetime) -> None:
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
                dispatch_ready(out)
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
            out.emit(_started(out, report, at=report.at))
            dispatch_ready(out)  # the start made room in the flow's dispatch window
        case TakeOver(task=name, attempt=attempt, runner=runner, silent_for=silent_for):
            task = _current_attempt(flow, name, attempt)
            running = task is not None and task.status is TaskStatus.RUNNING
            if not running or task is None or task.runner == runner or flow.stops(name):
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
            if report.started_at is not None and task.status is TaskStatus.DISPATCHED:
                # One report for a short attempt: its start is still logged.
                out.emit(_started(out, report, at=report.started_at))
                task = out.flow.tasks[report.task]
            _attempt_ended(out, task, report)
        case FireTimer(kind="start", attempt=updates):
            if flow.status is not FlowStatus.SCHEDULED or updates != flow.updates:
                return  # not waiting, or a start an update has moved since
            dispatch_ready(out)
            _finish_if_done(out, started=True)  # a rerun may have reused every task
        case FireTimer(kind="retry", task=name, attempt=attempt):
            task = _current_attempt(flow, name, attempt)
            if task is None or task.status is not TaskStatus.RETRYING or flow.stops(name):
                return
            if flow.paused:
                return  # `resume` hands it out
            hand_out(out, task)
        case Release(task=name):
            task = flow.tasks.get(name) if flow.exists else None
            if task is None or task.status is not TaskStatus.QUEUED or flow.stops(name):
                return
            if flow.paused:
                return
            if task.queue not in out.policy.limited_queues:
                return  # held for the flow's dispatch window, which releases it itself
            dispatch(out, task)
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
            return  # `fanout` timers are the shell's: it reads or writes, then decides
        case Expand() | Gather() | ReadCondition() if _before_start(flow, now):
            return  # read again once the flow starts (the shell's timer is due at its start)
        case Expand() | Gather() as answer:
            decide_fanout(out, answer)
            dispatch_ready(out)
            _finish_if_done(out)
        case Pause() | Resume() | Retry() | Update():
            if flow.exists:
                _stepping(out, command)
        case ReadCondition() as read:
            decide_condition(out, read)
            dispatch_ready(out)
            _finish_if_done(out)
        case Cancel(reason=reason):
            if not flow.exists or flow.status.terminal:
                return
            if not flow.halted:
                # A user's first cancel spares an on_exit task yet to end (it runs last, as
                # after fail_fast's); one after that ends it too.
                spares = not flow.user_cancelled and _on_exit_pending(flow)
                out.emit(
                    FlowCancelRequested(
                        **out.envelope(), at=now, reason=reason, spares_on_exit=spares
                    )
                )
            # Again on a cancelling flow: ends what a cancel recorded before this rule left
            # waiting (nothing, for a cancel recorded since).
            spare = out.flow.plan.on_exit if out.flow.spares_on_exit and out.flow.plan else None
            cancel_unstarted(out, out.flow.cancel_reason or reason, spare=spare)
            dispatch_ready(out)
            _finish_if_done(out)
        case _ as unreachable:
            assert_never(unreachable)


def _started(out: Emitter, report: AttemptStarted | AttemptFinished, at: datetime) -> TaskStarted:
    """The `task_started` a runner's report of the attempt's start (or its end) records."""
    return TaskStarted(
        **out.envelope(), at=at, task=report.task, attempt=report.attempt, runner=report.runner
    )


def _start_at(spec: FlowSpec, now: datetime) -> datetime | None:
    if spec.scheduled_at is not None:
        return spec.scheduled_at if spec.scheduled_at > now else None
    if spec.delay:
        return now + timedelta(seconds=spec.delay)
    return None


def _on_exit_pending(flow: FoldedFlow) -> bool:
    """Whether `flow` has started and has an on_exit task that has not ended (a flow
    cancelled before its start time runs nothing, its on_exit task neither)."""
    on_exit = flow.plan.on_exit if flow.plan is not None else None
    if on_exit is None or flow.status is FlowStatus.SCHEDULED:
        return False
    return not flow.tasks[on_exit].status.terminal


def _before_start(flow: FoldedFlow, now: datetime) -> bool:
    """Whether `flow` waits for a start time still ahead: what the shell read for it (a
    rerun's reused outputs can be read at once) must not hand out work before then."""
    return flow.status is FlowStatus.SCHEDULED and flow.start_at is not None and now < flow.start_at


def _current_attempt(flow: FoldedFlow, name: str, attempt: int) -> FoldedTask | None:
    """The task if `attempt` is its current one; stale or unknown reports get None."""
    if not flow.exists or flow.status.terminal:
        return None
    task = flow.tasks.get(name)
    if task is None or task.attempt != attempt:
        return None
    return task


def _attempt_ended(out: Emitter, task: FoldedTask, report: AttemptFinished) -> None:
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
    elif flow.stops(task.name) and (
        not flow.failing or report.error_type in (None, ErrorType.CANCELLED)
    ):
        out.emit(
            TaskCancelled(
                **envelope(),
                at=report.at,
                task=task.name,
                attempt=report.attempt,
                reason=flow.cancel_reason or "flow cancelled",
            )
        )
    elif report.error_type is None and flow.failing and not tolerates_failure(flow.plan, task.name):
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
        failures = len(task.failures) - task.spent + 1
        # A failure under a cancel that stops the task is final: its retry would never be
        # handed out (nor would the flow end while it waits).
        stopping = flow.stops(task.name) or (
            flow.failing and not tolerates_failure(flow.plan, task.name)
        )
        retryable = report.error_type.retryable and not stopping
        if retryable and failures < spec.retry.max_attempts:
            delay = retry_delay(
                spec.retry.backoff, failures, f"{flow.id}/{task.name}/{task.attempt}"
            )
            retry_at = out.now + timedelta(seconds=delay)
            out.emit(TaskAttemptFailed(**envelope(), **_failure(report), retry_at=retry_at))
        else:
            out.emit(TaskFailed(**envelope(), **_failure(report)))
            on_final_failure(out, task.name)
    dispatch_ready(out)
    _finish_if_done(out)


class _Failure(TypedDict):
    at: datetime
    task: str
    attempt: int
    error_type: str
    message: str
    exit_code: int | None


def _failure(report: AttemptFinished) -> _Failure:
    """What `task_attempt_failed` and `task_failed` record of a failed attempt's report."""
    return {
        "at": report.at,
        "task": report.task,
        "attempt": report.attempt,
        "error_type": str(report.error_type),
        "message": report.message,
        "exit_code": report.exit_code,
    }


def _finish_if_done(out: Emitter, started: bool = False) -> None:
    flow = out.flow
    waiting = flow.status is FlowStatus.SCHEDULED and not started
    if flow.unfinished or flow.status.terminal or waiting:
        return
    failed = [t.name for t in flow.tasks.values() if t.status is TaskStatus.FAILED]
    if failed and not (flow.plan is not None and flow_outcome(flow) == "cancelled"):
        out.emit(FlowFailed(**out.envelope(), at=out.now, failed_tasks=sorted(failed)))
    elif flow.cancelling:
        reason = flow.cancel_reason or "cancelled"
        out.emit(FlowCancelled(**out.envelope(), at=out.now, reason=reason))
    else:
        out.emit(FlowSucceeded(**out.envelope(), at=out.now))
