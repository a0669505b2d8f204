"""The HTTP API: `/api/v1`, JSON, over the scheduler's NATS API and streams, and the web UI.

Every path parameter is checked (flow ids and task names are DNS-1123 labels, schedule and
secret names their own patterns) before anything is asked of NATS, so no request can form a
subject of its choosing. GET never changes anything. No response carries CORS headers; every
one carries `Content-Security-Policy: default-src 'self'`.

The endpoints live in `weir_web.routes`, one module per resource; this module assembles them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import uvicorn
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from weir.artifacts import artifact_store
from weir.client import Client
from weir.config import Settings
from weir.jetstream import connect
from weir_proto.errors import ErrorCode

from weir_web.auth import Gate
from weir_web.changes import FlowChanges
from weir_web.config import WebSettings
from weir_web.endpoints import Backends, Connect, Context, Endpoints, failure_response
from weir_web.errors import CODE_BY_STATUS, HttpFailure
from weir_web.routes.artifacts import ArtifactRoutes
from weir_web.routes.events import EventRoutes
from weir_web.routes.flows import FlowRoutes
from weir_web.routes.health import HealthRoutes
from weir_web.routes.logs import LogRoutes
from weir_web.routes.schedules import ScheduleRoutes
from weir_web.routes.secrets import SecretRoutes
from weir_web.routes.session import SessionRoutes
from weir_web.routes.stepping import SteppingRoutes
from weir_web.routes.tasks import TaskRoutes
from weir_web.ui import STATIC_DIR, ui_routes

__all__ = ["CSP", "STATIC_DIR", "create_app", "nats_backends", "web_server"]

log = logging.getLogger("weir.web")

CSP = "default-src 'self'"
SHUTDOWN_GRACE_SECONDS = 3
"""How long a stopping weir-web lets open responses finish; event streams never do, so they
are then cut (an EventSource reconnects, to this or another weir-web, with Last-Event-ID)."""

RESOURCES: tuple[type[Endpoints], ...] = (
    SessionRoutes,
    FlowRoutes,
    SteppingRoutes,
    TaskRoutes,
    EventRoutes,
    LogRoutes,
    ArtifactRoutes,
    ScheduleRoutes,
    SecretRoutes,
    HealthRoutes,
)
"""Every resource of `/api/v1`, each a class of endpoints with its routes."""


class SecurityHeaders:
    """Adds the CSP (and friends) to every response, and logs one line per request: method,
    path (never the query, which may carry a filter a user typed) and status."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.monotonic()
        status = 0

        async def send_with_headers(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = [
                    (k, v)
                    for k, v in message.get("headers", [])
                    if not k.lower().startswith(b"access-control-")
                ]
                headers += [
                    (b"content-security-policy", CSP.encode()),
                    (b"x-content-type-options", b"nosniff"),
                    (b"referrer-policy", b"no-referrer"),
                    (b"x-frame-options", b"DENY"),
                ]
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        finally:
            log.info(
                "%s %s %s %.0fms",
                scope["method"],
                scope["path"],
                status,
                (time.monotonic() - started) * 1000,
            )


async def _http_exception(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    code = CODE_BY_STATUS.get(status, ErrorCode.INTERNAL)
    message = {
        404: f"no such endpoint: {request.url.path[:200]}",
        405: f"{request.method} is not allowed on {request.url.path[:200]}",
    }.get(status, "internal error; see the weir-web log")
    if status == 500:
        log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return failure_response(HttpFailure(code, message))


def create_app(settings: WebSettings, connect: Connect) -> Starlette:
    """The ASGI app; `connect` makes its NATS backends when it starts."""
    context = Context(settings, Gate(settings))

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        context.connected = await connect()
        try:
            yield
        finally:
            backends, context.connected = context.connected, None
            await backends.changes.close()
            await backends.client.close()

    for resource in RESOURCES:
        context.api_routes += resource(context).routes()
    routes: list[BaseRoute] = [*ui_routes(), *context.api_routes]
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={HTTPException: _http_exception, Exception: _http_exception},
    )
    app.add_middleware(SecurityHeaders)
    return app


def nats_backends(settings: Settings, secret_key: bytes | None) -> Connect:
    """Connect to NATS as `settings` say (reconnecting for ever: the server may restart)."""

    async def connect_backends() -> Backends:
        client = Client(await connect(settings.nats_url, "weir-web"))
        store = artifact_store(client.js, settings.artifacts_bucket, settings.artifacts_s3)
        return Backends(client, store, FlowChanges(client.js), secret_key)

    return connect_backends


def web_server(web: WebSettings, connect_backends: Connect) -> uvicorn.Server:
    config = uvicorn.Config(
        create_app(web, connect_backends),
        host=web.host,
        port=web.port,
        access_log=False,  # SecurityHeaders logs each request, without its query
        log_config=None,
        server_header=False,
        lifespan="on",
        timeout_graceful_shutdown=SHUTDOWN_GRACE_SECONDS,
    )
    return uvicorn.Server(config)
