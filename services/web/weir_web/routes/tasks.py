"""`/tasks`: tasks across flows, as `weir tasks` lists them."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from weir.where import WhereError, parse_task_where
from weir_proto.api import LIST_LIMIT_DEFAULT, LIST_LIMIT_MAX
from weir_proto.errors import ErrorCode

from weir_web.config import Role
from weir_web.endpoints import Endpoints, json_response, route
from weir_web.errors import HttpFailure
from weir_web.params import int_query


class TaskRoutes(Endpoints):
    @route("GET", "/tasks", Role.viewer)
    async def tasks(self, request: Request) -> Response:
        """Tasks across flows (`weir tasks`): the newest flows' first."""
        limit = int_query(request, "limit", LIST_LIMIT_DEFAULT, 1, LIST_LIMIT_MAX)
        where_text = request.query_params.get("where") or None
        try:
            where = parse_task_where(where_text) if where_text is not None else None
        except WhereError as exc:
            raise HttpFailure(ErrorCode.BAD_REQUEST, f"where: {exc}") from None
        cursor = request.query_params.get("cursor") or None
        return json_response(await self.client.tasks(where, limit or LIST_LIMIT_DEFAULT, cursor))
