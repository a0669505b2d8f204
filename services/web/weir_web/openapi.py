"""`GET /api/v1/openapi.json`: the API described in OpenAPI 3.1, its components (the
proto's JSON Schemas among them) those of `weir_web.openapi_components`.

Every parameter, body and response of every operation is a named component, the errors
included (each status an operation can answer, with the `Error` body), and the alternative
content types of one response (an event stream, or JSON) are each described. Each
operation's role comes from the route that serves it (`ApiRoute.access`, the same
declaration the caller is checked against); `tests/web/test_openapi.py` holds the document
and the app's routes to each other.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from weir_web.endpoints import API_PREFIX, ApiRoute, access_name
from weir_web.openapi_components import ERRORS, Json, components, ref

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
FLOW_WRITE = (400, 404, 409, 413, *NATS)
"""What a write to one flow may answer besides its success."""
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
        **{
            f"/flows/{{flow_id}}/{verb}": {
                "post": _op(
                    summary,
                    flow_stepped,
                    errors=FLOW_WRITE,
                    params=FLOW,
                    body=_body(required, json=body),
                )
            }
            for verb, summary, body, required in (
                (
                    "retry",
                    "Run one failed or succeeded task of the flow again, inside the flow",
                    "Retry",
                    True,
                ),
                ("pause", "Hand out no new task of the flow until it is resumed", "Pause", False),
                ("resume", "Hand out the paused flow's work again", "Resume", False),
            )
        },
        "/flows/{flow_id}/events": {
            "get": _op(
                "The flow's events: Server-Sent Events resuming after Last-Event-ID, until "
                "its terminal event at or after it (a retried flow runs on to its next end); "
                "with Accept: application/json, the log so far",
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
                errors=FLOW_WRITE,
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
                body=_body(True, json="ScheduleCreate"),
            ),
        },
        **{
            f"/schedules/{{name}}/{verb}": {
                "post": _op(
                    f"{verb.capitalize()} a schedule",
                    schedule,
                    errors=(400, 404, *NATS),
                    params=("ScheduleNamePath",),
                )
            }
            for verb in ("pause", "resume")
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
        "components": components(),
        "security": [{"bearer": []}, {"session": []}],
        "paths": paths,
    }
