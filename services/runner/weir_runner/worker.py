"""The runner process: takes dispatched attempts from JetStream and runs them.

A durable pull consumer per queue, shared by every runner replica. The dispatch message is
acknowledged only after the attempt's final status is durably in JetStream; while the
attempt runs, the runner tells JetStream it is still working on it, so an attempt is handed
to another runner only when this one has gone silent (crashed or cut off).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime
from pathlib import Path

import msgspec
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from weir.config import Settings
from weir.jetstream import close, connect, ensure_streams, fetch_batch
from weir_proto import subjects
from weir_proto.messages import AttemptFinished, AttemptStarted, Dispatch, ErrorType

from weir_runner.executors.base import AttemptResult, Executor
from weir_runner.executors.local import LocalExecutor
from weir_runner.executors.noop import NoopExecutor

log = logging.getLogger("weir.runner")

FETCH_WAIT = 5.0
PUBLISH_RETRY_DELAY = 0.5
PUBLISH_TIMEOUT = 5.0

_encoder = msgspec.json.Encoder()
_dispatch_decoder = msgspec.json.Decoder(Dispatch)


def consumer_name(queue: str) -> str:
    return f"weir-runner-{queue}"


def make_executor(settings: Settings) -> Executor:
    if settings.executor == "local":
        return LocalExecutor(Path(settings.runner_dir))
    if settings.executor == "noop":
        return NoopExecutor()
    raise ValueError(f"unknown executor {settings.executor!r}")


class Runner:
    def __init__(self, settings: Settings, executor: Executor | None = None) -> None:
        self.settings = settings
        self.executor = executor or make_executor(settings)
        self.stop = asyncio.Event()
        self.ready = asyncio.Event()
        self.slots = asyncio.Semaphore(settings.runner_concurrency)
        self.running: set[asyncio.Task[None]] = set()
        self.nc: NATS | None = None

    async def run(self) -> None:
        settings = self.settings
        self.nc = await connect(settings.nats_url, f"weir-runner-{settings.runner_name}")
        js = self.nc.jetstream()
        await ensure_streams(js)
        loops = []
        for queue in settings.runner_queues:
            sub = await js.pull_subscribe(
                subjects.dispatch(queue),
                durable=consumer_name(queue),
                stream=subjects.STREAM_DISPATCH,
                config=ConsumerConfig(
                    ack_policy=AckPolicy.EXPLICIT,
                    deliver_policy=DeliverPolicy.ALL,
                    ack_wait=settings.dispatch_ack_wait,
                    max_deliver=-1,
                    max_ack_pending=-1,
                ),
            )
            loops.append(asyncio.create_task(self._take(sub, js), name=f"queue-{queue}"))
        log.info(
            "runner ready",
            extra={
                "executor": self.executor.name,
                "queues": list(settings.runner_queues),
                "concurrency": settings.runner_concurrency,
            },
        )
        self.ready.set()
        await self.stop.wait()
        log.info("runner stopping", extra={"running": len(self.running)})
        for loop in loops:
            loop.cancel()
        await asyncio.gather(*loops, return_exceptions=True)
        if self.running:
            _, late = await asyncio.wait(self.running, timeout=settings.shutdown_grace)
            for task in late:  # stopped unfinished: JetStream hands them out again
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        await close(self.nc)
        log.info("runner stopped")

    async def _take(self, sub: JetStreamContext.PullSubscription, js: JetStreamContext) -> None:
        while not self.stop.is_set():
            await self.slots.acquire()
            free = 1
            while free < self.settings.runner_concurrency and not self.slots.locked():
                await self.slots.acquire()
                free += 1
            try:
                msgs = await fetch_batch(sub, free, FETCH_WAIT)
            except Exception as exc:
                log.warning("fetch failed", extra={"error": str(exc)})
                msgs = []
                await asyncio.sleep(PUBLISH_RETRY_DELAY)
            for _ in range(free - len(msgs)):
                self.slots.release()
            for msg in msgs:
                task = asyncio.create_task(self._attempt(msg, js))
                self.running.add(task)
                task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self.running.discard(task)
        self.slots.release()
        if not task.cancelled() and task.exception() is not None:
            log.error("attempt handler crashed", exc_info=task.exception())

    async def _attempt(self, msg: Msg, js: JetStreamContext) -> None:
        try:
            dispatch = _dispatch_decoder.decode(msg.data)
        except msgspec.DecodeError as exc:
            log.warning("undecodable dispatch dropped", extra={"error": str(exc)})
            await msg.term()
            return
        context = {
            "flow_id": dispatch.flow_id,
            "task": dispatch.task.name,
            "attempt": dispatch.attempt,
        }
        heartbeat = asyncio.create_task(self._keep_alive(msg))
        runner = self.settings.runner_name

        async def started() -> None:
            log.info("attempt started", extra=context)
            report = AttemptStarted(
                flow_id=dispatch.flow_id,
                task=dispatch.task.name,
                attempt=dispatch.attempt,
                runner=runner,
                at=datetime.now(UTC),
            )
            await _publish(js, dispatch.flow_id, report, f"{dispatch.attempt_id}:started")

        try:
            result = await self.executor.run(dispatch, started)
        except asyncio.CancelledError:
            heartbeat.cancel()
            raise
        except Exception as exc:
            log.exception("executor failed", extra=context)
            result = AttemptResult(None, ErrorType.EXECUTOR, f"executor error: {exc}")
        finally:
            heartbeat.cancel()
        log.info(
            "attempt finished",
            extra={**context, "exit_code": result.exit_code, "error_type": result.error_type},
        )
        report = AttemptFinished(
            flow_id=dispatch.flow_id,
            task=dispatch.task.name,
            attempt=dispatch.attempt,
            runner=runner,
            at=datetime.now(UTC),
            exit_code=result.exit_code,
            error_type=result.error_type,
            message=result.message,
        )
        await _publish(js, dispatch.flow_id, report, f"{dispatch.attempt_id}:finished")
        await msg.ack()

    async def _keep_alive(self, msg: Msg) -> None:
        interval = max(self.settings.dispatch_ack_wait / 3, 0.2)
        while True:
            await asyncio.sleep(interval)
            with contextlib.suppress(Exception):
                await msg.in_progress()


async def _publish(
    js: JetStreamContext, flow_id: str, report: AttemptStarted | AttemptFinished, msg_id: str
) -> None:
    """Publish a status report until JetStream has it (NATS may be restarting)."""
    payload = _encoder.encode(report)
    while True:
        try:
            await js.publish(
                subjects.status(flow_id),
                payload,
                timeout=PUBLISH_TIMEOUT,
                headers={"Nats-Msg-Id": msg_id},
            )
            return
        except Exception as exc:
            log.warning("status publish failed; retrying", extra={"error": str(exc)})
            await asyncio.sleep(PUBLISH_RETRY_DELAY)
