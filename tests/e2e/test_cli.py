"""`weir` as a user runs it, against the services running as processes."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from weir.devstack import Stack

from tests.cli import run_weir

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def weir(stack: Stack, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return run_weir(*args, nats_url=stack.nats_url, stdin=stdin)


def test_submit_wait_show_events_and_list(stack: Stack) -> None:
    done = weir(stack, "submit", str(REPO / "examples" / "diamond.yaml"), "--wait")
    assert done.returncode == 0, done.stderr
    flow_id, result = done.stdout.split()
    assert result == "flow_succeeded"

    shown = weir(stack, "show", flow_id)
    assert shown.returncode == 0
    for name in ("fetch", "upper", "count", "report"):
        assert name in shown.stdout
    assert "succeeded" in shown.stdout

    view = json.loads(weir(stack, "show", flow_id, "--json").stdout)
    assert view["status"] == "succeeded"
    assert [t["name"] for t in view["tasks"]] == ["report", "fetch", "upper", "count"]

    history = weir(stack, "events", flow_id, "--json")
    events = [json.loads(line) for line in history.stdout.splitlines()]
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert events[0]["type"] == "flow_submitted" and events[-1]["type"] == "flow_succeeded"
    assert "task_started" in weir(stack, "events", flow_id).stdout

    listed = json.loads(weir(stack, "flows", "--json").stdout)
    assert [f["id"] for f in listed] == [flow_id]


def test_failed_flow_exits_1_and_follow_prints_events(shared_stack: Stack, tmp_path: Path) -> None:
    flow = tmp_path / "fails.yaml"
    flow.write_text(
        "name: fails\ndefaults: {retry: {max_attempts: 1}}\n"
        "tasks:\n  - name: boom\n    cmd: [sh, -c, 'echo kaput >&2; exit 4']\n"
    )
    run = weir(shared_stack, "submit", str(flow), "--follow")
    assert run.returncode == 1
    assert "task_failed" in run.stdout and "flow_failed" in run.stdout
    assert "kaput" in run.stdout


def test_invalid_flow_file_is_rejected_with_reasons(shared_stack: Stack, tmp_path: Path) -> None:
    flow = tmp_path / "cycle.yaml"
    flow.write_text(
        "name: loop\ntasks:\n"
        "  - {name: a, cmd: ['true'], depends: [b]}\n"
        "  - {name: b, cmd: ['true'], depends: [a]}\n"
    )
    run = weir(shared_stack, "submit", str(flow), "--wait")
    assert run.returncode == 1 and run.stdout == ""
    assert "flow rejected (recorded as " in run.stderr
    assert 'flow "loop": has a dependency cycle: a -> b -> a' in run.stderr


def test_submit_reads_stdin_and_rejects_files_that_are_not_flows(shared_stack: Stack) -> None:
    doc = '{"name": "s", "tasks": [{"name": "a", "cmd": ["true"]}]}'
    run = weir(shared_stack, "submit", "-", "--wait", stdin=doc)
    assert run.returncode == 0, run.stderr
    bad = weir(shared_stack, "submit", "-", stdin="- just\n- a list\n")
    assert bad.returncode == 2 and "must hold a mapping" in bad.stderr


def test_logs_trace_cancel_rerun_and_where(shared_stack: Stack, tmp_path: Path) -> None:
    flow = tmp_path / "talky.yaml"
    flow.write_text(
        "name: talky\ntags: [nightly]\ndefaults: {retry: {max_attempts: 1}}\ntasks:\n"
        "  - name: say\n    cmd: [sh, -c, 'echo hello out; echo hello err >&2']\n"
        "  - name: fail\n    depends: [say]\n    cmd: [sh, -c, 'exit 3']\n"
    )
    run = weir(shared_stack, "submit", str(flow), "--wait")
    assert run.returncode == 1
    flow_id = run.stdout.split()[0]
    logs = weir(shared_stack, "logs", flow_id, "say")
    assert logs.stdout == "hello out\n" and "hello err" in logs.stderr
    trace = weir(shared_stack, "trace", flow_id)
    assert trace.returncode == 0 and "say" in trace.stdout and "trace id" in trace.stdout
    rerun = weir(shared_stack, "rerun", flow_id, "--failed-only")
    assert rerun.returncode == 0
    assert (
        json.loads(weir(shared_stack, "show", rerun.stdout.strip(), "--json").stdout)["rerun_of"]
        == flow_id
    )
    found = json.loads(
        weir(
            shared_stack, "flows", "--where", "tag=nightly and not status=running", "--json"
        ).stdout
    )
    assert flow_id in [f["id"] for f in found]
    bad = weir(shared_stack, "flows", "--where", "colour=red")
    assert bad.returncode == 2 and 'unknown field "colour"' in bad.stderr
    assert "fields of flows: id, status, name, queue" in bad.stderr
    talky = json.loads(
        weir(shared_stack, "flows", "--where", "name='talky' and tag=\"nightly\"", "--json").stdout
    )
    assert flow_id in [f["id"] for f in talky]
    unclosed = weir(shared_stack, "flows", "--where", 'name="nightly etl')
    assert unclosed.returncode == 2 and 'column 6: the " that starts here' in unclosed.stderr
    slow = tmp_path / "slow.yaml"
    slow.write_text("name: slow\ntasks:\n  - {name: nap, cmd: [sleep, '30']}\n")
    slow_id = weir(shared_stack, "submit", str(slow)).stdout.strip()
    cancelled = weir(shared_stack, "cancel", slow_id)
    assert cancelled.returncode == 0 and slow_id in cancelled.stdout
    waited = weir(shared_stack, "events", slow_id, "--follow")
    assert "flow_cancelled" in waited.stdout


def test_submit_with_params_and_show_the_skip_reasons(shared_stack: Stack) -> None:
    example = str(REPO / "examples" / "etl-params.yaml")
    done = weir(shared_stack, "submit", example, "-p", "date=2026-12-01", "-p", "rows=4", "--wait")
    assert done.returncode == 0, done.stderr
    flow_id, result = done.stdout.split()
    assert result == "flow_succeeded"
    view = json.loads(weir(shared_stack, "show", flow_id, "--json").stdout)
    tasks = {t["name"]: t for t in view["tasks"]}
    assert tasks["publish"]["status"] == "skipped"
    assert tasks["publish"]["error_message"] == 'condition is false: params.env == "prod"'
    assert tasks["cleanup"]["status"] == tasks["report"]["status"] == "succeeded"
    shown = weir(shared_stack, "show", flow_id).stdout
    assert 'condition is false: params.env == "prod"' in shown
    assert "params: date=2026-12-01  env=dev  rows=4" in shown  # the default filled in
    assert view["params"] == {"date": "2026-12-01", "env": "dev", "rows": 4}

    missing = weir(shared_stack, "submit", example, "-p", "rows=x")
    assert missing.returncode == 1
    assert '"rows" is int: expected a whole number, got the string "x"' in missing.stderr
    assert 'parameter "date" (the day to load, YYYY-MM-DD) is required' in missing.stderr
    assert weir(shared_stack, "submit", example, "-p", "date").returncode == 2


@pytest.mark.timeout(300)  # some 20 commands, each a process that mostly starts up
def test_tasks_across_flows_counts_in_flows_and_schedule_params(
    stack: Stack, tmp_path: Path
) -> None:
    flow = tmp_path / "gpu.yaml"
    flow.write_text(
        "name: gpu-job\ndefaults: {retry: {max_attempts: 1}}\ntasks:\n"
        "  - {name: prep, cmd: ['true']}\n"
        "  - {name: train, depends: [prep], queue: default, cmd: [sh, -c, 'exit 3']}\n"
    )
    ids = [weir(stack, "submit", str(flow), "--wait").stdout.split()[0] for _ in range(2)]
    failed = weir(stack, "tasks", "--where", "status=failed and queue=default", "--json")
    assert failed.returncode == 0, failed.stderr
    rows = [(t["flow_id"], t["name"], t["status"]) for t in json.loads(failed.stdout)]
    assert [r for r in rows if r[0] in ids] == [(i, "train", "failed") for i in reversed(ids)]
    table = weir(stack, "tasks", "--where", f"flow={ids[0]}")
    assert "prep" in table.stdout and "train" in table.stdout and "failed" in table.stdout
    listed = weir(stack, "flows", "--where", f"id={','.join(ids)}")
    assert listed.returncode == 0 and "RUN" in listed.stdout
    counts = json.loads(weir(stack, "flows", "--where", f"id={ids[0]}", "--json").stdout)
    assert counts[0]["task_counts"] == {"succeeded": 1, "failed": 1}
    bad = weir(stack, "tasks", "--where", "tag=x")
    assert bad.returncode == 2
    assert 'unknown field "tag"' in bad.stderr and "fields of tasks: flow, flow_name" in bad.stderr

    example = str(REPO / "examples" / "etl-params.yaml")
    refused = weir(stack, "schedule", "create", "nightly", example, "--cron", "0 3 * * *",
                   "-p", "rows=many", "-p", "colour=red")  # fmt: skip
    assert refused.returncode == 1
    assert '"rows" is int: expected a whole number' in refused.stderr
    assert 'unknown parameter "colour"' in refused.stderr
    assert 'parameter "date" (the day to load, YYYY-MM-DD) is required' in refused.stderr
    made = weir(stack, "schedule", "create", "nightly", example, "--cron", "0 3 * * *",
                "-p", "date={{ schedule.time }}", "-p", "rows=5")  # fmt: skip
    assert made.returncode == 0, made.stderr
    (view,) = json.loads(weir(stack, "schedule", "list", "--json").stdout)
    assert view["params"] == {"date": "{{ schedule.time }}", "rows": "5"}
    assert "PARAMS" in weir(stack, "schedule", "list").stdout
    assert weir(stack, "schedule", "delete", "nightly").returncode == 0


def test_a_map_over_files_shows_its_instances_their_logs_and_its_trace(shared_stack: Stack) -> None:
    done = weir(shared_stack, "submit", str(REPO / "examples" / "map-files.yaml"), "--wait")
    assert done.returncode == 0, done.stderr
    flow_id, result = done.stdout.split()
    assert result == "flow_succeeded"
    shown = weir(shared_stack, "show", flow_id).stdout
    assert all(f"count-lines[{i}]" in shown for i in range(3)), shown
    assert weir(shared_stack, "logs", flow_id, "total").stdout == "6\n"
    logs = weir(shared_stack, "logs", flow_id, "count-lines[2]")
    assert logs.returncode == 0, logs.stderr
    events = weir(shared_stack, "events", flow_id).stdout
    assert "task_expanded" in events and "count=3" in events
    trace = weir(shared_stack, "trace", flow_id)
    assert trace.returncode == 0 and "count-lines[1]" in trace.stdout, trace.stdout
