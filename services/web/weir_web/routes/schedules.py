"""`/schedules`: list, create, pause, resume and delete."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from weir_proto.api import ScheduleRequest
from weir_proto.errors import ErrorCode
from weir_proto.ids import is_schedule_name

from weir_web.config import Role
from weir_web.endpoints import ApiRoute, Endpoints, json_response
from weir_web.errors import HttpFailure
from weir_web.params import read_json, schedule_name_of


class ScheduleRoutes(Endpoints):
    def routes(self) -> list[ApiRoute]:
        return [
            self.api_route("/schedules", self.schedules, "GET", Role.viewer),
            self.api_route("/schedules", self.schedule_create, "POST", Role.operator),
            self.api_route("/schedules/{name}/pause", self.schedule_pause, "POST", Role.operator),
            self.api_route("/schedules/{name}/resume", self.schedule_resume, "POST", Role.operator),
            self.api_route("/schedules/{name}", self.schedule_delete, "DELETE", Role.operator),
        ]

    async def schedules(self, request: Request) -> Response:
        return json_response({"schedules": await self.client.schedules()})

    async def schedule_create(self, request: Request) -> Response:
        schedule = await read_json(request, ScheduleRequest, self.settings.body_bytes_max)
        if not is_schedule_name(schedule.name):
            raise HttpFailure(
                ErrorCode.BAD_REQUEST, f"schedule name {schedule.name[:80]!r} is not valid"
            )
        return json_response(await self.client.schedule(schedule), 201)

    async def schedule_pause(self, request: Request) -> Response:
        name = schedule_name_of(request)
        return json_response(await self.client.schedule_action("pause", name))

    async def schedule_resume(self, request: Request) -> Response:
        name = schedule_name_of(request)
        return json_response(await self.client.schedule_action("resume", name))

    async def schedule_delete(self, request: Request) -> Response:
        name = schedule_name_of(request)
        await self.client.schedule_action("delete", name)
        return Response(status_code=204)
