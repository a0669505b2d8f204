"""Secrets: named values a task reads through `env: [{name, fromSecret}]`.

Kept in the NATS KV bucket `weir-secrets`, each value encrypted at rest with AES-256-GCM
under the key in `WEIR_SECRET_KEY` (32 bytes, URL-safe base64; `weir secret keygen` makes
one). The secret's name is the associated data, so a ciphertext copied onto another name
does not decrypt. Values never go into events, logs or error messages: errors name the
secret, never its value.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
from collections.abc import AsyncGenerator, MutableMapping
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from nats.js import JetStreamContext, api
from nats.js.errors import BucketNotFoundError, KeyDeletedError, KeyNotFoundError
from nats.js.kv import KV_DEL, KV_PURGE, KeyValue
from weir_proto.errors import WeirException
from weir_proto.ids import SECRET_NAME_RULE, is_secret_name

from weir.config import ConfigError, NatsSecurity, Settings
from weir.setting import declared_setting, read_one

SECRETS_BUCKET = "weir-secrets"
BUCKET_POLL_SECONDS = 2.0
"""How often a watch of a store nobody has written yet looks for its bucket."""
NAMES_SECONDS = 10.0
"""How long `SecretStore.names` waits for the store's snapshot."""
SECRET_KEY_ENV = declared_setting(Settings, "secret_key").env
MAX_SECRET_BYTES = 64 * 1024
# Secret names follow `weir_proto.ids.is_secret_name` (valid as a KV key, a subject's tokens
# and a Kubernetes Secret data key); `fromSecret: name/key` (with a slash) names an existing
# Kubernetes Secret instead.
_FORMAT = b"\x01"
_NONCE_BYTES = 12
_TAG_BYTES = 16
MAX_SEALED_BYTES = 1 + _NONCE_BYTES + MAX_SECRET_BYTES + _TAG_BYTES
"""The largest stored (encrypted) value: format byte, nonce, ciphertext, GCM tag."""


class SecretError(WeirException):
    """A secret cannot be stored or read; the message names it, never its value."""


class SecretNotFound(SecretError):
    pass


@dataclass(frozen=True, slots=True)
class SecretsStored:
    """The names in the store when a watch began: the first thing a watch reports."""

    names: frozenset[str]


@dataclass(frozen=True, slots=True)
class SecretSet:
    """Secret `name` was stored or given a new value (`weir secret set`)."""

    name: str


@dataclass(frozen=True, slots=True)
class SecretRemoved:
    """Secret `name` was removed (`weir secret rm`)."""

    name: str


SecretChange = SecretsStored | SecretSet | SecretRemoved


def new_secret_key() -> str:
    """A fresh value for WEIR_SECRET_KEY."""
    return base64.urlsafe_b64encode(AESGCM.generate_key(bit_length=256)).decode()


ENV_SECRET_PREFIX = "WEIR_SECRET_"
"""`WEIR_SECRET_<NAME>`: a secret given to the runner in its environment."""


@dataclass(frozen=True)
class HeldCredentials:
    """What a process read once from its environment and holds in memory only."""

    nats: NatsSecurity
    secret_key: bytes | None = field(default=None, repr=False)
    env_secrets: dict[str, str] = field(default_factory=dict, repr=False)
    """`WEIR_SECRET_<NAME>` variables, by variable name."""


_held: HeldCredentials | None = None


def take_credentials(environ: MutableMapping[str, str] | None = None) -> HeldCredentials:
    """Read the NATS password or token, WEIR_SECRET_KEY and every WEIR_SECRET_<NAME> once,
    then delete them from `environ` (the process environment): no child process (supervisor,
    sandbox, helper) inherits them. The kernel's copy in /proc/<pid>/environ keeps the values
    the process started with (the runner is non-dumpable: only root reads it). Later calls of
    `connect`, `secret_key_from_env` and `env_secret` without an explicit environment use
    what was read here. Bad values raise (ConfigError, SecretError) before any is deleted."""
    global _held
    environ = os.environ if environ is None else environ
    held = HeldCredentials(
        nats=NatsSecurity.from_env(dict(environ)),
        secret_key=secret_key_from_env(dict(environ)),
        env_secrets={
            name: value
            for name, value in environ.items()
            if name.startswith(ENV_SECRET_PREFIX) and name != SECRET_KEY_ENV
        },
    )
    for name in (*CREDENTIAL_ENV, *held.env_secrets):
        environ.pop(name, None)
    _held = held
    return held


CREDENTIAL_ENV = ("WEIR_NATS_PASSWORD", "WEIR_NATS_TOKEN", SECRET_KEY_ENV)
"""Variables `take_credentials` removes, besides every WEIR_SECRET_<NAME>."""


def held_credentials() -> HeldCredentials | None:
    """What `take_credentials` read, if this process called it."""
    return _held


def env_secret(variable: str) -> str | None:
    """The value of `WEIR_SECRET_<NAME>` `variable`: as read at start by
    `take_credentials`, else from the environment."""
    if _held is not None:
        return _held.env_secrets.get(variable)
    return os.environ.get(variable)


def secret_key_from_env(env: dict[str, str] | None = None) -> bytes | None:
    """The key in WEIR_SECRET_KEY, or None when it is unset (without `env`: the key
    `take_credentials` read, if it was called)."""
    if env is None and _held is not None:
        return _held.secret_key
    try:
        key: bytes | None = read_one(Settings, "secret_key", os.environ if env is None else env)
    except ConfigError as exc:
        raise SecretError(str(exc)) from None
    return key


def check_secret_name(name: str) -> None:
    """Refuse a name that is not a secret's (`is_secret_name`), before any subject is formed
    from it; the error states the rule."""
    if not is_secret_name(name):
        raise SecretError(f"{name[:80]!r} is not a secret name: {SECRET_NAME_RULE}")


def seal_secret(key: bytes, name: str, value: bytes) -> bytes:
    """`value` encrypted under `key` as weir's store keeps it (AES-256-GCM, a fresh nonce,
    the name as associated data). Whoever seals needs the key; whoever stores the result
    (the scheduler, for weir-web) does not."""
    check_secret_name(name)
    if len(value) > MAX_SECRET_BYTES:
        raise SecretError(
            f'secret "{name}" is {len(value)} bytes; at most {MAX_SECRET_BYTES} are allowed'
        )
    nonce = os.urandom(_NONCE_BYTES)
    return _FORMAT + nonce + AESGCM(key).encrypt(nonce, value, _associated(name))


def check_sealed(name: str, sealed: bytes) -> None:
    """Refuse what cannot be a value `seal_secret` made: the wrong format or size. (Only
    the key tells a forgery: a value sealed under another key fails when a runner reads it.)"""
    if not sealed.startswith(_FORMAT) or not (
        1 + _NONCE_BYTES + _TAG_BYTES <= len(sealed) <= MAX_SEALED_BYTES
    ):
        raise SecretError(
            f'the value given for secret "{name}" is not one sealed by this weir '
            f"(format {_FORMAT.hex()}, at most {MAX_SEALED_BYTES} bytes)"
        )


class SecretStore:
    """Encrypted secrets in the `weir-secrets` KV bucket."""

    def __init__(self, js: JetStreamContext, key: bytes | None) -> None:
        self.js = js
        self._key = key
        self._kv: KeyValue | None = None

    async def _existing_bucket(self) -> KeyValue | None:
        """The bucket, None while nobody has stored a secret yet. Readers never create it:
        runners may not (deploy/nats/permissions.conf), and need not."""
        if self._kv is None:
            try:
                self._kv = await self.js.key_value(SECRETS_BUCKET)
            except BucketNotFoundError:
                return None
        return self._kv

    async def _bucket(self) -> KeyValue:
        """The bucket, created by the first write (`set`, `put_sealed`)."""
        if self._kv is None:
            try:
                self._kv = await self.js.key_value(SECRETS_BUCKET)
            except BucketNotFoundError:
                self._kv = await self.js.create_key_value(
                    api.KeyValueConfig(
                        bucket=SECRETS_BUCKET,
                        description="weir secrets (AES-256-GCM encrypted values)",
                        history=1,
                        storage=api.StorageType.FILE,
                    )
                )
        return self._kv

    def _secret_key(self) -> bytes:
        if self._key is None:
            raise SecretError(
                f"{SECRET_KEY_ENV} is not set: it is needed to encrypt and decrypt secrets"
            )
        return self._key

    async def set(self, name: str, value: bytes) -> None:
        """Encrypt `value` (this store needs the key) and store it."""
        await self.put_sealed(name, seal_secret(self._secret_key(), name, value))

    async def put_sealed(self, name: str, sealed: bytes) -> None:
        """Store a value `seal_secret` encrypted; no key needed (the scheduler's way)."""
        check_secret_name(name)
        check_sealed(name, sealed)
        await (await self._bucket()).put(name, sealed)

    async def exists(self, name: str) -> bool:
        check_secret_name(name)
        bucket = await self._existing_bucket()
        if bucket is None:
            return False
        try:
            await bucket.get(name)
        except (KeyNotFoundError, KeyDeletedError):
            return False
        return True

    async def get(self, name: str) -> bytes:
        check_secret_name(name)
        bucket = await self._existing_bucket()
        try:
            if bucket is None:
                raise KeyNotFoundError
            entry = await bucket.get(name)
        except (KeyNotFoundError, KeyDeletedError):
            raise SecretNotFound(f'secret "{name}" does not exist') from None
        stored = entry.value or b""
        if not stored.startswith(_FORMAT) or len(stored) < 1 + _NONCE_BYTES:
            raise SecretError(f'secret "{name}" is stored in a format this weir cannot read')
        nonce, sealed = stored[1 : 1 + _NONCE_BYTES], stored[1 + _NONCE_BYTES :]
        try:
            return AESGCM(self._secret_key()).decrypt(nonce, sealed, _associated(name))
        except InvalidTag:
            raise SecretError(
                f'secret "{name}" cannot be decrypted: {SECRET_KEY_ENV} is not the key it was '
                "stored with"
            ) from None

    async def names(self) -> list[str]:
        """The names stored now (every write acknowledged before this call is seen)."""
        try:
            async with asyncio.timeout(NAMES_SECONDS), contextlib.aclosing(self.watch()) as changes:
                async for change in changes:
                    if isinstance(change, SecretsStored):
                        return sorted(change.names)
        except TimeoutError:
            pass
        raise SecretError(f"the secret store gave no list of names within {NAMES_SECONDS:g} s")

    async def watch(self) -> AsyncGenerator[SecretChange, None]:
        """`SecretsStored` once, then each `SecretSet` and `SecretRemoved` as it happens,
        until the caller stops (wrap it in `contextlib.aclosing`). Names only: no value is
        read, so no key is needed."""
        bucket = await self._existing_bucket()
        stored: set[str] | None = set()  # None once the snapshot was reported
        if bucket is None:  # nothing stored yet: wait for the first `weir secret set`
            yield SecretsStored(frozenset())
            stored = None
            while bucket is None:
                await asyncio.sleep(BUCKET_POLL_SECONDS)
                bucket = await self._existing_bucket()
        # The snapshot ends with the stream's last message as it is now. (nats-py's own end
        # marker, a None update, may come before messages already in flight: nats.py #842.)
        state = (await self.js.stream_info(f"KV_{SECRETS_BUCKET}")).state
        last = state.last_seq if state.messages else 0
        watcher = await bucket.watchall(meta_only=True)
        try:
            if stored is not None and not last:
                yield SecretsStored(frozenset())
                stored = None
            async for entry in watcher:
                if entry is None:  # nats-py's end marker: not trusted, see above
                    continue
                removed = entry.operation in (KV_DEL, KV_PURGE)
                if stored is None:
                    yield SecretRemoved(entry.key) if removed else SecretSet(entry.key)
                    continue
                if removed:
                    stored.discard(entry.key)
                else:
                    stored.add(entry.key)
                if (entry.revision or 0) >= last:  # the end of what was stored at the start
                    yield SecretsStored(frozenset(stored))
                    stored = None
        finally:
            with contextlib.suppress(Exception):  # the connection may be closed already
                await watcher.stop()  # type: ignore[no-untyped-call]

    async def delete(self, name: str) -> bool:
        """Remove the secret; False when there was none."""
        check_secret_name(name)
        bucket = await self._existing_bucket()
        if bucket is None or not await self.exists(name):
            return False
        await bucket.purge(name)
        return True


def _associated(name: str) -> bytes:
    return f"weir-secret:{name}".encode()
