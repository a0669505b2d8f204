"""SecretSync: the Kubernetes Secrets `weir-secret-<NAME>` that hold weir's stored secrets.

Before a pod whose task reads `fromSecret: NAME` is created, the executor has the stored
secret copied into the Secret `weir-secret-<NAME>` (key `value`), which the pod references
(`secret_refs`). While the executor runs, `SecretSync` keeps those Secrets in step with the
store: a removed secret's Secret is deleted, a changed one's updated, and orphans left while
no runner watched are reconciled away when it starts. Decrypted values go only into the
Secret's data: never into logs or messages.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import enum
import logging
from collections.abc import Mapping
from functools import partial
from typing import Any, assert_never

import nats.errors
from nats.errors import ConnectionClosedError
from nats.js import JetStreamContext
from weir.secrets import (
    SecretError,
    SecretNotFound,
    SecretRemoved,
    SecretSet,
    SecretsStored,
    SecretStore,
)
from weir.supervisor import LOOP_DONE
from weir_proto.errors import WeirException

from weir_runner.artifacts import DataPlane
from weir_runner.executors.kubernetes.api import (
    RETRY_DELAY_MIN,
    KubeApiError,
    PodApi,
    retrying,
    scrubbed,
)
from weir_runner.executors.kubernetes.manifest import (
    MANAGED_BY,
    MANAGED_BY_LABEL,
    SECRET_DEFAULT_KEY,
    SYNCED_SECRET_ANNOTATION,
    synced_secret_name,
)

log = logging.getLogger("weir.runner.kubernetes")

SECRET_RESYNC_INTERVAL = 300.0
"""Seconds one watch of the secret store lasts before the next reconciles again: a safety
net for changes a silently broken watch would have missed."""
SECRET_SYNC_RETRY_MAX = 30.0
"""Longest wait before the secret sync starts over after a failure (backoff from
`RETRY_DELAY_MIN`)."""
SYNCED_SECRET_SELECTOR = f"{MANAGED_BY_LABEL}={MANAGED_BY}"
"""Lists the Secrets the secret sync may own; only those with `SYNCED_SECRET_ANNOTATION`
(and the name `synced_secret_name` gives it) are."""


class SecretTaken(WeirException):
    """The synced Secret's name is taken by a Secret weir did not create."""


class SecretAction(enum.Enum):
    """What the sync does to a Secret weir copied a stored secret into."""

    KEEP = "keep"
    """It holds the stored value."""
    UPDATE = "update"
    """The stored value changed: the Secret gets the new one."""
    DELETE = "delete"
    """The secret was removed from the store: its value must not linger in the cluster."""


def synced_from(secret: Mapping[str, Any]) -> str | None:
    """The stored secret `secret` holds, when weir synced it: it has weir's managed-by label,
    `SYNCED_SECRET_ANNOTATION` naming the secret, and the name weir gives that secret's
    Secret. None for any other Secret, which the sync never touches."""
    meta = secret.get("metadata") or {}
    if (meta.get("labels") or {}).get(MANAGED_BY_LABEL) != MANAGED_BY:
        return None
    name = (meta.get("annotations") or {}).get(SYNCED_SECRET_ANNOTATION)
    if not isinstance(name, str) or meta.get("name") != synced_secret_name(name):
        return None
    return name


def secret_action(secret: Mapping[str, Any], value: bytes | None) -> SecretAction:
    """For a Secret weir synced, and its secret's value in the store now (None: removed)."""
    if value is None:
        return SecretAction.DELETE
    if (secret.get("data") or {}).get(SECRET_DEFAULT_KEY) == _encoded(value):
        return SecretAction.KEEP
    return SecretAction.UPDATE


class SecretSync:
    """Keeps the Secrets `weir-secret-<name>` in step with weir's secret store.

    `ensure` copies a secret into its Secret before a pod that needs it starts. `run` follows
    the store while the executor runs, one pass after another: a pass starts a watch of the
    store, reconciles once the watch is up (each Secret weir synced is checked against the
    store: deleted if its secret is gone, updated if the value changed), then checks each
    secret the watch reports set or removed. A set secret updates its Secret only if there
    is one: Secrets are made for pods, not for every stored secret. A pass ends after
    `SECRET_RESYNC_INTERVAL`, or on an error, which is logged and followed by a new pass
    after a backoff. Secrets weir did not sync (`synced_from` is None) are never touched.
    """

    def __init__(self, api: PodApi) -> None:
        self.api = api
        self.reconciles = 0
        """Reconciliations done so far: tests wait on it."""
        self._delay = RETRY_DELAY_MIN
        """Back-off while the secret store cannot be read."""
        self._locks: dict[str, asyncio.Lock] = {}

    def _lock(self, name: str) -> asyncio.Lock:
        """Held while secret `name` is read from the store and written to its Secret: a pod's
        copy and the watch's check then apply in the order they read the store, and the one
        that read last wins."""
        return self._locks.setdefault(name, asyncio.Lock())

    async def ensure(self, store: SecretStore, name: str) -> dict[str, str]:
        """Create or update the Secret holding stored secret `name`; its `secretKeyRef`.
        Raises `SecretNotFound` (and other `SecretError`s) from the store, `SecretTaken`, and
        `KubeApiError`s whose messages never hold the value."""
        secret_name = synced_secret_name(name)
        async with self._lock(name):
            value = await store.get(name)
            try:
                while True:
                    existing = await retrying(partial(self.api.get_secret, secret_name))
                    if existing is None:
                        if await self._create(name, value):
                            break
                        continue  # created meanwhile (by another runner): check it again
                    if not _managed(existing):
                        raise SecretTaken(
                            f'a Secret named "{secret_name}" already exists in namespace '
                            f'"{self.api.namespace}" and weir did not create it'
                        )
                    current = synced_from(existing) == name
                    if current and secret_action(existing, value) is SecretAction.KEEP:
                        break
                    if await self._update(name, value):
                        break
                    # deleted since it was read: create it again
            except KubeApiError as exc:
                raise KubeApiError(exc.status, scrubbed(exc.message, value)) from None
        return {"name": secret_name, "key": SECRET_DEFAULT_KEY}

    async def run_once(self, data: DataPlane) -> object:
        """One pass, a round of the supervised `secret-sync` loop. While NATS is unreachable
        the pass waits and starts over here (with back-off, reset once a pass reconciled);
        other errors (a Secret refused by the API server, ...) are the supervisor's. The
        loop ends (`LOOP_DONE`) once the NATS connection it reads the store through is
        closed (a runner stopping)."""
        reconciles = self.reconciles
        resync = asyncio.timeout(SECRET_RESYNC_INTERVAL)
        try:
            async with data.session() as js, resync:
                await self._follow(data, js)
            problem = "the watch of the secret store ended"
        except ConnectionClosedError:
            log.info("NATS connection closed: synced Secrets no longer follow the store")
            return LOOP_DONE
        except (TimeoutError, OSError, nats.errors.Error) as exc:
            if resync.expired():
                self._delay = RETRY_DELAY_MIN
                return None
            problem = f"{type(exc).__name__}: {exc}"
        if self.reconciles > reconciles:
            self._delay = RETRY_DELAY_MIN
        log.warning(
            "secret sync failed; starting over",
            extra={"error": problem, "retry_in": self._delay},
        )
        await asyncio.sleep(self._delay)
        self._delay = min(self._delay * 2, SECRET_SYNC_RETRY_MAX)
        return None

    async def _follow(self, data: DataPlane, js: JetStreamContext) -> None:
        # A store for each check, not one for the pass: the key is read at each use.
        async with contextlib.aclosing(data.secrets(js).watch()) as changes:
            async for change in changes:
                match change:
                    case SecretsStored():
                        await self._reconcile(data, js)
                    case SecretSet(name=name) | SecretRemoved(name=name):
                        await self._check(data.secrets(js), name)
                    case _ as unreachable:
                        assert_never(unreachable)

    async def _reconcile(self, data: DataPlane, js: JetStreamContext) -> None:
        """Check every Secret weir synced: those of secrets removed while no runner watched
        are deleted, those of secrets changed meanwhile updated."""
        listed = await retrying(partial(self.api.list_secrets, SYNCED_SECRET_SELECTOR))
        names = sorted({name for secret in listed if (name := synced_from(secret)) is not None})
        for name in names:
            await self._check(data.secrets(js), name)
        self.reconciles += 1
        log.info("synced Secrets reconciled with the secret store", extra={"secrets": len(names)})

    async def _check(self, store: SecretStore, name: str) -> None:
        """Bring the Secret of stored secret `name`, if weir synced one, in line with the
        store as it is now (not as an event said it was)."""
        secret_name = synced_secret_name(name)
        async with self._lock(name):
            secret = await retrying(partial(self.api.get_secret, secret_name))
            if secret is None or synced_from(secret) != name:
                return  # no copy to keep in step, or not weir's
            try:
                value: bytes | None = await store.get(name)
            except SecretNotFound:
                value = None
            except SecretError as exc:  # stored, but unreadable here (no key, another key)
                log.warning(
                    "stored secret unreadable; its Secret is left as it is",
                    extra={"secret": name, "error": str(exc)},
                )
                return
            action = secret_action(secret, value)
            match action:
                case SecretAction.KEEP:
                    pass
                case SecretAction.UPDATE:
                    assert value is not None
                    try:
                        await self._update(name, value)
                    except KubeApiError as exc:
                        raise KubeApiError(exc.status, scrubbed(exc.message, value)) from None
                case SecretAction.DELETE:
                    await self._delete(secret)
                case _ as unreachable:
                    assert_never(unreachable)

    async def _create(self, name: str, value: bytes) -> bool:
        """False when a Secret of that name exists already."""
        secret = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": synced_secret_name(name), **_synced_metadata(name)},
            "type": "Opaque",
            "data": {SECRET_DEFAULT_KEY: _encoded(value)},
        }
        try:
            await retrying(partial(self.api.create_secret, secret), value)
        except KubeApiError as exc:
            if exc.status == 409:
                return False
            raise
        log.info("created Secret", extra={"secret": synced_secret_name(name)})
        return True

    async def _update(self, name: str, value: bytes) -> bool:
        """False when the Secret is gone."""
        secret_name = synced_secret_name(name)
        patch = {"metadata": _synced_metadata(name), "data": {SECRET_DEFAULT_KEY: _encoded(value)}}
        try:
            await retrying(partial(self.api.patch_secret, secret_name, patch), value)
        except KubeApiError as exc:
            if exc.status == 404:
                return False
            raise
        log.info("updated Secret", extra={"secret": secret_name})
        return True

    async def _delete(self, secret: Mapping[str, Any]) -> None:
        meta = secret.get("metadata") or {}
        try:
            await retrying(
                partial(
                    self.api.delete_secret,
                    meta["name"],
                    meta.get("uid"),
                    meta.get("resourceVersion"),
                )
            )
        except KubeApiError as exc:
            if exc.status != 409:
                raise
            # Changed since it was read (by `set` through another runner, or replaced): the
            # preconditions failed and the next check decides.
            log.info("Secret replaced before its deletion", extra={"secret": meta["name"]})
            return
        log.info("deleted Secret of a removed secret", extra={"secret": meta["name"]})


def _synced_metadata(name: str) -> dict[str, Any]:
    return {
        "labels": {MANAGED_BY_LABEL: MANAGED_BY},
        "annotations": {SYNCED_SECRET_ANNOTATION: name},
    }


def _managed(secret: Mapping[str, Any]) -> bool:
    labels = (secret.get("metadata") or {}).get("labels") or {}
    return bool(labels.get(MANAGED_BY_LABEL) == MANAGED_BY)


def _encoded(value: bytes) -> str:
    return base64.b64encode(value).decode()
