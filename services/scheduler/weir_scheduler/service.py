"""The scheduler process: wires the store, the consumers, the relay and the API together."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime

import msgspec
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from weir.artifacts import ArtifactStore, artifact_store, delete_flow_artifacts
from weir.config import Settings
from weir.health import serve_health
from weir.jetstream import Publisher, close, connect, ensure_streams, pull_consumer, redact_url
from weir.process import service_loops
from weir_proto import subjects
from weir_proto.ids import is_dns_label, is_task_name
from weir_proto.messages import Heartbeat

from weir_scheduler.admission import SubmitAdmission, SubmitRateLimiter
from weir_scheduler.api import Api
from weir_scheduler.commands import FlowCommands
from weir_scheduler.cron import CronTicker
from weir_scheduler.data.postgres import PostgresData
from weir_scheduler.decider import Policy
from weir_scheduler.fanout_io import FanOutIO
from weir_scheduler.intake import ReportIntake, SubmitIntake
from weir_scheduler.observe import Observer
from weir_scheduler.planner import Limits
from weir_scheduler.provenance import (
    TAKEN,
    attempt_refusal,
    log_refused_heartbeat,
    takeover_after,
)
from weir_scheduler.pruner import Pruner
from weir_scheduler.queues import QueueDispatcher
from weir_scheduler.relay import OutboxRelay
from weir_scheduler.secrets_api import SecretsApi
from weir_scheduler.store import EventStore, Timing
from weir_scheduler.submissions import SubmissionHandler
from weir_scheduler.timers import TimerFirer

log = logging.getLogger("weir.scheduler")

SUBMIT_CONSUMER = "weir-scheduler-submit"
STATUS_CONSUMER = "weir-scheduler-status"
_heartbeat_decoder = msgspec.json.Decoder(Heartbeat)


def utcnow() -> datetime:
    return datetime.now(UTC)


class Scheduler:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.stop = asyncio.Event()
        self.ready = asyncio.Event()
        self.data: PostgresData | None = None
        self.nc: NATS | None = None
        self.loops = service_loops("scheduler", settings)
        """The background loops: submits, reports, relay, relay-fast-path, timers, cron,
        and queues and pruner when configured."""

    async def run(self) -> None:
        settings = self.settings
        artifacts_s3 = settings.artifacts_s3  # a bad WEIR_ARTIFACTS_URL stops us here
        self.data = data = await PostgresData.open(settings.database_url, self.stop)
        if data is None:
            return
        applied = await data.migrate()
        if applied:
            log.info("migrations applied", extra={"migrations": applied})
        self.nc = await connect(settings.nats_url, "weir-scheduler")
        health = await serve_health(
            self.nc, "scheduler", postgres=data.ping, loops=self.loops.states
        )
        js = self.nc.jetstream()
        if artifacts_s3 is None:  # before the streams: runners start once those exist
            await ArtifactStore(js, settings.artifacts_bucket).ensure_bucket()
        await ensure_streams(js, settings.commands_max_msgs, settings.commands_max_bytes)
        store = EventStore(
            data, timing=Timing(lease=settings.lease, deadline_grace=settings.deadline_grace)
        )
        store.on_commit.append(Observer(store).committed)

        async def forget_artifacts(flow_ids: list[str]) -> None:
            for flow_id in flow_ids:
                try:
                    await delete_flow_artifacts(
                        js, flow_id, settings.artifacts_bucket, artifacts_s3
                    )
                except Exception as exc:
                    log.warning(
                        "artifacts not deleted", extra={"flow_id": flow_id, "error": str(exc)}
                    )

        store.on_prune.append(forget_artifacts)
        limits = Limits(max_tasks=settings.max_tasks, max_submit_bytes=settings.max_submit_bytes)
        policy = Policy(
            limited_queues=frozenset(settings.queue_limits),
            dispatch_window=settings.flow_dispatch_window,
        )
        submissions = SubmissionHandler(store, limits, utcnow, policy)
        commands = FlowCommands(
            store,
            utcnow,
            policy,
            takeover_after=takeover_after(settings.dispatch_ack_wait, settings.heartbeat_interval),
        )
        relay = OutboxRelay(data, js, Publisher(self.nc))
        store.on_outbox.append(relay.publish_committed)
        fanout_io = FanOutIO(
            store, artifact_store(js, settings.artifacts_bucket, artifacts_s3), settings.max_tasks
        )
        timers = TimerFirer(store, commands, fanout=fanout_io)
        ticker = CronTicker(data, submissions, utcnow)
        admission = SubmitAdmission(
            SubmitRateLimiter(settings.submit_rate, settings.submit_burst),
            settings.max_pending_flows,
        )
        service = await Api(store, submissions, commands, admission).serve(
            self.nc, SecretsApi(js).handlers()
        )

        async def on_heartbeat(msg: Msg) -> None:
            await self._heartbeat(store, commands, msg)

        heartbeats = await self.nc.subscribe(
            f"{subjects.HEARTBEAT_PREFIX}.>", queue="weir-scheduler", cb=on_heartbeat
        )

        submits = await pull_consumer(
            self.nc,
            subjects.SUBMIT,
            SUBMIT_CONSUMER,
            subjects.STREAM_COMMANDS,
            _consumer_config(settings.scheduler_ack_wait),
        )
        reports = await pull_consumer(
            self.nc,
            f"{subjects.STATUS_PREFIX}.>",
            STATUS_CONSUMER,
            subjects.STREAM_STATUS,
            _consumer_config(settings.scheduler_ack_wait),
        )
        loops = self.loops
        loops.start(SubmitIntake(submits, submissions))
        loops.start(ReportIntake(reports, commands))
        loops.start(relay)
        loops.start(relay.fast_path)
        loops.start(timers)
        loops.start(ticker)
        if settings.queue_limits:
            loops.start(QueueDispatcher(store, commands, settings.queue_limits))
        if settings.prune_after is not None:
            loops.start(Pruner(store, settings.prune_after, settings.prune_interval))
        log.info("scheduler ready", extra={"nats": redact_url(settings.nats_url)})
        self.ready.set()
        health.set_ready()
        await loops.wait(self.stop)
        log.info("scheduler stopping")
        await loops.stop()
        await submits.stop()
        await reports.stop()
        await relay.close()
        with contextlib.suppress(Exception):
            await heartbeats.unsubscribe()
        with contextlib.suppress(Exception):
            await service.stop()
        await health.stop()
        await close(self.nc)
        await data.close()
        log.info("scheduler stopped")
        loops.raise_if_fatal()

    async def _heartbeat(self, store: EventStore, commands: FlowCommands, msg: Msg) -> None:
        try:
            beat = _heartbeat_decoder.decode(msg.data)
            proven, claims = await _proven_attempts(store, beat)
            await store.extend_leases(proven)
            await commands.take_over(claims)
        except msgspec.DecodeError as exc:
            log.warning("undecodable heartbeat dropped", extra={"error": str(exc)})
        except Exception as exc:
            log.warning("heartbeat not recorded", extra={"error": str(exc)})


async def _proven_attempts(
    store: EventStore, beat: Heartbeat
) -> tuple[list[tuple[str, str, int]], list[tuple[str, str, int, str]]]:
    """The attempts of `beat` whose token and runner match, and those whose token matches
    but another runner holds them (claims: a takeover when that runner went silent); the
    others are refused (a forged heartbeat must not keep a lost attempt alive)."""
    named = [a for a in beat.attempts if is_dns_label(a[0]) and is_task_name(a[1])]
    flows = await store.load_many([flow_id for flow_id, *_ in named])
    proven = []
    claims = []
    for flow_id, task_name, attempt, token in named:
        flow = flows[flow_id]
        task = flow.tasks.get(task_name) if flow.exists else None
        if task is None or task.attempt != attempt or not task.status.active:
            continue  # stale: the lease is gone already, extending it changes nothing
        refusal = attempt_refusal(task.token_digest, task.runner, token, beat.runner)
        if refusal == TAKEN:
            claims.append((flow_id, task_name, attempt, beat.runner))
        elif refusal is not None:
            log_refused_heartbeat(beat.runner, flow_id, task_name, attempt, refusal)
        else:
            proven.append((flow_id, task_name, attempt))
    return proven, claims


def _consumer_config(ack_wait: float) -> ConsumerConfig:
    return ConsumerConfig(
        ack_policy=AckPolicy.EXPLICIT,
        deliver_policy=DeliverPolicy.ALL,
        ack_wait=ack_wait,
        max_ack_pending=20_000,
        max_deliver=-1,
    )
