"""weir-web's configuration: where it listens and who may call it.

`WEIR_WEB_LISTEN` is `HOST:PORT` (default `127.0.0.1:8080`). `WEIR_WEB_TOKENS` names a file
of `TOKEN ROLE` lines (`#` starts a comment); roles are `viewer` (read), `operator` (submit,
cancel, rerun, schedules) and `admin` (secrets too). Without a tokens file the API is open,
so weir-web then refuses any address but loopback.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
from dataclasses import dataclass, field
from enum import IntEnum
from pathlib import Path

from weir.config import ConfigError
from weir_proto.spec import MAX_SUBMIT_BYTES_DEFAULT

LISTEN_DEFAULT = "127.0.0.1:8080"
TOKEN_LENGTH_MIN = 16
"""Shorter tokens are refused: a bearer token is a password."""
SESSION_SECONDS_DEFAULT = 12 * 3600.0
BODY_BYTES_MAX_DEFAULT = MAX_SUBMIT_BYTES_DEFAULT
"""Largest request body read (the scheduler's default submit limit, WEIR_MAX_SUBMIT_BYTES)."""


class Role(IntEnum):
    """What a caller may do; each role may do everything the ones below it may."""

    viewer = 1
    operator = 2
    admin = 3


def token_digest(token: str) -> str:
    """Tokens are kept (and looked up) by digest only."""
    return hashlib.sha256(token.encode()).hexdigest()


def parse_tokens(text: str, source: str) -> dict[str, Role]:
    """`TOKEN ROLE` lines → role by token digest; every problem at once (ConfigError)."""
    roles: dict[str, Role] = {}
    problems: list[str] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        where = f"{source}:{number}"
        if len(parts) != 2:
            problems.append(f"{where}: expected `TOKEN ROLE`, found {len(parts)} words")
            continue
        token, role = parts
        if role not in Role.__members__:
            problems.append(
                f"{where}: role {role[:40]!r} is not one of {', '.join(Role.__members__)}"
            )
        if len(token) < TOKEN_LENGTH_MIN:
            problems.append(
                f"{where}: the token is shorter than {TOKEN_LENGTH_MIN} characters "
                "(make one with: python -c 'import secrets; print(secrets.token_urlsafe(32))')"
            )
        digest = token_digest(token)
        if digest in roles:
            problems.append(f"{where}: this token is already listed on an earlier line")
        if role in Role.__members__:
            roles[digest] = Role[role]
    if problems:
        raise ConfigError("; ".join(problems))
    return roles


def parse_listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"WEIR_WEB_LISTEN={value!r} is not HOST:PORT (e.g. {LISTEN_DEFAULT})")
    return host, int(port)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class WebSettings:
    host: str = "127.0.0.1"
    port: int = 8080
    tokens: dict[str, Role] | None = field(default=None, repr=False)
    """Role by token digest; None: no tokens file, every caller is an admin (loopback only)."""
    session_seconds: float = SESSION_SECONDS_DEFAULT
    body_bytes_max: int = BODY_BYTES_MAX_DEFAULT

    def __post_init__(self) -> None:
        if self.tokens is None and not is_loopback(self.host):
            raise ConfigError(
                f"WEIR_WEB_LISTEN={self.host}:{self.port} is not a loopback address and "
                "WEIR_WEB_TOKENS is not set: without tokens anyone who reaches the port "
                "could run and cancel flows; set WEIR_WEB_TOKENS to a file of `TOKEN ROLE` "
                "lines, or listen on 127.0.0.1"
            )

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> WebSettings:
        env = dict(os.environ if env is None else env)
        host, port = parse_listen(env.get("WEIR_WEB_LISTEN", LISTEN_DEFAULT))
        tokens = None
        path = env.get("WEIR_WEB_TOKENS", "")
        if path:
            try:
                text = Path(path).read_text()
            except OSError as exc:
                raise ConfigError(
                    f"WEIR_WEB_TOKENS={path!r} cannot be read: {exc.strerror or exc}"
                ) from None
            tokens = parse_tokens(text, path)
            if not tokens:
                raise ConfigError(f"WEIR_WEB_TOKENS={path!r} lists no token")
        return cls(host=host, port=port, tokens=tokens)
