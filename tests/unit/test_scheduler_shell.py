"""The scheduler's shell (submissions, commands, timers, queues, cron) on the in-memory data
layer: what each does to the state, in milliseconds. MemoryData answers as PostgresData does
(tests/unit/test_data_contract.py); the same paths against Postgres and NATS are in
tests/integration."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
from weir_proto import subjects
from weir_proto.events import FlowEvent, event_type
from weir_proto.messages import AttemptFinished, AttemptStarted, Dispatch, ErrorType, OutputDigest
from weir_scheduler.commands import FlowCommands, report_command
from weir_scheduler.cron import CronTicker
from weir_scheduler.data.memory import MemoryData
from weir_scheduler.decider import DEFAULT_POLICY, Policy
from weir_scheduler.planner import Limits
from weir_scheduler.queues import QueueDispatcher
from weir_scheduler.store import EventStore, Timing
from weir_scheduler.submissions import Submission, SubmissionHandler
from weir_scheduler.timers import TimerFirer

from tests.flows import task
from tests.unit.test_data_contract import schedule

LEASE = 60.0


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2030, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


class Shell:
    def __init__(self, policy: Policy = DEFAULT_POLICY) -> None:
        self.clock = Clock()
        self.data = MemoryData(self.clock)
        self.store = EventStore(self.data, timing=Timing(lease=LEASE))
        self.submissions = SubmissionHandler(self.store, Limits(), self.clock, policy)
        self.commands = FlowCommands(self.store, self.clock, policy)

    async def submit(self, spec: dict[str, Any], fallback: str = "fallback") -> str:
        outcome = await self.submissions.submit(Submission(msgspec.json.encode(spec), fallback))
        return outcome.flow_id

    async def dispatches(self) -> list[Dispatch]:
        rows = await self.data.outbox_batch(1000)
        prefix = subjects.DISPATCH_PREFIX + "."
        return [
            msgspec.json.decode(r.payload, type=Dispatch)
            for r in rows
            if r.subject.startswith(prefix)
        ]

    async def succeeded(self, dispatch: Dispatch, outputs: list[OutputDigest]) -> None:
        """Report that `dispatch`'s attempt succeeded (on runner "r") with `outputs`."""
        finished = AttemptFinished(
            flow_id=dispatch.flow_id,
            task=dispatch.task.name,
            attempt=dispatch.attempt,
            runner="r",
            token=dispatch.token,
            at=self.clock(),
            outputs=outputs,
        )
        await self.commands.apply([(dispatch.flow_id, report_command(finished))])

    async def statuses(self, flow_id: str) -> dict[str, str]:
        view = await self.store.get(flow_id)
        assert view is not None
        return {t.name: t.status for t in view.tasks}


async def test_a_submit_is_recorded_once_and_dispatches_its_roots() -> None:
    shell = Shell()
    spec = {"name": "etl", "id": "etl-1", "tasks": [task("a"), task("b", depends=["a"])]}
    first = await shell.submissions.submit(Submission(msgspec.json.encode(spec), "x"))
    again = await shell.submissions.submit(Submission(msgspec.json.encode(spec), "y"))
    assert (first.flow_id, first.created, again.created) == ("etl-1", True, False)
    assert await shell.statuses("etl-1") == {"a": "dispatched", "b": "pending"}
    assert [d.task.name for d in await shell.dispatches()] == ["a"]


async def test_a_second_submit_with_a_held_unique_key_is_rejected() -> None:
    shell = Shell()
    unique = {"key": "nightly", "on_conflict": "reject"}
    await shell.submit({"name": "etl", "id": "one", "unique": unique, "tasks": [task("a")]})
    outcome = await shell.submissions.submit(
        Submission(
            msgspec.json.encode(
                {"name": "etl", "id": "two", "unique": unique, "tasks": [task("a")]}
            ),
            "x",
        )
    )
    assert outcome.status == "rejected" and outcome.existing == "one"
    assert "held by flow one" in outcome.errors[0].message


async def test_a_silent_runner_loses_its_attempt_when_the_lease_timer_fires() -> None:
    shell = Shell()
    flow_id = await shell.submit({"name": "etl", "id": "etl-1", "tasks": [task("a")]})
    (dispatch,) = await shell.dispatches()
    started = AttemptStarted(
        flow_id=flow_id, task="a", attempt=1, runner="r1", token=dispatch.token, at=shell.clock()
    )
    await shell.commands.apply([(flow_id, report_command(started))])
    assert await shell.statuses(flow_id) == {"a": "running"}
    timers = TimerFirer(shell.store, shell.commands)
    assert await timers.fire_due() == 0
    shell.clock.now += timedelta(seconds=LEASE + 1)
    assert await timers.fire_due() == 1
    assert (await shell.statuses(flow_id))["a"] != "running"
    assert await shell.data.claim_timers(10, 30.0) == []


async def test_a_limited_queue_releases_only_what_it_has_room_for() -> None:
    shell = Shell(Policy(limited_queues=frozenset({"gpu"})))
    tasks = [task(name, queue="gpu") for name in ("a", "b", "c")]
    flow_id = await shell.submit({"name": "train", "id": "train-1", "tasks": tasks})
    assert set((await shell.statuses(flow_id)).values()) == {"queued"}
    queues = QueueDispatcher(shell.store, shell.commands, {"gpu": 2})
    assert await queues.fill("gpu", 2) == 2
    assert await queues.fill("gpu", 2) == 0
    assert sorted((await shell.statuses(flow_id)).values()) == [
        "dispatched",
        "dispatched",
        "queued",
    ]


async def test_a_due_schedule_submits_its_tick_once_and_moves_on() -> None:
    shell = Shell()
    shell.clock.now += timedelta(minutes=30)
    tick = shell.clock() - timedelta(minutes=5)  # the next, on the hour, is still to come
    await shell.data.schedule_upsert(schedule("hourly", tick, [task("a")]))
    ticker = CronTicker(shell.data, shell.submissions, shell.clock)
    assert await ticker.tick() == 1
    assert await ticker.tick() == 0
    assert await shell.store.get(f"hourly-{tick:%Y%m%d%H%M%S}") is not None
    (view,) = await shell.data.schedule_list()
    assert view.last_tick_at == tick and view.next_run_at > shell.clock()


class Replica:
    """A second scheduler on the same log, with its own flow cache."""

    def __init__(self, shell: Shell) -> None:
        self.store = EventStore(shell.data, timing=Timing(lease=LEASE))
        self.commands = FlowCommands(self.store, shell.clock)


async def _log(shell: Shell, flow_id: str) -> list[tuple[int, str]]:
    logged = await shell.data.events_after({flow_id: 0})
    events = [msgspec.json.decode(e.data, type=FlowEvent) for e in logged]
    return [(e.seq, event_type(e)) for e in events]


async def test_a_report_decided_on_a_stale_cached_flow_is_recorded_after_a_reload() -> None:
    shell = Shell()
    retry = {"max_attempts": 2, "backoff": {"strategy": "constant", "base": 1, "jitter": None}}
    flow_id = await shell.submit({"name": "etl", "id": "etl-1", "tasks": [task("a", retry=retry)]})
    (first,) = await shell.dispatches()
    other = Replica(shell)
    await other.store.load(flow_id)  # cached there at attempt 1, dispatched

    def report(kind: type[AttemptStarted | AttemptFinished], attempt: int, token: str) -> Any:
        extra = (
            {"error_type": ErrorType.EXIT_CODE, "exit_code": 1} if kind is AttemptFinished else {}
        )
        at = shell.clock()
        fields = {"task": "a", "attempt": attempt, "runner": "r1", "token": token, "at": at}
        return report_command(kind(flow_id=flow_id, **fields, **extra))  # type: ignore[arg-type]

    # Attempt 1 starts and fails, and attempt 2 is dispatched, all through this replica.
    await shell.commands.apply([(flow_id, report(AttemptStarted, 1, first.token))])
    await shell.commands.apply([(flow_id, report(AttemptFinished, 1, first.token))])
    shell.clock.now += timedelta(seconds=2)
    assert await TimerFirer(shell.store, shell.commands).fire_due() == 1
    second = next(d for d in await shell.dispatches() if d.attempt == 2)
    # The other replica's cached flow knows no attempt 2: deciding nothing on it would lose
    # the report; it must ask the log and record it.
    await other.commands.apply([(flow_id, report(AttemptStarted, 2, second.token))])
    assert await shell.statuses(flow_id) == {"a": "running"}
    # And a report that decides events on a stale flow loses the race on (flow_id, seq),
    # then is decided again on the log: recorded once, the log gap-free.
    stale = Replica(shell)
    await stale.store.load(flow_id)
    await shell.commands.apply([(flow_id, report(AttemptStarted, 2, second.token))])  # nothing
    fresh = await other.store.load(flow_id)
    ok = AttemptFinished(
        flow_id=flow_id, task="a", attempt=2, runner="r1", token=second.token, at=shell.clock()
    )
    await stale.commands.apply([(flow_id, report_command(ok))])
    await stale.commands.apply([(flow_id, report_command(ok))])  # redelivered: nothing new
    log = await _log(shell, flow_id)
    assert [seq for seq, _ in log] == list(range(1, len(log) + 1))
    assert [kind for _, kind in log].count("task_succeeded") == 1
    assert log[-1][1] == "flow_succeeded" and fresh.seq == len(log) - 2
