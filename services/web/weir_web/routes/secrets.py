"""`/secrets`: names for every reader; setting and deleting for admins. No value is ever
answered or logged.

weir-web holds no right on the secrets bucket: it asks the scheduler (`weir.api.secret.*`).
A value is sealed here, with WEIR_SECRET_KEY, and the scheduler stores the ciphertext it is
given without the key; weir-web never reads a stored one."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from weir.secrets import MAX_SECRET_BYTES, SECRET_KEY_ENV, seal_secret
from weir_proto.errors import ErrorCode

from weir_web.bodies import SecretValue
from weir_web.config import Role
from weir_web.endpoints import Endpoints, json_response, route
from weir_web.errors import HttpFailure
from weir_web.params import read_json, secret_name_of


class SecretRoutes(Endpoints):
    @route("GET", "/secrets", Role.viewer)
    async def secrets(self, request: Request) -> Response:
        return json_response({"names": await self.client.secret_names()})

    @route("PUT", "/secrets/{name}", Role.admin)
    async def secret_put(self, request: Request) -> Response:
        name = secret_name_of(request)
        # msgspec names fields, never values, in its errors.
        secret = await read_json(request, SecretValue, MAX_SECRET_BYTES * 2)
        value = secret.value.encode()
        if len(value) > MAX_SECRET_BYTES:
            raise HttpFailure(
                ErrorCode.TOO_LARGE, f"a secret holds at most {MAX_SECRET_BYTES:,} bytes"
            )
        key = self.backends.secret_key
        if key is None:
            raise HttpFailure(
                ErrorCode.UNAVAILABLE,
                f"{SECRET_KEY_ENV} is not set on weir-web: it seals the values of PUT /secrets "
                "(or store secrets with `weir secret set`)",
            )
        await self.client.secret_put(name, seal_secret(key, name, value))
        return Response(status_code=204)

    @route("DELETE", "/secrets/{name}", Role.admin)
    async def secret_delete(self, request: Request) -> Response:
        await self.client.secret_delete(secret_name_of(request))
        return Response(status_code=204)
