"""`trigger=`, `when=` and `@flow.on_exit` in the SDK: the spec a YAML file would give,
`run_local()` deciding as the scheduler decides, and every misuse reported at once."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import msgspec
import pytest
import yaml
from weir import Flow
from weir.sdk import FlowDefinitionError
from weir_proto.status import TaskStatus
from weir_scheduler.planner import plan
from weir_scheduler.planner.reading import decode

from tests.flows import by_status
from tests.sdk.pipelines import guarded

ENTRY = ["python", "-m", "weir.sdk.entry", "tests/sdk/pipelines.py"]


def cmd(task: str) -> str:
    return str([*ENTRY, task, "--flow", "guarded"])


GUARDED_YAML = f"""
name: guarded
defaults: {{retry: 1, timeout: 60}}
params:
  env: dev
  fail: false
tasks:
  - name: decide
    cmd: {cmd("decide")}
    outputs: [{{name: decide, path: _weir/output}}]
  - name: deploy
    cmd: {cmd("deploy")}
    depends: [decide]
    when: tasks.decide.outputs.decide == "go"
    outputs: [{{name: deploy, path: _weir/output}}]
  - name: hold
    cmd: {cmd("hold")}
    depends: [decide]
    when: tasks.decide.outputs.decide == "stop"
    outputs: [{{name: hold, path: _weir/output}}]
  - name: join
    cmd: {cmd("join")}
    depends: [deploy, hold]
    trigger: one_success
    outputs: [{{name: join, path: _weir/output}}]
  - name: load
    cmd: {cmd("load")}
    depends: [join]
    outputs: [{{name: load, path: _weir/output}}]
  - name: publish
    cmd: {cmd("publish")}
    depends: [load]
    when: params.env == "prod"
    outputs: [{{name: publish, path: _weir/output}}]
  - name: cleanup
    cmd: {cmd("cleanup")}
    depends: [load]
    trigger: all_done
    outputs: [{{name: cleanup, path: _weir/output}}]
  - name: alert
    cmd: {cmd("alert")}
    depends: [load]
    trigger: one_failed
    outputs: [{{name: alert, path: _weir/output}}]
on_exit:
  name: report
  cmd: {cmd("report")}
  outputs: [{{name: report, path: _weir/output}}]
"""


def statuses(run: Any) -> dict[str, str]:
    return {name: str(task.status) for name, task in run.tasks.items()}


def reasons(run: Any) -> dict[str, str | None]:
    return {name: task.reason for name, task in run.tasks.items() if task.status == "skipped"}


def test_the_sdk_builds_the_spec_its_yaml_twin_gives() -> None:
    built = guarded.spec(entrypoint="tests/sdk/pipelines.py", python="python")
    from_yaml = decode(msgspec.json.encode(yaml.safe_load(GUARDED_YAML)))
    assert decode(msgspec.json.encode(built)) == from_yaml
    planned = plan(built)  # and the scheduler accepts it
    assert planned.on_exit == "report"
    assert sorted(planned.conditions) == ["deploy", "hold", "publish"]


def test_a_branch_is_taken_by_an_upstream_output_and_the_other_skipped_with_the_reason() -> None:
    run = guarded.run_local(env="prod")
    assert run.status == "succeeded"
    assert run["deploy"] == "deployed" and "hold" not in run
    assert reasons(run) == {
        "hold": 'condition is false: tasks.decide.outputs.decide == "stop"',
        "alert": "trigger one_failed: no upstream task failed",
    }
    assert run["report"] == "prod: succeeded"


def test_a_condition_over_a_param_skips_the_task_and_the_flow_still_succeeds() -> None:
    run = guarded.run_local()
    assert run.status == "succeeded"
    assert reasons(run)["publish"] == 'condition is false: params.env == "prod"'
    assert run["hold"] == "held" and run["join"] is None  # one_success after a skipped branch
    assert run["report"] == "dev: succeeded"


def test_cleanup_and_alert_run_after_a_failure_and_the_flow_still_fails() -> None:
    run = guarded.run_local_outcome(fail=True)
    assert run.status == "failed"
    assert by_status(run.tasks) == {
        "succeeded": {"decide", "hold", "join", "cleanup", "alert", "report"},
        "skipped": {"deploy", "publish"},
        "failed": {"load"},
    }
    assert reasons(run)["publish"] == 'upstream task "load" failed'
    assert run.tasks["load"].exit_code == 1
    assert run["cleanup"] == "cleaned" and run["alert"] == "paged"
    assert run["report"] == "dev: failed"  # the on-exit task got the outcome, and ran last
    assert list(run.tasks)[-1] == "report"
    assert list(run.errors) == ["load"]


def test_run_local_raises_the_failure_only_after_cleanup_and_the_on_exit_task_ran() -> None:
    flow = Flow("raises-late")
    seen: list[str] = []

    @flow.task
    def work() -> None:
        raise RuntimeError("disk on fire")

    @flow.task(depends=[work], trigger="all_done")
    def tidy() -> None:
        seen.append("tidy")

    @flow.on_exit
    def finally_(flow_status: str) -> None:
        seen.append(flow_status)

    with pytest.raises(RuntimeError, match="disk on fire") as caught:
        flow.run_local()
    assert caught.value.__notes__ == ['in task "work" of flow "raises-late" (run_local)']
    assert seen == ["tidy", "failed"]


def test_a_failure_skips_unrelated_work_not_started_and_a_failing_on_exit_fails_the_flow() -> None:
    flow = Flow("failing")

    @flow.task
    def first() -> int:
        return 1

    @flow.task
    def broken() -> int:
        raise ValueError("bad row")

    @flow.task(depends=[first])
    def later() -> None: ...

    @flow.task(depends=[first], trigger="none_failed")
    def tolerant() -> None: ...

    @flow.on_exit
    def notify() -> None:
        raise OSError("mail server down")

    run = flow.run_local_outcome()
    assert run.status == "failed"
    assert reasons(run) == {
        "later": 'flow is failing: task "broken" failed',
        "tolerant": 'flow is failing: task "broken" failed',
    }
    assert run.tasks["notify"].status is TaskStatus.FAILED
    assert list(run.errors) == ["broken", "notify"]


def test_with_fail_fast_a_lone_failure_cancels_cleanup_and_the_on_exit_task_still_runs() -> None:
    flow = Flow("fast-alone", fail_fast=True)

    @flow.task
    def work() -> None:
        raise RuntimeError("disk on fire")

    @flow.task(depends=[work], trigger="all_done")
    def cleanup() -> None: ...

    @flow.task(depends=[work], trigger="one_failed")
    def alert() -> None: ...

    @flow.on_exit
    def report(flow_status: str) -> str:
        return flow_status

    run = flow.run_local_outcome()
    assert run.status == "failed"
    assert {n: (str(t.status), t.reason) for n, t in run.tasks.items() if n != "work"} == {
        "cleanup": ("cancelled", 'fail_fast: task "work" failed'),
        "alert": ("cancelled", 'fail_fast: task "work" failed'),
        "report": ("succeeded", None),
    }
    assert run["report"] == "failed"


def test_with_fail_fast_a_condition_failing_beside_running_work_cancels_the_rest() -> None:
    flow = Flow("fast", fail_fast=True)

    @flow.task(serializer="text")
    def big() -> str:
        return "x" * (64 * 1024 + 1)

    @flow.task(depends=[big])
    def sibling() -> None: ...  # handed out in the round the condition fails in

    @flow.task(when=f'{big.output} == "x"')
    def reader() -> None: ...

    @flow.task(depends=[sibling], trigger="all_done")
    def tidy() -> None: ...

    @flow.on_exit
    def report() -> None: ...

    run = flow.run_local_outcome()
    assert run.status == "failed"
    assert {n: (str(t.status), t.reason) for n, t in run.tasks.items() if n != "big"} == {
        "reader": (
            "failed",
            'task "reader": when: output "big" is 65,537 bytes; the limit is 65,536',
        ),
        "tidy": ("cancelled", 'fail_fast: task "reader" failed'),
        "report": ("succeeded", None),  # the on_exit task still runs last
        "sibling": ("succeeded", None),
    }


def test_trigger_rules_decide_as_the_scheduler_does() -> None:
    flow = Flow("rules")

    @flow.task
    def good() -> None: ...

    @flow.task(when="tasks.good.status == 'failed'")
    def never() -> None: ...

    @flow.task(depends=[good, never], trigger="all_failed")
    def all_failed() -> None: ...

    @flow.task(depends=[good, never], trigger="none_failed")
    def none_failed() -> None: ...

    @flow.task(depends=[good, never])
    def all_success() -> None: ...

    @flow.task(depends=[never], trigger="one_success")
    def one_success() -> None: ...

    run = flow.run_local_outcome()
    assert run.status == "succeeded"
    assert reasons(run) == {
        "never": "condition is false: tasks.good.status == 'failed'",
        "all-failed": 'trigger all_failed: upstream task "good" succeeded',
        "all-success": 'trigger all_success: upstream task "never" was skipped',
        "one-success": "trigger one_success: no upstream task succeeded",
    }
    assert run.tasks["none-failed"].status == "succeeded"


def test_an_exit_code_and_a_mapped_output_can_be_read_by_a_condition() -> None:
    flow = Flow("mapped-when")

    @flow.task(serializer="json")
    def items() -> list[int]:
        return [1, 2]

    @flow.task(map_over={"n": items})
    def double(n: int) -> int:
        return 2 * n

    @flow.task(when=f"{double.output} == {items.output} and tasks.items.exit_code == 0")
    def same() -> None: ...

    @flow.task(when=f"{double.output} != {items.output}")
    def different() -> None: ...

    run = flow.run_local_outcome()
    assert run["double"] == [2, 4]
    assert statuses(run)["double[1]"] == "succeeded"
    assert run.tasks["same"].status == "skipped" and run.tasks["different"].status == "succeeded"


def test_a_failed_instance_fails_the_mapped_task_and_its_all_done_dependent_still_runs() -> None:
    flow = Flow("mapped-failure")

    @flow.task(serializer="json")
    def items() -> list[int]:
        return [1, 0, 2]

    @flow.task(map_over={"n": items})
    def invert(n: int) -> float:
        return 1 / n

    @flow.task(depends=[invert], trigger="all_done")
    def tidy() -> str:
        return "tidied"

    run = flow.run_local_outcome()
    assert run.status == "failed"
    assert run.tasks["invert"].reason == '1 of 3 instances failed: "invert[1]"'
    assert statuses(run)["invert[0]"] == "succeeded" and run["tidy"] == "tidied"
    assert list(run.errors) == ["invert[1]"]


def test_an_output_a_condition_cannot_use_fails_the_task_as_on_the_scheduler() -> None:
    flow = Flow("huge")

    @flow.task(serializer="text")
    def big() -> str:
        return "x" * (64 * 1024 + 1)

    @flow.task(when=f'{big.output} == "x"')
    def reader() -> None: ...

    run = flow.run_local_outcome()
    assert run.status == "failed"
    assert run.tasks["reader"].reason == (
        'task "reader": when: output "big" is 65,537 bytes; the limit is 65,536'
    )


def test_every_misuse_of_trigger_when_and_on_exit_is_reported_at_once() -> None:
    flow = Flow("bad-rules")

    @flow.task
    def pickled() -> int:
        return 1

    misspelt: Any = "al_done"

    @flow.task(trigger=misspelt)
    def typo() -> None: ...

    @flow.task(when="params.env = 'prod'")
    def unparsable() -> None: ...

    @flow.task(when="params.region == 'eu' and tasks.ghost.status == 'failed'")
    def unknown() -> None: ...

    @flow.task(when=f"{pickled.output} == 1 and tasks.pickled.outputs.other == 2")
    def unreadable() -> None: ...

    @flow.task(when="tasks.itself.exit_code == 0", name="itself")
    def itself() -> None: ...

    @flow.on_exit
    def report(rows: int) -> None: ...

    misplaced: Any = {"when": "params.x == 1", "depends": [pickled]}

    @flow.on_exit(**misplaced)
    def again() -> None: ...

    @flow.task(depends=[report], when="tasks.report.status == 'failed'")
    def after() -> None: ...

    with pytest.raises(FlowDefinitionError) as caught:
        flow.check()
    expected = [
        ("typo", 'trigger: "al_done" is not one of all_done, all_failed, all_success, '),
        ("unparsable", "when: cannot read \"= 'prod'\" (at character 11)"),
        ("unknown", "when: reads params.region, which is not declared (params: none are"),
        ("unknown", 'when: reads tasks.ghost, but task "ghost" does not exist (tasks: pickled,'),
        (
            "unreadable",
            'when: reads the output of task "pickled", whose serializer is pickle; a condition '
            'reads an output as JSON or text: pass serializer="json" to task "pickled"',
        ),
        (
            "unreadable",
            "when: reads tasks.pickled.outputs.other, which is not an output of task pickled "
            "(outputs: pickled); declare it under the task's outputs (an SDK task's one output "
            "is named after it: tasks.pickled.outputs.pickled)",
        ),
        ("itself", "when: reads tasks.itself, the task itself"),
        ("after", "when: reads tasks.report, the on-exit task, which runs after every other"),
        ("after", 'waits for the on-exit task "report", which runs after every other task'),
        ("again", 'is a second on-exit task (the first is "report"); a flow has one'),
        ("again", "@flow.on_exit takes no depends, when (it runs after every other task"),
        (
            "report",
            'parameter "rows" is neither a flow parameter nor flow_status; an on-exit task '
            "takes no inputs",
        ),
    ]
    problems = caught.value.problems
    missing = [
        e
        for e in expected
        if not any(p.startswith(f'task "{e[0]}"') and e[1] in p for p in problems)
    ]
    assert not missing, problems


EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def run_example(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(EXAMPLES / "sdk_etl_params.py"), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_sdk_etl_example_is_the_twin_of_the_yaml_one() -> None:
    built = json.loads(run_example("--dry-run", "--format", "json").stdout)
    twin = yaml.safe_load((EXAMPLES / "etl-params.yaml").read_text())

    def shape(spec: dict[str, Any]) -> dict[str, Any]:
        return {
            "params": sorted(spec["params"]),
            "tasks": [
                (t["name"], t.get("depends", []), t.get("trigger"), t.get("when"))
                for t in spec["tasks"]
            ],
            "on_exit": spec["on_exit"]["name"],
        }

    assert shape(built) == shape(twin)


def test_the_sdk_etl_example_cleans_up_and_reports_a_failed_load() -> None:
    done = run_example("--local", "-p", "date=2026-12-02", "-p", "env=prod")
    assert done.returncode == 0, done.stderr
    assert "publish: 'publishing 2026-12-02'" in done.stdout
    assert done.stdout.rstrip().endswith("flow succeeded")

    failed = run_example("--local", "-p", "date=2026-12-03", "-p", "rows=0")
    assert failed.returncode == 1
    lines = failed.stdout.splitlines()
    assert 'publish: skipped: upstream task "load" failed' in lines
    assert "report: 'etl for 2026-12-03: failed'" in lines
    assert "ValueError" in failed.stderr and lines[-1] == "flow failed"
    assert not (Path(tempfile.gettempdir()) / "weir-etl-2026-12-03").exists()  # cleaned up

    invalid = run_example("--local", "-p", "rows=many")
    assert invalid.returncode == 2
    assert invalid.stderr.splitlines() == [
        'error: flow "sdk-etl-params": parameter "rows" is int: expected a whole number, got '
        'the string "many"',
        'error: flow "sdk-etl-params": parameter "date" is required and was not given; pass '
        "it with -p date=VALUE",
    ]
