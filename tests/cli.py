"""Running the `weir` command in tests, as a user does: a process of its own."""

from __future__ import annotations

import subprocess
import sys

UNREACHABLE_NATS = "nats://127.0.0.1:1"
"""A NATS URL nobody answers: for commands that must stop before they reach NATS."""


def run_weir(
    *args: str, nats_url: str = UNREACHABLE_NATS, stdin: str | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """`weir ARGS --nats-url NATS_URL`, its output captured as text."""
    return subprocess.run(
        [sys.executable, "-m", "weir.cli", *args, "--nats-url", nats_url],
        capture_output=True,
        text=True,
        timeout=timeout,
        input=stdin,
        check=False,
    )
