"""Stepping in on a flow (operator): `POST /flows/{id}/retry`, `/pause`, `/resume` and
`PATCH /flows/{id}` (update before the start), each the scheduler's `weir.api.*` command of
the same name; a refusal is the scheduler's reason (409)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from weir_web.config import Role
from weir_web.endpoints import Endpoints, api_route, json_response
from weir_web.params import flow_id_of, read_json

BODY_MAX = 64 * 1024


class Retry(msgspec.Struct, forbid_unknown_fields=True):
    task: str
    downstream: bool = False


class Pause(msgspec.Struct, forbid_unknown_fields=True):
    reason: str = "paused from the HTTP API"


class Resume(msgspec.Struct, forbid_unknown_fields=True):
    pass


class Update(msgspec.Struct, forbid_unknown_fields=True):
    priority: int | None = None
    scheduled_at: datetime | None = None
    start_now: bool = False
    params: dict[str, Any] | None = None
    tags: list[str] | None = None
    metadata: dict[str, Any] | None = None


class SteppingRoutes(Endpoints):
    def routes(self) -> list[Route]:
        return [
            api_route("/flows/{flow_id}/retry", self.retry, "POST"),
            api_route("/flows/{flow_id}/pause", self.pause, "POST"),
            api_route("/flows/{flow_id}/resume", self.resume, "POST"),
            api_route("/flows/{flow_id}", self.update, "PATCH"),
        ]

    async def retry(self, request: Request) -> Response:
        self.gate.require(request, Role.operator)
        flow_id = flow_id_of(request)
        retry = await read_json(request, Retry, BODY_MAX)
        return json_response(await self.client.retry(flow_id, retry.task, retry.downstream))

    async def pause(self, request: Request) -> Response:
        self.gate.require(request, Role.operator)
        flow_id = flow_id_of(request)
        pause = await read_json(request, Pause, BODY_MAX)
        return json_response(await self.client.pause(flow_id, pause.reason))

    async def resume(self, request: Request) -> Response:
        self.gate.require(request, Role.operator)
        flow_id = flow_id_of(request)
        await read_json(request, Resume, BODY_MAX)
        return json_response(await self.client.resume(flow_id))

    async def update(self, request: Request) -> Response:
        self.gate.require(request, Role.operator)
        flow_id = flow_id_of(request)
        update = await read_json(request, Update, BODY_MAX)
        return json_response(
            await self.client.update(
                flow_id,
                priority=update.priority,
                scheduled_at=update.scheduled_at,
                start_now=update.start_now,
                params=update.params,
                tags=update.tags,
                metadata=update.metadata,
            )
        )
