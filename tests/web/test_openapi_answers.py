"""What weir-web answers, against the real scheduler, runner, NATS and Postgres, is what its
OpenAPI document says: each body checked against the schema the document states for its
path, method, status and content type (the event streams event by event)."""

from __future__ import annotations

from typing import Any

import httpx

from tests.flows import shell
from tests.web.openapi_schemas import problems, response_validator, schema_validator
from tests.web.sse import read_sse

OUT = {"name": "out", "path": "out.txt"}
SPEC = {
    "name": "described",
    "tasks": [shell("make", "echo made; printf 'x' > out.txt", outputs=[OUT])],
}


def _conforms(
    document: dict[str, Any],
    path: str,
    method: str,
    response: httpx.Response,
    media: str = "application/json",
) -> None:
    check = response_validator(document, path, method, response.status_code, media)
    assert response.headers["content-type"].startswith(media), (path, response.headers)
    body = response.json() if media == "application/json" else response.text
    assert problems(check, body) == [], (method, path, response.status_code, body)


async def test_every_answer_is_what_the_openapi_document_states(
    operator: httpx.AsyncClient, viewer: httpx.AsyncClient, admin: httpx.AsyncClient
) -> None:
    document = (await viewer.get("/openapi.json")).json()
    _conforms(document, "/openapi.json", "get", await viewer.get("/openapi.json"))
    answer = await operator.post("/flows", json=SPEC)
    _conforms(document, "/flows", "post", answer)
    flow_id = answer.json()["flow_id"]

    frames = schema_validator(document, "FlowEventFrame")
    events = schema_validator(document, "FlowEvent")
    async with viewer.stream("GET", f"/flows/{flow_id}/events") as stream:
        check = response_validator(
            document, "/flows/{flow_id}/events", "get", 200, "text/event-stream"
        )
        seen = [e async for e in read_sse(stream)]
    assert seen and seen[-1].event == "flow_succeeded"
    for event in seen:
        frame = {"id": event.id, "event": event.event, "data": event.data}
        assert problems(frames, frame) == [], frame
        assert problems(events, event.json()) == [], event.data
    assert problems(check, [{"id": e.id, "event": e.event, "data": e.data} for e in seen]) == []

    as_json = await viewer.get(f"/flows/{flow_id}/events", headers={"Accept": "application/json"})
    _conforms(document, "/flows/{flow_id}/events", "get", as_json)
    assert len(as_json.json()) == len(seen)

    logs = "/flows/{flow_id}/tasks/{task}/logs"
    text = await viewer.get(f"/flows/{flow_id}/tasks/make/logs")
    _conforms(document, logs, "get", text, "text/plain")
    assert text.text == "made\n"
    log_frames = schema_validator(document, "LogFrame")
    async with viewer.stream(
        "GET", f"/flows/{flow_id}/tasks/make/logs", params={"follow": "true"}
    ) as stream:
        followed = [e async for e in read_sse(stream)]
    assert [e.event for e in followed][-1] == "end"
    for event in followed:
        assert problems(log_frames, {"event": event.event, "data": event.data}) == []

    _conforms(document, "/flows", "get", await viewer.get("/flows", params={"limit": 5}))
    _conforms(document, "/tasks", "get", await viewer.get("/tasks", params={"limit": 5}))
    _conforms(document, "/flows/{flow_id}", "get", await viewer.get(f"/flows/{flow_id}"))
    listed = await viewer.get(f"/flows/{flow_id}/artifacts")
    _conforms(document, "/flows/{flow_id}/artifacts", "get", listed)
    assert [a["name"] for a in listed.json()] == ["out"]
    cancel = await operator.post(f"/flows/{flow_id}/cancel")
    _conforms(document, "/flows/{flow_id}/cancel", "post", cancel)
    rerun = await operator.post(f"/flows/{flow_id}/rerun", json={"failed_only": False})
    _conforms(document, "/flows/{flow_id}/rerun", "post", rerun)
    _conforms(document, "/health", "get", await viewer.get("/health"))
    _conforms(document, "/secrets", "get", await viewer.get("/secrets"))
    _conforms(document, "/schedules", "get", await viewer.get("/schedules"))
    session = await admin.post("/session", json={"token": admin.headers["authorization"][7:]})
    _conforms(document, "/session", "post", session)

    # The errors: each the Error body of its status.
    _conforms(document, "/flows/{flow_id}", "get", await viewer.get("/flows/no-such-flow"))
    _conforms(document, "/flows/{flow_id}", "get", await viewer.get("/flows/Not_A_Label"))
    _conforms(document, "/flows", "post", await viewer.post("/flows", json=SPEC))  # 403
    bad = await operator.post("/flows", json={"name": "bad", "tasks": [{"name": "x"}]})
    assert bad.status_code == 422
    _conforms(document, "/flows", "post", bad)
    duplicate = await operator.post("/flows", json={**SPEC, "id": flow_id, "name": "other"})
    _conforms(document, "/flows", "post", duplicate)
    missing = await viewer.get(f"/flows/{flow_id}/artifacts/nothing")
    _conforms(document, "/flows/{flow_id}/artifacts/{name}", "get", missing)
    anonymous = await viewer.get(
        "/flows", headers={"Authorization": "Bearer wrong-token-0123456789"}
    )
    _conforms(document, "/flows", "get", anonymous)
