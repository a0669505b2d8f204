"""`when:` conditions: a tiny expression language over a flow's parameters and the results
of upstream tasks, parsed at submit and evaluated by the scheduler. Never `eval`.

    params.env == "prod" and not (tasks.check.exit_code != 0 or params.dry_run)

Names: `params.NAME`, `tasks.NAME.status` (succeeded, failed, skipped, cancelled),
`tasks.NAME.exit_code` and `tasks.NAME.outputs.OUTPUT` (the text the task stored as its
declared output OUTPUT, JSON-decoded when it parses; `null` when the task did not succeed).
Literals: strings in double or single quotes, numbers, `true`,
`false`, `null`. Comparisons `==`, `!=`, `<`, `<=`, `>`, `>=`; `and`, `or`, `not` and
parentheses, `and` binding tighter than `or`. There are no function calls. `<` and the
like compare numbers with numbers and strings with strings; any other pair is false.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any

import msgspec

from weir_proto.errors import WeirException
from weir_proto.status import TaskStatus
from weir_proto.validation import find_nul, printable

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
      | (?P<number>-?\d+(?:\.\d+)?(?![\w.-]))
      | (?P<op>==|!=|<=|>=|<|>|\(|\))
      | (?P<name>[A-Za-z_][A-Za-z0-9_-]*(?:\.[A-Za-z_][A-Za-z0-9_-]*)*)
    )""",
    re.VERBOSE,
)
_KEYWORDS = {"and", "or", "not", "true", "false", "null"}
_COMPARISONS = ("==", "!=", "<=", ">=", "<", ">")
TASK_FIELDS = ("status", "exit_code")
OUTPUTS = "outputs"
CONDITION_MAX = 4096
VALUE_BYTES_MAX = 64 * 1024
"""Largest output a condition may read, in bytes (its value is kept in the event log)."""


class ConditionError(WeirException, ValueError):
    """The condition cannot be parsed; the message says where and what is expected."""


@dataclass(frozen=True, slots=True)
class Ref:
    """`params.NAME` -> ("params", NAME); `tasks.NAME.FIELD` -> ("tasks", NAME, FIELD);
    `tasks.NAME.outputs.OUTPUT` -> ("tasks", NAME, "outputs", OUTPUT)."""

    path: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Const:
    value: Any


@dataclass(frozen=True, slots=True)
class Not:
    operand: Expr


@dataclass(frozen=True, slots=True)
class Both:
    parts: tuple[Expr, ...]


@dataclass(frozen=True, slots=True)
class Either:
    parts: tuple[Expr, ...]


@dataclass(frozen=True, slots=True)
class Compare:
    op: str
    left: Expr
    right: Expr


Expr = Ref | Const | Not | Both | Either | Compare


NESTING_MAX = 32
"""Deepest nesting of parentheses and `not` a condition may have."""


def parse_condition(text: str) -> Expr:
    """The condition's syntax tree. Raises `ConditionError`."""
    if len(text) > CONDITION_MAX:
        raise ConditionError(f"is longer than {CONDITION_MAX} characters")
    tokens = _tokens(text)
    if not tokens:
        raise ConditionError('is empty; write a condition like params.env == "prod"')
    parser = _Parser(tokens)
    expr = parser.either()
    if parser.position != len(tokens):
        raise ConditionError(f"unexpected {tokens[parser.position][1]!r}")
    return expr


def refs(expr: Expr) -> list[Ref]:
    """Every name the condition reads."""
    match expr:
        case Ref():
            return [expr]
        case Const():
            return []
        case Not(operand=operand):
            return refs(operand)
        case Both(parts=parts) | Either(parts=parts):
            return [r for part in parts for r in refs(part)]
        case Compare(left=left, right=right):
            return refs(left) + refs(right)


def evaluate(expr: Expr, lookup: Callable[[Ref], Any]) -> Any:
    """The condition's value, reading names through `lookup`."""
    match expr:
        case Ref():
            return lookup(expr)
        case Const(value=value):
            return value
        case Not(operand=operand):
            return not evaluate(operand, lookup)
        case Both(parts=parts):
            return all(evaluate(part, lookup) for part in parts)
        case Either(parts=parts):
            return any(evaluate(part, lookup) for part in parts)
        case Compare(op=op, left=left, right=right):
            return _compare(op, evaluate(left, lookup), evaluate(right, lookup))


def _compare(op: str, a: Any, b: Any) -> bool:
    if op == "==":
        return bool(_same_kind(a, b) and a == b)
    if op == "!=":
        return not (_same_kind(a, b) and a == b)
    numbers = all(isinstance(v, int | float) and not isinstance(v, bool) for v in (a, b))
    if not (numbers or (isinstance(a, str) and isinstance(b, str))):
        return False
    match op:
        case "<":
            return bool(a < b)
        case "<=":
            return bool(a <= b)
        case ">":
            return bool(a > b)
        case _:
            return bool(a >= b)


def _same_kind(a: Any, b: Any) -> bool:
    """`true == 1` is false: booleans equal only booleans."""
    return isinstance(a, bool) == isinstance(b, bool)


def _tokens(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    position = 0
    while position < len(text):
        if text[position:].strip() == "":
            break
        match = _TOKEN.match(text, position)
        if match is None or match.lastgroup is None:
            shown = text[position:].lstrip()[:20]
            raise ConditionError(f"cannot read {shown!r} (at character {position + 1})")
        out.append((match.lastgroup, match.group(match.lastgroup)))
        position = match.end()
    return out


class _Parser:
    def __init__(self, tokens: list[tuple[str, str]]) -> None:
        self.tokens = tokens
        self.position = 0
        self.depth = 0

    def deeper(self) -> None:
        """One more `(` or `not` around what follows; refused past NESTING_MAX (a condition
        is parsed and evaluated recursively)."""
        self.depth += 1
        if self.depth > NESTING_MAX:
            raise ConditionError(
                f"nests more than {NESTING_MAX} levels of parentheses and `not`; write it flatter"
            )

    def peek(self) -> str | None:
        return self.tokens[self.position][1] if self.position < len(self.tokens) else None

    def take(self) -> tuple[str, str]:
        if self.position >= len(self.tokens):
            raise ConditionError("ends too early")
        token = self.tokens[self.position]
        self.position += 1
        return token

    def either(self) -> Expr:
        return self.joined("or", self.both, Either)

    def both(self) -> Expr:
        return self.joined("and", self.negation, Both)

    def joined(
        self, word: str, operand: Callable[[], Expr], node: Callable[[tuple[Expr, ...]], Expr]
    ) -> Expr:
        """One `operand`, or several joined by `word` as one `node`."""
        parts = [operand()]
        while self.peek() == word:
            self.take()
            parts.append(operand())
        return parts[0] if len(parts) == 1 else node(tuple(parts))

    def negation(self) -> Expr:
        if self.peek() == "not":
            self.take()
            self.deeper()
            negated = Not(self.negation())
            self.depth -= 1
            return negated
        left = self.atom()
        if self.peek() in _COMPARISONS:
            op = self.take()[1]
            return Compare(op, left, self.atom())
        return left

    def atom(self) -> Expr:
        kind, text = self.take()
        if text == "(":
            self.deeper()
            inner = self.either()
            if self.take()[1] != ")":
                raise ConditionError("missing ')'")
            self.depth -= 1
            return inner
        if kind == "string":
            body = text[1:-1]
            if text[0] == "'":
                body = body.replace('\\"', '"').replace("\\'", "'").replace('"', '\\"')
            try:
                return Const(json.loads(f'"{body}"'))
            except json.JSONDecodeError:
                raise ConditionError(f"bad escape in string {text}") from None
        if kind == "number":
            return Const(float(text) if "." in text else int(text))
        if kind == "name":
            if text in ("true", "false"):
                return Const(text == "true")
            if text == "null":
                return Const(None)
            if text in _KEYWORDS:
                raise ConditionError(f"expected a value, got {text!r}")
            return _ref(text)
        raise ConditionError(f"expected a value, got {text!r}")


def _ref(text: str) -> Ref:
    path = tuple(text.split("."))
    if path[0] == "params" and len(path) == 2:
        return Ref(path)
    if path[0] == "tasks" and len(path) == 3 and path[2] in TASK_FIELDS:
        return Ref(path)
    if path[0] == "tasks" and len(path) >= 4 and path[2] == OUTPUTS:
        return Ref((*path[:3], ".".join(path[3:])))  # output names may hold dots
    raise ConditionError(
        f"unknown name {text!r}: use params.NAME, tasks.NAME.status, tasks.NAME.exit_code "
        "or tasks.NAME.outputs.OUTPUT"
    )


def output_refs(expr: Expr) -> list[tuple[str, str]]:
    """(task, output) of each `tasks.TASK.outputs.OUTPUT` the condition reads, once each."""
    found = [(r.path[1], r.path[3]) for r in refs(expr) if len(r.path) == 4]
    return list(dict.fromkeys(found))


def ref_problem(
    ref: Ref,
    params: Collection[str],
    upstream: Collection[str],
    outputs: Mapping[str, str],
) -> str | None:
    """Why a condition may not read `ref`, given the flow's declared `params`, the tasks
    `upstream` of the condition's task and `outputs` (output name -> producing task); None
    when it may. The planner and the SDK's checks word it the same."""
    kind, name = ref.path[0], ref.path[1]
    if kind == "params" and name not in params:
        declared = ", ".join(sorted(params)) or "none are declared"
        return f"reads params.{name}, which is not declared (params: {declared})"
    if kind == "tasks" and name not in upstream:
        return (
            f"reads tasks.{name}, which is not upstream of this task; "
            "a condition reads only tasks it (indirectly) depends on"
        )
    if kind == "tasks" and len(ref.path) == 4 and outputs.get(ref.path[3]) != name:
        own = sorted(output for output, task in outputs.items() if task == name)
        shown = ", ".join(own) or "it declares none"
        return (
            f"reads tasks.{name}.outputs.{ref.path[3]}, which is not an output of task "
            f"{name} (outputs: {shown}); declare it under the task's outputs"
        )
    return None


def output_value(task: str, output: str, data: bytes) -> tuple[Any, str | None]:
    """The value of `output` as `task`'s condition reads it, or why it cannot be used: its
    text, JSON-decoded when it parses (`go` reads as "go", `3` as 3), a trailing newline
    dropped; at most VALUE_BYTES_MAX bytes and no NUL character (the event log keeps it)."""
    what = f'task "{task}": when: output {printable(output)}'
    if len(data) > VALUE_BYTES_MAX:
        return None, f"{what} is {len(data):,} bytes; the limit is {VALUE_BYTES_MAX:,}"
    try:
        value: Any = msgspec.json.decode(data)
    except (msgspec.DecodeError, RecursionError):
        value = data.decode("utf-8", errors="replace").removesuffix("\n")
    if find_nul(value) is not None:  # the event log cannot hold one
        return None, f"{what} has a NUL character (\\u0000); remove it"
    return value, None


def ref_value(
    ref: Ref,
    params: Mapping[str, Any],
    status: Callable[[str], TaskStatus],
    exit_code: Callable[[str], int | None],
    outputs: Mapping[str, Any],
) -> Any:
    """What `ref` reads: a parameter's value, a task's status or exit code, or an output's
    value as read (`outputs`, by output name; absent, as for a task that did not succeed,
    it is null)."""
    if ref.path[0] == "params":
        return params.get(ref.path[1])
    task = ref.path[1]
    if ref.path[2] == "status":
        return str(status(task))
    if ref.path[2] == OUTPUTS:
        return outputs.get(ref.path[3])
    return exit_code(task)
