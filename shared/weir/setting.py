"""One setting declared once: its variable, default, parser and doc line.

`Settings` (weir.config) declares every field with `setting(...)`; `from_env` reads them all
through their parsers, and the README's configuration table is checked against the
declarations (tests/unit/test_settings.py), so the variable, its default and its
documentation cannot drift apart.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Iterator, Mapping
from dataclasses import MISSING, Field, dataclass, field, fields
from typing import Any, cast
from urllib.parse import urlsplit

from weir_proto.durations import parse_duration
from weir_proto.errors import WeirException

Parser = Callable[[str, str], Any]
"""`(variable, text) -> value`: the text is stripped and never empty (an empty or unset
variable means the default). A bad value raises ConfigError naming the variable."""


class ConfigError(WeirException, ValueError):
    """A setting has a value we cannot use; the message names the variable."""


@dataclass(frozen=True, slots=True)
class Setting:
    """How one `Settings` field is read from the environment and documented."""

    env: str
    """The variable, `WEIR_...`."""
    parse: Parser
    doc: str
    """The `meaning` column of the README's configuration table."""
    shown: str
    """The default as the README's table shows it: a value in backticks, which `parse`
    reads as the default itself, or words (`host name`, `never`) for one that is not a
    value."""
    fallback: tuple[str, ...] = ()
    """Variables read, in order, when `env` is unset (`KUBECONFIG`)."""

    def text(self, env: Mapping[str, str]) -> str:
        """The stripped text of the first of `env` and its fallbacks that is set."""
        for name in (self.env, *self.fallback):
            raw = env.get(name, "").strip()
            if raw:
                return raw
        return ""

    def row(self) -> str:
        """Its line in the README's configuration table."""
        return f"| `{self.env}` | {self.shown} | {self.doc} |"


def setting(
    env: str,
    default: Any,
    parse: Parser,
    doc: str,
    *,
    shown: str | None = None,
    fallback: tuple[str, ...] = (),
    factory: Callable[[], Any] | None = None,
    repr: bool = True,
) -> Any:
    """A `Settings` field read from `env` by `parse` (unset or empty: `default`, or what
    `factory` makes). `shown` defaults to the default in backticks."""
    declared = Setting(
        env, parse, doc, f"`{default}`" if shown is None else shown, fallback=fallback
    )
    metadata = {"setting": declared}
    if factory is not None:
        return field(default_factory=factory, metadata=metadata, repr=repr)
    if isinstance(default, dict | list | set):
        return field(default_factory=lambda: type(default)(default), metadata=metadata)
    return field(default=default, metadata=metadata, repr=repr)


def declared(cls: type) -> Iterator[tuple[Field[Any], Setting]]:
    """The fields of dataclass `cls` declared with `setting(...)`, in declaration order."""
    for item in fields(cls):
        found = item.metadata.get("setting")
        if isinstance(found, Setting):
            yield item, found


def declared_setting(cls: type, name: str) -> Setting:
    """The declaration of field `name` of `cls`."""
    for item, found in declared(cls):
        if item.name == name:
            return found
    raise KeyError(name)


def default_of(item: Field[Any]) -> Any:
    if item.default is not MISSING:
        return item.default
    return cast(Callable[[], Any], item.default_factory)()


def read_one(cls: type, name: str, env: Mapping[str, str]) -> Any:
    """Field `name` of `cls` from `env`, as `read` reads it."""
    for item, found in declared(cls):
        if item.name == name:
            text = found.text(env)
            return found.parse(found.env, text) if text else default_of(item)
    raise KeyError(name)


def read(cls: type, env: Mapping[str, str]) -> dict[str, Any]:
    """Every declared field of `cls` from `env`, by field name. Raises one `ConfigError`
    naming every bad variable, a line each."""
    values: dict[str, Any] = {}
    problems: list[str] = []
    for item, declared_setting in declared(cls):
        text = declared_setting.text(env)
        try:
            values[item.name] = (
                declared_setting.parse(declared_setting.env, text) if text else default_of(item)
            )
        except ConfigError as exc:
            problems.append(str(exc))
    if problems:
        raise ConfigError("\n".join(problems))
    return values


# Parsers. Their messages say what the value is not and what it should be.


def text(name: str, raw: str) -> str:
    return raw


_ENCODE_HINT = "percent-encode / ? # [ ] @ in a user or password"


def url_problem(url: str) -> str | None:
    """What stops `url` from being read as a URL, in words that repeat none of it (a URL may
    hold a password: urllib's own messages quote parts of it)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return f"it has brackets that are not an IPv6 address ({_ENCODE_HINT})"
    try:
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        return f"its port is not a number from 0 to 65535 ({_ENCODE_HINT})"
    return None


def postgres_url(name: str, raw: str) -> str:
    """A URL asyncpg connects with. The value is never repeated in the error: it may hold a
    password."""
    how = "give postgresql://USER[:PASSWORD]@HOST[:PORT]/DATABASE"
    problem = url_problem(raw)
    if problem is not None:
        raise ConfigError(f"{name} is not a URL: {problem}; {how}")
    scheme = urlsplit(raw).scheme
    if scheme not in ("postgresql", "postgres"):
        got = f"scheme {scheme!r}" if scheme.isalnum() else "no scheme"
        raise ConfigError(f"{name} is not a Postgres URL ({got}); {how}")
    return raw


def nats_server_urls(raw: str) -> list[str]:
    """The servers of a NATS URL setting: comma-separated, a bare HOST:PORT meaning
    nats://HOST:PORT (as nats-py reads it)."""
    return [one if "://" in one else f"nats://{one}" for one in (p.strip() for p in raw.split(","))]


def nats_urls(name: str, raw: str) -> str:
    """One NATS server URL or several, comma-separated (the servers of one cluster)."""
    how = "give nats://HOST:PORT (or tls://, ws://, wss://), several separated by commas"
    for url in nats_server_urls(raw):
        problem = url_problem(url)
        if problem is not None:
            raise ConfigError(f"{name} has a server that is not a URL: {problem}; {how}")
        parts = urlsplit(url)
        if parts.scheme not in ("nats", "tls", "ws", "wss") or not parts.hostname:
            raise ConfigError(f"{name} has a server that is not a NATS URL; {how}")
    return raw


def upper(name: str, raw: str) -> str:
    return raw.upper()


def _at_least(convert: Callable[[str], Any], what: str, minimum: float) -> Parser:
    def parse(name: str, raw: str) -> Any:
        try:
            value = convert(raw)
        except ValueError:
            raise ConfigError(f"{name}={raw!r} is not {what}") from None
        if value < minimum:
            raise ConfigError(f"{name}={value} must be at least {minimum}")
        return value

    return parse


def whole(minimum: int = 1) -> Parser:
    """A whole number of at least `minimum`."""
    return _at_least(int, "a whole number", minimum)


def number(minimum: float = 0.0) -> Parser:
    """A number of at least `minimum`."""
    return _at_least(float, "a number", minimum)


def duration(name: str, raw: str) -> float:
    """A duration: `30`, `90s`, `12h`, `7d`, ... (positive)."""
    try:
        value = parse_duration(raw)
    except ValueError as exc:
        raise ConfigError(f"{name}: {exc}") from None
    if value <= 0:
        raise ConfigError(f"{name}={raw!r} must be positive")
    return value


_OFF = ("off", "max", "none")
_SIZE_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}


def _size(name: str, raw: str, off: str) -> int:
    text = raw.upper().removesuffix("IB").removesuffix("B")
    unit = text[-1] if text and text[-1] in _SIZE_UNITS else ""
    digits = text[: len(text) - len(unit)]
    if not digits.isdigit() or int(digits) < 1:
        raise ConfigError(f"{name}={raw!r} is not a size like 1048576, 512K, 64M or 4G{off}")
    return int(digits) * _SIZE_UNITS[unit]


def size(name: str, raw: str) -> int:
    """A size in bytes (`1048576`, `512K`, `64M`, `4G`, `1T`)."""
    return _size(name, raw, "")


def size_or_off(name: str, raw: str) -> int | None:
    """A size, or `off` for no limit (None)."""
    return None if raw.lower() in _OFF else _size(name, raw, " (or off for no limit)")


def whole_or_off(name: str, raw: str) -> int | None:
    """A whole number of at least 1, or `off` for no limit (None)."""
    return None if raw.lower() in _OFF else whole(1)(name, raw)


UID_MAX = 2**32 - 2
"""The largest uid Linux hands out (2**32 - 1 is `(uid_t) -1`, "no change")."""


def uid_range_or_off(name: str, raw: str) -> tuple[int, int] | None:
    """`FIRST-LAST`, a range of uids (both included), or `off` (None)."""
    if raw.lower() in _OFF:
        return None
    first, dash, last = raw.partition("-")
    if dash and all(part.isascii() and part.strip().isdecimal() for part in (first, last)):
        low, high = int(first), int(last)
        if 1 <= low <= high <= UID_MAX:
            return low, high
    raise ConfigError(
        f"{name}={raw!r} is not a range of uids FIRST-LAST with 1 <= FIRST <= LAST <= "
        f"{UID_MAX} (e.g. 2000000000-2000065535), or off"
    )


def flag(name: str, raw: str) -> bool:
    return raw.lower() in ("1", "true", "yes")


def names(name: str, raw: str) -> tuple[str, ...]:
    """A comma-separated list (`a,b`), blanks dropped."""
    return tuple(part.strip() for part in raw.split(",") if part.strip())


def one_of(choices: tuple[str, ...], what: str) -> Parser:
    def parse(name: str, raw: str) -> str:
        if raw not in choices:
            raise ConfigError(f"{name}={raw!r} is not {what} (choose: {', '.join(choices)})")
        return raw

    return parse


def host_port(name: str, raw: str) -> tuple[str, int]:
    """`HOST:PORT` (`[::1]:8080` for an IPv6 host)."""
    host, sep, port = raw.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"{name}={raw!r} is not HOST:PORT (e.g. 127.0.0.1:8080)")
    return host, int(port)


def key32(name: str, raw: str) -> bytes:
    """A 32-byte key in URL-safe base64 (padding optional)."""
    try:
        key = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))
    except (binascii.Error, ValueError):
        key = b""
    if len(key) != 32:
        raise ConfigError(
            f"{name} must be 32 bytes in URL-safe base64 (make one with `weir secret keygen`)"
        )
    return key


def limits(name: str, raw: str) -> dict[str, int]:
    """Comma-separated `QUEUE=LIMIT` pairs, each limit at least 1."""
    found: dict[str, int] = {}
    for part in filter(None, (p.strip() for p in raw.split(","))):
        queue, sep, value = part.partition("=")
        if not sep or not queue.strip() or not value.strip().isdigit() or int(value) < 1:
            raise ConfigError(f"{name}: {part!r} is not QUEUE=LIMIT with a limit of at least 1")
        found[queue.strip()] = int(value)
    return found
