"""Submitting many flows at once: `Client.submit_many`, and `weir submit` with several files
or JSON lines on stdin, against the services running as processes."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from weir.client import Client
from weir.devstack import Stack
from weir_proto.events import event_type

from tests.e2e.test_cli import weir

pytestmark = pytest.mark.slow


def _spec(name: str) -> dict[str, object]:
    return {"name": name, "tasks": [{"name": "a", "cmd": ["true"]}]}


async def _outcomes(stack: Stack, flow_ids: list[str]) -> list[str]:
    async with await Client.connect(stack.nats_url) as client:
        finals = await asyncio.gather(
            *(asyncio.wait_for(client.wait(flow_id), 60) for flow_id in flow_ids)
        )
        names = [(await client.get(flow_id)).name for flow_id in flow_ids]
    return [f"{name}:{event_type(final)}" for name, final in zip(names, finals, strict=True)]


def test_submit_many_returns_the_ids_in_order_and_every_flow_runs(shared_stack: Stack) -> None:
    specs = [_spec(f"batch-{i}") for i in range(40)]
    specs[7] = {"id": "chosen-id-7", **specs[7]}

    async def submit() -> list[str]:
        async with await Client.connect(shared_stack.nats_url) as client:
            return await client.submit_many(specs)

    flow_ids = asyncio.run(submit())
    assert len(flow_ids) == 40 and len(set(flow_ids)) == 40
    assert flow_ids[7] == "chosen-id-7"
    outcomes = asyncio.run(_outcomes(shared_stack, flow_ids))
    assert outcomes == [f"batch-{i}:flow_succeeded" for i in range(40)]


def test_weir_submit_queues_several_files_and_json_lines(
    shared_stack: Stack, tmp_path: Path
) -> None:
    files = []
    for name in ("one", "two"):
        path = tmp_path / f"{name}.yaml"
        path.write_text(f"name: {name}\ntasks:\n  - {{name: a, cmd: ['true']}}\n")
        files.append(str(path))
    from_files = weir(shared_stack, "submit", *files)
    assert from_files.returncode == 0, from_files.stderr
    file_ids = from_files.stdout.split()

    lines = "".join(json.dumps(_spec(f"line-{i}")) + "\n" for i in range(3))
    from_stdin = weir(shared_stack, "submit", "-", "--json", stdin=lines + "\n")
    assert from_stdin.returncode == 0, from_stdin.stderr
    answers = [json.loads(row) for row in from_stdin.stdout.splitlines()]
    assert [a["verdict"] for a in answers] == ["queued"] * 3

    outcomes = asyncio.run(_outcomes(shared_stack, file_ids + [a["flow_id"] for a in answers]))
    assert outcomes == [
        "one:flow_succeeded",
        "two:flow_succeeded",
        "line-0:flow_succeeded",
        "line-1:flow_succeeded",
        "line-2:flow_succeeded",
    ]


def test_a_batch_with_bad_specs_names_every_problem_and_queues_nothing(
    stack: Stack, tmp_path: Path
) -> None:
    good = tmp_path / "good.yaml"
    good.write_text("name: good\ntasks:\n  - {name: a, cmd: ['true']}\n")
    empty = tmp_path / "empty.yaml"
    empty.write_text("name: empty\n")
    lines = json.dumps(_spec("fine")) + "\n" + '{"name": "broken", "tasks": [{"name": 1}]}\n'

    bad_files = weir(stack, "submit", str(good), str(empty))
    assert bad_files.returncode == 2 and bad_files.stdout == ""
    assert f'{empty}: flow "empty": tasks: required field is missing' in bad_files.stderr
    assert str(good) not in bad_files.stderr and "Traceback" not in bad_files.stderr
    bad_lines = weir(stack, "submit", "-", stdin=lines)
    assert bad_lines.returncode == 2 and bad_lines.stdout == ""
    assert "stdin line 2" in bad_lines.stderr and "stdin line 1" not in bad_lines.stderr

    for options in (["--wait"], ["--id", "one-id"]):
        misuse = weir(stack, "submit", str(good), str(good), *options)
        assert misuse.returncode == 2 and misuse.stdout == ""
        assert "takes one flow, and 2 were given" in misuse.stderr
    listed = json.loads(weir(stack, "flows", "--json").stdout)
    assert listed == []
