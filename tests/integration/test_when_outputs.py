"""`when` conditions over an upstream output on real Postgres + NATS: the scheduler reads the
output from the artifact store, records what it read (`task_condition_read`), and runs the
branch it selects; the other is skipped with the reason and dependents follow their trigger
rules."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from weir.client import Client
from weir.spec_file import load_spec_text
from weir_proto.events import TaskConditionRead, TaskFailed

from tests.flows import finish, shell, task, task_views, types


def release(tmp_path: Path, write: str) -> dict[str, Any]:
    """check writes its decision (the shell command `write`, run in its directory);
    deploy runs on "go", hold on "stop"; smoke follows deploy; notify needs either."""
    return {
        "name": "release",
        "tasks": [
            shell("check", write, outputs=[{"name": "decision", "path": "decision.txt"}]),
            task(
                "deploy",
                "touch",
                str(tmp_path / "deployed"),
                depends=["check"],
                when='tasks.check.outputs.decision == "go"',
            ),
            task(
                "hold",
                "touch",
                str(tmp_path / "held"),
                depends=["check"],
                when='tasks.check.outputs.decision == "stop"',
            ),
            task("smoke", "touch", str(tmp_path / "smoked"), depends=["deploy"]),
            task("notify", depends=["deploy", "hold"], trigger="one_success"),
        ],
    }


async def test_go_runs_the_go_branch_and_stop_the_other_with_the_read_recorded(
    client: Client, tmp_path: Path
) -> None:
    flow_id, events = await finish(client, release(tmp_path, "echo go > decision.txt"))
    assert types(events)[-1] == "flow_succeeded", events[-1]
    reads = [e for e in events if isinstance(e, TaskConditionRead)]
    # One read serves both conditions (whichever task's timer fired first).
    assert [e.values for e in reads] == [{"decision": "go"}]
    assert (tmp_path / "deployed").exists() and (tmp_path / "smoked").exists()
    assert not (tmp_path / "held").exists()
    view = await task_views(client, flow_id)
    assert view["hold"].status == "skipped"
    assert view["hold"].error_message == (
        'condition is false: tasks.check.outputs.decision == "stop"'
    )
    assert view["notify"].status == "succeeded"

    stopped = tmp_path / "stop"
    stopped.mkdir()
    flow_id, events = await finish(client, release(stopped, "printf '\"stop\"' > decision.txt"))
    assert types(events)[-1] == "flow_succeeded", events[-1]
    assert (stopped / "held").exists() and not (stopped / "deployed").exists()
    view = await task_views(client, flow_id)
    assert (view["deploy"].status, view["smoke"].status) == ("skipped", "skipped")
    assert view["smoke"].error_message == 'trigger all_success: upstream task "deploy" was skipped'
    assert view["notify"].status == "succeeded"


async def test_an_output_too_large_to_read_fails_the_task_with_the_limit(
    client: Client, tmp_path: Path
) -> None:
    write = "head -c 70000 /dev/zero | tr '\\0' x > decision.txt"
    flow_id, events = await finish(client, release(tmp_path, write))
    assert types(events)[-1] == "flow_failed", events[-1]
    assert "task_condition_read" not in types(events)
    # Whichever branch's timer fires first fails; the failing flow skips the other.
    (failed,) = [e for e in events if isinstance(e, TaskFailed)]
    assert failed.error_type == "condition"
    assert failed.message == (
        f'task "{failed.task}": when: output "decision" of task "check" is 70,000 bytes; '
        "the limit is 65,536"
    )
    view = {t.name: t.status for t in (await client.get(flow_id)).tasks}
    other = "hold" if failed.task == "deploy" else "deploy"
    assert (view[failed.task], view[other], view["smoke"]) == ("failed", "skipped", "skipped")
    assert not (tmp_path / "deployed").exists() and not (tmp_path / "held").exists()


async def test_a_condition_over_an_output_not_declared_is_rejected_at_submit(
    client: Client,
) -> None:
    spec = {
        "name": "bad",
        "tasks": [task("a"), task("b", depends=["a"], when='tasks.a.outputs.verdict == "go"')],
    }
    verdict = await client.submit(spec, verdict=True)
    assert verdict.verdict == "rejected"
    assert [(e.path, e.message) for e in verdict.errors] == [
        (
            "$.tasks[1].when",
            'flow "bad": task "b": when: reads tasks.a.outputs.verdict, which is not an output '
            "of task a (outputs: it declares none); declare it under the task's outputs",
        )
    ]


async def test_the_branch_on_output_example_takes_the_branch_its_verdict_names(
    client: Client,
) -> None:
    example = Path(__file__).resolve().parents[2] / "examples" / "branch-on-output.yaml"
    spec = load_spec_text(example.read_text(), str(example))
    for verdict, ran, skipped in (
        ("go", {"deploy", "smoke"}, {"hold"}),
        ("stop", {"hold"}, {"deploy", "smoke"}),
    ):
        flow_id, events = await finish(client, spec | {"arguments": {"verdict": verdict}})
        assert types(events)[-1] == "flow_succeeded", events[-1]
        view = {t.name: t.status for t in (await client.get(flow_id)).tasks}
        assert {n for n, s in view.items() if s == "skipped"} == skipped, view
        assert ran | {"check", "notify"} == {n for n, s in view.items() if s == "succeeded"}
