"""`./just demo` as the README's quick start runs it: the demo flow succeeds and the web UI
it names answers to the token it prints until Enter stops it; with nobody at a terminal
(a script, CI) it ends by itself."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from weir import devstack

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow
DEMO_TIMEOUT = 180


def _demo(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "weir.devstack", "demo", "examples/diamond.yaml", *args],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def test_the_demo_waits_for_enter_only_at_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[tuple[str, bool]] = []

    def demo(flow: str, hold: bool) -> int:
        asked.append((flow, hold))
        return 0

    monkeypatch.setattr(devstack, "demo", demo)
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))  # a script's or CI's: no terminal
    assert devstack.main(["demo"]) == 0
    assert devstack.main(["demo", "f.yaml", "--hold"]) == 0
    assert asked == [("examples/diamond.yaml", False), ("f.yaml", True)]


def test_a_held_demo_serves_its_web_ui_with_the_printed_token_until_enter() -> None:
    proc = _demo("--hold")
    assert proc.stdout is not None and proc.stdin is not None
    seen = ""
    try:
        for line in proc.stdout:
            seen += line
            if "press Enter" in line:
                break
        found = re.search(r"web UI: (http://\S+) \(log in with the token (\S+)\)", seen)
        assert found, seen
        url, token = found.groups()
        flows = httpx.get(f"{url}/api/v1/flows", headers={"Authorization": f"Bearer {token}"})
        assert flows.status_code == 200
        assert [f["status"] for f in flows.json()["flows"]] == ["succeeded"]
        assert httpx.get(f"{url}/api/v1/flows").status_code == 401
        proc.stdin.write("\n")
        proc.stdin.flush()
        rest, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0, seen + rest
        assert "demo flow succeeded" in seen
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
