"""Stepping in on a flow (operator): `POST /flows/{id}/retry`, `/pause`, `/resume` and
`PATCH /flows/{id}` (update before the start), each the scheduler's `weir.api.*` command of
the same name; a refusal is the scheduler's reason (409)."""

from __future__ import annotations

from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from weir_proto.api import UpdateRequest
from weir_proto.errors import ErrorCode

from weir_web.bodies import Pause, Resume, Retry
from weir_web.config import Role
from weir_web.endpoints import Endpoints, json_response, route
from weir_web.errors import HttpFailure
from weir_web.params import flow_id_of, read_json

BODY_MAX = 64 * 1024


class SteppingRoutes(Endpoints):
    @route("POST", "/flows/{flow_id}/retry", Role.operator)
    async def retry(self, request: Request) -> Response:
        flow_id = flow_id_of(request)
        retry = await read_json(request, Retry, BODY_MAX)
        return json_response(await self.client.retry(flow_id, retry.task, retry.downstream))

    @route("POST", "/flows/{flow_id}/pause", Role.operator)
    async def pause(self, request: Request) -> Response:
        flow_id = flow_id_of(request)
        pause = await read_json(request, Pause, BODY_MAX)
        return json_response(await self.client.pause(flow_id, pause.reason))

    @route("POST", "/flows/{flow_id}/resume", Role.operator)
    async def resume(self, request: Request) -> Response:
        flow_id = flow_id_of(request)
        await read_json(request, Resume, BODY_MAX)
        return json_response(await self.client.resume(flow_id))

    @route("PATCH", "/flows/{flow_id}", Role.operator)
    async def update(self, request: Request) -> Response:
        """The body is `UpdateRequest` without `flow_id` (the path names the flow)."""
        flow_id = flow_id_of(request)
        body = await read_json(request, dict[str, Any], BODY_MAX)
        if "flow_id" in body:
            raise HttpFailure(ErrorCode.BAD_REQUEST, "request body: the path names the flow")
        try:
            update = msgspec.convert({**body, "flow_id": flow_id}, UpdateRequest)
        except msgspec.ValidationError as exc:
            raise HttpFailure(ErrorCode.BAD_REQUEST, f"request body: {exc}") from None
        fields = {f: getattr(update, f) for f in update.__struct_fields__ if f != "flow_id"}
        return json_response(await self.client.update(flow_id, **fields))
