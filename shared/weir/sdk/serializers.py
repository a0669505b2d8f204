"""How a task's return value becomes the bytes of its output file, and back.

Every task has one serializer; a downstream task reads an input with the serializer of the
task that produced it. Built in: `pickle` (the default: any picklable Python object),
`json`, `text` (a `str`, UTF-8) and `bytes` (written as is). Anything with `dumps(value)`
and `loads(data)` is a custom serializer (`dumps` may return `str`, which is UTF-8 encoded).
"""

from __future__ import annotations

import json
import pickle
from typing import Any, Protocol, runtime_checkable

from weir_proto.errors import WeirException

PICKLE_PROTOCOL = 5


@runtime_checkable
class Serializer(Protocol):
    """Turns a task's return value into bytes and back."""

    def dumps(self, value: Any, /) -> bytes: ...

    def loads(self, data: bytes, /) -> Any: ...


class SerializationError(WeirException, TypeError):
    """A value this serializer cannot write, or a custom serializer that misbehaved."""


class PickleSerializer:
    """Any picklable object, including None, classes of the flow's module and bytes."""

    name = "pickle"

    def dumps(self, value: Any, /) -> bytes:
        return pickle.dumps(value, protocol=PICKLE_PROTOCOL)

    def loads(self, data: bytes, /) -> Any:
        return pickle.loads(data)


class JsonSerializer:
    """JSON values (dict, list, str, int, float, bool, None), UTF-8 encoded."""

    name = "json"

    def dumps(self, value: Any, /) -> bytes:
        try:
            return json.dumps(value, ensure_ascii=False).encode()
        except (TypeError, ValueError) as exc:
            raise SerializationError(f"json serializer: {exc}; use pickle for this value") from None

    def loads(self, data: bytes, /) -> Any:
        return json.loads(data)


class TextSerializer:
    """A `str`, UTF-8 encoded; None is written as an empty file (read back as "")."""

    name = "text"

    def dumps(self, value: Any, /) -> bytes:
        if value is None:
            return b""
        if not isinstance(value, str):
            raise SerializationError(
                f"text serializer needs a str, got {type(value).__name__}; "
                "return a str or use serializer='pickle'"
            )
        return value.encode()

    def loads(self, data: bytes, /) -> Any:
        return data.decode()


class BytesSerializer:
    """`bytes`, `bytearray` or `memoryview` written unchanged; None is an empty file."""

    name = "bytes"

    def dumps(self, value: Any, /) -> bytes:
        if value is None:
            return b""
        if not isinstance(value, bytes | bytearray | memoryview):
            raise SerializationError(
                f"bytes serializer needs bytes, got {type(value).__name__}; "
                "return bytes or use serializer='pickle'"
            )
        return bytes(value)

    def loads(self, data: bytes, /) -> Any:
        return data


class CustomSerializer:
    """Wraps a user's object with `dumps`/`loads`, checking what `dumps` gives back."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.name = getattr(inner, "name", None) or getattr(inner, "__name__", type(inner).__name__)

    def dumps(self, value: Any, /) -> bytes:
        data = self.inner.dumps(value)
        if isinstance(data, str):
            return data.encode()
        if isinstance(data, bytes | bytearray | memoryview):
            return bytes(data)
        raise SerializationError(
            f"serializer {self.name!r}: dumps() returned {type(data).__name__}; "
            "it must return bytes or str"
        )

    def loads(self, data: bytes, /) -> Any:
        return self.inner.loads(data)


BUILTIN: dict[str, Serializer] = {
    s.name: s for s in (PickleSerializer(), JsonSerializer(), TextSerializer(), BytesSerializer())
}
DEFAULT = "pickle"


def resolve(choice: str | Any) -> Serializer:
    """The serializer named `choice`, or `choice` itself when it has dumps and loads."""
    if isinstance(choice, str):
        try:
            return BUILTIN[choice]
        except KeyError:
            raise ValueError(
                f"unknown serializer {choice!r}; use one of {', '.join(BUILTIN)} "
                "or an object with dumps() and loads()"
            ) from None
    if isinstance(choice, PickleSerializer | JsonSerializer | TextSerializer | BytesSerializer):
        return choice
    if isinstance(choice, CustomSerializer):
        return choice
    if callable(getattr(choice, "dumps", None)) and callable(getattr(choice, "loads", None)):
        return CustomSerializer(choice)
    raise ValueError(
        f"serializer {choice!r} has no dumps() and loads(); use one of "
        f"{', '.join(BUILTIN)} or an object with both"
    )
