"""`/secrets`: names for every reader; setting and deleting for admins. No value is ever
answered or logged."""

from __future__ import annotations

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from weir.secrets import MAX_SECRET_BYTES, SecretError
from weir_proto.errors import ErrorCode

from weir_web.config import Role
from weir_web.endpoints import Endpoints, api_route, json_response
from weir_web.errors import HttpFailure
from weir_web.params import read_json, secret_name_of


class SecretValue(msgspec.Struct, forbid_unknown_fields=True):
    value: str


class SecretRoutes(Endpoints):
    def routes(self) -> list[Route]:
        return [
            api_route("/secrets", self.secrets, "GET"),
            api_route("/secrets/{name}", self.secret_put, "PUT"),
            api_route("/secrets/{name}", self.secret_delete, "DELETE"),
        ]

    async def secrets(self, request: Request) -> Response:
        self.gate.require(request, Role.viewer)
        return json_response({"names": await self.backends.secrets.names()})

    async def secret_put(self, request: Request) -> Response:
        self.gate.require(request, Role.admin)
        name = secret_name_of(request)
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
