"""Who is calling: a bearer token, or the session cookie a token was exchanged for.

Bearer tokens (`Authorization: Bearer TOKEN`) are not sent by a browser on its own, so they
need no CSRF check. A session cookie is (HttpOnly, SameSite=Strict): a write made with it must
also carry the session's CSRF token in the `X-CSRF-Token` header, which only a page that read
it from `POST /api/v1/session` (or `GET`) knows. Every write, and the login itself, is
refused when its `Origin` is another site (`check_origin`). Sessions live in this process's
memory: a restart of weir-web logs browsers out.
"""

from __future__ import annotations

import hmac
import secrets
import time
from dataclasses import dataclass

from starlette.requests import Request
from weir_proto.errors import WeirException

from weir_web.config import Role, WebSettings, token_digest

SESSION_COOKIE = "weir_session"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class Denied(WeirException):
    """The caller may not do this: `status` 401 (who are you?) or 403 (not you)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True, slots=True)
class Session:
    role: Role
    csrf: str
    expires: float


@dataclass(frozen=True, slots=True)
class Caller:
    role: Role
    session: Session | None = None


class Gate:
    """Checks every request's credentials and keeps the sessions."""

    def __init__(self, settings: WebSettings) -> None:
        self.settings = settings
        self.sessions: dict[str, Session] = {}

    def role_of_token(self, token: str) -> Role | None:
        if self.settings.tokens is None:
            return Role.admin
        return self.settings.tokens.get(token_digest(token))

    def open_session(self, token: str) -> tuple[str, Session]:
        role = self.role_of_token(token)
        if role is None:
            raise Denied(401, "the token is not valid")
        self._forget_expired()
        session_id = secrets.token_urlsafe(32)
        session = Session(
            role, secrets.token_urlsafe(32), time.time() + self.settings.session_seconds
        )
        self.sessions[session_id] = session
        return session_id, session

    def close_session(self, request: Request) -> None:
        self.sessions.pop(request.cookies.get(SESSION_COOKIE, ""), None)

    def _forget_expired(self) -> None:
        now = time.time()
        for key in [k for k, s in self.sessions.items() if s.expires <= now]:
            del self.sessions[key]

    def caller(self, request: Request) -> Caller:
        """The caller, from the Authorization header or the session cookie (Denied: 401)."""
        if self.settings.tokens is None and not _loopback_host(request):
            # Open (no tokens) weir-web serves loopback only; a page whose own name resolves
            # to 127.0.0.1 (DNS rebinding) sends its name in Host and is turned away.
            raise Denied(403, "without WEIR_WEB_TOKENS, weir-web answers only to localhost")
        header = request.headers.get("authorization", "")
        if header:
            scheme, _, token = header.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise Denied(401, "Authorization must be `Bearer TOKEN`")
            role = self.role_of_token(token.strip())
            if role is None:
                raise Denied(401, "the bearer token is not valid")
            return Caller(role)
        session = self.sessions.get(request.cookies.get(SESSION_COOKIE, ""))
        if session is not None and session.expires > time.time():
            return Caller(session.role, session)
        if self.settings.tokens is None:
            return Caller(Role.admin)
        raise Denied(401, "send `Authorization: Bearer TOKEN`, or log in with POST /api/v1/session")

    def require(self, request: Request, role: Role) -> Caller:
        """The caller, if it holds `role` (and, for a cookie write, the CSRF token)."""
        caller = self.caller(request)
        if request.method not in SAFE_METHODS:
            check_origin(request)
        if caller.role < role:
            raise Denied(
                403, f"this needs the {role.name} role; the caller is a {caller.role.name}"
            )
        if caller.session is not None and request.method not in SAFE_METHODS:
            sent = request.headers.get(CSRF_HEADER, "")
            if not hmac.compare_digest(sent.encode(), caller.session.csrf.encode()):
                raise Denied(
                    403,
                    f"a write with the session cookie needs the {CSRF_HEADER} header "
                    "(the csrf value of POST or GET /api/v1/session)",
                )
        return caller


def _loopback_host(request: Request) -> bool:
    host = request.headers.get("host", "").rsplit(":", 1)[0].strip("[]")
    return host in {"localhost", "127.0.0.1", "::1"}


def check_origin(request: Request) -> None:
    """Refuse (403) a request a page of another site made: every write, and the login,
    which would otherwise let that page log the browser in with the attacker's token (a
    login CSRF: the victim then works, and types, in the attacker's session)."""
    if not _same_origin(request):
        raise Denied(403, "a write from another site's page is refused")


def _same_origin(request: Request) -> bool:
    """No Origin header (curl, scripts), or the page's origin is this very host."""
    origin = request.headers.get("origin")
    if origin is None:
        return True
    return origin.partition("://")[2] == request.headers.get("host", "")
