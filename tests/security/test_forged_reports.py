"""Attacks on status reports, run against a real scheduler and runner (Postgres, NATS
JetStream). The attacker can publish on `weir.status.>` (runner credentials, which a task may
get hold of) and read dispatches (as every runner of a queue can). Each forged report is
refused with a security log line, and the victim flow ends as its task really ends: the
victim's task fails a few seconds after it starts, so a forged success would show at once
as `task_succeeded` and a run of its downstream task."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import msgspec
import pytest
from weir.client import Client
from weir.config import Settings
from weir_proto import subjects
from weir_proto.events import (
    TERMINAL_FLOW_EVENTS,
    FlowEvent,
    TaskDispatched,
    TaskFailed,
    event_type,
)
from weir_proto.messages import Dispatch, Heartbeat
from weir_scheduler.provenance import token_digest

from tests.flows import WAIT, shell, task
from tests.inspection import inspecting

REFUSAL_WAIT = 10.0
FAILS_AFTER = 6
"""Seconds the victim's task runs before it fails: longer than the attacks take."""


class LogWatch(logging.Handler):
    """The records a logger emits, and a way to wait for the next one (the services run in
    this process, so their log calls land here)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self.arrived = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        self.arrived.set()

    async def next(self, seen: int, message: str) -> logging.LogRecord:
        """The first record after the `seen` first ones whose message is `message`."""
        async with asyncio.timeout(REFUSAL_WAIT):
            while True:
                for record in self.records[seen:]:
                    if record.getMessage() == message:
                        return record
                self.arrived.clear()
                await self.arrived.wait()


@pytest.fixture
async def security_log() -> AsyncIterator[LogWatch]:
    watch = LogWatch()
    loggers = [logging.getLogger("weir.security"), logging.getLogger("weir.scheduler")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.addHandler(watch)
        logger.setLevel(logging.INFO)
    yield watch
    for logger, level in zip(loggers, levels, strict=True):
        logger.removeHandler(watch)
        logger.setLevel(level)


class Wire:
    """What an attacker with runner credentials sees on NATS: dispatches and reports."""

    def __init__(self) -> None:
        self.dispatches: list[Dispatch] = []
        self.reports: list[dict[str, Any]] = []

    def token(self, flow_id: str, attempt: int) -> str:
        return next(
            d.token for d in self.dispatches if d.flow_id == flow_id and d.attempt == attempt
        )


@pytest.fixture
async def wire(client: Client) -> AsyncIterator[Wire]:
    seen = Wire()

    async def on_dispatch(msg: Any) -> None:
        seen.dispatches.append(msgspec.json.decode(msg.data, type=Dispatch))

    async def on_report(msg: Any) -> None:
        seen.reports.append(json.loads(msg.data))

    subs = [
        await client.nc.subscribe(f"{subjects.DISPATCH_PREFIX}.>", cb=on_dispatch),
        await client.nc.subscribe(f"{subjects.STATUS_PREFIX}.>", cb=on_report),
    ]
    await client.nc.flush()
    yield seen
    for sub in subs:
        await sub.unsubscribe()


def victim(flow_id: str, script: str, attempts: int = 1) -> dict[str, Any]:
    retry = {"max_attempts": attempts, "backoff": {"strategy": "constant", "base": 0.1}}
    return {
        "id": flow_id,
        "name": "victim",
        "tasks": [
            shell("slow", script, retry=retry),
            task("downstream", "true", depends=["slow"]),
        ],
    }


FAILING = f"sleep {FAILS_AFTER}; exit 1"


async def until(
    client: Client, flow_id: str, wanted: Callable[[FlowEvent], bool]
) -> list[FlowEvent]:
    """The flow's events up to the first one that is `wanted`."""
    seen = []
    async with asyncio.timeout(WAIT):
        async for event in client.events(flow_id, follow=True):
            seen.append(event)
            if wanted(event):
                return seen
    raise AssertionError(f"flow {flow_id} ended without the awaited event: {seen}")


def started(attempt: int) -> Callable[[FlowEvent], bool]:
    return lambda e: event_type(e) == "task_started" and getattr(e, "attempt", 0) == attempt


def finished_report(flow_id: str, attempt: int, runner: str, token: str | None) -> bytes:
    """A report that the victim's task succeeded, as a runner would send it."""
    report: dict[str, Any] = {
        "type": "finished",
        "flow_id": flow_id,
        "task": "slow",
        "attempt": attempt,
        "runner": runner,
        "at": "2026-01-01T00:00:00Z",
        "exit_code": 0,
    }
    if token is not None:
        report["token"] = token
    return json.dumps(report).encode()


async def start_victim(client: Client) -> None:
    """Submit the victim flow and wait until its attempt 1 runs."""
    await client.submit(victim("victim", FAILING))
    await until(client, "victim", started(1))


async def forge_finished(
    client: Client,
    security_log: LogWatch,
    runner: str,
    token: str | None,
    subject_flow: str = "victim",
    logged: str = "status report refused",
) -> logging.LogRecord:
    """Publish a forged success of the victim's attempt 1 on `subject_flow`'s status subject;
    the security log's record `logged` of what the scheduler made of it."""
    seen = len(security_log.records)
    forged = finished_report("victim", 1, runner, token)
    await client.js.publish(subjects.status(subject_flow), forged)
    return await security_log.next(seen, logged)


async def assert_victim_failed_for_real(client: Client, flow_id: str, attempt: int) -> None:
    events = await until(client, flow_id, lambda e: event_type(e) in TERMINAL_FLOW_EVENTS)
    kinds = [event_type(e) for e in events]
    assert kinds[-1] == "flow_failed", kinds
    assert "task_succeeded" not in kinds, kinds
    downstream = [event_type(e) for e in events if getattr(e, "task", "") == "downstream"]
    assert downstream == ["task_skipped"], downstream
    failed = next(e for e in events if isinstance(e, TaskFailed))
    assert (failed.task, failed.attempt, failed.exit_code) == ("slow", attempt, 1)


def assert_refused(record: logging.LogRecord, reason: str, tokens: list[str]) -> None:
    fields = record.__dict__
    assert fields["security_event"] == "report_refused"
    assert fields["reason"] == reason
    assert fields["flow_id"] == "victim"
    line = json.dumps({k: str(v) for k, v in fields.items()})
    assert not any(token in line for token in tokens), "a token reached the log"


async def test_finished_report_on_another_flows_subject_naming_the_victim_is_refused(
    client: Client, wire: Wire, security_log: LogWatch, settings: Settings
) -> None:
    attacker = await client.submit({"id": "attacker", "name": "a", "tasks": [task("t", "true")]})
    await client.wait(attacker)
    await start_victim(client)
    token = wire.token("victim", 1)
    # Even with the attempt's real token and runner: the subject belongs to another flow.
    record = await forge_finished(client, security_log, settings.runner_name, token, attacker)
    assert_refused(record, "subject names another flow", [token])
    assert record.__dict__["subject"] == subjects.status(attacker)
    await assert_victim_failed_for_real(client, "victim", attempt=1)
    await assert_token_never_public(client, settings, "victim", token)


@pytest.mark.parametrize(
    ("token", "reason"),
    [("", "no attempt token"), ("Zm9yZ2VkLXRva2Vu", "wrong attempt token")],
    ids=["empty-token", "wrong-token"],
)
async def test_finished_report_without_the_attempts_token_is_refused(
    client: Client, wire: Wire, security_log: LogWatch, settings: Settings, token: str, reason: str
) -> None:
    await start_victim(client)
    record = await forge_finished(client, security_log, settings.runner_name, token)
    assert_refused(record, reason, [wire.token("victim", 1)])
    await assert_victim_failed_for_real(client, "victim", attempt=1)


async def test_finished_report_with_no_token_field_is_dropped(
    client: Client, security_log: LogWatch, settings: Settings
) -> None:
    await start_victim(client)
    dropped = "undecodable status report dropped"
    record = await forge_finished(client, security_log, settings.runner_name, None, logged=dropped)
    assert "token" in record.__dict__["error"]
    await assert_victim_failed_for_real(client, "victim", attempt=1)


async def test_report_from_another_runner_with_a_guessed_attempt_is_refused(
    client: Client, wire: Wire, security_log: LogWatch
) -> None:
    """The other runner even holds the dispatch (every runner of the queue can read it), but
    the runner that took the attempt is alive: no takeover (test_runner_takeover.py)."""
    await start_victim(client)
    token = wire.token("victim", 1)
    record = await forge_finished(client, security_log, "runner-elsewhere", token)
    assert_refused(record, "the attempt's runner is alive", [token])
    await assert_victim_failed_for_real(client, "victim", attempt=1)


async def test_replayed_reports_of_an_earlier_attempt_change_nothing(
    client: Client, wire: Wire, security_log: LogWatch, settings: Settings
) -> None:
    # Attempt 1 fails at once, attempt 2 fails after a while.
    script = f'[ "$WEIR_ATTEMPT" = 1 ] && exit 3; sleep {FAILS_AFTER}; exit 1'
    await client.submit(victim("victim", script, attempts=2))
    await until(client, "victim", started(2))
    genuine = next(r for r in wire.reports if r["type"] == "finished" and r["flow_id"] == "victim")
    assert genuine["attempt"] == 1 and genuine["token"] == wire.token("victim", 1)
    seen = len(security_log.records)
    # Verbatim: a stale report of attempt 1, ignored like any late report.
    await client.js.publish(subjects.status("victim"), json.dumps(genuine).encode())
    # Attempt 1's genuine token on a success claimed for attempt 2.
    replayed = finished_report("victim", 2, settings.runner_name, genuine["token"])
    await client.js.publish(subjects.status("victim"), replayed)
    record = await security_log.next(seen, "status report refused")
    assert_refused(record, "wrong attempt token", [wire.token("victim", 2)])
    await assert_victim_failed_for_real(client, "victim", attempt=2)


async def assert_token_never_public(
    client: Client, settings: Settings, flow_id: str, token: str
) -> None:
    """Submitters read the event stream and the log: they hold the digest, never the token."""
    events = [e async for e in client.events(flow_id)]
    dispatched = [e for e in events if isinstance(e, TaskDispatched) and e.task == "slow"]
    assert dispatched[0].token_digest == token_digest(token)
    assert all(token not in msgspec.json.encode(e).decode() for e in events)
    async with inspecting(settings.database_url) as db:
        texts = await db.event_texts(flow_id)
    assert texts and all(token not in text for text in texts)


async def test_heartbeat_without_the_attempts_token_is_refused(
    client: Client, wire: Wire, security_log: LogWatch, settings: Settings
) -> None:
    """A forged heartbeat would keep a lost attempt's lease alive."""
    await start_victim(client)
    seen = len(security_log.records)
    beat = Heartbeat(runner=settings.runner_name, attempts=[("victim", "slow", 1, "guessed")])
    await client.nc.publish(subjects.heartbeat("evil"), msgspec.json.encode(beat))
    record = await security_log.next(seen, "heartbeat refused")
    fields = record.__dict__
    assert (fields["security_event"], fields["reason"]) == (
        "heartbeat_refused",
        "wrong attempt token",
    )
    assert wire.token("victim", 1) not in json.dumps({k: str(v) for k, v in fields.items()})
    await assert_victim_failed_for_real(client, "victim", attempt=1)
    refused = [r for r in security_log.records if r.getMessage() == "heartbeat refused"]
    assert len(refused) == 1, "the runner's own heartbeats were refused"
