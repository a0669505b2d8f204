"""`map_over` in the SDK: one run per item, the runs' values as one list in item order, the
same from `run_local()` as from the services, and every misuse reported at build time."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from weir import Flow
from weir.artifacts import ArtifactStore
from weir.client import Client
from weir.config import Settings
from weir.sdk.checks import FlowDefinitionError
from weir_proto.events import event_type

from tests.sdk.pipelines import words

EXPECTED_TOTAL = {"order": ["alpha.txt", "beta.txt", "gamma.txt"], "letters": 14}


def test_run_local_runs_the_mapped_task_once_per_item_and_hands_on_the_list() -> None:
    results = words.run_local()
    assert results["measure"] == [
        {"file": "alpha.txt", "letters": 5},
        {"file": "beta.txt", "letters": 4},
        {"file": "gamma.txt", "letters": 5},
    ]
    assert results["total"] == EXPECTED_TOTAL


def test_the_spec_maps_over_the_producers_output() -> None:
    spec = words.spec(entrypoint="tests/sdk/pipelines.py")
    measure = next(t for t in spec.tasks if t.name == "measure")
    assert measure.map is not None
    assert (measure.map.over, measure.map.max_items) == ("list-files", 10)
    assert measure.depends == ["list-files"] and measure.inputs == []


def test_run_local_refuses_a_list_over_max_items_as_the_scheduler_does() -> None:
    flow = Flow("too-many")

    @flow.task(serializer="json")
    def items() -> list[int]:
        return [1, 2, 3]

    @flow.task(map_over={"n": items}, max_items=2)
    def double(n: int) -> int:
        return 2 * n

    with pytest.raises(
        ValueError,
        match=r'task "double": map.over output "items" has 3 items; '
        r"the limit is 2 \(map.max_items\)",
    ):
        flow.run_local()


def test_every_misuse_of_map_over_is_reported_at_once() -> None:
    flow = Flow("bad-map")

    @flow.task
    def pickled() -> list[int]:
        return [1]

    @flow.task(map_over={"n": pickled, "m": pickled})
    def both(n: int, m: int) -> None: ...

    @flow.task(map_over={"x": pickled}, serializer="pickle")
    def wrong(n: int) -> Any: ...

    with pytest.raises(FlowDefinitionError) as caught:
        flow.check()
    problems = caught.value.problems
    assert any(
        'task "both"' in p and 'map_over has 2 entries; give exactly one {"parameter": ' in p
        for p in problems
    )
    assert any(
        'map_over "x" comes from task "pickled", whose serializer is pickle; the scheduler '
        'reads the list as JSON: pass serializer="json" to task "pickled"' in p
        for p in problems
    )
    assert any(
        'map_over "x" is not a parameter of the function (parameters: n)' in p for p in problems
    )
    assert any('missing input for parameter "n"' in p for p in problems)
    assert any(
        "a mapped task's values are gathered as JSON; its serializer is pickle" in p
        for p in problems
    )


async def test_the_services_give_what_run_local_gives(
    client: Client, settings: Settings, tmp_path: Path
) -> None:
    flow_id = await words.submit(client)
    final = await asyncio.wait_for(client.wait(flow_id), 60.0)
    view = await client.get(flow_id)
    failures = {t.name: t.error_message for t in view.tasks if t.status != "succeeded"}
    assert event_type(final) == "flow_succeeded", failures
    assert sorted(t.name for t in view.tasks if t.name.startswith("measure[")) == [
        "measure[0]",
        "measure[1]",
        "measure[2]",
    ]
    store = ArtifactStore(client.js, settings.artifacts_bucket)
    expected = words.run_local()
    for name in ("measure", "total"):
        target = tmp_path / name
        await store.download(flow_id, name, target)
        assert words.load_output(name, target.read_bytes()) == expected[name]
