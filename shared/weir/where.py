"""`weir flows --where`: a small expression language that becomes a `weir.api.query` filter.

    status=failed and (tag=nightly or not name=etl) and created>2026-11-01T00:00:00Z

Conditions: `status=S` (`status=a,b` for any of several), `name=N`, `tag=T` (`tag=a,b` for
all of them, `anytag=a,b` for any), `meta.KEY=VALUE`, `created>T`, `created<T`,
`finished>T`, `finished<T`. Combine with `and`, `or`, `not` and parentheses; `and` binds
tighter than `or`.
"""

from __future__ import annotations

import re
from typing import Any

from weir_proto.errors import WeirException

_TOKEN = re.compile(r"\s*(\(|\)|[^\s()]+)")
_CONDITION = re.compile(r"^(?P<key>[a-z_]+(?:\.[^=<>]+)?)(?P<op>=|<|>)(?P<value>.+)$")


class WhereError(WeirException, ValueError):
    pass


def parse_where(text: str) -> dict[str, Any]:
    tokens = _TOKEN.findall(text)
    if not tokens:
        raise WhereError("empty --where expression")
    parser = _Parser(tokens)
    result = parser.expression()
    if parser.position != len(tokens):
        raise WhereError(f"unexpected {tokens[parser.position]!r} in --where")
    return result


class _Parser:
    def __init__(self, tokens: list[str]) -> None:
        self.tokens = tokens
        self.position = 0

    def peek(self) -> str | None:
        return self.tokens[self.position] if self.position < len(self.tokens) else None

    def take(self) -> str:
        token = self.peek()
        if token is None:
            raise WhereError("--where expression ends too early")
        self.position += 1
        return token

    def expression(self) -> dict[str, Any]:
        parts = [self.term()]
        while (self.peek() or "").lower() == "or":
            self.take()
            parts.append(self.term())
        return parts[0] if len(parts) == 1 else {"or": parts}

    def term(self) -> dict[str, Any]:
        parts = [self.factor()]
        while (self.peek() or "").lower() == "and":
            self.take()
            parts.append(self.factor())
        return parts[0] if len(parts) == 1 else {"and": parts}

    def factor(self) -> dict[str, Any]:
        token = self.take()
        if token.lower() == "not":
            return {"not": self.factor()}
        if token == "(":
            inner = self.expression()
            if self.take() != ")":
                raise WhereError("missing ')' in --where")
            return inner
        return _condition(token)


def _condition(token: str) -> dict[str, Any]:
    match = _CONDITION.match(token)
    if not match:
        raise WhereError(f"{token!r} is not a condition like status=failed or created>2026-01-01")
    key, op, value = match["key"], match["op"], match["value"]
    if op == "=":
        if key == "status":
            values = value.split(",")
            return {"status": values if len(values) > 1 else values[0]}
        if key == "name":
            return {"name": value}
        if key == "tag":
            return {"tags_all": value.split(",")}
        if key == "anytag":
            return {"tags_any": value.split(",")}
        if key.startswith("meta."):
            return {"metadata": {key[5:]: _scalar(value)}}
    elif key in ("created", "finished"):
        moment = value if "T" in value else f"{value}T00:00:00Z"
        return {f"{key}_{'after' if op == '>' else 'before'}": moment}
    raise WhereError(f"unknown condition {token!r}")


def _scalar(value: str) -> Any:
    if value in ("true", "false"):
        return value == "true"
    try:
        return int(value)
    except ValueError:
        return value
