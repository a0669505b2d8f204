"""`/flows`: list and query (or, as Server-Sent Events, which flows change status), submit,
one flow, and the commands on it (cancel, rerun)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from weir.spec_file import SpecFileError, load_spec_text
from weir.where import WhereError, parse_where
from weir_proto.api import LIST_LIMIT_DEFAULT, LIST_LIMIT_MAX
from weir_proto.errors import ErrorCode, SpecError

from weir_web.bodies import Cancel, FlowChange, Rerun
from weir_web.changes import FlowChanges
from weir_web.config import Role
from weir_web.endpoints import Endpoints, json_response, route
from weir_web.errors import HttpFailure
from weir_web.params import flow_id_of, int_query, read_body, read_json, wants_events
from weir_web.sse import KEEPALIVE_FRAME, KEEPALIVE_SECONDS, sse_frame, sse_response, with_keepalive

_encoder = msgspec.json.Encoder()


class FlowRoutes(Endpoints):
    @route("GET", "/flows", Role.viewer)
    async def flows(self, request: Request) -> Response:
        if wants_events(request):
            return sse_response(change_frames(self.backends.changes))
        status = request.query_params.get("status") or None
        where_text = request.query_params.get("where") or None
        limit = int_query(request, "limit", LIST_LIMIT_DEFAULT, 1, LIST_LIMIT_MAX)
        assert limit is not None
        cursor = request.query_params.get("cursor") or None
        if where_text is None:
            page = await self.client.list(status, limit, cursor)
        else:
            try:
                where = parse_where(where_text)
            except WhereError as exc:
                raise HttpFailure(ErrorCode.BAD_REQUEST, f"where: {exc}") from None
            if status is not None:
                where = {"and": [{"status": status}, where]}
            page = await self.client.query(where, limit, cursor)
        return json_response(page)

    @route("POST", "/flows", Role.operator)
    async def submit(self, request: Request) -> Response:
        body = await read_body(request, self.settings.body_bytes_max)
        try:
            text = body.decode()
        except UnicodeDecodeError:
            raise HttpFailure(ErrorCode.BAD_REQUEST, "the flow spec is not UTF-8 text") from None
        text, params, flow_id = spec_and_params(text)
        doc = spec_document(text, "body")
        if flow_id is not None:
            doc = with_flow_id(doc, flow_id)
        verdict = await self.client.submit(doc, params=params, verdict=True)
        if verdict.verdict == "rejected":
            raise HttpFailure(
                ErrorCode.INVALID_FLOW,
                verdict.message or f"flow {verdict.flow_id} was rejected",
                list(verdict.errors),
                extra={"flow_id": verdict.flow_id},
            )
        if verdict.verdict == "duplicate":
            raise HttpFailure(
                ErrorCode.CONFLICT, verdict.message, extra={"existing": verdict.existing}
            )
        return json_response(
            {"flow_id": verdict.flow_id, "status": verdict.status, "created": verdict.created},
            201 if verdict.created else 200,
        )

    @route("GET", "/flows/{flow_id}", Role.viewer)
    async def flow(self, request: Request) -> Response:
        return json_response(await self.client.get(flow_id_of(request)))

    @route("POST", "/flows/{flow_id}/cancel", Role.operator)
    async def cancel(self, request: Request) -> Response:
        flow_id = flow_id_of(request)
        cancel = await read_json(request, Cancel, 64 * 1024)
        return json_response(await self.client.cancel(flow_id, cancel.reason))

    @route("POST", "/flows/{flow_id}/rerun", Role.operator)
    async def rerun(self, request: Request) -> Response:
        flow_id = flow_id_of(request)
        rerun = await read_json(request, Rerun, 64 * 1024)
        accepted = await self.client.rerun(flow_id, rerun.failed_only)
        return json_response(accepted, 201 if accepted.created else 200)


_NO_CHANGE = _encoder.encode(FlowChange()).decode()
"""The data of the `ready` and `resync` frames, which name no flow."""


async def change_frames(changes: FlowChanges) -> AsyncIterator[bytes]:
    """`ready` once the feed is live (a client then fetches the list it shows), then a
    `change` per flow whose status may have changed, `{"flow_id", "type"}` (the event's
    type), or `resync` when too many changed at once to name them."""
    async with changes.follow() as follower:
        yield sse_frame(_NO_CHANGE, "ready")
        async for batch in with_keepalive(follower.batches(), KEEPALIVE_SECONDS):
            if batch is None:
                yield KEEPALIVE_FRAME
                continue
            if batch.overflowed:
                yield sse_frame(_NO_CHANGE, "resync")
            for change in batch.changes:
                data = FlowChange(flow_id=change.flow_id, type=change.type)
                yield sse_frame(_encoder.encode(data).decode(), "change")


SUBMIT_FIELDS = ("spec", "params", "id")
"""The fields of the JSON object a submit body may be instead of a bare spec."""


def spec_and_params(text: str) -> tuple[str, dict[str, Any] | None, str | None]:
    """A submit body is a flow spec (YAML or JSON), or the JSON object
    `{"spec": SPEC, "params": {NAME: VALUE}, "id": FLOW_ID}` (only `spec` required), where SPEC
    is the spec as an object or as its text (YAML or JSON, read as a file `weir submit` reads):
    the spec's text, the params and the id."""
    try:
        doc = msgspec.json.decode(text)
    except (msgspec.DecodeError, RecursionError):
        return text, None, None
    if not (isinstance(doc, dict) and "spec" in doc and "tasks" not in doc):
        return text, None, None
    problems = [
        f"unknown field {k!r}" for k in sorted(str(k) for k in doc if k not in SUBMIT_FIELDS)
    ]
    spec, params, flow_id = doc["spec"], doc.get("params"), doc.get("id")
    if not isinstance(spec, dict | str):
        problems.append("spec is neither an object nor the spec's text")
    if not (params is None or isinstance(params, dict)):
        problems.append("params is not an object")
    if not (flow_id is None or isinstance(flow_id, str)):
        problems.append("id is not a string")
    if problems:
        raise HttpFailure(
            ErrorCode.BAD_REQUEST,
            'a submit body is a flow spec, or {"spec": SPEC, "params": {NAME: VALUE}, '
            f'"id": FLOW_ID}}: {"; ".join(problems)}',
        )
    spec_text = spec if isinstance(spec, str) else _encoder.encode(spec).decode()
    return spec_text, params, flow_id


def spec_document(text: str, where: str) -> dict[str, Any]:
    """The spec in `text` (YAML or JSON) as `weir submit` reads a file; its syntax problems
    are a 422 with every one."""
    try:
        return load_spec_text(text, where)
    except SpecFileError as exc:
        problems = [SpecError(path="$", message=p) for p in exc.problems]
        raise HttpFailure(
            ErrorCode.INVALID_FLOW, f"the flow spec has {len(problems)} problem(s)", problems
        ) from None


def with_flow_id(doc: dict[str, Any], flow_id: str) -> dict[str, Any]:
    """The spec `doc` with the submit body's `id` (which must not differ from its own)."""
    if doc.get("id") not in (None, flow_id):
        raise HttpFailure(
            ErrorCode.BAD_REQUEST,
            'a submit body is a flow spec, or {"spec": SPEC, "params": {NAME: VALUE}, '
            f'"id": FLOW_ID}}: id {flow_id!r} differs from the spec\'s id {doc["id"]!r}',
        )
    return {**doc, "id": flow_id}
