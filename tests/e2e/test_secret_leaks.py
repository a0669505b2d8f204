"""A secret's value never leaves the task's environment.

The scheduler and the runner run as real processes (debug logs, traces exported over OTLP to
a receiver in the test) while a flow's tasks read a secret stored with `weir secret set`: one
uses it and succeeds, one uses it and fails twice (an attempt failure, a retry, an error
message). Then everything weir lets anyone see is collected and searched for the value, raw,
hex and base64: every row of every Postgres table, every message kept in every JetStream
stream, every message that crossed NATS while the flow ran (work-queue messages such as
dispatches are gone once acked), every span received, the services' logs, every file the
stack wrote, and what the CLI prints. The search is shown to work on the same material: the
sha256 digest the tasks print is found wherever task output is meant to go.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from secrets import token_urlsafe
from typing import Any

import nats
import pytest
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from typer.testing import CliRunner
from weir import telemetry
from weir.cli import app
from weir.client import Client
from weir.devstack import Stack
from weir.embedded import EmbeddedPostgres
from weir.secrets import SECRET_KEY_ENV, SECRETS_BUCKET, SecretStore, new_secret_key
from weir_proto import subjects
from weir_proto.events import event_type

from tests.artifacts.helpers import weir
from tests.e2e.test_otlp import ReceivedSpan, Receiver, otlp_stack, serving
from tests.inspection import inspecting

pytestmark = pytest.mark.slow

__all__ = ["otlp_stack"]  # a fixture: imported so that pytest finds it here

SECRET_NAME = "api-token"
FLOW_NAME = "uses-secret"
REFUSED_EXIT = 3
FLOW_TIMEOUT = 30.0

USE = (
    "import hashlib, os, sys\n"
    "digest = hashlib.sha256(os.environ['TOKEN'].encode()).hexdigest()\n"
    "print('connecting; token sha256', digest, flush=True)\n"
    "sys.exit(digest != sys.argv[1])\n"
)
"""Uses the token without printing it: succeeds iff it got the stored value."""
REFUSE = (
    "import hashlib, os, sys\n"
    "digest = hashlib.sha256(os.environ['TOKEN'].encode()).hexdigest()\n"
    "print('connecting to upstream', flush=True)\n"
    "print('upstream refused token sha256', digest, file=sys.stderr)\n"
    f"sys.exit({REFUSED_EXIT})\n"
)
"""Uses the token and fails, so its stderr ends up in error messages."""


@dataclass
class RecordingReceiver(Receiver):
    """A `Receiver` that also keeps every export whole, so all of every span can be searched."""

    exports: list[ExportTraceServiceRequest] = field(default_factory=list)

    def add(self, body: bytes) -> None:
        super().add(body)
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        with self.lock:
            self.exports.append(request)


@pytest.fixture
def receiver() -> Iterator[RecordingReceiver]:
    """Replaces test_otlp's `receiver` for `otlp_stack` here."""
    with serving(RecordingReceiver()) as received:
        yield received


@pytest.fixture(autouse=True)
def secret_key(monkeypatch: pytest.MonkeyPatch) -> str:
    """WEIR_SECRET_KEY for the CLI and for the services, which inherit this environment
    (autouse, so it is set before `otlp_stack` starts them); debug logs, so more is searched;
    wide CLI tables, so no value would be cut by wrapping."""
    key = new_secret_key()
    monkeypatch.setenv(SECRET_KEY_ENV, key)
    monkeypatch.setenv("WEIR_LOG_LEVEL", "DEBUG")
    monkeypatch.setenv("COLUMNS", "1000")
    return key


def encodings(value: bytes) -> dict[str, bytes]:
    """`value` as it could appear anywhere: raw, hex, and base64 (both alphabets) at each of
    the three alignments it can take inside a longer base64 text (JetStream's API, bytea)."""
    forms = {"raw": value, "hex": value.hex().encode(), "HEX": value.hex().upper().encode()}
    for shift in range(3):
        whole_groups = value[shift:][: (len(value) - shift) // 3 * 3]
        forms[f"base64@{shift}"] = base64.b64encode(whole_groups)
        forms[f"base64url@{shift}"] = base64.urlsafe_b64encode(whole_groups)
    return forms


@dataclass
class Observed:
    """Everything collected, each piece under the source it came from."""

    pieces: list[tuple[str, str, bytes]] = field(default_factory=list)
    """(source, detail, content): ("postgres events", "row 3", b"...")."""

    def add(self, source: str, detail: str, content: bytes) -> None:
        self.pieces.append((source, detail, content))

    def count(self, source: str) -> int:
        return sum(1 for s, _, content in self.pieces if s == source and content)

    def sources_with(self, needle: bytes) -> set[str]:
        return {source for source, _, content in self.pieces if needle in content}

    def leaks(self, forms: dict[str, bytes]) -> list[str]:
        return [
            f"{form} in {source} ({detail})"
            for source, detail, content in self.pieces
            for form, needle in forms.items()
            if needle in content
        ]


@dataclass
class Wiretap:
    """Every message published on the NATS server (core subscription to `>`)."""

    messages: list[Msg] = field(default_factory=list)

    async def record(self, msg: Msg) -> None:
        self.messages.append(msg)


@asynccontextmanager
async def wiretap(nats_url: str) -> AsyncIterator[Wiretap]:
    tap = Wiretap()
    nc = await nats.connect(nats_url)
    try:
        await nc.subscribe(">", cb=tap.record)
        await nc.flush()
        yield tap
    finally:
        await nc.drain()


async def postgres_rows(database_url: str, observed: Observed) -> None:
    """Every row of every table, as Postgres renders it (bytea as hex, jsonb as text)."""
    async with inspecting(database_url) as db:
        async for table, n, row in db.every_row_as_text():
            observed.add(f"postgres {table}", f"row {n}", row.encode())


async def jetstream_messages(js: JetStreamContext, observed: Observed) -> set[str]:
    """Every message kept in every stream (KV buckets and object stores are streams too);
    the names of the streams read."""
    streams = await js.streams_info()
    for stream in streams:
        name, state = stream.config.name, stream.state
        assert name is not None
        for seq in range(max(state.first_seq, 1), state.last_seq + 1):  # 0: an empty stream
            try:
                msg = await js.get_msg(name, seq)
            except NotFoundError:  # deleted, or taken by a work queue
                continue
            content = f"{msg.subject} {msg.headers}\n".encode() + (msg.data or b"")
            observed.add(f"jetstream {name}", f"seq {seq}", content)
    return {s.config.name for s in streams if s.config.name}


def spans(receiver: RecordingReceiver, observed: Observed) -> None:
    """Each span whole (name, attributes, events, links, status) and each resource, in their
    wire form, where strings are kept as they are."""
    with receiver.lock:
        exports = list(receiver.exports)
    for request in exports:
        for resource_spans in request.resource_spans:
            observed.add("otlp resource", "", resource_spans.resource.SerializeToString())
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    observed.add("otlp span", span.name, span.SerializeToString())


def disk(root: Path, postgres: EmbeddedPostgres, observed: Observed) -> None:
    """Every file the stack wrote (NATS' store, the services' logs, the attempts' files) and
    the Postgres server's log."""
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        observed.add("disk", str(path.relative_to(root)), path.read_bytes())
    for service in ("scheduler", "runner"):
        observed.add(f"{service} log", "", (root / f"{service}.log").read_bytes())
    server_log = postgres.base_dir / "postgres.log"
    observed.add("postgres log", str(server_log), server_log.read_bytes())


def cli_outputs(nats_url: str, flow_id: str, observed: Observed) -> None:
    """What a user sees from the CLI. The commands run in this process (a process each would
    spend most of this test's time importing); the value is stored by a real `weir` process."""
    commands = [
        ("show", flow_id),
        ("show", flow_id, "--json"),
        ("events", flow_id),
        ("events", flow_id, "--json"),
        ("logs", flow_id, "use"),
        ("logs", flow_id, "refuse", "--attempt", "1"),
        ("logs", flow_id, "refuse"),
        ("flows",),
        ("flows", "--json"),
        ("trace", flow_id),
        ("secret", "ls"),
    ]
    cli = CliRunner()
    for args in commands:
        result = cli.invoke(app, [*args, "--nats-url", nats_url])
        assert result.exit_code in (0, 1), f"weir {' '.join(args)}: {result.output}"
        observed.add(f"cli {args[0]}", " ".join(args), result.output_bytes)


def wire_source(subject: str) -> str:
    """`wire weir.dispatch`, `wire $KV.weir-secrets`, `wire _INBOX`, ..."""
    tokens = subject.split(".")
    return "wire " + (tokens[0] if tokens[0] == "_INBOX" else ".".join(tokens[:2]))


def trace_complete(spans: list[ReceivedSpan]) -> bool:
    names = [s.name for s in spans]
    return (
        f"flow {FLOW_NAME}" in names
        and "task use" in names
        and names.count("task refuse") == 2
        and sum(n.startswith("process weir.dispatch") for n in names) >= 3
    )


def test_encodings_find_a_value_inside_longer_encoded_text() -> None:
    value = b"q7Hc0-pLx9_ZfW2mKa4RtN8eVbU1sYoJ"
    forms = encodings(value)
    for prefix in (b"", b"a", b"ab", b"abc"):
        text = b'{"data": "' + base64.b64encode(prefix + value + b"\n") + b'"}'
        assert any(needle in text for needle in forms.values()), prefix
        assert any(needle in (prefix + value).hex().encode() for needle in forms.values())
    assert not any(needle in base64.b64encode(value[::-1]) for needle in forms.values())


async def test_secret_value_is_nowhere_in_events_logs_traces_errors_or_cli_output(
    otlp_stack: Stack,
    receiver: RecordingReceiver,
    secret_key: str,
    database_url: str,
    postgres: EmbeddedPostgres,
) -> None:
    value = token_urlsafe(24)  # 32 characters
    digest = hashlib.sha256(value.encode()).hexdigest()
    retry_once = {"max_attempts": 2, "backoff": {"strategy": "constant", "base": 0.1}}
    token = [{"name": "TOKEN", "fromSecret": SECRET_NAME}]
    spec: dict[str, Any] = {
        "name": FLOW_NAME,
        "tasks": [
            {"name": "use", "cmd": [sys.executable, "-c", USE, digest], "env": token},
            {
                "name": "refuse",
                "cmd": [sys.executable, "-c", REFUSE],
                "env": token,
                "retry": retry_once,
            },
        ],
    }
    nats_url = otlp_stack.nats_url
    observed = Observed()

    async with wiretap(nats_url) as tap, await Client.connect(nats_url) as client:
        stored = await weir(nats_url, "secret", "set", SECRET_NAME, stdin=f"{value}\n".encode())
        assert stored.code == 0, stored.stderr
        flow_id = await client.submit(spec)
        final = await asyncio.wait_for(client.wait(flow_id), FLOW_TIMEOUT)
        view = await client.get(flow_id)
        await receiver.wait_for(telemetry.flow_trace_id(flow_id), trace_complete)
        await asyncio.to_thread(cli_outputs, nats_url, flow_id, observed)
        streams = await jetstream_messages(client.js, observed)
        kv = await client.js.key_value(SECRETS_BUCKET)
        sealed = (await kv.get(SECRET_NAME)).value or b""
        opened = await SecretStore(client.js, base64.urlsafe_b64decode(secret_key)).get(SECRET_NAME)

    # The flow did what it was written to: the task read the stored value, the other failed.
    assert event_type(final) == "flow_failed"
    tasks = {t.name: t for t in view.tasks}
    assert tasks["use"].status == "succeeded", tasks["use"].error_message
    assert tasks["refuse"].status == "failed" and tasks["refuse"].attempt == 2
    assert tasks["refuse"].exit_code == REFUSED_EXIT
    assert [f.attempt for f in tasks["refuse"].failures] == [1, 2]
    # At rest the value is ciphertext: it opens to the value under the key, and only then.
    assert opened == value.encode()
    assert len(sealed) > len(value) and value.encode() not in sealed

    for msg in tap.messages:
        content = f"{msg.subject} {msg.headers}\n".encode() + msg.data
        observed.add(wire_source(msg.subject), msg.subject, content)
    await postgres_rows(database_url, observed)
    spans(receiver, observed)
    disk(otlp_stack.root, postgres, observed)

    # Not vacuous: every source was searched, and holds what a leak would ride along with.
    assert streams >= {
        subjects.STREAM_COMMANDS,
        subjects.STREAM_DISPATCH,  # work queues: empty once acked, so also read on the wire
        subjects.STREAM_STATUS,
        subjects.STREAM_EVENTS,
        subjects.STREAM_LOGS,
        f"KV_{SECRETS_BUCKET}",
    }
    assert observed.count("postgres events") >= 10
    assert observed.count("postgres tasks") == 2
    assert observed.count("jetstream WEIR_EVENTS") >= 10
    assert observed.count(f"jetstream KV_{SECRETS_BUCKET}") == 1
    assert observed.count("otlp span") >= 12
    assert observed.count("wire weir.dispatch") >= 3  # the attempts' dispatches, env included
    assert observed.count("wire weir.status") >= 6
    assert observed.count(f"wire $KV.{SECRETS_BUCKET}") >= 1  # `weir secret set` storing it
    for source in ("otlp resource", "scheduler log", "runner log", "cli show", "cli flows"):
        assert observed.count(source) >= 1, source
    # The dispatches carry the reference, by name; the value is looked up by the runner.
    assert "wire weir.dispatch" in observed.sources_with(f'"fromSecret":"{SECRET_NAME}"'.encode())
    # The search finds what tasks print: the digest reached every place task output goes.
    assert observed.sources_with(digest.encode()) >= {
        "cli logs",  # stdout of `use`, stderr of both `refuse` attempts
        "cli show",  # the error message: stderr's tail
        "cli events",
        "postgres events",
        "postgres tasks",
        "jetstream WEIR_EVENTS",
        "jetstream WEIR_LOGS",
        "otlp span",  # the failed attempts' span status
        "wire weir.status",
        "disk",
    }

    leaks = observed.leaks(encodings(value.encode()))
    assert not leaks, "the secret's value was found:\n" + "\n".join(leaks)
