"""Dynamic fan-out on real Postgres + NATS: a mapped task runs once per item of a list an
upstream task wrote, its instances retry and show as tasks of their own, and a downstream
task gets their outputs as one JSON list in item order."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from pathlib import Path
from typing import Any

from rich.console import Console
from weir.cli.output import flow_details
from weir.client import Client
from weir.config import Settings
from weir.spec_file import load_spec_text
from weir.telemetry.timeline import flow_timeline
from weir_proto.events import TaskExpanded, TaskFailed, event_type

from tests.conftest import Services
from tests.flows import WAIT, all_succeeded, ended, finish, shell, task, task_views, tasks_of, types

QUICK_RETRY = {"max_attempts": 2, "backoff": {"strategy": "constant", "base": 0.1}}


def listing(items: str) -> dict[str, Any]:
    """A task writing `items` (JSON text) as its output `files`."""
    return shell(
        "list-files",
        f"printf '%s' '{items}' > files.json",
        outputs=[{"name": "files", "path": "files.json"}],
    )


def mapped(script: str, **extra: Any) -> dict[str, Any]:
    return shell(
        "process",
        script,
        depends=["list-files"],
        outputs=[{"name": "sizes", "path": "out.json"}],
        **({"map": {"over": "files"}, "retry": QUICK_RETRY} | extra),
    )


def collector(got: Path) -> dict[str, Any]:
    return task(
        "total",
        "cp",
        "in.json",
        str(got),
        depends=["process"],
        inputs=[{"from": "sizes", "path": "in.json"}],
    )


def list_map_collect(
    name: str, items: str, script: str, got: Path, **process: Any
) -> dict[str, Any]:
    """The flow `name`: "list-files" writes `items` (JSON text), "process" runs `script` for
    each (its `process` fields added), "total" copies the list of their outputs to `got`."""
    return {"name": name, "tasks": [listing(items), mapped(script, **process), collector(got)]}


async def test_a_map_runs_one_instance_per_item_retries_one_and_hands_on_the_list_in_order(
    client: Client, tmp_path: Path
) -> None:
    got = tmp_path / "got.json"
    failed_once = tmp_path / "failed-once"
    script = (
        f'if [ "{{{{ item }}}}" = b.csv ] && [ ! -e {failed_once} ]; then '
        f"touch {failed_once}; exit 1; fi; "
        'printf \'{"file": %s, "item": "%s"}\' "$WEIR_ITEM" "{{ item }}" > out.json; '
        'echo "done {{ item }}"'
    )
    spec = list_map_collect("per-file", '["a.csv", "b.csv", "c.csv"]', script, got)
    flow_id, events = await finish(client, spec)
    assert types(events)[-1] == "flow_succeeded", events[-1]
    expanded = [e for e in events if isinstance(e, TaskExpanded)]
    assert [(e.task, e.count, e.items) for e in expanded] == [
        ("process", 3, ["a.csv", "b.csv", "c.csv"])
    ]
    retried = [e.task for e in events if event_type(e) == "task_attempt_failed"]  # type: ignore[union-attr]
    assert retried == ["process[1]"]
    assert json.loads(got.read_text()) == [
        {"file": "a.csv", "item": "a.csv"},
        {"file": "b.csv", "item": "b.csv"},
        {"file": "c.csv", "item": "c.csv"},
    ]
    view = await task_views(client, flow_id)
    assert {n: view[n].status for n in ("process[0]", "process[1]", "process[2]")} == {
        "process[0]": "succeeded",
        "process[1]": "succeeded",
        "process[2]": "succeeded",
    }
    assert view["process[1]"].attempt == 2
    shown = Console(width=200, record=True)
    for part in flow_details(await client.get(flow_id)):
        shown.print(part)
    table = shown.export_text()
    assert all(f"process[{i}]" in table for i in range(3)), table
    traced = {(a.task, a.attempt) for a in flow_timeline(events).attempts}
    assert {("process[1]", 1), ("process[1]", 2), ("process[2]", 1)} <= traced
    assert not any(task == "process" for task, _ in traced)
    logs = [chunk async for _, chunk in client.logs(flow_id, "process[1]", attempt=2)]
    assert b"".join(logs) == b"done b.csv\n"
    assert view["process"].status == "succeeded" and view["total"].status == "succeeded"


async def test_a_retry_of_one_failed_instance_runs_it_alone_and_the_flow_then_succeeds(
    client: Client, tmp_path: Path
) -> None:
    got, fixed, runs = tmp_path / "got.json", tmp_path / "fixed", tmp_path / "runs"
    script = (
        f'echo "{{{{ item }}}}" >> {runs}; '
        f'if [ "{{{{ item }}}}" = b.csv ] && [ ! -e {fixed} ]; then exit 3; fi; '
        'printf \'"%s"\' "{{ item }}" > out.json'
    )
    once = {"max_attempts": 1}
    spec = list_map_collect("fix-one", '["a.csv", "b.csv", "c.csv"]', script, got, retry=once)
    flow_id, events = await finish(client, spec)
    assert types(events)[-1] == "flow_failed", events[-1]
    failed = next(e for e in events if isinstance(e, TaskFailed) and e.task == "process")
    assert failed.message == '1 of 3 instances failed: "process[1]"'
    assert not got.exists(), "the gather skipped"

    fixed.touch()
    stepped = await client.retry(flow_id, "process[1]")
    assert (stepped.status, stepped.tasks) == ("running", ["process", "total", "process[1]"])
    events = await ended(client, flow_id, stepped.seq)
    assert types(events)[-1] == "flow_succeeded", events[-1]
    assert json.loads(got.read_text()) == ["a.csv", "b.csv", "c.csv"]
    assert sorted(runs.read_text().split()) == ["a.csv", "b.csv", "b.csv", "c.csv"]
    assert [e.task for e in events if isinstance(e, TaskExpanded)] == ["process"]
    view = await tasks_of(client, flow_id)
    assert view == all_succeeded(
        {
            "list-files": 1,
            "process": 0,
            "total": 1,
            "process[0]": 1,
            "process[1]": 2,
            "process[2]": 1,
        }
    )


async def test_a_map_over_an_empty_list_succeeds_and_hands_on_an_empty_list(
    client: Client, tmp_path: Path
) -> None:
    got = tmp_path / "got.json"
    spec = list_map_collect("nothing-to-do", "[]", "echo 1 > out.json", got)
    _, events = await finish(client, spec)
    assert types(events)[-1] == "flow_succeeded", events[-1]
    assert [e.count for e in events if isinstance(e, TaskExpanded)] == [0]
    assert json.loads(got.read_text()) == []
    dispatched = [e.task for e in events if event_type(e) == "task_dispatched"]  # type: ignore[union-attr]
    assert dispatched == ["list-files", "total"]


async def test_a_list_over_max_items_fails_the_flow_naming_task_count_and_limit(
    client: Client, tmp_path: Path
) -> None:
    got = tmp_path / "got.json"
    at_most_two = {"over": "files", "max_items": 2}
    spec = list_map_collect(
        "too-many", '["a", "b", "c"]', "echo 1 > out.json", got, map=at_most_two
    )
    flow_id, events = await finish(client, spec)
    assert types(events)[-1] == "flow_failed"
    assert events[-1].failed_tasks == ["process"]  # type: ignore[union-attr]
    failure = next(e for e in events if isinstance(e, TaskFailed))
    assert failure.error_type == "map"
    assert failure.message == (
        'task "process": map.over output "files" has 3 items; the limit is 2 (map.max_items)'
    )
    assert "task_expanded" not in types(events) and not got.exists()
    view = await task_views(client, flow_id)
    assert view["total"].status == "skipped"


async def test_a_list_that_is_not_json_fails_the_mapped_task_clearly(client: Client) -> None:
    spec = {"name": "not-a-list", "tasks": [listing("a.csv b.csv"), mapped("true")]}
    _, events = await finish(client, spec)
    assert types(events)[-1] == "flow_failed"
    failure = next(e for e in events if isinstance(e, TaskFailed))
    assert failure.task == "process" and failure.error_type == "map"
    assert failure.message.startswith('task "process": map.over output "files" is not JSON')


async def test_map_over_an_output_that_is_not_upstream_is_rejected_with_every_problem(
    client: Client,
) -> None:
    spec = {
        "name": "bad-map",
        "tasks": [
            listing("[]"),
            task("a", map={"over": "files"}),
            task("b", "echo", "{{ item }}", depends=["list-files"], map={"over": "nope"}),
            task("c", "echo", "{{ item }}"),
        ],
    }
    verdict = await client.submit(spec, verdict=True)
    assert verdict.verdict == "rejected"
    assert sorted((e.path, e.message) for e in verdict.errors) == [
        (
            "$.tasks[1].map.over",
            'flow "bad-map": task "a": map.over "files" comes from task "list-files", '
            "which is not one of its dependencies; add it to depends",
        ),
        (
            "$.tasks[2].map.over",
            'flow "bad-map": task "b": map.over "nope" is not an output of any task '
            "(outputs of its dependencies: files)",
        ),
        (
            "$.tasks[3]",
            'flow "bad-map": task "c": uses {{ item }} but is not mapped; '
            "add map: {over: OUTPUT} or remove the placeholder",
        ),
    ]


async def test_the_map_files_example_counts_every_file_in_order(client: Client) -> None:
    example = Path(__file__).resolve().parents[2] / "examples" / "map-files.yaml"
    spec = load_spec_text(example.read_text(), str(example))
    flow_id, events = await finish(client, spec)
    assert types(events)[-1] == "flow_succeeded", events[-1]
    view = await task_views(client, flow_id)
    instances = [n for n in view if n.startswith("count-lines[")]
    assert sorted(instances) == ["count-lines[0]", "count-lines[1]", "count-lines[2]"]
    out = [chunk async for stream, chunk in client.logs(flow_id, "total") if stream == "stdout"]
    assert b"".join(out).strip() == b"6"


async def test_a_list_that_brings_the_flow_to_weir_max_tasks_runs_and_one_past_it_fails_it(
    settings: Settings, tmp_path: Path
) -> None:
    running = await Services.start(dataclasses.replace(settings, max_tasks=6))
    try:
        async with await Client.connect(settings.nats_url) as client:
            at_limit = list_map_collect(
                "as-wide-as-allowed", "[1, 2, 3]", "printf 1 > out.json", tmp_path / "f"
            )
            _, fitting = await finish(client, at_limit)  # 3 tasks and 3 instances: 6
            spec = list_map_collect("too-wide", "[1, 2, 3, 4]", "true", tmp_path / "g")
            _, events = await finish(client, spec)
    finally:
        await running.stop()
    assert types(fitting)[-1] == "flow_succeeded"
    assert next(e for e in fitting if isinstance(e, TaskExpanded)).count == 3
    assert types(events)[-1] == "flow_failed"
    failure = next(e for e in events if isinstance(e, TaskFailed))
    assert (failure.task, failure.error_type) == ("process", "map")
    assert failure.message == (
        'task "process": map.over output "files" has 4 items: the flow would have 7 tasks; '
        "the limit is 6 (WEIR_MAX_TASKS): map over fewer items or raise the scheduler's "
        "WEIR_MAX_TASKS"
    )


async def test_a_rerun_of_failed_tasks_maps_again_over_the_list_the_first_run_stored(
    client: Client, tmp_path: Path
) -> None:
    got = tmp_path / "got.json"
    fixed = tmp_path / "fixed"
    script = f'[ "{{{{ item }}}}" != b ] || [ -e {fixed} ] || exit 1; echo 1 > out.json'
    spec = list_map_collect("fix-and-rerun", '["a", "b"]', script, got)
    flow_id, events = await finish(client, spec)
    assert types(events)[-1] == "flow_failed"
    failure = next(e for e in events if isinstance(e, TaskFailed) and e.task == "process")
    assert failure.message == '1 of 2 instances failed: "process[1]"'
    fixed.touch()
    again = (await client.rerun(flow_id, failed_only=True)).flow_id
    await asyncio.wait_for(client.wait(again), WAIT)
    events = [e async for e in client.events(again)]
    assert types(events)[-1] == "flow_succeeded", events[-1]
    dispatched = [e.task for e in events if event_type(e) == "task_dispatched"]  # type: ignore[union-attr]
    assert "list-files" not in dispatched and json.loads(got.read_text()) == [1, 1]
