"""`when` conditions over upstream outputs: what the parser and the planner accept and refuse,
how a value is read, and how the decider waits for the shell, records what it read and
decides the branch the same way on replay."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest
from weir_proto.conditions import (
    NESTING_MAX,
    ConditionError,
    Const,
    Ref,
    output_refs,
    parse_condition,
)
from weir_proto.events import TaskSucceeded, event_type
from weir_proto.messages import AttemptFinished, ErrorType, OutputDigest
from weir_proto.spec import FlowSpec
from weir_scheduler.decider import (
    FoldedFlow,
    ReadCondition,
    RecordFinished,
    Submit,
    decide_and_evolve,
    evolve,
    fold,
)
from weir_scheduler.decider.fanout import CONDITION_PHASE, due
from weir_scheduler.decider.gates import VALUE_BYTES_MAX, output_value, to_read
from weir_scheduler.planner import Rejected, plan
from weir_scheduler.store import Change, Timing, append_batch, sealed

from tests.flows import by_status, task

NOW = datetime(2026, 1, 1, tzinfo=UTC)
CHECK = task("check", outputs=[{"name": "decision", "path": "decision.txt"}])


def spec_of(*tasks: dict[str, Any]) -> FlowSpec:
    return msgspec.convert({"name": "f", "tasks": list(tasks)}, FlowSpec)


def branches() -> FlowSpec:
    """check -> deploy (on "go"), hold (on "stop"); smoke after deploy; notify after both."""
    return spec_of(
        CHECK,
        task("deploy", depends=["check"], when='tasks.check.outputs.decision == "go"'),
        task("hold", depends=["check"], when="tasks.check.outputs.decision == 'stop'"),
        task("smoke", depends=["deploy"]),
        task("notify", depends=["deploy", "hold"], trigger="one_success"),
    )


def finish(name: str, outputs: tuple[str, ...] = (), ok: bool = True) -> RecordFinished:
    digests = [OutputDigest(name=o, size=3, sha256="00") for o in outputs]
    report = AttemptFinished(
        flow_id="f",
        task=name,
        attempt=1,
        runner="r",
        token="t",
        at=NOW,
        outputs=digests if ok else [],
        exit_code=0 if ok else 1,
        error_type=None if ok else ErrorType.EXIT_CODE,
    )
    return RecordFinished(report)


def drive(spec: FlowSpec, *commands: Any) -> tuple[FoldedFlow, list[Any]]:
    flow = FoldedFlow(id="f")
    log, flow = decide_and_evolve(flow, Submit(spec, plan(spec)), NOW)
    for command in commands:
        events, flow = decide_and_evolve(flow, command, NOW)
        log += events
    return flow, log


def finish_active(flow: FoldedFlow, log: list[Any]) -> tuple[FoldedFlow, list[Any]]:
    """Every handed-out attempt succeeds, until none is left."""
    for _ in range(20):
        active = [t.name for t in flow.tasks.values() if t.status.active]
        if not active:
            break
        events, flow = decide_and_evolve(flow, finish(active[0]), NOW)
        log += events
    return flow, log


# parsing and planning ---------------------------------------------------------------------


def test_an_output_reference_parses_with_dotted_output_names() -> None:
    expr = parse_condition('tasks.check.outputs.decision == "go" and tasks.a.outputs.n.json > 2')
    assert output_refs(expr) == [("check", "decision"), ("a", "n.json")]
    assert Ref(("tasks", "check", "outputs", "decision")) in [expr.parts[0].left]  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "text",
    ["tasks.check.outputs", "tasks.check.output.decision", "tasks.check.outputs.x(1)"],
)
def test_a_malformed_output_reference_is_refused_naming_the_forms_allowed(text: str) -> None:
    with pytest.raises(ConditionError) as raised:
        parse_condition(text)
    assert "tasks.NAME.outputs.OUTPUT" in str(raised.value) or "unexpected" in str(raised.value)


def test_every_bad_output_reference_is_reported_at_once_with_where_and_how_to_fix() -> None:
    spec = spec_of(
        CHECK,
        task("other", outputs=[{"name": "verdict", "path": "v"}]),
        task(
            "deploy",
            depends=["check"],
            when='tasks.check.outputs.verdict == "go" or tasks.other.outputs.verdict == 1',
        ),
        task("plain", depends=["check"], when="tasks.plain2.outputs.x == 1"),
        task("plain2"),
    )
    with pytest.raises(Rejected) as raised:
        plan(spec)
    problems = [(e.path, e.message) for e in raised.value.errors]
    assert problems == [
        (
            "$.tasks[2].when",
            'flow "f": task "deploy": when: reads tasks.check.outputs.verdict, which is not an '
            "output of task check (outputs: decision); declare it under the task's outputs",
        ),
        (
            "$.tasks[2].when",
            'flow "f": task "deploy": when: reads tasks.other, which is not upstream of this '
            "task; a condition reads only tasks it (indirectly) depends on",
        ),
        (
            "$.tasks[3].when",
            'flow "f": task "plain": when: reads tasks.plain2, which is not upstream of this '
            "task; a condition reads only tasks it (indirectly) depends on",
        ),
    ]


def test_an_output_of_a_task_without_outputs_says_it_declares_none() -> None:
    spec = spec_of(task("a"), task("b", depends=["a"], when="tasks.a.outputs.x == 1"))
    with pytest.raises(Rejected) as raised:
        plan(spec)
    assert "(outputs: it declares none)" in raised.value.errors[0].message


# reading a value ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "value"),
    [
        (b"go\n", "go"),
        (b'"go"', "go"),
        (b"3\n", 3),
        (b"true", True),
        (b'{"a": [1]}', {"a": [1]}),
        (b"", ""),
        (b"\xff\xfe", "\ufffd\ufffd"),
    ],
)
def test_a_value_is_the_outputs_json_or_else_its_text(data: bytes, value: Any) -> None:
    assert output_value("t", "o", data) == (value, None)


def test_a_value_too_large_or_holding_nul_is_refused_with_the_limit() -> None:
    big = output_value("deploy", "decision", b"x" * (VALUE_BYTES_MAX + 1))
    assert big[1] == (
        f'task "deploy": when: output "decision" is {VALUE_BYTES_MAX + 1:,} bytes; '
        f"the limit is {VALUE_BYTES_MAX:,}"
    )
    nul = output_value("deploy", "decision", b'"a\\u0000"')
    assert nul[1] is not None and "NUL character" in nul[1]


# deciding ----------------------------------------------------------------------------------


def test_a_task_waits_for_its_conditions_outputs_with_a_timer_so_a_crash_loses_nothing() -> None:
    spec = branches()
    submitted = decide_and_evolve(FoldedFlow(id="f"), Submit(spec, plan(spec)), NOW)[1]
    events, waiting = decide_and_evolve(submitted, finish("check", ("decision",)), NOW)
    assert sorted(due(waiting)) == [("deploy", CONDITION_PHASE), ("hold", CONDITION_PHASE)]
    assert to_read(waiting, "deploy") == [("check", "decision")]
    assert waiting.tasks["deploy"].status == "pending" and not waiting.ready
    batch = append_batch([sealed(Change(submitted, waiting, events))], Timing())
    timers = sorted((t.task, t.kind, t.attempt) for t in batch.timers_due)
    assert timers == [("deploy", "fanout", CONDITION_PHASE), ("hold", "fanout", CONDITION_PHASE)]


def test_go_runs_the_go_branch_skips_the_other_and_dependents_follow_their_triggers() -> None:
    read = (("decision", "go"),)
    flow, log = drive(
        branches(),
        finish("check", ("decision",)),
        ReadCondition("deploy", read),
        ReadCondition("hold", read),
    )
    flow, log = finish_active(flow, log)
    assert by_status(flow.tasks) == {
        "succeeded": {"check", "deploy", "smoke", "notify"},
        "skipped": {"hold"},
    }
    assert flow.tasks["hold"].error_message == (
        "condition is false: tasks.check.outputs.decision == 'stop'"
    )
    assert [event_type(e) for e in log].count("task_condition_read") == 1
    assert flow.status == "succeeded"
    assert fold("f", log) == flow


def test_stop_skips_the_go_branch_and_its_dependents() -> None:
    read = (("decision", "stop"),)
    flow, log = drive(branches(), finish("check", ("decision",)), ReadCondition("hold", read))
    flow, log = finish_active(flow, log)
    assert by_status(flow.tasks) == {
        "succeeded": {"check", "hold", "notify"},
        "skipped": {"deploy", "smoke"},
    }
    assert flow.tasks["smoke"].error_message == (
        'trigger all_success: upstream task "deploy" was skipped'
    )
    assert fold("f", log) == flow


def test_one_read_serves_every_condition_over_the_same_output() -> None:
    flow, _ = drive(
        branches(), finish("check", ("decision",)), ReadCondition("hold", (("decision", 1),))
    )
    assert dict(flow.read_outputs) == {"decision": 1}
    assert not list(due(flow)), "deploy was decided from the value already read"
    assert {flow.tasks["deploy"].status, flow.tasks["hold"].status} == {"skipped"}


def test_an_output_that_cannot_be_read_fails_the_task_with_the_reason() -> None:
    error = 'task "deploy": when: output "decision" of task "check" was not stored'
    flow, log = drive(
        branches(), finish("check", ("decision",)), ReadCondition("deploy", error=error)
    )
    assert flow.tasks["deploy"].status == "failed"
    assert flow.tasks["deploy"].error_type == "condition"
    assert flow.tasks["deploy"].error_message == error
    assert flow.tasks["smoke"].status == "skipped"
    flow, log = finish_active(flow, log)
    assert flow.status == "failed"
    assert fold("f", log) == flow


def test_an_output_of_a_task_that_did_not_succeed_reads_as_null_without_the_shell() -> None:
    spec = spec_of(
        CHECK | {"retry": {"max_attempts": 1}},
        task(
            "decide",
            depends=["check"],
            trigger="all_done",
            when="tasks.check.outputs.decision == null",
        ),
    )
    flow, _ = drive(spec, finish("check", ok=False))
    assert not list(due(flow))
    assert flow.tasks["decide"].status == "dispatched"


def test_a_late_or_repeated_read_changes_nothing() -> None:
    read = (("decision", "go"),)
    flow, _ = drive(branches(), finish("check", ("decision",)), ReadCondition("deploy", read))
    events, again = decide_and_evolve(flow, ReadCondition("deploy", (("decision", "stop"),)), NOW)
    assert events == [] and again == flow
    early = drive(branches())[0]
    assert decide_and_evolve(early, ReadCondition("deploy", read), NOW)[0] == []


def test_a_rerun_reusing_the_producer_reads_its_output_again() -> None:
    spec = branches()
    rerun = decide_and_evolve(FoldedFlow(id="f2"), Submit(spec, plan(spec), "f", ("check",)), NOW)
    flow = rerun[1]
    assert sorted(due(flow)) == [("deploy", CONDITION_PHASE), ("hold", CONDITION_PHASE)]


def test_a_task_that_succeeds_again_has_its_outputs_read_afresh() -> None:
    read = (("decision", "go"),)
    flow, _ = drive(branches(), finish("check", ("decision",)), ReadCondition("deploy", read))
    assert dict(flow.read_outputs) == {"decision": "go"}
    # What a retry of check (run again inside its flow) ends with.
    success = TaskSucceeded(id="e", flow_id="f", seq=flow.seq + 1, at=NOW, task="check", attempt=2)
    again = evolve(flow, success)
    assert dict(again.read_outputs) == {}, "a second success of check drops what was read"


def test_a_condition_nested_too_deeply_is_refused_at_submit_not_an_internal_error() -> None:
    """Within the length limit, 1,000 parentheses (or `not`s) would recurse past Python's
    limit: refused with the limit and where, as every other bad condition is."""
    assert parse_condition("(" * NESTING_MAX + "true" + ")" * NESTING_MAX) == Const(True)
    deep = [
        "(" * 1000 + "true" + ")" * 1000,
        "not " * 1000 + "true",
        "(" * NESTING_MAX + "not true" + ")" * NESTING_MAX,
    ]
    spec = spec_of(*(task(f"t{i}", when=text) for i, text in enumerate(deep)))
    with pytest.raises(Rejected) as raised:
        plan(spec)
    problems = [(e.path, e.message) for e in raised.value.errors]
    rule = f"nests more than {NESTING_MAX} levels of parentheses and `not`; write it flatter"
    assert problems == [
        (f"$.tasks[{i}].when", f'flow "f": task "t{i}": when: {rule}') for i in range(3)
    ]
