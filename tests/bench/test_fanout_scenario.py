"""The bench's fan-out scenario builds a valid flow whose first task writes the list."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import msgspec
from weir_proto.spec import FlowSpec
from weir_scheduler.planner import plan

from bench.__main__ import parse_args
from bench.fanout import map_spec


def test_the_first_task_writes_the_items_as_a_json_list(tmp_path: Path) -> None:
    for items, expected in ((3, [0, 1, 2]), (1, [0]), (0, [])):
        spec = map_spec(items)
        plan(msgspec.convert(spec, FlowSpec))
        subprocess.run(spec["tasks"][0]["cmd"], cwd=tmp_path, check=True)
        assert json.loads((tmp_path / "items.json").read_text()) == expected


def test_map_items_default_to_ten_thousand_and_are_small_when_quick() -> None:
    assert parse_args(["--only", "fanout"]).map_items == 10_000
    assert parse_args(["--quick", "--only", "fanout"]).map_items == 500
