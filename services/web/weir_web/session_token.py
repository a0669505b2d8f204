"""The session cookie's value: a signed, expiring token that any weir-web holding the same
key (`WEIR_WEB_SESSION_KEY_FILE`) checks on its own, with no shared store.

`v1.ROLE.TOKEN_ID.EXPIRES.CSRF.MAC`: the role the login token had, a keyed digest of that
token (so the session ends when its token leaves the tokens file, without the cookie telling
anyone the token's own digest), the expiry in Unix seconds, the session's CSRF secret, and an
HMAC-SHA256 over all of them with the key. A change to any part, another key, or a time past
the expiry makes the cookie worthless. The cookie is HttpOnly, so a page learns its CSRF
secret only from `POST`/`GET /api/v1/session`, whose answers no other site can read.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass

from weir_web.config import Role

FORMAT = "v1"
KEY_BYTES = 32
_SEPARATOR = "."


@dataclass(frozen=True, slots=True)
class SessionClaims:
    """What a session cookie vouches for."""

    role: Role
    token_id: str
    """`token_id(key, digest)` of the token the session was opened with."""
    expires: int
    """Unix seconds; the cookie is refused from then on."""
    csrf: str
    """The secret every write made with the cookie sends in `X-CSRF-Token`."""


def token_id(key: bytes, digest: str) -> str:
    """The session's reference to a login token, by the token's digest (`token_digest`)."""
    return hmac.new(key, b"token:" + digest.encode(), hashlib.sha256).hexdigest()[:32]


def new_csrf() -> str:
    return secrets.token_urlsafe(32)


def _mac(key: bytes, payload: str) -> str:
    digest = hmac.new(key, b"session:" + payload.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def seal(key: bytes, claims: SessionClaims) -> str:
    """The cookie value vouching for `claims`, signed with `key`."""
    payload = _SEPARATOR.join(
        (FORMAT, claims.role.name, claims.token_id, str(claims.expires), claims.csrf)
    )
    return f"{payload}{_SEPARATOR}{_mac(key, payload)}"


def unseal(key: bytes, value: str, now: float) -> SessionClaims | None:
    """The claims of cookie `value` if `key` signed it and it has not expired; else None."""
    payload, _, mac = value.rpartition(_SEPARATOR)
    if not hmac.compare_digest(mac.encode(), _mac(key, payload).encode()):
        return None
    parts = payload.split(_SEPARATOR)
    if len(parts) != 5 or parts[0] != FORMAT:
        return None
    _, role, reference, expires, csrf = parts
    if role not in Role.__members__ or not expires.isdigit() or int(expires) <= now:
        return None
    return SessionClaims(Role[role], reference, int(expires), csrf)
