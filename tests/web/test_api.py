"""The HTTP API against the real scheduler, runner, NATS and Postgres: what a caller of
`/api/v1` observes."""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from pathlib import Path
from typing import Any

import httpx
import jsonschema  # type: ignore[import-untyped]
import msgspec
from weir_proto.events import TERMINAL_FLOW_EVENTS
from weir_web.app import SHUTDOWN_GRACE_SECONDS
from weir_web.routes.flows import SUBMIT_FIELDS

from tests.flows import random_blob, shell, task, waits_for
from tests.web.conftest import Web
from tests.web.openapi_schemas import document_validator
from tests.web.sse import Sse, read_sse

DIAMOND = """
name: diamond
tasks:
  - {name: a, cmd: [echo, a]}
  - {name: b, cmd: [echo, b], depends: [a]}
  - {name: c, cmd: [echo, c], depends: [a]}
  - {name: d, cmd: [echo, d], depends: [b, c]}
"""


def gated(tmp_path: Path, name: str = "gated") -> tuple[dict[str, Any], Path]:
    """A flow whose one task runs until the returned file exists."""
    gate = tmp_path / f"{name}.open"
    script = f"{waits_for(gate)}; echo through"
    return {"name": name, "tasks": [shell("wait", script)]}, gate


async def events_of(http: httpx.AsyncClient, flow_id: str, after: int = 0) -> list[Sse]:
    headers = {"Last-Event-ID": str(after)} if after else {}
    async with http.stream("GET", f"/flows/{flow_id}/events", headers=headers) as response:
        assert response.status_code == 200
        return [e async for e in read_sse(response)]


async def submit(http: httpx.AsyncClient, spec: str | dict[str, Any]) -> str:
    if isinstance(spec, dict):
        response = await http.post("/flows", json=spec)
    else:
        response = await http.post(
            "/flows", content=spec, headers={"Content-Type": "application/yaml"}
        )
    assert response.status_code == 201, response.text
    flow_id: str = response.json()["flow_id"]
    return flow_id


async def test_submit_answers_201_and_the_diamond_streams_to_its_terminal_event(
    operator: httpx.AsyncClient,
) -> None:
    flow_id = await submit(operator, DIAMOND)
    events = await events_of(operator, flow_id)
    assert [int(e.id or 0) for e in events] == list(range(1, len(events) + 1))
    assert events[0].event == "flow_submitted"
    assert events[-1].event == "flow_succeeded"
    assert [e.json()["type"] for e in events] == [e.event for e in events]
    view = (await operator.get(f"/flows/{flow_id}")).json()
    assert view["status"] == "succeeded"
    assert {t["name"] for t in view["tasks"]} == {"a", "b", "c", "d"}
    log = (
        await operator.get(f"/flows/{flow_id}/events", headers={"Accept": "application/json"})
    ).json()
    assert [e["seq"] for e in log] == [int(e.id or 0) for e in events]


async def test_bad_spec_is_422_with_every_problem(operator: httpx.AsyncClient) -> None:
    spec = {
        "name": "bad",
        "tasks": [
            task("a", "true", depends=["nowhere"]),
            {"name": "b", "cmd": "not-a-list", "retries": 3},
        ],
    }
    response = await operator.post("/flows", json=spec)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_flow"
    messages = " | ".join(p["message"] for p in error["problems"])
    assert len(error["problems"]) >= 2, messages
    assert "cmd" in messages and "retries" in messages


async def test_submit_body_takes_params_beside_the_spec(operator: httpx.AsyncClient) -> None:
    spec = {
        "name": "p",
        "params": {"n": {"type": "int"}},
        "tasks": [task("a", "test", "{{ params.n }}", "=", "4")],
    }
    bad = await operator.post("/flows", json={"spec": spec, "params": {"n": "four"}})
    assert bad.status_code == 422, bad.text
    problems = bad.json()["error"]["problems"]
    (problem,) = problems
    assert problem["path"] == "$.arguments.n"
    assert problem["message"] == (
        'flow "p": parameter "n" is int: expected a whole number, got the string "four"'
    )
    good = await operator.post("/flows", json={"spec": spec, "params": {"n": 4}})
    assert good.status_code == 201, good.text
    events = await events_of(operator, good.json()["flow_id"])
    assert events[-1].event == "flow_succeeded"
    odd = await operator.post("/flows", json={"spec": spec, "parms": {}})
    assert odd.status_code == 400 and "parms" in odd.json()["error"]["message"]


async def test_yaml_syntax_error_is_422_naming_the_line(operator: httpx.AsyncClient) -> None:
    response = await operator.post(
        "/flows", content=b"name: x\ntasks: [\n", headers={"Content-Type": "application/yaml"}
    )
    assert response.status_code == 422
    assert "body:" in response.json()["error"]["problems"][0]["message"]


async def test_duplicate_is_409_naming_the_flow_that_holds_the_key(
    operator: httpx.AsyncClient, tmp_path: Path
) -> None:
    spec, gate = gated(tmp_path)
    spec["unique"] = {"key": "nightly"}
    first = await submit(operator, spec)
    response = await operator.post("/flows", json=spec)
    assert response.status_code == 409, response.text
    error = response.json()["error"]
    assert error["code"] == "conflict" and error["existing"] == first
    assert first in error["message"]
    gate.touch()
    assert (await events_of(operator, first))[-1].event == "flow_succeeded"


async def test_events_resume_after_last_event_id_across_a_restart(web: Web, tmp_path: Path) -> None:
    spec, gate = gated(tmp_path)
    http = web.client("viewer")
    flow_id = await submit(web.client("operator"), spec)
    seen: list[Sse] = []
    async with http.stream("GET", f"/flows/{flow_id}/events") as response:
        async for event in read_sse(response):
            seen.append(event)
            if event.event == "task_started":
                break
    await web.restart()
    gate.touch()
    rest = await events_of(web.client("viewer"), flow_id, after=int(seen[-1].id or 0))
    ids = [int(e.id or 0) for e in seen + rest]
    assert ids == list(range(1, len(ids) + 1))  # no gap, no duplicate
    assert rest[-1].event in TERMINAL_FLOW_EVENTS
    # Resuming after the terminal event: nothing more, and the stream ends.
    assert await events_of(web.client("viewer"), flow_id, after=ids[-1]) == []


async def test_a_stopping_weir_web_cuts_its_open_event_streams_after_its_grace(
    web: Web, tmp_path: Path
) -> None:
    spec, gate = gated(tmp_path, "held")
    flow_id = await submit(web.client("operator"), spec)
    async with web.client("viewer").stream("GET", f"/flows/{flow_id}/events") as response:
        frames = read_sse(response)
        assert (await anext(frames)).event == "flow_submitted"
        started = time.monotonic()
        await web.stop()  # the stream would never end by itself: the flow waits on its gate
        assert time.monotonic() - started < SHUTDOWN_GRACE_SECONDS + 10
        with contextlib.suppress(httpx.HTTPError):  # cut: ended, or cut mid-chunk
            async for frame in frames:
                assert frame.event != "flow_succeeded"
    gate.touch()


async def test_logs_as_text_and_followed(operator: httpx.AsyncClient, tmp_path: Path) -> None:
    script = f"echo one; {waits_for(tmp_path / 'go')}; echo two"
    flow_id = await submit(operator, {"name": "talk", "tasks": [shell("t", script)]})
    lines: list[str] = []
    async with operator.stream(
        "GET", f"/flows/{flow_id}/tasks/t/logs", params={"follow": "true"}
    ) as response:
        async for event in read_sse(response):
            if event.event == "end":
                break
            lines.append(json.loads(event.data))
            if "one" in lines[-1]:
                (tmp_path / "go").touch()
    assert "".join(lines).split() == ["one", "two"]
    text = await operator.get(f"/flows/{flow_id}/tasks/t/logs", params={"attempt": 1})
    assert text.status_code == 200 and text.text.split() == ["one", "two"]
    assert text.headers["content-type"].startswith("text/plain")
    missing = await operator.get(f"/flows/{flow_id}/tasks/t/logs", params={"attempt": 2})
    assert missing.status_code == 404 and "no attempt 2" in missing.json()["error"]["message"]


async def test_artifact_download_streams_its_bytes_with_their_sha256(
    operator: httpx.AsyncClient,
) -> None:
    size = 3 * 1024 * 1024 + 17
    flow_id = await submit(operator, random_blob(size))
    assert (await events_of(operator, flow_id))[-1].event == "flow_succeeded"
    listed = (await operator.get(f"/flows/{flow_id}/artifacts")).json()
    assert [(a["name"], a["size"]) for a in listed] == [("blob", size)]
    digest = hashlib.sha256()
    received = 0
    async with operator.stream("GET", f"/flows/{flow_id}/artifacts/blob") as response:
        assert response.status_code == 200
        assert response.headers["content-length"] == str(size)
        async for chunk in response.aiter_raw():
            digest.update(chunk)
            received += len(chunk)
    assert received == size
    assert response.headers["x-weir-sha256"] == digest.hexdigest() == listed[0]["sha256"]
    missing = await operator.get(f"/flows/{flow_id}/artifacts/nothing")
    assert missing.status_code == 404


async def test_cancel_then_rerun(operator: httpx.AsyncClient, tmp_path: Path) -> None:
    spec, gate = gated(tmp_path)
    flow_id = await submit(operator, spec)
    async with operator.stream("GET", f"/flows/{flow_id}/events") as response:
        async for event in read_sse(response):
            if event.event == "task_started":
                break
    cancelled = await operator.post(f"/flows/{flow_id}/cancel")
    assert cancelled.status_code == 200 and cancelled.json()["flow_id"] == flow_id
    assert (await events_of(operator, flow_id))[-1].event == "flow_cancelled"
    gate.touch()
    rerun = await operator.post(f"/flows/{flow_id}/rerun", json={"failed_only": True})
    assert rerun.status_code == 201, rerun.text
    again = rerun.json()["flow_id"]
    assert again != flow_id and rerun.json()["rerun_of"] == flow_id
    assert (await events_of(operator, again))[-1].event == "flow_succeeded"


async def test_schedules_create_list_pause_resume_delete(operator: httpx.AsyncClient) -> None:
    request = {
        "name": "hourly",
        "cron": "0 * * * *",
        "flow": {"name": "tick", "tasks": [task("a", "true")]},
    }
    created = await operator.post("/schedules", json=request)
    assert created.status_code == 201, created.text
    assert created.json()["name"] == "hourly" and created.json()["paused"] is False
    names = [s["name"] for s in (await operator.get("/schedules")).json()["schedules"]]
    assert names == ["hourly"]
    assert (await operator.post("/schedules/hourly/pause")).json()["paused"] is True
    assert (await operator.post("/schedules/hourly/resume")).json()["paused"] is False
    assert (await operator.delete("/schedules/hourly")).status_code == 204
    assert (await operator.get("/schedules")).json()["schedules"] == []
    gone = await operator.delete("/schedules/hourly")
    assert gone.status_code == 404 and gone.json()["error"]["code"] == "not_found"
    bad = await operator.post("/schedules", json={**request, "cron": "every day"})
    assert bad.status_code == 400, bad.text


async def test_flows_list_filters_with_the_where_language(operator: httpx.AsyncClient) -> None:
    ok = await submit(operator, {"name": "fine", "tasks": [task("a", "true")]})
    bad = await submit(operator, {"name": "broken", "tasks": [task("a", "false")]})
    for flow_id in (ok, bad):
        await events_of(operator, flow_id)
    page = (await operator.get("/flows", params={"where": "status=failed or name=fine"})).json()
    assert {f["id"] for f in page["flows"]} == {ok, bad}
    page = (await operator.get("/flows", params={"status": "failed"})).json()
    assert [f["id"] for f in page["flows"]] == [bad]
    one = (await operator.get("/flows", params={"limit": 1})).json()
    assert len(one["flows"]) == 1 and one["next"]
    wrong = await operator.get("/flows", params={"where": "status="})
    assert wrong.status_code == 400 and "where" in wrong.json()["error"]["message"]


async def test_flows_where_quotes_a_name_with_spaces_and_a_bad_one_names_its_column(
    operator: httpx.AsyncClient,
) -> None:
    task = [{"name": "a", "cmd": ["true"]}]
    spaced = await submit(operator, {"name": "nightly etl", "tasks": task})
    quoted = await submit(operator, {"name": 'say "hi"', "tasks": task})
    await submit(operator, {"name": "nightly", "tasks": task})
    for where, ids in (
        ('name="nightly etl"', {spaced}),
        ("name='nightly etl' or name='say \"hi\"'", {spaced, quoted}),
        (r'name="say \"hi\""', {quoted}),
    ):
        page = await operator.get("/flows", params={"where": where})
        assert page.status_code == 200, page.text
        assert {f["id"] for f in page.json()["flows"]} == ids, where
    for where, words in (
        ("name=nightly etl", "where: column 14: unexpected 'etl'"),
        ('name="nightly etl', 'where: column 6: the " that starts here is never closed'),
    ):
        wrong = await operator.get("/flows", params={"where": where})
        assert wrong.status_code == 400 and words in wrong.json()["error"]["message"], wrong.text


async def test_tasks_list_across_flows_filters_pages_and_refuses_a_bad_where(
    operator: httpx.AsyncClient, viewer: httpx.AsyncClient
) -> None:
    ok = await submit(operator, {"name": "fine", "tasks": [task("a", "true")]})
    once = {"max_attempts": 1}
    spec = {"name": "broken", "tasks": [task("b", "false", retry=once)]}
    bad = await submit(operator, spec)
    for flow_id in (ok, bad):
        await events_of(operator, flow_id)
    page = (await viewer.get("/tasks", params={"where": "status=failed and queue=default"})).json()
    assert [(t["flow_id"], t["name"], t["status"]) for t in page["tasks"]] == [(bad, "b", "failed")]
    first = await viewer.get("/tasks", params={"limit": 1})
    assert first.status_code == 200 and len(first.json()["tasks"]) == 1 and first.json()["next"]
    rest = (await viewer.get("/tasks", params={"cursor": first.json()["next"]})).json()
    seen = {(t["flow_id"], t["name"]) for t in [*first.json()["tasks"], *rest["tasks"]]}
    assert {(ok, "a"), (bad, "b")} <= seen
    wrong = await viewer.get("/tasks", params={"where": "colour=red"})
    assert wrong.status_code == 400 and wrong.json()["error"]["message"].startswith("where: ")
    huge = await viewer.get("/tasks", params={"limit": 5000})
    assert huge.status_code == 400 and "limit" in huge.json()["error"]["message"]


async def test_health_and_openapi(viewer: httpx.AsyncClient) -> None:
    health = await viewer.get("/health")
    assert health.status_code == 200, health.text
    assert health.json()["services"]["scheduler"]["status"] == "ok"
    document = (await viewer.get("/openapi.json")).json()
    assert document["openapi"].startswith("3.1")
    schema_files = sorted(
        p.stem for p in (Path(__file__).parents[2] / "proto" / "schema").glob("*.json")
    )
    schemas = document["components"]["schemas"]
    assert set(schema_files) <= set(schemas)  # test_openapi.py: each is the proto's
    assert "/flows/{flow_id}/events" in document["paths"]
    assert document["paths"]["/tasks"]["get"]["responses"]["200"]["content"]["application/json"][
        "schema"
    ] == {"$ref": "#/components/schemas/TaskPage"}


async def test_a_mapped_tasks_instances_are_tasks_with_logs_of_their_own(
    operator: httpx.AsyncClient,
) -> None:
    spec = {
        "name": "mapped",
        "tasks": [
            shell(
                "ls",
                """printf '["a", "b"]' > l.json""",
                outputs=[{"name": "files", "path": "l.json"}],
            ),
            task("say", "echo", "item {{ item }}", depends=["ls"], map={"over": "files"}),
        ],
    }
    flow_id = await submit(operator, spec)
    events = await events_of(operator, flow_id)
    assert events[-1].event == "flow_succeeded"
    expanded = next(e.json() for e in events if e.event == "task_expanded")
    assert (expanded["count"], expanded["items"]) == (2, ["a", "b"])
    view = (await operator.get(f"/flows/{flow_id}")).json()
    assert {t["name"] for t in view["tasks"]} == {"ls", "say", "say[0]", "say[1]"}
    text = await operator.get(f"/flows/{flow_id}/tasks/say%5B1%5D/logs")
    assert text.status_code == 200 and text.text == "item b\n"
    bad = await operator.get(f"/flows/{flow_id}/tasks/say%5B01%5D/logs")
    assert bad.status_code == 400 and "not valid" in bad.json()["error"]["message"]


def submit_body_validator(document: dict[str, Any]) -> jsonschema.Draft202012Validator:
    """The JSON body schema of `POST /flows` as the OpenAPI document states it, each
    `#/components/schemas/NAME` it names resolved within the document."""
    return document_validator(
        document, "/paths/~1flows/post/requestBody/content/application~1json/schema"
    )


async def test_the_openapi_submit_body_is_exactly_what_the_handler_accepts(
    operator: httpx.AsyncClient,
) -> None:
    document = (await operator.get("/openapi.json")).json()
    body = document["paths"]["/flows"]["post"]["requestBody"]["content"]["application/json"]
    assert body["schema"]["oneOf"][1] == {"$ref": "#/components/schemas/SubmitRequest"}
    wrapper = document["components"]["schemas"]["SubmitRequest"]
    assert tuple(wrapper["properties"]) == SUBMIT_FIELDS
    check = submit_body_validator(document)
    spec = {
        "name": "shaped",
        "params": {"n": {"type": "int"}},
        "arguments": {"n": 1},
        "tasks": [task("a", "test", "{{ params.n }}", "=", "2")],
    }
    accepted = {
        "a bare spec": {**spec, "arguments": {"n": 2}},
        "spec and params": {"spec": spec, "params": {"n": 2}},
        "spec, params and id": {"spec": spec, "params": {"n": 2}, "id": "shaped-by-id"},
        "spec alone": {"spec": {**spec, "arguments": {"n": 2}}},
        "spec as text": {"spec": msgspec.json.encode(spec).decode(), "params": {"n": 2}},
    }
    for shape, sent in accepted.items():
        assert check.is_valid(sent), (shape, [e.message for e in check.iter_errors(sent)])
        answer = await operator.post("/flows", json=sent)
        assert answer.status_code == 201, (shape, answer.text)
        flow_id = answer.json()["flow_id"]
        assert (await events_of(operator, flow_id))[-1].event == "flow_succeeded", shape
    assert flow_id != "shaped-by-id"
    by_id = (await operator.get("/flows/shaped-by-id")).json()
    assert by_id["name"] == "shaped"
    refused = {
        "an unknown field": ({"spec": spec, "parms": {}}, "unknown field 'parms'"),
        "an id not a string": ({"spec": spec, "id": 7}, "id is not a string"),
        "params not an object": ({"spec": spec, "params": [1]}, "params is not an object"),
        "spec not an object": ({"spec": [1]}, "spec is neither an object nor the spec's text"),
    }
    for shape, (sent, why) in refused.items():
        assert not check.is_valid(sent), shape
        answer = await operator.post("/flows", json=sent)
        assert answer.status_code == 400, (shape, answer.text)
        assert why in answer.json()["error"]["message"], (shape, answer.text)
    clash = await operator.post("/flows", json={"spec": {**spec, "id": "one"}, "id": "two"})
    assert clash.status_code == 400 and "differs from the spec's id" in clash.text


async def test_a_body_nested_too_deeply_is_a_400_not_a_500(operator: httpx.AsyncClient) -> None:
    deep = b'{"a":' * 10_000 + b"1" + b"}" * 10_000  # 60 KB, within every limit
    for method, path in (("POST", "/schedules"), ("PATCH", "/flows/f-1")):
        answer = await operator.request(method, path, content=deep)
        assert answer.status_code == 400, (path, answer.text)
        assert answer.json()["error"]["code"] == "bad_request"


async def test_a_submit_bodys_spec_may_be_its_text_read_as_weir_submit_reads_a_file(
    operator: httpx.AsyncClient,
) -> None:
    """The web UI sends the text as written beside params and an id, so a YAML 1.1 reading
    (`on` is true, `010` is eight) is the same with or without them."""
    text = (
        "name: text-spec\n"
        "params: {n: {type: int}}\n"
        "metadata: {flag: on, octal: 010}\n"
        "tasks: [{name: a, cmd: [test, '{{ params.n }}', '=', '4']}]\n"
    )
    made = await operator.post("/flows", json={"spec": text, "params": {"n": 4}, "id": "txt-1"})
    assert made.status_code == 201, made.text
    assert made.json()["flow_id"] == "txt-1"
    view = (await operator.get("/flows/txt-1")).json()
    assert view["metadata"] == {"flag": True, "octal": 8}
    broken = await operator.post("/flows", json={"spec": "name: [x\n", "params": {}})
    assert broken.status_code == 422 and "line" in broken.text, broken.text
    clash = await operator.post("/flows", json={"spec": "id: a-1\n" + text, "id": "b-2"})
    assert clash.status_code == 400 and "differs from the spec's id" in clash.text
