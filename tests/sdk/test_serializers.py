"""Serializers: what a task returns is what its downstream tasks receive."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from weir.sdk import SerializationError
from weir.sdk.serializers import BUILTIN, resolve

from tests.sdk.pipelines import BLOB


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("pickle", {"when": Decimal("1.10"), "seen": {1, 2}, "pair": (1, "a")}),
        ("pickle", None),
        ("json", {"rows": [1, 2.5, "x", None, True]}),
        ("json", None),
        ("text", "héllo\nwörld\r\n"),
        ("bytes", BLOB),
    ],
)
def test_builtin_serializers_round_trip(name: str, value: Any) -> None:
    serializer = BUILTIN[name]
    data = serializer.dumps(value)
    assert isinstance(data, bytes)
    assert serializer.loads(data) == value


def test_none_is_a_valid_output_for_every_serializer() -> None:
    assert BUILTIN["pickle"].loads(BUILTIN["pickle"].dumps(None)) is None
    assert BUILTIN["json"].loads(BUILTIN["json"].dumps(None)) is None
    assert BUILTIN["text"].loads(BUILTIN["text"].dumps(None)) == ""
    assert BUILTIN["bytes"].loads(BUILTIN["bytes"].dumps(None)) == b""


def test_bytes_serializer_keeps_every_byte_and_accepts_bytearray() -> None:
    assert BUILTIN["bytes"].dumps(bytearray(BLOB)) == BLOB
    assert BUILTIN["bytes"].dumps(memoryview(BLOB)) == BLOB


def test_wrong_value_for_a_serializer_says_what_to_do() -> None:
    with pytest.raises(SerializationError, match="text serializer needs a str, got int"):
        BUILTIN["text"].dumps(3)
    with pytest.raises(SerializationError, match="bytes serializer needs bytes, got str"):
        BUILTIN["bytes"].dumps("x")
    with pytest.raises(SerializationError, match="use pickle"):
        BUILTIN["json"].dumps({1, 2})


def test_custom_serializer_is_any_object_with_dumps_and_loads() -> None:
    class Upper:
        def dumps(self, value: str) -> str:
            return value.upper()

        def loads(self, data: bytes) -> str:
            return data.decode().lower()

    custom = resolve(Upper())
    assert custom.dumps("abc") == b"ABC"
    assert custom.loads(b"ABC") == "abc"
    module = resolve(json)  # the json module has dumps (str) and loads (bytes)
    assert module.loads(module.dumps({"a": [1]})) == {"a": [1]}


def test_unknown_or_incomplete_serializer_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown serializer 'yaml'; use one of pickle, json"):
        resolve("yaml")
    with pytest.raises(ValueError, match="has no dumps\\(\\) and loads\\(\\)"):
        resolve(object())

    class Broken:
        def dumps(self, value: object) -> int:
            return 1

        def loads(self, data: bytes) -> object:
            return data

    with pytest.raises(SerializationError, match="dumps\\(\\) returned int"):
        resolve(Broken()).dumps("x")
