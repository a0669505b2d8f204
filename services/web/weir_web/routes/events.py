"""`/flows/{id}/events`: a flow's event log, as JSON or as Server-Sent Events whose `id:` is
the event's seq, resuming after `Last-Event-ID` with no gap and no duplicate."""

from __future__ import annotations

from collections.abc import AsyncIterator

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from weir_proto.events import FlowEvent, event_type

from weir_web.config import Role
from weir_web.endpoints import Endpoints, json_response, route
from weir_web.params import flow_id_of, last_event_id, wants_json
from weir_web.sse import KEEPALIVE_FRAME, KEEPALIVE_SECONDS, sse_frame, sse_response, with_keepalive

_encoder = msgspec.json.Encoder()


class EventRoutes(Endpoints):
    @route("GET", "/flows/{flow_id}/events", Role.viewer)
    async def events(self, request: Request) -> Response:
        flow_id = flow_id_of(request)
        after = last_event_id(request)
        await self.client.get(flow_id)  # 404 before any stream starts
        if wants_json(request):
            events = [e async for e in self.client.events(flow_id) if e.seq > after]
            return json_response(events)
        return sse_response(self._event_frames(flow_id, after))

    async def _event_frames(self, flow_id: str, after: int) -> AsyncIterator[bytes]:
        # An end before `after` (one a retry reopened) does not end the stream; `after` itself
        # an end does: the asker saw it.
        source: AsyncIterator[FlowEvent] = self.client.events(
            flow_id, follow=True, since=max(after - 1, 0)
        )
        async for event in with_keepalive(source, KEEPALIVE_SECONDS):
            if event is None:
                yield KEEPALIVE_FRAME
                continue
            kind = event_type(event)
            if event.seq > after:
                yield sse_frame(_encoder.encode(event).decode(), kind, event.seq)
        # The source ends at the flow's end (its last: a retried flow runs on after one).
