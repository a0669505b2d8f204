"""`replace` for the decider's state classes, without `dataclasses.replace`'s overhead.

`evolve` copies a `FoldedFlow` (24 fields) and a `FoldedTask` with a few fields changed for
every event; `dataclasses.replace` builds a keyword dict of every field and calls the generated
`__init__`, which made it the largest single cost of deciding. Here each class gets its own
generated copier once: every field taken from the original unless it is given, set on a
bare instance. Only for frozen dataclasses whose fields are all plain `__init__` fields with
no `__post_init__` (the state classes): anything else is refused when first copied.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

_UNSET = object()
_copiers: dict[type, Callable[..., Any]] = {}


def replace(obj: T, /, **changes: Any) -> T:
    """A copy of `obj` with `changes`: what `dataclasses.replace(obj, **changes)` returns."""
    cls = type(obj)
    copier = _copiers.get(cls)
    if copier is None:
        copier = _copiers[cls] = _make_copier(cls)
    result: T = copier(obj, **changes)
    return result


def _make_copier(cls: type) -> Callable[..., Any]:
    fields = dataclasses.fields(cls)
    if hasattr(cls, "__post_init__") or any(not f.init for f in fields):
        raise TypeError(f"{cls.__name__}: replace copies plain dataclasses only")
    names = [f.name for f in fields]
    lines = [f"def copy(obj, *, {', '.join(f'{n}=_UNSET' for n in names)}):"]
    lines.append("    new = _new(_cls)")
    lines.extend(f"    _set(new, {n!r}, obj.{n} if {n} is _UNSET else {n})" for n in names)
    lines.append("    return new")
    scope: dict[str, Any] = {
        "_UNSET": _UNSET,
        "_new": object.__new__,
        "_set": object.__setattr__,
        "_cls": cls,
    }
    exec("\n".join(lines), scope)
    copier: Callable[..., Any] = scope["copy"]
    return copier
