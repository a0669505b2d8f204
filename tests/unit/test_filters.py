"""The query language compiles to parenthesised, parameterised SQL; the CLI's --where
expressions parse into it."""

from __future__ import annotations

from typing import Any

import pytest
from weir.where import WhereError, parse_where
from weir_scheduler.filters import FilterError, compile_filter


def test_or_and_not_are_parenthesised_and_values_are_bound() -> None:
    sql, params = compile_filter(
        {
            "and": [
                {"status": ["failed", "cancelled"]},
                {"or": [{"tags_any": ["nightly"]}, {"not": {"name": "x'; DROP TABLE flows; --"}}]},
            ]
        }
    )
    assert sql == ("((status = ANY($1::text[])) AND ((tags && $2::text[]) OR (NOT (name = $3))))")
    assert params == [["failed", "cancelled"], ["nightly"], "x'; DROP TABLE flows; --"]


def test_parameters_can_start_after_other_ones() -> None:
    sql, params = compile_filter({"metadata": {"owner": "ana"}}, first_param=4)
    assert sql == "(metadata @> $4::jsonb)" and params == ['{"owner":"ana"}']


@pytest.mark.parametrize(
    ("where", "words"),
    [
        ({"colour": "red"}, "$.where.colour: unknown condition"),
        ({"and": []}, "$.where.and: expects a non-empty list"),
        ({"status": 3}, "expects a status or a list"),
        ({"created_after": "yesterday"}, "expects an ISO 8601 time"),
        ({"created_after": "2026-01-01T00:00:00"}, "needs a zone"),
        ({"a": 1, "b": 2}, "exactly one key"),
        ("status=failed", "exactly one key"),
    ],
)
def test_bad_filters_say_where_and_what(where: Any, words: str) -> None:
    with pytest.raises(FilterError, match=words.replace("$", r"\$").replace(".", r"\.")):
        compile_filter(where)


def test_deep_or_huge_filters_are_refused() -> None:
    deep: Any = {"name": "x"}
    for _ in range(40):
        deep = {"not": deep}
    with pytest.raises(FilterError, match="nests deeper"):
        compile_filter(deep)
    with pytest.raises(FilterError, match="more than 200 conditions"):
        compile_filter({"or": [{"name": str(i)} for i in range(300)]})


def test_where_expressions_parse_with_precedence() -> None:
    assert parse_where("status=failed and (tag=nightly or not name=etl)") == {
        "and": [
            {"status": "failed"},
            {"or": [{"tags_all": ["nightly"]}, {"not": {"name": "etl"}}]},
        ]
    }
    assert parse_where("status=a,b or meta.owner=ana and created>2026-01-01") == {
        "or": [
            {"status": ["a", "b"]},
            {"and": [{"metadata": {"owner": "ana"}}, {"created_after": "2026-01-01T00:00:00Z"}]},
        ]
    }


@pytest.mark.parametrize("text", ["", "status", "(status=a", "status=a )", "colour=red", "and"])
def test_bad_where_expressions(text: str) -> None:
    with pytest.raises(WhereError):
        parse_where(text)
