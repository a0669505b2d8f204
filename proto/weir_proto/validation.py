"""Structural checks of a flow spec: every problem at once, each with its path.

msgspec stops at the first type error, so a spec is first walked here as plain JSON values
against the spec's own types (read with `msgspec.inspect`, so the checks never drift from
`weir_proto.spec`), collecting every wrong type, unknown field, missing field and enum
value. The walk also reads the shorthands a person writes: `retry: 3` means
`retry: {max_attempts: 3}`, a parameter declared as a bare value (`n: 3`) means
`{type: int, default: 3}` and a `Duration` field takes `90s`, `10m`, `2h`, `1d` as well as
a number of seconds. What comes out is plain JSON in the canonical form, which msgspec then
decodes.

Used by the scheduler's planner (the source of truth), the CLI before it submits, and the
SDK's build-time checks, so all three say the same thing in the same words.
"""

from __future__ import annotations

import functools
import re
import typing
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import msgspec
import msgspec.inspect as mi

from weir_proto.durations import EXAMPLES, parse_duration
from weir_proto.errors import SpecError
from weir_proto.params import type_of
from weir_proto.spec import (
    DURATION_FORM,
    FlowSpec,
    KubernetesOptions,
    ParamSpec,
    Resources,
    RetryPolicy,
    Toleration,
)

DOCS_DEFAULT = "docs/jobs.md"
DOCS_BY_STRUCT: dict[type, str] = {
    KubernetesOptions: "docs/kubernetes.md",
    Resources: "docs/kubernetes.md",
    Toleration: "docs/kubernetes.md",
}
"""Where the fields of each part of a spec are explained (named in unknown-field errors)."""

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
OUTPUT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}\Z")
OUTPUT_NAME_RULE = "letters, digits, '.', '_' and '-', at most 128, starting with a letter or digit"
"""An output name is a name, never a path: `weir artifacts get` writes it as a file name in
the current directory, the runner passes it as `NAME=FILE=PATH`."""
_TASK_PATH = re.compile(r"^\$\.tasks\[(\d+)\]")


@dataclass
class Checked:
    """A walked spec: `value` is plain JSON in canonical form (wrong parts replaced by
    neutral values so later checks can still run), `errors` every structural problem."""

    value: Any
    errors: list[SpecError] = field(default_factory=list)


def check_flow(raw: object) -> Checked:
    """Walk a decoded JSON/YAML document as a flow spec."""
    walk = _Walk(raw)
    value = walk.value(raw, _type_info(FlowSpec), "$")
    return Checked(value, walk.errors)


def decode_flow(raw: object) -> tuple[FlowSpec | None, list[SpecError]]:
    """The spec and no problems, or None and every structural problem."""
    checked = check_flow(raw)
    if checked.errors:
        return None, checked.errors
    return msgspec.convert(checked.value, FlowSpec), []


def check_value(raw: object, kind: Any, path: str, where: str) -> Checked:
    """Walk one part of a spec (e.g. a task's `retry`) given as plain values, as the SDK
    does for its keyword arguments. `where` starts every message (`task "load"`)."""
    walk = _Walk(None, where)
    value = walk.value(raw, _type_info(kind), path)
    return Checked(value, walk.errors)


def is_output_name(name: str) -> bool:
    return OUTPUT_NAME.match(name) is not None


def printable(value: object, limit: int = 80) -> str:
    """Quote a user string for an error message without letting it forge lines or grow."""
    text = str(value)
    text = _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)
    if len(text) > limit:
        text = text[:limit] + "…"
    return f'"{text}"'


def find_nul(raw: object) -> str | None:
    """The JSON path of the first key or string holding a NUL character, if any."""
    stack: list[tuple[str, object]] = [("$", raw)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, str):
            if "\x00" in value:
                return path
        elif isinstance(value, dict):
            for key, item in value.items():
                if "\x00" in key:
                    return path
                stack.append((f"{path}.{printable(key, 40)[1:-1]}", item))
        elif isinstance(value, list):
            stack.extend((f"{path}[{i}]", item) for i, item in enumerate(value))
    return None


def where_in_flow(raw: object, path: str) -> tuple[str, str | None, str]:
    """(`flow "etl": task "load"`, the task's name, the field relative to it) for a path."""
    name = raw.get("name") if isinstance(raw, dict) else None
    where = f"flow {printable(name)}" if isinstance(name, str) else "flow"
    match = _TASK_PATH.match(path)
    tasks = raw.get("tasks") if isinstance(raw, dict) else None
    if not match:
        return where, None, path.removeprefix("$").removeprefix(".")
    index = int(match.group(1))
    entry = tasks[index] if isinstance(tasks, list) and index < len(tasks) else None
    task = entry.get("name") if isinstance(entry, dict) else None
    if isinstance(task, str):
        where += f": task {printable(task)}"
    else:
        where += f": task #{index + 1}"
        task = None
    return where, task, path[match.end() :].removeprefix(".")


class _Walk:
    def __init__(self, flow: object, where: str | None = None) -> None:
        self.flow = flow
        self.where = where
        self.errors: list[SpecError] = []

    def problem(self, path: str, text: str) -> None:
        if self.where is not None:
            where, task, rel = self.where, None, path
        else:
            where, task, rel = where_in_flow(self.flow, path)
        message = f"{where}: {rel}: {text}" if rel else f"{where}: {text}"
        self.errors.append(SpecError(path=path, message=message, task=task))

    def value(self, raw: object, kind: mi.Type, path: str, choices: tuple[Any, ...] = ()) -> Any:
        """`raw` in canonical form; a neutral value (and a problem) where it is wrong.
        `choices` are a Literal's values in the order they are declared."""
        form = None
        while isinstance(kind, mi.Metadata):
            form = (kind.extra_json_schema or {}).get("x-weir-form", form)
            kind = kind.type
        if form == DURATION_FORM:
            return self.duration(raw, path)
        match kind:
            case mi.UnionType(types=members):
                if raw is None and any(isinstance(m, mi.NoneType) for m in members):
                    return None
                others = [m for m in members if not isinstance(m, mi.NoneType)]
                if len(others) == 1:
                    return self.value(raw, others[0], path, choices)
                for member in others:  # the first member the value fits
                    trial = _Walk(self.flow, self.where)
                    value = trial.value(raw, member, path)
                    if not trial.errors:
                        return value
                self.wrong(raw, kind, path)
                return None
            case mi.StructType():
                return self.struct(raw, kind, path)
            case mi.ListType(item_type=item):
                if not isinstance(raw, list):
                    return self.wrong(raw, kind, path)
                return [self.value(v, item, f"{path}[{i}]") for i, v in enumerate(raw)]
            case mi.DictType(value_type=item):
                if not isinstance(raw, dict):
                    return self.wrong(raw, kind, path)
                return {str(k): self.value(v, item, f"{path}.{_key(k)}") for k, v in raw.items()}
            case mi.LiteralType(values=values):
                if raw not in values or isinstance(raw, bool):
                    valid = ", ".join(str(v) for v in choices or values)
                    shown = printable(raw) if isinstance(raw, str) else _kind_of(raw)
                    self.problem(path, f"{shown} is not one of {valid}")
                    return values[0]
                return raw
            case mi.DateTimeType():
                try:
                    msgspec.convert(raw, datetime)
                except msgspec.ValidationError:
                    self.problem(
                        path,
                        f"expected a date and time like 2030-01-01T09:00:00Z, got {_shown(raw)}",
                    )
                    return None
                return raw
            case mi.AnyType():
                return raw
        if _fits(raw, kind):
            return raw
        return self.wrong(raw, kind, path)

    def struct(self, raw: object, kind: mi.StructType, path: str) -> Any:
        if kind.cls is RetryPolicy and isinstance(raw, int) and not isinstance(raw, bool):
            return {"max_attempts": raw}  # `retry: 3`, as in the SDK
        if kind.cls is ParamSpec and not isinstance(raw, dict):
            if raw is None:
                return {}  # `date:` declares a required string parameter
            return {"type": type_of(raw), "default": raw}  # `n: 3` declares an int, default 3
        if not isinstance(raw, dict):
            self.wrong(raw, kind, path)
            return _neutral(kind)
        fields = _fields(kind)
        out: dict[str, Any] = {}
        for key, value in raw.items():
            rule = fields.get(key) if isinstance(key, str) else None
            if rule is None:
                docs = DOCS_BY_STRUCT.get(kind.cls, DOCS_DEFAULT)
                self.problem(
                    f"{path}.{_key(key)}",
                    f"unknown field {printable(key, 40)}; remove it (valid fields: "
                    f"{', '.join(fields)}; see {docs})",
                )
                continue
            if rule.scalar is not None and (
                _fits(value, rule.scalar) or (value is None and rule.nullable)
            ):
                out[key] = value  # most fields: a name, a flag, a number
                continue
            if rule.items is not None and isinstance(value, list) and _all_fit(value, rule.items):
                out[key] = list(value)  # a task's cmd, its depends
                continue
            out[key] = self.value(value, rule.field.type, f"{path}.{key}", rule.choices)
        for name, rule in fields.items():
            if rule.field.required and name not in raw:
                self.problem(
                    f"{path}.{name}",
                    f"required field is missing; add it ({_expected(rule.field.type)})",
                )
                out[name] = _neutral(rule.field.type)
        return out

    def duration(self, raw: object, path: str) -> float:
        if isinstance(raw, bool) or not isinstance(raw, str | int | float):
            self.problem(path, f"expected a duration ({EXAMPLES}), got {_kind_of(raw)}")
            return 0.0
        try:
            return parse_duration(raw)
        except ValueError as exc:
            self.problem(path, str(exc))
            return 0.0

    def wrong(self, raw: object, kind: mi.Type, path: str) -> Any:
        self.problem(path, f"expected {_expected(kind)}, got {_shown(raw)}")
        return _neutral(kind)


@functools.cache
def _type_info(kind: Any) -> mi.Type:
    """msgspec's description of `kind`, built once: building it evaluates the annotations of
    every nested struct, which costs far more (milliseconds) than walking a spec with it."""
    return mi.type_info(kind)


@dataclass(frozen=True, slots=True)
class _FieldRule:
    """How the walk reads one field of a struct, worked out once per struct type."""

    field: mi.Field
    choices: tuple[Any, ...]
    """A Literal field's values in the order they are declared."""
    scalar: mi.Type | None
    """The field's type when it is a plain string, bool or number (a value of that type is
    taken as it is, without a walk), else None."""
    nullable: bool
    """Whether a plain scalar field may also be null."""
    items: mi.Type | None
    """The item type when the field is a list of plain strings, bools or numbers."""


_FIELD_RULES: dict[type, dict[str, _FieldRule]] = {}


def _fields(kind: mi.StructType) -> dict[str, _FieldRule]:
    """The rules of `kind`'s fields by their JSON names (msgspec's `StructType` is not
    hashable, so they are kept by the struct's class)."""
    rules = _FIELD_RULES.get(kind.cls)
    if rules is None:
        rules = {}
        for f in kind.fields:
            field_type, nullable = f.type, False
            if isinstance(f.type, mi.UnionType):
                members = [m for m in f.type.types if not isinstance(m, mi.NoneType)]
                if len(members) == 1:
                    field_type, nullable = members[0], len(members) < len(f.type.types)
            scalar = _plain_scalar(field_type)
            items = (
                _plain_scalar(field_type.item_type) if isinstance(field_type, mi.ListType) else None
            )
            rules[f.encode_name] = _FieldRule(
                f,
                _declared_literal(kind.cls, f.name),
                scalar,
                nullable and scalar is not None,
                items,
            )
        _FIELD_RULES[kind.cls] = rules
    return rules


def _plain_scalar(kind: mi.Type) -> mi.Type | None:
    """`kind` without its metadata when it is a string, bool or number that the walk takes
    as it is (not a duration, which it reads), else None."""
    while isinstance(kind, mi.Metadata):
        if (kind.extra_json_schema or {}).get("x-weir-form") == DURATION_FORM:
            return None
        kind = kind.type
    if isinstance(kind, mi.StrType | mi.BoolType | mi.IntType | mi.FloatType):
        return kind
    return None


@functools.cache
def _declared_literal(cls: type, name: str) -> tuple[Any, ...]:
    """The values of a Literal field in the order the spec declares them (msgspec sorts)."""
    pending = [typing.get_type_hints(cls, include_extras=True).get(name)]
    while pending:
        hint = pending.pop()
        if typing.get_origin(hint) is typing.Literal:
            return typing.get_args(hint)
        pending.extend(typing.get_args(hint))
    return ()


def _key(key: object) -> str:
    return printable(key, 40)[1:-1]


def _all_fit(values: list[Any], kind: mi.Type) -> bool:
    """Whether every one of `values` fits the plain scalar type `kind` (as `_fits`)."""
    if isinstance(kind, mi.StrType):
        return all(isinstance(v, str) for v in values)
    return all(_fits(v, kind) for v in values)


def _fits(raw: object, kind: mi.Type) -> bool:
    match kind:
        case mi.StrType():
            return isinstance(raw, str)
        case mi.BoolType():
            return isinstance(raw, bool)
        case mi.IntType():
            return isinstance(raw, int) and not isinstance(raw, bool)
        case mi.FloatType():
            return isinstance(raw, int | float) and not isinstance(raw, bool)
        case mi.NoneType():
            return raw is None
    return False


def _expected(kind: mi.Type) -> str:
    while isinstance(kind, mi.Metadata):
        kind = kind.type
    match kind:
        case mi.StrType():
            return "a string"
        case mi.BoolType():
            return "true or false"
        case mi.IntType():
            return "a whole number"
        case mi.FloatType():
            return "a number"
        case mi.NoneType():
            return "null"
        case mi.ListType(item_type=item):
            return f"a list of {_plural(item)}"
        case mi.DictType(value_type=item):
            return f"a mapping of names to {_plural(item)}"
        case mi.StructType(cls=cls):
            if cls is RetryPolicy:
                return "a number of attempts or an object (max_attempts, backoff)"
            names = ", ".join(f.encode_name for f in kind.fields)
            return f"an object ({names})"
        case mi.UnionType(types=members):
            return " or ".join(_expected(m) for m in members)
    return "another value"


def _plural(kind: mi.Type) -> str:
    text = _expected(kind)
    for article, plural in (("a string", "strings"), ("a number", "numbers")):
        if text == article:
            return plural
    return "objects" if text.startswith("an object") else text


def _kind_of(raw: object) -> str:
    if raw is None:
        return "null"
    if isinstance(raw, bool):
        return "true" if raw else "false"
    if isinstance(raw, int | float):
        return f"the number {raw}"
    if isinstance(raw, str):
        return "a string"
    if isinstance(raw, list):
        return "a list"
    if isinstance(raw, dict):
        return "an object"
    return type(raw).__name__


def _shown(raw: object) -> str:
    if isinstance(raw, str):
        return f"the string {printable(raw, 40)}"
    return _kind_of(raw)


def _neutral(kind: mi.Type) -> Any:
    """A value of `kind` that later checks accept or report at the same path: what stands
    in for a wrong value so a flow with a type error is still checked everywhere else."""
    while isinstance(kind, mi.Metadata):
        kind = kind.type
    match kind:
        case mi.UnionType(types=members):
            if any(isinstance(m, mi.NoneType) for m in members):
                return None
            return _neutral(members[0])
        case mi.StructType(fields=fields):
            return {f.encode_name: _neutral(f.type) for f in fields if f.required}
        case mi.ListType():
            return []
        case mi.DictType():
            return {}
        case mi.LiteralType(values=values):
            return values[0]
        case mi.StrType():
            return ""
        case mi.BoolType():
            return False
        case mi.IntType():
            return 0
        case mi.FloatType():
            return 0.0
    return None
