"""One error vocabulary: one root exception, one set of error codes on the wire."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import msgspec
import weir
import weir_proto
import weir_runner
import weir_scheduler
import weir_web
from weir.client import WeirError
from weir_proto.errors import ApiError, ErrorCode, WeirException, error_code
from weir_web.errors import CODE_BY_STATUS, STATUS_BY_CODE

PACKAGES = (weir, weir_proto, weir_scheduler, weir_runner, weir_web)


def _modules() -> list[str]:
    names = []
    for package in PACKAGES:
        names.append(package.__name__)
        for info in pkgutil.walk_packages(package.__path__, f"{package.__name__}."):
            names.append(info.name)
    return names


def test_every_exception_derives_from_the_root() -> None:
    strays = []
    for name in _modules():
        module = importlib.import_module(name)
        for cls_name, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ != name:
                continue
            if issubclass(cls, BaseException) and not issubclass(cls, WeirException):
                strays.append(f"{name}.{cls_name}")
    assert strays == []


def test_error_codes_on_the_wire_are_unchanged() -> None:
    assert sorted(ErrorCode) == sorted(
        [
            "bad_request",
            "unauthorized",
            "forbidden",
            "not_found",
            "method_not_allowed",
            "not_acceptable",
            "conflict",
            "too_large",
            "unsupported_media_type",
            "invalid_flow",
            "rate_limited",
            "overloaded",
            "internal",
            "unavailable",
            "timeout",
        ]
    )
    encoded = ApiError(code=ErrorCode.NOT_FOUND, message="m")
    assert b'"code":"not_found"' in msgspec.json.encode(encoded)
    assert error_code("not_found") is ErrorCode.NOT_FOUND
    assert error_code("from_a_newer_scheduler") is ErrorCode.INTERNAL


def test_http_statuses_of_the_codes() -> None:
    assert STATUS_BY_CODE[ErrorCode.BAD_REQUEST] == 400
    assert STATUS_BY_CODE[ErrorCode.INVALID_FLOW] == 422
    assert STATUS_BY_CODE[ErrorCode.UNAVAILABLE] == 503
    assert STATUS_BY_CODE[ErrorCode.RATE_LIMITED] == 429
    assert STATUS_BY_CODE[ErrorCode.OVERLOADED] == 503
    assert set(STATUS_BY_CODE) == set(ErrorCode), "every code has its HTTP status"
    assert CODE_BY_STATUS[503] is ErrorCode.UNAVAILABLE


def test_a_client_error_keeps_a_code_it_does_not_know() -> None:
    error = WeirError.from_api(ApiError(code="from_a_newer_scheduler", message="m"))
    assert error.code == "from_a_newer_scheduler"
    assert f"({WeirError(ErrorCode.TIMEOUT, 'late').code})" == "(timeout)"
