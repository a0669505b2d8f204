"""Stepping in over HTTP (operator): pause and resume, retry of a failed task until the flow
succeeds, update before the start and its refusals, on the real services."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.flows import scheduled, shell, task
from tests.web.sse import read_sse
from tests.web.test_api import events_of, gated, submit


async def started(http: httpx.AsyncClient, flow_id: str) -> None:
    async with http.stream("GET", f"/flows/{flow_id}/events") as response:
        async for event in read_sse(response):
            if event.event == "task_started":
                return


async def test_pause_resume_and_their_refusals(operator: httpx.AsyncClient, tmp_path: Path) -> None:
    spec, gate = gated(tmp_path)
    spec["tasks"].append(task("after", "true", depends=["wait"]))
    flow_id = await submit(operator, spec)
    await started(operator, flow_id)

    paused = await operator.post(f"/flows/{flow_id}/pause", json={"reason": "maintenance"})
    assert paused.status_code == 200, paused.text
    assert paused.json() == {"flow_id": flow_id, "status": "paused", "seq": 4}
    again = await operator.post(f"/flows/{flow_id}/pause")
    assert again.json()["already"] is True

    running = await operator.post(f"/flows/{flow_id}/retry", json={"task": "wait"})
    assert running.status_code == 409
    assert running.json()["error"]["message"].startswith('task "wait" is running')
    late = await operator.patch(f"/flows/{flow_id}", json={"priority": 1})
    assert late.status_code == 409 and "has started" in late.json()["error"]["message"]

    gate.touch()
    resumed = await operator.post(f"/flows/{flow_id}/resume")
    assert resumed.status_code == 200 and resumed.json()["status"] in {"running", "succeeded"}
    kinds = [e.event for e in await events_of(operator, flow_id)]
    assert kinds[-1] == "flow_succeeded"
    assert kinds.index("flow_paused") < kinds.index("flow_resumed")
    ended = await operator.post(f"/flows/{flow_id}/pause")
    assert ended.status_code == 409
    assert "has already ended (succeeded)" in ended.json()["error"]["message"]
    missing = await operator.post("/flows/no-such-flow/resume")
    assert missing.status_code == 404


async def test_retry_of_a_failed_task_makes_the_flow_succeed(
    operator: httpx.AsyncClient, tmp_path: Path
) -> None:
    fixed = tmp_path / "fixed"
    spec = {
        "name": "fix",
        "defaults": {"retry": {"max_attempts": 1}},
        "tasks": [
            shell("load", f'test -e "{fixed}"'),
            task("publish", "true", depends=["load"]),
        ],
    }
    flow_id = await submit(operator, spec)
    assert (await events_of(operator, flow_id))[-1].event == "flow_failed"
    fixed.touch()
    retried = await operator.post(f"/flows/{flow_id}/retry", json={"task": "load"})
    assert retried.status_code == 200, retried.text
    answer = retried.json()
    assert answer == {
        **answer,
        "flow_id": flow_id,
        "status": "running",
        "tasks": ["load", "publish"],
    }
    after = await events_of(operator, flow_id, answer["seq"])
    kinds = [e.event for e in after]
    assert kinds[-1] == "flow_succeeded", "the stream resumed after the retry follows it to its end"
    assert "flow_failed" not in kinds and after[0].id == str(answer["seq"] + 1)
    kinds = [e.event for e in await events_of(operator, flow_id)]
    assert kinds.count("flow_failed") == 1 and "task_retried" in kinds
    bad = await operator.post(f"/flows/{flow_id}/retry", json={"task": "load", "colour": 1})
    assert bad.status_code == 400


async def test_update_before_the_start(operator: httpx.AsyncClient) -> None:
    spec = scheduled("later", params={"n": {"type": "int", "default": 1}})
    flow_id = await submit(operator, spec)
    updated = await operator.patch(
        f"/flows/{flow_id}", json={"priority": 2, "params": {"n": "5"}, "tags": ["x"]}
    )
    assert updated.status_code == 200, updated.text
    assert updated.json()["tasks"] == ["priority", "params", "tags"]
    view = (await operator.get(f"/flows/{flow_id}")).json()
    assert view["status"] == "scheduled" and view["tags"] == ["x"]
    assert view["params"] == {"n": 5}, "the view shows the updated params"

    invalid = await operator.patch(f"/flows/{flow_id}", json={"params": {"n": "x", "m": 1}})
    assert invalid.status_code == 422
    problems = " | ".join(p["message"] for p in invalid.json()["error"]["problems"])
    assert 'parameter "n" is int' in problems and 'unknown parameter "m"' in problems
    empty = await operator.patch(f"/flows/{flow_id}", json={})
    assert empty.status_code == 400 and "nothing to update" in empty.text
    unknown = await operator.patch(f"/flows/{flow_id}", json={"colour": "red"})
    assert unknown.status_code == 400

    now = await operator.patch(f"/flows/{flow_id}", json={"start_now": True})
    assert now.status_code == 200 and now.json()["status"] == "pending"
    assert (await events_of(operator, flow_id))[-1].event == "flow_succeeded"
