"""`weir.api.secret.*`: the names in weir's secret store, and storing or removing a secret
for a client that may not touch the store itself (weir-web's NATS user holds no right on the
`weir-secrets` bucket).

The scheduler never holds WEIR_SECRET_KEY: the asker seals the value (`seal_secret`) and the
scheduler stores the ciphertext as given, after checking the name (`is_secret_name`, before
any subject is formed from it) and the sealed format. So neither weir-web (the key, no
ciphertext) nor the scheduler (the ciphertexts, no key) can read a secret alone.
"""

from __future__ import annotations

from nats.js import JetStreamContext
from weir.secrets import SecretError, SecretStore, check_secret_name
from weir_proto import subjects
from weir_proto.api import SecretList, SecretName, SecretPut
from weir_proto.errors import ApiError, ErrorCode

from weir_scheduler.api import ApiFailure, Handler, decode_request


def _checked_name(name: str) -> str:
    try:
        check_secret_name(name)
    except SecretError as exc:
        raise ApiFailure(ApiError(code=ErrorCode.BAD_REQUEST, message=str(exc))) from None
    return name


class SecretsApi:
    """The handlers of `weir.api.secret.list`, `.put` and `.delete`."""

    def __init__(self, js: JetStreamContext) -> None:
        self.store = SecretStore(js, None)  # no key: values stay sealed here

    def handlers(self) -> list[tuple[str, Handler]]:
        """(verb, handler) pairs for `Api.serve`; the verbs sit under `weir.api.`."""
        prefix = subjects.API_SECRET_PREFIX.removeprefix(f"{subjects.API_PREFIX}.")
        return [
            (f"{prefix}.list", self.names),
            (f"{prefix}.put", self.put),
            (f"{prefix}.delete", self.delete),
        ]

    async def names(self, data: bytes) -> object:
        try:
            return SecretList(names=await self.store.names())
        except SecretError as exc:
            raise ApiFailure(ApiError(code=ErrorCode.UNAVAILABLE, message=str(exc))) from None

    async def put(self, data: bytes) -> object:
        request = decode_request(data, SecretPut, "secret.put")
        name = _checked_name(request.name)
        try:
            await self.store.put_sealed(name, request.sealed)
        except SecretError as exc:
            raise ApiFailure(ApiError(code=ErrorCode.BAD_REQUEST, message=str(exc))) from None
        return SecretName(name=name)

    async def delete(self, data: bytes) -> object:
        request = decode_request(data, SecretName, "secret.delete")
        name = _checked_name(request.name)
        if not await self.store.delete(name):
            raise ApiFailure(
                ApiError(code=ErrorCode.NOT_FOUND, message=f'there is no secret "{name}"')
            )
        return SecretName(name=name)
