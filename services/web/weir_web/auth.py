"""Who is calling: a bearer token, or the session cookie a token was exchanged for.

Bearer tokens (`Authorization: Bearer TOKEN`) are not sent by a browser on its own, so they
need no CSRF check. A session cookie is (HttpOnly, SameSite=Strict): a write made with it must
also carry the session's CSRF secret in the `X-CSRF-Token` header, which only a page that read
it from `POST /api/v1/session` (or `GET`) knows. Every write, and the login itself, is
refused when its `Origin` is another site (`check_origin`).

A session is its cookie: a signed, expiring token (`weir_web.session_token`) that every
weir-web with the same key accepts, across replicas and restarts. It names its login token by
a keyed digest, checked on each request against the tokens file as it is now (re-read when it
changes), so removing a token ends its sessions too. Logging out clears the cookie; a copy of
it taken before stays valid until it expires (at most `session_seconds`).
"""

from __future__ import annotations

import hmac
import logging
import os
import secrets
import time
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import Response
from weir.config import ConfigError
from weir_proto.errors import WeirException

from weir_web.config import Role, WebSettings, read_roles, token_digest
from weir_web.session_token import SessionClaims, new_csrf, seal, token_id, unseal

log = logging.getLogger("weir.web")

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
class Caller:
    role: Role
    session: SessionClaims | None = None
    renewed: str | None = None
    """A fresh cookie value for a session past half its life, to send back."""


class TokenRoles:
    """The role of each token digest, as the tokens file says now: re-read when the file
    changes (a Kubernetes Secret volume swaps it in place). A file that turns unreadable or
    bad refuses every token until it is fixed (a revoked token must not live on)."""

    def __init__(self, roles: dict[str, Role] | None, path: str) -> None:
        self.roles = roles
        self.path = path
        self.seen = self._stamp()

    def _stamp(self) -> tuple[int, int, int] | None:
        try:
            found = os.stat(self.path)
        except OSError:
            return None
        return (found.st_ino, found.st_mtime_ns, found.st_size)

    def current(self) -> dict[str, Role] | None:
        """Role by token digest; None: no tokens file (every caller is an admin)."""
        if not self.path:
            return self.roles
        stamp = self._stamp()
        if stamp != self.seen:
            self.seen = stamp
            try:
                self.roles = read_roles(self.path)
                log.info("WEIR_WEB_TOKENS changed: %d tokens", len(self.roles))
            except ConfigError as exc:
                self.roles = {}
                log.error("WEIR_WEB_TOKENS refused, every token is refused until fixed: %s", exc)
        return self.roles


class Gate:
    """Checks every request's credentials, and opens and renews sessions."""

    def __init__(self, settings: WebSettings) -> None:
        self.settings = settings
        self.key = settings.session_key or secrets.token_bytes(32)
        self.tokens = TokenRoles(settings.tokens, settings.tokens_file)
        self._ids: tuple[dict[str, Role] | None, dict[str, Role]] = (None, {})

    def _role_by_token_id(self, roles: dict[str, Role]) -> dict[str, Role]:
        """Role by `token_id` of each token of `roles` (kept until the file changes)."""
        if self._ids[0] is not roles:
            ids = {token_id(self.key, digest): role for digest, role in roles.items()}
            self._ids = (roles, ids)
        return self._ids[1]

    def role_of_token(self, token: str) -> Role | None:
        roles = self.tokens.current()
        if roles is None:
            return Role.admin
        return roles.get(token_digest(token))

    def open_session(self, token: str) -> tuple[str, SessionClaims]:
        """The cookie value of a new session for `token`, and its claims (Denied: 401)."""
        role = self.role_of_token(token)
        if role is None:
            raise Denied(401, "the token is not valid")
        claims = SessionClaims(
            role,
            token_id(self.key, token_digest(token)),
            int(time.time() + self.settings.session_seconds),
            new_csrf(),
        )
        return seal(self.key, claims), claims

    def _session(self, value: str) -> tuple[SessionClaims, str | None] | None:
        """The claims of a valid session cookie (and its renewal, if due), else None."""
        now = time.time()
        claims = unseal(self.key, value, now) if value else None
        if claims is None:
            return None
        roles = self.tokens.current()
        if roles is not None and self._role_by_token_id(roles).get(claims.token_id) != claims.role:
            return None  # its token was removed from the file, or changed role
        lifetime = self.settings.session_seconds
        if claims.expires - now >= lifetime / 2:
            return claims, None
        renewed = SessionClaims(claims.role, claims.token_id, int(now + lifetime), claims.csrf)
        return renewed, seal(self.key, renewed)

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
        session = self._session(request.cookies.get(SESSION_COOKIE, ""))
        if session is not None:
            claims, renewed = session
            return Caller(claims.role, claims, renewed)
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


def set_session_cookie(response: Response, request: Request, value: str, seconds: float) -> None:
    """The session cookie: HttpOnly (no script reads it), SameSite=Strict (no other site's
    page sends it), Secure when the request came over TLS."""
    response.set_cookie(
        SESSION_COOKIE,
        value,
        max_age=int(seconds),
        httponly=True,
        samesite="strict",
        secure=over_tls(request),
        path="/",
    )


def over_tls(request: Request) -> bool:
    """The browser reached weir-web over TLS: directly, or through a proxy that ended TLS
    and says so in `X-Forwarded-Proto` (an Ingress). The header is trusted for this only,
    where a lie can but make the cookie stricter."""
    forwarded = request.headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
    return request.url.scheme == "https" or forwarded == "https"


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
