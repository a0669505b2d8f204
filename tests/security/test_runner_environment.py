"""The runner reads its credentials (NATS password or token, WEIR_SECRET_KEY, every
WEIR_SECRET_<NAME>) once at start and drops them from its environment: no process it starts
inherits them, and it still decrypts secrets and reconnects to NATS (it holds them in
memory)."""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from weir.client import Client
from weir.devstack import Stack
from weir.secrets import SECRET_KEY_ENV, SecretStore, new_secret_key, secret_key_from_env

from tests.e2e.conftest import running_stack
from tests.flows import finish, shell, types

pytestmark = pytest.mark.slow

DUMP = 'env; echo "--- parent $PPID"; tr "\\0" "\\n" < "/proc/$PPID/environ" || echo unreadable'


@pytest.fixture
def stack(tmp_path: Path, database_url: str, runner_secrets: dict[str, str]) -> Iterator[Stack]:
    yield from running_stack(tmp_path, database_url, runner_secrets)


async def test_tasks_inherit_no_credentials_and_the_runner_keeps_them_across_a_nats_restart(
    stack: Stack, runner_secrets: dict[str, str]
) -> None:
    stored = f"api-{secrets.token_hex(16)}"
    async with await Client.connect(stack.nats_url) as client:
        key = secret_key_from_env(runner_secrets)
        await SecretStore(client.js, key).set("api-token", stored.encode())
        flow_id, events = await finish(client, {"name": "look", "tasks": [shell("look", DUMP)]})
    assert types(events)[-1] == "flow_succeeded"
    out = (stack.root / "runner" / "attempts" / f"{flow_id}-look-1" / "stdout.log").read_text()
    assert "WEIR_TASK=look" in out and "--- parent" in out  # it did look
    assert stack.nats_server is not None and stack.nats_server.password
    held = {**runner_secrets, "the NATS password": stack.nats_server.password}
    for variable, value in held.items():
        assert value not in out, f"the task or its supervisor holds {variable}"

    await asyncio.to_thread(stack.restart_nats)
    check = '[ "$API" = "$WANT_API" ] && [ "$DB" = "$WANT_DB" ]'
    env = [
        {"name": "API", "fromSecret": "api-token"},
        {"name": "DB", "fromSecret": "db-password"},
        {"name": "WANT_API", "value": stored},
        {"name": "WANT_DB", "value": runner_secrets["WEIR_SECRET_DB_PASSWORD"]},
    ]
    async with await Client.connect(stack.nats_url) as client:
        _, events = await finish(client, {"name": "use", "tasks": [shell("use", check, env=env)]})
    assert types(events)[-1] == "flow_succeeded", events


TAKE_AND_SPAWN = """
import subprocess, sys
from weir.secrets import take_credentials, env_secret, secret_key_from_env
held = take_credentials()
assert held.nats.password == "pw" and secret_key_from_env() is not None
assert env_secret("WEIR_SECRET_DB_PASSWORD") == "db-value"
sys.stdout.write(subprocess.run(["env"], capture_output=True, text=True).stdout)
"""


def test_a_child_of_a_process_that_took_its_credentials_inherits_none() -> None:
    env = {
        **os.environ,
        "WEIR_NATS_USER": "runner",
        "WEIR_NATS_PASSWORD": "pw",
        SECRET_KEY_ENV: new_secret_key(),
        "WEIR_SECRET_DB_PASSWORD": "db-value",
    }
    child = subprocess.run(
        [sys.executable, "-c", TAKE_AND_SPAWN], env=env, capture_output=True, text=True, check=True
    )
    names = {line.partition("=")[0] for line in child.stdout.splitlines()}
    assert "WEIR_NATS_USER" in names  # not a credential
    assert not names & {"WEIR_NATS_PASSWORD", SECRET_KEY_ENV, "WEIR_SECRET_DB_PASSWORD"}
