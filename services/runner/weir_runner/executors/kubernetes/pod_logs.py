"""PodLog: a pod's log, followed into its attempt's `stdout.log` while the task runs.

The worker's log shipper publishes `stdout.log` as it grows, so the log is followed live from
the moment the task container runs; a broken stream is opened again and what was already
received skipped. Once the pod has ended the stream gets `LOG_FOLLOW_GRACE` seconds to end,
else the rest is read in one go. Past a live limit only the end of the log is kept, written
with a marker once the attempt is over.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator
from pathlib import Path

from weir_runner.executors.kubernetes.api import (
    RETRY_DELAY_MAX,
    RETRY_DELAY_MIN,
    KubeApiError,
    PodApi,
)
from weir_runner.executors.kubernetes.verdict import Finished, Running, Verdict, judge
from weir_runner.executors.kubernetes.watcher import PodChannel

log = logging.getLogger("weir.runner.kubernetes")

LOG_FOLLOW_GRACE = 10.0
"""Seconds the log stream may take to end after the pod finished before the rest of the
log is read in one go instead."""
LOG_CAPTURE_TIMEOUT = 60.0
FAILURE_TAIL_BYTES = 2048
"""How much of the log's end a failure message carries (as the local executor does)."""


class LogCapture:
    """stdout.log of a pod's attempt: the container's log as received, the first
    `live_limit` bytes written at once (and so shipped live), after that only its last
    `keep_limit` bytes kept, written with a marker at the end. A runner that adopts the
    attempt continues the file: the bytes already there are not written twice."""

    def __init__(self, path: Path, live_limit: int, keep_limit: int) -> None:
        self.file = open(path, "ab")  # noqa: SIM115 - closed by close()
        self.live_limit = live_limit
        self.keep_limit = keep_limit
        self.received = self.file.tell()
        """Bytes of the container's log received so far (by any runner of this attempt)."""
        self.tail = bytearray()
        self.dropped = 0
        self.closed = False

    async def read(self, chunks: AsyncIterator[bytes]) -> None:
        """Take a stream of the log from its start, keeping only what is new."""
        position = 0
        async for chunk in chunks:
            new = chunk[max(0, self.received - position) :]
            position += len(chunk)
            if new:
                self._keep(new)

    def _keep(self, data: bytes) -> None:
        self.received += len(data)
        room = max(0, self.live_limit - self.file.tell())
        if room and not self.tail:
            self.file.write(data[:room])
            self.file.flush()
            data = data[room:]
        if data:
            self.tail += data
            if len(self.tail) > self.keep_limit:
                self.dropped += len(self.tail) - self.keep_limit
                del self.tail[: len(self.tail) - self.keep_limit]

    def close(self, problem: str) -> bytes:
        """Write the kept end and a note of what is missing; return the log's last bytes."""
        if self.closed:
            return b""
        self.closed = True
        if self.dropped:
            self.file.write(f"\n[weir: log truncated, {self.dropped} bytes dropped]\n".encode())
        self.file.write(self.tail)
        if problem:
            self.file.write(f"\n[weir: log incomplete: {problem}]\n".encode())
        self.file.close()
        with open(self.file.name, "rb") as written:
            written.seek(max(0, os.path.getsize(self.file.name) - FAILURE_TAIL_BYTES - 1))
            return written.read()


class PodLog:
    """The log of the pod `channel` follows, captured into `capture` from `start` to `end`."""

    def __init__(self, api: PodApi, channel: PodChannel, task: str, capture: LogCapture) -> None:
        self.api = api
        self.channel = channel
        self.name = channel.name
        self.task = task
        self.capture = capture
        self._capturing: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._capturing = asyncio.create_task(self._follow(), name=f"logs-{self.name}")

    async def abandon(self) -> None:
        """Stop capturing: the attempt ended in the runner, not in its pod."""
        await self._stop()
        self.capture.close("")

    async def end(self, ran: bool) -> bytes:
        """The log once the attempt is over: the live capture's end, else the rest read in
        one go (skipping what was received); returns the end of the log."""
        problem = ""
        if ran and self._capturing is not None:
            done, _ = await asyncio.wait({self._capturing}, timeout=LOG_FOLLOW_GRACE)
            if not done:
                await self._stop()
                problem = await self._read_rest()
        else:
            await self._stop()
        if problem:
            log.warning("pod log not captured", extra={"pod": self.name, "error": problem})
        return self.capture.close(problem)

    async def _stop(self) -> None:
        if self._capturing is not None:
            self._capturing.cancel()
            await asyncio.gather(self._capturing, return_exceptions=True)

    async def _follow(self) -> None:
        """Follow the task container's log into stdout.log from the moment it runs (the
        worker's log shipper publishes it live). A broken stream is opened again and what
        was already received skipped; it ends when the container has."""
        channel, task = self.channel, self.task
        seen = -1
        while True:
            seen = channel.version
            if channel.pod is not None and _container_ran(judge(channel.pod, task)):
                break
            await channel.wait_newer(seen, None)
        delay = RETRY_DELAY_MIN
        while True:
            try:
                await self.capture.read(self.api.logs(self.name, follow=True))
            except KubeApiError as exc:
                if exc.status == 404 or (not exc.transient and exc.status != 400):
                    return  # the pod is gone; what was received is kept
                log.debug(
                    "pod log stream broke; again", extra={"pod": self.name, "error": str(exc)}
                )
            else:
                pod = channel.pod
                if channel.deleted or (pod is not None and isinstance(judge(pod, task), Finished)):
                    return
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_DELAY_MAX)

    async def _read_rest(self) -> str:
        """Read the whole log again and keep what the live capture missed; why not, if not."""
        delay = RETRY_DELAY_MIN
        try:
            async with asyncio.timeout(LOG_CAPTURE_TIMEOUT):
                while True:
                    try:
                        await self.capture.read(self.api.logs(self.name))
                        return ""
                    except KubeApiError as exc:
                        if not exc.transient:
                            return str(exc)
                        await asyncio.sleep(delay)
                        delay = min(delay * 2, RETRY_DELAY_MAX)
        except TimeoutError:
            return f"log capture took longer than {LOG_CAPTURE_TIMEOUT:g}s"


def _container_ran(verdict: Verdict) -> bool:
    return isinstance(verdict, Running) or (isinstance(verdict, Finished) and verdict.ran)


def with_tail(head: str, log_bytes: bytes) -> str:
    """A failure message: `head`, then the end of the task's output."""
    tail = log_bytes[-FAILURE_TAIL_BYTES:].decode(errors="replace").strip()
    if not tail:
        return head
    marker = "…" if len(log_bytes) > FAILURE_TAIL_BYTES else ""
    return f"{head}; output ends: {marker}{tail}"
