"""`flow.main()`: the command line a flow file gets, without services."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from weir import Flow
from weir.sdk.launch import run

from tests.sdk.pipelines import sales

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "sdk_etl.py"


def test_dry_run_prints_the_spec_as_yaml_or_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(sales, ["--dry-run", "--python", "python", "--entrypoint", "/app/p.py"]) == 0
    doc = yaml.safe_load(capsys.readouterr().out)
    assert doc["name"] == "sales"
    assert doc["tasks"][0]["cmd"] == [
        "python", "-m", "weir.sdk.entry", "/app/p.py", "extract", "--flow", "sales"
    ]  # fmt: skip
    assert run(sales, ["--dry-run", "--format", "json", "--id", "s-1"]) == 0
    assert json.loads(capsys.readouterr().out)["id"] == "s-1"


def test_invalid_flow_exits_2_with_every_problem(capsys: pytest.CaptureFixture[str]) -> None:
    flow = Flow("broken")

    @flow.task
    def load(rows: list[int]) -> None:
        pass

    assert run(flow, ["--dry-run"]) == 2
    assert 'missing input for parameter "rows"' in capsys.readouterr().err


def test_main_does_nothing_when_the_flow_file_is_only_imported() -> None:
    flow = Flow("imported")

    @flow.task
    def work() -> None:
        raise AssertionError("must not run")

    flow.main()  # this module is not __main__: no submit, no exit


def test_python_flow_file_dry_run_is_the_documented_entry_point() -> None:
    done = subprocess.run(
        [sys.executable, str(EXAMPLE), "--dry-run"],
        capture_output=True,
        text=True,
        check=True,
    )
    doc = yaml.safe_load(done.stdout)
    assert [t["name"] for t in doc["tasks"]] == [
        "extract", "clean-0", "clean-1", "clean-2", "combine", "report"
    ]  # fmt: skip
    assert doc["tasks"][0]["cmd"][3] == str(EXAMPLE)
