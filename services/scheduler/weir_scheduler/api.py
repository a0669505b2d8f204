"""The request/reply API on `weir.api.*`, served with the NATS micro framework.

Every reply is `{"result": ...}` or `{"error": {code, message, details}}`.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

import msgspec
from nats.aio.client import Client as NATS
from nats.micro import add_service
from nats.micro.request import Request
from nats.micro.service import Service
from weir_proto import subjects
from weir_proto.api import (
    LIST_LIMIT_MAX,
    GetRequest,
    ListRequest,
    Reply,
    SubmitAccepted,
)
from weir_proto.errors import ApiError
from weir_proto.ids import new_flow_id
from weir_proto.status import FlowStatus

from weir_scheduler.store import EventStore, parse_cursor
from weir_scheduler.submissions import Submission, SubmissionHandler

log = logging.getLogger("weir.scheduler.api")

_encoder = msgspec.json.Encoder()

_T = TypeVar("_T")

Handler = Callable[[bytes], Awaitable[object]]


class ApiFailure(Exception):
    def __init__(self, error: ApiError) -> None:
        super().__init__(error.message)
        self.error = error


def _decode(data: bytes, kind: type[_T], verb: str) -> _T:
    try:
        return msgspec.json.decode(data or b"{}", type=kind)
    except msgspec.DecodeError as exc:
        raise ApiFailure(
            ApiError(code="bad_request", message=f"weir.api.{verb}: {exc}".replace("`", ""))
        ) from None


class Api:
    def __init__(self, store: EventStore, submissions: SubmissionHandler) -> None:
        self.store = store
        self.submissions = submissions

    async def submit(self, data: bytes) -> object:
        outcome = await self.submissions.submit(Submission(data, new_flow_id()))
        if outcome.status is FlowStatus.REJECTED and outcome.created:
            raise ApiFailure(
                ApiError(
                    code="invalid_flow",
                    message=f"flow rejected (recorded as {outcome.flow_id}): "
                    + "; ".join(e.message for e in outcome.errors),
                    details=list(outcome.errors),
                )
            )
        return SubmitAccepted(
            flow_id=outcome.flow_id, status=str(outcome.status), created=outcome.created
        )

    async def get(self, data: bytes) -> object:
        request = _decode(data, GetRequest, "get")
        view = await self.store.get(request.flow_id)
        if view is None:
            raise ApiFailure(
                ApiError(code="not_found", message=f'flow "{request.flow_id[:100]}" does not exist')
            )
        return view

    async def list(self, data: bytes) -> object:
        request = _decode(data, ListRequest, "list")
        if request.status is not None and request.status not in FlowStatus.__members__.values():
            raise ApiFailure(
                ApiError(
                    code="bad_request",
                    message=f"status must be one of {', '.join(FlowStatus)}",
                )
            )
        if not 1 <= request.limit <= LIST_LIMIT_MAX:
            raise ApiFailure(
                ApiError(
                    code="bad_request",
                    message=f"limit must be between 1 and {LIST_LIMIT_MAX}; follow `next` for more",
                )
            )
        if request.cursor is not None:
            try:
                parse_cursor(request.cursor)
            except ValueError:
                raise ApiFailure(
                    ApiError(
                        code="bad_request", message="cursor is not a `next` from weir.api.list"
                    )
                ) from None
        return await self.store.list(request.status, request.limit, request.cursor)

    async def serve(self, nc: NATS) -> Service:
        service = await add_service(
            nc,
            name=subjects.SERVICE_NAME,
            version="0.1.0",
            description="weir scheduler API",
        )
        for verb, handler in (("submit", self.submit), ("get", self.get), ("list", self.list)):
            await service.add_endpoint(
                name=verb,
                subject=f"{subjects.API_PREFIX}.{verb}",
                handler=self._wrap(verb, handler),
            )
        return service

    def _wrap(self, verb: str, handler: Handler) -> Callable[[Request], Awaitable[None]]:
        async def respond(request: Request) -> None:
            try:
                result = await handler(request.data)
                reply = Reply(result=result)
            except ApiFailure as failure:
                reply = Reply(error=failure.error)
            except Exception:
                log.exception("api handler failed", extra={"verb": verb})
                reply = Reply(error=ApiError(code="internal", message="internal error; see logs"))
            await request.respond(_encoder.encode(reply))

        return respond
