"""Flow parameters: declared under `params:`, given at submit as `arguments`, substituted
into tasks as whole strings (never through a shell, never evaluated).

Used by the planner (the source of truth) and by the CLI, which checks `-p NAME=VALUE`
before it submits, so both say the same thing.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any

from weir_proto.errors import SpecError
from weir_proto.spec import ParamSpec

PARAM_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}\Z")
PARAM_NAME_RULE = "letters, digits and '_', at most 64, not starting with a digit"
PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_.]*)\s*\}\}")
"""`{{ params.NAME }}`; any other `{{ ... }}` name is an error, so a typo never passes."""
ENV_PREFIX = "WEIR_PARAM_"
_TYPE_NAMES = {
    "string": "a string",
    "int": "a whole number",
    "float": "a number",
    "bool": "true or false",
    "json": "any JSON value",
}


_DECLARED_BY: tuple[tuple[type, str], ...] = (
    (bool, "bool"),  # before int: a bool is an int too
    (int, "int"),
    (float, "float"),
    (str, "string"),
)
"""The parameter type a bare default of each Python type declares; any other: json."""


def type_of(value: object) -> str:
    """The parameter type a bare default declares."""
    return next((kind for python, kind in _DECLARED_BY if isinstance(value, python)), "json")


def coerce(value: object, kind: str) -> tuple[Any, str | None]:
    """`value` as a `kind` parameter, or a problem. A string is read as the type (what
    `-p n=3` and a query string give); any other value must already be of the type."""
    if kind == "json":
        if isinstance(value, str):
            try:
                return json.loads(value), None
            except json.JSONDecodeError:
                return value, None  # a plain string is a JSON value too
        return value, None
    if kind == "string":
        if isinstance(value, str):
            return value, None
    elif kind == "bool":
        if isinstance(value, bool):
            return value, None
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true", None
    elif kind == "int":
        if isinstance(value, int) and not isinstance(value, bool):
            return value, None
        if isinstance(value, str) and re.fullmatch(r"[-+]?\d{1,30}", value.strip()):
            return int(value), None
    elif kind == "float":
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value), None
        if isinstance(value, str):
            try:
                number = float(value)
            except ValueError:
                pass
            else:
                if math.isfinite(number):
                    return number, None
    return value, f"expected {_TYPE_NAMES.get(kind, kind)}, got {_shown(value)}"


def render(value: object) -> str:
    """The text a value stands for in a string: JSON for anything but a string."""
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def resolve(
    declared: Mapping[str, ParamSpec], given: Mapping[str, Any], flow: str
) -> tuple[dict[str, Any], list[SpecError]]:
    """Every declared parameter's value (given, else its default) and every problem: an
    undeclared argument, a missing required one, a value or default of the wrong type."""
    errors: list[SpecError] = []
    values: dict[str, Any] = {}
    names = ", ".join(sorted(declared)) or "none are declared"
    for name, param in declared.items():
        path = f"$.params.{name}"
        if not PARAM_NAME.match(name):
            errors.append(
                SpecError(
                    path=path,
                    message=(
                        f'{flow}: parameter name "{name[:64]}" is not a name ({PARAM_NAME_RULE})'
                    ),
                )
            )
            continue
        if param.default is not None:
            default, problem = coerce(param.default, param.type)
            if problem:
                errors.append(
                    SpecError(
                        path=f"{path}.default",
                        message=(
                            f'{flow}: parameter "{name}" is {param.type}: its default {problem}'
                        ),
                    )
                )
            values[name] = default
    for name, value in given.items():
        wanted = declared.get(name)
        if wanted is None:
            errors.append(
                SpecError(
                    path=f"$.arguments.{name[:64]}",
                    message=f'{flow}: unknown parameter "{name[:64]}"; declared: {names}',
                )
            )
            continue
        coerced, problem = coerce(value, wanted.type)
        if problem:
            errors.append(
                SpecError(
                    path=f"$.arguments.{name}",
                    message=f'{flow}: parameter "{name}" is {wanted.type}: {problem}',
                )
            )
        values[name] = coerced
    for name, param in declared.items():
        if name not in values and PARAM_NAME.match(name):
            hint = f" ({param.description})" if param.description else ""
            errors.append(
                SpecError(
                    path=f"$.arguments.{name}",
                    message=f'{flow}: parameter "{name}"{hint} is required and was not given; '
                    f"pass it with -p {name}=VALUE",
                )
            )
    return values, errors


def substitute(text: str, values: Mapping[str, Any]) -> tuple[str, list[str]]:
    """`text` with every `{{ params.NAME }}` replaced, and the placeholders it could not
    fill (unknown parameters, other names)."""
    unknown: list[str] = []

    def fill(match: re.Match[str]) -> str:
        name = match.group(1)
        head, _, param = name.partition(".")
        if head == "params" and param in values:
            return render(values[param])
        unknown.append(name)
        return match.group(0)

    if "{{" not in text:
        return text, []
    return PLACEHOLDER.sub(fill, text), unknown


def _shown(value: object) -> str:
    if isinstance(value, str):
        return f'the string "{value[:40]}"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, int | float):
        return f"the number {value}"
    return "a list" if isinstance(value, list) else "an object"
