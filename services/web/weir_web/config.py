"""weir-web's configuration: where it listens and who may call it.

`WEIR_WEB_LISTEN` is `HOST:PORT` (default `127.0.0.1:8080`). `WEIR_WEB_TOKENS` names a file
of `TOKEN ROLE` lines (`#` starts a comment); roles are `viewer` (read), `operator` (submit,
cancel, rerun, schedules) and `admin` (secrets too). Without a tokens file the API is open,
so weir-web then refuses any address but loopback. Both variables are declared in
`weir.config.Settings`; this module reads the tokens file.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import IntEnum
from pathlib import Path

from weir.config import WEB_LISTEN_DEFAULT, ConfigError, Settings
from weir.setting import read_one
from weir_proto.spec import MAX_SUBMIT_BYTES_DEFAULT

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


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class WebSettings:
    host: str = WEB_LISTEN_DEFAULT[0]
    port: int = WEB_LISTEN_DEFAULT[1]
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
    def from_env(cls, env: Mapping[str, str] | None = None) -> WebSettings:
        """`WEIR_WEB_LISTEN` and `WEIR_WEB_TOKENS` from `env` (default: the process
        environment), as `Settings` declares them."""
        env = os.environ if env is None else env
        return cls.from_listen_and_tokens(
            read_one(Settings, "web_listen", env), read_one(Settings, "web_tokens", env)
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> WebSettings:
        return cls.from_listen_and_tokens(settings.web_listen, settings.web_tokens)

    @classmethod
    def from_listen_and_tokens(cls, listen: tuple[str, int], path: str) -> WebSettings:
        """Listen on `listen`, with the roles of tokens file `path` (empty: no tokens)."""
        tokens = None
        if path:
            tokens = parse_tokens(read_tokens_file(path), path)
            if not tokens:
                raise ConfigError(f"WEIR_WEB_TOKENS={path!r} lists no token")
        host, port = listen
        return cls(host=host, port=port, tokens=tokens)


def read_tokens_file(path: str) -> str:
    """The text of the `WEIR_WEB_TOKENS` file (ConfigError: it cannot be read)."""
    try:
        return Path(path).read_text()
    except OSError as exc:
        raise ConfigError(
            f"WEIR_WEB_TOKENS={path!r} cannot be read: {exc.strerror or exc}"
        ) from None
