"""yamllint (relaxed) on every YAML file of the deployment."""

from __future__ import annotations

import subprocess

from tests.deploy.files import DEPLOY, ROOT, tool

# relaxed, but a warning fails too, and lines may be as long as the Python code's.
CONFIG = "{extends: relaxed, rules: {line-length: {max: 100}}}"
YAML_FILES = sorted([ROOT / "docker-compose.yml", *DEPLOY.rglob("*.yaml"), *DEPLOY.rglob("*.yml")])


def test_yamllint_relaxed_passes() -> None:
    assert len(YAML_FILES) >= 6
    result = subprocess.run(
        [tool("yamllint"), "--strict", "-d", CONFIG, *map(str, YAML_FILES)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stdout + result.stderr
