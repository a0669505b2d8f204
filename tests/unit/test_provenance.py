"""Attempt tokens: minted when a change is appended, only their digests in the log, and the
check a report passes before it may decide anything."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec
from weir_proto.events import TaskDispatched
from weir_proto.messages import AttemptFinished, AttemptStarted
from weir_proto.spec import FlowSpec
from weir_scheduler.decider import Flow, RecordStarted, Submit, decide_and_evolve, fold
from weir_scheduler.planner import plan
from weir_scheduler.provenance import report_refusal, subject_refusal, token_digest
from weir_scheduler.store import Change, dispatches, sealed

from tests.flows import task

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def submitted(*names: str) -> Change:
    spec = msgspec.convert({"name": "f", "tasks": [task(n) for n in names]}, FlowSpec)
    before = Flow(id="f1")
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
