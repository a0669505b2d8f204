"""The service images: one Dockerfile with a target per service, hadolint-clean,
multi-stage, non-root, built from the repository root."""

from __future__ import annotations

import fnmatch
import subprocess
import tomllib

import pytest

from tests.deploy.files import DOCKERFILE, IMAGES, ROOT, image_steps, instructions, stages, tool


def ignored(path: str) -> bool:
    patterns = [
        p.strip()
        for p in (ROOT / ".dockerignore").read_text().splitlines()
        if p.strip() and not p.startswith("#")
    ]
    return any(fnmatch.fnmatch(path, p) or path.startswith(p.rstrip("/") + "/") for p in patterns)


def test_hadolint_passes() -> None:
    result = subprocess.run(
        [tool("hadolint"), "--no-color", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_there_is_one_dockerfile() -> None:
    assert sorted(p.relative_to(ROOT).as_posix() for p in ROOT.glob("services/*/Dockerfile")) == []


@pytest.mark.parametrize("target", IMAGES)
def test_image_is_multi_stage_and_runs_as_non_root(target: str) -> None:
    steps = image_steps(target)
    assert not any(op == "RUN" and "pip install" in arg for op, arg in steps), "built elsewhere"
    assert ("COPY", "--from=build /opt/weir /opt/weir") in steps
    user = [arg for op, arg in steps if op == "USER"]
    assert user and user[-1].split(":")[0] not in ("root", "0")


def test_every_copied_path_is_in_the_build_context() -> None:
    for op, arg in instructions():
        if op != "COPY" or arg.startswith("--from="):
            continue
        *sources, _target = arg.split()
        for source in sources:
            assert (ROOT / source).exists(), f"COPY {source}: no such path"
            assert not ignored(source), f"COPY {source} is in .dockerignore"


def test_the_build_holds_every_package_the_pyproject_builds() -> None:
    # The one wheel installs every entrypoint (weir-web too) into every image: a package
    # left out of the build context is an entrypoint that fails with ModuleNotFoundError.
    wheel = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["hatch"]["build"]
    packages = wheel["targets"]["wheel"]["packages"]
    copied = [arg.split()[0] for op, arg in stages()["build"] if op == "COPY"]
    missing = [p for p in packages if not any(p == c or p.startswith(c + "/") for c in copied)]
    assert missing == [], f"the build stage does not copy {missing}"


@pytest.mark.parametrize("target", IMAGES)
def test_the_images_differ_only_in_their_own_stage(target: str) -> None:
    shared = stages()["service"]
    assert image_steps(target)[: len(shared)] == shared
    [entrypoint] = [arg for op, arg in stages()[target] if op == "ENTRYPOINT"]
    assert entrypoint == f'["weir-{target}"]'


def test_dockerignore_keeps_local_state_out_of_the_context() -> None:
    for path in (".venv", ".git", "tests", ".weir", "services/runner/x/__pycache__"):
        assert ignored(path), path
