"""`/schedules`: list, create, pause, resume and delete."""

from __future__ import annotations

from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from weir_proto.api import ScheduleRequest
from weir_proto.errors import ErrorCode
from weir_proto.ids import is_schedule_name
from weir_proto.validation import check_flow

from weir_web.config import Role
from weir_web.endpoints import Endpoints, json_response, route
from weir_web.errors import HttpFailure
from weir_web.params import read_json, schedule_name_of
from weir_web.routes.flows import spec_document


class ScheduleRoutes(Endpoints):
    @route("GET", "/schedules", Role.viewer)
    async def schedules(self, request: Request) -> Response:
        return json_response({"schedules": await self.client.schedules()})

    @route("POST", "/schedules", Role.operator)
    async def schedule_create(self, request: Request) -> Response:
        body = await read_json(request, dict[str, Any], self.settings.body_bytes_max)
        schedule = schedule_request(body)
        if not is_schedule_name(schedule.name):
            raise HttpFailure(
                ErrorCode.BAD_REQUEST, f"schedule name {schedule.name[:80]!r} is not valid"
            )
        return json_response(await self.client.schedule(schedule), 201)

    @route("POST", "/schedules/{name}/pause", Role.operator)
    async def schedule_pause(self, request: Request) -> Response:
        name = schedule_name_of(request)
        return json_response(await self.client.schedule_action("pause", name))

    @route("POST", "/schedules/{name}/resume", Role.operator)
    async def schedule_resume(self, request: Request) -> Response:
        name = schedule_name_of(request)
        return json_response(await self.client.schedule_action("resume", name))

    @route("DELETE", "/schedules/{name}", Role.operator)
    async def schedule_delete(self, request: Request) -> Response:
        name = schedule_name_of(request)
        await self.client.schedule_action("delete", name)
        return Response(status_code=204)


def schedule_request(body: dict[str, Any]) -> ScheduleRequest:
    """The request in `body`, its `flow` (an object, or the spec's YAML or JSON text) read as
    `weir submit` and `weir schedule create` read a spec (the shorthands `retry: 3` and
    `timeout: 10m` too), with every problem at once."""
    flow = body.get("flow")
    if isinstance(flow, str):  # the spec's text, read (and checked) as a file is
        body = {**body, "flow": spec_document(flow, "flow")}
    elif isinstance(flow, dict):
        checked = check_flow(flow)
        if checked.errors:
            raise HttpFailure(
                ErrorCode.BAD_REQUEST,
                f"the schedule's flow spec has {len(checked.errors)} problem(s)",
                checked.errors,
            )
        body = {**body, "flow": checked.value}
    try:
        return msgspec.convert(body, ScheduleRequest)
    except msgspec.ValidationError as exc:
        raise HttpFailure(ErrorCode.BAD_REQUEST, f"request body: {exc}") from None
