"""The planner accepts flowmium's format, plans any task order, and rejects bad input with
messages that say what, where and how to fix it."""

from __future__ import annotations

import gc
import random
from pathlib import Path
from typing import Any

import msgspec
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from weir_proto.spec import MAP_ITEMS_ADMITTED, MAX_TASKS_DEFAULT, OTHER_TASKS_ADMITTED
from weir_scheduler.planner import Limits, Plan, Rejected, decode, plan

from tests.flows import task

SHARED = Path(__file__).resolve().parents[3] / "shared" / "flowmium-examples"


DEFAULT_LIMITS = Limits()


def plan_doc(doc: Any, limits: Limits = DEFAULT_LIMITS) -> Plan:
    return plan(decode(msgspec.json.encode(doc), limits), limits)


def rejection(doc: Any, limits: Limits = DEFAULT_LIMITS) -> list[str]:
    data = doc if isinstance(doc, bytes) else msgspec.json.encode(doc)
    with pytest.raises(Rejected) as raised:
        plan(decode(data, limits), limits)
    return [e.message for e in raised.value.errors]


def flow(*tasks: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"name": "etl", "tasks": list(tasks), **extra}


def test_flowmium_example_is_accepted_unchanged() -> None:
    path = SHARED / "my_flow.yaml"
    if not path.exists():
        pytest.skip("flowmium example not beside the repository")
    doc = yaml.safe_load(path.read_text())
    planned = plan_doc(doc)
    assert planned.order == ("hallo-world", "replace-letter-a")
    assert planned.tasks["hallo-world"].env[0].value == "Hallo world"
    assert planned.tasks["replace-letter-a"].inputs[0].from_ == "foo-output"


def test_tasks_listed_in_reverse_order_plan_dependencies_first() -> None:
    planned = plan_doc(
        flow(
            task("load", depends=["transform"]),
            task("transform", depends=["extract"]),
            task("extract"),
        )
    )
    assert planned.order == ("extract", "transform", "load")
    assert planned.roots == ("extract",)
    assert planned.positions == {"load": 0, "transform": 1, "extract": 2}


def test_cycle_is_reported_with_its_path() -> None:
    (message,) = rejection(
        flow(task("a", depends=["c"]), task("b", depends=["a"]), task("c", depends=["b"]))
    )
    assert message == (
        'flow "etl": has a dependency cycle: a -> c -> b -> a; '
        "remove one of these depends to break it"
    )


def test_unknown_dependency_names_the_task_and_lists_the_real_ones() -> None:
    (message,) = rejection(flow(task("extract"), task("load", depends=["extract2"])))
    assert message == (
        'flow "etl": task "load": depends on "extract2", which does not exist '
        "(tasks: extract, load)"
    )


def test_self_dependency_duplicate_names_and_empty_cmd_are_all_reported_at_once() -> None:
    messages = rejection(
        flow(
            task("a", depends=["a"]),
            {"name": "b", "cmd": []},
            task("b"),
        )
    )
    assert 'flow "etl": task "a": depends on itself; remove it from depends' in messages
    assert 'flow "etl": task "b": cmd is empty; give the program and its arguments' in messages
    assert any("duplicate task name (task #3)" in m for m in messages)


BAD_NAMES = ["Upper", "under_score", "-lead", "trail-", "a" * 64, "dot.ted", ""]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_task_names_must_be_dns_labels(name: str) -> None:
    messages = rejection(flow(task(name)))
    assert any("is not a DNS-1123 label" in m and "pod name" in m for m in messages), messages


def test_unknown_field_names_task_and_field_the_valid_ones_and_the_docs_page() -> None:
    (message,) = rejection(flow(task("a", retries=3)))
    assert message == (
        'flow "etl": task "a": retries: unknown field "retries"; remove it (valid fields: '
        "name, cmd, image, depends, env, inputs, outputs, queue, timeout, retry, priority, "
        "kubernetes, trigger, when, map; see docs/jobs.md)"
    )


def test_wrong_type_names_the_task_and_the_field() -> None:
    (message,) = rejection(flow({"name": "a", "cmd": "echo hi"}))
    assert message == (
        'flow "etl": task "a": cmd: expected a list of strings, got the string "echo hi"'
    )


def test_missing_required_field() -> None:
    (message,) = rejection({"name": "etl"})
    assert message == 'flow "etl": tasks: required field is missing; add it (a list of objects)'


def test_eight_mistakes_give_eight_problems_each_with_its_path() -> None:
    """One wrong type no longer hides the rest: type errors, unknown fields, enum values,
    durations and the planner's own checks are all reported together."""
    doc = flow(
        task("extract", timeout="10x", retry={"backoff": {"strategy": "exponentail"}}),
        {"name": "Bad_Name", "cmd": "echo hi"},
        task("load", env=[{"name": "A", "value": 7}], depends=["extract2"], retires=3),
        priority="high",
    )
    with pytest.raises(Rejected) as raised:
        decode(msgspec.json.encode(doc))
    assert [(e.path, e.task, e.message) for e in raised.value.errors] == [
        (
            "$.priority",
            None,
            'flow "etl": priority: expected a whole number, got the string "high"',
        ),
        (
            "$.tasks[0].timeout",
            "extract",
            'flow "etl": task "extract": timeout: \'10x\' is not a duration: give a number of '
            "seconds or a string like 90s, 10m, 2h, 1d",
        ),
        (
            "$.tasks[0].retry.backoff.strategy",
            "extract",
            'flow "etl": task "extract": retry.backoff.strategy: "exponentail" is not one of '
            "constant, linear, polynomial, exponential",
        ),
        (
            "$.tasks[1].cmd",
            "Bad_Name",
            'flow "etl": task "Bad_Name": cmd: expected a list of strings, got the string '
            '"echo hi"',
        ),
        (
            "$.tasks[1].name",
            "Bad_Name",
            'flow "etl": task "Bad_Name": name is not a DNS-1123 label (lower-case letters, '
            "digits and '-', at most 63, starting and ending alphanumeric); it becomes a pod name",
        ),
        (
            "$.tasks[2].env[0].value",
            "load",
            'flow "etl": task "load": env[0].value: expected a string, got the number 7',
        ),
        (
            "$.tasks[2].retires",
            "load",
            'flow "etl": task "load": retires: unknown field "retires"; remove it (valid fields: '
            "name, cmd, image, depends, env, inputs, outputs, queue, timeout, retry, priority, "
            "kubernetes, trigger, when, map; see docs/jobs.md)",
        ),
        (
            "$.tasks[2].depends[0]",
            "load",
            'flow "etl": task "load": depends on "extract2", which does not exist '
            "(tasks: Bad_Name, extract, load)",
        ),
    ]


def test_a_problem_is_not_reported_again_as_what_it_causes() -> None:
    """A task without a name is one problem, not also "not a DNS-1123 label"; an env value
    of the wrong type is not also "needs exactly one of value or fromSecret"."""
    messages = rejection(flow({"cmd": ["x"]}, task("b", env=[{"name": "A", "value": 1}])))
    assert messages == [
        'flow "etl": task #1: name: required field is missing; add it (a string)',
        'flow "etl": task "b": env[0].value: expected a string, got the number 1',
    ]


def test_kubernetes_fields_point_at_the_kubernetes_docs() -> None:
    (message,) = rejection(flow(task("a", kubernetes={"nodeselector": {}})))
    assert 'kubernetes.nodeselector: unknown field "nodeselector"' in message
    assert "nodeSelector" in message and "see docs/kubernetes.md" in message


def test_retry_as_a_number_means_max_attempts() -> None:
    planned = plan_doc(flow(task("a", retry=5), defaults={"retry": 2}))
    assert planned.tasks["a"].retry is not None
    assert planned.tasks["a"].retry.max_attempts == 5
    assert planned.spec.defaults is not None and planned.spec.defaults.retry is not None
    assert planned.spec.defaults.retry.max_attempts == 2


@pytest.mark.parametrize(
    ("written", "seconds"),
    [
        (90, 90.0),
        (2.5, 2.5),
        ("90", 90.0),
        ("90s", 90.0),
        ("10m", 600.0),
        ("2h", 7200.0),
        ("1d", 86400.0),
    ],
)
def test_every_duration_field_takes_seconds_or_a_unit(written: Any, seconds: float) -> None:
    planned = plan_doc(
        flow(
            task("a", timeout=written, retry={"backoff": {"base": written, "max": "1d"}}),
            defaults={"timeout": written},
            delay=written,
            unique={"key": "k", "window": written},
        )
    )
    spec = planned.spec
    assert planned.tasks["a"].timeout == seconds
    assert planned.tasks["a"].retry is not None
    assert planned.tasks["a"].retry.backoff.base == seconds
    assert planned.tasks["a"].retry.backoff.max == 86400.0
    assert spec.defaults is not None and spec.defaults.timeout == seconds
    assert spec.delay == seconds
    assert spec.unique is not None and spec.unique.window == seconds


@pytest.mark.parametrize("written", ["10x", "-5m", "soon", True, [10], "nan", "inf"])
def test_a_duration_that_is_not_one_says_what_is(written: Any) -> None:
    (message,) = rejection(flow(task("a", timeout=written)))
    assert message.startswith('flow "etl": task "a": timeout: ')
    assert "10m" in message or "must not be negative" in message, message


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b"{not json", "submit is not valid JSON"),
        (b"", "submit is not valid JSON"),
        (b"\xff\xfe\x00garbage", "submit is not valid JSON"),
        (b"[1, 2]", "must be a JSON object"),
        (b'"just a string"', "must be a JSON object"),
        (b"[" * 50_000 + b"]" * 50_000, "nests too deeply"),
    ],
)
def test_malformed_submits(data: bytes, words: str) -> None:
    (message,) = rejection(data)
    assert words in message


def test_too_many_tasks_names_the_limit_and_the_setting() -> None:
    (message,) = rejection(flow(*(task(f"t{i}") for i in range(6))), Limits(max_tasks=5))
    assert message == (
        'flow "etl": has 6 tasks; the limit is 5 (WEIR_MAX_TASKS): '
        "split it into several flows or raise the scheduler's WEIR_MAX_TASKS"
    )
    # the on_exit task counts, as it does when a mapped task's expansion is counted
    assert rejection(
        flow(*(task(f"t{i}") for i in range(5)), on_exit=task("report")), Limits(max_tasks=5)
    ) == [
        'flow "etl": has 6 tasks; the limit is 5 (WEIR_MAX_TASKS): '
        "split it into several flows or raise the scheduler's WEIR_MAX_TASKS"
    ]
    assert plan_doc(
        flow(*(task(f"t{i}") for i in range(4)), on_exit=task("report")), Limits(max_tasks=5)
    )


def test_the_default_limit_admits_a_flow_of_exactly_that_many_tasks_and_refuses_one_more() -> None:
    assert MAX_TASKS_DEFAULT == MAP_ITEMS_ADMITTED + OTHER_TASKS_ADMITTED == 10_100
    at_limit = [{"name": f"t{i}", "cmd": ["true"]} for i in range(MAX_TASKS_DEFAULT)]
    assert len(plan_doc({"name": "wide", "tasks": at_limit}).order) == 10_100
    (message,) = rejection({"name": "wide", "tasks": [*at_limit, task("one-more")]})
    assert message == (
        'flow "wide": has 10,101 tasks; the limit is 10,100 (WEIR_MAX_TASKS): '
        "split it into several flows or raise the scheduler's WEIR_MAX_TASKS"
    )


def test_oversized_submit_is_rejected_before_parsing() -> None:
    (message,) = rejection(b" " * 2000, Limits(max_submit_bytes=1000))
    assert message.startswith("submit is 2,000 bytes; the limit is 1,000 (WEIR_MAX_SUBMIT_BYTES)")


def test_hostile_strings_are_quoted_and_cannot_forge_lines() -> None:
    (message,) = rejection(flow(task("a", depends=["x\n[error] forged\x1b[31m"])))
    assert "\n" not in message and "\x1b" not in message
    assert "\\x0a[error] forged\\x1b[31m" in message


def test_sql_looking_names_are_just_invalid_names() -> None:
    messages = rejection(flow(task("a'; DROP TABLE events; --")))
    assert any("is not a DNS-1123 label" in m for m in messages)


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        ("env", [{"name": "1BAD", "value": "x"}], "is not an identifier"),
        ("env", [{"name": "A", "value": "x"}, {"name": "A", "value": "y"}], "is set twice"),
        ("env", [{"name": "A"}], "needs exactly one of value or fromSecret"),
        ("env", [{"name": "A", "value": "x", "fromSecret": "s"}], "needs exactly one of"),
        ("outputs", [{"name": "o", "path": "../../etc/passwd"}], "may not climb out"),
        ("inputs", [{"from": "o", "path": "a/../../b"}], "may not climb out"),
        ("queue", "No Spaces", "must be lower-case letters"),
    ],
)
def test_task_field_checks(field: str, value: Any, words: str) -> None:
    messages = rejection(flow(task("a", **{field: value})))
    assert any(words in m and 'task "a"' in m for m in messages), messages


def test_nul_anywhere_is_refused_with_its_path() -> None:
    (message,) = rejection(flow(task("a", cmd=["echo", "nul\x00byte"])))
    assert message.startswith("submit has a NUL character (\\u0000) at $.tasks[0].cmd[1]")


def test_a_nul_in_a_key_is_refused_and_an_escaped_backslash_before_u0000_is_no_nul() -> None:
    (message,) = rejection(flow(task("a", env=[{"name": "A", "value": "x", "b\x00": 1}])))
    assert message.startswith("submit has a NUL character (\\u0000) at $.tasks[0].env[0]")
    text = msgspec.json.encode(flow(task("a", cmd=["echo", "\\u0000"])))
    assert rb"\u0000" in text  # the text a NUL is spelt with, but after an escaped backslash
    assert decode(text).tasks[0].cmd == ["echo", "\\u0000"]


def test_inputs_must_come_from_an_upstream_output() -> None:
    messages = rejection(
        flow(
            task("make", outputs=[{"name": "data", "path": "d.txt"}]),
            task("sibling", inputs=[{"from": "data", "path": "d.txt"}]),
            task("orphan", inputs=[{"from": "nothing", "path": "x"}]),
        )
    )
    assert (
        'flow "etl": task "sibling": input "data" comes from task "make", which is not '
        "upstream; add it to depends" in messages
    )
    assert 'flow "etl": task "orphan": input "nothing" is not an output of any task' in messages


def test_output_names_are_unique_per_flow() -> None:
    messages = rejection(
        flow(
            task("a", outputs=[{"name": "o", "path": "x"}]),
            task("b", outputs=[{"name": "o", "path": "y"}]),
        )
    )
    assert any('output "o" is already produced by task "a"' in m for m in messages)


@pytest.mark.parametrize(
    "name",
    [
        "../../escape",
        "/etc/passwd",
        "a/b",
        "..",
        ".hidden",
        "",
        "tab\there",
        "esc\x1b[2J",
        "bidi\u202etxt.exe",
        "a=b",
        "x" * 129,
        "with space",
    ],
)
def test_output_names_that_are_not_names_are_refused(name: str) -> None:
    messages = rejection(flow(task("a", outputs=[{"name": name, "path": "x"}])))
    assert any(
        m.startswith('flow "etl": task "a": output name ') and "is not a name" in m
        for m in messages
    ), messages


@pytest.mark.parametrize("name", ["foo-output", "data.csv", "Report_2024.tar.gz", "x" * 128])
def test_output_names_that_are_file_names_are_accepted(name: str) -> None:
    planned = plan_doc(flow(task("a", outputs=[{"name": name, "path": "x"}])))
    assert planned.producers == {name: "a"}


def test_client_chosen_id_must_be_a_dns_label() -> None:
    messages = rejection(flow(task("a"), id="Not Valid"))
    assert any('id "Not Valid" is not a DNS-1123 label' in m for m in messages)


def test_ten_thousand_task_chain_plans_without_recursion_limits() -> None:
    tasks = [task("t0")] + [task(f"t{i}", depends=[f"t{i - 1}"]) for i in range(1, 10_000)]
    random.Random(7).shuffle(tasks)
    planned = plan_doc(flow(*tasks))
    assert planned.order[0] == "t0" and planned.order[-1] == "t9999"


def test_a_wrong_item_among_many_strings_is_reported_at_its_own_index() -> None:
    """Lists of strings are taken whole when every item is one; a wrong item still gets its
    own path and message, and the items around it are still checked."""
    depends = [f"t{i}" for i in range(1, 200)]
    messages = rejection(
        flow(
            task("t0", "echo", "ok"),
            *(task(name, depends=["t0"]) for name in depends),
            {
                "name": "sink",
                "cmd": ["echo", 3, None],
                "depends": [*depends[:150], 7, "t0", "nope"],
            },
            {"name": "also", "cmd": "echo", "queue": 5, "timeout": None, "priority": True},
        )
    )
    assert messages == [
        'flow "etl": task "sink": cmd[1]: expected a string, got the number 3',
        'flow "etl": task "sink": cmd[2]: expected a string, got null',
        'flow "etl": task "sink": depends[150]: expected a string, got the number 7',
        'flow "etl": task "sink": depends on "nope", which does not exist '
        "(tasks: also, sink, t0, t1, t10, t100, t101, t102, t103, t104, t105, t106, t107, "
        "t108, t109, t11, t110, t111, t112, t113, …)",
        'flow "etl": task "also": cmd: expected a list of strings, got the string "echo"',
        'flow "etl": task "also": queue: expected a string, got the number 5',
        'flow "etl": task "also": priority: expected a whole number, got true',
    ]


def test_reading_and_planning_a_big_flow_sets_off_next_to_no_garbage_collection() -> None:
    """Nearly all that reading and planning make lives until they end, so the collector is
    held off meanwhile and runs as usual after, also when the flow is rejected. A 10,000-task
    flow set off 316 collections while it was read and planned (288 young, 26 middle, 2
    full); now at most one young collection after each, of what they made."""
    collections: list[int] = []

    def seen(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            collections.append(info["generation"])

    big = flow(task("t0"), *(task(f"t{i}", depends=["t0"]) for i in range(1, 10_000)))
    data = msgspec.json.encode(big)
    gc.collect()  # every generation's count from zero: which one collects next is known
    gc.callbacks.append(seen)
    try:
        planned = plan(decode(data, DEFAULT_LIMITS), DEFAULT_LIMITS)
        during = list(collections)
        with pytest.raises(Rejected):
            plan(decode(msgspec.json.encode({**big, "name": ""}), DEFAULT_LIMITS), DEFAULT_LIMITS)
        assert gc.isenabled()
    finally:
        gc.callbacks.remove(seen)
    assert len(planned.order) == 10_000
    assert len(during) <= 2 and 2 not in during, during


def test_a_collector_paused_by_the_caller_stays_paused() -> None:
    gc.disable()
    try:
        plan_doc(flow(task("a")))
        assert not gc.isenabled()
    finally:
        gc.enable()


@st.composite
def dags(draw: st.DrawFn) -> list[dict[str, Any]]:
    count = draw(st.integers(1, 25))
    names = [f"t{i}" for i in range(count)]
    tasks = []
    for i, name in enumerate(names):
        depends = draw(st.lists(st.sampled_from(names[:i]), unique=True)) if i else []
        tasks.append(task(name, depends=depends))
    return draw(st.permutations(tasks))


@given(dags())
@settings(max_examples=200, deadline=None)
def test_any_listing_order_plans_every_task_after_its_dependencies(
    tasks: list[dict[str, Any]],
) -> None:
    planned = plan_doc(flow(*tasks))
    seen: set[str] = set()
    for name in planned.order:
        assert set(planned.depends[name]) <= seen
        seen.add(name)
    assert seen == {t["name"] for t in tasks}


@pytest.mark.parametrize(
    ("path", "words"),
    [
        ("/", "is not a file path"),
        ("out/", "is not a file path"),
        (".", "is not a file path"),
        ("/proc/self/environ", "is in /proc, /sys or /dev"),
        ("/dev/shm/x", "is in /proc, /sys or /dev"),
        ("/sys", "is in /proc, /sys or /dev"),
    ],
)
def test_artifact_paths_must_name_ordinary_files(path: str, words: str) -> None:
    (message,) = rejection(flow(task("a", outputs=[{"name": "o", "path": path}])))
    assert message.startswith(f'flow "etl": task "a": outputs[0].path "{path}" {words}')


def test_one_file_spelt_two_ways_in_a_task_is_refused() -> None:
    (message,) = rejection(
        flow(
            task("a", outputs=[{"name": "o", "path": "/data/in.csv"}]),
            task(
                "b",
                depends=["a"],
                inputs=[{"from": "o", "path": "/data/in.csv"}],
                outputs=[{"name": "p", "path": "/data//in.csv"}],
            ),
        )
    )
    assert message == (
        'flow "etl": task "b": outputs[0].path "/data//in.csv" is the file "/data/in.csv" '
        "spelt differently; spell both the same"
    )


def paths_of(doc: Any) -> list[tuple[str, str]]:
    with pytest.raises(Rejected) as raised:
        plan(decode(msgspec.json.encode(doc)))
    return [(e.path, e.message) for e in raised.value.errors]


def test_params_fill_cmd_env_image_and_paths_as_whole_strings_and_reach_the_env() -> None:
    result = plan_doc(
        flow(
            task(
                "load",
                "load",
                "--date={{ params.date }}",
                "{{params.n}}; rm -rf /",
                env=[{"name": "MODE", "value": "{{ params.dry }}"}],
                image="etl:{{ params.tag }}",
                outputs=[{"name": "out", "path": "out/{{ params.date }}.csv"}],
            ),
            params={
                "date": {"type": "string", "description": "day to load"},
                "n": 3,
                "dry": False,
                "tag": "v1",
            },
            arguments={"date": "2026-12-01", "n": "5"},
        )
    )
    load = result.tasks["load"]
    assert load.cmd == ["load", "--date=2026-12-01", "5; rm -rf /"]
    assert load.image == "etl:v1"
    assert load.outputs[0].path == "out/2026-12-01.csv"
    env = {v.name: v.value for v in load.env}
    assert env == {
        "MODE": "false",
        "WEIR_PARAM_date": "2026-12-01",
        "WEIR_PARAM_dry": "false",
        "WEIR_PARAM_n": "5",
        "WEIR_PARAM_tag": "v1",
    }
    assert result.params == {"date": "2026-12-01", "n": 5, "dry": False, "tag": "v1"}


def test_unknown_missing_and_mistyped_params_are_all_reported_with_their_paths() -> None:
    problems = paths_of(
        flow(
            task("load", "echo", "{{ params.dte }}", when="params.nope == 1"),
            params={"date": {"type": "string"}, "n": {"type": "int", "default": "x"}},
            arguments={"colour": "red", "n": "three"},
        )
    )
    paths = [p for p, _ in problems]
    assert paths == [
        "$.params.n.default",
        "$.arguments.colour",
        "$.arguments.n",
        "$.arguments.date",
        "$.tasks[0].cmd[1]",
        "$.tasks[0].when",
    ], problems
    messages = dict(problems)
    assert messages["$.arguments.date"] == (
        'flow "etl": parameter "date" is required and was not given; pass it with -p date=VALUE'
    )
    assert messages["$.arguments.n"] == (
        'flow "etl": parameter "n" is int: expected a whole number, got the string "three"'
    )
    assert "declared: date, n" in messages["$.arguments.colour"]
    assert "params.nope, which is not declared" in messages["$.tasks[0].when"]


def test_conditions_that_do_not_parse_or_read_tasks_not_upstream_are_rejected() -> None:
    problems = dict(
        paths_of(
            flow(
                task("a"),
                task("b", when="tasks.a.status == "),
                task("c", depends=["a"], when="len(params.x)"),
                task("d", when="tasks.a.status == 'failed'"),
            )
        )
    )
    assert problems["$.tasks[1].when"] == 'flow "etl": task "b": when: ends too early'
    assert problems["$.tasks[2].when"].startswith(
        'flow "etl": task "c": when: unknown name \'len\''
    )
    assert "tasks.a, which is not upstream of this task" in problems["$.tasks[3].when"]


def test_on_exit_depends_on_every_task_and_refuses_its_own_depends() -> None:
    result = plan_doc(flow(task("a"), task("b", depends=["a"]), on_exit=task("bye")))
    assert set(result.depends["bye"]) == {"a", "b"}
    assert result.names == ("a", "b", "bye") and result.on_exit == "bye"
    problems = dict(paths_of(flow(task("a"), on_exit=task("bye", depends=["a"]))))
    assert "on_exit runs after every other task" in problems["$.on_exit"]


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({"priority": 5000}, ["$.priority"]),
        ({"defaults": {"priority": 5000}}, ["$.defaults.priority"]),
        ({"defaults": {"timeout": 10**9}}, ["$.defaults.timeout"]),
        ({"defaults": {"retry": {"max_attempts": 0}}}, ["$.defaults.retry.max_attempts"]),
        ({"defaults": {"queue": "Bad Queue"}}, ["$.defaults.queue"]),
    ],
)
def test_a_bad_value_tasks_inherit_is_reported_once_where_it_is_written(
    extra: dict[str, Any], expected: list[str]
) -> None:
    with pytest.raises(Rejected) as raised:
        plan(decode(msgspec.json.encode(flow(task("a"), task("b"), **extra))))
    assert [e.path for e in raised.value.errors] == expected


def test_a_tasks_own_bad_value_is_reported_at_the_task() -> None:
    doc = flow(task("a", priority=5000, timeout=10**9, queue="Q!"), defaults={"priority": 1})
    with pytest.raises(Rejected) as raised:
        plan(decode(msgspec.json.encode(doc)))
    assert sorted(e.path for e in raised.value.errors) == [
        "$.tasks[0].priority",
        "$.tasks[0].queue",
        "$.tasks[0].timeout",
    ]
    assert "604,800 seconds" in " ".join(e.message for e in raised.value.errors)
