"""The published JSON Schemas match the msgspec types, and settings fail loudly."""

from __future__ import annotations

from pathlib import Path

import pytest
from weir.config import ConfigError, Settings
from weir.terminal import STATUS_STYLE
from weir_proto.api import PruneRequest
from weir_proto.ids import attempt_id, is_dns_label, new_flow_id
from weir_proto.schema import render
from weir_proto.status import (
    FLOW_STATUS_NAMES,
    TERMINAL_TASK_STATUSES,
    FlowStatus,
    TaskStatus,
)

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "proto" / "schema"


def test_schema_files_match_the_types() -> None:
    expected = render()
    on_disk = {p.name: p.read_text() for p in SCHEMA_DIR.glob("*.json")}
    assert sorted(on_disk) == sorted(expected), "run ./just schema"
    for name, text in expected.items():
        assert on_disk[name] == text, f"proto/schema/{name} is stale: run ./just schema"


def test_flow_spec_schema_forbids_unknown_fields_and_names_flowmium_fields() -> None:
    text = (SCHEMA_DIR / "FlowSpec.json").read_text()
    assert '"fromSecret"' in text and '"depends"' in text and '"from"' in text
    assert '"additionalProperties": false' in text


def test_flow_ids_sort_by_time_and_are_dns_labels() -> None:
    early, late = new_flow_id(1_000), new_flow_id(2_000)
    assert early < late and len(early) == 26
    assert is_dns_label(early) and is_dns_label(new_flow_id())


def test_dns_labels_are_63_lower_case_alphanumerics_and_inner_dashes() -> None:
    assert is_dns_label("a") and is_dns_label("load-2") and is_dns_label("a" * 63)
    for bad in ("", "a" * 64, "-a", "a-", "Load", "a_b", "a.b", "a\n", "\na"):
        assert not is_dns_label(bad), bad


def test_attempt_ids_stay_within_63_characters_and_differ() -> None:
    a = attempt_id("f" * 40, "t" * 63, 1)
    b = attempt_id("f" * 40, "t" * 62 + "u", 1)
    assert len(a) <= 63 and len(b) <= 63 and a != b
    assert attempt_id("flow", "task", 2) == "flow-task-2"


@pytest.mark.parametrize(
    ("env", "words"),
    [
        ({"WEIR_EXECUTOR": "docker"}, "WEIR_EXECUTOR='docker' is not an executor (choose: local"),
        ({"WEIR_RUNNER_CONCURRENCY": "lots"}, "WEIR_RUNNER_CONCURRENCY='lots' is not a whole"),
        ({"WEIR_RUNNER_CONCURRENCY": "0"}, "must be at least 1"),
        ({"WEIR_DISPATCH_ACK_WAIT": "0.1"}, "must be at least 1.0"),
    ],
)
def test_bad_settings_name_the_variable(env: dict[str, str], words: str) -> None:
    with pytest.raises(ConfigError, match=words.replace("(", r"\(")):
        Settings.from_env(env)


def test_settings_defaults() -> None:
    settings = Settings.from_env({})
    assert settings.executor == "local" and settings.runner_queues == ("default",)
    assert settings.max_tasks == 10_100  # a map over 10,000 items beside 99 other tasks


def test_schema_descriptions_do_not_depend_on_how_a_release_keeps_indentation() -> None:
    from weir_proto.schema import _plain_descriptions

    indented = {"properties": {"a": {"description": "First line:\n\n    more\n    and more"}}}
    flat = {"properties": {"a": {"description": "First line:\n\nmore\nand more"}}}
    assert _plain_descriptions(indented) == _plain_descriptions(flat) == flat


def test_status_lists_are_the_enums_in_order() -> None:
    assert FLOW_STATUS_NAMES == (
        "scheduled",
        "pending",
        "running",
        "paused",
        "succeeded",
        "failed",
        "cancelling",
        "cancelled",
        "rejected",
        "duplicate",
    )
    assert PruneRequest().statuses == ["succeeded", "failed", "cancelled", "rejected", "duplicate"]
    assert {s for s in TaskStatus if s.terminal} == TERMINAL_TASK_STATUSES
    assert {str(s) for s in TERMINAL_TASK_STATUSES} == {
        "succeeded",
        "failed",
        "skipped",
        "cancelled",
    }
    # Every status a user sees has its colour in the terminal.
    assert {*FlowStatus, *TaskStatus} <= STATUS_STYLE.keys()
