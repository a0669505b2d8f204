"""The weir client library: submit flows, query them, and follow their events.

```python
async with await Client.connect("nats://127.0.0.1:4222") as client:
    flow_id = await client.submit({"name": "hello", "tasks": [{"name": "a", "cmd": ["true"]}]})
    final = await client.wait(flow_id)
    verdict = await client.submit(spec, verdict=True)  # the scheduler's answer
    flow_ids = await client.submit_many(specs)  # a batch: one write, acks awaited together
```
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any, Literal, Self, TypeVar, overload

import msgspec
import nats.errors
import nats.js.errors
from nats.aio.client import Client as NATS
from nats.js.api import DeliverPolicy
from weir_proto import subjects
from weir_proto.api import (
    CancelRequest,
    FlowPage,
    FlowState,
    FlowSummary,
    FlowView,
    GetRequest,
    ListRequest,
    PauseRequest,
    PruneRequest,
    PruneResult,
    QueryRequest,
    RawReply,
    RerunRequest,
    RetryRequest,
    ScheduleList,
    ScheduleName,
    ScheduleRequest,
    ScheduleView,
    SecretList,
    SecretName,
    SecretPut,
    Stepped,
    SubmitAccepted,
    TaskPage,
    TaskQueryRequest,
    UpdateRequest,
)
from weir_proto.errors import ErrorCode
from weir_proto.events import TERMINAL_FLOW_EVENTS, FlowEvent, event_type
from weir_proto.ids import new_flow_id
from weir_proto.messages import OutputDigest
from weir_proto.spec import FlowSpec

from weir import telemetry
from weir.answers import SubmitVerdict, WeirError, batch_refused
from weir.config import NatsSecurity
from weir.jetstream import Publisher, close, connect

__all__ = ["Client", "SubmitVerdict", "WeirError"]

REQUEST_TIMEOUT_DEFAULT = 10.0
CONNECT_ATTEMPTS = 10
"""Reconnect attempts (0.5 s apart) before a client gives up on a server."""
HISTORY_IDLE_DEFAULT = 1.0
"""Without --follow, event replay ends once the stream has been quiet this long."""
GAP_WAIT = 2.0
"""How long events() holds an event whose predecessors have not arrived yet."""

_T = TypeVar("_T")
_event_decoder = msgspec.json.Decoder(FlowEvent)


_reply_decoder = msgspec.json.Decoder(RawReply)
_encoder = msgspec.json.Encoder()


def _publishing_submit(
    flow_id: str, payload: bytes
) -> contextlib.AbstractContextManager[dict[str, str]]:
    """The PRODUCER span of publishing one submit, in the flow's trace, and its headers."""
    return telemetry.publishing(
        subjects.SUBMIT,
        message_id=flow_id,
        parent=telemetry.flow_context(flow_id),
        size=len(payload),
    )


class Client:
    def __init__(self, nc: NATS, timeout: float = REQUEST_TIMEOUT_DEFAULT) -> None:
        self.nc = nc
        self.js = nc.jetstream()
        self.publisher = Publisher(nc)
        self.timeout = timeout

    @classmethod
    async def connect(
        cls,
        url: str,
        timeout: float = REQUEST_TIMEOUT_DEFAULT,
        *,
        quiet: bool = False,
        security: NatsSecurity | None = None,
        first_retries: int | None = None,
    ) -> Client:
        """Connect to NATS; fails within seconds when the server cannot be reached. `quiet`
        keeps nats-py's connection errors out of the logs but for debug (the caller reports
        a failure itself). Credentials and TLS: `security`, by default the `WEIR_NATS_*`
        variables. `first_retries` bounds the first connection alone (`weir.jetstream.connect`)."""
        nc = await connect(
            url,
            "weir-client",
            max_reconnect_attempts=CONNECT_ATTEMPTS,
            quiet=quiet,
            security=security,
            first_retries=first_retries,
        )
        return cls(nc, timeout)

    async def close(self) -> None:
        await close(self.nc)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # Commands -----------------------------------------------------------------------------

    @overload
    async def submit(
        self,
        spec: FlowSpec | Mapping[str, Any] | bytes,
        *,
        params: Mapping[str, Any] | None = None,
        verdict: Literal[False] = False,
    ) -> str: ...

    @overload
    async def submit(
        self,
        spec: FlowSpec | Mapping[str, Any] | bytes,
        *,
        params: Mapping[str, Any] | None = None,
        verdict: Literal[True],
    ) -> SubmitVerdict: ...

    async def submit(
        self,
        spec: FlowSpec | Mapping[str, Any] | bytes,
        *,
        params: Mapping[str, Any] | None = None,
        verdict: bool = False,
    ) -> str | SubmitVerdict:
        """Submit a flow.

        By default, publish it to `weir.cmd.submit` and return its id once JetStream holds
        it: durable even while no scheduler runs, but what became of it shows only in its
        events (a rejection is recorded as a `rejected` flow).

        With `verdict=True`, ask the scheduler (`weir.api.submit`) and return what it
        recorded: accepted, rejected (every problem) or duplicate (the flow holding the
        unique key). Raises WeirError(UNAVAILABLE) when no scheduler answers, and
        WeirError(TIMEOUT) when the answer does not come in time (the submit may still be
        recorded; asking again with the same id is safe).

        Either way the id is chosen here when the spec has none, so a retry is harmless.
        `params` gives values for the flow's declared `params` (over the spec's own
        `arguments`); the scheduler checks them and rejects unknown, missing or mistyped ones.
        """
        flow_id, payload = self._submit_payload(spec, params)
        if verdict:
            return await self._submit_for_verdict(flow_id, payload)
        with _publishing_submit(flow_id, payload) as headers:
            try:
                await self.publisher.publish_one(subjects.SUBMIT, payload, headers, self.timeout)
            except nats.js.errors.NoStreamResponseError:
                raise WeirError(
                    ErrorCode.UNAVAILABLE,
                    f"no stream takes {subjects.SUBMIT}: {subjects.STREAM_COMMANDS} is missing "
                    "or was changed; start the scheduler, which creates it",
                ) from None
            except nats.js.errors.APIError as exc:  # the stream is full (discard new)
                raise WeirError(
                    ErrorCode.OVERLOADED,
                    f"{subjects.STREAM_COMMANDS} refused the submit ({exc.description}); it "
                    "holds as many commands as it may (WEIR_COMMANDS_MAX_MSGS / _MAX_BYTES): "
                    "submit again later",
                ) from None
        return flow_id

    async def submit_many(self, specs: Iterable[FlowSpec | Mapping[str, Any] | bytes]) -> list[str]:
        """Submit many flows to `weir.cmd.submit` at once; their ids, in order, once JetStream
        holds every one.

        Every spec is encoded (and its id chosen) before any is sent; then the publishes go
        out back to back in one write and their acknowledgements are awaited together, so a
        batch costs about one round trip, not one per flow. Like `submit`, what became of
        each flow shows in its events. When some are refused, raises WeirError naming how
        many and which; submitting the whole batch again is safe (a flow id already held is
        not queued twice).
        """
        prepared = [self._submit_payload(spec) for spec in specs]
        messages = []
        for flow_id, payload in prepared:
            with _publishing_submit(flow_id, payload) as headers:
                messages.append((subjects.SUBMIT, payload, headers))
        try:
            outcomes = await self.publisher.publish(messages, self.timeout)
        except TimeoutError:
            raise WeirError(
                ErrorCode.TIMEOUT,
                f"JetStream did not acknowledge {len(prepared):,} submits within "
                f"{self.timeout:g}s; some may be queued: submit the batch again (flows already "
                "queued are not queued twice)",
            ) from None
        refused = [
            (flow_id, outcome)
            for (flow_id, _), outcome in zip(prepared, outcomes, strict=True)
            if isinstance(outcome, BaseException)
        ]
        if refused:
            raise batch_refused(refused, len(prepared))
        return [flow_id for flow_id, _ in prepared]

    async def _submit_for_verdict(self, flow_id: str, payload: bytes) -> SubmitVerdict:
        try:
            answer = await self._call(subjects.API_SUBMIT, msgspec.Raw(payload), SubmitAccepted)
        except WeirError as exc:
            if exc.code != ErrorCode.INVALID_FLOW:
                raise
            return SubmitVerdict(
                "rejected",
                exc.flow_id or flow_id,
                "rejected",
                errors=tuple(exc.details),
                message=exc.message,
            )
        if answer.existing is not None:
            return SubmitVerdict(
                "duplicate",
                answer.existing,
                answer.status,
                created=False,
                existing=answer.existing,
                message=f"flow {answer.existing} ({answer.status}) holds the same unique key",
            )
        return SubmitVerdict("accepted", answer.flow_id, answer.status, created=answer.created)

    def _submit_payload(
        self, spec: FlowSpec | Mapping[str, Any] | bytes, params: Mapping[str, Any] | None = None
    ) -> tuple[str, bytes]:
        """The flow id (chosen here when the spec has none) and the JSON to send."""
        if isinstance(spec, bytes):
            doc: Any = msgspec.json.decode(spec)
        elif isinstance(spec, FlowSpec):
            doc = msgspec.to_builtins(spec)
        else:
            doc = dict(spec)
        if not isinstance(doc, dict):
            raise WeirError(
                ErrorCode.INVALID_FLOW, "a flow spec is a JSON object with name and tasks"
            )
        if params:
            given = doc.get("arguments")
            doc["arguments"] = {**(given if isinstance(given, dict) else {}), **params}
        flow_id = doc.get("id")
        if not isinstance(flow_id, str) or not flow_id:
            flow_id = new_flow_id()
            doc["id"] = flow_id
        payload = _encoder.encode(doc)
        limit = self.nc.max_payload
        if len(payload) > limit:
            raise WeirError(
                ErrorCode.TOO_LARGE,
                f"flow spec is {len(payload):,} bytes; this NATS server accepts at most "
                f"{limit:,} per message (raise max_payload, or split the flow)",
            )
        return flow_id, payload

    # Queries ------------------------------------------------------------------------------

    async def _call(self, subject: str, request: object, kind: type[_T]) -> _T:
        try:
            msg = await self.nc.request(subject, _encoder.encode(request), timeout=self.timeout)
        except nats.errors.NoRespondersError:
            raise WeirError(
                ErrorCode.UNAVAILABLE, f"no scheduler is answering on {subject}; is one running?"
            ) from None
        except (TimeoutError, nats.errors.TimeoutError):
            raise WeirError(
                ErrorCode.TIMEOUT,
                f"the scheduler did not answer on {subject} within {self.timeout:g}s",
            ) from None
        reply = _reply_decoder.decode(msg.data)
        if reply.error is not None:
            raise WeirError.from_api(reply.error)
        return msgspec.json.decode(reply.result, type=kind)

    async def get(self, flow_id: str) -> FlowView:
        return await self._call(subjects.API_GET, GetRequest(flow_id=flow_id), FlowView)

    async def get_or_none(self, flow_id: str) -> FlowView | None:
        """The flow, or None while it does not exist (yet)."""
        try:
            return await self.get(flow_id)
        except WeirError as exc:
            if exc.code == ErrorCode.NOT_FOUND:
                return None
            raise

    async def output_digests(self, flow_id: str) -> dict[str, OutputDigest]:
        """The size and SHA-256 the event log recorded for each output of the flow (by
        output name) when its task uploaded it: check a download against these, not against
        the store's own metadata, which whoever can write the object can rewrite with it.
        An output stored before digests were recorded has none."""
        view = await self.get(flow_id)
        return {digest.name: digest for task in view.tasks for digest in task.outputs}

    async def list(
        self, status: str | None = None, limit: int = 50, cursor: str | None = None
    ) -> FlowPage:
        request = ListRequest(status=status, limit=limit, cursor=cursor)
        return await self._call(subjects.API_LIST, request, FlowPage)

    async def query(
        self, where: Any = None, limit: int = 50, cursor: str | None = None
    ) -> FlowPage:
        """Flows matching a filter (and/or/not over id, status, name, queue, tags, metadata,
        params, times)."""
        request = QueryRequest(where=where, limit=limit, cursor=cursor)
        return await self._call(subjects.API_QUERY, request, FlowPage)

    async def tasks(
        self, where: Any = None, limit: int = 50, cursor: str | None = None
    ) -> TaskPage:
        """Tasks across flows matching a filter (and/or/not over flow, flow_name, name,
        status, queue, finish time): the newest flows' first, each flow's in its order."""
        request = TaskQueryRequest(where=where, limit=limit, cursor=cursor)
        return await self._call(subjects.API_TASKS, request, TaskPage)

    async def cancel(self, flow_id: str, reason: str = "cancelled by request") -> FlowState:
        """Pending tasks never start, running attempts are killed, the flow ends cancelled."""
        request = CancelRequest(flow_id=flow_id, reason=reason)
        return await self._call(subjects.API_CANCEL, request, FlowState)

    async def rerun(self, flow_id: str, failed_only: bool = False) -> SubmitAccepted:
        """A new run of an ended flow; with `failed_only`, succeeded tasks are reused."""
        request = RerunRequest(flow_id=flow_id, failed_only=failed_only)
        return await self._call(subjects.API_RERUN, request, SubmitAccepted)

    async def retry(self, flow_id: str, task: str, downstream: bool = False) -> Stepped:
        """Run `task` again inside its flow, with `downstream` every task after it too."""
        request = RetryRequest(flow_id=flow_id, task=task, downstream=downstream)
        return await self._call(subjects.API_RETRY, request, Stepped)

    async def pause(self, flow_id: str, reason: str = "paused by request") -> Stepped:
        """Hand out no new attempt of the flow until `resume`; running ones finish."""
        request = PauseRequest(flow_id=flow_id, reason=reason)
        return await self._call(subjects.API_PAUSE, request, Stepped)

    async def resume(self, flow_id: str) -> Stepped:
        return await self._call(subjects.API_RESUME, PauseRequest(flow_id=flow_id), Stepped)

    async def update(
        self,
        flow_id: str,
        *,
        priority: int | None = None,
        scheduled_at: datetime | None = None,
        start_now: bool = False,
        params: Mapping[str, Any] | None = None,
        tags: Sequence[str] | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> Stepped:
        """Change a flow that has not started (`params` are merged, the rest replaced);
        `Stepped.tasks` names the fields changed. Refusals: see docs/jobs.md."""
        request = UpdateRequest(
            flow_id=flow_id,
            priority=priority,
            scheduled_at=scheduled_at,
            start_now=start_now,
            params=None if params is None else dict(params),
            tags=None if tags is None else list(tags),
            metadata=None if metadata is None else dict(metadata),
        )
        return await self._call(subjects.API_UPDATE, request, Stepped)

    async def prune(
        self, older_than: float, statuses: Sequence[str] = (), keep_last: int = 0
    ) -> int:
        request = PruneRequest(older_than=older_than, keep_last=keep_last)
        if statuses:
            request.statuses = [*statuses]
        return (await self._call(subjects.API_PRUNE, request, PruneResult)).pruned

    async def schedule(self, request: ScheduleRequest) -> ScheduleView:
        return await self._call(f"{subjects.API_SCHEDULE_PREFIX}.create", request, ScheduleView)

    async def schedules(self) -> Sequence[ScheduleView]:
        subject = f"{subjects.API_SCHEDULE_PREFIX}.list"
        return (await self._call(subject, {}, ScheduleList)).schedules

    async def schedule_action(self, verb: str, name: str) -> object:
        """`pause`, `resume` or `delete` the schedule `name`."""
        subject = f"{subjects.API_SCHEDULE_PREFIX}.{verb}"
        kind: type[object] = ScheduleName if verb == "delete" else ScheduleView
        return await self._call(subject, ScheduleName(name=name), kind)

    async def secret_names(self) -> Sequence[str]:
        """The names of weir's stored secrets (never a value)."""
        subject = f"{subjects.API_SECRET_PREFIX}.list"
        return (await self._call(subject, {}, SecretList)).names

    async def secret_put(self, name: str, sealed: bytes) -> None:
        """Store secret `name` as `sealed` (`weir.secrets.seal_secret`: encrypted here, with
        the key; the scheduler stores it without one)."""
        request = SecretPut(name=name, sealed=sealed)
        await self._call(f"{subjects.API_SECRET_PREFIX}.put", request, SecretName)

    async def secret_delete(self, name: str) -> None:
        """Remove secret `name`; WeirError(NOT_FOUND) when there is none."""
        request = SecretName(name=name)
        await self._call(f"{subjects.API_SECRET_PREFIX}.delete", request, SecretName)

    async def list_all(
        self, status: str | None = None, page: int = 500
    ) -> AsyncIterator[FlowSummary]:
        """Every flow, newest first, page after page."""
        cursor: str | None = None
        while True:
            result = await self.list(status, page, cursor)
            for flow in result.flows:
                yield flow
            if result.next is None:
                return
            cursor = result.next

    # Events -------------------------------------------------------------------------------

    async def events(
        self,
        flow_id: str,
        follow: bool = False,
        idle: float = HISTORY_IDLE_DEFAULT,
        since: int = 0,
    ) -> AsyncIterator[FlowEvent]:
        """The flow's events from the first, in `seq` order, each once. With `follow`, goes on
        live until the flow ends (its last end: a retried flow runs on after its first; an
        end at or before event `since`, such as the one a retry answered with `Stepped.seq`
        reopened, never ends it); without, stops once the history has been replayed.

        Several scheduler replicas may publish a flow's events slightly out of order; an
        event that runs ahead is held until the ones before it arrive (or GAP_WAIT passes)."""
        sub = await self.js.subscribe(
            subjects.flow_events(flow_id),
            stream=subjects.STREAM_EVENTS,  # no stream lookup: submitters may not list streams
            ordered_consumer=True,
            deliver_policy=DeliverPolicy.ALL,
        )
        last_seq = 0
        held: dict[int, FlowEvent] = {}
        try:
            while True:
                wait = GAP_WAIT if held else (None if follow else idle)
                try:
                    msg = await sub.next_msg(timeout=wait)
                except (TimeoutError, nats.errors.TimeoutError):
                    if not held:
                        return
                    last_seq = min(held) - 1  # the missing ones are not coming: move on
                    msg = None
                if msg is not None:
                    event = _event_decoder.decode(msg.data)
                    if event.seq > last_seq:
                        held[event.seq] = event
                while last_seq + 1 in held:
                    event = held.pop(last_seq + 1)
                    last_seq = event.seq
                    yield event
                    # An ended flow may run again (`weir retry`): its end is the last one.
                    more = bool(held) or (msg is not None and msg.metadata.num_pending > 0)
                    ends = event_type(event) in TERMINAL_FLOW_EVENTS and event.seq > since
                    if ends and not more:
                        return
                if not follow and not held and msg is not None and msg.metadata.num_pending == 0:
                    return
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    async def attempt_of(self, flow_id: str, task: str, attempt: int | None = None) -> int:
        """`attempt` of the flow's `task` (its latest when None), checked to have run;
        WeirError(NOT_FOUND) names what is missing."""
        view = await self.get(flow_id)
        match = [t for t in view.tasks if t.name == task]
        if not match:
            names = ", ".join(t.name for t in view.tasks)
            raise WeirError(
                ErrorCode.NOT_FOUND, f'flow {flow_id} has no task "{task}" (tasks: {names})'
            )
        latest = match[0].attempt
        if latest == 0:
            raise WeirError(ErrorCode.NOT_FOUND, f'task "{task}" of flow {flow_id} has not run yet')
        if attempt is None:
            attempt = latest
        elif not 1 <= attempt <= latest:
            raise WeirError(
                ErrorCode.NOT_FOUND,
                f'task "{task}" of flow {flow_id} has no attempt {attempt} '
                f"(attempts: {'1' if latest == 1 else f'1 to {latest}'})",
            )
        return attempt

    async def logs(
        self,
        flow_id: str,
        task: str,
        attempt: int | None = None,
        follow: bool = False,
        idle: float = HISTORY_IDLE_DEFAULT,
    ) -> AsyncIterator[tuple[str, bytes]]:
        """`(stream, chunk)` pairs of an attempt's output (the latest attempt by default),
        from the start; with `follow`, goes on live until the attempt has ended."""
        attempt = await self.attempt_of(flow_id, task, attempt)
        sub = await self.js.subscribe(
            subjects.logs(flow_id, task, attempt),
            stream=subjects.STREAM_LOGS,
            ordered_consumer=True,
            deliver_policy=DeliverPolicy.ALL,
        )
        try:
            while True:
                try:
                    msg = await sub.next_msg(timeout=None if follow else idle)
                except (TimeoutError, nats.errors.TimeoutError):
                    return
                headers = msg.headers or {}
                if headers.get("Weir-Log-End"):
                    return
                yield headers.get("Weir-Log-Stream", "stdout"), msg.data
                if not follow and msg.metadata.num_pending == 0:
                    return
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    async def wait(self, flow_id: str, since: int = 0) -> FlowEvent:
        """Block until the flow ends after its event `since` (after a `retry`, pass its
        `Stepped.seq`); returns that terminal event."""
        last: FlowEvent | None = None
        async for event in self.events(flow_id, follow=True, since=since):
            last = event
        if last is not None and event_type(last) in TERMINAL_FLOW_EVENTS:
            return last
        raise WeirError(ErrorCode.INTERNAL, f"event stream of flow {flow_id} ended early")
