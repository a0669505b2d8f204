"""`weir flows --where` and `weir tasks --where`: a small expression language that becomes a
`weir.api.query` (flows) or `weir.api.tasks` (tasks across flows) filter.

    status=failed and (tag=nightly or not name=etl) and created>2026-11-01T00:00:00Z
    status=failed and queue=gpu

Flow conditions (`FLOW_FIELDS`): `id=A` (`id=a,b` for any of several), `status=S`
(`status=a,b`), `name=N`, `queue=Q` (flows with a task on it; `queue=a,b`), `tag=T`
(`tag=a,b` for all of them, `anytag=a,b` for any), `meta.KEY=VALUE`, `param.NAME=VALUE`,
`created>T`, `created<T`, `finished>T`, `finished<T`, `scheduled>T`, `scheduled<T` (a
delayed start). Task conditions (`TASK_FIELDS`): `flow=ID` (`flow=a,b`), `flow_name=N`,
`name=N`, `status=S`, `queue=Q` (each `=a,b` for any), `finished>T`, `finished<T`.
Combine with `and`, `or`, `not` and parentheses; `and` binds tighter than `or`. A time
without `T` is that day at 00:00 UTC.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from weir_proto.errors import WeirException

_TOKEN = re.compile(r"\s*(\(|\)|[^\s()]+)")
_CONDITION = re.compile(r"^(?P<key>[a-z_]+(?:\.[^=<>]+)?)(?P<op>=|<|>)(?P<value>.+)$")

Build = Callable[[str, str], dict[str, Any]]
"""(key, value) -> one filter condition."""


class WhereError(WeirException, ValueError):
    pass


def _any_of(name: str) -> Build:
    def build(_: str, value: str) -> dict[str, Any]:
        values = value.split(",")
        return {name: values if len(values) > 1 else values[0]}

    return build


def _scalar(value: str) -> Any:
    if value in ("true", "false"):
        return value == "true"
    try:
        return int(value)
    except ValueError:
        return value


def _param(key: str, value: str) -> dict[str, Any]:
    # A parameter has a type: `param.n=3` matches the int 3 and the string "3" alike.
    name = key.partition(".")[2]
    typed = _scalar(value)
    if typed == value:
        return {"params": {name: value}}
    return {"or": [{"params": {name: typed}}, {"params": {name: value}}]}


def _time(name: str) -> tuple[Build, Build]:
    def at(value: str) -> str:
        return value if "T" in value else f"{value}T00:00:00Z"

    return (
        lambda _, value: {f"{name}_after": at(value)},
        lambda _, value: {f"{name}_before": at(value)},
    )


_Field = tuple[Build | None, Build | None, Build | None]
"""How a field reads with `=`, `>` and `<` (None: not with that operator)."""

FLOW_FIELDS: Mapping[str, _Field] = {
    "id": (_any_of("id"), None, None),
    "status": (_any_of("status"), None, None),
    "name": (lambda _, v: {"name": v}, None, None),
    "queue": (_any_of("queue"), None, None),
    "tag": (lambda _, v: {"tags_all": v.split(",")}, None, None),
    "anytag": (lambda _, v: {"tags_any": v.split(",")}, None, None),
    "meta.KEY": (lambda k, v: {"metadata": {k.partition(".")[2]: _scalar(v)}}, None, None),
    "param.NAME": (_param, None, None),
    "created": (None, *_time("created")),
    "finished": (None, *_time("finished")),
    "scheduled": (None, *_time("scheduled")),
}
TASK_FIELDS: Mapping[str, _Field] = {
    "flow": (_any_of("flow"), None, None),
    "flow_name": (lambda _, v: {"flow_name": v}, None, None),
    "name": (lambda _, v: {"name": v}, None, None),
    "status": (_any_of("status"), None, None),
    "queue": (_any_of("queue"), None, None),
    "finished": (None, *_time("finished")),
}


def parse_where(text: str) -> dict[str, Any]:
    """A `weir flows --where` expression as a `weir.api.query` filter."""
    return _parse(text, FLOW_FIELDS, "flows")


def parse_task_where(text: str) -> dict[str, Any]:
    """A `weir tasks --where` expression as a `weir.api.tasks` filter."""
    return _parse(text, TASK_FIELDS, "tasks")


def _parse(text: str, fields: Mapping[str, _Field], what: str) -> dict[str, Any]:
    tokens = _TOKEN.findall(text)
    if not tokens:
        raise WhereError("empty --where expression")
    parser = _Parser(tokens, fields, what)
    result = parser.expression()
    if parser.position != len(tokens):
        raise WhereError(f"unexpected {tokens[parser.position]!r} in --where")
    return result


class _Parser:
    def __init__(self, tokens: list[str], fields: Mapping[str, _Field], what: str) -> None:
        self.tokens = tokens
        self.position = 0
        self.fields = fields
        self.what = what

    def peek(self) -> str | None:
        return self.tokens[self.position] if self.position < len(self.tokens) else None

    def take(self) -> str:
        token = self.peek()
        if token is None:
            raise WhereError("--where expression ends too early")
        self.position += 1
        return token

    def expression(self) -> dict[str, Any]:
        return self.joined("or", self.term)

    def term(self) -> dict[str, Any]:
        return self.joined("and", self.factor)

    def joined(self, word: str, part: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """`part`, or several joined by `word` (`and` binds tighter than `or`)."""
        parts = [part()]
        while (self.peek() or "").lower() == word:
            self.take()
            parts.append(part())
        return parts[0] if len(parts) == 1 else {word: parts}

    def factor(self) -> dict[str, Any]:
        token = self.take()
        if token.lower() == "not":
            return {"not": self.factor()}
        if token == "(":
            inner = self.expression()
            if self.take() != ")":
                raise WhereError("missing ')' in --where")
            return inner
        return self.condition(token)

    def condition(self, token: str) -> dict[str, Any]:
        valid = ", ".join(self.fields)
        match = _CONDITION.match(token)
        if not match:
            raise WhereError(
                f"{token!r} is not a condition like status=failed or created>2026-01-01 "
                f"(fields of {self.what}: {valid})"
            )
        key, op, value = match["key"], match["op"], match["value"]
        head, dot, _ = key.partition(".")
        field = f"{head}.{'KEY' if head == 'meta' else 'NAME'}" if dot else key
        how = self.fields.get(field)
        if how is None:
            raise WhereError(f'unknown field "{key}" in {token!r}; fields of {self.what}: {valid}')
        build = how[("=", ">", "<").index(op)]
        if build is None:
            usable = " ".join(o for o, b in zip(("=", ">", "<"), how, strict=True) if b)
            raise WhereError(f'field "{key}" in {token!r} takes {usable}, not {op}')
        return build(key, value)
