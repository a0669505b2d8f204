"""`GET /api/v1/openapi.json`: the API described in OpenAPI 3.1.

Its schemas are the proto's JSON Schemas (those of proto/schema, rendered by
`weir_proto.schema`), each whole under its file's name, only their `#/$defs/X` references
made absolute (`#/components/schemas/NAME/$defs/X`: an OpenAPI document resolves a `$ref`
against itself, not against an embedded schema); beside them the bodies that are weir-web's
own, rendered from the types its endpoints decode and encode (`weir_web.bodies`,
`weir_web.errors.Error`). Every parameter, body and response of every operation is a named
component, the errors included (each status an operation can answer, with the `Error` body).

Each operation's role comes from the route that serves it (`ApiRoute.access`, the same
declaration the caller is checked against); `tests/web/test_openapi.py` holds the document
and the app's routes to each other.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable, Sequence
from typing import Any

import msgspec
from weir_proto.api import LIST_LIMIT_DEFAULT, LIST_LIMIT_MAX
from weir_proto.ids import DNS1123_LABEL_MAX, SCHEDULE_NAME_MAX, SECRET_NAME, SECRET_NAME_MAX
from weir_proto.schema import render
from weir_proto.status import FlowStatus
from weir_proto.validation import OUTPUT_NAME

from weir_web.bodies import REQUEST_BODIES, RESPONSE_BODIES
from weir_web.endpoints import API_PREFIX, ApiRoute, access_name
from weir_web.errors import Error

SCHEMAS = "#/components/schemas/"
Json = dict[str, Any]

DNS_LABEL_PATTERN = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
"""`weir_proto.ids.DNS1123_LABEL` as an ECMA-262 pattern (OpenAPI's dialect)."""


def ecma_pattern(python: re.Pattern[str]) -> str:
    """A Python pattern of `weir_proto` in ECMA-262 (`\\Z` is `$` there)."""
    return python.pattern.replace(r"\Z", "$")


def ref(name: str) -> Json:
    return {"$ref": SCHEMAS + name}


def _absolute(reference: str, name: str) -> str:
    return SCHEMAS + name + reference[1:] if reference.startswith("#/") else reference


def _absolute_refs(node: Any, name: str) -> Any:
    """`node` with every `#/...` reference (a `$ref`, a discriminator's `mapping` value)
    made relative to the document, at `name`."""
    if isinstance(node, list):
        return [_absolute_refs(item, name) for item in node]
    if not isinstance(node, dict):
        return node
    out: Json = {}
    for key, value in node.items():
        if key == "$ref" and isinstance(value, str):
            out[key] = _absolute(value, name)
        elif key == "mapping" and all(isinstance(v, str) for v in value.values()):
            out[key] = {k: _absolute(v, name) for k, v in value.items()}
        else:
            out[key] = _absolute_refs(value, name)
    return out


def proto_schemas() -> dict[str, Json]:
    """Each schema of proto/schema under its name, its references made absolute."""
    schemas = {}
    for file, text in render().items():
        name = file.removesuffix(".json")
        schema = json.loads(text)
        schema.pop("$schema", None)  # the document's dialect (JSON Schema 2020-12) is it
        schemas[name] = _absolute_refs(schema, name)
    return schemas


def _proto_fields(schemas: dict[str, Json], name: str) -> dict[str, Json]:
    """The properties of the proto message `name` (its schema is a `$ref` into its
    `$defs`)."""
    properties: dict[str, Json] = schemas[name]["$defs"][name]["properties"]
    return properties


def _submit_request(schemas: dict[str, Json]) -> Json:
    """`POST /flows`' other JSON body: the spec beside values for its params and its id
    (weir_web.routes.flows.spec_and_params), built from the FlowSpec schema's own fields."""
    fields = _proto_fields(schemas, "FlowSpec")
    return {
        "title": "SubmitRequest",
        "type": "object",
        "required": ["spec"],
        "additionalProperties": False,
        "properties": {
            "spec": ref("FlowSpec"),
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


def _update_request(schemas: dict[str, Json]) -> Json:
    """`PATCH /flows/{id}`'s body: UpdateRequest without `flow_id` (the path names it)."""
    update = schemas["UpdateRequest"]["$defs"]["UpdateRequest"]
    return {
        "title": "UpdateBody",
        "description": update.get("description", ""),
        "type": "object",
        "additionalProperties": False,
        "properties": {k: v for k, v in update["properties"].items() if k != "flow_id"},
    }


def _sse_event(data: Json, events: Sequence[str], *, with_id: str | None = None) -> Json:
    """One Server-Sent Event (OpenAPI models an event stream as an array of such objects):
    its `event` name and its `data`, a JSON text of the schema `data`."""
    properties: Json = {
        "event": {"type": "string", "enum": [*events]},
        "data": {"type": "string", "contentMediaType": "application/json", "contentSchema": data},
    }
    required = ["event", "data"]
    if with_id:
        properties["id"] = {"type": "string", "pattern": "^[0-9]+$", "description": with_id}
        required.insert(0, "id")
    return {"type": "object", "required": required, "properties": properties}


def _string(description: str, **rules: Any) -> Json:
    return {"type": "string", "description": description, **rules}


def _web_schemas(schemas: dict[str, Json]) -> dict[str, Json]:
    """weir-web's own schemas: its bodies, the error, the parameters, the event streams."""
    _, bodies = msgspec.json.schema_components(
        [*REQUEST_BODIES, *RESPONSE_BODIES, Error], ref_template=SCHEMAS + "{name}"
    )
    event_types = sorted(schemas["FlowEvent"]["discriminator"]["mapping"])
    own: dict[str, Json] = {
        **bodies,
        "SubmitRequest": _submit_request(schemas),
        "UpdateBody": _update_request(schemas),
        "ArtifactList": {"type": "array", "items": ref("Artifact")},
        "FlowEventList": {
            "type": "array",
            "items": ref("FlowEvent"),
            "description": "The flow's events after Last-Event-ID, in seq order.",
        },
        "FlowEventStream": {
            "type": "array",
            "description": "text/event-stream: one event per FlowEvent (`id` its seq, `event` "
            "its type), ending after the flow's terminal event; a `: keepalive` comment "
            "every 15 s.",
            "items": ref("FlowEventFrame"),
        },
        "FlowEventFrame": _sse_event(ref("FlowEvent"), event_types, with_id="the event's seq"),
        "LogStream": {
            "type": "array",
            "description": "text/event-stream: `stdout` and `stderr` events, each a JSON "
            'string of the text, then one `end` event (data `""`).',
            "items": ref("LogFrame"),
        },
        "LogFrame": _sse_event({"type": "string"}, ["stdout", "stderr", "end"]),
        "LogText": _string("The attempt's output, as the task wrote it (stdout and stderr)."),
        "FlowChangeStream": {
            "type": "array",
            "description": "text/event-stream: `ready` once live, then `change` per flow whose "
            "status may have changed, or `resync` when too many changed at once.",
            "items": ref("FlowChangeFrame"),
        },
        "FlowChangeFrame": _sse_event(ref("FlowChange"), ["ready", "change", "resync"]),
        "ArtifactBytes": _string(
            "The artifact's bytes, as uploaded.", contentMediaType="application/octet-stream"
        ),
        "OpenApiDocument": {
            "type": "object",
            "description": "This document: OpenAPI 3.1.",
            "required": ["openapi", "info", "paths", "components"],
            "properties": {"openapi": {"type": "string", "pattern": "^3\\.1\\."}},
        },
        "FlowId": _string(
            "A flow id: a DNS-1123 label",
            pattern=DNS_LABEL_PATTERN,
            maxLength=DNS1123_LABEL_MAX,
        ),
        "TaskName": _string(
            "A task's name (a DNS-1123 label), or an instance NAME[i] of a mapped task",
            pattern="^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\[(0|[1-9][0-9]{0,8})\\])?$",
        ),
        "ArtifactName": _string("An output's name", pattern=ecma_pattern(OUTPUT_NAME)),
        "ScheduleNameString": _string(
            "A schedule's name: a DNS-1123 label",
            pattern=DNS_LABEL_PATTERN,
            maxLength=SCHEDULE_NAME_MAX,
        ),
        "SecretNameString": _string(
            "A secret's name", pattern=ecma_pattern(SECRET_NAME), maxLength=SECRET_NAME_MAX
        ),
        "FlowStatus": {"type": "string", "enum": [s.value for s in FlowStatus]},
        "Where": _string("a filter in the query language of `weir flows|tasks --where`"),
        "Limit": {
            "type": "integer",
            "minimum": 1,
            "maximum": LIST_LIMIT_MAX,
            "default": LIST_LIMIT_DEFAULT,
        },
        "Cursor": _string("`next` of the previous page"),
        "Attempt": {"type": "integer", "minimum": 1, "maximum": 1_000_000},
        "Follow": {"type": "boolean", "default": False},
        "EventSeq": _string("an event's seq", pattern="^[0-9]+$"),
    }
    clash = own.keys() & schemas.keys()
    assert not clash, f"weir-web's schemas would replace the proto's {sorted(clash)}"
    return own


def _parameter(name: str, where: str, schema: str, what: str, required: bool = False) -> Json:
    return {
        "name": name,
        "in": where,
        "required": required or where == "path",
        "description": what,
        "schema": ref(schema),
    }


PARAMETERS: dict[str, Json] = {
    "FlowIdPath": _parameter("flow_id", "path", "FlowId", "the flow's id"),
    "TaskPath": _parameter("task", "path", "TaskName", "the task (or mapped instance)"),
    "ArtifactNamePath": _parameter("name", "path", "ArtifactName", "the output's name"),
    "ScheduleNamePath": _parameter("name", "path", "ScheduleNameString", "the schedule"),
    "SecretNamePath": _parameter("name", "path", "SecretNameString", "the secret"),
    "StatusQuery": _parameter("status", "query", "FlowStatus", "only flows of this status"),
    "WhereQuery": _parameter("where", "query", "Where", "a `--where` filter"),
    "LimitQuery": _parameter("limit", "query", "Limit", "page size"),
    "CursorQuery": _parameter("cursor", "query", "Cursor", "the page after this cursor"),
    "AttemptQuery": _parameter("attempt", "query", "Attempt", "the attempt (default: latest)"),
    "FollowQuery": _parameter(
        "follow", "query", "Follow", "stream the log live as Server-Sent Events"
    ),
    "LastEventIdHeader": _parameter(
        "Last-Event-ID", "header", "EventSeq", "resume after this seq (EventSource sends it)"
    ),
}

ERRORS: dict[int, tuple[str, str]] = {
    400: ("BadRequest", "`bad_request`: a malformed parameter, body, filter or name"),
    401: ("Unauthorized", "`unauthorized`: no valid token or session"),
    403: (
        "Forbidden",
        "`forbidden`: the caller's role is below the operation's, or a "
        "cookie-carried write without its CSRF token or from another site",
    ),
    404: ("NotFound", "`not_found`: no such flow, task, attempt, artifact, schedule or secret"),
    409: ("Conflict", "`conflict`: the request contradicts the state (the scheduler's reason)"),
    413: ("TooLarge", "`too_large`: the body passed its limit"),
    422: ("InvalidFlow", "`invalid_flow`: the spec was rejected; `problems` lists every one"),
    429: ("RateLimited", "`rate_limited`: too many submits; wait `retry_after` seconds"),
    500: ("Internal", "`internal`: see the weir-web log (a corrupt artifact is one)"),
    503: (
        "Unavailable",
        "`unavailable` (no scheduler, NATS or storage answered) or "
        "`overloaded` (too many flows not ended; wait `retry_after` seconds)",
    ),
    504: ("Timeout", "`timeout`: NATS did not answer in time"),
}
RETRY_AFTER = {
    "Retry-After": {
        "description": "seconds to wait (`rate_limited`, `overloaded`)",
        "schema": {"type": "integer", "minimum": 1},
    }
}


def _error_responses() -> dict[str, Json]:
    responses = {}
    for status, (name, what) in ERRORS.items():
        response: Json = {
            "description": what,
            "content": {"application/json": {"schema": ref("Error")}},
        }
        if status in (429, 503):
            response["headers"] = RETRY_AFTER
        responses[name] = response
    return responses


MEDIA = {
    "json": "application/json",
    "sse": "text/event-stream",
    "text": "text/plain",
    "bytes": "application/octet-stream",
}
NATS = (503, 504)
"""What any operation that asks NATS may answer besides its own errors."""


def _ok(description: str, **content: str) -> Json:
    """A response: each media type (the keyword's name: `json` for `application/json`,
    `sse` for `text/event-stream`, `text` for `text/plain`, `bytes` for
    `application/octet-stream`) to the named schema of its body."""
    media = {MEDIA[kind]: {"schema": ref(schema)} for kind, schema in content.items()}
    return {"description": description, "content": media} if media else {"description": description}


def _op(
    summary: str,
    ok: dict[int, Json],
    *,
    errors: Iterable[int] = (),
    params: Sequence[str] = (),
    body: Json | None = None,
) -> Json:
    """An operation: its successes, the error statuses of its own (the role's 401/403 and
    500 are added for every one), its named parameters and its body's content."""
    operation: Json = {
        "summary": summary,
        "responses": {str(status): response for status, response in ok.items()},
        "x-errors": sorted({*errors, 500}),
    }
    if params:
        operation["parameters"] = [{"$ref": f"#/components/parameters/{p}"} for p in params]
    if body is not None:
        operation["requestBody"] = body
    return operation


def _body(required: bool = False, **content: str) -> Json:
    """A request body (optional ones may be left out: `{}` is assumed)."""
    return {**_ok("the request body", **content), "required": required}


FLOW = ("FlowIdPath",)
NO_CONTENT = {204: _ok("done; no body")}


def _paths() -> dict[str, dict[str, Json]]:
    flow_stepped = {200: _ok("the flow's status after it", json="Stepped")}
    schedule = {200: _ok("the schedule", json="ScheduleView")}
    return {
        "/session": {
            "post": _op(
                "Exchange a token for a session cookie and CSRF token",
                {201: _ok("the session (and its cookie, Set-Cookie)", json="Session")},
                errors=(400, 401, 403, 413),
                body=_body(True, json="Login"),
            ),
            "get": _op("The session's role and CSRF token", {200: _ok("", json="Session")}),
            "delete": _op("Log out (clears the cookie)", NO_CONTENT),
        },
        "/flows": {
            "get": _op(
                "List flows, newest first; with Accept: text/event-stream, the live feed of "
                "which flows change",
                {
                    200: _ok(
                        "a page of flows, or the change feed",
                        json="FlowPage",
                        sse="FlowChangeStream",
                    )
                },
                errors=(400, *NATS),
                params=("StatusQuery", "WhereQuery", "LimitQuery", "CursorQuery"),
            ),
            "post": _op(
                "Submit a flow (JSON or YAML); 200 for the same flow submitted again",
                {
                    201: _ok("submitted", json="SubmitAccepted"),
                    200: _ok("already submitted (the same id and spec)", json="SubmitAccepted"),
                },
                errors=(400, 409, 413, 422, 429, *NATS),
                body={
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {"oneOf": [ref("FlowSpec"), ref("SubmitRequest")]}
                        },
                        "application/yaml": {"schema": ref("FlowSpec")},
                    },
                },
            ),
        },
        "/tasks": {
            "get": _op(
                "List tasks across flows, the newest flows' first",
                {200: _ok("a page of tasks", json="TaskPage")},
                errors=(400, *NATS),
                params=("WhereQuery", "LimitQuery", "CursorQuery"),
            )
        },
        "/flows/{flow_id}": {
            "get": _op(
                "One flow",
                {200: _ok("the flow", json="FlowView")},
                errors=(400, 404, *NATS),
                params=FLOW,
            ),
            "patch": _op(
                "Update a flow that has not started: priority, scheduled_at (or start_now), "
                "params (merged), tags, metadata; 409 once it has started",
                flow_stepped,
                errors=(400, 404, 409, 413, 422, *NATS),
                params=FLOW,
                body=_body(json="UpdateBody"),
            ),
        },
        "/flows/{flow_id}/retry": {
            "post": _op(
                "Run one failed or succeeded task of the flow again, inside the flow",
                flow_stepped,
                errors=(400, 404, 409, 413, *NATS),
                params=FLOW,
                body=_body(True, json="Retry"),
            )
        },
        "/flows/{flow_id}/pause": {
            "post": _op(
                "Hand out no new task of the flow until it is resumed",
                flow_stepped,
                errors=(400, 404, 409, 413, *NATS),
                params=FLOW,
                body=_body(json="Pause"),
            )
        },
        "/flows/{flow_id}/resume": {
            "post": _op(
                "Hand out the paused flow's work again",
                flow_stepped,
                errors=(400, 404, 409, 413, *NATS),
                params=FLOW,
                body=_body(json="Resume"),
            )
        },
        "/flows/{flow_id}/events": {
            "get": _op(
                "The flow's events: Server-Sent Events until its (last) terminal event, "
                "resuming after Last-Event-ID; with Accept: application/json, the log so far",
                {
                    200: _ok(
                        "the events",
                        sse="FlowEventStream",
                        json="FlowEventList",
                    )
                },
                errors=(400, 404, *NATS),
                params=(*FLOW, "LastEventIdHeader"),
            )
        },
        "/flows/{flow_id}/tasks/{task}/logs": {
            "get": _op(
                "A task attempt's output: its bytes as text, or with follow=true Server-Sent "
                "Events (stdout, stderr, then end) each carrying a JSON string",
                {
                    200: _ok(
                        "the log (text/event-stream with follow=true)",
                        text="LogText",
                        sse="LogStream",
                    )
                },
                errors=(400, 404, *NATS),
                params=(*FLOW, "TaskPath", "AttemptQuery", "FollowQuery"),
            )
        },
        "/flows/{flow_id}/artifacts": {
            "get": _op(
                "The flow's artifacts",
                {200: _ok("name, size and SHA-256 of each", json="ArtifactList")},
                errors=(400, *NATS),
                params=FLOW,
            )
        },
        "/flows/{flow_id}/artifacts/{name}": {
            "get": _op(
                "An artifact's bytes, streamed from the store as they arrive",
                {200: _artifact_download()},
                errors=(400, 404, *NATS),
                params=(*FLOW, "ArtifactNamePath"),
            )
        },
        "/flows/{flow_id}/cancel": {
            "post": _op(
                "Cancel a flow",
                {200: _ok("the flow's status after it", json="FlowState")},
                errors=(400, 404, 409, 413, *NATS),
                params=FLOW,
                body=_body(json="Cancel"),
            )
        },
        "/flows/{flow_id}/rerun": {
            "post": _op(
                "Run an ended flow again, as a new flow",
                {
                    201: _ok("the new flow", json="SubmitAccepted"),
                    200: _ok("the rerun that already exists", json="SubmitAccepted"),
                },
                errors=(400, 404, 409, 413, 429, *NATS),
                params=FLOW,
                body=_body(json="Rerun"),
            )
        },
        "/schedules": {
            "get": _op("Every schedule", {200: _ok("", json="ScheduleList")}, errors=NATS),
            "post": _op(
                "Create or replace a schedule",
                {201: _ok("the schedule", json="ScheduleView")},
                errors=(400, 413, 422, *NATS),
                body=_body(True, json="ScheduleRequest"),
            ),
        },
        "/schedules/{name}/pause": {
            "post": _op(
                "Pause a schedule",
                schedule,
                errors=(400, 404, *NATS),
                params=("ScheduleNamePath",),
            )
        },
        "/schedules/{name}/resume": {
            "post": _op(
                "Resume a schedule",
                schedule,
                errors=(400, 404, *NATS),
                params=("ScheduleNamePath",),
            )
        },
        "/schedules/{name}": {
            "delete": _op(
                "Delete a schedule",
                NO_CONTENT,
                errors=(400, 404, *NATS),
                params=("ScheduleNamePath",),
            )
        },
        "/secrets": {
            "get": _op(
                "Secret names (never values)", {200: _ok("", json="SecretList")}, errors=NATS
            )
        },
        "/secrets/{name}": {
            "put": _op(
                "Set a secret (the value is never echoed); 503 without WEIR_SECRET_KEY",
                NO_CONTENT,
                errors=(400, 413, *NATS),
                params=("SecretNamePath",),
                body=_body(True, json="SecretValue"),
            ),
            "delete": _op(
                "Remove a secret",
                NO_CONTENT,
                errors=(400, 404, *NATS),
                params=("SecretNamePath",),
            ),
        },
        "/health": {
            "get": _op(
                "Health of the scheduler and runners (weir.health.*)",
                {
                    200: _ok("the scheduler is healthy", json="Health"),
                    503: _ok("degraded: the scheduler did not answer healthy", json="Health"),
                },
            )
        },
        "/openapi.json": {"get": _op("This document", {200: _ok("", json="OpenApiDocument")})},
    }


def _artifact_download() -> Json:
    return {
        **_ok("the bytes", bytes="ArtifactBytes"),
        "headers": {
            "Content-Length": {
                "description": "the size recorded at upload",
                "schema": {"type": "integer", "minimum": 0},
            },
            "X-Weir-SHA256": {
                "description": "the SHA-256 recorded at upload (hex)",
                "schema": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
            },
            "Repr-Digest": {
                "description": "the same digest, `sha-256=:BASE64:` (RFC 9530)",
                "schema": {"type": "string"},
            },
            "Content-Disposition": {
                "description": '`attachment; filename="NAME"`',
                "schema": {"type": "string"},
            },
        },
    }


@functools.cache
def _components() -> Json:
    schemas = proto_schemas()
    schemas |= _web_schemas(schemas)
    return {
        "schemas": schemas,
        "parameters": PARAMETERS,
        "responses": _error_responses(),
        "securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer"},
            "session": {"type": "apiKey", "in": "cookie", "name": "weir_session"},
        },
    }


def serving_route(routes: Sequence[ApiRoute], path: str, method: str) -> ApiRoute:
    """The route that serves `method` on the documented `path` (LookupError: none)."""
    for route in routes:
        if method.upper() in (route.methods or ()) and route.path == API_PREFIX + path:
            return route
    raise LookupError(f"no route serves {method.upper()} {path}")


def openapi_document(routes: Sequence[ApiRoute]) -> Json:
    """The document, each operation's role that of the route in `routes` serving it (and
    with it the 401 and 403 a role check answers)."""
    paths = _paths()
    for path, operations in paths.items():
        for method, operation in operations.items():
            access = serving_route(routes, path, method).access
            operation["description"] = f"Role: {access_name(access)}."
            statuses = set(operation.pop("x-errors"))
            if access != "none":
                statuses |= {401, 403}
            if access == "none":
                operation["security"] = []
            for status in sorted(statuses):
                name = ERRORS[status][0]
                operation["responses"].setdefault(
                    str(status), {"$ref": f"#/components/responses/{name}"}
                )
    return {
        "openapi": "3.1.0",
        "info": {"title": "weir HTTP API", "version": "1"},
        "jsonSchemaDialect": "https://json-schema.org/draft/2020-12/schema",
        "servers": [{"url": API_PREFIX}],
        "components": _components(),
        "security": [{"bearer": []}, {"session": []}],
        "paths": paths,
    }
