"""A flow's parameters in the SDK: the typed arguments of its entry function.

```python
flow = Flow("etl")

@flow.entry
def etl(date: str, rows: int = 3) -> None:
    \"\"\"Load one day.\"\"\"

@flow.task
def load(date: str, rows: int) -> int: ...   # gets the values of the flow's params
```

`str`, `int`, `float` and `bool` annotations become those parameter types, any other
annotation (`dict`, `list[str]`, ...) `json`; without one, the default's type (else string). A task
parameter named like a flow parameter (and not an input) receives its value: in
`run_local(**params)` directly, in a task process from `WEIR_PARAM_<NAME>`. Values are
checked by `weir_proto.params.resolve`, the scheduler's own check, so a wrong type is
refused with the scheduler's message, before anything is submitted.
"""

from __future__ import annotations

import inspect
import os
import typing
from collections.abc import Callable, Mapping
from typing import Any

from weir_proto import params as parameters
from weir_proto.errors import SpecError, WeirException
from weir_proto.spec import ParamSpec, ParamType
from weir_proto.validation import printable

_TYPES: dict[Any, ParamType] = {str: "string", bool: "bool", int: "int", float: "float"}


class ParamsError(WeirException, ValueError):
    """Parameter values a flow refuses: `problems` lists each, worded as the scheduler
    words them (`flow "etl": parameter "rows" is int: expected a whole number, ...`)."""

    def __init__(self, problems: list[SpecError]) -> None:
        self.problems = problems
        super().__init__("\n".join(p.message for p in problems))


def declared_params(
    entry: Callable[..., Any], where: str
) -> tuple[dict[str, ParamSpec], list[str]]:
    """The flow parameters an entry function's arguments declare, and the problems of
    arguments that cannot be parameters (`*args`, positional-only, a None default)."""
    hints = _hints(entry)
    declared: dict[str, ParamSpec] = {}
    problems: list[str] = []
    for name, argument in inspect.signature(entry).parameters.items():
        if argument.kind not in (
            inspect.Parameter.POSITIONAL_OR_KEYWORD,
            inspect.Parameter.KEYWORD_ONLY,
        ):
            problems.append(
                f'{where}: argument "{name}" must be an ordinary named argument to be a flow '
                "parameter (no *args, **kwargs or '/')"
            )
            continue
        if not parameters.PARAM_NAME.match(name):
            problems.append(f'{where}: argument "{name}" is not a parameter name')
            continue
        has_default = argument.default is not inspect.Parameter.empty
        if has_default and argument.default is None:
            problems.append(
                f'{where}: argument "{name}" defaults to None, which a flow parameter cannot '
                "hold; give another default, or none to make it required"
            )
            continue
        kind = _type_of(hints.get(name), argument.default if has_default else None)
        declared[name] = ParamSpec(type=kind, default=argument.default if has_default else None)
    return declared, problems


def resolve(
    flow: str, declared: Mapping[str, ParamSpec], given: Mapping[str, Any]
) -> dict[str, Any]:
    """Every parameter's value (given, else its default); ParamsError listing every
    unknown, missing or mistyped one, with the scheduler's messages."""
    values, problems = parameters.resolve(declared, given, f"flow {printable(flow)}")
    if problems:
        raise ParamsError(problems)
    return values


def from_environment(declared: Mapping[str, ParamSpec]) -> dict[str, Any]:
    """The values a task process was given (`WEIR_PARAM_<NAME>`), read as their types."""
    values: dict[str, Any] = {}
    for name, param in declared.items():
        raw = os.environ.get(f"{parameters.ENV_PREFIX}{name}")
        if raw is not None:
            values[name], _ = parameters.coerce(raw, param.type)
    return values


def _type_of(hint: Any, default: Any) -> ParamType:
    if hint in _TYPES:
        return _TYPES[hint]
    if hint is None:
        return (
            typing.cast(ParamType, parameters.type_of(default)) if default is not None else "string"
        )
    return "json"


def _hints(func: Callable[..., Any]) -> dict[str, Any]:
    try:
        return typing.get_type_hints(func)
    except Exception:
        return {}
