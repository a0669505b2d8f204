"""The artifacts scenario: one large, incompressible file through the artifact helper that task
pods run (`python -m weir_runner.artifacts upload|download`), against a fresh nats-server.
Reports each direction's MiB/s and the helper's peak RSS, next to a tiny artifact's baseline.

Only the standard library and weir here: tests/artifacts/test_artifact_memory.py measures the
helper with the same `run_helper`, without the benchmark's extra installed.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from weir.artifacts import ArtifactStore
from weir.embedded import EmbeddedNats
from weir.jetstream import close, connect

from bench.stats import dig, fmt

MIB = 2**20
ARTIFACT_MIB_DEFAULT = 200
BASELINE_BYTES = 4096
"""The tiny artifact whose transfer gives the helper's baseline RSS and start-up time."""
WRITE_BLOCK = MIB
"""Bytes of random data generated and written at a time: the file is never whole in memory."""
HELPER_TIMEOUT_DEFAULT = 120.0
BUCKET = "weir-artifacts"
FLOW = "artifacts-bench"

_MEASURE = """\
import os, sys, time
started = time.monotonic()
pid = os.posix_spawn(sys.argv[2], sys.argv[2:], os.environ)
_, status, usage = os.wait4(pid, 0)
with open(sys.argv[1], "w") as out:
    out.write(f"{usage.ru_maxrss} {time.monotonic() - started}")
sys.exit(os.waitstatus_to_exitcode(status))
"""
"""Runs a command and records its peak RSS (KiB) and seconds in the file argv[1].

Linux charges a child the high-water RSS of the address space it leaves at exec, which for a
child of a large process (pytest, the benchmark) is the parent's: the child's own ru_maxrss is
then the parent's size. Spawned from this small interpreter instead, it starts from ~9 MiB,
below anything the helper uses.
"""


@dataclass(frozen=True)
class HelperRun:
    """One run of the artifact helper: how it ended, how long it took, its peak RSS."""

    exit_code: int
    seconds: float
    peak_rss_bytes: int
    output: str

    @property
    def peak_rss_mib(self) -> float:
        return self.peak_rss_bytes / MIB


def helper_env(nats_url: str, bucket: str = BUCKET) -> dict[str, str]:
    """This process's environment without its WEIR_* settings, pointed at `nats_url`."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("WEIR_")}
    env["WEIR_NATS_URL"] = nats_url
    env["WEIR_ARTIFACTS_BUCKET"] = bucket
    return env


def run_helper(
    env: Mapping[str, str], args: Sequence[str], timeout: float = HELPER_TIMEOUT_DEFAULT
) -> HelperRun:
    """Run `python -m weir_runner.artifacts ARGS` to the end and measure it (blocking)."""
    with tempfile.TemporaryDirectory(prefix="weir-helper-") as tmp:
        measured = Path(tmp) / "measured"
        cmd = [sys.executable, "-I", "-S", "-c", _MEASURE, str(measured)]
        cmd += [sys.executable, "-m", "weir_runner.artifacts", *args]
        proc = subprocess.Popen(
            cmd,
            env=dict(env),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # so a timeout kills the helper too, not only the launcher
        )
        try:
            output, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            raise TimeoutError(
                f"artifact helper {' '.join(args)}: not done in {timeout:g}s"
            ) from None
        text = output.decode(errors="replace")
        if not measured.exists():
            raise RuntimeError(f"artifact helper {' '.join(args)} did not start:\n{text}")
        peak_kib, seconds = measured.read_text().split()
    return HelperRun(proc.returncode, float(seconds), int(peak_kib) * 1024, text)


def write_incompressible(path: Path, size: int) -> str:
    """Write `size` random bytes to `path`, WRITE_BLOCK at a time; returns their SHA-256."""
    digest = hashlib.sha256()
    with open(path, "wb") as out:
        for offset in range(0, size, WRITE_BLOCK):
            block = os.urandom(min(WRITE_BLOCK, size - offset))
            digest.update(block)
            out.write(block)
    return digest.hexdigest()


def file_sha256(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _checked(run: HelperRun, what: str) -> HelperRun:
    if run.exit_code != 0:
        raise RuntimeError(f"artifact helper {what} exited {run.exit_code}:\n{run.output}")
    return run


async def _recorded_size(nats_url: str, name: str) -> int:
    nc = await connect(nats_url, "weir-bench-artifacts")
    try:
        return (await ArtifactStore(nc.jetstream(), BUCKET).info(FLOW, name)).size
    finally:
        await close(nc)


def _direction(run: HelperRun, baseline: HelperRun, size: int) -> dict[str, Any]:
    return {
        "seconds": run.seconds,
        "mib_per_s": size / MIB / run.seconds,
        "rss_peak_mib": run.peak_rss_mib,
        "rss_over_baseline_mib": run.peak_rss_mib - baseline.peak_rss_mib,
    }


def transfer(
    workdir: Path, size_mib: int, timeout: float = HELPER_TIMEOUT_DEFAULT
) -> dict[str, Any]:
    """Upload then download a `size_mib` MiB artifact with the helper; figures per direction.

    MiB/s are over the helper's whole run, start-up and connecting included (what a pod
    waits for); `baseline.*_s` is that fixed cost, measured on a tiny artifact.
    """
    root = workdir / f"artifacts-{uuid.uuid4().hex[:8]}"
    nats = EmbeddedNats(root / "nats")
    nats.start()
    try:
        env = helper_env(nats.url)
        tiny, tiny_back = root / "tiny.bin", root / "tiny.back"
        write_incompressible(tiny, BASELINE_BYTES)
        tiny_up = _checked(
            run_helper(env, ["upload", "--flow", FLOW, f"tiny={tiny}"], timeout), "upload"
        )
        tiny_down = _checked(
            run_helper(env, ["download", f"{FLOW}/tiny={tiny_back}"], timeout), "download"
        )

        size = size_mib * MIB
        large, large_back = root / "large.bin", root / "large.back"
        digest = write_incompressible(large, size)
        up = _checked(
            run_helper(env, ["upload", "--flow", FLOW, f"large={large}"], timeout), "upload"
        )
        down = _checked(
            run_helper(env, ["download", f"{FLOW}/large={large_back}"], timeout), "download"
        )
        recorded = asyncio.run(_recorded_size(nats.url, "large"))
        if recorded != size or file_sha256(large_back) != digest:
            raise RuntimeError(
                f"artifacts: the {size_mib} MiB artifact came back different "
                f"(recorded size {recorded}, expected {size}); see {root}"
            )
    finally:
        nats.stop()
    shutil.rmtree(root, ignore_errors=True)
    return {
        "size_mib": size_mib,
        "baseline": {
            "upload_rss_mib": tiny_up.peak_rss_mib,
            "download_rss_mib": tiny_down.peak_rss_mib,
            "upload_s": tiny_up.seconds,
            "download_s": tiny_down.seconds,
        },
        "upload": _direction(up, tiny_up, size),
        "download": _direction(down, tiny_down, size),
    }


def table(results: Mapping[str, Any]) -> str:
    """Markdown table of combined artifacts figures (median of the repeats)."""
    size = fmt(dig(results, "size_mib"), 0)
    lines = [
        f"| artifact helper, {size} MiB | MiB/s | s | peak RSS MiB | over baseline MiB |",
        "|---|---|---|---|---|",
    ]
    for direction in ("upload", "download"):
        lines.append(
            f"| {direction} | {fmt(dig(results, direction, 'mib_per_s'), 0)} "
            f"| {fmt(dig(results, direction, 'seconds'), 2)} "
            f"| {fmt(dig(results, direction, 'rss_peak_mib'))} "
            f"| {fmt(dig(results, direction, 'rss_over_baseline_mib'))} |"
        )
    lines.append(
        f"| baseline: {BASELINE_BYTES:,} B up / down | — "
        f"| {fmt(dig(results, 'baseline', 'upload_s'), 2)} / "
        f"{fmt(dig(results, 'baseline', 'download_s'), 2)} "
        f"| {fmt(dig(results, 'baseline', 'upload_rss_mib'))} / "
        f"{fmt(dig(results, 'baseline', 'download_rss_mib'))} | — |"
    )
    return "\n".join(lines) + "\n"
