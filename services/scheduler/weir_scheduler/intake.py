"""The `submits` and `reports` services: each takes batches from its JetStream pull
consumer and records them (submitted flows through `SubmissionHandler`, runners' status
reports as commands for `FlowCommands`), acknowledging each message once it is recorded.

A batch is recorded at once; when that fails, its messages one at a time, so one bad message
does not hold up the others. One that keeps failing on its own (`POISON_DELIVERIES` times) is
rejected (a submit: recorded as a rejection, so it is still visible) or dropped (a report)."""

from __future__ import annotations

import abc
import contextlib
import functools
import logging
from typing import ClassVar

import msgspec
from nats.aio.msg import Msg
from weir import telemetry
from weir.jetstream import Puller
from weir_proto.ids import flow_id_from_message, is_dns_label, is_task_name
from weir_proto.messages import AttemptStatus

from weir_scheduler.commands import FlowCommands, report_command
from weir_scheduler.provenance import log_refused_report, subject_refusal
from weir_scheduler.submissions import Submission, SubmissionHandler

log = logging.getLogger("weir.scheduler")

BATCH_DEFAULT = 256
FETCH_WAIT = 5.0
"""Seconds a round waits for its first message."""
RETRY_DELAY = 1.0
"""Seconds before a message given back is delivered again."""
POISON_DELIVERIES = 5
"""A message that failed this many times on its own is rejected (submits) or dropped. Counted
by JetStream's deliveries, which include the rare one a `Puller` gave back without working
on it (a request that outlived its take brought it)."""

_status_decoder = msgspec.json.Decoder(AttemptStatus)


class PulledBatches(abc.ABC):
    """A background service fed by a JetStream pull consumer: a round fetches a batch (at
    most `batch` messages, waiting up to `FETCH_WAIT` for the first) and records it."""

    name: ClassVar[str]

    def __init__(self, puller: Puller, batch: int = BATCH_DEFAULT) -> None:
        self.puller = puller
        self.batch = batch

    async def run_once(self) -> None:
        msgs = await self.puller.take(self.batch, FETCH_WAIT)
        if msgs:
            await self.record(msgs)

    @abc.abstractmethod
    async def record(self, msgs: list[Msg]) -> None:
        """Record `msgs`, acknowledging (or giving back, or terminating) each one."""


class SubmitIntake(PulledBatches):
    """The `submits` service: submitted flows, recorded by `handler`."""

    name = "submits"

    def __init__(self, puller: Puller, handler: SubmissionHandler) -> None:
        super().__init__(puller)
        self.handler = handler

    async def record(self, msgs: list[Msg]) -> None:
        batch = [Submission(m.data, functools.partial(_fallback_id, m)) for m in msgs]
        try:
            with telemetry.receiving_batch((m.subject, m.headers, len(m.data)) for m in msgs):
                await self.handler.submit_many(batch)
        except Exception:
            log.exception("could not record a batch of submits; trying one at a time")
            await self._one_by_one(msgs, batch)
            return
        await _ack_all(msgs)

    async def _one_by_one(self, msgs: list[Msg], batch: list[Submission]) -> None:
        for msg, submission in zip(msgs, batch, strict=True):
            try:
                await self.handler.submit(submission)
            except Exception as exc:
                if msg.metadata.num_delivered < POISON_DELIVERIES:
                    log.warning("submit not recorded; will retry", extra={"error": str(exc)})
                    await _nak_all([msg])
                    continue
                try:
                    await self.handler.reject_unrecordable(submission, str(exc))
                except Exception:
                    log.exception("submit could not be recorded nor rejected; will retry")
                    await _nak_all([msg])
                    continue
            await _ack_all([msg])


class ReportIntake(PulledBatches):
    """The `reports` service: runners' status reports, applied as commands by `handler`
    (a report that cannot be decoded, or names no possible flow, or comes on another
    attempt's subject, is dropped at once)."""

    name = "reports"

    def __init__(self, puller: Puller, handler: FlowCommands) -> None:
        super().__init__(puller)
        self.handler = handler

    async def record(self, msgs: list[Msg]) -> None:
        reports: list[AttemptStatus] = []
        good: list[Msg] = []
        for msg in msgs:
            try:
                report = _status_decoder.decode(msg.data)
            except msgspec.DecodeError as exc:
                log.warning(
                    "undecodable status report dropped",
                    extra={"subject": msg.subject, "error": str(exc)},
                )
                await msg.term()
                continue
            if not is_dns_label(report.flow_id) or not is_task_name(report.task):
                log.warning("status report for no possible flow dropped")
                await msg.term()
                continue
            refusal = subject_refusal(report, msg.subject)
            if refusal is not None:
                log_refused_report(report, refusal, msg.subject)
                await msg.term()
                continue
            reports.append(report)
            good.append(msg)
        try:
            await self.handler.apply([(r.flow_id, report_command(r)) for r in reports])
        except Exception:
            log.exception("could not record a batch of reports; trying one at a time")
            for msg, report in zip(good, reports, strict=True):
                try:
                    await self.handler.apply([(report.flow_id, report_command(report))])
                except Exception as exc:
                    if msg.metadata.num_delivered < POISON_DELIVERIES:
                        await _nak_all([msg])
                        continue
                    log.error("status report dropped after repeated failures: %s", exc)
                    await msg.term()
                    continue
                await _ack_all([msg])
            return
        await _ack_all(good)


def _fallback_id(msg: Msg) -> str:
    meta = msg.metadata
    published_ms = int(meta.timestamp.timestamp() * 1000) if meta.timestamp else 0
    return flow_id_from_message(meta.sequence.stream, published_ms, meta.stream)


async def _ack_all(msgs: list[Msg]) -> None:
    for msg in msgs:
        with contextlib.suppress(Exception):
            await msg.ack()


async def _nak_all(msgs: list[Msg]) -> None:
    for msg in msgs:
        with contextlib.suppress(Exception):
            await msg.nak(delay=RETRY_DELAY)
