"""The query language compiles to parenthesised, parameterised SQL; the CLI's --where
expressions parse into it."""

from __future__ import annotations

from typing import Any

import pytest
from weir.where import WhereError, parse_task_where, parse_where
from weir_scheduler.data.filters import TASK_LEAVES, FilterError, compile_filter


def test_or_and_not_are_parenthesised_and_values_are_bound() -> None:
    sql, params = compile_filter(
        {
            "and": [
                {"status": ["failed", "cancelled"]},
                {"or": [{"tags_any": ["nightly"]}, {"not": {"name": "x'; DROP TABLE flows; --"}}]},
            ]
        }
    )
    assert sql == (
        "((f.status = ANY($1::text[])) AND ((f.tags && $2::text[]) OR (NOT (f.name = $3))))"
    )
    assert params == [["failed", "cancelled"], ["nightly"], "x'; DROP TABLE flows; --"]


def test_one_value_is_an_equality_so_an_index_gives_the_order() -> None:
    sql, params = compile_filter(
        {"and": [{"status": "failed"}, {"queue": ["gpu"]}]}, leaves=TASK_LEAVES
    )
    assert sql == "((t.status = $1) AND (t.queue = $2))" and params == ["failed", "gpu"]
    sql, params = compile_filter({"queue": ["a", "b"]})
    assert sql == (
        "(EXISTS (SELECT 1 FROM tasks q WHERE q.flow_id = f.id AND q.queue = ANY($1::text[])))"
    )
    assert params == [["a", "b"]]


def test_parameters_can_start_after_other_ones() -> None:
    sql, params = compile_filter({"metadata": {"owner": "ana"}}, first_param=4)
    assert sql == "(f.metadata @> $4::jsonb)" and params == ['{"owner":"ana"}']


@pytest.mark.parametrize(
    ("where", "words"),
    [
        ({"colour": "red"}, "$.where.colour: unknown condition"),
        ({"and": []}, "$.where.and: expects a non-empty list"),
        ({"status": 3}, "$.where.status: expects a string or a list of strings"),
        ({"id": []}, "$.where.id: expects a string or a list of strings"),
        ({"params": []}, "$.where.params: expects an object"),
        ({"scheduled_after": "soon"}, "$.where.scheduled_after: expects an ISO 8601 time"),
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


def test_where_reads_ids_queues_scheduled_times_and_params() -> None:
    assert parse_where("id=a,b and queue=gpu") == {"and": [{"id": ["a", "b"]}, {"queue": "gpu"}]}
    assert parse_where("id=a or scheduled>2026-12-01 and scheduled<2026-12-02T06:00:00Z") == {
        "or": [
            {"id": "a"},
            {
                "and": [
                    {"scheduled_after": "2026-12-01T00:00:00Z"},
                    {"scheduled_before": "2026-12-02T06:00:00Z"},
                ]
            },
        ]
    }
    # A parameter keeps its type: 3 matches the int and the string "3"; text stays text.
    assert parse_where("param.n=3") == {"or": [{"params": {"n": 3}}, {"params": {"n": "3"}}]}
    assert parse_where("param.date=2026-12-01") == {"params": {"date": "2026-12-01"}}
    for where in (parse_where("param.n=3 and not id=x,y"), parse_where("queue=a,b")):
        compile_filter(where)  # what the CLI builds, the scheduler accepts


def test_task_where_reads_flows_queues_and_statuses() -> None:
    assert parse_task_where("status=failed and queue=gpu") == {
        "and": [{"status": "failed"}, {"queue": "gpu"}]
    }
    where = parse_task_where("flow=a,b and (name=load or flow_name=etl) and finished>2026-12-01")
    assert where == {
        "and": [
            {"flow": ["a", "b"]},
            {"or": [{"name": "load"}, {"flow_name": "etl"}]},
            {"finished_after": "2026-12-01T00:00:00Z"},
        ]
    }
    compile_filter(where, leaves=TASK_LEAVES)


@pytest.mark.parametrize(
    ("parse", "text", "words"),
    [
        (parse_where, "colour=red", 'unknown field "colour"'),
        (parse_where, "colour=red", "fields of flows: id, status, name, queue, tag, anytag"),
        (parse_where, "params.n=3", "param.NAME"),
        (parse_task_where, "tag=x", "unknown field \"tag\" in 'tag=x'; fields of tasks: flow,"),
        (parse_where, "id>3", "field \"id\" in 'id>3' takes =, not >"),
        (parse_where, "created=2026-01-01", "takes > <, not ="),
        (parse_where, "status", "fields of flows: id,"),
    ],
)
def test_bad_where_expressions_name_the_field_and_list_the_valid_ones(
    parse: Any, text: str, words: str
) -> None:
    with pytest.raises(WhereError) as refused:
        parse(text)
    assert words in str(refused.value)


def test_quoted_values_hold_spaces_parentheses_commas_and_keywords() -> None:
    assert parse_where('name="nightly etl"') == {"name": "nightly etl"}
    assert parse_where("name='x y' and status=failed") == {
        "and": [{"name": "x y"}, {"status": "failed"}]
    }
    assert parse_where('name="a (b) or c" or name="and"') == {
        "or": [{"name": "a (b) or c"}, {"name": "and"}]
    }
    # Escapes: \" \' and \\ inside either quotes; the other quote needs none.
    assert parse_where(r'name="say \"hi\" \\ it\'s"') == {"name": 'say "hi" \\ it\'s'}
    assert parse_where("name='say \"hi\"'") == {"name": 'say "hi"'}
    assert parse_where('name=""') == {"name": ""}
    # Part of a value may be quoted; a comma inside quotes does not separate values.
    assert parse_where('name=etl-"1 2"') == {"name": "etl-1 2"}
    assert parse_where('id="a,b",c') == {"id": ["a,b", "c"]}
    assert parse_where("tag='x y',z") == {"tags_all": ["x y", "z"]}
    # A quoted value is a string, never a number or a boolean.
    assert parse_where('meta.n="3" and meta.m=3') == {
        "and": [{"metadata": {"n": "3"}}, {"metadata": {"m": 3}}]
    }
    assert parse_where("param.n='3'") == {"params": {"n": "3"}}
    assert parse_task_where('flow_name="nightly etl"') == {"flow_name": "nightly etl"}
    # Outside quotes a backslash is an ordinary character, as before.
    assert parse_where(r"name=a\b") == {"name": r"a\b"}
    compile_filter(parse_where('name="x y" and tag="a b",c'))


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ('name="nightly etl', 'column 6: the " that starts here is never closed'),
        ("name='x y", "column 6: the ' that starts here is never closed"),
        (r'name="a\nb"', r"column 8: unknown escape \n; inside quotes write"),
        ('name="a\\', r"column 8: unknown escape \ at the end"),
        ('"name"=x', "column 1: '\"name\"=x' quotes its field name; quote only the value"),
        ("name=nightly etl", "column 14: unexpected 'etl' in --where; join conditions"),
        ("name=nightly etl", 'quote a value with spaces: name="nightly etl"'),
        ("(status=a or name=b", "column 20: missing ')' for the '(' at column 1"),
        ("status=a )", "column 10: unexpected ')'"),
        ("(name=nightly etl)", "column 15: unexpected 'etl' in --where (the '(' at column 1 is"),
        ("status=a and", "column 13: --where expression ends too early; expected a condition"),
        ("status=a and colour=red", 'column 14: unknown field "colour"'),
    ],
)
def test_where_errors_name_the_column_and_the_fix(text: str, words: str) -> None:
    with pytest.raises(WhereError) as refused:
        parse_where(text)
    assert words in str(refused.value)
