"""The few pod and Secret calls the executor makes, over kubernetes_asyncio, with plain dicts.

Every call reads the raw response (`_preload_content=False`) so pods stay the JSON the API
server sent, and every failure is one `KubeApiError` with the HTTP status (0 when the
server could not be reached), which `transient` sorts into retry or give up.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import aiohttp
from kubernetes_asyncio import client as kube_client
from kubernetes_asyncio import config as kube_config
from weir_proto.errors import WeirException

from weir_runner.executors.kubernetes.manifest import CONTAINER_NAME, Pod

log = logging.getLogger("weir.runner.kubernetes")

T = TypeVar("T")

REQUEST_TIMEOUT = 30.0
LIST_PAGE_SIZE = 500
TRANSIENT_STATUSES = frozenset({0, 408, 425, 429, 500, 502, 503, 504})
RETRY_DELAY_MIN = 0.1
RETRY_DELAY_MAX = 5.0
"""Backoff between tries of a call that failed for a transient reason."""


class KubeApiError(WeirException):
    """The API server answered with an error status, or could not be reached (status 0)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"Kubernetes API error {status}: {message}")
        self.status = status
        self.message = message

    @property
    def transient(self) -> bool:
        return self.status in TRANSIENT_STATUSES


async def load_client(kubeconfig: str) -> kube_client.ApiClient:
    """An explicit kubeconfig file first, then the pod's service account, then
    ~/.kube/config."""
    if kubeconfig:
        return await kube_config.new_client_from_config(config_file=kubeconfig)
    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        configuration = kube_client.Configuration()
        kube_config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        return kube_client.ApiClient(configuration)
    return await kube_config.new_client_from_config()


async def _error(response: aiohttp.ClientResponse) -> KubeApiError:
    body = await response.text()
    try:
        message = str(json.loads(body).get("message") or body)
    except (ValueError, AttributeError):
        message = body
    return KubeApiError(response.status, message[:500])


class PodApi:
    """Pods of one namespace, and the Secrets their `fromSecret` variables reference (the ones
    weir keeps in sync with its secret store included)."""

    def __init__(self, api_client: kube_client.ApiClient, namespace: str) -> None:
        self.api_client = api_client
        self.core = kube_client.CoreV1Api(api_client)
        self.namespace = namespace

    async def close(self) -> None:
        await self.api_client.close()

    async def _call(self, method: str, *args: Any, **kwargs: Any) -> aiohttp.ClientResponse:
        call = getattr(self.core, method)
        try:
            response: aiohttp.ClientResponse = await call(*args, _preload_content=False, **kwargs)
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise KubeApiError(0, f"{type(exc).__name__}: {exc}") from exc
        if not 200 <= response.status <= 299:
            error = await _error(response)
            response.release()
            raise error
        return response

    async def _json(self, method: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
        response = await self._call(method, *args, _request_timeout=REQUEST_TIMEOUT, **kwargs)
        try:
            data: dict[str, Any] = json.loads(await response.read())
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise KubeApiError(0, f"{type(exc).__name__}: {exc}") from exc
        finally:
            response.release()
        return data

    async def create(self, pod: Pod) -> Pod:
        return await self._json("create_namespaced_pod", self.namespace, pod)

    async def _read(self, method: str, name: str) -> dict[str, Any] | None:
        """The object `name` of the namespace, None when there is none."""
        try:
            return await self._json(method, name, self.namespace)
        except KubeApiError as exc:
            if exc.status == 404:
                return None
            raise

    async def get(self, name: str) -> Pod | None:
        return await self._read("read_namespaced_pod", name)

    async def delete(self, name: str) -> None:
        """Delete the pod; one that is already gone is fine."""
        try:
            await self._json("delete_namespaced_pod", name, self.namespace)
        except KubeApiError as exc:
            if exc.status != 404:
                raise

    async def get_secret(self, name: str) -> dict[str, Any] | None:
        return await self._read("read_namespaced_secret", name)

    async def create_secret(self, secret: dict[str, Any]) -> dict[str, Any]:
        return await self._json("create_namespaced_secret", self.namespace, secret)

    async def patch_secret(self, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        return await self._json(
            "patch_namespaced_secret",
            name,
            self.namespace,
            patch,
            _content_type="application/merge-patch+json",
        )

    async def list_secrets(self, selector: str) -> list[dict[str, Any]]:
        """Every Secret of the namespace matching `selector`, read page by page."""
        secrets: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {"label_selector": selector, "limit": LIST_PAGE_SIZE}
        while True:
            page = await self._json("list_namespaced_secret", self.namespace, **kwargs)
            secrets += page.get("items") or []
            kwargs["_continue"] = (page.get("metadata") or {}).get("continue")
            if not kwargs["_continue"]:
                return secrets

    async def delete_secret(
        self, name: str, uid: str | None, resource_version: str | None = None
    ) -> None:
        """Delete Secret `name` if it is still the object `uid` as read at `resource_version`
        (not one made or changed since: 409 Conflict); one that is already gone is fine."""
        preconditions = {
            key: value
            for key, value in (("uid", uid), ("resourceVersion", resource_version))
            if value
        }
        options = {"preconditions": preconditions} if preconditions else None
        try:
            await self._json("delete_namespaced_secret", name, self.namespace, body=options)
        except KubeApiError as exc:
            if exc.status != 404:
                raise

    async def list(self, selector: str) -> dict[str, Any]:
        return await self._json("list_namespaced_pod", self.namespace, label_selector=selector)

    async def watch(
        self, selector: str, resource_version: str | None, timeout: int
    ) -> AsyncIterator[dict[str, Any]]:
        """Watch events (`{"type", "object"}`) until the server ends the stream."""
        kwargs: dict[str, Any] = {
            "label_selector": selector,
            "watch": True,
            "allow_watch_bookmarks": True,
            "timeout_seconds": timeout,
            # The server ends the stream after `timeout`; a silent connection ends sooner.
            "_request_timeout": aiohttp.ClientTimeout(sock_connect=REQUEST_TIMEOUT),
        }
        if resource_version:
            kwargs["resource_version"] = resource_version
        response = await self._call("list_namespaced_pod", self.namespace, **kwargs)
        try:
            while True:
                try:
                    line = await response.content.readline()
                except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                    raise KubeApiError(0, f"watch broke: {type(exc).__name__}: {exc}") from exc
                if not line:
                    return
                if line.strip():
                    yield json.loads(line)
        finally:
            response.release()

    async def logs(self, name: str, follow: bool = False) -> AsyncIterator[bytes]:
        """The task container's log from its start, streamed in chunks; with `follow`, as
        the container writes it, until it ends (or the server ends the stream)."""
        response = await self._call(
            "read_namespaced_pod_log",
            name,
            self.namespace,
            container=CONTAINER_NAME,
            follow=follow,
            _request_timeout=aiohttp.ClientTimeout(sock_connect=REQUEST_TIMEOUT)
            if follow
            else REQUEST_TIMEOUT,
        )
        try:
            async for chunk in response.content.iter_chunked(64 * 1024):
                yield chunk
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise KubeApiError(0, f"log stream broke: {type(exc).__name__}: {exc}") from exc
        finally:
            response.release()


async def retrying(call: Callable[[], Awaitable[T]], secret: bytes | None = None) -> T:
    """`call()`, again after transient API errors; others are raised. With `secret` (the
    value the call writes), the errors logged meanwhile never hold it."""
    delay = RETRY_DELAY_MIN
    while True:
        try:
            return await call()
        except KubeApiError as exc:
            if not exc.transient:
                raise
            error = str(exc) if secret is None else scrubbed(str(exc), secret)
            log.warning("Kubernetes API call failed; retrying", extra={"error": error})
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_DELAY_MAX)


def scrubbed(message: str, value: bytes) -> str:
    """`message` without `value` in it, as text or base64 (API errors may quote a body)."""
    for form in (value.decode(errors="replace"), base64.b64encode(value).decode()):
        if form.strip():
            message = message.replace(form, "[redacted]")
    return message
