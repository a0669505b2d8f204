"""`/session`: a token exchanged for a session cookie (HttpOnly, SameSite=Strict, Secure over
TLS; a signed, expiring token any weir-web with the same key accepts: `weir_web.auth`) and the
CSRF secret its writes must carry."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from weir_proto.errors import ErrorCode

from weir_web.auth import SESSION_COOKIE, Denied, check_origin, over_tls, set_session_cookie
from weir_web.bodies import Login, Session, role_name
from weir_web.config import Role
from weir_web.endpoints import Endpoints, json_response, route
from weir_web.errors import HttpFailure
from weir_web.params import read_json


class SessionRoutes(Endpoints):
    @route("POST", "/session", "none")
    async def session_open(self, request: Request) -> Response:
        check_origin(request)  # before the body is read: a login CSRF gets no session
        login = await read_json(request, Login, 64 * 1024)
        try:
            cookie, session = self.gate.open_session(login.token)
        except Denied as exc:
            raise HttpFailure(ErrorCode.UNAUTHORIZED, exc.message) from None
        response = json_response(Session(role_name(session.role), session.csrf), 201)
        set_session_cookie(response, request, cookie, self.settings.session_seconds)
        return response

    @route("GET", "/session", "any")
    async def session_show(self, request: Request) -> Response:
        caller = self.gate.caller(request)
        if caller.session is None:
            raise HttpFailure(
                ErrorCode.UNAUTHORIZED, "no session: log in with POST /api/v1/session"
            )
        return json_response(Session(role_name(caller.role), caller.session.csrf))

    @route("DELETE", "/session", Role.viewer)
    async def session_close(self, request: Request) -> Response:
        """Clears the cookie (a session is its cookie: nothing is kept to forget)."""
        response = Response(status_code=204)
        response.delete_cookie(
            SESSION_COOKIE,
            path="/",
            httponly=True,
            samesite="strict",
            secure=over_tls(request),
        )
        return response
