"""A flow's timeline folded from its events: each task attempt with its times and state,
the tasks that never ran, and the flow's status. `weir trace` draws it; the long spans are
emitted from it.

The scheduler keeps only each task's current attempt; the timeline keeps every attempt.
Statuses are the proto's, and the flow's moves by the same rule as the scheduler's state
(`flow_status_after`), so `weir trace` and `weir show` agree on it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import assert_never

from weir_proto import events as ev
from weir_proto import subjects
from weir_proto.events import FlowEvent
from weir_proto.status import AttemptState, FlowStatus, flow_status_after


@dataclass(frozen=True)
class Attempt:
    """One task attempt as the events tell it (the scheduler's task state has the same facts)."""

    flow_id: str
    task: str
    attempt: int
    queue: str = subjects.DEFAULT_QUEUE
    dispatched_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    status: AttemptState = AttemptState.DISPATCHED
    exit_code: int | None = None
    error_type: str | None = None
    message: str = ""
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


@dataclass
class _Builder:
    timeline: FlowTimeline
    attempts: dict[tuple[str, int], Attempt] = field(default_factory=dict)

    def update(self, task: str, attempt: int, **changes: object) -> None:
        key = (task, attempt)
        current = self.attempts.get(key) or Attempt(self.timeline.flow_id, task, attempt)
        self.attempts[key] = replace(current, **changes)  # type: ignore[arg-type]


def flow_timeline(events: Iterable[FlowEvent]) -> FlowTimeline:
    """Fold a flow's events (in `seq` order) into its attempts, skips and status."""
    events = list(events)
    if not events:
        raise ValueError("a flow timeline needs at least one event")
    b = _Builder(FlowTimeline(events[0].flow_id))
    t = b.timeline
    skipped: list[Skip] = []
    decisions: list[Decision] = []
    for event in events:
        t = replace(t, status=flow_status_after(t.status, event))
        decided = _decision(event)
        if decided is not None:
            decisions.append(decided)
        match event:
            case ev.FlowSubmitted(spec=spec, at=at):
                t = replace(t, name=spec.name, submitted_at=at)
            case ev.FlowRejected(name=name, at=at):
                t = replace(
                    t,
                    name=name or t.name,
                    submitted_at=t.submitted_at or at,
                    finished_at=at,
                )
            case ev.TaskDispatched(task=task, attempt=n, queue=queue, at=at):
                b.update(task, n, queue=queue, dispatched_at=at, status=AttemptState.DISPATCHED)
            case ev.TaskStarted(task=task, attempt=n, runner=runner, at=at):
                b.update(task, n, started_at=at, runner=runner, status=AttemptState.RUNNING)
            case ev.TaskTakenOver(task=task, attempt=n, runner=runner):
                b.update(task, n, runner=runner)  # the attempt runs on, on another runner
            case ev.TaskConditionRead():
                pass  # what a condition read; its verdict shows as a start or a skip
            case ev.TaskExpanded() | ev.TaskSucceeded(attempt=0) | ev.TaskFailed(attempt=0):
                pass  # a mapped task: its instances NAME[i] are the attempts
            case ev.TaskSucceeded(task=task, attempt=n, exit_code=code, at=at):
                b.update(task, n, finished_at=at, exit_code=code, status=AttemptState.SUCCEEDED)
            case (
                ev.TaskFailed(task=task, attempt=n, at=at)
                | ev.TaskAttemptFailed(task=task, attempt=n, at=at)
            ):
                # TaskAttemptFailed: this attempt failed and another is due (a retry).
                b.update(
                    task,
                    n,
                    finished_at=at,
                    exit_code=event.exit_code,
                    error_type=event.error_type,
                    message=event.message,
                    status=AttemptState.FAILED,
                )
            case ev.TaskSnoozed(task=task, attempt=n, at=at):
                b.update(task, n, finished_at=at, status=AttemptState.SNOOZED)
            case ev.TaskCancelled(task=task, attempt=n, reason=reason, at=at):
                if (task, n) in b.attempts and not b.attempts[task, n].finished:
                    b.update(task, n, finished_at=at, status=AttemptState.CANCELLED, message=reason)
                else:
                    skipped.append(Skip(task, f"cancelled: {reason}", at))
            case ev.TaskSkipped(task=task, reason=reason, at=at):
                skipped.append(Skip(task, reason, at))
            case ev.FlowSucceeded(at=at) | ev.FlowFailed(at=at) | ev.FlowCancelled(at=at):
                t = replace(t, finished_at=at)
            case ev.FlowCancelRequested():
                pass  # the attempts' own events say when they were stopped
            case ev.TaskQueued() | ev.FlowPaused() | ev.FlowResumed():
                pass  # no attempt begins or ends; a queued one begins at its dispatch
            case ev.TaskRetried(tasks=again):
                # `weir retry`: the flow runs on; what it skipped so far is planned again.
                t = replace(t, finished_at=None)
                skipped = [skip for skip in skipped if skip.task not in again]
            case ev.FlowUpdated(spec=spec):
                t = replace(t, name=spec.name)
            case ev.FlowDeduplicated(name=name, at=at):
                t = replace(
                    t,
                    name=name or t.name,
                    submitted_at=t.submitted_at or at,
                    finished_at=at,
                )
            case _ as unreachable:
                assert_never(unreachable)
    return replace(
        t,
        attempts=tuple(b.attempts.values()),
        skipped=tuple(skipped),
        decisions=tuple(decisions),
    )


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
