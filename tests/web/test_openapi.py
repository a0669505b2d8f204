"""`GET /api/v1/openapi.json` is a valid OpenAPI 3.1 document (openapi-spec-validator), it
describes exactly the routes the app serves, every part of every operation is a named
component, and its schemas are the proto's. Run against the app alone (no NATS: the document
needs none)."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from openapi_spec_validator import validate
from starlette.routing import Route
from weir_proto.errors import ErrorCode
from weir_proto.ids import is_dns_label, is_schedule_name, is_secret_name, is_task_name
from weir_proto.validation import is_output_name
from weir_web.app import create_app
from weir_web.config import WebSettings
from weir_web.endpoints import API_PREFIX, ApiRoute, Backends
from weir_web.errors import STATUS_BY_CODE
from weir_web.openapi_components import ERRORS

SCHEMA_DIR = Path(__file__).parents[2] / "proto" / "schema"
METHODS = {"get", "put", "post", "delete", "patch"}


async def _no_backends() -> Backends:
    raise AssertionError("the document needs no backends")


async def _served() -> tuple[dict[str, Any], list[Route]]:
    """The document as `GET /api/v1/openapi.json` answers it, and the app's routes."""
    app = create_app(WebSettings(), connect=_no_backends)
    transport = httpx.ASGITransport(app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
        answer = await client.get(f"{API_PREFIX}/openapi.json")
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "application/json"
    return answer.json(), [r for r in app.routes if isinstance(r, Route)]


def _operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (path, method, op)
        for path, ops in document["paths"].items()
        for method, op in ops.items()
        if method in METHODS
    ]


async def test_the_served_document_is_valid_openapi_3_1() -> None:
    document, _ = await _served()
    assert document["openapi"] == "3.1.0"
    validate(document)  # raises on any fault, an unresolvable $ref among them


async def test_the_validator_would_catch_a_reference_the_document_cannot_resolve() -> None:
    """The fault the document once had: a schema's `#/$defs/...` left relative to it."""
    document, _ = await _served()
    broken = copy.deepcopy(document)
    page = broken["components"]["schemas"]["FlowPage"]
    page["$ref"] = "#/$defs/FlowPage"
    with pytest.raises(Exception, match="FlowPage"):
        validate(broken)


async def test_every_route_the_app_serves_is_documented_and_nothing_else() -> None:
    document, routes = await _served()
    served = {
        (route.path.removeprefix(API_PREFIX), method.lower())
        for route in routes
        if route.path.startswith(API_PREFIX)
        for method in route.methods or ()
        if method != "HEAD"
    }
    documented = {(path, method) for path, method, _ in _operations(document)}
    assert sorted(served - documented) == [], "served but not in the OpenAPI document"
    assert sorted(documented - served) == [], "in the OpenAPI document but not served"
    api = [r for r in routes if r.path.startswith(API_PREFIX)]
    assert all(isinstance(r, ApiRoute) for r in api), "every /api/v1 route declares its role"
    assert document["servers"] == [{"url": API_PREFIX}]


def _is_named(schema: dict[str, Any]) -> bool:
    if "oneOf" in schema:
        return all(_is_named(s) for s in schema["oneOf"])
    return set(schema) == {"$ref"} and schema["$ref"].startswith("#/components/schemas/")


async def test_every_parameter_body_and_response_is_a_named_component() -> None:
    document, _ = await _served()
    components = document["components"]
    for path, method, op in _operations(document):
        where = f"{method.upper()} {path}"
        for parameter in op.get("parameters", []):
            assert set(parameter) == {"$ref"}, where
            name = parameter["$ref"].removeprefix("#/components/parameters/")
            assert _is_named(components["parameters"][name]["schema"]), (where, name)
        if "requestBody" in op:
            for media, content in op["requestBody"]["content"].items():
                assert _is_named(content["schema"]), (where, media)
        successes = [s for s in op["responses"] if s.startswith("2")]
        assert successes, where
        for status, response in op["responses"].items():
            if "$ref" in response:  # an error: the Error body, under its status's name
                name = response["$ref"].removeprefix("#/components/responses/")
                assert name == ERRORS[int(status)][0], (where, status)
                continue
            assert status in successes or (path, status) == ("/health", "503"), (where, status)
            for media, content in response.get("content", {}).items():
                assert _is_named(content["schema"]), (where, status, media)
        for status in ("401", "403", "500"):
            if op["description"] != "Role: none.":
                assert status in op["responses"], (where, status)
    for name, response in components["responses"].items():
        assert response["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/Error"
        }, name


async def test_the_streams_and_the_json_forms_are_described() -> None:
    document, _ = await _served()
    paths = document["paths"]

    def content(path: str) -> dict[str, Any]:
        ok: dict[str, Any] = paths[path]["get"]["responses"]["200"]["content"]
        return {media: body["schema"]["$ref"].rsplit("/", 1)[1] for media, body in ok.items()}

    assert content("/flows/{flow_id}/events") == {
        "text/event-stream": "FlowEventStream",
        "application/json": "FlowEventList",
    }
    assert content("/flows/{flow_id}/tasks/{task}/logs") == {
        "text/plain": "LogText",
        "text/event-stream": "LogStream",
    }
    assert content("/flows") == {
        "application/json": "FlowPage",
        "text/event-stream": "FlowChangeStream",
    }
    schemas = document["components"]["schemas"]
    frame = schemas["FlowEventFrame"]["properties"]
    assert frame["data"]["contentSchema"] == {"$ref": "#/components/schemas/FlowEvent"}
    assert {"flow_submitted", "task_succeeded", "flow_succeeded"} <= set(frame["event"]["enum"])
    assert schemas["LogFrame"]["properties"]["event"]["enum"] == ["stdout", "stderr", "end"]
    events = paths["/flows/{flow_id}/events"]["get"]["parameters"]
    assert {"$ref": "#/components/parameters/LastEventIdHeader"} in events
    download = paths["/flows/{flow_id}/artifacts/{name}"]["get"]["responses"]["200"]
    assert {"Content-Length", "X-Weir-SHA256", "Repr-Digest"} <= set(download["headers"])


async def test_the_component_schemas_are_the_protos_json_schemas() -> None:
    """Each file of proto/schema whole, its `#/$defs/X` references (and discriminator
    mappings) made absolute."""
    document, _ = await _served()
    schemas = document["components"]["schemas"]
    files = sorted(SCHEMA_DIR.glob("*.json"))
    assert files
    for file in files:
        text = file.read_text().replace('"#/', f'"#/components/schemas/{file.stem}/')
        on_disk = json.loads(text)
        on_disk.pop("$schema")
        assert schemas[file.stem] == on_disk, file.stem
        assert "$id" not in json.dumps(schemas[file.stem]), file.stem


async def test_the_error_schema_names_every_code_and_each_status_its_code() -> None:
    document, _ = await _served()
    schemas = document["components"]["schemas"]
    assert set(schemas["ErrorCode"]["enum"]) == {code.value for code in ErrorCode}
    assert schemas["Error"]["required"] == ["error"]
    for status in ERRORS:
        assert status in STATUS_BY_CODE.values(), status


@pytest.mark.parametrize(
    ("schema", "check", "samples"),
    [
        ("FlowId", is_dns_label, ["etl-1", "a", "-a", "A", "a_b", "x" * 63, "x" * 64, "a.b"]),
        ("TaskName", is_task_name, ["load", "say[0]", "say[01]", "say[]", "Say", "a[12]"]),
        ("ArtifactName", is_output_name, ["report.csv", "_x", "a b", "x" * 128, "x" * 129]),
        ("ScheduleNameString", is_schedule_name, ["nightly", "x" * 40, "x" * 41, "a."]),
        ("SecretNameString", is_secret_name, ["api-token", "a.b", "a..b", "UP", "a%0A"]),
    ],
)
async def test_the_path_parameter_patterns_are_the_checks_weir_web_makes(
    schema: str, check: Any, samples: list[str]
) -> None:
    document, _ = await _served()
    rule = document["components"]["schemas"][schema]
    for sample in samples:
        fits = re.search(rule["pattern"], sample) is not None
        fits = fits and len(sample) <= rule.get("maxLength", len(sample))
        assert fits == check(sample), (schema, sample)
