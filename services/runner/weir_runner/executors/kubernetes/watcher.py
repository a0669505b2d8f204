"""PodWatcher: one watch per runner over every pod weir manages in its namespace.

Attempts do not poll their pods: each tracks its pod's name and waits on a `PodChannel`,
which holds the latest state the watch has seen. The watch resumes from the last
resourceVersion after a broken stream and lists again (relists) when the server answers
410 Gone; API errors are retried with backoff for as long as it takes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator
from typing import Any

from weir_runner.executors.kubernetes.api import KubeApiError, PodApi
from weir_runner.executors.kubernetes.manifest import MANAGED_BY, MANAGED_BY_LABEL, Pod

log = logging.getLogger("weir.runner.kubernetes")

WATCH_TIMEOUT_DEFAULT = 300
"""Seconds the server keeps one watch open before we resume it from where it ended."""
RETRY_DELAY_MIN = 0.1
RETRY_DELAY_MAX = 5.0


class PodChannel:
    """The latest known state of one pod, with a version that grows on every change."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.pod: Pod | None = None
        self.deleted = False
        """The watch saw the pod deleted; `pod` is then its last state."""
        self.maybe_gone = False
        """A relist did not show the pod: it may be gone, or newer than the list."""
        self.version = 0
        self.users = 0
        self._changed = asyncio.Event()

    def _bump(self) -> None:
        self.version += 1
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    def offer(self, pod: Pod) -> None:
        self.pod, self.deleted, self.maybe_gone = pod, False, False
        self._bump()

    def seed(self, pod: Pod) -> None:
        """State read directly from the API: used only if the watch has not spoken yet."""
        if self.pod is None and not self.deleted:
            self.offer(pod)

    def gone(self, last: Pod | None) -> None:
        self.deleted, self.maybe_gone = True, False
        if last is not None:
            self.pod = last
        self._bump()

    def suspect(self) -> None:
        self.maybe_gone = True
        self._bump()

    async def wait_newer(self, seen: int, timeout: float | None) -> int:
        """Wait until the version is past `seen` (or `timeout` passed); return the version."""
        if self.version <= seen:
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for swallows a cancellation
            # that arrives as the event is set, and the attempt would go on uncancelled.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._changed.wait()
        return self.version


class PodWatcher:
    """Feeds every tracked `PodChannel` from one list+watch of `selector`."""

    def __init__(
        self, api: PodApi, selector: str, watch_timeout: int = WATCH_TIMEOUT_DEFAULT
    ) -> None:
        self.api = api
        self.selector = selector
        self.watch_timeout = watch_timeout
        self.channels: dict[str, PodChannel] = {}
        self.resource_version: str | None = None
        self.synced = asyncio.Event()
        """Set once the first list is in (a test signal, and a health hint)."""
        self.relists = 0
        self._delay = RETRY_DELAY_MIN
        """Back-off while the API server is unreachable."""
        self.reconnects = 0

    @contextlib.contextmanager
    def tracking(self, name: str) -> Iterator[PodChannel]:
        channel = self.channels.get(name) or self.channels.setdefault(name, PodChannel(name))
        channel.users += 1
        try:
            yield channel
        finally:
            channel.users -= 1
            if channel.users == 0:
                self.channels.pop(name, None)

    name = "pod-watch"

    async def run_once(self) -> None:
        """One round of the supervised `pod-watch` loop: list when there is no resource
        version to resume from, then follow the watch until the server ends it. An API
        server that is unreachable or overloaded is waited for here (with back-off); a
        resource version that is gone (410) means a new list. Anything else (a malformed
        event, access refused) makes the next round list afresh and is the supervisor's to
        log, report and retry."""
        try:
            if self.resource_version is None:
                await self._relist()
            async for event in self.api.watch(
                self.selector, self.resource_version, self.watch_timeout
            ):
                self._apply(event)
                self._delay = RETRY_DELAY_MIN
            self.reconnects += 1  # the server ended the stream: resume where it ended
        except KubeApiError as exc:
            if exc.status == 410:
                self.resource_version = None
                return
            if not exc.transient:
                self.resource_version = None
                raise
            log.warning(
                "pod watch failed; retrying",
                extra={"error": str(exc), "retry_in": round(self._delay, 2)},
            )
            self.reconnects += 1
            await asyncio.sleep(self._delay)
            self._delay = min(self._delay * 2, RETRY_DELAY_MAX)
        except Exception:
            self.resource_version = None
            raise

    async def _relist(self) -> None:
        listing = await self.api.list(self.selector)
        self.relists += 1
        present: set[str] = set()
        for pod in listing.get("items") or []:
            name = pod.get("metadata", {}).get("name")
            present.add(name)
            channel = self.channels.get(name)
            if channel is not None:
                channel.offer(pod)
        for name, channel in self.channels.items():
            if name not in present and channel.pod is not None and not channel.deleted:
                channel.suspect()
        self.resource_version = listing.get("metadata", {}).get("resourceVersion") or None
        self.synced.set()

    def _apply(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        obj: dict[str, Any] = event.get("object") or {}
        if kind == "ERROR":
            status = int(obj.get("code") or 500)
            raise KubeApiError(status, str(obj.get("message") or obj.get("reason") or obj))
        version = obj.get("metadata", {}).get("resourceVersion")
        if version:
            self.resource_version = version
        if kind == "BOOKMARK":
            return
        metadata = obj.get("metadata") or {}
        if (metadata.get("labels") or {}).get(MANAGED_BY_LABEL) != MANAGED_BY:
            return  # not ours (a server that ignores the selector)
        channel = self.channels.get(metadata.get("name", ""))
        if channel is None:
            return
        if kind == "DELETED":
            channel.gone(obj)
        elif kind in ("ADDED", "MODIFIED"):
            channel.offer(obj)
