"""A flow's params in the SDK: the typed arguments of its entry function, passed to
run_local() and to the services, refused with the scheduler's own messages."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import msgspec
import pytest
from weir import Flow
from weir.sdk import ParamsError
from weir.sdk.launch import run
from weir_proto.spec import ParamSpec
from weir_scheduler.planner import Limits, Rejected, plan

from tests.sdk.pipelines import daily


def test_entry_arguments_become_typed_params_with_defaults() -> None:
    spec = daily.spec(python="python", entrypoint="/app/p.py")
    assert spec.params == {
        "day": ParamSpec(type="string"),
        "rows": ParamSpec(type="int", default=2),
        "scale": ParamSpec(type="float", default=1.5),
        "dry": ParamSpec(type="bool", default=False),
        "options": ParamSpec(type="json", default={"fast": True}),
    }
    assert spec.arguments == {}
    given = daily.spec(params={"day": "2026-12-01", "rows": 5})
    assert given.arguments == {"day": "2026-12-01", "rows": 5}
    planned = plan(given, Limits())  # the scheduler accepts what the SDK builds
    assert planned.params["rows"] == 5 and planned.params["options"] == {"fast": True}


def test_run_local_passes_params_to_the_tasks_that_name_them() -> None:
    results = daily.run_local(day="2026-12-01", scale="2.5", dry="true")
    assert results["make"] == ["2026-12-01#0", "2026-12-01#1", '{"fast": true}']
    assert results["check"] == {
        "made": results["make"],
        "scale": 2.5,
        "dry": True,
        "types": ["float", "bool", "int"],
    }


def test_wrong_params_are_refused_with_the_schedulers_messages() -> None:
    given: dict[str, Any] = {"rows": "many", "dry": 3, "colour": "red"}
    with pytest.raises(ParamsError) as refused:
        daily.run_local(**given)
    with pytest.raises(Rejected) as rejected:
        plan(msgspec.structs.replace(daily.spec(), arguments=given), Limits())
    messages = [p.message for p in refused.value.problems]
    assert messages == [e.message for e in rejected.value.errors]
    assert len(messages) == 4, messages
    assert messages[0] == (
        'flow "daily": parameter "rows" is int: expected a whole number, got the string "many"'
    )
    with pytest.raises(ParamsError, match=r'parameter "day" is required'):
        daily.spec(params={"rows": 1})


def test_an_entry_function_whose_arguments_cannot_be_params_is_refused() -> None:
    flow = Flow("odd")

    @flow.entry
    def odd(a: int, /, b: str | None = None, *rest: str, **more: str) -> None:
        pass

    @flow.task
    def work(b: str) -> str:
        return b

    with pytest.raises(Exception) as refused:
        flow.spec()
    text = str(refused.value)
    assert 'argument "a" must be an ordinary named argument' in text
    assert 'argument "b" defaults to None' in text
    assert 'argument "rest" must be an ordinary' in text and 'argument "more"' in text
    assert 'missing input for parameter "b"' in text  # not a param: b was refused


def test_a_task_process_reads_its_params_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in {"day": "d", "rows": "3", "options": '{"a":[1]}'}.items():
        monkeypatch.setenv(f"WEIR_PARAM_{name}", value)
    daily.run_task("make", tmp_path)
    made = daily.load_output("make", (tmp_path / "_weir" / "output").read_bytes())
    assert made == ["d#0", "d#1", "d#2", '{"a": [1]}']
    assert "WEIR_PARAM_scale" not in os.environ


def test_flow_file_takes_params_on_its_command_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(daily, ["--local", "-p", "day=2026-12-02", "-p", "rows=1"]) == 0
    assert "2026-12-02#0" in capsys.readouterr().out
    assert run(daily, ["--local", "-p", "rows=x"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == [
        'error: flow "daily": parameter "rows" is int: expected a whole number, got the string "x"',
        'error: flow "daily": parameter "day" is required and was not given; pass it with '
        "-p day=VALUE",
    ]
    assert run(daily, ["--dry-run", "-p", "oops"]) == 2
    assert "error: -p oops: expected NAME=VALUE" in capsys.readouterr().err
