"""The task process (`python -m weir.sdk.entry`) run the way the local executor runs it, without
the services: the generated cmd works on this machine and a failure says why."""

from __future__ import annotations

import os
import runpy
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any, NamedTuple

from weir.sdk.entry import module_name_for
from weir_proto.spec import FlowSpec

FLOW_FILE = textwrap.dedent(
    """
    from dataclasses import dataclass
    from weir import Flow

    @dataclass
    class Point:
        x: int
        y: int

    flow = Flow("points")

    @flow.task
    def origin() -> Point:
        return Point(0, 0)

    @flow.task(inputs={"p": origin})
    def shift(p: Point) -> Point:
        return Point(p.x + 1, p.y + 2)

    @flow.task(inputs={"p": shift})
    def check(p: Point) -> str:
        if p != Point(1, 2):
            raise ValueError(f"wrong point {p}")
        return "argv stays whole: " + "a b"

    flow.main()  # unconditional: must do nothing inside a task process
    """
)


class Finished(NamedTuple):
    code: int
    stderr: str


def run_spec(spec: FlowSpec, root: Path, flow_id: str) -> list[Finished]:
    """Run the tasks one after another as the local executor does (they are in dependency
    order): each `cmd` as argv in its own work dir with the runner's env, inputs placed
    before, outputs kept after exit 0. Outputs are kept in `root/outputs`."""
    kept = root / "outputs"
    kept.mkdir(parents=True, exist_ok=True)
    finished = []
    for task in spec.tasks:
        work = root / f"{flow_id}-{task.name}-1" / "work"
        work.mkdir(parents=True)
        for item in task.inputs:
            target = work / item.path
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(kept / item.from_, target)
        done = subprocess.run(
            task.cmd,
            cwd=work,
            env={
                "PATH": os.environ["PATH"],
                "WEIR_FLOW_ID": flow_id,
                "WEIR_TASK": task.name,
                "WEIR_ATTEMPT": "1",
                "WEIR_WORKDIR": str(work),
                **{e.name: e.value or "" for e in task.env},
            },
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            check=False,
        )
        finished.append(Finished(done.returncode, done.stderr))
        if done.returncode != 0:
            break
        for output in task.outputs:
            shutil.copyfile(work / output.path, kept / output.name)
    return finished


def load_flow(path: Path) -> Any:
    return runpy.run_path(str(path), run_name="points_under_test")["flow"]


def test_generated_cmd_runs_each_task_in_its_own_process(tmp_path: Path) -> None:
    script = tmp_path / "points.py"
    script.write_text(FLOW_FILE)
    flow = load_flow(script)

    finished = run_spec(flow.spec(), tmp_path, "f1")

    assert finished == [Finished(0, ""), Finished(0, ""), Finished(0, "")]
    output = (tmp_path / "outputs" / "check").read_bytes()
    assert flow.load_output("check", output) == "argv stays whole: a b"


def test_failing_task_exits_1_with_the_traceback_on_stderr(tmp_path: Path) -> None:
    script = tmp_path / "points.py"
    script.write_text(FLOW_FILE.replace("Point(p.x + 1", "Point(p.x + 5"))

    finished = run_spec(load_flow(script).spec(), tmp_path, "f2")

    assert [f.code for f in finished] == [0, 0, 1]
    assert "ValueError: wrong point Point(x=5, y=2)" in finished[-1].stderr


def test_entry_refuses_a_task_other_than_the_one_the_runner_asked_for(tmp_path: Path) -> None:
    script = tmp_path / "points.py"
    script.write_text(FLOW_FILE)
    done = subprocess.run(
        [sys.executable, "-m", "weir.sdk.entry", str(script), "shift"],
        env={"WEIR_TASK": "check", "WEIR_WORKDIR": str(tmp_path)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2
    assert 'the runner asked for task "check" but cmd names "shift"' in done.stderr


def test_module_name_walks_up_packages(tmp_path: Path) -> None:
    assert module_name_for(tmp_path / "etl.py") == ("etl", tmp_path)
    here = Path(__file__).resolve()
    assert module_name_for(here.with_name("pipelines.py")) == (
        "tests.sdk.pipelines",
        here.parents[2],
    )
