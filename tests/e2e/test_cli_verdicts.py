"""`weir submit` reports the scheduler's verdict; every status shows; a question about
something that does not exist gets an error naming it. The real CLI against the services."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from weir.devstack import Stack

from tests.cli import run_weir
from tests.e2e.test_cli import weir

pytestmark = pytest.mark.slow

CLI_AT_ONCE = 3
"""CLI processes run at once where a test asks many independent questions."""
SLEEPER = "name: sleeper\nunique: {key: nightly}\ntasks:\n  - {name: nap, cmd: [sleep, '60']}\n"


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


@pytest.mark.timeout(300)  # 36 commands, each a process that mostly starts up
def test_scheduled_duplicate_and_cancelled_flows_show_without_markup_errors(
    stack: Stack, tmp_path: Path
) -> None:
    later = write(
        tmp_path, "later.yaml", "name: later\ndelay: 3600\ntasks:\n  - {name: a, cmd: ['true']}\n"
    )
    scheduled = weir(stack, "submit", later)
    assert scheduled.returncode == 0, scheduled.stderr
    holder = weir(stack, "submit", write(tmp_path, "sleeper.yaml", SLEEPER))
    assert holder.returncode == 0, holder.stderr
    holder_id = holder.stdout.strip()

    duplicate = weir(stack, "submit", str(tmp_path / "sleeper.yaml"))
    assert duplicate.returncode == 1
    assert f"flow {holder_id} (" in duplicate.stderr and "duplicate" in duplicate.stderr
    as_json = json.loads(weir(stack, "submit", str(tmp_path / "sleeper.yaml"), "--json").stdout)
    assert as_json["verdict"] == "duplicate" and as_json["existing"] == holder_id

    assert weir(stack, "cancel", holder_id).returncode == 0
    assert "flow_cancelled" in weir(stack, "events", holder_id, "--follow").stdout
    [duplicate_id, *_] = [
        f["id"] for f in json.loads(weir(stack, "flows", "--status", "duplicate", "--json").stdout)
    ]
    statuses_of = {
        scheduled.stdout.strip(): "scheduled",
        duplicate_id: "duplicate",
        holder_id: "cancelled",
    }
    asked = [
        (command, flow_id, *extra)
        for flow_id in statuses_of
        for command in ("show", "trace", "events")
        for extra in ((), ("--json",))
    ]
    with ThreadPoolExecutor(CLI_AT_ONCE) as pool:  # each is a process that mostly starts up
        runs = list(pool.map(lambda args: weir(stack, *args), asked))
    for args, run in zip(asked, runs, strict=True):
        assert run.returncode == 0, (args, run.stderr)
        assert "Traceback" not in run.stderr and "MarkupError" not in run.stderr
        command, flow_id, *extra = args
        if command == "show" and not extra:
            assert statuses_of[flow_id] in run.stdout, args
    listed = weir(stack, "flows")
    assert listed.returncode == 0
    assert holder_id in listed.stdout and duplicate_id in listed.stdout
    statuses = {f["status"] for f in json.loads(weir(stack, "flows", "--json").stdout)}
    assert {"scheduled", "duplicate", "cancelled"} <= statuses


def test_a_reused_id_with_a_different_spec_is_refused_naming_its_flow(
    shared_stack: Stack, tmp_path: Path
) -> None:
    first = write(tmp_path, "a.yaml", "name: first\ntasks:\n  - {name: a, cmd: ['true']}\n")
    other = write(tmp_path, "b.yaml", "name: other\ntasks:\n  - {name: b, cmd: ['true']}\n")
    done = weir(shared_stack, "submit", first, "--id", "my-fixed-id", "--wait")
    assert done.returncode == 0 and done.stdout.split() == ["my-fixed-id", "flow_succeeded"]

    refused = weir(shared_stack, "submit", other, "--id", "my-fixed-id", "--wait")
    assert refused.returncode == 1
    assert "flow_succeeded" not in refused.stdout
    assert 'flow id "my-fixed-id" is already used by another flow' in refused.stderr
    recorded = refused.stderr.split("recorded as ")[1].split(")")[0]
    assert json.loads(weir(shared_stack, "show", recorded, "--json").stdout)["status"] == "rejected"

    again = weir(shared_stack, "submit", first, "--id", "my-fixed-id")
    assert again.returncode == 0 and again.stdout.strip() == "my-fixed-id"


def test_a_rejected_submit_exits_1_with_every_problem(shared_stack: Stack, tmp_path: Path) -> None:
    spec = write(
        tmp_path,
        "bad.yaml",
        "name: bad\ntasks:\n  - {name: a, cmd: ['true'], depends: [nowhere]}\n"
        "  - {name: b, cmd: ['true'], depends: [gone]}\n",
    )
    run = weir(shared_stack, "submit", spec)
    assert run.returncode == 1 and run.stdout == ""
    assert "flow rejected (recorded as " in run.stderr
    assert '"nowhere"' in run.stderr and '"gone"' in run.stderr
    verdict = json.loads(weir(shared_stack, "submit", spec, "--json").stdout)
    assert verdict["verdict"] == "rejected" and len(verdict["errors"]) == 2


def test_wait_on_a_failed_flow_names_the_failing_task_and_its_error(
    shared_stack: Stack, tmp_path: Path
) -> None:
    spec = write(
        tmp_path,
        "fails.yaml",
        "name: fails\ndefaults: {retry: {max_attempts: 1}}\n"
        "tasks:\n  - name: boom\n    cmd: [sh, -c, 'echo kaput >&2; exit 4']\n",
    )
    run = weir(shared_stack, "submit", spec, "--wait")
    assert run.returncode == 1 and run.stdout.split()[1] == "flow_failed"
    assert 'task "boom" attempt 1 (exit_code)' in run.stderr and "kaput" in run.stderr


def test_unknown_flows_and_attempts_are_errors_naming_them(
    shared_stack: Stack, tmp_path: Path
) -> None:
    artifacts = weir(shared_stack, "artifacts", "ls", "no-such-flow")
    assert artifacts.returncode == 1
    assert 'flow "no-such-flow" does not exist' in artifacts.stderr
    spec = write(tmp_path, "say.yaml", "name: say\ntasks:\n  - {name: hi, cmd: [echo, hi]}\n")
    flow_id = weir(shared_stack, "submit", spec, "--wait").stdout.split()[0]
    assert weir(shared_stack, "artifacts", "ls", flow_id).returncode == 0
    logs = weir(shared_stack, "logs", flow_id, "hi", "--attempt", "9")
    assert logs.returncode == 1
    assert f'task "hi" of flow {flow_id} has no attempt 9 (attempts: 1)' in logs.stderr
    assert weir(shared_stack, "logs", flow_id, "hi", "--attempt", "1").stdout == "hi\n"
    missing = weir(shared_stack, "logs", "no-such-flow", "hi")
    assert missing.returncode == 1 and 'flow "no-such-flow" does not exist' in missing.stderr


@pytest.mark.parametrize("command", [["flows"], ["submit", "-"], ["artifacts", "ls", "x"]])
def test_unreachable_nats_is_one_line(command: list[str]) -> None:
    doc = '{"name": "s", "tasks": [{"name": "a", "cmd": ["true"]}]}'
    run = run_weir(*command, stdin=doc, timeout=60)
    assert run.returncode == 2
    assert (
        run.stderr.splitlines() == [run.stderr.strip()]
        and "cannot reach NATS at nats://127.0.0.1:1: connection refused" in run.stderr
    )
