"""`POST /schedules` reads its flow as `weir submit` reads a spec (the shorthands too) and
lists every problem of a flow it refuses, the spec's own and the scheduler's."""

from __future__ import annotations

from typing import Any

import httpx


def request(flow: dict[str, Any] | str, **more: Any) -> dict[str, Any]:
    return {"name": "shorthand", "cron": "0 3 * * *", "flow": flow, **more}


async def test_a_schedules_flow_may_use_the_spec_shorthands(operator: httpx.AsyncClient) -> None:
    flow = {
        "name": "tick",
        "params": {"region": {"type": "string"}},
        "tasks": [{"name": "a", "cmd": ["echo", "{{ params.region }}"], "timeout": "10m"}],
        "defaults": {"retry": 3},
    }
    made = await operator.post("/schedules", json=request(flow, params={"region": "eu"}))
    assert made.status_code == 201, made.text
    assert made.json()["params"] == {"region": "eu"}


async def test_a_schedules_flow_with_problems_is_refused_with_each(
    operator: httpx.AsyncClient,
) -> None:
    flow = {"name": "bad", "colour": "red", "tasks": [{"name": "a", "cmd": [1], "retry": "x"}]}
    refused = await operator.post("/schedules", json=request(flow))
    assert refused.status_code == 400, refused.text
    error = refused.json()["error"]
    assert error["code"] == "bad_request" and len(error["problems"]) == 3, error
    text = " | ".join(p["message"] for p in error["problems"])
    assert "colour" in text and "retry" in text and "cmd" in text, text


async def test_a_schedule_whose_ticks_would_be_rejected_lists_each_reason(
    operator: httpx.AsyncClient,
) -> None:
    flow = {
        "name": "bad-plan",
        "params": {"region": {"type": "string"}},
        "tasks": [{"name": "a", "cmd": ["true"], "depends": ["ghost"]}],
    }
    refused = await operator.post("/schedules", json=request(flow))
    assert refused.status_code == 400, refused.text
    error = refused.json()["error"]
    messages = [p["message"] for p in error["problems"]]
    assert len(messages) == 2, error
    assert any('"region"' in m for m in messages) and any("ghost" in m for m in messages), messages
    assert (await operator.get("/schedules")).json()["schedules"] == []


async def test_a_schedules_flow_may_be_the_specs_text(operator: httpx.AsyncClient) -> None:
    text = "name: tick\ntasks:\n  - {name: a, cmd: [echo, hi], timeout: 10m}\n"
    made = await operator.post("/schedules", json=request(text))
    assert made.status_code == 201, made.text
    broken = await operator.post("/schedules", json=request("name: [x\n"))
    assert broken.status_code == 422 and "line" in broken.text, broken.text
