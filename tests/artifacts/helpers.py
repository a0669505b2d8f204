"""What the artifact and secret tests share: running flows and the CLI."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tracemalloc
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from weir.artifacts import ArtifactInfo, Artifacts
from weir.client import Client
from weir_proto.api import FlowView
from weir_proto.events import event_type

from bench.artifacts import file_sha256, write_incompressible
from tests import flows

WAIT = 60.0
ONCE = {"max_attempts": 1}
PY = sys.executable


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
        "-m",
        "weir.cli",
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


def task(name: str, *cmd: str, **extra: Any) -> dict[str, Any]:
    """`tests.flows.task`, tried once unless `extra` says otherwise."""
    return flows.task(name, *cmd, **{"retry": ONCE, **extra})


def shell(name: str, script: str, *args: str, **extra: Any) -> dict[str, Any]:
    """`tests.flows.shell`, tried once unless `extra` says otherwise."""
    return flows.shell(name, script, *args, **{"retry": ONCE, **extra})


TEXT = "héllo wörld: weir\n"
EVERY_BYTE = bytes(range(256)) * 64


def round_trip_flow(image: str = "python:3.11-slim") -> dict[str, Any]:
    """Text and binary artifacts through three tasks; the same flow runs on every executor.

    `make` writes both; `transform` reads them and writes their upper-cased and reversed
    forms; `check` reads the reversed bytes and the original ones and writes a summary.
    Each reader checks what it got, so a wrong byte fails the task, not only the test."""
    reverse = (
        f"{PY} -c \"import sys; sys.stdout.buffer.write(open('in/raw.bin','rb').read()[::-1])\""
    )
    check = (
        f"{PY} -c \"import json; r=open('raw.bin','rb').read(); b=open('back.bin','rb').read(); "
        "assert b[::-1] == r == bytes(range(256)) * 64; "
        "print(json.dumps({'bytes': len(r), 'upper': open('upper.txt').read()}))\" > summary.json"
    )
    spec: dict[str, Any] = {
        "name": "round-trip",
        "tasks": [
            shell(
                "make",
                f"printf '%s' '{TEXT}' > text.txt && "
                f'{PY} -c "import sys; sys.stdout.buffer.write(bytes(range(256)) * 64)" > raw.bin',
                outputs=[{"name": "text", "path": "text.txt"}, {"name": "raw", "path": "raw.bin"}],
            ),
            shell(
                "transform",
                "mkdir -p out && tr a-z A-Z < in/text.txt > out/upper.txt && "
                f"{reverse} > out/rev.bin",
                depends=["make"],
                inputs=[
                    {"from": "text", "path": "in/text.txt"},
                    {"from": "raw", "path": "in/raw.bin"},
                ],
                outputs=[
                    {"name": "upper", "path": "out/upper.txt"},
                    {"name": "reversed", "path": "out/rev.bin"},
                ],
            ),
            shell(
                "check",
                check,
                depends=["transform"],
                inputs=[
                    {"from": "raw", "path": "raw.bin"},
                    {"from": "reversed", "path": "back.bin"},
                    {"from": "upper", "path": "upper.txt"},
                ],
                outputs=[{"name": "summary", "path": "summary.json"}],
            ),
        ],
    }
    for t in spec["tasks"]:
        t["image"] = image
    return spec


ROUND_TRIP_EXPECTED = {
    "text": TEXT.encode(),
    "raw": EVERY_BYTE,
    "upper": TEXT.encode().translate(
        bytes.maketrans(b"abcdefghijklmnopqrstuvwxyz", b"ABCDEFGHIJKLMNOPQRSTUVWXYZ")
    ),
    "reversed": EVERY_BYTE[::-1],
}


async def assert_round_tripped(store: Artifacts, flow_id: str, scratch: Path) -> None:
    """Every artifact of `round_trip_flow` is byte for byte what it should be."""
    for name, expected in ROUND_TRIP_EXPECTED.items():
        await store.download(flow_id, name, scratch / name)
        assert (scratch / name).read_bytes() == expected, name
    await store.download(flow_id, "summary", scratch / "summary.json")
    summary = json.loads((scratch / "summary.json").read_text())
    assert summary == {"bytes": len(EVERY_BYTE), "upper": ROUND_TRIP_EXPECTED["upper"].decode()}


@dataclass
class Transfer:
    """One file up and back down through a store, with Python's peak allocations of each."""

    uploaded: ArtifactInfo
    downloaded: ArtifactInfo
    digest: str
    upload_peak: int
    download_peak: int


async def measured_transfer(store: Artifacts, scratch: Path, size: int) -> Transfer:
    """Upload `size` random bytes as artifact "large" of flow "big-flow" and download them
    again; the copy is checked byte for byte (SHA-256)."""
    source, back = scratch / "large.bin", scratch / "back.bin"
    digest = write_incompressible(source, size)
    tracemalloc.start()
    try:
        uploaded = await store.upload("big-flow", "large", source)
        upload_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        downloaded = await store.download("big-flow", "large", back)
        download_peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert file_sha256(back) == digest
    return Transfer(uploaded, downloaded, digest, upload_peak, download_peak)
