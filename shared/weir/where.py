"""`weir flows --where` and `weir tasks --where`: a small expression language that becomes a
`weir.api.query` (flows) or `weir.api.tasks` (tasks across flows) filter. The CLI and the
HTTP API (`GET /flows?where=`, `GET /tasks?where=`) both read it with this module.

    status=failed and (tag=nightly or not name=etl) and created>2026-11-01T00:00:00Z
    status=failed and queue=gpu
    name="nightly etl" or name='say "hi"'

Flow conditions (`FLOW_FIELDS`): `id=A` (`id=a,b` for any of several), `status=S`
(`status=a,b`), `name=N`, `queue=Q` (flows with a task on it; `queue=a,b`), `tag=T`
(`tag=a,b` for all of them, `anytag=a,b` for any), `meta.KEY=VALUE`, `param.NAME=VALUE`,
`created>T`, `created<T`, `finished>T`, `finished<T`, `scheduled>T`, `scheduled<T` (a
delayed start). Task conditions (`TASK_FIELDS`): `flow=ID` (`flow=a,b`), `flow_name=N`,
`name=N`, `status=S`, `queue=Q` (each `=a,b` for any), `finished>T`, `finished<T`.
Combine with `and`, `or`, `not` and parentheses; `and` binds tighter than `or`. A time
without `T` is that day at 00:00 UTC.

Quoting: a value (what follows the operator) may be quoted, wholly or in part, with `"…"` or
`'…'`, to hold spaces, parentheses, commas, `=`, or the words `and`/`or`/`not`. Inside quotes
`\\"`, `\\'` and `\\\\` stand for a double quote, a single quote and a backslash; any other
backslash is an error. Quoted text is taken as it is: a comma inside quotes does not separate
values (`id="a,b",c` is two ids), and a quoted value is a string (`meta.n="3"` is not the
number 3). Outside quotes a backslash is an ordinary character. Errors name the column (from
1) where the problem is.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from weir_proto.errors import WeirException

_KEY = re.compile(r"^[a-z_]+(?:\.[^=<>]+)?$")
_OPERATORS = "=><"
"""The operators, in the order of a field's builders (`_Field`)."""
_QUOTES = "\"'"
_ESCAPED = {"\\": "\\", '"': '"', "'": "'"}
_QUOTING_HELP = "inside quotes write \\\" or \\' for a quote and \\\\ for a backslash"


class WhereError(WeirException, ValueError):
    pass


@dataclass(frozen=True)
class _Token:
    """A word of the expression: `(`, `)`, a keyword or a condition. `parts` are its pieces
    with their quotes removed, each marked whether it was quoted."""

    raw: str
    column: int
    parts: tuple[tuple[str, bool], ...]

    @property
    def bare(self) -> str | None:
        """The word if no part of it was quoted (only a bare word is a keyword or paren)."""
        return None if any(quoted for _, quoted in self.parts) else self.raw


@dataclass(frozen=True)
class Value:
    """What follows the operator of a condition, with what of it was quoted."""

    parts: tuple[tuple[str, bool], ...]

    @property
    def text(self) -> str:
        return "".join(text for text, _ in self.parts)

    @property
    def quoted(self) -> bool:
        return any(quoted for _, quoted in self.parts)

    def items(self) -> list[str]:
        """The values separated by commas outside quotes."""
        items = [""]
        for text, quoted in self.parts:
            if quoted:
                items[-1] += text
                continue
            first, *rest = text.split(",")
            items[-1] += first
            items.extend(rest)
        return items


def _tokens(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    i = 0
    while i < len(text):
        if text[i].isspace():
            i += 1
            continue
        start = i
        if text[i] in "()":
            tokens.append(_Token(text[i], i + 1, ((text[i], False),)))
            i += 1
            continue
        parts: list[tuple[str, bool]] = []
        while i < len(text) and not text[i].isspace() and text[i] not in "()":
            if text[i] in _QUOTES:
                inside, i = _quoted(text, i)
                parts.append((inside, True))
            else:
                end = i
                while end < len(text) and not (
                    text[end].isspace() or text[end] in "()" or text[end] in _QUOTES
                ):
                    end += 1
                parts.append((text[i:end], False))
                i = end
        tokens.append(_Token(text[start:i], start + 1, tuple(parts)))
    return tokens


def _quoted(text: str, start: int) -> tuple[str, int]:
    """The text of the quotes opening at `start`, and the index after the closing quote."""
    quote = text[start]
    out: list[str] = []
    i = start + 1
    while i < len(text):
        char = text[i]
        if char == quote:
            return "".join(out), i + 1
        if char == "\\":
            escaped = _ESCAPED.get(text[i + 1 : i + 2])
            if escaped is None:
                shown = text[i : i + 2] if i + 1 < len(text) else "\\ at the end"
                raise WhereError(f"column {i + 1}: unknown escape {shown}; {_QUOTING_HELP}")
            out.append(escaped)
            i += 2
            continue
        out.append(char)
        i += 1
    raise WhereError(
        f"column {start + 1}: the {quote} that starts here is never closed; {_QUOTING_HELP}"
    )


Build = Callable[[str, Value], dict[str, Any]]
"""(key, value) -> one filter condition."""


def _any_of(name: str) -> Build:
    def build(_: str, value: Value) -> dict[str, Any]:
        values = value.items()
        return {name: values if len(values) > 1 else values[0]}

    return build


def _one(name: str) -> Build:
    return lambda _, value: {name: value.text}


def _scalar(value: Value) -> Any:
    if value.quoted:
        return value.text
    if value.text in ("true", "false"):
        return value.text == "true"
    try:
        return int(value.text)
    except ValueError:
        return value.text


def _param(key: str, value: Value) -> dict[str, Any]:
    # A parameter has a type: `param.n=3` matches the int 3 and the string "3" alike.
    name = key.partition(".")[2]
    typed = _scalar(value)
    if typed == value.text:
        return {"params": {name: value.text}}
    return {"or": [{"params": {name: typed}}, {"params": {name: value.text}}]}


def _time(name: str) -> tuple[Build, Build]:
    def at(value: Value) -> str:
        return value.text if "T" in value.text else f"{value.text}T00:00:00Z"

    return (
        lambda _, value: {f"{name}_after": at(value)},
        lambda _, value: {f"{name}_before": at(value)},
    )


_Field = tuple[Build | None, Build | None, Build | None]
"""How a field reads with `=`, `>` and `<` (None: not with that operator)."""

FLOW_FIELDS: Mapping[str, _Field] = {
    "id": (_any_of("id"), None, None),
    "status": (_any_of("status"), None, None),
    "name": (_one("name"), None, None),
    "queue": (_any_of("queue"), None, None),
    "tag": (lambda _, v: {"tags_all": v.items()}, None, None),
    "anytag": (lambda _, v: {"tags_any": v.items()}, None, None),
    "meta.KEY": (lambda k, v: {"metadata": {k.partition(".")[2]: _scalar(v)}}, None, None),
    "param.NAME": (_param, None, None),
    "created": (None, *_time("created")),
    "finished": (None, *_time("finished")),
    "scheduled": (None, *_time("scheduled")),
}
TASK_FIELDS: Mapping[str, _Field] = {
    "flow": (_any_of("flow"), None, None),
    "flow_name": (_one("flow_name"), None, None),
    "name": (_one("name"), None, None),
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
    tokens = _tokens(text)
    if not tokens:
        raise WhereError("empty --where expression")
    parser = _Parser(tokens, fields, what, len(text))
    result = parser.expression()
    if parser.position != len(tokens):
        raise _unexpected(tokens[parser.position])
    return result


def _unexpected(token: _Token, unclosed: _Token | None = None) -> WhereError:
    """`token` stands where only `and`, `or` or the end (or `)` after an `unclosed` `(`) may."""
    hint = (
        ""
        if token.bare == ")"
        else '; join conditions with and/or, and quote a value with spaces: name="nightly etl"'
    )
    where = f" (the '(' at column {unclosed.column} is not closed yet)" if unclosed else ""
    return WhereError(f"column {token.column}: unexpected {token.raw!r} in --where{where}{hint}")


class _Parser:
    def __init__(
        self, tokens: list[_Token], fields: Mapping[str, _Field], what: str, length: int
    ) -> None:
        self.tokens = tokens
        self.position = 0
        self.fields = fields
        self.what = what
        self.length = length

    def peek(self) -> _Token | None:
        return self.tokens[self.position] if self.position < len(self.tokens) else None

    def peek_word(self) -> str:
        token = self.peek()
        return (token.bare or "").lower() if token else ""

    def take(self, wanted: str) -> _Token:
        token = self.peek()
        if token is None:
            raise WhereError(
                f"column {self.length + 1}: --where expression ends too early; expected {wanted}"
            )
        self.position += 1
        return token

    def expression(self) -> dict[str, Any]:
        return self.joined("or", self.term)

    def term(self) -> dict[str, Any]:
        return self.joined("and", self.factor)

    def joined(self, word: str, part: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """`part`, or several joined by `word` (`and` binds tighter than `or`)."""
        parts = [part()]
        while self.peek_word() == word:
            self.take(word)
            parts.append(part())
        return parts[0] if len(parts) == 1 else {word: parts}

    def factor(self) -> dict[str, Any]:
        token = self.take("a condition")
        if (token.bare or "").lower() == "not":
            return {"not": self.factor()}
        if token.bare == "(":
            inner = self.expression()
            closing = self.peek()
            if closing is None:
                raise WhereError(
                    f"column {self.length + 1}: missing ')' for the '(' at column "
                    f"{token.column} in --where"
                )
            if closing.bare != ")":
                raise _unexpected(closing, unclosed=token)
            self.position += 1
            return inner
        return self.condition(token)

    def condition(self, token: _Token) -> dict[str, Any]:
        valid = ", ".join(self.fields)
        at = f"column {token.column}"
        split = _split(token)
        if split is None:
            raise WhereError(
                f"{at}: {token.raw!r} is not a condition like status=failed or "
                f"created>2026-01-01 (fields of {self.what}: {valid}); quote a value with "
                'spaces: name="nightly etl"'
            )
        key, op, value = split
        if not _KEY.match(key):
            raise WhereError(
                f"{at}: {token.raw!r} does not start with a field name "
                f"(fields of {self.what}: {valid})"
            )
        head, dot, _ = key.partition(".")
        field = f"{head}.{'KEY' if head == 'meta' else 'NAME'}" if dot else key
        how = self.fields.get(field)
        if how is None:
            raise WhereError(
                f'{at}: unknown field "{key}" in {token.raw!r}; fields of {self.what}: {valid}'
            )
        build = how[_OPERATORS.index(op)]
        if build is None:
            usable = " ".join(o for o, b in zip(_OPERATORS, how, strict=True) if b)
            raise WhereError(f'{at}: field "{key}" in {token.raw!r} takes {usable}, not {op}')
        return build(key, value)


def _split(token: _Token) -> tuple[str, str, Value] | None:
    """(key, operator, value) at the first operator outside quotes; None if there is none or
    the value is empty. A quoted key is refused: only the value may be quoted."""
    for index, (text, quoted) in enumerate(token.parts):
        cut = None if quoted else next((i for i, c in enumerate(text) if c in _OPERATORS), None)
        if cut is None:
            continue
        if any(quoted for _, quoted in token.parts[:index]):
            raise WhereError(
                f"column {token.column}: {token.raw!r} quotes its field name; quote only the "
                'value, after the operator: name="nightly etl"'
            )
        head = "".join(t for t, _ in token.parts[:index]) + text[:cut]
        rest = ((text[cut + 1 :], False), *token.parts[index + 1 :])
        value = Value(tuple(p for p in rest if p[0] or p[1]))
        if not value.parts:
            return None
        return head, text[cut], value
    return None
