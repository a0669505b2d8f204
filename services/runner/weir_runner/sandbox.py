"""Files mounted at absolute paths for one process, without root and without touching the
host's filesystem: a user + mount namespace and a chroot into a mirror of the host.

Tasks written for containers read and write absolute paths (flowmium's example writes
`/task-output-foo.txt`). The local executor cannot put files there on the host, and must not;
in a sandbox it can. `wrap` turns an argv into one that runs it:

- in its own user namespace (the runner's user becomes root there, and only there) and
  mount namespace (`unshare --user --map-root-user --mount`, util-linux);
- chrooted into `root`, a tmpfs whose entries mirror the host's `/` by bind mounts, so the
  host's programs, libraries and directories are all there;
- with each `Mount` bound at its target. The directories above a target are tmpfs mirrors
  too (their entries bind mounted one by one), so a mount point is created in the
  sandbox, never on the host.

Nothing outlives the process: the namespace, its mounts and its tmpfs go when it ends. Linux
only, and only where unprivileged user namespaces are allowed (`available()` says).
"""

from __future__ import annotations

import functools
import os
import shlex
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

TOOLS_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
"""Where the sandbox's own tools (unshare, mount, chroot) are looked for: never the task's
PATH, which is the task's business (and is given back to it for its command)."""
SETUP_FAILED = 125
"""The exit code of a sandbox that could not be set up (the task did not start)."""
SETUP_FAILED_MESSAGE = "weir sandbox: setting up the task's mounts failed"


def _tool(name: str) -> str | None:
    return shutil.which(name, path=f"{TOOLS_PATH}:{os.environ.get('PATH', '')}")


@dataclass(frozen=True, slots=True)
class Mount:
    """`source` (a file or directory on the host) seen at `target` inside the sandbox."""

    source: Path
    target: str
    read_only: bool = False


@functools.cache
def available() -> bool:
    """Whether this machine lets the runner's user have its own user and mount namespaces
    (blocks for up to a few seconds the first time: call it from a thread)."""
    unshare = _tool("unshare")
    if unshare is None or _tool("chroot") is None:
        return False
    try:
        probe = subprocess.run(
            [unshare, "--user", "--map-root-user", "--mount", "true"],
            capture_output=True,
            check=False,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return probe.returncode == 0


def wrap(argv: Sequence[str], mounts: Sequence[Mount], working_dir: str, root: Path) -> list[str]:
    """`argv` run in the sandbox with `mounts`, from `working_dir`. `root` is an empty
    directory of the host where the sandbox's `/` is mounted (seen only by the sandbox);
    the set-up script is written beside it (`<root>.sh`): mirroring a large directory takes
    more lines than one argument may hold. Walks the host's directories: call it from a
    thread. A sandbox that cannot be set up exits with `SETUP_FAILED`."""
    unshare, chroot = _tool("unshare"), _tool("chroot")
    if unshare is None or chroot is None:
        raise RuntimeError("the sandbox needs unshare and chroot (util-linux, coreutils)")
    targets = [(m.source, os.path.realpath(m.target), m.read_only) for m in mounts]
    ancestors = {"/"}
    for _, target, _ in targets:
        ancestors.update(str(parent) for parent in Path(target).parents)
    q = shlex.quote
    script = [
        'TASK_PATH="$PATH"',
        f"PATH={TOOLS_PATH}",
        f"trap {q(f'echo {q(SETUP_FAILED_MESSAGE)} >&2; exit {SETUP_FAILED}')} EXIT",
        "set -e",
        f"mount -t tmpfs weir-root {q(str(root))}",
    ]

    def mirror(host_dir: Path) -> None:
        for entry in sorted(host_dir.iterdir()):
            inside = q(f"{root}{entry}")
            if entry.is_symlink():
                script.append(f"ln -s {q(os.readlink(entry))} {inside}")
            elif entry.is_dir() and str(entry) in ancestors:
                script.append(f"mkdir {inside} && mount -t tmpfs weir-dir {inside}")
                mirror(entry)
            elif entry.is_dir():
                script.append(f"mkdir {inside} && mount --rbind {q(str(entry))} {inside}")
            elif entry.exists():
                script.append(f": > {inside} && mount --bind {q(str(entry))} {inside}")

    mirror(Path("/"))
    for source, target, read_only in targets:
        inside = q(f"{root}{target}")
        script.append(f"mkdir -p {q(f'{root}{Path(target).parent}')}")
        if source.is_dir():
            script.append(f"mkdir -p {inside}")
        else:
            script.append(f"[ -e {inside} ] || : > {inside}")
        script.append(f"mount --bind {q(str(source))} {inside}")
        if read_only:
            script.append(f"mount -o remount,bind,ro {inside}")
    script.append(f"mkdir -p {q(f'{root}{working_dir}')}")
    script.append("trap - EXIT")
    enter = 'cd "$0" && exec "$@"'
    command = [chroot, str(root), "/bin/sh", "-c", enter, working_dir, *argv]
    script.append('PATH="$TASK_PATH" exec ' + " ".join(q(part) for part in command))
    path = root.parent / f"{root.name}.sh"
    path.write_text("\n".join(script) + "\n")
    return [unshare, "--user", "--map-root-user", "--mount", "/bin/sh", str(path)]
