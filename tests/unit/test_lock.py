"""Installs are reproducible: every dependency is pinned with hashes, and the locks agree
with pyproject.toml (change both together with `./just lock`)."""

from __future__ import annotations

import importlib.util
import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
LOCKS = {
    "requirements/dev.lock": ("dev", "embedded"),
    "requirements/bench.lock": ("dev", "embedded", "bench"),
}
PIN = re.compile(r"^([A-Za-z0-9._-]+)(?:\[[^\]]*\])?==([^\s;\\]+)")


def _inputs_digest() -> str:
    spec = importlib.util.spec_from_file_location("lock_inputs", ROOT / "requirements/inputs.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    digest: str = module.inputs_digest()
    return digest


def _pins(text: str) -> dict[str, str]:
    return {
        canonicalize_name(m.group(1)): m.group(2)
        for line in text.splitlines()
        if (m := PIN.match(line))
    }


def _entries(text: str) -> list[str]:
    """One string per pinned requirement, its hash lines included."""
    return re.split(r"\n(?=[A-Za-z0-9])", text.split("\n", 1)[1])


def test_locks_were_made_from_this_pyproject() -> None:
    digest = _inputs_digest()
    for lock in LOCKS:
        first = (ROOT / lock).read_text().splitlines()[0]
        assert digest in first, f"{lock} is older than pyproject.toml: run ./just lock"


def test_every_requirement_is_pinned_within_its_range() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for lock, extras in LOCKS.items():
        pins = _pins((ROOT / lock).read_text())
        wanted = list(project["dependencies"])
        for extra in extras:
            wanted += project["optional-dependencies"][extra]
        for line in wanted:
            req = Requirement(line)
            name = canonicalize_name(req.name)
            assert name in pins, f"{req.name} is not in {lock}: run ./just lock"
            assert req.specifier.contains(pins[name], prereleases=True), (
                f"{lock} pins {req.name}=={pins[name]}, outside {req.specifier}: run ./just lock"
            )


def test_every_pin_carries_hashes_and_the_bench_lock_keeps_the_dev_versions() -> None:
    for lock in [*LOCKS, "requirements/tools.txt"]:
        text = (ROOT / lock).read_text()
        for entry in _entries(text):
            if PIN.match(entry):
                assert "--hash=sha256:" in entry, f"{lock}: {entry.splitlines()[0]} has no hash"
    dev = _pins((ROOT / "requirements/dev.lock").read_text())
    bench = _pins((ROOT / "requirements/bench.lock").read_text())
    changed = {name: (v, bench.get(name)) for name, v in dev.items() if bench.get(name) != v}
    assert not changed, f"bench.lock moved dev versions (dev, bench): {changed}"
