"""Secrets: stored encrypted in NATS KV, set from stdin, read by tasks into their
environment only, never visible in the event log or `weir show`."""

from __future__ import annotations

import asyncio
import hashlib
import json
import sys
from pathlib import Path

import pytest
from weir.client import Client
from weir.config import Settings
from weir.secrets import SECRETS_BUCKET, new_secret_key

from tests.artifacts.helpers import finish, task, weir
from tests.inspection import inspecting

VALUE = "s3cr3t-v4lue-7f1c9a"
VALUE_SHA256 = hashlib.sha256(VALUE.encode()).hexdigest()


@pytest.fixture
def secret_key(monkeypatch: pytest.MonkeyPatch) -> str:
    key = new_secret_key()
    monkeypatch.setenv("WEIR_SECRET_KEY", key)  # the in-process runner reads it from here
    return key


async def test_secret_set_ls_rm_and_a_task_reads_it_without_leaking(
    client: Client, settings: Settings, secret_key: str, tmp_path: Path
) -> None:
    env = {"WEIR_SECRET_KEY": secret_key}
    stored = await weir(
        settings.nats_url, "secret", "set", "api-token", stdin=f"{VALUE}\n".encode(), env=env
    )
    assert stored.code == 0, stored.stderr
    (tmp_path / "other").write_text("from a file")
    from_file = await weir(
        settings.nats_url, "secret", "set", "other", "-f", str(tmp_path / "other"), env=env
    )
    assert from_file.code == 0, from_file.stderr
    listed = await weir(settings.nats_url, "secret", "ls", "--json")
    assert json.loads(listed.stdout) == ["api-token", "other"]
    raw = await (await client.js.key_value(SECRETS_BUCKET)).get("api-token")
    assert VALUE.encode() not in (raw.value or b"")  # encrypted at rest

    # The task checks its environment itself; the value is not in its argv either.
    check = (
        "import hashlib, os, sys; token = os.environ['TOKEN'].encode();"
        f" sys.exit(hashlib.sha256(token).hexdigest() != '{VALUE_SHA256}'"
        " or os.environ['OTHER'] != 'from a file')"
    )
    env_vars = [
        {"name": "TOKEN", "fromSecret": "api-token"},
        {"name": "OTHER", "fromSecret": "other"},
    ]
    spec = {
        "name": "uses-secret",
        "tasks": [task("call", sys.executable, "-c", check, env=env_vars)],
    }
    flow_id, outcome, view = await finish(client, spec)
    assert outcome == "flow_succeeded", [t.error_message for t in view.tasks]

    async with inspecting(settings.database_url) as db:
        texts = await db.event_texts()
    assert texts and not any(VALUE in text for text in texts)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "weir.cli",
        "show",
        flow_id,
        "--json",
        "--nats-url",
        settings.nats_url,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    shown, _ = await proc.communicate()
    assert proc.returncode == 0 and b"uses-secret" in shown
    assert VALUE.encode() not in shown

    removed = await weir(settings.nats_url, "secret", "rm", "other")
    assert removed.code == 0, removed.stderr
    assert json.loads((await weir(settings.nats_url, "secret", "ls", "--json")).stdout) == [
        "api-token"
    ]
    again = await weir(settings.nats_url, "secret", "rm", "other")
    assert again.code == 1 and "secret other does not exist" in again.stderr


async def test_secret_value_is_never_taken_from_the_command_line(settings: Settings) -> None:
    refused = await weir(settings.nats_url, "secret", "set", "api-token", VALUE)
    assert refused.code == 2  # no such argument: values come from stdin or a file


async def test_unknown_secret_fails_the_task_before_it_runs(
    client: Client, secret_key: str, tmp_path: Path
) -> None:
    ran = tmp_path / "ran"
    spec = {
        "name": "no-secret",
        "tasks": [
            task(
                "call",
                "touch",
                str(ran),
                env=[{"name": "TOKEN", "fromSecret": "missing-token"}],
            )
        ],
    }
    _, outcome, view = await finish(client, spec)

    assert outcome == "flow_failed"
    failed = view.tasks[0]
    assert failed.error_type == "secret" and failed.attempt == 1  # never retried
    assert 'env TOKEN wants secret "missing-token", which does not exist' in (
        failed.error_message or ""
    )
    assert "weir secret set missing-token" in (failed.error_message or "")
    assert not ran.exists()


BAD_SECRET_NAMES = ["a..b", "x-", "UPPER", "x>", "a" * 254]


async def test_a_bad_secret_name_is_a_usage_error_naming_the_rule(
    settings: Settings, secret_key: str
) -> None:
    """`a..b` formed the subject `$KV.weir-secrets.a..b` (an empty token), which NATS
    refuses: every name is checked by the one rule before any subject is formed."""
    env = {"WEIR_SECRET_KEY": secret_key}
    for args in [("set", bad) for bad in BAD_SECRET_NAMES] + [("rm", "a..b")]:
        ran = await weir(settings.nats_url, "secret", *args, stdin=b"v", env=env)
        assert ran.code == 2, (args, ran.stderr)
        assert "is not a secret name" in ran.stderr, ran.stderr
        assert "never two '.' in a row" in ran.stderr and "Traceback" not in ran.stderr
    listed = await weir(settings.nats_url, "secret", "ls", "--json")
    assert json.loads(listed.stdout) == []
