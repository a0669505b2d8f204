"""The service images: hadolint-clean, multi-stage, non-root, built from the repository root."""

from __future__ import annotations

import fnmatch
import subprocess
import tomllib
from pathlib import Path

import pytest

from tests.deploy.files import DOCKERFILES, ROOT, tool


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    text = dockerfile.read_text().replace("\\\n", " ")
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "")
        for line in (raw.strip() for raw in text.splitlines())
        if line and not line.startswith("#")
    ]


def ignored(path: str) -> bool:
    patterns = [
        p.strip()
        for p in (ROOT / ".dockerignore").read_text().splitlines()
        if p.strip() and not p.startswith("#")
    ]
    return any(fnmatch.fnmatch(path, p) or path.startswith(p.rstrip("/") + "/") for p in patterns)


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_hadolint_passes(dockerfile: Path) -> None:
    result = subprocess.run(
        [tool("hadolint"), "--no-color", str(dockerfile)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_image_is_multi_stage_and_runs_as_non_root(dockerfile: Path) -> None:
    steps = instructions(dockerfile)
    assert sum(1 for op, _ in steps if op == "FROM") >= 2
    user = [arg for op, arg in steps if op == "USER"]
    assert user and user[-1].split(":")[0] not in ("root", "0")
    final_stage = steps[max(i for i, (op, _) in enumerate(steps) if op == "FROM") :]
    assert any(op == "COPY" and arg.startswith("--from=") for op, arg in final_stage)


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_every_copied_path_is_in_the_build_context(dockerfile: Path) -> None:
    for op, arg in instructions(dockerfile):
        if op != "COPY" or arg.startswith("--from="):
            continue
        *sources, _target = arg.split()
        for source in sources:
            assert (ROOT / source).exists(), f"{dockerfile}: COPY {source}: no such path"
            assert not ignored(source), f"{dockerfile}: COPY {source} is in .dockerignore"


def build_stage(dockerfile: Path) -> list[tuple[str, str]]:
    steps = instructions(dockerfile)
    return steps[: [i for i, (op, _) in enumerate(steps) if op == "FROM"][1]]


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_image_holds_every_package_the_pyproject_builds(dockerfile: Path) -> None:
    # The one wheel installs every entrypoint (weir-web too) into every image: a package
    # left out of the build context is an entrypoint that fails with ModuleNotFoundError.
    wheel = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["hatch"]["build"]
    packages = wheel["targets"]["wheel"]["packages"]
    copied = [arg.split()[0] for op, arg in build_stage(dockerfile) if op == "COPY"]
    missing = [p for p in packages if not any(p == c or p.startswith(c + "/") for c in copied)]
    assert missing == [], f"{dockerfile}: the build stage does not copy {missing}"


def test_the_images_share_their_build_stage() -> None:
    first, *others = DOCKERFILES
    for dockerfile in others:
        assert build_stage(dockerfile) == build_stage(first), dockerfile


def test_dockerignore_keeps_local_state_out_of_the_context() -> None:
    for path in (".venv", ".git", "tests", ".weir", "services/runner/x/__pycache__"):
        assert ignored(path), path
