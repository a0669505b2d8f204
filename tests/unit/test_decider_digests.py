"""Output digests in the event log: a success report's digests land in `task_succeeded` and
the flow state, the downstream dispatch carries them for its inputs, a rerun carries the
reused outputs' digests over, and the log folds back to the same digests."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

import msgspec
from hypothesis import given
from hypothesis import strategies as st
from weir_proto.events import FlowEvent, TaskFailed, TaskSucceeded
from weir_proto.messages import AttemptFinished, Dispatch, ErrorType, OutputDigest
from weir_proto.spec import FlowSpec
from weir_proto.status import TaskStatus
from weir_scheduler.decider import FoldedFlow, RecordFinished, Submit, decide_and_evolve, fold
from weir_scheduler.planner import plan
from weir_scheduler.store import Change, dispatches, sealed

from tests.flows import task
from tests.unit.test_decider import finished

NOW = datetime(2026, 1, 1, tzinfo=UTC)
SPEC = {
    "name": "pipe",
    "tasks": [
        task("make", outputs=[{"name": "data", "path": "d"}, {"name": "log", "path": "l"}]),
        task("use", depends=["make"], inputs=[{"from": "data", "path": "d"}]),
    ],
}


def digest(name: str, content: bytes) -> OutputDigest:
    return OutputDigest(name=name, size=len(content), sha256=hashlib.sha256(content).hexdigest())


def succeeded(name: str, outputs: list[OutputDigest]) -> RecordFinished:
    return finished(name, outputs=outputs)


def run(
    flow: FoldedFlow, command: Any, log: list[FlowEvent]
) -> tuple[FoldedFlow, list[FlowEvent], list[Dispatch]]:
    events, after = decide_and_evolve(flow, command, NOW)
    change = sealed(Change(flow, after, events))
    log.extend(change.events)
    sent = [msgspec.json.decode(payload, type=Dispatch) for _, _, payload in dispatches(change)]
    return change.after, list(change.events), sent


def submitted(log: list[FlowEvent], **rerun: Any) -> tuple[FoldedFlow, list[Dispatch]]:
    spec = msgspec.convert({**SPEC, "id": "f1"}, FlowSpec)
    flow, _, sent = run(FoldedFlow(id="f1"), Submit(spec, plan(spec), **rerun), log)
    return flow, sent


def test_success_records_the_reported_digests_of_declared_outputs_only() -> None:
    log: list[FlowEvent] = []
    flow, _ = submitted(log)
    data, stray = digest("data", b"rows"), digest("elsewhere", b"x")
    flow, events, _ = run(flow, succeeded("make", [data, stray]), log)

    recorded = next(e for e in events if isinstance(e, TaskSucceeded))
    assert recorded.outputs == [data]
    assert flow.output_digest("data") == data
    assert flow.output_digest("log") is None  # not reported: nothing recorded


def test_the_downstream_dispatch_carries_the_digests_of_its_inputs() -> None:
    log: list[FlowEvent] = []
    flow, first = submitted(log)
    assert [d.task.name for d in first] == ["make"] and first[0].input_digests == []
    data = digest("data", b"rows")
    flow, _, sent = run(flow, succeeded("make", [data, digest("log", b"ok")]), log)

    assert [(d.task.name, d.input_digests) for d in sent] == [("use", [data])]


def test_a_rerun_carries_the_reused_outputs_digests_to_its_dispatches() -> None:
    data = digest("data", b"rows")
    log: list[FlowEvent] = []
    flow, sent = submitted(
        log, rerun_of="f0", reused=("make",), reused_outputs=(data, digest("other", b"?"))
    )

    assert flow.tasks["make"].status is TaskStatus.SUCCEEDED
    assert flow.tasks["make"].outputs == (data,)
    assert [(d.task.name, d.input_flows, d.input_digests) for d in sent] == [
        ("use", {"data": "f0"}, [data])
    ]


def test_an_integrity_failure_is_not_retried_whatever_max_attempts() -> None:
    log: list[FlowEvent] = []
    flow, _ = submitted(log)
    flow, _, _ = run(flow, succeeded("make", [digest("data", b"rows")]), log)
    report = AttemptFinished(
        flow_id="f1",
        task="use",
        attempt=1,
        runner="r",
        token="t",
        at=NOW,
        error_type=ErrorType.ARTIFACT_INTEGRITY,
        message='artifact "data" of flow f1 is not the one its task uploaded',
    )
    _, events, _ = run(flow, RecordFinished(report), log)

    failed = [e for e in events if isinstance(e, TaskFailed)]
    assert [(e.task, e.error_type) for e in failed] == [("use", "artifact_integrity")]


@given(st.lists(st.binary(max_size=64), min_size=2, max_size=2))
def test_the_log_folds_back_to_the_same_digests(contents: list[bytes]) -> None:
    log: list[FlowEvent] = []
    flow, _ = submitted(log)
    outputs = [digest("data", contents[0]), digest("log", contents[1])]
    flow, _, _ = run(flow, succeeded("make", outputs), log)

    wire = msgspec.json.decode(msgspec.json.encode(log), type=list[FlowEvent])
    replayed = fold("f1", wire)
    assert replayed.tasks["make"].outputs == flow.tasks["make"].outputs == tuple(outputs)
    assert replayed == flow
