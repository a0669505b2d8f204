"""A 200 MiB artifact goes through the pods' artifact helper in bounded memory: the helper's
peak RSS (the kernel's count for that process, not Python's allocations) stays near what it
is for a 4 KiB artifact, and the file comes back byte for byte."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from weir.artifacts import ArtifactStore
from weir.embedded import EmbeddedNats
from weir.jetstream import close, connect

from bench.artifacts import (
    BASELINE_BYTES,
    BUCKET,
    MIB,
    HelperRun,
    file_sha256,
    helper_env,
    run_helper,
    write_incompressible,
)

pytestmark = pytest.mark.slow

LARGE_BYTES = 200 * MIB
RSS_GROWTH_BOUND = 32 * MIB
"""Measured growth over the tiny artifact: ~1 MiB up, ~4 MiB down (8 chunks of 128 KiB per pull).
nats-py's own `get` keeps the object in memory, and its push consumer may queue 256 MiB."""
RSS_CEILING = 128 * MIB
"""The helper's whole footprint, far below the artifact: ~50 MiB measured, mostly the
interpreter and its imports."""
HELPER_TIMEOUT = 45.0
"""Per helper run; ~1.5 s measured. Below pytest's timeout, so a hang fails with a message."""
FLOW = "memory-flow"


async def helper(env: dict[str, str], *args: str) -> HelperRun:
    run = await asyncio.to_thread(run_helper, env, args, HELPER_TIMEOUT)
    assert run.exit_code == 0, run.output
    return run


async def test_200_mib_artifact_moves_through_the_helper_in_bounded_memory(
    nats_server: EmbeddedNats, tmp_path: Path
) -> None:
    env = helper_env(nats_server.url)
    tiny, large = tmp_path / "tiny.bin", tmp_path / "large.bin"
    tiny_back, large_back = tmp_path / "back" / "tiny.bin", tmp_path / "back" / "large.bin"
    tiny_digest = write_incompressible(tiny, BASELINE_BYTES)
    try:
        tiny_up = await helper(env, "upload", "--flow", FLOW, f"tiny={tiny}")
        tiny_down = await helper(env, "download", f"{FLOW}/tiny={tiny_back}")
        digest = await asyncio.to_thread(write_incompressible, large, LARGE_BYTES)

        up = await helper(env, "upload", "--flow", FLOW, f"large={large}")
        down = await helper(env, "download", f"{FLOW}/large={large_back}")

        mib = LARGE_BYTES / MIB
        print(
            f"\nhelper peak RSS: baseline up {tiny_up.peak_rss_mib:.1f} MiB, "
            f"down {tiny_down.peak_rss_mib:.1f} MiB; {mib:.0f} MiB up {up.peak_rss_mib:.1f} MiB "
            f"({mib / up.seconds:.0f} MiB/s), down {down.peak_rss_mib:.1f} MiB "
            f"({mib / down.seconds:.0f} MiB/s)"
        )
        assert await asyncio.to_thread(file_sha256, large_back) == digest
        nc = await connect(nats_server.url, "test-artifact-memory")
        try:
            store = ArtifactStore(nc.jetstream(), BUCKET)
            listed = [(a.name, a.size, a.sha256) for a in await store.list(FLOW)]
            assert listed == [
                ("large", LARGE_BYTES, digest),
                ("tiny", BASELINE_BYTES, tiny_digest),
            ]
            await store.delete(FLOW, "large")  # pytest keeps tmp_path, and with it the stream
        finally:
            await close(nc)
        assert up.peak_rss_bytes < tiny_up.peak_rss_bytes + RSS_GROWTH_BOUND
        assert down.peak_rss_bytes < tiny_down.peak_rss_bytes + RSS_GROWTH_BOUND
        assert max(up.peak_rss_bytes, down.peak_rss_bytes) < RSS_CEILING
    finally:
        large.unlink(missing_ok=True)
        large_back.unlink(missing_ok=True)
