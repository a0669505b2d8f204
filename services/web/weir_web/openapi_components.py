"""The components of the OpenAPI document (`weir_web.openapi`): the proto's JSON Schemas,
each whole under its file's name with its `#/$defs/X` references made absolute
(`#/components/schemas/NAME/$defs/X`: an OpenAPI document resolves a `$ref` against itself,
not against an embedded schema); weir-web's own bodies, rendered from the types its endpoints
decode and encode (`weir_web.bodies`, `weir_web.errors.Error`); the path parameters' rules
(the patterns weir-web checks); the event streams' events; and a named response per error
status, each with the `Error` body."""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Sequence
from typing import Any

import msgspec
from weir_proto.api import LIST_LIMIT_DEFAULT, LIST_LIMIT_MAX
from weir_proto.ids import DNS1123_LABEL_MAX, SCHEDULE_NAME_MAX, SECRET_NAME, SECRET_NAME_MAX
from weir_proto.schema import render
from weir_proto.status import FlowStatus
from weir_proto.validation import OUTPUT_NAME

from weir_web.bodies import REQUEST_BODIES, RESPONSE_BODIES
from weir_web.errors import Error

Json = dict[str, Any]

SCHEMAS = "#/components/schemas/"

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
            "spec": _spec_or_text("the flow spec"),
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


def _spec_or_text(what: str) -> Json:
    return {
        "description": f"{what}: an object, or its YAML or JSON text (read as `weir submit` "
        "reads a file)",
        "oneOf": [ref("FlowSpec"), {"type": "string"}],
    }


def _schedule_create(schemas: dict[str, Json]) -> Json:
    """`POST /schedules`' body: ScheduleRequest, its `flow` an object or the spec's text
    (weir_web.routes.schedules.schedule_request)."""
    request = schemas["ScheduleRequest"]["$defs"]["ScheduleRequest"]
    properties = dict(request["properties"])
    properties["flow"] = _spec_or_text("the flow each tick submits")
    return {**request, "title": "ScheduleCreate", "properties": properties}


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
        "ScheduleCreate": _schedule_create(schemas),
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


@functools.cache
def components() -> Json:
    """Every component of the document (made once)."""
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
