"""What the artifact and secret tests share: running flows and the CLI."""

from __future__ import annotations

import asyncio
import os
import sys
from dataclasses import dataclass
from typing import Any

from weir.client import Client
from weir_proto.api import FlowView
from weir_proto.events import event_type

WAIT = 60.0
ONCE = {"max_attempts": 1}
PY = sys.executable

_CLI = (
    "import typer\n"
    "from weir.cli import app\n"
    "from weir.cli_data import artifacts_app, secret_app\n"
    "names = {g.name for g in app.registered_groups}\n"
    "if 'artifacts' not in names: app.add_typer(artifacts_app, name='artifacts')\n"
    "if 'secret' not in names: app.add_typer(secret_app, name='secret')\n"
    "app()\n"
)
"""`weir` with the data commands registered (cli.py registers them itself once wired)."""


@dataclass
class Ran:
    code: int
    stdout: bytes
    stderr: str


async def weir(
    nats_url: str, *args: str, stdin: bytes | None = None, env: dict[str, str] | None = None
) -> Ran:
    """Run the CLI as a user does, without blocking the in-process services."""
    proc = await asyncio.create_subprocess_exec(
        PY,
        "-c",
        _CLI,
        *args,
        "--nats-url",
        nats_url,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )
    out, err = await asyncio.wait_for(proc.communicate(stdin), WAIT)
    assert proc.returncode is not None
    return Ran(proc.returncode, out, err.decode())


async def finish(client: Client, spec: dict[str, Any]) -> tuple[str, str, FlowView]:
    """Submit, wait for the end; (flow id, terminal event type, the flow's view)."""
    flow_id = await client.submit(spec)
    final = await asyncio.wait_for(client.wait(flow_id), WAIT)
    return flow_id, event_type(final), await client.get(flow_id)


def task(name: str, *cmd: str, depends: list[str] | None = None, **extra: Any) -> dict[str, Any]:
    return {"name": name, "cmd": list(cmd), "depends": depends or [], "retry": ONCE, **extra}
