"""The request/reply API on `weir.api.*`, served with the NATS micro framework.

Every reply is `{"result": ...}` or `{"error": {code, message, details}}`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import msgspec
from nats.aio.client import Client as NATS
from nats.micro import add_service
from nats.micro.request import Request
from nats.micro.service import Service
from weir_proto import subjects
from weir_proto.api import (
    LIST_LIMIT_MAX,
    AttemptAnswer,
    AttemptRequest,
    CancelRequest,
    FlowState,
    GetRequest,
    ListRequest,
    PauseRequest,
    PruneRequest,
    PruneResult,
    QueryRequest,
    Reply,
    RerunRequest,
    RetryRequest,
    ScheduleList,
    ScheduleName,
    ScheduleRequest,
    Stepped,
    SubmitAccepted,
    TaskQueryRequest,
    UpdateRequest,
)
from weir_proto.errors import ApiError, ErrorCode, WeirException
from weir_proto.events import FlowCancelRequested, FlowEvent, TaskRetried
from weir_proto.ids import new_flow_id
from weir_proto.status import TERMINAL_FLOW_STATUSES, FlowStatus, TaskStatus

from weir_scheduler import cron
from weir_scheduler.admission import SubmitAdmission, client_of
from weir_scheduler.commands import FlowCommands
from weir_scheduler.data import NewSchedule
from weir_scheduler.data.filters import FilterError
from weir_scheduler.decider import Cancel, Command, FoldedFlow, Pause, Resume, Retry
from weir_scheduler.decider import stepping as steps
from weir_scheduler.map_plan import parent_of
from weir_scheduler.planner import Rejected
from weir_scheduler.stepping import NothingToUpdate, update_command
from weir_scheduler.store import EventStore, parse_cursor, task_cursor_bounds
from weir_scheduler.submissions import Submission, SubmissionHandler

log = logging.getLogger("weir.scheduler.api")

_encoder = msgspec.json.Encoder()

_T = TypeVar("_T")

Handler = Callable[[bytes], Awaitable[object]]


class ApiFailure(WeirException):
    def __init__(self, error: ApiError) -> None:
        super().__init__(error.message)
        self.error = error


def decode_request(data: bytes, kind: type[_T], verb: str) -> _T:
    """The request of `weir.api.<verb>`; one that does not decode is the client's error."""
    try:
        return msgspec.json.decode(data or b"{}", type=kind)
    except msgspec.DecodeError as exc:
        raise _bad_request(f"weir.api.{verb}: {exc}".replace("`", "")) from None
    except RecursionError:
        raise _bad_request(f"weir.api.{verb}: request nests too deeply") from None


PRUNE_BATCH = 500
PRUNE_OLDER_THAN_MAX = 100 * 366 * 24 * 3600.0


def _no_schedule(name: str) -> ApiError:
    return ApiError(code=ErrorCode.NOT_FOUND, message=f'schedule "{name[:100]}" does not exist')


def _bad_request(message: str) -> ApiFailure:
    return ApiFailure(ApiError(code=ErrorCode.BAD_REQUEST, message=message))


def _check_page(
    limit: int, cursor: str | None, parse: Callable[[str], object] = parse_cursor
) -> None:
    """A page's `limit` in range and its `cursor` (parsed by `parse`) one we handed out."""
    if not 1 <= limit <= LIST_LIMIT_MAX:
        raise _bad_request(f"limit must be between 1 and {LIST_LIMIT_MAX}; follow `next` for more")
    if cursor is not None:
        try:
            parse(cursor)
        except ValueError:
            raise _bad_request("cursor is not a `next` from this API") from None


async def _filtered(
    read: Callable[[Any, int, str | None], Awaitable[_T]],
    where: Any,
    limit: int,
    cursor: str | None,
) -> _T:
    """A page of what `read` finds for the filter `where`; a filter that does not parse is
    the client's error."""
    try:
        return await read(where, limit, cursor)
    except FilterError as exc:
        raise _bad_request(str(exc)) from None


def _not_found(flow_id: str) -> ApiError:
    return ApiError(code=ErrorCode.NOT_FOUND, message=f'flow "{flow_id[:100]}" does not exist')


OVERLOADED_RETRY_AFTER = 5.0
"""Seconds a client refused for too many pending flows is told to wait."""


@dataclass(eq=False)
class Api:
    store: EventStore
    submissions: SubmissionHandler
    commands: FlowCommands
    admission: SubmitAdmission | None = None

    async def admit(self, client: str) -> None:
        """Refuse a submit past the client's rate or the pending-flows cap (before anything
        is recorded)."""
        if self.admission is None:
            return
        wait = self.admission.rate.admit(client, time.monotonic())
        if wait is not None:
            raise ApiFailure(
                ApiError(
                    code=ErrorCode.RATE_LIMITED,
                    message=f"too many submits from this connection (at most "
                    f"{self.admission.rate.rate:g}/s, {self.admission.rate.burst} at once); "
                    f"retry in {wait:.1f}s",
                    retry_after=round(wait, 3),
                )
            )
        pending = await self.store.data.pending_flows()
        if pending >= self.admission.max_pending:
            raise ApiFailure(
                ApiError(
                    code=ErrorCode.OVERLOADED,
                    message=f"{pending} flows have not ended yet (WEIR_MAX_PENDING_FLOWS="
                    f"{self.admission.max_pending}); submit again once some have ended",
                    retry_after=OVERLOADED_RETRY_AFTER,
                )
            )

    async def submit(self, data: bytes) -> object:
        outcome = await self.submissions.submit(Submission(data, new_flow_id()))
        if outcome.existing is not None and outcome.status is FlowStatus.DUPLICATE:
            view = await self.store.get(outcome.existing)
            return SubmitAccepted(
                flow_id=outcome.existing,
                status=view.status if view else "unknown",
                created=False,
                existing=outcome.existing,
            )
        if outcome.status is FlowStatus.REJECTED and outcome.created:
            raise ApiFailure(
                ApiError(
                    code=ErrorCode.INVALID_FLOW,
                    message=f"flow rejected (recorded as {outcome.flow_id}): "
                    + "; ".join(e.message for e in outcome.errors),
                    details=list(outcome.errors),
                    flow_id=outcome.flow_id,
                )
            )
        return SubmitAccepted(
            flow_id=outcome.flow_id, status=str(outcome.status), created=outcome.created
        )

    async def get(self, data: bytes) -> object:
        request = decode_request(data, GetRequest, "get")
        view = await self.store.get(request.flow_id)
        if view is None:
            raise ApiFailure(_not_found(request.flow_id))
        return view

    async def list(self, data: bytes) -> object:
        request = decode_request(data, ListRequest, "list")
        if request.status is not None and request.status not in FlowStatus.__members__.values():
            raise _bad_request(f"status must be one of {', '.join(FlowStatus)}")
        _check_page(request.limit, request.cursor)
        return await self.store.list(request.status, request.limit, request.cursor)

    async def cancel(self, data: bytes) -> object:
        request = decode_request(data, CancelRequest, "cancel")
        flows, changes = await self.commands.apply_and_tell(
            [(request.flow_id, Cancel(request.reason[:500]))]
        )
        flow = flows.get(request.flow_id)
        if flow is None or not flow.exists:
            raise ApiFailure(_not_found(request.flow_id))
        requested = any(
            isinstance(event, FlowCancelRequested) for change in changes for event in change.events
        )
        if flow.status.terminal and flow.status is not FlowStatus.CANCELLED and not requested:
            # (a cancel that itself ended the flow, failed because a task had failed, is
            # answered with what it did)
            raise ApiFailure(
                ApiError(
                    code=ErrorCode.CONFLICT,
                    message=f'flow "{request.flow_id}" has already ended ({flow.status})',
                )
            )
        return FlowState(flow_id=flow.id, status=str(flow.status), already=not requested)

    async def rerun(self, data: bytes) -> object:
        request = decode_request(data, RerunRequest, "rerun")
        source = await self.store.load(request.flow_id)
        if not source.exists or source.plan is None:
            raise ApiFailure(_not_found(request.flow_id))
        if not source.status.terminal:
            raise ApiFailure(
                ApiError(
                    code=ErrorCode.CONFLICT,
                    message=(
                        f'flow "{request.flow_id}" is {source.status}; rerun it once it has '
                        "ended, or cancel it first"
                    ),
                )
            )
        reused: tuple[str, ...] = ()
        if request.failed_only:
            reused = tuple(  # a mapped task's instances run again unless it succeeded
                name
                for name, task in source.tasks.items()
                if task.status is TaskStatus.SUCCEEDED and parent_of(name) is None
            )
        outcome = await self.submissions.rerun(source, reused)
        return SubmitAccepted(
            flow_id=outcome.flow_id,
            status=str(outcome.status),
            created=True,
            rerun_of=source.id,
        )

    async def _step(
        self, flow_id: str, command: Command, refusal: Callable[[FoldedFlow], str | None]
    ) -> tuple[FoldedFlow, Sequence[FlowEvent]]:
        """Decide and record `command`; the flow after it and the events it caused. A
        command the flow refuses is answered with the reason (`conflict`)."""
        flows, changes = await self.commands.apply_and_tell([(flow_id, command)])
        flow = flows.get(flow_id)
        if flow is None or not flow.exists:
            raise ApiFailure(_not_found(flow_id))
        events = [event for change in changes for event in change.events]
        reason = None if events else refusal(flow)
        if reason is not None:
            raise ApiFailure(ApiError(code=ErrorCode.CONFLICT, message=reason, flow_id=flow_id))
        return flow, events

    async def pause(self, data: bytes) -> object:
        request = decode_request(data, PauseRequest, "pause")
        pause = Pause(request.reason[:500])
        flow, events = await self._step(request.flow_id, pause, steps.pause_refusal)
        return Stepped(flow_id=flow.id, status=str(flow.status), seq=flow.seq, already=not events)

    async def resume(self, data: bytes) -> object:
        request = decode_request(data, PauseRequest, "resume")
        flow, events = await self._step(request.flow_id, Resume(), steps.resume_refusal)
        return Stepped(flow_id=flow.id, status=str(flow.status), seq=flow.seq, already=not events)

    async def retry(self, data: bytes) -> object:
        request = decode_request(data, RetryRequest, "retry")
        flow, events = await self._step(
            request.flow_id,
            Retry(request.task, request.downstream),
            lambda flow: steps.retry_refusal(flow, request.task, request.downstream),
        )
        planned = next(e.tasks for e in events if isinstance(e, TaskRetried))
        return Stepped(flow_id=flow.id, status=str(flow.status), seq=flow.seq, tasks=planned)

    async def update(self, data: bytes) -> object:
        request = decode_request(data, UpdateRequest, "update")
        flow = await self.store.load(request.flow_id)
        if not flow.exists:
            raise ApiFailure(_not_found(request.flow_id))
        refused = steps.update_refusal(flow)
        if refused is not None:
            raise ApiFailure(ApiError(code=ErrorCode.CONFLICT, message=refused, flow_id=flow.id))
        try:
            command = update_command(flow, request, self.submissions.limits, datetime.now(UTC))
        except NothingToUpdate as exc:
            raise ApiFailure(ApiError(code=ErrorCode.BAD_REQUEST, message=str(exc))) from None
        except Rejected as exc:
            raise ApiFailure(
                ApiError(
                    code=ErrorCode.INVALID_FLOW,
                    message=f'update of flow "{flow.id}" refused: '
                    + "; ".join(e.message for e in exc.errors),
                    details=exc.errors,
                    flow_id=flow.id,
                )
            ) from None
        flow, _ = await self._step(flow.id, command, steps.update_refusal)
        return Stepped(
            flow_id=flow.id, status=str(flow.status), seq=flow.seq, tasks=list(command.changed)
        )

    async def attempt(self, data: bytes) -> object:
        request = decode_request(data, AttemptRequest, "attempt")
        run, reason = await self.store.attempt_is_current(
            request.flow_id, request.task, request.attempt
        )
        return AttemptAnswer(run=run, reason=reason)

    async def query(self, data: bytes) -> object:
        request = decode_request(data, QueryRequest, "query")
        _check_page(request.limit, request.cursor)
        return await _filtered(self.store.query, request.where, request.limit, request.cursor)

    async def tasks(self, data: bytes) -> object:
        request = decode_request(data, TaskQueryRequest, "tasks")
        _check_page(request.limit, request.cursor, task_cursor_bounds)
        return await _filtered(self.store.tasks, request.where, request.limit, request.cursor)

    async def prune(self, data: bytes) -> object:
        request = decode_request(data, PruneRequest, "prune")
        allowed = {str(s) for s in TERMINAL_FLOW_STATUSES}
        wrong = [s for s in request.statuses if s not in allowed]
        if wrong or not 0 <= request.older_than <= PRUNE_OLDER_THAN_MAX or request.keep_last < 0:
            raise _bad_request(
                "prune takes statuses among "
                f"{', '.join(sorted(allowed))} (only ended flows are pruned), "
                f"older_than between 0 and {PRUNE_OLDER_THAN_MAX:,.0f} seconds and "
                "keep_last >= 0"
            )
        before = datetime.now(UTC) - timedelta(seconds=request.older_than)
        pruned = await self.store.prune(request.statuses, before, request.keep_last, PRUNE_BATCH)
        return PruneResult(pruned=pruned)

    async def schedule_create(self, data: bytes) -> object:
        request = decode_request(data, ScheduleRequest, "schedule.create")
        flow = cron.with_params(request.flow, request.params)
        now = datetime.now(UTC)
        try:
            cron.validate(
                request.name, request.cron, request.timezone, flow, self.submissions.limits, now
            )
        except cron.ScheduleError as exc:
            raise ApiFailure(
                ApiError(code=ErrorCode.BAD_REQUEST, message=str(exc), details=exc.errors)
            ) from None
        first = cron.next_tick(request.cron, request.timezone, now)
        spec = msgspec.json.encode(flow).decode()
        return await self.store.data.schedule_upsert(
            NewSchedule(
                name=request.name,
                cron=request.cron,
                timezone=request.timezone,
                spec=spec,
                missed=request.missed,
                paused=request.paused,
                next_run_at=first,
            )
        )

    async def schedule_list(self, data: bytes) -> object:
        return ScheduleList(schedules=await self.store.data.schedule_list())

    async def _schedule_pause(self, data: bytes, paused: bool, verb: str) -> object:
        request = decode_request(data, ScheduleName, verb)
        view = await self.store.data.schedule_pause(request.name, paused)
        if view is None:
            raise ApiFailure(_no_schedule(request.name))
        return view

    async def schedule_pause(self, data: bytes) -> object:
        return await self._schedule_pause(data, True, "schedule.pause")

    async def schedule_resume(self, data: bytes) -> object:
        return await self._schedule_pause(data, False, "schedule.resume")

    async def schedule_delete(self, data: bytes) -> object:
        request = decode_request(data, ScheduleName, "schedule.delete")
        if not await self.store.data.schedule_delete(request.name):
            raise ApiFailure(_no_schedule(request.name))
        return ScheduleName(name=request.name)

    async def serve(self, nc: NATS, more: Sequence[tuple[str, Handler]] = ()) -> Service:
        """Answer every verb (and the `more` handlers, e.g. `SecretsApi.handlers()`) on
        `weir.api.<verb>`."""
        service = await add_service(
            nc,
            name=subjects.SERVICE_NAME,
            version="0.1.0",
            description="weir scheduler API",
        )
        handlers: list[tuple[str, Handler]] = [
            ("submit", self.submit),
            ("get", self.get),
            ("list", self.list),
            ("cancel", self.cancel),
            ("rerun", self.rerun),
            ("retry", self.retry),
            ("pause", self.pause),
            ("resume", self.resume),
            ("update", self.update),
            ("attempt", self.attempt),
            ("query", self.query),
            ("tasks", self.tasks),
            ("prune", self.prune),
            ("schedule.create", self.schedule_create),
            ("schedule.list", self.schedule_list),
            ("schedule.pause", self.schedule_pause),
            ("schedule.resume", self.schedule_resume),
            ("schedule.delete", self.schedule_delete),
            *more,
        ]
        for verb, handler in handlers:
            await service.add_endpoint(
                name=verb.replace(".", "-"),
                subject=f"{subjects.API_PREFIX}.{verb}",
                handler=self._wrap(verb, handler),
            )
        return service

    def _wrap(self, verb: str, handler: Handler) -> Callable[[Request], Awaitable[None]]:
        async def respond(request: Request) -> None:
            try:
                if verb == "submit":
                    # nats.micro keeps the reply subject on the message only.
                    await self.admit(client_of(request._msg.reply))
                result = await handler(request.data)
                reply = Reply(result=result)
            except ApiFailure as failure:
                reply = Reply(error=failure.error)
            except Exception:
                log.exception("api handler failed", extra={"verb": verb})
                reply = Reply(
                    error=ApiError(code=ErrorCode.INTERNAL, message="internal error; see logs")
                )
            await request.respond(_encoder.encode(reply))

        return respond
