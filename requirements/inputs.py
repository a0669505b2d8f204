"""The digest of what the lock files were resolved from: pyproject's dependencies and extras.

`requirements/lock` writes it into each lock's first line; `tests/unit/test_lock.py` recomputes
it, so a change to pyproject.toml without `./just lock` fails the suite.
"""

import hashlib
import json
import tomllib
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"


def inputs_digest(pyproject: Path = PYPROJECT) -> str:
    project = tomllib.loads(pyproject.read_text())["project"]
    wanted = {
        "requires-python": project.get("requires-python"),
        "dependencies": sorted(project.get("dependencies", [])),
        "optional-dependencies": {
            name: sorted(reqs) for name, reqs in project.get("optional-dependencies", {}).items()
        },
    }
    return hashlib.sha256(json.dumps(wanted, sort_keys=True).encode()).hexdigest()


if __name__ == "__main__":
    print(inputs_digest())
