"""`flow.run_local()`: the whole DAG in this process, values round-tripped through bytes."""

from __future__ import annotations

import asyncio
from datetime import date
from fractions import Fraction
from pathlib import Path

import pytest
from weir import Flow

from tests.sdk.pipelines import BLOB, REGIONS, Sale, Summary, flaky, sales


def test_fan_out_fan_in_passes_python_objects() -> None:
    results = sales.run_local()

    assert list(results) == [
        "extract", "sum-north", "sum-south", "sum-west", "report", "blob", "notify", "verdict"
    ]  # fmt: skip
    assert results["extract"][0] == Sale("north", date(2024, 1, 1), Fraction(100, 3))
    assert {results[f"sum-{r}"].region for r in REGIONS} == set(REGIONS)
    assert all(isinstance(results[f"sum-{r}"], Summary) for r in REGIONS)
    assert results["report"] == {
        "regions": ["north", "south", "west"],
        "count": 30,
        "total": Fraction(1145),
        "days": [date(2024, 1, d) for d in range(1, 6)],
    }
    assert results["blob"] == BLOB + b"30"
    assert results["notify"] is None
    assert results["verdict"] == {"none_arrived": True, "blob_intact": True}


def test_values_cross_tasks_as_bytes_like_in_a_real_run() -> None:
    flow = Flow("round-trip")

    @flow.task(serializer="json")
    def pair() -> tuple[int, int]:
        return (1, 2)

    @flow.task(inputs={"value": pair})
    def kind(value: object) -> str:
        return type(value).__name__

    assert flow.run_local() == {"pair": [1, 2], "kind": "list"}  # JSON has no tuples


def test_async_tasks_and_explicit_depends_run_in_order() -> None:
    flow = Flow("ordered")
    seen: list[str] = []

    @flow.task
    async def first() -> int:
        await asyncio.sleep(0)
        seen.append("first")
        return 1

    @flow.task(depends=["first"])
    def second() -> None:
        seen.append("second")

    assert flow.run_local() == {"first": 1, "second": None}
    assert seen == ["first", "second"]


def test_a_failing_task_names_itself() -> None:
    flow = Flow("breaks")

    @flow.task
    def explode() -> int:
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError, match="disk on fire") as caught:
        flow.run_local()
    assert caught.value.__notes__ == ['in task "explode" of flow "breaks" (run_local)']


def test_value_the_serializer_cannot_write_fails_run_local_as_it_would_a_real_run() -> None:
    flow = Flow("unjsonable")

    @flow.task(serializer="json")
    def dates() -> object:
        return {date(2024, 1, 1)}

    with pytest.raises(TypeError, match="use pickle"):
        flow.run_local()


def test_a_task_that_fails_runs_again_until_its_retry_policy_is_spent(tmp_path: Path) -> None:
    """As on the services (tests/sdk/test_on_services.py runs the same flow): each attempt
    that raises is retried while `max_attempts` allow, instances of a mapped task each on
    their own; the flow fails only on a task whose attempts were all spent."""
    run = flaky.run_local_outcome(marks=str(tmp_path))

    attempts = {name: (str(task.status), task.attempts) for name, task in run.tasks.items()}
    assert attempts == {
        "wobbly": ("succeeded", 2),
        "each[0]": ("succeeded", 1),
        "each[1]": ("succeeded", 2),
        "each": ("succeeded", 0),
        "tally": ("succeeded", 1),
        "hopeless": ("failed", 2),
    }
    assert dict(run) == {"wobbly": [1, 2], "each": [10, 20], "tally": 30}
    assert run.status == "failed"
    assert run.tasks["hopeless"].reason == "RuntimeError: attempt 2 failed"
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "each-2.1", "each-2.2", "hopeless.1", "hopeless.2", "wobbly.1", "wobbly.2"
    ]  # fmt: skip


def test_each_attempt_reads_its_inputs_anew() -> None:
    """An attempt that changed the objects it was given leaves the next one the values as
    they were written (a task process reads its inputs from bytes at every attempt)."""
    flow = Flow("mutates", defaults={"retry": 2})
    attempts: list[list[int]] = []

    @flow.task
    def numbers() -> list[int]:
        return [1, 2]

    @flow.task(inputs={"given": numbers})
    def spoil(given: list[int]) -> int:
        attempts.append(list(given))
        given.append(99)
        if len(attempts) == 1:
            raise RuntimeError("first attempt")
        return sum(given)

    assert flow.run_local()["spoil"] == 102
    assert attempts == [[1, 2], [1, 2]]
