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
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import msgspec
import nats.errors
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from weir import telemetry
from weir.config import Settings
from weir.health import serve_health
from weir.jetstream import Publisher, Puller, close, connect, pull_consumer, wait_for_streams
from weir.process import service_loops
from weir.supervisor import Duty
from weir_proto import subjects
from weir_proto.api import AttemptAnswer, AttemptRequest, RawReply
from weir_proto.ids import attempt_id
from weir_proto.messages import (
    SNOOZE_EXIT_CODE,
    SNOOZE_SECONDS_DEFAULT,
    AttemptFinished,
    AttemptStarted,
    Dispatch,
    ErrorType,
    Heartbeat,
)

from weir_runner import janitor
from weir_runner.attempt_dir import AttemptDir
from weir_runner.executors.base import AttemptResult, Executor, OnStarted
from weir_runner.executors.local import LocalExecutor
from weir_runner.executors.noop import NoopExecutor
from weir_runner.logship import LogShipper
from weir_runner.started import DeferredStart

log = logging.getLogger("weir.runner")

FETCH_WAIT = 5.0
FETCH_WAIT_SHARED = 0.25
"""A runner of several queues waits this long per fetch instead: a round holds the free
slots while it waits, so another queue's dispatch waits at most this long for them."""
PUBLISH_RETRY_DELAY = 0.5
PUBLISH_TIMEOUT = 5.0
ASK_TIMEOUT = 2.0
CANCELLED_MEMORY_SECONDS = 600.0

_encoder = msgspec.json.Encoder()
_dispatch_decoder = msgspec.json.Decoder(Dispatch)


def consumer_name(queue: str) -> str:
    return f"weir-runner-{queue}"


def make_executor(settings: Settings) -> Executor:
    if settings.executor == "local":
        return LocalExecutor(Path(settings.runner_dir), settings=settings)
    if settings.executor == "noop":
        return NoopExecutor()
    if settings.executor == "kubernetes":
        # Imported here: the other executors never load kubernetes_asyncio.
        from weir_runner.executors.kubernetes import KubernetesConfig, KubernetesExecutor

        return KubernetesExecutor(KubernetesConfig.from_settings(settings))
    raise ValueError(f"unknown executor {settings.executor!r}")


class Runner:
    def __init__(self, settings: Settings, executor: Executor | None = None) -> None:
        self.settings = settings
        self.executor = executor or make_executor(settings)
        self.stop = asyncio.Event()
        self.ready = asyncio.Event()
        self.slots = asyncio.Semaphore(settings.runner_concurrency)
        self.running: set[asyncio.Task[None]] = set()
        self.attempts: dict[tuple[str, str, int], asyncio.Task[None]] = {}
        """Attempts being executed, by (flow_id, task, attempt): their handler tasks."""
        self.dispatches: dict[tuple[str, str, int], Dispatch] = {}
        """The dispatch of each attempt in `attempts`: its token, echoed in heartbeats, and
        its seq and time (a cancel ends only the attempts dispatched before it)."""
        self.cancelled: dict[tuple[str, str, int], str] = {}
        self.recently_cancelled: dict[str, _SeenCancel] = {}
        """Flows whose cancel this runner saw (when, and whether it spares the on_exit
        task), so an attempt it took just before the purge does not start."""
        self.on_exit_attempts: set[tuple[str, str, int]] = set()
        """Attempts in `attempts` of on_exit tasks, which a sparing cancel spares."""
        self.nc: NATS | None = None
        self.publisher: Publisher | None = None
        """Publishes the attempts' reports (set once connected)."""
        self.loops = service_loops("runner", settings)
        """The background loops: queue-<name> for each queue, heartbeats, attempt-janitor."""

    async def run(self) -> None:
        settings = self.settings
        self.nc = await connect(settings.nats_url, f"weir-runner-{settings.runner_name}")
        self.publisher = Publisher(self.nc)
        health = await serve_health(
            self.nc, "runner", settings.runner_name, loops=self.loops.states
        )
        js = self.nc.jetstream()
        if not await wait_for_streams(js, self.stop):  # the scheduler creates them
            await health.stop()
            await close(self.nc)
            log.info("runner stopped")
            return
        self.executor.supervise_with(self.loops)  # its watches and syncs: our loops
        self.executor.ask_with(self.attempt_wanted)  # which of its pods are orphans
        self.executor.attach(js)  # artifacts and secrets over the worker's connection
        loops = self.loops
        pullers: list[Puller] = []
        for queue in settings.runner_queues:
            puller = await pull_consumer(
                self.nc,
                subjects.queue_dispatches(queue),
                consumer_name(queue),
                subjects.STREAM_DISPATCH,
                ConsumerConfig(
                    ack_policy=AckPolicy.EXPLICIT,
                    deliver_policy=DeliverPolicy.ALL,
                    ack_wait=settings.dispatch_ack_wait,
                    max_deliver=-1,
                    max_ack_pending=-1,
                ),
            )
            pullers.append(puller)
            loops.start(Duty(f"queue-{queue}", partial(self._take_round, puller, js)))
        loops.start(Duty("heartbeats", self._heartbeat_round))
        attempts_root = Path(settings.runner_dir)
        sweep = partial(janitor.sweep_round, attempts_root, settings.runner_keep, self._following)
        loops.start(Duty("attempt-janitor", sweep))

        async def on_cancel(msg: Msg) -> None:
            try:
                event = msgspec.json.decode(msg.data, type=_CancelRequested)
            except msgspec.DecodeError:
                return
            spares = event.fail_fast or event.spares_on_exit
            self._cancel_flow(event.flow_id, event.reason, spares, event.at, event.seq)

        cancels = await self.nc.subscribe(subjects.CANCEL_REQUESTS, cb=on_cancel)
        log.info(
            "runner ready",
            extra={
                "executor": self.executor.name,
                "queues": list(settings.runner_queues),
                "concurrency": settings.runner_concurrency,
            },
        )
        self.ready.set()
        health.set_ready()
        await loops.wait(self.stop)
        log.info("runner stopping", extra={"running": len(self.running)})
        await loops.stop(*(f"queue-{queue}" for queue in settings.runner_queues))
        for puller in pullers:  # a request still waiting would take a dispatch for nobody
            await puller.stop()
        with contextlib.suppress(Exception):
            await cancels.unsubscribe()
        if self.running:
            _, late = await asyncio.wait(self.running, timeout=settings.shutdown_grace)
            for task in late:  # stopped unfinished: JetStream hands them out again
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        try:  # the executor's own background work (watches, syncs)
            await self.executor.close()
        except Exception:
            log.exception("executor did not close cleanly")
        await loops.stop()  # heartbeats went on while attempts finished
        await health.stop()
        await close(self.nc)
        log.info("runner stopped")
        loops.raise_if_fatal()

    async def _take_round(self, puller: Puller, js: JetStreamContext) -> None:
        """One round of a `queue-<name>` loop: wait for a free slot, take as many dispatches
        as there are free slots, start them. While NATS reconnects the round waits and tries
        again (attempts under way go on); any other error is the supervisor's."""
        await self.slots.acquire()
        free = 1
        msgs: list[Msg] = []
        try:
            while free < self.settings.runner_concurrency and not self.slots.locked():
                await self.slots.acquire()
                free += 1
            try:
                shared = len(self.settings.runner_queues) > 1
                msgs = await puller.take(free, FETCH_WAIT_SHARED if shared else FETCH_WAIT)
            except (nats.errors.Error, OSError) as exc:
                log.warning("fetch failed", extra={"error": str(exc)})
                await asyncio.sleep(PUBLISH_RETRY_DELAY)
        finally:
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
        key = (dispatch.flow_id, dispatch.task.name, dispatch.attempt)
        context = {"flow_id": key[0], "task": key[1], "attempt": key[2]}
        with telemetry.receiving(
            msg.subject,
            msg.headers,
            message_id=dispatch.attempt_id,
            fallback=telemetry.attempt_context(*key),
            attributes={
                telemetry.ATTR_FLOW_ID: key[0],
                telemetry.ATTR_TASK: key[1],
                telemetry.ATTR_ATTEMPT: key[2],
                telemetry.ATTR_RUNNER: self.settings.runner_name,
            },
        ):
            await self._attempt_in_span(msg, js, dispatch, key, context)

    async def _attempt_in_span(
        self,
        msg: Msg,
        js: JetStreamContext,
        dispatch: Dispatch,
        key: tuple[str, str, int],
        context: dict[str, object],
    ) -> None:
        keep_alive = _KeepAlive(msg, max(self.settings.dispatch_ack_wait / 3, 0.2))
        try:
            run, why = True, ""
            on_exit = subjects.is_on_exit_dispatch(msg.subject)
            if self._cancelled(dispatch, on_exit):
                run, why = False, "flow cancelled"
            elif msg.metadata.num_delivered > 1:
                # Handed out before: maybe superseded by a retry meanwhile. A first delivery
                # needs no question (a cancel purges the flow's dispatches from the stream).
                run, why = await self._should_run(dispatch)
            if not run:
                log.info("attempt not run", extra={**context, "reason": why})
                if self._cancelled(dispatch, on_exit) or why.startswith("flow is"):
                    await self._report_dropped(dispatch, why)
                await msg.ack()
                return
            if on_exit:
                self.on_exit_attempts.add(key)
            result, started_at = await self._execute(dispatch, key, js)
        except asyncio.CancelledError:
            # Stopping: hand the attempt back so another runner takes it at once.
            with contextlib.suppress(Exception):
                await msg.nak()
            raise
        finally:
            keep_alive.cancel()
            self.attempts.pop(key, None)
            self.dispatches.pop(key, None)
            self.on_exit_attempts.discard(key)
        log.info(
            "attempt finished",
            extra={**context, "exit_code": result.exit_code, "error_type": result.error_type},
        )
        snooze = None
        if result.exit_code == SNOOZE_EXIT_CODE and result.error_type is ErrorType.EXIT_CODE:
            snooze = result.snooze_seconds or SNOOZE_SECONDS_DEFAULT
        await self._report_finished(
            dispatch,
            exit_code=result.exit_code,
            error_type=None if snooze is not None else result.error_type,
            message=result.message,
            snooze_seconds=snooze,
            outputs=list(result.outputs),
            started_at=started_at,
        )
        await msg.ack()

    async def _report_dropped(self, dispatch: Dispatch, why: str) -> None:
        """Tell the scheduler an attempt of a cancelled flow was dropped before it started.
        It ended that attempt when it recorded the cancel, so this report is normally stale;
        it is what ends the attempt if the scheduler had not."""
        await self._report_finished(
            dispatch,
            error_type=ErrorType.CANCELLED,
            message=f'task "{dispatch.task.name}" not started: {why}',
        )

    async def _report_finished(self, dispatch: Dispatch, **outcome: Any) -> None:
        """Publish the attempt's `finished` report (its outcome in `outcome`), with the
        attempt's token and this runner's name, once per attempt (the message id)."""
        report = AttemptFinished(
            flow_id=dispatch.flow_id,
            task=dispatch.task.name,
            attempt=dispatch.attempt,
            runner=self.settings.runner_name,
            token=dispatch.token,
            at=datetime.now(UTC),
            **outcome,
        )
        await self._publish(report, f"{dispatch.attempt_id}:finished")

    async def _execute(
        self, dispatch: Dispatch, key: tuple[str, str, int], js: JetStreamContext
    ) -> tuple[AttemptResult, datetime | None]:
        """Run the attempt under its timeout; a cancel of its flow kills it. Returns its
        result and when it started (None: it never did), for the `finished` report."""
        name = dispatch.task.name

        async def report_started(at: datetime) -> None:
            report = AttemptStarted(
                flow_id=dispatch.flow_id,
                task=name,
                attempt=dispatch.attempt,
                runner=self.settings.runner_name,
                token=dispatch.token,
                at=at,
            )
            await self._publish(report, f"{dispatch.attempt_id}:started")

        start = DeferredStart(report_started, self.settings.started_delay)

        async def started() -> None:
            log.info("attempt started", extra={"flow_id": key[0], "task": name, "attempt": key[2]})
            await start.started()

        try:
            if not self.executor.writes_logs:
                return await self._run_attempt(dispatch, key, started), await start.settle()
            shipper = LogShipper(
                js,
                AttemptDir.of(Path(self.settings.runner_dir), dispatch.attempt_id),
                dispatch.flow_id,
                name,
                dispatch.attempt,
            )
            shipper.start()
            try:
                result = await self._run_attempt(dispatch, key, started)
            finally:
                await shipper.finish()
            return result, await start.settle()
        finally:
            await start.settle()  # handed back or failed: no `started` report after this

    async def _run_attempt(
        self, dispatch: Dispatch, key: tuple[str, str, int], started: OnStarted
    ) -> AttemptResult:
        name = dispatch.task.name
        running = asyncio.create_task(self.executor.run(dispatch, started))
        handler = asyncio.current_task()
        assert handler is not None
        self.attempts[key] = handler
        self.dispatches[key] = dispatch
        timeout = dispatch.task.timeout
        try:
            async with asyncio.timeout(timeout):
                return await asyncio.shield(running)
        except TimeoutError:
            running.cancel()
            await asyncio.gather(running, return_exceptions=True)
            return AttemptResult(
                None, ErrorType.TIMEOUT, f'task "{name}" exceeded its timeout of {timeout:g}s'
            )
        except asyncio.CancelledError:
            reason = self.cancelled.pop(key, None)
            running.cancel()
            await asyncio.gather(running, return_exceptions=True)
            if reason is None or not running.cancelled():
                raise
            # The flow was cancelled: this attempt ends here (the handler itself goes on).
            handler.uncancel()
            return AttemptResult(None, ErrorType.CANCELLED, f'task "{name}" killed: {reason}')
        except Exception as exc:
            log.exception("executor failed", extra={"flow_id": key[0], "task": name})
            return AttemptResult(None, ErrorType.EXECUTOR, f"executor error: {exc}")

    async def _publish(self, report: AttemptStarted | AttemptFinished, msg_id: str) -> None:
        """Publish a status report until JetStream has it (NATS may be restarting)."""
        assert self.publisher is not None
        payload = _encoder.encode(report)
        subject = subjects.status(report.flow_id)
        parent = telemetry.attempt_context(report.flow_id, report.task, report.attempt)
        while True:
            try:
                with telemetry.publishing(
                    subject, message_id=msg_id, parent=parent, size=len(payload)
                ) as headers:
                    await self.publisher.publish_one(subject, payload, headers, PUBLISH_TIMEOUT)
                return
            except Exception as exc:
                log.warning("status publish failed; retrying", extra={"error": str(exc)})
                await asyncio.sleep(PUBLISH_RETRY_DELAY)

    def _following(self) -> set[str]:
        """The attempt directories of the attempts this runner is handling now."""
        return {attempt_id(*key) for key in self.attempts}

    async def _should_run(self, dispatch: Dispatch) -> tuple[bool, str]:
        """Ask the scheduler whether the attempt is still wanted (it may have been cancelled
        or superseded while the dispatch waited); wait while no scheduler answers."""
        delay = 0.1
        while True:
            answer = await self.attempt_wanted(
                dispatch.flow_id, dispatch.task.name, dispatch.attempt
            )
            if answer is not None:
                return answer
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    async def attempt_wanted(
        self, flow_id: str, task: str, attempt: int
    ) -> tuple[bool, str] | None:
        """The scheduler's answer to "should this attempt (still) run, and if not why", or
        None when no scheduler answered."""
        request = _encoder.encode(AttemptRequest(flow_id=flow_id, task=task, attempt=attempt))
        assert self.nc is not None
        try:
            msg = await self.nc.request(subjects.API_ATTEMPT, request, timeout=ASK_TIMEOUT)
            reply = _attempt_reply_decoder.decode(msg.data)
            if reply.error is None:
                answer = msgspec.json.decode(reply.result, type=AttemptAnswer)
                return answer.run, answer.reason
            log.warning("attempt check refused", extra={"error": reply.error.message})
        except Exception as exc:
            log.warning("scheduler not answering about an attempt", extra={"error": str(exc)})
        return None

    def _cancelled(self, dispatch: Dispatch, on_exit: bool) -> bool:
        """Whether this runner saw a cancel of the flow that ends this attempt: any made
        after the dispatch (a `weir retry` after the cancel dispatches anew), but one that
        spares the on_exit task (fail_fast's, a user's first) for an attempt of it."""
        seen = self.recently_cancelled.get(dispatch.flow_id)
        if seen is None or (seen.spares_on_exit and on_exit):
            return False
        return seen.ends(dispatch.seq, dispatch.dispatched_at)

    def _cancel_flow(
        self,
        flow_id: str,
        reason: str,
        spares_on_exit: bool = False,
        at: datetime | None = None,
        seq: int = 0,
    ) -> None:
        now = time.monotonic()
        earlier = self.recently_cancelled.get(flow_id)
        if earlier is not None and seq and earlier.seq > seq:
            return  # an older cancel published again: the later one stands
        # a cancel after one that spared nothing spares nothing either
        spares = spares_on_exit and (earlier is None or earlier.spares_on_exit)
        cancel = _SeenCancel(now, at, spares, seq)
        self.recently_cancelled[flow_id] = cancel
        for old, seen in list(self.recently_cancelled.items()):
            if now - seen.seen > CANCELLED_MEMORY_SECONDS:
                del self.recently_cancelled[old]
        for key, handler in list(self.attempts.items()):
            if key[0] != flow_id or key in self.cancelled:
                continue
            if spares and key in self.on_exit_attempts:
                continue  # a sparing cancel: the on_exit task runs on
            dispatch = self.dispatches.get(key)
            if dispatch is not None and not cancel.ends(dispatch.seq, dispatch.dispatched_at):
                continue  # dispatched after this cancel (a retry): it runs on
            log.info(
                "killing attempt", extra={"flow_id": flow_id, "task": key[1], "reason": reason}
            )
            self.cancelled[key] = reason
            handler.cancel()

    async def _heartbeat_round(self) -> None:
        """One round of the `heartbeats` loop: wait `heartbeat_interval`, then tell the
        schedulers which attempts this runner is running (a beat lost while NATS reconnects
        is made up by the next one)."""
        assert self.nc is not None
        subject = subjects.heartbeat(subjects.token(self.settings.runner_name, "runner"))
        await asyncio.sleep(self.settings.heartbeat_interval)
        if not self.attempts:
            return
        attempts = [
            (*key, dispatch.token if (dispatch := self.dispatches.get(key)) else "")
            for key in self.attempts
        ]
        beat = Heartbeat(runner=self.settings.runner_name, attempts=attempts)
        with contextlib.suppress(nats.errors.Error):
            await self.nc.publish(subject, _encoder.encode(beat))


class _KeepAlive:
    """Tells JetStream every `interval` seconds that a dispatch is still being worked on, so
    it is not handed to another runner. Driven by a timer, not a task of its own: most
    attempts end before the first tick, and a timer costs less to set and cancel."""

    def __init__(self, msg: Msg, interval: float) -> None:
        self._msg = msg
        self._interval = interval
        self._sending: asyncio.Task[None] | None = None
        self._timer = asyncio.get_running_loop().call_later(interval, self._tick)

    def _tick(self) -> None:
        self._sending = asyncio.create_task(self._send())

    async def _send(self) -> None:
        with contextlib.suppress(Exception):
            await self._msg.in_progress()
        self._timer = asyncio.get_running_loop().call_later(self._interval, self._tick)

    def cancel(self) -> None:
        self._timer.cancel()
        if self._sending is not None:
            self._sending.cancel()


@dataclass(frozen=True, slots=True)
class _SeenCancel:
    """A flow's cancel as a runner remembers it: when it saw it (monotonic), when the
    scheduler decided it (the event's `at`, comparable with a dispatch's `dispatched_at`),
    and whether it spares the on_exit task (fail_fast's, a user's first)."""

    seen: float
    at: datetime | None
    spares_on_exit: bool
    seq: int = 0

    def ends(self, dispatch_seq: int, dispatched_at: datetime) -> bool:
        """Whether this cancel ends an attempt dispatched at `dispatch_seq` (its event's seq
        in the flow's log; 0 when unknown) and `dispatched_at`: one made before it. The log's
        order decides when both seqs are known; else the scheduler's clock."""
        if self.seq and dispatch_seq:
            return dispatch_seq < self.seq
        return self.at is None or dispatched_at <= self.at


class _CancelRequested(msgspec.Struct):
    flow_id: str
    at: datetime | None = None
    seq: int = 0
    reason: str = "cancelled"
    fail_fast: bool = False
    spares_on_exit: bool = False


_attempt_reply_decoder = msgspec.json.Decoder(RawReply)
