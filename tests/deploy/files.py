"""Where the deployment files are, and how to read them (the deploy tests run offline:
no Docker engine, no network)."""

from __future__ import annotations

import json
import shutil
import sys
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
DASHBOARDS = DEPLOY / "grafana" / "dashboards"
DOCKERFILE = ROOT / "Dockerfile"
"""The one Dockerfile: a build stage, a stage every image shares, and a target per image."""
IMAGES = ("scheduler", "runner", "web")
"""The Dockerfile's targets, one per service (image `weir-<target>`)."""


def instructions(dockerfile: Path = DOCKERFILE) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of each step, continuation lines joined, comments left out."""
    text = dockerfile.read_text().replace("\\\n", " ")
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "")
        for line in (raw.strip() for raw in text.splitlines())
        if line and not line.startswith("#")
    ]


def stages(dockerfile: Path = DOCKERFILE) -> dict[str, list[tuple[str, str]]]:
    """Each named stage's steps, its FROM first."""
    found: dict[str, list[tuple[str, str]]] = {}
    steps: list[tuple[str, str]] = []
    for op, arg in instructions(dockerfile):
        if op == "FROM":
            steps = found.setdefault(arg.split()[-1], [])
        steps.append((op, arg))
    return found


def image_steps(target: str) -> list[tuple[str, str]]:
    """Every step that makes the image of `target`: the stages it is built FROM, then its own."""
    every = stages()
    first, *rest = every[target]
    base = first[1].split()[0]
    return [*(image_steps(base) if base in every else [first]), *rest]


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def tool(name: str) -> str:
    """A tool from the project's virtualenv (installed with the dev extra), else from PATH."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: pip install -e '.[dev]'")
    return found


@cache
def compose() -> dict[str, Any]:
    data = load_yaml(ROOT / "docker-compose.yml")
    assert isinstance(data, dict)
    return data


@cache
def dashboards() -> dict[str, dict[str, Any]]:
    return {p.name: json.loads(p.read_text()) for p in sorted(DASHBOARDS.glob("*.json"))}
