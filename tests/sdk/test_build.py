"""Build-time checks: a flow that cannot work is refused before it is submitted, with every
problem named at once."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec
import pytest
from weir import Flow
from weir.sdk import FlowDefinitionError
from weir_proto.spec import FlowSpec, Resources, RetryPolicy
from weir_scheduler.planner import plan

from tests.sdk.pipelines import sales


def problems(flow: Flow) -> list[str]:
    with pytest.raises(FlowDefinitionError) as caught:
        flow.spec()
    assert caught.value.flow == flow.name
    return caught.value.problems


def test_parameter_without_input_or_default_is_a_missing_input() -> None:
    flow = Flow("missing")

    @flow.task
    def extract() -> list[int]:
        return [1]

    @flow.task
    def load(rows: list[int], batch: int = 10) -> int:
        return len(rows)

    assert problems(flow) == [
        'task "load" (test_parameter_without_input_or_default_is_a_missing_input.<locals>.'
        'load()): missing input for parameter "rows"; add inputs={"rows": <upstream task>}, '
        "give it a default, or declare a flow parameter of that name with @flow.entry"
    ]


def test_input_that_is_not_a_task_of_this_flow_is_named() -> None:
    other = Flow("other")

    @other.task
    def foreign() -> int:
        return 1

    def plain() -> int:
        return 2

    flow = Flow("mine")

    @flow.task
    def extract() -> int:
        return 3

    @flow.task(inputs={"a": foreign, "b": plain, "c": "extract2", "d": extract})  # type: ignore[dict-item]
    def load(a: int, b: int, c: int, d: int) -> int:
        return a + b + c + d

    found = problems(flow)
    assert len(found) == 3
    assert 'input "a" is task "foreign" of flow "other", not of this flow' in found[0]
    assert 'input "b" is <function' in found[1]
    assert "which is not a task of this flow" in found[1]
    assert (
        'input "c" names task "extract2", which does not exist (tasks: extract, load)' in (found[2])
    )


def test_input_for_an_unknown_parameter_and_unknown_depends_are_reported() -> None:
    flow = Flow("params")

    @flow.task
    def extract() -> int:
        return 1

    @flow.task(inputs={"rows": extract, "row": extract}, depends=["nope"])
    def load(rows: int) -> int:
        return rows

    found = problems(flow)
    assert any(
        'input "row" is not a parameter of the function (parameters: rows)' in p for p in found
    )
    assert any('depends entry names task "nope", which does not exist' in p for p in found)


def test_cycle_is_reported_with_its_path() -> None:
    flow = Flow("loop")

    @flow.task(inputs={"x": "c"})
    def a(x: int) -> int:
        return x

    @flow.task(inputs={"x": a})
    def b(x: int) -> int:
        return x

    @flow.task(depends=[b])
    def c() -> int:
        return 1

    assert problems(flow) == ["has a cycle: a -> b -> c -> a"]
    with pytest.raises(FlowDefinitionError):
        flow.run_local()


def test_return_annotation_incompatible_with_parameter_is_an_error() -> None:
    flow = Flow("types")

    @flow.task
    def count() -> int:
        return 1

    @flow.task
    def rows() -> list[int]:
        return [1]

    @flow.task(inputs={"n": count})
    def label(n: str) -> str:
        return n

    @flow.task(inputs={"data": rows})
    def index(data: dict[str, int]) -> None:
        pass

    assert problems(flow) == [
        'task "label" (test_return_annotation_incompatible_with_parameter_is_an_error.<locals>.'
        'label()): parameter "n" expects str, but task "count" (test_return_annotation_'
        "incompatible_with_parameter_is_an_error.<locals>.count()) returns int",
        'task "index" (test_return_annotation_incompatible_with_parameter_is_an_error.<locals>.'
        'index()): parameter "data" expects dict[str, int], but task "rows" (test_return_'
        "annotation_incompatible_with_parameter_is_an_error.<locals>.rows()) returns "
        "list[int]",
    ]


class Base:
    pass


class Child(Base):
    pass


def test_compatible_annotations_pass() -> None:
    flow = Flow("compatible")

    @flow.task
    def child() -> Child:
        return Child()

    @flow.task
    def number() -> int:
        return 1

    @flow.task
    def rows() -> list[int]:
        return [1]

    @flow.task
    def maybe() -> int | None:
        return None

    @flow.task
    def untyped():  # type: ignore[no-untyped-def]
        return 1

    @flow.task(
        inputs={"b": child, "f": number, "s": rows, "o": maybe, "a": untyped, "anything": rows}
    )
    def use(b: Base, f: float, s: Sequence[int], o: int | None, a: str, anything: Any) -> None:
        pass

    flow.check()


def test_text_serializer_needs_a_str_return() -> None:
    flow = Flow("text")

    @flow.task(serializer="text")
    def render() -> int:
        return 1

    found = problems(flow)
    assert found == [
        'task "render" (test_text_serializer_needs_a_str_return.<locals>.render()): returns '
        "int but its serializer 'text' writes str; change the annotation or the serializer"
    ]


def test_task_names_are_labels_from_function_names_and_must_be_unique() -> None:
    flow = Flow("names")

    @flow.task
    def extract_rows() -> None:
        pass

    @flow.task(name="Load")
    def load() -> None:
        pass

    @flow.task(name="extract-rows")
    def again() -> None:
        pass

    assert extract_rows.name == "extract-rows"
    found = problems(flow)
    assert "name is not a DNS-1123 label" in found[0]
    assert "name is already used by test_task_names" in found[1]


def test_spec_passes_the_scheduler_planner_with_argv_lists_and_relative_paths() -> None:
    spec = sales.spec(flow_id="sales-1", python="python", entrypoint="/app/pipelines.py")
    wire = msgspec.json.decode(msgspec.json.encode(spec), type=FlowSpec)
    planned = plan(wire)
    assert planned is not None
    by_name = {t.name: t for t in wire.tasks}
    assert by_name["sum-north"].cmd == [
        "python",
        "-m",
        "weir.sdk.entry",
        "/app/pipelines.py",
        "sum-north",
        "--flow",
        "sales",
    ]
    assert by_name["report"].depends == ["sum-north", "sum-south", "sum-west"]
    assert [i.from_ for i in by_name["report"].inputs] == ["sum-north", "sum-south", "sum-west"]
    assert by_name["notify"].depends == ["blob"]
    assert by_name["notify"].inputs == []
    for task in wire.tasks:
        assert [o.name for o in task.outputs] == [task.name]
        paths = [i.path for i in task.inputs] + [o.path for o in task.outputs]
        assert all(not path.startswith("/") for path in paths)
    assert wire.defaults is not None
    assert wire.defaults.image == "python:3.11-slim"
    assert wire.defaults.retry == RetryPolicy(max_attempts=1)


def test_task_options_map_to_the_task_spec_and_calling_a_task_calls_the_function() -> None:
    flow = Flow("options", env={"STAGE": "test"})

    @flow.task(
        retry=4,
        timeout=30,
        resources={"cpu": "500m", "memory": "1Gi"},
        priority=2,
        queue="gpu",
        image="etl:1",
        env={"MODE": "fast"},
    )
    def work(x: int = 2) -> int:
        return x * 21

    assert work() == 42
    task = flow.spec().tasks[0]
    assert task.retry == RetryPolicy(max_attempts=4)
    assert task.timeout == 30
    assert task.kubernetes is not None
    assert task.kubernetes.resources == Resources(requests={"cpu": "500m", "memory": "1Gi"})
    assert (task.priority, task.queue, task.image) == (2, "gpu", "etl:1")
    assert [(e.name, e.value) for e in task.env] == [("STAGE", "test"), ("MODE", "fast")]
    assert task.cmd[-3:] == ["work", "--flow", "options"]


def test_retry_and_durations_mean_what_they_mean_in_a_yaml_spec() -> None:
    """`retry=3` and `timeout="10m"` in the SDK build the spec that `retry: 3` and
    `timeout: 10m` in a YAML file decode to."""
    from weir.spec_file import load_spec_text

    flow = Flow("parity", defaults={"retry": 2, "timeout": "1h"})

    @flow.task(retry=3, timeout="10m")
    def a() -> int:
        return 1

    @flow.task(retry={"backoff": {"base": "5s", "max": "2m"}}, timeout=90)
    def b() -> int:
        return 2

    built = flow.spec()
    written = msgspec.convert(
        load_spec_text(
            "name: parity\ndefaults: {retry: 2, timeout: 1h}\ntasks:\n"
            "  - {name: a, cmd: [x], retry: 3, timeout: 10m}\n"
            "  - {name: b, cmd: [x], retry: {backoff: {base: 5s, max: 2m}}, timeout: 90}\n",
            "parity.yaml",
        ),
        FlowSpec,
    )
    assert built.defaults == written.defaults
    assert built.defaults is not None and built.defaults.timeout == 3600.0
    for mine, theirs in zip(built.tasks, written.tasks, strict=True):
        assert (mine.retry, mine.timeout) == (theirs.retry, theirs.timeout)
    assert built.tasks[0].timeout == 600.0 and built.tasks[1].retry is not None
    assert (built.tasks[1].retry.backoff.base, built.tasks[1].retry.backoff.max) == (5.0, 120.0)


def test_wrong_retry_and_timeout_are_reported_with_the_other_problems() -> None:
    flow = Flow("wrong", defaults={"timeout": "later"})

    @flow.task(retry={"backoff": {"strategy": "exponentail"}}, timeout="soon")
    def a(x: int) -> int:
        return x

    assert problems(flow) == [
        "Flow(...): defaults.timeout: 'later' is not a duration: give a number of seconds or "
        "a string like 90s, 10m, 2h, 1d",
        "task \"a\": timeout: 'soon' is not a duration: give a number of seconds or a string "
        "like 90s, 10m, 2h, 1d",
        'task "a": retry.backoff.strategy: "exponentail" is not one of constant, linear, '
        "polynomial, exponential",
        'task "a" (test_wrong_retry_and_timeout_are_reported_with_the_other_problems.<locals>.a()):'
        ' missing input for parameter "x"; add inputs={"x": <upstream task>}, give it a default, '
        "or declare a flow parameter of that name with @flow.entry",
    ]
