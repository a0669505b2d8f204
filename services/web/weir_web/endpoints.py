"""What every endpoint shares: the NATS backends, connected once when the app starts, the
caller check, and the turning of every failure into the error body of its code."""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

import msgspec
import nats.errors
from nats.aio.client import Client as NATS
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from weir.artifacts import ArtifactChecksumError, ArtifactError, ArtifactNotFound, Artifacts
from weir.client import Client, WeirError
from weir.secrets import SecretError
from weir_proto.errors import ErrorCode, error_code

from weir_web.auth import Denied, Gate, set_session_cookie
from weir_web.changes import FlowChanges
from weir_web.config import Role, WebSettings
from weir_web.errors import CODE_BY_STATUS, HttpFailure

log = logging.getLogger("weir.web")

API_PREFIX = "/api/v1"
_encoder = msgspec.json.Encoder()

Endpoint = Callable[[Request], Awaitable[Response]]

Access = Role | Literal["any", "none"]
"""Who may call an endpoint: a role (and the roles above it); `any`, any caller weir-web
knows (a token or a session); `none`, anyone (a login, the API's own description)."""

Handler = TypeVar("Handler", bound=Callable[..., Awaitable[Response]])

_DECLARED = "_weir_api_route"
"""The attribute `route` sets on a handler: its (method, path, access)."""


def route(method: str, path: str, access: Access) -> Callable[[Handler], Handler]:
    """Declares the decorated method of an `Endpoints` class the endpoint of `method` at
    `/api/v1{path}`, for the callers `access` admits."""

    def declare(handler: Handler) -> Handler:
        setattr(handler, _DECLARED, (method, path, access))
        return handler

    return declare


def access_name(access: Access) -> str:
    """How the OpenAPI document states `access` (`Role: operator.`)."""
    return access.name if isinstance(access, Role) else access


class ApiRoute(Route):
    """An endpoint of `/api/v1` with who may call it: one declaration, from which both the
    check made before the endpoint runs and the role the OpenAPI document states come."""

    def __init__(self, path: str, endpoint: Endpoint, method: str, access: Access) -> None:
        super().__init__(f"{API_PREFIX}{path}", endpoint, methods=[method])
        self.access = access


@dataclass
class Backends:
    """What the API talks to, connected once at start (the lifespan) and shared."""

    client: Client
    artifacts: Artifacts
    changes: FlowChanges
    secret_key: bytes | None = field(default=None, repr=False)
    """WEIR_SECRET_KEY, to seal the values of `PUT /secrets` (the scheduler stores them: this
    process may not touch the secrets bucket, so it never sees a stored ciphertext)."""

    @property
    def nc(self) -> NATS:
        return self.client.nc


Connect = Callable[[], Awaitable[Backends]]


class Context:
    """The settings, the gate and (once connected) the backends, shared by every endpoint."""

    def __init__(self, settings: WebSettings, gate: Gate) -> None:
        self.settings = settings
        self.gate = gate
        self.connected: Backends | None = None
        self.api_routes: list[ApiRoute] = []
        """Every endpoint of `/api/v1`, as the app routes them (the OpenAPI document's
        roles)."""


class Endpoints:
    """A resource's endpoints; each checks its caller's role first, then its parameters."""

    def __init__(self, context: Context) -> None:
        self.context = context

    @property
    def settings(self) -> WebSettings:
        return self.context.settings

    @property
    def gate(self) -> Gate:
        return self.context.gate

    @property
    def backends(self) -> Backends:
        if self.context.connected is None:
            raise HttpFailure(ErrorCode.UNAVAILABLE, "weir-web is not connected to NATS yet")
        return self.context.connected

    @property
    def client(self) -> Client:
        return self.backends.client

    def routes(self) -> list[ApiRoute]:
        """The endpoints its methods declare with `@route`, in the order the class has them."""
        routes: list[ApiRoute] = []
        for name, member in vars(type(self)).items():
            declared: tuple[str, str, Access] | None = getattr(member, _DECLARED, None)
            if declared is not None:
                method, path, access = declared
                routes.append(self.api_route(path, getattr(self, name), method, access))
        return routes

    def api_route(self, path: str, endpoint: Endpoint, method: str, access: Access) -> ApiRoute:
        """`endpoint` at `/api/v1{path}` for `method`, called once the caller is checked
        against `access`; its failures are answered as error bodies."""
        gate = self.gate

        async def checked(request: Request) -> Response:
            caller = None
            if isinstance(access, Role):
                caller = gate.require(request, access)
            elif access == "any":
                caller = gate.caller(request)
            response = await endpoint(request)
            sets_cookie = any(name == b"set-cookie" for name, _ in response.raw_headers)
            if caller is not None and caller.renewed is not None and not sets_cookie:
                # (a login or logout answers with its own cookie)
                seconds = gate.settings.session_seconds
                set_session_cookie(response, request, caller.renewed, seconds)
            return response

        checked.__name__ = endpoint.__name__
        return ApiRoute(path, guarded(checked), method, access)


def json_response(value: object, status: int = 200) -> Response:
    return Response(_encoder.encode(value), status, media_type="application/json")


def failure_response(failure: HttpFailure) -> Response:
    retry_after = failure.extra.get("retry_after")
    headers = {"Retry-After": str(max(1, math.ceil(retry_after)))} if retry_after else None
    return Response(failure.body(), failure.status, media_type="application/json", headers=headers)


def guarded(endpoint: Endpoint) -> Endpoint:
    """`endpoint` with every failure turned into the error body of its code."""

    async def run(request: Request) -> Response:
        try:
            return await endpoint(request)
        except HttpFailure as failure:
            return failure_response(failure)
        except Denied as denied:
            return failure_response(HttpFailure(CODE_BY_STATUS[denied.status], denied.message))
        except WeirError as exc:
            extra: dict[str, Any] = {"flow_id": exc.flow_id} if exc.flow_id else {}
            if exc.retry_after is not None:  # rate_limited, overloaded: when to submit again
                extra["retry_after"] = exc.retry_after
            # A rejected flow, or a schedule whose flow would be: every problem, listed.
            problems = exc.details if exc.details or exc.code == ErrorCode.INVALID_FLOW else None
            return failure_response(
                HttpFailure(error_code(exc.code), exc.message, problems, extra=extra)
            )
        except ArtifactNotFound as exc:
            return failure_response(HttpFailure(ErrorCode.NOT_FOUND, str(exc)))
        except ArtifactChecksumError as exc:
            return failure_response(HttpFailure(ErrorCode.INTERNAL, str(exc)))
        except ArtifactError as exc:
            return failure_response(HttpFailure(ErrorCode.UNAVAILABLE, str(exc)))
        except SecretError as exc:
            return failure_response(HttpFailure(ErrorCode.UNAVAILABLE, str(exc)))
        except (TimeoutError, nats.errors.TimeoutError):
            log.warning("NATS did not answer in time on %s %s", request.method, request.url.path)
            return failure_response(
                HttpFailure(ErrorCode.TIMEOUT, "NATS did not answer in time; try again")
            )

    run.__name__ = endpoint.__name__
    return run
