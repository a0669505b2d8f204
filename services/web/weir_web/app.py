"""The HTTP API: `/api/v1`, JSON, over the scheduler's NATS API and streams.

Every path parameter is checked (flow ids and task names are DNS-1123 labels, schedule and
secret names their own patterns) before anything is asked of NATS, so no request can form a
subject of its choosing. GET never changes anything. No response carries CORS headers; every
one carries `Content-Security-Policy: default-src 'self'`.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import math
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import msgspec
import nats.errors
import uvicorn
from nats.aio.client import Client as NATS
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from weir.artifacts import (
    ArtifactChecksumError,
    ArtifactError,
    ArtifactNotFound,
    Artifacts,
    artifact_store,
)
from weir.client import Client, WeirError
from weir.config import Settings
from weir.health import health_subject
from weir.jetstream import connect
from weir.secrets import MAX_SECRET_BYTES, SecretError, SecretStore, check_secret_name
from weir.spec_file import SpecFileError, load_spec_text
from weir.where import WhereError, parse_task_where, parse_where
from weir_proto.api import LIST_LIMIT_DEFAULT, LIST_LIMIT_MAX, ScheduleRequest
from weir_proto.errors import ErrorCode, SpecError, error_code
from weir_proto.events import TERMINAL_FLOW_EVENTS, FlowEvent, event_type
from weir_proto.ids import DNS1123_LABEL_MAX, is_dns_label, is_schedule_name, is_task_name
from weir_proto.validation import OUTPUT_NAME_RULE, is_output_name

from weir_web.auth import SESSION_COOKIE, Denied, Gate
from weir_web.config import Role, WebSettings
from weir_web.errors import CODE_BY_STATUS, HttpFailure
from weir_web.openapi import openapi_document

log = logging.getLogger("weir.web")

CSP = "default-src 'self'"
KEEPALIVE_SECONDS = 15.0
"""An SSE comment this often keeps proxies from closing a quiet stream."""
HEALTH_TIMEOUT = 1.0
HEALTH_SERVICES = ("scheduler", "runner")
COPY_CHUNK = 64 * 1024

_T = TypeVar("_T")
_encoder = msgspec.json.Encoder()


@dataclass
class Backends:
    """What the API talks to, connected once at start (the lifespan) and shared."""

    client: Client
    artifacts: Artifacts
    secrets: SecretStore

    @property
    def nc(self) -> NATS:
        return self.client.nc


Connect = Callable[[], Awaitable[Backends]]


def json_response(value: object, status: int = 200) -> Response:
    return Response(_encoder.encode(value), status, media_type="application/json")


# Path and query parameters --------------------------------------------------------------


def _label(request: Request, key: str, what: str) -> str:
    value: str = request.path_params[key]
    if not is_dns_label(value):
        raise HttpFailure(
            ErrorCode.BAD_REQUEST,
            f"{what} {value[:80]!r} is not valid: lower-case letters, digits and '-', at most "
            f"{DNS1123_LABEL_MAX} characters, starting and ending with a letter or digit",
        )
    return value


def flow_id_of(request: Request) -> str:
    return _label(request, "flow_id", "flow id")


def schedule_name_of(request: Request) -> str:
    name: str = request.path_params["name"]
    if not is_schedule_name(name):
        raise HttpFailure(
            ErrorCode.BAD_REQUEST,
            f"schedule name {name[:80]!r} is not valid: lower-case letters, digits and '-', "
            "at most 40 characters, starting and ending with a letter or digit",
        )
    return name


def secret_name_of(request: Request) -> str:
    name: str = request.path_params["name"]
    try:
        check_secret_name(name)
    except SecretError as exc:
        raise HttpFailure(ErrorCode.BAD_REQUEST, str(exc)) from None
    return name


def artifact_name_of(request: Request) -> str:
    name: str = request.path_params["name"]
    if not is_output_name(name):  # the planner's rule for output names
        raise HttpFailure(
            ErrorCode.BAD_REQUEST, f"artifact name {name[:80]!r} is not valid: {OUTPUT_NAME_RULE}"
        )
    return name


def _int_query(request: Request, key: str, default: int | None, low: int, high: int) -> int | None:
    raw = request.query_params.get(key)
    if raw is None or raw == "":
        return default
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise HttpFailure(
            ErrorCode.BAD_REQUEST, f"{key}={raw[:40]!r} is not a whole number {low}..{high}"
        )
    return int(raw)


def _bool_query(request: Request, key: str) -> bool:
    raw = request.query_params.get(key, "false").lower()
    if raw not in {"true", "false", "1", "0", ""}:
        raise HttpFailure(ErrorCode.BAD_REQUEST, f"{key}={raw[:40]!r} is not true or false")
    return raw in {"true", "1"}


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused (413) once it passes `limit` bytes: never read whole first."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HttpFailure(
                ErrorCode.TOO_LARGE, f"the request body is larger than {limit:,} bytes"
            )
        chunks.append(chunk)
    return b"".join(chunks)


async def read_json(request: Request, kind: type[_T], limit: int) -> _T:
    body = await read_body(request, limit)
    try:
        return msgspec.json.decode(body or b"{}", type=kind)
    except msgspec.ValidationError as exc:
        raise HttpFailure(ErrorCode.BAD_REQUEST, f"request body: {exc}") from None
    except msgspec.DecodeError as exc:
        raise HttpFailure(ErrorCode.BAD_REQUEST, f"request body is not JSON: {exc}") from None


# Streams --------------------------------------------------------------------------------


async def with_keepalive(source: AsyncIterator[_T], every: float) -> AsyncIterator[_T | None]:
    """The items of `source`, and None whenever it has been quiet for `every` seconds.

    `source` runs in its own task so that waiting can time out without closing it."""
    queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue(maxsize=16)

    async def pump() -> None:
        try:
            async for item in source:
                await queue.put(("item", item))
            await queue.put(("end", None))
        except Exception as exc:
            await queue.put(("error", exc))

    task = asyncio.create_task(pump())
    try:
        while True:
            try:
                kind, value = await asyncio.wait_for(queue.get(), every)
            except TimeoutError:
                yield None
                continue
            if kind == "end":
                return
            if kind == "error":
                raise value
            yield value
    finally:
        task.cancel()
        with contextlib.suppress(BaseException):
            await task


def sse_frame(data: str, event: str | None = None, event_id: int | None = None) -> bytes:
    lines = []
    if event_id is not None:
        lines.append(f"id: {event_id}")
    if event is not None:
        lines.append(f"event: {event}")
    lines.extend(f"data: {line}" for line in data.split("\n"))
    return ("\n".join(lines) + "\n\n").encode()


SSE_HEADERS = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}


def sse_response(frames: AsyncIterator[bytes]) -> StreamingResponse:
    return StreamingResponse(frames, media_type="text/event-stream", headers=SSE_HEADERS)


def wants_json(request: Request) -> bool:
    accept = request.headers.get("accept", "")
    return "application/json" in accept and "text/event-stream" not in accept


# The API --------------------------------------------------------------------------------


class Api:
    """The endpoints; each checks its caller's role first, then its parameters."""

    def __init__(self, settings: WebSettings, gate: Gate) -> None:
        self.settings = settings
        self.gate = gate
        self._backends: Backends | None = None

    @property
    def backends(self) -> Backends:
        if self._backends is None:
            raise HttpFailure(ErrorCode.UNAVAILABLE, "weir-web is not connected to NATS yet")
        return self._backends

    @property
    def client(self) -> Client:
        return self.backends.client

    # Session ----------------------------------------------------------------------------

    async def session_open(self, request: Request) -> Response:
        class Login(msgspec.Struct, forbid_unknown_fields=True):
            token: str

        login = await read_json(request, Login, 64 * 1024)
        try:
            session_id, session = self.gate.open_session(login.token)
        except Denied as exc:
            raise HttpFailure(ErrorCode.UNAUTHORIZED, exc.message) from None
        response = json_response({"role": session.role.name, "csrf": session.csrf}, 201)
        response.set_cookie(
            SESSION_COOKIE,
            session_id,
            max_age=int(self.settings.session_seconds),
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
            path="/",
        )
        return response

    async def session_show(self, request: Request) -> Response:
        caller = self.gate.caller(request)
        if caller.session is None:
            raise HttpFailure(
                ErrorCode.UNAUTHORIZED, "no session: log in with POST /api/v1/session"
            )
        return json_response({"role": caller.role.name, "csrf": caller.session.csrf})

    async def session_close(self, request: Request) -> Response:
        self.gate.require(request, Role.viewer)
        self.gate.close_session(request)
        response = Response(status_code=204)
        response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
        return response

    # Flows ------------------------------------------------------------------------------

    async def flows(self, request: Request) -> Response:
        self.gate.require(request, Role.viewer)
        status = request.query_params.get("status") or None
        where_text = request.query_params.get("where") or None
        limit = _int_query(request, "limit", LIST_LIMIT_DEFAULT, 1, LIST_LIMIT_MAX)
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

    async def tasks(self, request: Request) -> Response:
        """Tasks across flows (`weir tasks`): the newest flows' first."""
        self.gate.require(request, Role.viewer)
        limit = _int_query(request, "limit", LIST_LIMIT_DEFAULT, 1, LIST_LIMIT_MAX)
        where_text = request.query_params.get("where") or None
        try:
            where = parse_task_where(where_text) if where_text is not None else None
        except WhereError as exc:
            raise HttpFailure(ErrorCode.BAD_REQUEST, f"where: {exc}") from None
        cursor = request.query_params.get("cursor") or None
        return json_response(await self.client.tasks(where, limit or LIST_LIMIT_DEFAULT, cursor))

    async def submit(self, request: Request) -> Response:
        self.gate.require(request, Role.operator)
        body = await read_body(request, self.settings.body_bytes_max)
        try:
            text = body.decode()
        except UnicodeDecodeError:
            raise HttpFailure(ErrorCode.BAD_REQUEST, "the flow spec is not UTF-8 text") from None
        text, params = _spec_and_params(text)
        try:
            doc = load_spec_text(text, "body")
        except SpecFileError as exc:
            problems = [SpecError(path="$", message=p) for p in exc.problems]
            raise HttpFailure(
                ErrorCode.INVALID_FLOW, f"the flow spec has {len(problems)} problem(s)", problems
            ) from None
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

    async def flow(self, request: Request) -> Response:
        self.gate.require(request, Role.viewer)
        return json_response(await self.client.get(flow_id_of(request)))

    async def events(self, request: Request) -> Response:
        self.gate.require(request, Role.viewer)
        flow_id = flow_id_of(request)
        after = self._last_event_id(request)
        await self.client.get(flow_id)  # 404 before any stream starts
        if wants_json(request):
            events = [e async for e in self.client.events(flow_id) if e.seq > after]
            return json_response(events)
        return sse_response(self._event_frames(flow_id, after))

    @staticmethod
    def _last_event_id(request: Request) -> int:
        raw = request.headers.get("last-event-id", "").strip()
        if not raw:
            return 0
        if not raw.isdigit():
            raise HttpFailure(
                ErrorCode.BAD_REQUEST, f"Last-Event-ID {raw[:40]!r} is not an event seq"
            )
        return int(raw)

    async def _event_frames(self, flow_id: str, after: int) -> AsyncIterator[bytes]:
        source: AsyncIterator[FlowEvent] = self.client.events(flow_id, follow=True)
        async for event in with_keepalive(source, KEEPALIVE_SECONDS):
            if event is None:
                yield b": keepalive\n\n"
                continue
            kind = event_type(event)
            if event.seq > after:
                yield sse_frame(_encoder.encode(event).decode(), kind, event.seq)
            if kind in TERMINAL_FLOW_EVENTS:
                return

    async def logs(self, request: Request) -> Response:
        self.gate.require(request, Role.viewer)
        flow_id = flow_id_of(request)
        task: str = request.path_params["task"]
        if not is_task_name(task):  # a task, or an instance NAME[i] of a mapped one
            _label(request, "task", "task name")
        attempt = _int_query(request, "attempt", None, 1, 1_000_000)
        follow = _bool_query(request, "follow")
        attempt = await self.client.attempt_of(flow_id, task, attempt)
        chunks = self.client.logs(flow_id, task, attempt, follow=follow)
        if not follow:
            return StreamingResponse(
                (data async for _, data in chunks), media_type="text/plain; charset=utf-8"
            )
        return sse_response(self._log_frames(chunks))

    @staticmethod
    async def _log_frames(chunks: AsyncIterator[tuple[str, bytes]]) -> AsyncIterator[bytes]:
        async for item in with_keepalive(chunks, KEEPALIVE_SECONDS):
            if item is None:
                yield b": keepalive\n\n"
                continue
            stream, data = item
            yield sse_frame(data.decode(errors="replace"), stream)
        yield sse_frame("", "end")

    # Artifacts --------------------------------------------------------------------------

    async def artifacts(self, request: Request) -> Response:
        self.gate.require(request, Role.viewer)
        flow_id = flow_id_of(request)
        found = await self.backends.artifacts.list(flow_id)
        return json_response(
            [
                {"name": a.name, "size": a.size, "sha256": a.sha256, "modified": a.modified}
                for a in found
            ]
        )

    async def artifact(self, request: Request) -> Response:
        """The artifact's bytes, checked against the SHA-256 recorded at upload before the
        first byte is sent: fetched in bounded chunks into a spool file (deleted as soon as
        it is open), then streamed from it; never held whole in memory."""
        self.gate.require(request, Role.viewer)
        flow_id = flow_id_of(request)
        name = artifact_name_of(request)
        store = self.backends.artifacts
        spool = Path(tempfile.mkdtemp(prefix="weir-web-"))
        try:
            info = await store.download(flow_id, name, spool / "artifact")
            handle = open(spool / "artifact", "rb")  # noqa: SIM115 - closed by the stream
        finally:
            with contextlib.suppress(FileNotFoundError):
                (spool / "artifact").unlink()
            spool.rmdir()

        async def body() -> AsyncIterator[bytes]:
            with handle:
                while chunk := await asyncio.to_thread(handle.read, COPY_CHUNK):
                    yield chunk

        digest = base64.b64encode(bytes.fromhex(info.sha256)).decode()
        headers = {
            "Content-Length": str(info.size),
            "X-Weir-SHA256": info.sha256,
            "Repr-Digest": f"sha-256=:{digest}:",
            "Content-Disposition": f'attachment; filename="{name}"',
        }
        return StreamingResponse(body(), media_type="application/octet-stream", headers=headers)

    # Commands ---------------------------------------------------------------------------

    async def cancel(self, request: Request) -> Response:
        self.gate.require(request, Role.operator)
        flow_id = flow_id_of(request)

        class Cancel(msgspec.Struct, forbid_unknown_fields=True):
            reason: str = "cancelled from the HTTP API"

        cancel = await read_json(request, Cancel, 64 * 1024)
        return json_response(await self.client.cancel(flow_id, cancel.reason))

    async def rerun(self, request: Request) -> Response:
        self.gate.require(request, Role.operator)
        flow_id = flow_id_of(request)

        class Rerun(msgspec.Struct, forbid_unknown_fields=True):
            failed_only: bool = False

        rerun = await read_json(request, Rerun, 64 * 1024)
        accepted = await self.client.rerun(flow_id, rerun.failed_only)
        return json_response(accepted, 201 if accepted.created else 200)

    # Schedules --------------------------------------------------------------------------

    async def schedules(self, request: Request) -> Response:
        self.gate.require(request, Role.viewer)
        return json_response({"schedules": await self.client.schedules()})

    async def schedule_create(self, request: Request) -> Response:
        self.gate.require(request, Role.operator)
        schedule = await read_json(request, ScheduleRequest, self.settings.body_bytes_max)
        if not is_schedule_name(schedule.name):
            raise HttpFailure(
                ErrorCode.BAD_REQUEST, f"schedule name {schedule.name[:80]!r} is not valid"
            )
        return json_response(await self.client.schedule(schedule), 201)

    async def schedule_action(self, request: Request) -> Response:
        self.gate.require(request, Role.operator)
        name = schedule_name_of(request)
        verb = request.path_params["verb"]
        if verb not in {"pause", "resume"}:
            raise HttpFailure(ErrorCode.NOT_FOUND, f"no action {verb[:40]!r}: pause or resume")
        return json_response(await self.client.schedule_action(verb, name))

    async def schedule_delete(self, request: Request) -> Response:
        self.gate.require(request, Role.operator)
        name = schedule_name_of(request)
        await self.client.schedule_action("delete", name)
        return Response(status_code=204)

    # Secrets ----------------------------------------------------------------------------

    async def secrets(self, request: Request) -> Response:
        self.gate.require(request, Role.viewer)
        return json_response({"names": await self.backends.secrets.names()})

    async def secret_put(self, request: Request) -> Response:
        self.gate.require(request, Role.admin)
        name = secret_name_of(request)

        class SecretValue(msgspec.Struct, forbid_unknown_fields=True):
            value: str

        # msgspec names fields, never values, in its errors.
        secret = await read_json(request, SecretValue, MAX_SECRET_BYTES * 2)
        value = secret.value.encode()
        if len(value) > MAX_SECRET_BYTES:
            raise HttpFailure(
                ErrorCode.TOO_LARGE, f"a secret holds at most {MAX_SECRET_BYTES:,} bytes"
            )
        try:
            await self.backends.secrets.set(name, value)
        except SecretError as exc:
            raise HttpFailure(ErrorCode.UNAVAILABLE, str(exc)) from None
        return Response(status_code=204)

    async def secret_delete(self, request: Request) -> Response:
        self.gate.require(request, Role.admin)
        name = secret_name_of(request)
        if not await self.backends.secrets.delete(name):
            raise HttpFailure(ErrorCode.NOT_FOUND, f'there is no secret "{name}"')
        return Response(status_code=204)

    # Health and description -------------------------------------------------------------

    async def health(self, request: Request) -> Response:
        self.gate.require(request, Role.viewer)
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
        status = "ok" if ok else "degraded"
        return json_response({"status": status, "services": reports}, 200 if ok else 503)

    async def openapi(self, request: Request) -> Response:
        return json_response(openapi_document())

    async def index(self, request: Request) -> Response:
        """The web UI's one page, for each of its paths (the page routes in the browser)."""
        return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})


STATIC_DIR = Path(__file__).parent / "static"
"""The web UI: plain ES modules and CSS, no build step (docs/ui.md)."""
UI_PATHS = (
    "/",
    "/login",
    "/flows",
    "/flows/{flow_id}",
    "/flows/{flow_id}/tasks/{task}",
    "/schedules",
)


# Plumbing -------------------------------------------------------------------------------


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


def _failure_response(failure: HttpFailure) -> Response:
    retry_after = failure.extra.get("retry_after")
    headers = {"Retry-After": str(max(1, math.ceil(retry_after)))} if retry_after else None
    return Response(failure.body(), failure.status, media_type="application/json", headers=headers)


def guarded(endpoint: Callable[[Request], Awaitable[Response]]) -> Callable[..., Any]:
    """`endpoint` with every failure turned into the error body of its code."""

    async def run(request: Request) -> Response:
        try:
            return await endpoint(request)
        except HttpFailure as failure:
            return _failure_response(failure)
        except Denied as denied:
            return _failure_response(HttpFailure(CODE_BY_STATUS[denied.status], denied.message))
        except WeirError as exc:
            extra: dict[str, Any] = {"flow_id": exc.flow_id} if exc.flow_id else {}
            if exc.retry_after is not None:  # rate_limited, overloaded: when to submit again
                extra["retry_after"] = exc.retry_after
            problems = exc.details if exc.code == ErrorCode.INVALID_FLOW else None
            return _failure_response(
                HttpFailure(error_code(exc.code), exc.message, problems, extra=extra)
            )
        except ArtifactNotFound as exc:
            return _failure_response(HttpFailure(ErrorCode.NOT_FOUND, str(exc)))
        except ArtifactChecksumError as exc:
            return _failure_response(HttpFailure(ErrorCode.INTERNAL, str(exc)))
        except ArtifactError as exc:
            return _failure_response(HttpFailure(ErrorCode.UNAVAILABLE, str(exc)))
        except SecretError as exc:
            return _failure_response(HttpFailure(ErrorCode.UNAVAILABLE, str(exc)))
        except (TimeoutError, nats.errors.TimeoutError):
            log.warning("NATS did not answer in time on %s %s", request.method, request.url.path)
            return _failure_response(
                HttpFailure(ErrorCode.TIMEOUT, "NATS did not answer in time; try again")
            )

    run.__name__ = endpoint.__name__
    return run


async def _http_exception(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    code = CODE_BY_STATUS.get(status, ErrorCode.INTERNAL)
    message = {
        404: f"no such endpoint: {request.url.path[:200]}",
        405: f"{request.method} is not allowed on {request.url.path[:200]}",
    }.get(status, "internal error; see the weir-web log")
    if status == 500:
        log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return _failure_response(HttpFailure(code, message))


def create_app(settings: WebSettings, connect: Connect) -> Starlette:
    """The ASGI app; `connect` makes its NATS backends when it starts."""
    api = Api(settings, Gate(settings))

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        api._backends = await connect()
        try:
            yield
        finally:
            backends, api._backends = api._backends, None
            await backends.client.close()

    def route(
        path: str, endpoint: Callable[[Request], Awaitable[Response]], *methods: str
    ) -> Route:
        return Route(f"/api/v1{path}", guarded(endpoint), methods=list(methods))

    routes = [
        *(Route(path, api.index, methods=["GET"]) for path in UI_PATHS),
        Mount("/static", StaticFiles(directory=STATIC_DIR), name="static"),
        route("/session", api.session_open, "POST"),
        route("/session", api.session_show, "GET"),
        route("/session", api.session_close, "DELETE"),
        route("/flows", api.flows, "GET"),
        route("/flows", api.submit, "POST"),
        route("/flows/{flow_id}", api.flow, "GET"),
        route("/flows/{flow_id}/events", api.events, "GET"),
        route("/flows/{flow_id}/tasks/{task}/logs", api.logs, "GET"),
        route("/flows/{flow_id}/artifacts", api.artifacts, "GET"),
        route("/flows/{flow_id}/artifacts/{name}", api.artifact, "GET"),
        route("/flows/{flow_id}/cancel", api.cancel, "POST"),
        route("/flows/{flow_id}/rerun", api.rerun, "POST"),
        route("/tasks", api.tasks, "GET"),
        route("/schedules", api.schedules, "GET"),
        route("/schedules", api.schedule_create, "POST"),
        route("/schedules/{name}/{verb}", api.schedule_action, "POST"),
        route("/schedules/{name}", api.schedule_delete, "DELETE"),
        route("/secrets", api.secrets, "GET"),
        route("/secrets/{name}", api.secret_put, "PUT"),
        route("/secrets/{name}", api.secret_delete, "DELETE"),
        route("/health", api.health, "GET"),
        route("/openapi.json", api.openapi, "GET"),
    ]
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
        return Backends(client, store, SecretStore(client.js, secret_key))

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
    )
    return uvicorn.Server(config)


def _spec_and_params(text: str) -> tuple[str, dict[str, Any] | None]:
    """A submit body is a flow spec (YAML or JSON), or the JSON object
    `{"spec": SPEC, "params": {NAME: VALUE}}`: the spec's text and the params."""
    try:
        doc = msgspec.json.decode(text)
    except (msgspec.DecodeError, RecursionError):
        return text, None
    if not (isinstance(doc, dict) and "spec" in doc and "tasks" not in doc):
        return text, None
    unknown = sorted(str(k) for k in set(doc) - {"spec", "params"})
    params = doc.get("params")
    if unknown or not (params is None or isinstance(params, dict)):
        raise HttpFailure(
            ErrorCode.BAD_REQUEST,
            'a submit body is a flow spec, or {"spec": SPEC, "params": {NAME: VALUE}}'
            + (f"; unknown field(s): {', '.join(unknown)}" if unknown else ""),
        )
    return _encoder.encode(doc["spec"]).decode(), params
