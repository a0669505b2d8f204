"""How a weir service process runs (`weir.process.run_service`), checked in a process of its
own, as the services run."""

from __future__ import annotations

import os
import subprocess
import sys

PROBE = """
import asyncio, gc
from weir.config import Settings
from weir.process import run_service

class Probe:
    def __init__(self, settings):
        self.stop = asyncio.Event()

    async def run(self):
        print(*gc.get_threshold())

run_service("weir-probe", "weir.probe", Settings.from_env(), Probe)
"""


def test_a_service_collects_its_young_objects_every_ten_thousand_allocations_not_700() -> None:
    """A service makes hundreds of short-lived objects per message; at Python's default the
    cyclic collector ran every few messages for next to nothing. The older generations keep
    Python's ratios, so cyclic garbage still goes."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WEIR_", "OTEL_"))}
    done = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=60, env=env
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["10000", "10", "10"]
