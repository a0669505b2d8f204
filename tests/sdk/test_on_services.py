"""An SDK flow on the real scheduler and local runner (Postgres + NATS): fan-out/fan-in with
Python objects, parameters, trigger rules, conditions and an on-exit task give exactly what
`run_local()` gives."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest
from weir.artifacts import ArtifactStore
from weir.client import Client
from weir.config import Settings
from weir_proto.events import event_type

from tests.sdk.pipelines import daily, flaky, guarded, sales

WAIT = 60.0


async def test_fan_out_fan_in_flow_gives_the_results_of_run_local(
    client: Client, settings: Settings, tmp_path: Path
) -> None:
    expected = sales.run_local()

    flow_id = await sales.submit(client)
    final = await asyncio.wait_for(client.wait(flow_id), WAIT)

    view = await client.get(flow_id)
    failures = {t.name: t.error_message for t in view.tasks if t.status != "succeeded"}
    assert event_type(final) == "flow_succeeded", failures
    store = ArtifactStore(client.js, settings.artifacts_bucket)
    produced = {}
    for name in expected:
        target = tmp_path / "outputs" / name
        await store.download(flow_id, name, target)
        produced[name] = sales.load_output(name, target.read_bytes())
    assert produced == expected
    assert produced["verdict"] == {"none_arrived": True, "blob_intact": True}


async def test_running_the_flow_file_with_wait_submits_it_and_exits_0(
    client: Client, settings: Settings
) -> None:
    example = Path(__file__).resolve().parents[2] / "examples" / "sdk_etl.py"
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(example),
        "--wait",
        "--id",
        "etl-from-file",
        "--nats-url",
        settings.nats_url,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), WAIT)

    assert proc.returncode == 0, err.decode()
    assert out.decode().split() == ["etl-from-file", "flow_succeeded"]
    store = ArtifactStore(client.js, settings.artifacts_bucket)
    await store.download("etl-from-file", "report", Path(settings.runner_dir) / "report.txt")
    report = (Path(settings.runner_dir) / "report.txt").read_text()
    assert report.splitlines()[0].split() == ["Kyoto", "263.86"]


async def test_a_flow_with_params_gets_the_values_run_local_gets(
    client: Client, settings: Settings, tmp_path: Path
) -> None:
    params = {"day": "2026-12-01", "rows": "3", "dry": "true"}  # as -p gives them
    expected = daily.run_local(**params)

    flow_id = await daily.submit(client, params=params)
    final = await asyncio.wait_for(client.wait(flow_id), WAIT)

    view = await client.get(flow_id)
    failures = {t.name: t.error_message for t in view.tasks if t.status != "succeeded"}
    assert event_type(final) == "flow_succeeded", failures
    target = tmp_path / "check"
    await ArtifactStore(client.js, settings.artifacts_bucket).download(flow_id, "check", target)
    assert daily.load_output("check", target.read_bytes()) == expected["check"]
    assert expected["check"]["types"] == ["float", "bool", "int"]


@pytest.mark.parametrize(
    ("params", "fail_fast"),
    [
        ({"env": "dev", "fail": "true"}, False),
        ({"env": "prod"}, False),
        ({"env": "dev", "fail": "true"}, True),
    ],
    ids=["failing-load-in-dev", "prod", "failing-load-alone-with-fail-fast"],
)
async def test_trigger_rules_conditions_and_on_exit_end_every_task_as_run_local_does(
    client: Client,
    settings: Settings,
    tmp_path: Path,
    params: dict[str, str],
    fail_fast: bool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(guarded, "fail_fast", fail_fast)
    expected = guarded.run_local_outcome(**params)

    flow_id = await guarded.submit(client, params=params)
    final = await asyncio.wait_for(client.wait(flow_id), WAIT)

    view = await client.get(flow_id)
    assert event_type(final) == f"flow_{expected.status}"
    assert {t.name: t.status for t in view.tasks} == expected.statuses()
    skipped = {t.name: t.error_message for t in view.tasks if t.status == "skipped"}
    assert skipped == {n: t.reason for n, t in expected.tasks.items() if t.status == "skipped"}
    target = tmp_path / "report"
    await ArtifactStore(client.js, settings.artifacts_bucket).download(flow_id, "report", target)
    assert guarded.load_output("report", target.read_bytes()) == expected["report"]
    assert expected["report"] == f"{params['env']}: {expected.status}"


async def test_retries_end_every_task_and_attempt_count_as_run_local_does(
    client: Client, tmp_path: Path
) -> None:
    """The attempts leave their marks in a directory every attempt reaches: the same ones
    under run_local and on the services, and each task ends after as many attempts."""
    local, served = tmp_path / "local", tmp_path / "served"
    for marks in (local, served):
        marks.mkdir()
        marks.chmod(0o777)  # the runner may run tasks as another user
    expected = flaky.run_local_outcome(marks=str(local))

    flow_id = await flaky.submit(client, params={"marks": str(served)})
    final = await asyncio.wait_for(client.wait(flow_id), WAIT)

    assert event_type(final) == "flow_failed"
    view = await client.get(flow_id)
    ended = {t.name: (t.status, t.attempt) for t in view.tasks}
    assert ended == {name: (str(t.status), t.attempts) for name, t in expected.tasks.items()}
    assert sorted(p.name for p in served.iterdir()) == sorted(p.name for p in local.iterdir())
