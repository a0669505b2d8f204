"""`replace` for the decider's state classes, without `dataclasses.replace`'s overhead.

`evolve` copies a `FoldedFlow` (24 fields) and a `FoldedTask` with a few fields changed for
every event; `dataclasses.replace` builds a keyword dict of every field and calls the generated
`__init__`, which made it the largest single cost of deciding. Here each dataclass gets its own
generated copier once: every field taken from the original unless it is given, set on a
bare instance through the field's own slot descriptor (about 40 % faster than
`object.__setattr__`, which looks the descriptor up on every call). Only for frozen
dataclasses with slots whose fields are all plain `__init__` fields with no `__post_init__`
(`FanOut`): anything else is refused when first copied. A msgspec Struct (`FoldedFlow`,
`FoldedTask`) is copied by `msgspec.structs.replace`, which does the same in C, about a
third faster again over a whole decision.
"""

from __future__ import annotations

import dataclasses
import types
from collections.abc import Callable
from typing import Any, TypeVar

import msgspec

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
    if issubclass(cls, msgspec.Struct):
        return msgspec.structs.replace
    return _dataclass_copier(cls)


def _dataclass_copier(cls: type) -> Callable[..., Any]:
    fields = dataclasses.fields(cls)
    if hasattr(cls, "__post_init__") or any(not f.init for f in fields):
        raise TypeError(f"{cls.__name__}: replace copies plain dataclasses only")
    names = [f.name for f in fields]
    slots = {n: _slot(cls, n) for n in names}
    lines = [f"def copy(obj, *, {', '.join(f'{n}=_UNSET' for n in names)}):"]
    lines.append("    new = _new(_cls)")
    lines.extend(f"    _set_{n}(new, obj.{n} if {n} is _UNSET else {n})" for n in names)
    lines.append("    return new")
    scope: dict[str, Any] = {"_UNSET": _UNSET, "_new": object.__new__, "_cls": cls}
    scope.update({f"_set_{n}": slot.__set__ for n, slot in slots.items()})
    exec("\n".join(lines), scope)
    copier: Callable[..., Any] = scope["copy"]
    return copier


def _slot(cls: type, name: str) -> types.MemberDescriptorType:
    """The slot descriptor that holds field `name` of `cls` (its class's or a base's)."""
    for klass in cls.__mro__:
        slot = klass.__dict__.get(name)
        if isinstance(slot, types.MemberDescriptorType):
            return slot
    raise TypeError(f"{cls.__name__}: replace copies dataclasses with slots only")
