"""Mapped tasks: what the planner refuses at submit, what an instance runs, and how a list
the shell read becomes a decision (items, or a clear failure)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest
from weir_proto.ids import attempt_id, is_dns_label, is_task_name
from weir_proto.messages import AttemptFinished, OutputDigest
from weir_proto.spec import (
    MAP_ITEMS_ADMITTED,
    MAX_TASKS_DEFAULT,
    OTHER_TASKS_ADMITTED,
    FlowSpec,
)
from weir_runner.executors.kubernetes.manifest import task_label, task_of_label
from weir_scheduler.decider import Expand, FoldedFlow, RecordFinished, Submit, decide_and_evolve
from weir_scheduler.decider.fanout import expansion
from weir_scheduler.planner import Rejected, plan
from weir_scheduler.store import Change, Timing, append_batch, sealed

from tests.flows import task

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def spec_of(*tasks: dict[str, Any], **flow: Any) -> FlowSpec:
    return msgspec.convert({"name": "m", "tasks": list(tasks), **flow}, FlowSpec)


def problems(spec: FlowSpec) -> list[tuple[str, str]]:
    with pytest.raises(Rejected) as caught:
        plan(spec)
    return sorted((e.path, e.message) for e in caught.value.errors)


LIST = task("ls", outputs=[{"name": "files", "path": "f.json"}])


def test_every_bad_map_is_reported_at_once_with_where_and_how_to_fix() -> None:
    spec = spec_of(
        LIST,
        task("a", depends=["ls"], map={"over": "nope"}),
        task("b", map={"over": "files"}),
        task("c", depends=["ls"], map={"over": "files", "max_items": 0}),
        task("d", "echo", "{{ item }}"),
        task("e", depends=["ls"], map={"over": "files"}, outputs=[{"name": "r", "path": "r"}]),
        task("f", outputs=[{"name": "r.2", "path": "x"}]),
        on_exit=task("bye", map={"over": "files"}),
    )
    assert problems(spec) == [
        ("$.on_exit.map", 'flow "m": task "bye": the on_exit task cannot be mapped; remove map'),
        (
            "$.tasks[1].map.over",
            'flow "m": task "a": map.over "nope" is not an output of any task '
            "(outputs of its dependencies: files)",
        ),
        (
            "$.tasks[2].map.over",
            'flow "m": task "b": map.over "files" comes from task "ls", which is not one of '
            "its dependencies; add it to depends",
        ),
        (
            "$.tasks[3].map.max_items",
            'flow "m": task "c": map.max_items must be at least 1 (leave it out for no limit '
            "but WEIR_MAX_TASKS)",
        ),
        (
            "$.tasks[4]",
            'flow "m": task "d": uses {{ item }} but is not mapped; add map: {over: OUTPUT} '
            "or remove the placeholder",
        ),
        (
            "$.tasks[6].outputs[0].name",
            'flow "m": task "f": output "r.2" is the name an instance of a mapped task gives '
            'its part of output "r"; rename it',
        ),
    ]


def test_item_and_params_fill_an_instance_and_its_outputs_get_their_own_names() -> None:
    spec = spec_of(
        LIST,
        task(
            "p",
            "convert",
            "{{ item }}",
            "--env={{ params.env }}",
            depends=["ls"],
            map={"over": "files"},
            env=[{"name": "WHAT", "value": "item {{ item }}"}],
            outputs=[{"name": "out", "path": "out-{{ item }}.json"}],
        ),
        params={"env": {"default": "dev"}},
    )
    flow, _ = run(spec, FoldedFlow(id="f"), succeed("ls"))
    flow, events = run(spec, flow, Expand("p", items=("a.csv", {"k": 1})))
    assert [type(e).__name__ for e in events][:1] == ["TaskExpanded"]
    assert flow.plan is not None
    first, second = flow.plan.tasks["p[0]"], flow.plan.tasks["p[1]"]
    assert first.cmd == ["convert", "a.csv", "--env=dev"]
    assert second.cmd == ["convert", '{"k":1}', "--env=dev"]
    env = {v.name: v.value for v in second.env}
    assert env["WEIR_ITEM"] == '{"k":1}' and env["WHAT"] == 'item {"k":1}'
    assert [(o.name, o.path) for o in first.outputs] == [("out.0", "out-a.csv.json")]
    assert flow.plan.producers["out.1"] == "p[1]" and flow.plan.producers["out"] == "p"


def run(spec: FlowSpec, flow: FoldedFlow, command: Any) -> tuple[FoldedFlow, list[Any]]:
    if not flow.exists:
        flow = decide_and_evolve(flow, Submit(spec, plan(spec)), NOW)[1]
    events, flow = decide_and_evolve(flow, command, NOW)
    return flow, events


def succeed(name: str) -> RecordFinished:
    digest = OutputDigest(name="files", size=2, sha256="00")
    report = AttemptFinished(
        flow_id="f", task=name, attempt=1, runner="r", token="t", at=NOW, outputs=[digest]
    )
    return RecordFinished(report)


def test_the_default_limit_admits_a_map_over_10000_items_beside_99_other_tasks() -> None:
    others = [task(f"o{i}") for i in range(OTHER_TASKS_ADMITTED - 3)]
    gather = task("g", depends=["p"])
    spec = spec_of(LIST, task("p", depends=["ls"], map={"over": "files"}), gather, *others)
    flow, _ = run(spec, FoldedFlow(id="f"), succeed("ls"))
    assert len(flow.tasks) == OTHER_TASKS_ADMITTED  # the mapped task is one of them
    at_limit = msgspec.json.encode(list(range(MAP_ITEMS_ADMITTED)))
    decision = expansion(flow, "p", at_limit, MAX_TASKS_DEFAULT)
    assert decision.error is None and len(decision.items) == 10_000
    expanded, _ = run(spec, flow, decision)
    assert len(expanded.tasks) == MAX_TASKS_DEFAULT == 10_100
    one_more = msgspec.json.encode(list(range(MAP_ITEMS_ADMITTED + 1)))
    refused = expansion(flow, "p", one_more, MAX_TASKS_DEFAULT)
    assert refused.error == (
        'task "p": map.over output "files" has 10,001 items: the flow would have 10,101 tasks; '
        "the limit is 10,100 (WEIR_MAX_TASKS): map over fewer items or raise the scheduler's "
        "WEIR_MAX_TASKS"
    )


@pytest.mark.parametrize(
    ("data", "max_items", "max_tasks", "error"),
    [
        (b"a b", None, 100, "is not JSON (JSON is malformed: invalid character (byte 0))"),
        (b'{"a": 1}', None, 100, "is an object, not a JSON list"),
        (b'"abc"', None, 100, "is a str, not a JSON list"),
        (
            b"[" + b" " * 4 * 1024 * 1024 + b"]",
            None,
            100,
            "is 4,194,306 bytes; the limit is 4,194,304",
        ),
        (
            b'["a.csv", "../../etc/passwd"]',
            None,
            100,
            "has item 1, which makes the path \"out/../../etc/passwd\": it contains '..'",
        ),
        (b"[" * 100_000 + b"]" * 100_000, None, 100, "nests too deeply to be a list of items"),
        (b'["a", {"k": "b\\u0000"}]', None, 100, "has a NUL character (\\u0000) at items[1].k"),
        (b"[1, 2, 3]", 2, 100, "has 3 items; the limit is 2 (map.max_items)"),
        (
            b"[1, 2, 3]",
            None,
            4,
            "has 3 items: the flow would have 5 tasks; the limit is 4 (WEIR_MAX_TASKS): "
            "map over fewer items or raise the scheduler's WEIR_MAX_TASKS",
        ),
    ],
)
def test_a_list_that_cannot_be_used_is_a_failure_naming_the_task_count_and_limit(
    data: bytes, max_items: int | None, max_tasks: int, error: str
) -> None:
    mapped = {"over": "files"} | ({"max_items": max_items} if max_items else {})
    out = [{"name": "o", "path": "out/{{ item }}"}]
    spec = spec_of(LIST, task("p", depends=["ls"], map=mapped, outputs=out))
    flow, _ = run(spec, FoldedFlow(id="f"), succeed("ls"))
    decision = expansion(flow, "p", data, max_tasks)
    assert decision.error is not None and decision.items == ()
    assert decision.error.startswith('task "p": map.over output "files" ')
    assert error in decision.error
    failed, events = run(spec, flow, decision)
    assert [type(e).__name__ for e in events] == ["TaskFailed", "FlowFailed"]
    assert events[0].error_type == "map" and events[0].message == decision.error
    assert failed.tasks["p"].status == "failed"


def test_instances_have_dns_safe_attempt_ids_and_pod_labels_apart_from_real_tasks() -> None:
    assert is_task_name("convert[12]") and is_task_name("convert")
    assert not is_task_name("convert[01]") and not is_task_name("Convert[1]")
    instance = attempt_id("f1", "convert[1]", 2)
    assert is_dns_label(instance) and instance.endswith("-2")
    assert instance != attempt_id("f1", "convert-1", 2)
    later = attempt_id("f1", "convert[1]", 13)  # one prefix: a runner fences older attempts
    assert instance.removesuffix("2") == later.removesuffix("13")
    assert task_label("convert[1]") == "convert.1" and task_of_label("convert.1") == "convert[1]"
    assert task_of_label("convert") == "convert"


def test_a_rerun_reusing_an_instance_runs_the_mapped_task_again_from_its_list() -> None:
    spec = spec_of(LIST, task("p", depends=["ls"], map={"over": "files"}))
    reused = ("ls", "p[0]")  # what a rerun of a flow whose p[1] failed would carry over
    rerun = decide_and_evolve(FoldedFlow(id="f2"), Submit(spec, plan(spec), "f1", reused), NOW)[1]
    assert rerun.unfinished == 1 and rerun.reused == {"ls"}
    assert rerun.tasks["p"].status == "pending" and "p" in rerun.fanout


def test_a_mapped_task_waiting_for_the_shell_gets_a_fanout_timer_so_a_crash_loses_nothing() -> None:
    spec = spec_of(LIST, task("p", depends=["ls"], map={"over": "files"}))
    submitted = decide_and_evolve(FoldedFlow(id="f"), Submit(spec, plan(spec)), NOW)[1]
    events, waiting = decide_and_evolve(submitted, succeed("ls"), NOW)
    batch = append_batch([sealed(Change(submitted, waiting, events))], Timing())
    assert [(t.task, t.kind, t.attempt) for t in batch.timers_due] == [("p", "fanout", 0)]
    events, expanded = decide_and_evolve(waiting, Expand("p", items=("a", "b")), NOW)
    batch = append_batch([sealed(Change(waiting, expanded, events))], Timing())
    assert not batch.timers_due and ("f", "p") in {
        (k.flow_id, k.task) for k in batch.timers_cleared
    }
    assert {row.name for row in batch.tasks} == {"p", "p[0]", "p[1]"}
