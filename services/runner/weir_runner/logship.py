"""LogShipper: streams an attempt's stdout and stderr to NATS while it runs.

Executors write `<runner_dir>/<attempt_id>/stdout.log` and `stderr.log`; the shipper tails
them and publishes chunks to `weir.logs.<flow>.<task>.<attempt>` (stream WEIR_LOGS), so
`weir logs` works live and after the pod or process is gone. Each attempt ships at most
`limit` bytes; past that a truncation notice is sent and the rest stays on the runner's disk.
The last message carries `Weir-Log-End: 1`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from nats.js import JetStreamContext
from weir_proto import subjects

from weir_runner.attempt_dir import AttemptDir

log = logging.getLogger("weir.runner.logs")

LOG_LIMIT_DEFAULT = 1024 * 1024
CHUNK_BYTES = 32 * 1024
POLL_SECONDS = 0.2
STREAMS = ("stdout", "stderr")
END_HEADER = "Weir-Log-End"
STREAM_HEADER = "Weir-Log-Stream"


class LogShipper:
    def __init__(
        self,
        js: JetStreamContext,
        home: AttemptDir,
        flow_id: str,
        task: str,
        attempt: int,
        limit: int = LOG_LIMIT_DEFAULT,
    ) -> None:
        self.js = js
        self.home = home
        self.subject = subjects.logs(flow_id, task, attempt)
        self.limit = limit
        self.offsets = dict.fromkeys(STREAMS, 0)
        self.shipped = 0
        self.truncated = False
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()

    def start(self) -> None:
        self._task = asyncio.create_task(self._follow())

    async def finish(self) -> None:
        """Ship what is left and the end marker (call once the attempt has ended).

        The follower is asked to stop after its current round, not cancelled: on Python 3.11
        a cancel that lands just as a publish's ack arrives is dropped inside nats-py's
        request (`asyncio.wait_for` returns the ack instead), and a follower that never saw
        its cancel polled on forever, with this call (and the attempt's report) waiting."""
        if self._task is not None:
            self._stop.set()
            try:
                await asyncio.shield(self._task)
            except asyncio.CancelledError:
                self._task.cancel()  # the runner is stopping: the follower ends at its next round
                raise
        try:
            await self._ship_new()
            await self.js.publish(self.subject, b"", headers={END_HEADER: "1"}, timeout=5)
        except Exception as exc:  # logs are best effort; the attempt's result is not
            log.warning("logs not shipped", extra={"subject": self.subject, "error": str(exc)})

    async def _follow(self) -> None:
        while not self._stop.is_set():
            try:
                await self._ship_new()
            except Exception as exc:
                log.debug("log shipping paused", extra={"error": str(exc)})
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(POLL_SECONDS):
                    await self._stop.wait()

    async def _ship_new(self) -> None:
        for stream in STREAMS:
            path = self.home.log(stream)
            if not path.exists():
                continue
            with open(path, "rb") as handle:
                handle.seek(self.offsets[stream])
                while not self.truncated:
                    chunk = handle.read(min(CHUNK_BYTES, self.limit - self.shipped))
                    if not chunk:
                        break
                    await self.js.publish(
                        self.subject, chunk, headers={STREAM_HEADER: stream}, timeout=5
                    )
                    self.offsets[stream] += len(chunk)
                    self.shipped += len(chunk)
                    if self.shipped >= self.limit:
                        self.truncated = True
                        notice = f"\n[weir: log truncated after {self.limit:,} bytes]\n"
                        await self.js.publish(
                            self.subject, notice.encode(), headers={STREAM_HEADER: "stderr"}
                        )
