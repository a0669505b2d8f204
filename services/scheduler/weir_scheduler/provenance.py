"""Where a runner's report comes from: attempt tokens, and the check every report passes.

Each dispatched attempt gets a random token (`new_attempt_token`). It travels only in the
dispatch message; the `task_dispatched` event, which submitters can read, keeps its digest.
A status report or heartbeat counts only when it echoes the token of the attempt it names,
names the flow of the subject it came on, and comes from the runner that started the
attempt. NATS permissions decide who may publish a report at all; this decides whether a
report is about an attempt its sender really holds.

The token authenticates "a holder of the dispatch": every runner of the queue may read the
dispatch stream, so binding to the runner recorded in `task_started` narrows it further.

Takeover: when a runner dies mid-attempt, JetStream hands its dispatch to another runner after
`WEIR_DISPATCH_ACK_WAIT` of silence. That runner holds the token but has another name. Its
`started` report (or its heartbeat) on the attempt claims it, and the claim is granted
(`task_taken_over`) only when the attempt's runner has not been heard from about it for
`takeover_after` seconds (15 with the defaults, well under `WEIR_LEASE`'s 60: a lease that
lapses first ends the attempt `lost`). A live runner heartbeats every
`WEIR_HEARTBEAT_INTERVAL`, so holding the token is not enough to take an attempt from a
runner that is alive.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from typing import Literal

from weir_proto import subjects
from weir_proto.messages import AttemptFinished, AttemptStarted, AttemptStatus

from weir_scheduler.decider import FoldedFlow

security_log = logging.getLogger("weir.security")

TOKEN_BYTES = 32

Refusal = Literal[
    "subject names another flow",
    "no attempt token",
    "attempt was dispatched without a token",
    "wrong attempt token",
    "another runner took the attempt",
    "the attempt's runner is alive",
]
"""Why a report about the current attempt is refused (it changes nothing)."""


def new_attempt_token() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


def token_digest(token: str) -> str:
    """What the log keeps of a token: its hex SHA-256."""
    return hashlib.sha256(token.encode()).hexdigest()


def subject_refusal(report: AttemptStatus, subject: str) -> Refusal | None:
    """A report must name the flow of the subject it was published on: runners publish on
    `weir.status.<flow_id>`, so permissions can be scoped per flow."""
    if subject != subjects.status(report.flow_id):
        return "subject names another flow"
    return None


def report_refusal(flow: FoldedFlow, report: AttemptStatus) -> Refusal | None:
    """Why `report` about an attempt of `flow` must not count, or None.

    A report about an attempt that is not the task's current one is not refused here: it is
    stale (a late or replayed report of an earlier attempt) and `decide` ignores it.
    """
    task = flow.tasks.get(report.task) if flow.exists else None
    if task is None or task.attempt != report.attempt or flow.status.terminal:
        return None
    return attempt_refusal(task.token_digest, task.runner, report.token, report.runner)


def attempt_refusal(
    expected_digest: str, started_by: str | None, token: str, runner: str
) -> Refusal | None:
    """Why a message naming an attempt with `token`, sent by `runner`, must not count."""
    if not token:
        return "no attempt token"
    if not expected_digest:
        return "attempt was dispatched without a token"
    if not hmac.compare_digest(token_digest(token), expected_digest):
        return "wrong attempt token"
    if started_by and started_by != runner:
        return "another runner took the attempt"
    return None


TAKEN: Refusal = "another runner took the attempt"
"""The one refusal a takeover can overcome: the token is right, only the runner differs."""


def takeover_after(dispatch_ack_wait: float, heartbeat_interval: float) -> float:
    """Seconds an attempt's runner must have been silent before another runner may take the
    attempt over: two heartbeat intervals (a live runner is never silent that long), and at
    least half the dispatch ack wait. JetStream redelivers a dispatch only after its runner
    kept silent for the whole ack wait, so the new runner's `started` normally counts."""
    return max(dispatch_ack_wait / 2, 2 * heartbeat_interval)


def takeover_refusal(silent_for: float | None, after: float) -> Refusal | None:
    """Why a proven holder of the attempt's dispatch may not take it over from its runner,
    which was last heard from about it `silent_for` seconds ago (None: not known)."""
    if silent_for is None or silent_for < after:
        return "the attempt's runner is alive"
    return None


def log_refused_report(report: AttemptStatus, reason: Refusal, subject: str = "") -> None:
    """One JSON log line per refused report: what it claimed, never its token."""
    kind = "started" if isinstance(report, AttemptStarted) else "finished"
    assert isinstance(report, AttemptStarted | AttemptFinished)
    security_log.warning(
        "status report refused",
        extra={
            "security_event": "report_refused",
            "reason": reason,
            "subject": subject or subjects.status(report.flow_id),
            "report": kind,
            "flow_id": report.flow_id,
            "task": report.task,
            "attempt": report.attempt,
            "runner": report.runner,
        },
    )


def log_refused_heartbeat(runner: str, flow_id: str, task: str, attempt: int, reason: str) -> None:
    security_log.warning(
        "heartbeat refused",
        extra={
            "security_event": "heartbeat_refused",
            "reason": reason,
            "flow_id": flow_id,
            "task": task,
            "attempt": attempt,
            "runner": runner,
        },
    )
