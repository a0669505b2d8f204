"""Attempt tokens: minted when a change is appended, only their digests in the log, and the
check a report passes before it may decide anything."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import msgspec
from weir_proto.events import TaskDispatched, TaskSucceeded, TaskTakenOver
from weir_proto.messages import AttemptFinished, AttemptStarted
from weir_proto.spec import FlowSpec
from weir_scheduler.decider import (
    Cancel,
    FoldedFlow,
    RecordFinished,
    RecordStarted,
    Submit,
    TakeOver,
    decide_and_evolve,
    fold,
)
from weir_scheduler.planner import plan
from weir_scheduler.provenance import (
    report_refusal,
    subject_refusal,
    takeover_after,
    takeover_refusal,
    token_digest,
)
from weir_scheduler.store import Change, dispatches, sealed

from tests.flows import task

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def submitted(*names: str) -> Change:
    spec = msgspec.convert({"name": "f", "tasks": [task(n) for n in names]}, FlowSpec)
    before = FoldedFlow(id="f1")
    events, after = decide_and_evolve(before, Submit(spec, plan(spec)), NOW)
    return Change(before, after, events)


def report(token: str, runner: str = "r1", attempt: int = 1) -> AttemptFinished:
    return AttemptFinished(
        flow_id="f1", task="a", attempt=attempt, runner=runner, token=token, at=NOW, exit_code=0
    )


def test_sealing_puts_a_fresh_token_in_each_dispatch_and_only_its_digest_in_the_log() -> None:
    change = sealed(submitted("a", "b"))
    dispatched = [e for e in change.events if isinstance(e, TaskDispatched)]
    assert len(dispatched) == 2 and len(set(change.tokens.values())) == 2
    for event in dispatched:
        token = change.tokens[event.id]
        assert event.token_digest == token_digest(token)
        assert token not in msgspec.json.encode(event).decode()
    sent = {msgspec.json.decode(payload)["token"] for _, _, payload in dispatches(change)}
    assert sent == set(change.tokens.values())
    # The state the store caches is the state the log folds to.
    assert fold("f1", list(change.events)) == change.after


def test_a_report_counts_only_with_its_attempts_token_and_from_the_runner_that_took_it() -> None:
    change = sealed(submitted("a"))
    token = next(iter(change.tokens.values()))
    flow = change.after
    assert report_refusal(flow, report("")) == "no attempt token"
    assert report_refusal(flow, report("guess")) == "wrong attempt token"
    assert report_refusal(flow, report(token)) is None
    start = AttemptStarted(flow_id="f1", task="a", attempt=1, runner="r1", token=token, at=NOW)
    _, running = decide_and_evolve(flow, RecordStarted(start), NOW)
    assert report_refusal(running, report(token, runner="r2")) == "another runner took the attempt"
    assert report_refusal(running, report(token)) is None
    # Another attempt's report is stale, not refused: decide ignores it.
    assert report_refusal(running, report("old", attempt=7)) is None


def test_a_report_must_name_the_flow_of_its_subject() -> None:
    assert subject_refusal(report("t"), "weir.status.f1") is None
    assert subject_refusal(report("t"), "weir.status.other") == "subject names another flow"


def test_a_silent_runners_attempt_is_taken_over_and_then_only_the_new_runner_counts() -> None:
    change = sealed(submitted("a"))
    token = next(iter(change.tokens.values()))
    start = AttemptStarted(flow_id="f1", task="a", attempt=1, runner="r1", token=token, at=NOW)
    started, running = decide_and_evolve(change.after, RecordStarted(start), NOW)
    later = NOW + timedelta(seconds=20)
    events, moved = decide_and_evolve(running, TakeOver("a", 1, "r2", 20.0), later)
    assert events == [
        TaskTakenOver(
            id=events[0].id,
            flow_id="f1",
            seq=running.seq + 1,
            at=later,
            task="a",
            attempt=1,
            runner="r2",
            previous_runner="r1",
            silent_for=20.0,
        )
    ]
    task = moved.tasks["a"]
    assert (task.runner, task.started_at, task.attempt) == ("r2", later, 1)
    assert report_refusal(moved, report(token, runner="r1")) == "another runner took the attempt"
    assert report_refusal(moved, report(token, runner="r2")) is None
    assert fold("f1", [*change.events, *started, *events]) == moved
    # Taking it over again, or for an earlier attempt, or on a cancelling flow: nothing.
    assert decide_and_evolve(moved, TakeOver("a", 1, "r2", 30.0), later)[0] == []
    assert decide_and_evolve(moved, TakeOver("a", 7, "r3", 30.0), later)[0] == []
    _, cancelling = decide_and_evolve(running, Cancel(), NOW)
    assert decide_and_evolve(cancelling, TakeOver("a", 1, "r2", 30.0), later)[0] == []
    # The new runner's report decides the attempt.
    done, _ = decide_and_evolve(moved, RecordFinished(report(token, runner="r2")), later)
    assert isinstance(done[0], TaskSucceeded)


def test_takeover_needs_two_heartbeats_and_half_the_dispatch_ack_wait_of_silence() -> None:
    assert takeover_after(30.0, 5.0) == 15.0  # the defaults
    assert takeover_after(2.0, 5.0) == 10.0
    assert takeover_refusal(None, 15.0) == "the attempt's runner is alive"
    assert takeover_refusal(14.9, 15.0) == "the attempt's runner is alive"
    assert takeover_refusal(15.0, 15.0) is None
