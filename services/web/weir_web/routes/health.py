"""`/health` (the scheduler's and runners' `weir.health.*` answers) and `/openapi.json`."""

from __future__ import annotations

import functools
from typing import Any, Literal

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from weir.health import health_subject

from weir_web.bodies import Health
from weir_web.config import Role
from weir_web.endpoints import Endpoints, json_response, route
from weir_web.openapi import openapi_document

HEALTH_TIMEOUT = 1.0
HEALTH_SERVICES = ("scheduler", "runner")


class HealthRoutes(Endpoints):
    @route("GET", "/health", Role.viewer)
    async def health(self, request: Request) -> Response:
        reports: dict[str, Any] = {}
        for service in HEALTH_SERVICES:
            try:
                msg = await self.backends.nc.request(
                    health_subject(service), b"", timeout=HEALTH_TIMEOUT
                )
                reports[service] = msgspec.json.decode(msg.data)
            except Exception:
                reports[service] = {"status": "unreachable"}
        # The scheduler decides: without it nothing moves. Runners are reported as they
        # answer (the runner user of deploy/nats/permissions.conf may not reply to inboxes).
        ok = reports["scheduler"].get("status") == "ok"
        status: Literal["ok", "degraded"] = "ok" if ok else "degraded"
        return json_response(Health(status, reports), 200 if ok else 503)

    @route("GET", "/openapi.json", "none")
    async def openapi(self, request: Request) -> Response:
        return json_response(self._document)

    @functools.cached_property
    def _document(self) -> Any:
        """Built at the first request: the routes are fixed once weir-web serves."""
        return openapi_document(self.context.api_routes)
