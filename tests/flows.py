"""Flow specs the tests share."""

from __future__ import annotations

from typing import Any


def task(name: str, *cmd: str, depends: list[str] | None = None, **extra: Any) -> dict[str, Any]:
    return {"name": name, "cmd": list(cmd) or ["true"], "depends": depends or [], **extra}


def diamond(flow_id: str | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "name": "diamond",
        "tasks": [
            task("join", "true", depends=["left", "right"]),
            task("left", "true", depends=["root"]),
            task("right", "true", depends=["root"]),
            task("root", "true"),
        ],
    }
    if flow_id:
        spec["id"] = flow_id
    return spec
