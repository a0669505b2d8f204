"""Hostile input for every message the services accept: a corpus of known-bad payloads and
hypothesis strategies, plus helpers to see what the services wrote and whether they still work.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import msgspec
from hypothesis import strategies as st
from nats.aio.client import Client as NATS
from weir.client import Client
from weir_proto.errors import ErrorCode
from weir_proto.events import event_type

from tests.flows import diamond, task
from tests.inspection import inspecting

WAIT = 30.0
API_CODES = {ErrorCode.BAD_REQUEST, ErrorCode.NOT_FOUND, ErrorCode.INVALID_FLOW, ErrorCode.CONFLICT}
"""Precise refusals. `internal` is not one: it means the input reached a place it should not."""
API_VERBS = (
    "submit",
    "get",
    "list",
    "cancel",
    "rerun",
    "attempt",
    "query",
    "tasks",
    "prune",
    "schedule.create",
    "schedule.list",
    "schedule.pause",
    "schedule.resume",
    "schedule.delete",
    "secret.list",
    "secret.put",
    "secret.delete",
)


def _spec(flow_id: str | None, *tasks: dict[str, Any], **extra: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {"name": "hostile", "tasks": list(tasks), **extra}
    if flow_id is not None:
        doc["id"] = flow_id
    return doc


def _deep(levels: int) -> bytes:
    return b'{"name": "deep", "tasks": ' + b"[" * levels + b"]" * levels + b"}"


ACCEPTED = {"sql-name", "abs-output", "abs-input"}
"""Valid by design: a flow name is free text (stored verbatim, never pasted into SQL), and
absolute artifact paths are natural inside a container (the kubernetes executor); the local
executor mounts them in a sandbox of the task's own, never on the host's real path."""


def submit_corpus(max_bytes: int) -> list[tuple[str, bytes]]:
    """(label, payload): every one must become a rejection that names what is wrong."""
    big = "x" * (max_bytes + 1024)
    docs: list[tuple[str, Any]] = [
        ("sql-name", _spec(None, task("a"), name="x'; DROP TABLE events; --")),
        ("sql-task", _spec(None, task("a'; DELETE FROM flows; --"))),
        ("sql-id", _spec("x'); DROP TABLE flows; --", task("a"))),
        ("dotdot-output", _spec(None, task("a", outputs=[{"name": "o", "path": "../../etc/x"}]))),
        ("abs-output", _spec(None, task("a", outputs=[{"name": "o", "path": "/etc/passwd"}]))),
        (
            "dotdot-input",
            _spec(
                None,
                task("a", outputs=[{"name": "o", "path": "o.txt"}]),
                task("b", depends=["a"], inputs=[{"from": "o", "path": "../o.txt"}]),
            ),
        ),
        (
            "abs-input",
            _spec(
                None,
                task("a", outputs=[{"name": "o", "path": "o.txt"}]),
                task("b", depends=["a"], inputs=[{"from": "o", "path": "/tmp/o.txt"}]),
            ),
        ),
        ("env-dash", _spec(None, task("a", env=[{"name": "A-B", "value": "x"}]))),
        ("env-digit", _spec(None, task("a", env=[{"name": "1A", "value": "x"}]))),
        ("env-empty", _spec(None, task("a", env=[{"name": "", "value": "x"}]))),
        ("env-equals", _spec(None, task("a", env=[{"name": "A=B", "value": "x"}]))),
        ("env-nul", _spec(None, task("a", env=[{"name": "A\u0000B", "value": "x"}]))),
        ("control-name", _spec(None, task("a"), name="bad\u0000\u0007\u001bname")),
        ("control-task", _spec(None, task("a\u0000b"))),
        ("control-cmd", _spec(None, task("a", "echo", "nul\u0000inside"))),
        ("control-id", _spec("id\u0000nul", task("a"))),
        ("huge-name", _spec(None, task("a"), name="n" * 100_000)),
        ("huge-task-name", _spec(None, task("t" * 10_000))),
        ("oversize", _spec(None, task("a", "echo", big))),
        ("not-object", [1, 2, 3]),
        ("null", None),
        ("string", "flow"),
        ("tasks-object", {"name": "x", "tasks": {"a": 1}}),
        ("retry-negative", _spec(None, task("a", retry={"max_attempts": -1}))),
        ("retry-huge", _spec(None, task("a", retry={"max_attempts": 2**70}))),
        ("timeout-negative", _spec(None, task("a", timeout=-5))),
        ("unicode-name", _spec(None, task("tâche"))),
    ]
    raw: list[tuple[str, bytes]] = [
        ("empty", b""),
        ("malformed", b'{"name": "oops", "tasks": ['),
        ("trailing", b'{"name": "x", "tasks": []} garbage'),
        ("non-utf8", b'{"name": "\xff\xfe", "tasks": []}'),
        ("non-utf8-bare", b"\xc3\x28\xa0\xa1\xe2\x28\xa1"),
        ("deep", _deep(5000)),
        ("deep-metadata", b'{"name": "x", "metadata": ' + b"[" * 5000 + b"]" * 5000 + b"}"),
        ("nan", b'{"name": "x", "tasks": [{"name": "a", "cmd": ["true"], "timeout": NaN}]}'),
        ("bom", b'\xef\xbb\xbf{"name": "x", "tasks": []}'),
    ]
    return raw + [(label, json.dumps(doc).encode()) for label, doc in docs]


# Strategies -------------------------------------------------------------------------------

_text = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=40
) | st.sampled_from(["", "..", "../x", "/abs", "a" * 300, "a'; DROP TABLE events; --", "\u0000"])
_int = st.integers(min_value=-(2**70), max_value=2**70) | st.integers(-3, 3)
_scalar = st.none() | st.booleans() | _int | st.floats(allow_nan=False) | _text
_json = st.recursive(
    _scalar,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_text, inner, max_size=4),
    max_leaves=12,
)


def _maybe(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return strategy | _json


_task = st.fixed_dictionaries(
    {"name": _maybe(_text), "cmd": _maybe(st.lists(_text, max_size=3))},
    optional={
        "depends": _maybe(st.lists(_text, max_size=3)),
        "env": _maybe(
            st.lists(st.fixed_dictionaries({"name": _text, "value": _maybe(_text)}), max_size=2)
        ),
        "inputs": _maybe(
            st.lists(st.fixed_dictionaries({"from": _text, "path": _text}), max_size=2)
        ),
        "outputs": _maybe(
            st.lists(st.fixed_dictionaries({"name": _text, "path": _text}), max_size=2)
        ),
        "retry": _json,
        "timeout": _maybe(_int),
        "queue": _text,
    },
)
flow_specs = st.fixed_dictionaries(
    {"name": _maybe(_text), "tasks": _maybe(st.lists(_task, max_size=4))},
    optional={"id": _maybe(_text), "tags": _json, "metadata": _json, "unique": _json},
)
"""Flow-spec-shaped JSON with hostile values; hardly ever valid."""

payloads = (
    flow_specs.map(lambda d: json.dumps(d).encode())
    | _json.map(lambda d: json.dumps(d).encode())
    | st.binary(max_size=200)
)
"""Anything a client could send: spec-shaped JSON, any JSON, or bytes."""

_report = st.fixed_dictionaries(
    {
        "type": _maybe(st.sampled_from(["started", "finished", "other"])),
        "flow_id": _maybe(_text),
        "task": _maybe(_text),
        "attempt": _maybe(_int),
        "runner": _maybe(_text),
        "token": _maybe(_text),
        "at": _maybe(st.sampled_from(["2026-01-01T00:00:00Z", "yesterday", "9999-99-99"])),
    },
    optional={"exit_code": _maybe(_int), "error_type": _json, "message": _json},
)
status_reports = (
    _report.map(lambda d: json.dumps(d).encode())
    | _json.map(lambda d: json.dumps(d).encode())
    | st.binary(max_size=100)
)
heartbeats = st.fixed_dictionaries(
    {
        "runner": _maybe(_text),
        "attempts": _maybe(st.lists(st.tuples(_text, _text, _int, _text), max_size=3)),
    }
).map(lambda d: json.dumps(d).encode()) | st.binary(max_size=100)


def api_requests(verb: str) -> st.SearchStrategy[bytes]:
    fields = {
        "flow_id": _text,
        "task": _text,
        "attempt": _int,
        "status": _text,
        "limit": _int,
        "cursor": _text,
        "reason": _text,
        "failed_only": _json,
        "where": _json,
        "older_than": _maybe(st.floats(allow_nan=False)),
        "statuses": _json,
        "keep_last": _int,
        "name": _text,
        "cron": _maybe(st.sampled_from(["* * * * *", "61 * * * *", "@hourly", ""])),
        "timezone": _maybe(st.sampled_from(["UTC", "Mars/Olympus", "../../etc/localtime"])),
        "flow": flow_specs,
        "sealed": _text,
    }
    shaped = st.fixed_dictionaries({}, optional=fields).map(lambda d: json.dumps(d).encode())
    if verb == "submit":
        return payloads
    return shaped | payloads


# Helpers -----------------------------------------------------------------------------------


async def table_counts(database_url: str) -> dict[str, int]:
    async with inspecting(database_url) as db:
        return await db.row_counts()


async def api_call(nc: NATS, verb: str, payload: bytes) -> dict[str, Any]:
    msg = await nc.request(f"weir.api.{verb}", payload, timeout=WAIT)
    reply = msgspec.json.decode(msg.data)
    assert isinstance(reply, dict)
    return reply


def assert_precise(reply: dict[str, Any], what: str) -> None:
    """An error reply with a known code and a message that says something."""
    error = reply.get("error")
    assert isinstance(error, dict), f"{what}: expected an error, got {reply!r:.300}"
    assert error.get("code") in API_CODES, f"{what}: imprecise error {error!r:.300}"
    assert isinstance(error.get("message"), str) and len(error["message"]) > 10, error


async def still_serving(client: Client, flow_id: str) -> None:
    """A good flow still runs to success: the services survived what came before."""
    await client.submit(diamond(flow_id))
    final = await asyncio.wait_for(client.wait(flow_id), WAIT)
    assert event_type(final) == "flow_succeeded", final
