"""A flow's timeline: each task attempt with its times and state, the tasks that never ran,
the decisions on the flow, and the flow's status. `weir trace` draws it; the long spans are
emitted from it.

The timeline is a reading of the scheduler's own fold, not a second one: the events go
through the decider's `evolve` one by one, and after each, the state of the task it touched
(`FoldedTask`) is read into the record of that task's current attempt, and the flow's name,
status and submit time are read off the folded flow. So `weir trace`, the long spans and
`weir show` agree by construction, with the proto's status types.

The scheduler keeps only each task's current attempt. What only the log tells is kept here,
as a thin layer over the fold: the record of every attempt once its task has moved on to the
next, when each skip happened and when the flow ended, and the decisions on the flow (pause,
resume, update, retry, condition read, expansion, cancel) that start or end no attempt.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING

from weir_proto import events as ev
from weir_proto import subjects
from weir_proto.events import FlowEvent
from weir_proto.status import AttemptState, FlowStatus, TaskStatus

if TYPE_CHECKING:
    from weir_scheduler.decider import FoldedTask


@dataclass(frozen=True)
class Attempt:
    """One task attempt: its task's state in the scheduler while the attempt was current."""

    flow_id: str
    task: str
    attempt: int
    queue: str = subjects.DEFAULT_QUEUE
    dispatched_at: datetime | None = None
    started_at: datetime | None = None
    """When a runner first reported it started (a take-over does not move it)."""
    finished_at: datetime | None = None
    status: AttemptState = AttemptState.DISPATCHED
    exit_code: int | None = None
    error_type: str | None = None
    message: str = ""
    """Why it failed, was cancelled or snoozed."""
    runner: str = ""

    @property
    def finished(self) -> bool:
        return self.status.ended

    @property
    def queue_wait_s(self) -> float | None:
        """Dispatched until started (or until it failed without starting)."""
        end = self.started_at or self.finished_at
        if self.dispatched_at is None or end is None:
            return None
        return (end - self.dispatched_at).total_seconds()

    @property
    def run_s(self) -> float | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()


@dataclass(frozen=True)
class Skip:
    """A task that ended without an attempt of its own running: skipped, or cancelled
    before it was handed out (`reason` then starts with `cancelled: `)."""

    task: str
    reason: str
    at: datetime


@dataclass(frozen=True)
class Decision:
    """A decision on the flow that starts or ends no attempt of its own: a pause, a resume,
    an update, an operator's retry, a condition read, a map's expansion, a cancel."""

    kind: str
    """The event's type (`flow_paused`, `task_retried`, ...)."""
    text: str
    at: datetime
    task: str = ""


@dataclass(frozen=True)
class FlowTimeline:
    flow_id: str
    name: str = ""
    status: FlowStatus = FlowStatus.PENDING
    submitted_at: datetime | None = None
    finished_at: datetime | None = None
    attempts: tuple[Attempt, ...] = ()
    """In order of dispatch."""
    skipped: tuple[Skip, ...] = ()
    decisions: tuple[Decision, ...] = ()
    """In log order."""

    @property
    def finished(self) -> bool:
        return self.status.terminal

    def attempt(self, task: str, attempt: int) -> Attempt | None:
        return next((a for a in self.attempts if (a.task, a.attempt) == (task, attempt)), None)


def flow_timeline(events: Iterable[FlowEvent]) -> FlowTimeline:
    """Fold a flow's events (its log, in `seq` order, as the scheduler wrote it) with the
    decider's `evolve` into its attempts, skips, decisions and status."""
    # Imported here: the runner and every task process import `weir.telemetry`, and only a
    # timeline needs the scheduler's core.
    from weir_scheduler.decider import FoldedFlow, evolve

    events = list(events)
    if not events:
        raise ValueError("a flow timeline needs at least one event")
    flow = FoldedFlow(id=events[0].flow_id)
    attempts: dict[tuple[str, int], Attempt] = {}
    skipped: list[Skip] = []
    decisions: list[Decision] = []
    finished_at: datetime | None = None
    for event in events:
        before = flow
        flow = evolve(flow, event)
        decided = _decision(event)
        if decided is not None:
            decisions.append(decided)
        name = _task_of(event)
        if name is not None:
            after = flow.tasks[name]
            was = before.tasks.get(name)
            if after.status.active or (was is not None and was.status.active):
                key = (name, after.attempt)
                attempts[key] = _attempt(flow.id, after, attempts.get(key), event.at)
            elif after.status in _NEVER_RAN:
                skipped.append(_skip(after, event.at))
        if isinstance(event, ev.TaskRetried | ev.FlowUpdated):
            # A retry or an update plans tasks again: those are no longer skipped, and an
            # attempt of theirs still handed out no longer counts.
            skipped = [s for s in skipped if _still_skipped(flow.tasks.get(s.task))]
            for task in before.tasks.values() if before.plan is not None else ():
                key = (task.name, task.attempt)
                if task.status.active and not flow.tasks[task.name].status.active:
                    attempts[key] = _dropped(attempts[key], event.at)
        finished_at = (finished_at or event.at) if flow.status.terminal else None
    return FlowTimeline(
        flow_id=flow.id,
        name=flow.name,
        status=flow.status,
        submitted_at=flow.created_at,
        finished_at=finished_at,
        attempts=tuple(attempts.values()),
        skipped=tuple(skipped),
        decisions=tuple(decisions),
    )


_NEVER_RAN = (TaskStatus.SKIPPED, TaskStatus.CANCELLED)
"""How a task that has no attempt running ends (a skip, or a cancel before its dispatch)."""


def _task_of(event: FlowEvent) -> str | None:
    """The task whose attempt `event` begins, moves or ends, or which it skips (None for
    any other event)."""
    match event:
        case (
            ev.TaskDispatched(task=name)
            | ev.TaskStarted(task=name)
            | ev.TaskTakenOver(task=name)
            | ev.TaskSucceeded(task=name)
            | ev.TaskAttemptFailed(task=name)
            | ev.TaskSnoozed(task=name)
            | ev.TaskFailed(task=name)
            | ev.TaskCancelled(task=name)
            | ev.TaskSkipped(task=name)
        ):
            return name
    return None


def _attempt(flow_id: str, task: FoldedTask, known: Attempt | None, at: datetime) -> Attempt:
    """The record of `task`'s current attempt, read off the task's state just after an
    event that began, moved or ended the attempt (`known`: its record so far).

    The state holds what the event that ended the attempt set: the exit code of a success
    or a failure, the error of a failure, the reason of a cancel or a snooze (the rest is
    what an earlier attempt left)."""
    state = _attempt_state(task)
    result = state in (AttemptState.SUCCEEDED, AttemptState.FAILED)
    reason = state.ended and state is not AttemptState.SUCCEEDED
    return Attempt(
        flow_id=flow_id,
        task=task.name,
        attempt=task.attempt,
        queue=task.queue,
        dispatched_at=task.dispatched_at,
        started_at=known.started_at if known and known.started_at else task.started_at,
        finished_at=(task.finished_at or at) if state.ended else None,
        status=state,
        exit_code=task.exit_code if result else None,
        error_type=task.error_type if state is AttemptState.FAILED else None,
        message=(task.error_message or "") if reason else "",
        runner=task.runner or "",
    )


def _attempt_state(task: FoldedTask) -> AttemptState:
    """The state of `task`'s current attempt, from the task's status."""
    match task.status:
        case TaskStatus.DISPATCHED:
            return AttemptState.DISPATCHED
        case TaskStatus.RUNNING:
            return AttemptState.RUNNING
        case TaskStatus.SUCCEEDED:
            return AttemptState.SUCCEEDED
        case TaskStatus.FAILED:
            return AttemptState.FAILED
        case TaskStatus.CANCELLED:
            return AttemptState.CANCELLED
        case TaskStatus.RETRYING if task.failures and task.failures[-1].attempt == task.attempt:
            return AttemptState.FAILED  # and another attempt is due
        case TaskStatus.RETRYING | TaskStatus.SKIPPED:
            # A snooze; or one that came while the flow was failing, which skips the task.
            return AttemptState.SNOOZED
        case TaskStatus.PENDING | TaskStatus.QUEUED:
            raise ValueError(f"task {task.name!r} has no attempt handed out")


def _dropped(attempt: Attempt, at: datetime) -> Attempt:
    """`attempt`, still handed out when a retry planned its task again: its reports no
    longer count, so it ends there as cancelled."""
    message = "planned again by a retry while it was handed out"
    return replace(attempt, status=AttemptState.CANCELLED, finished_at=at, message=message)


def _skip(task: FoldedTask, at: datetime) -> Skip:
    reason = task.error_message or ""
    if task.status is TaskStatus.CANCELLED:
        reason = f"cancelled: {reason}"
    return Skip(task.name, reason, at)


def _still_skipped(task: FoldedTask | None) -> bool:
    return task is not None and task.status in _NEVER_RAN


def _decision(event: FlowEvent) -> Decision | None:
    """What `event` decided, when it is a decision of its own (else None)."""
    kind = ev.event_type(event)
    match event:
        case ev.FlowPaused(reason=reason, at=at):
            return Decision(kind, f"paused: {reason}" if reason else "paused", at)
        case ev.FlowResumed(status=status, at=at):
            return Decision(kind, f"resumed ({status})", at)
        case ev.FlowUpdated(changed=changed, at=at):
            return Decision(kind, f"updated: {', '.join(changed) or 'nothing'}", at)
        case ev.TaskRetried(task=task, tasks=again, downstream=downstream, at=at):
            shown = ", ".join(again[:10]) + (
                f" and {len(again) - 10} more" if len(again) > 10 else ""
            )
            how = " with downstream" if downstream else ""
            return Decision(kind, f"retried {task}{how}: planned again {shown}", at, task)
        case ev.TaskConditionRead(task=task, values=values, at=at):
            read = ", ".join(f"{name}={value!r}" for name, value in sorted(values.items()))
            return Decision(kind, f"condition of {task} read: {read or 'nothing'}", at, task)
        case ev.TaskExpanded(task=task, count=count, at=at):
            return Decision(kind, f"{task} expanded into {count:,} instances", at, task)
        case ev.FlowCancelRequested(reason=reason, fail_fast=True, at=at):
            return Decision(kind, reason or "fail_fast", at)  # `fail_fast: task "b" failed`
        case ev.FlowCancelRequested(reason=reason, at=at):
            return Decision(
                kind, f"cancel requested: {reason}" if reason else "cancel requested", at
            )
    return None
