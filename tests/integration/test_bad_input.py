"""Every bad submit that JetStream acknowledged becomes a visible rejection with a precise
message, and the scheduler goes on serving."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
from weir.client import Client
from weir_proto.errors import ErrorCode
from weir_proto.events import FlowRejected, event_type

from tests.flows import diamond, task

WAIT = 60.0


async def rejected(client: Client, flow_id: str) -> FlowRejected:
    event = await asyncio.wait_for(client.wait(flow_id), WAIT)
    assert isinstance(event, FlowRejected), event
    return event


def spec(flow_id: str, *tasks: dict[str, Any], **extra: Any) -> bytes:
    return msgspec.json.encode({"id": flow_id, "name": "bad", "tasks": list(tasks), **extra})


CASES: list[tuple[str, bytes, str]] = [
    ("cycle", spec("cycle", task("a", depends=["b"]), task("b", depends=["a"])), "a -> b -> a"),
    ("unknown-dep", spec("unknown-dep", task("a", depends=["zz"])), 'depends on "zz"'),
    ("dup", spec("dup", task("a"), task("a")), "duplicate task name"),
    ("self", spec("self", task("a", depends=["a"])), "depends on itself"),
    ("not-dns", spec("not-dns", task("Bad_Name")), "is not a DNS-1123 label"),
    ("empty-cmd", spec("empty-cmd", {"name": "a", "cmd": []}), "cmd is empty"),
    ("unknown-field", spec("unknown-field", task("a", colour="red")), 'unknown field "colour"'),
    ("wrong-type", spec("wrong-type", {"name": "a", "cmd": [1, 2]}), "expected a string, got"),
    ("no-tasks", spec("no-tasks"), "has no tasks"),
    ("env-name", spec("env-name", task("a", env=[{"name": "A-B", "value": "x"}])), "identifier"),
    ("escape", spec("escape", task("a", outputs=[{"name": "o", "path": "../x"}])), "'..'"),
]


async def test_each_invalid_flow_is_rejected_with_a_precise_message(client: Client) -> None:
    for _, data, _ in CASES:
        await client.js.publish("weir.cmd.submit", data)
    for flow_id, _, words in CASES:
        event = await rejected(client, flow_id)
        assert any(words in e.message for e in event.errors), (flow_id, event.errors)
        assert all('flow "bad"' in e.message for e in event.errors), event.errors
        view = await client.get(flow_id)
        assert view.status == "rejected" and view.errors == event.errors
    # still serving
    ok = await client.submit(diamond())
    assert event_type(await asyncio.wait_for(client.wait(ok), WAIT)) == "flow_succeeded"


async def test_malformed_json_without_an_id_is_rejected_under_the_message_id(
    client: Client,
) -> None:
    await client.js.publish("weir.cmd.submit", b'{"name": "oops", "tasks": [')
    await client.js.publish("weir.cmd.submit", b"\xff\xfe\xfd")

    async def two_rejections() -> list[str]:
        while True:
            page = await client.list(status="rejected")
            if len(page.flows) >= 2:
                return [f.id for f in page.flows]
            await asyncio.sleep(0.05)

    ids = await asyncio.wait_for(two_rejections(), WAIT)
    for flow_id in ids:
        event = await rejected(client, flow_id)
        assert "submit is not valid JSON" in event.errors[0].message


async def test_oversized_submit_is_rejected_naming_the_limit(client: Client) -> None:
    big = spec("too-big", task("a", env=[{"name": "PAD", "value": "x" * (5 * 1024 * 1024)}]))
    await client.js.publish("weir.cmd.submit", big)

    async def first_rejection() -> str:
        while True:
            page = await client.list(status="rejected")
            if page.flows:
                return page.flows[0].id
            await asyncio.sleep(0.05)

    flow_id = await asyncio.wait_for(first_rejection(), WAIT)
    event = await rejected(client, flow_id)
    assert "the limit is 4,194,304 (WEIR_MAX_SUBMIT_BYTES)" in event.errors[0].message


async def test_client_refuses_a_spec_larger_than_the_server_accepts(client: Client) -> None:
    from weir.client import WeirError

    huge = {"name": "huge", "tasks": [task("a", env=[{"name": "P", "value": "x" * 9_000_000}])]}
    try:
        await client.submit(huge)
    except WeirError as exc:
        assert exc.code == ErrorCode.TOO_LARGE and "accepts at most 8,388,608" in exc.message
    else:
        raise AssertionError("a 9 MB submit must be refused by the client")


async def test_every_problem_of_a_spec_is_in_its_rejection_type_errors_included(
    client: Client,
) -> None:
    """One wrong type (an int env value) used to hide every other mistake."""
    await client.js.publish(
        "weir.cmd.submit",
        spec(
            "eight",
            task("extract", timeout="10x", retry={"backoff": {"strategy": "exponentail"}}),
            {"name": "Bad_Name", "cmd": "echo hi"},
            task("load", env=[{"name": "A", "value": 7}], depends=["extract2"], retires=3),
            priority="high",
        ),
    )
    event = await rejected(client, "eight")
    assert [(e.path, e.task) for e in event.errors] == [
        ("$.priority", None),
        ("$.tasks[0].timeout", "extract"),
        ("$.tasks[0].retry.backoff.strategy", "extract"),
        ("$.tasks[1].cmd", "Bad_Name"),
        ("$.tasks[1].name", "Bad_Name"),
        ("$.tasks[2].env[0].value", "load"),
        ("$.tasks[2].retires", "load"),
        ("$.tasks[2].depends[0]", "load"),
    ]
    assert event.errors[5].message == (
        'flow "bad": task "load": env[0].value: expected a string, got the number 7'
    )
    assert "is not one of constant, linear, polynomial, exponential" in event.errors[2].message


async def test_retry_shorthand_and_durations_are_accepted_on_the_wire(client: Client) -> None:
    flow_id = await client.submit(
        {"name": "short", "tasks": [task("a", retry=2, timeout="10m")], "delay": "0s"}
    )
    assert event_type(await asyncio.wait_for(client.wait(flow_id), WAIT)) == "flow_succeeded"
