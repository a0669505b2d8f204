"""Flow parameters on real Postgres + NATS: given at submit, checked by the scheduler,
substituted into the argv as whole strings and handed to tasks as WEIR_PARAM_<NAME>."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from weir.client import Client

from tests.flows import WAIT, finish, shell, types


def etl(out: Path) -> dict[str, Any]:
    return {
        "name": "etl",
        "params": {
            "date": {"type": "string", "description": "the day to load"},
            "n": 3,
            "label": "x",
        },
        "tasks": [
            shell(
                "load",
                'printf "%s|%s|%s|%s" "$1" "$2" "$WEIR_PARAM_n" "$MODE" > ' + str(out),
                "sh",
                "{{ params.date }}",
                "{{ params.label }}",
                env=[{"name": "MODE", "value": "n={{ params.n }}"}],
            )
        ],
    }


async def test_params_reach_the_task_as_argv_and_env_and_defaults_fill_the_rest(
    client: Client, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    hostile = "$(touch " + str(tmp_path / "pwned") + "); `id`"
    spec = etl(out) | {"id": "etl-params-1"}
    flow_id = await client.submit(spec, params={"date": "2026-12-01", "label": hostile})
    await asyncio.wait_for(client.wait(flow_id), WAIT)
    assert out.read_text() == f"2026-12-01|{hostile}|3|n=3"
    assert not (tmp_path / "pwned").exists(), "a parameter went through a shell"
    view = await client.get(flow_id)
    assert view.status == "succeeded"
    assert view.params == {"date": "2026-12-01", "n": 3, "label": hostile}  # defaults filled


async def test_a_submit_with_wrong_params_is_rejected_with_every_problem(
    client: Client, tmp_path: Path
) -> None:
    verdict = await client.submit(
        etl(tmp_path / "out"), params={"n": "three", "colour": "red"}, verdict=True
    )
    assert verdict.verdict == "rejected"
    problems = {e.path: e.message for e in verdict.errors}
    assert set(problems) == {"$.arguments.n", "$.arguments.colour", "$.arguments.date"}
    assert problems["$.arguments.date"] == (
        'flow "etl": parameter "date" (the day to load) is required and was not given; '
        "pass it with -p date=VALUE"
    )
    view = await client.get(verdict.flow_id)
    assert view.status == "rejected"


async def test_the_log_records_the_arguments_so_a_rerun_uses_the_same_values(
    client: Client, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    flow_id, events = await finish(client, etl(out) | {"arguments": {"date": "2026-01-02", "n": 7}})
    assert types(events)[-1] == "flow_succeeded"
    out.unlink()
    again = (await client.rerun(flow_id)).flow_id
    await asyncio.wait_for(client.wait(again), WAIT)
    assert out.read_text() == "2026-01-02|x|7|n=7"
