"""`GET /api/v1/openapi.json`: the API described in OpenAPI 3.1, its schemas the proto's JSON
Schemas (those of proto/schema, rendered by `weir_proto.schema`). Each operation's role comes
from the route that serves it (`ApiRoute.access`, the same declaration the caller is checked
against)."""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from typing import Any

from weir_proto.schema import render

from weir_web.endpoints import API_PREFIX, ApiRoute, access_name

ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {
                "code": {"type": "string"},
                "message": {"type": "string"},
                "problems": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "path": {"type": "string"},
                            "message": {"type": "string"},
                            "task": {"type": "string"},
                        },
                    },
                },
            },
        }
    },
}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": schema}}}


def _op(
    summary: str,
    ok: tuple[int, str, dict[str, Any]] = (200, "application/json", {}),
    *,
    body: dict[str, Any] | None = None,
    params: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    status, media, schema = ok
    op: dict[str, Any] = {
        "summary": summary,
        "responses": {
            str(status): {"description": "success", "content": {media: {"schema": schema}}}
            if media
            else {"description": "success"},
            "default": {"description": "error", **_json(_ref("Error"))},
        },
    }
    if body is not None:
        op["requestBody"] = {"required": True, "content": body}
    if params:
        op["parameters"] = params
    return op


def _path(name: str, what: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": what,
        "schema": {"type": "string"},
    }


def _query(name: str, schema: dict[str, Any], what: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "description": what, "schema": schema}


def submit_request(schemas: dict[str, Any]) -> dict[str, Any]:
    """`POST /flows`'s other JSON body: the spec beside values for its params and its id
    (weir_web.routes.flows.spec_and_params), built from the FlowSpec schema's own fields."""
    fields = schemas["FlowSpec"]["$defs"]["FlowSpec"]["properties"]
    return {
        "type": "object",
        "required": ["spec"],
        "additionalProperties": False,
        "properties": {
            "spec": _ref("FlowSpec"),
            "params": {
                **fields["arguments"],
                "description": "values of the spec's declared params, over its `arguments`",
            },
            "id": {
                **fields["id"],
                "description": "the flow's id, as the spec's `id` (which it must not contradict)",
            },
        },
    }


FLOW = _path("flow_id", "flow id (DNS-1123 label)")
NONE: tuple[int, str, dict[str, Any]] = (204, "", {})


_UPDATE = {
    "type": "object",
    "description": "UpdateRequest without flow_id (it is in the path)",
    "properties": {
        "priority": {"type": "integer"},
        "scheduled_at": {"type": "string", "format": "date-time"},
        "start_now": {"type": "boolean"},
        "params": {"type": "object"},
        "tags": {"type": "array", "items": {"type": "string"}},
        "metadata": {"type": "object"},
    },
    "additionalProperties": False,
}


@functools.cache
def _schemas() -> dict[str, Any]:
    schemas: dict[str, Any] = {"Error": ERROR}
    for file, text in render().items():
        name = file.removesuffix(".json")
        schema = json.loads(text)
        schema.pop("$schema", None)
        schema["$id"] = f"urn:weir:schema:{name}"  # its own `#/$defs/...` resolve inside it
        schemas[name] = schema
    return schemas


def serving_route(routes: Sequence[ApiRoute], path: str, method: str) -> ApiRoute:
    """The route that serves `method` on the documented `path` (LookupError: none)."""
    for route in routes:
        if method.upper() in (route.methods or ()) and route.path_regex.match(API_PREFIX + path):
            return route
    raise LookupError(f"no route serves {method.upper()} {path}")


def openapi_document(routes: Sequence[ApiRoute]) -> dict[str, Any]:
    """The document, each operation's role that of the route in `routes` serving it."""
    schemas = _schemas()
    spec_body = {
        "application/json": {"schema": {"oneOf": [_ref("FlowSpec"), submit_request(schemas)]}},
        "application/yaml": {"schema": _ref("FlowSpec")},
    }
    sse = (200, "text/event-stream", {"type": "string"})
    paths = {
        "/session": {
            "post": _op(
                "Exchange a token for a session cookie and CSRF token",
                (201, "application/json", {"type": "object"}),
                body=_json({"type": "object", "properties": {"token": {"type": "string"}}})[
                    "content"
                ],
            ),
            "get": _op("The session's role and CSRF token"),
            "delete": _op("Log out", NONE),
        },
        "/flows": {
            "get": _op(
                "List flows, newest first",
                (200, "application/json", _ref("FlowPage")),
                params=[
                    _query("status", {"type": "string"}, "one status"),
                    _query("where", {"type": "string"}, "`weir flows --where` filter"),
                    _query("limit", {"type": "integer"}, "page size"),
                    _query("cursor", {"type": "string"}, "`next` of the previous page"),
                ],
            ),
            "post": _op(
                "Submit a flow (JSON or YAML)",
                (201, "application/json", _ref("SubmitAccepted")),
                body=spec_body,
            ),
        },
        "/tasks": {
            "get": _op(
                "List tasks across flows, the newest flows' first",
                (200, "application/json", _ref("TaskPage")),
                params=[
                    _query("where", {"type": "string"}, "`weir tasks --where` filter"),
                    _query("limit", {"type": "integer"}, "page size"),
                    _query("cursor", {"type": "string"}, "`next` of the previous page"),
                ],
            )
        },
        "/flows/{flow_id}": {
            "get": _op("One flow", (200, "application/json", _ref("FlowView")), params=[FLOW]),
            "patch": _op(
                "Update a flow that has not started: priority, scheduled_at (or start_now), "
                "params (merged), tags, metadata; 409 once it has started",
                (200, "application/json", _ref("Stepped")),
                params=[FLOW],
                body=_json(_UPDATE)["content"],
            ),
        },
        "/flows/{flow_id}/retry": {
            "post": _op(
                "Run one failed or succeeded task of the flow again, inside the flow",
                (200, "application/json", _ref("Stepped")),
                params=[FLOW],
                body=_json(
                    {
                        "type": "object",
                        "required": ["task"],
                        "properties": {
                            "task": {"type": "string"},
                            "downstream": {"type": "boolean"},
                        },
                    }
                )["content"],
            )
        },
        "/flows/{flow_id}/pause": {
            "post": _op(
                "Hand out no new task of the flow until it is resumed",
                (200, "application/json", _ref("Stepped")),
                params=[FLOW],
            )
        },
        "/flows/{flow_id}/resume": {
            "post": _op(
                "Hand out the paused flow's work again",
                (200, "application/json", _ref("Stepped")),
                params=[FLOW],
            )
        },
        "/flows/{flow_id}/events": {
            "get": _op(
                "The flow's events: SSE until its (last) terminal event (resumes after "
                "Last-Event-ID), or the log so far with Accept: application/json",
                sse,
                params=[FLOW],
            )
        },
        "/flows/{flow_id}/tasks/{task}/logs": {
            "get": _op(
                "A task attempt's output: its bytes as text, or with follow=true SSE whose "
                "events (stdout, stderr, then end) each carry a JSON string",
                (200, "text/plain", {"type": "string"}),
                params=[
                    FLOW,
                    _path("task", "task name"),
                    _query("attempt", {"type": "integer"}, "default: the latest"),
                    _query("follow", {"type": "boolean"}, "stream live (SSE)"),
                ],
            )
        },
        "/flows/{flow_id}/artifacts": {"get": _op("The flow's artifacts", params=[FLOW])},
        "/flows/{flow_id}/artifacts/{name}": {
            "get": _op(
                "An artifact's bytes (X-Weir-SHA256, Repr-Digest, Content-Length)",
                (200, "application/octet-stream", {"type": "string", "format": "binary"}),
                params=[FLOW, _path("name", "output name")],
            )
        },
        "/flows/{flow_id}/cancel": {
            "post": _op(
                "Cancel a flow",
                (200, "application/json", {"type": "object"}),
                params=[FLOW],
            )
        },
        "/flows/{flow_id}/rerun": {
            "post": _op(
                "Rerun an ended flow",
                (201, "application/json", _ref("SubmitAccepted")),
                params=[FLOW],
                body=_json({"type": "object", "properties": {"failed_only": {"type": "boolean"}}})[
                    "content"
                ],
            )
        },
        "/schedules": {
            "get": _op("Every schedule", (200, "application/json", _ref("ScheduleList"))),
            "post": _op(
                "Create or replace a schedule",
                (201, "application/json", _ref("ScheduleView")),
                body=_json(_ref("ScheduleRequest"))["content"],
            ),
        },
        "/schedules/{name}/pause": {
            "post": _op(
                "Pause a schedule",
                (200, "application/json", _ref("ScheduleView")),
                params=[_path("name", "schedule")],
            )
        },
        "/schedules/{name}/resume": {
            "post": _op(
                "Resume a schedule",
                (200, "application/json", _ref("ScheduleView")),
                params=[_path("name", "schedule")],
            )
        },
        "/schedules/{name}": {
            "delete": _op("Delete a schedule", NONE, params=[_path("name", "schedule")])
        },
        "/secrets": {"get": _op("Secret names (never values)")},
        "/secrets/{name}": {
            "put": _op(
                "Set a secret (the value is never echoed)",
                NONE,
                params=[_path("name", "secret name")],
                body=_json({"type": "object", "properties": {"value": {"type": "string"}}})[
                    "content"
                ],
            ),
            "delete": _op("Remove a secret", NONE, params=[_path("name", "secret name")]),
        },
        "/health": {"get": _op("Health of the scheduler and runners (weir.health.*)")},
        "/openapi.json": {"get": _op("This document")},
    }
    for path, operations in paths.items():
        for method, operation in operations.items():
            role = access_name(serving_route(routes, path, method).access)
            operation["description"] = f"Role: {role}."
    return {
        "openapi": "3.1.0",
        "info": {"title": "weir HTTP API", "version": "1"},
        "servers": [{"url": "/api/v1"}],
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "session": {"type": "apiKey", "in": "cookie", "name": "weir_session"},
            },
        },
        "security": [{"bearer": []}, {"session": []}],
        "paths": paths,
    }
