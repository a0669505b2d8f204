"""What keeps a local task away from the runner and from other attempts, as far as this
machine allows: found out once, at the runner's start, and said in one log line.

- The runner is made non-dumpable (`harden_runner`): its /proc/<pid>/environ, mem, maps and
  fds can then be read only by processes with CAP_SYS_PTRACE, not by any process of its user.
- A root runner runs each attempt's task as a uid of its own (`WEIR_RUNNER_TASK_UIDS`, see
  `task_uids.py`), or, with that off, every task as one other user (`WEIR_RUNNER_TASK_USER`,
  `nobody` by default), so they have neither root's files nor its capabilities.
- Each attempt gets a cgroup v2 where the runner may create one (memory.max, pids.max,
  cgroup.kill); elsewhere rlimits and a subreaper supervisor (see `supervisor.py`).
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import pwd
from dataclasses import dataclass
from pathlib import Path

from weir.config import ConfigError, Settings

from weir_runner.task_uids import UidPool

log = logging.getLogger("weir.runner.containment")

PR_SET_DUMPABLE = 4
PR_GET_DUMPABLE = 3
CGROUP_DIR = "weir-attempts"
"""The cgroup under the runner's own that holds one cgroup per attempt."""


def harden_runner() -> bool:
    """Make this process non-dumpable; whether it is now."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
        return bool(libc.prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False


def runner_dumpable() -> bool:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) != 0)
    except (OSError, AttributeError):
        return True


@dataclass(frozen=True, slots=True)
class TaskUser:
    name: str
    uid: int
    gid: int


def task_user(setting: str) -> TaskUser | None:
    """The user tasks run as: None when they run as the runner's own user (the runner is
    not root, or `setting` is root)."""
    if os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwuid(int(setting)) if setting.isdigit() else pwd.getpwnam(setting)
    except (KeyError, ValueError):
        raise ConfigError(
            f"WEIR_RUNNER_TASK_USER={setting!r} is not a user of this machine (the runner runs "
            "as root, so it runs tasks as this user: name an unprivileged user, e.g. nobody)"
        ) from None
    if entry.pw_uid == 0:
        return None
    return TaskUser(entry.pw_name, entry.pw_uid, entry.pw_gid)


def cgroup_base(runner_dir: str) -> Path | None:
    """Where the attempts' cgroups go: `weir-attempts/<runner dir>` under the runner's own
    cgroup v2, when the runner may create cgroups there; None otherwise.

    Attempt ids are unique within one deployment only; the runner directory's part keeps two
    deployments (or two test runs) on one machine from killing each other's attempts, while
    the runners that share a directory, and adopt each other's attempts, share it too."""
    mount = _cgroup2_mount()
    if mount is None:
        return None
    try:
        own = next(
            line.split("::", 1)[1].strip()
            for line in Path("/proc/self/cgroup").read_text().splitlines()
            if line.startswith("0::")
        )
    except (OSError, StopIteration):
        return None
    where = hashlib.sha256(str(Path(runner_dir).resolve()).encode()).hexdigest()[:16]
    base = mount / own.lstrip("/") / CGROUP_DIR / where
    try:
        base.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    return base if (base / "cgroup.procs").exists() else None


def _cgroup2_mount() -> Path | None:
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        before, _, after = line.partition(" - ")
        if after.split(" ", 1)[0] == "cgroup2":
            return Path(before.split()[4])
    return None


@dataclass(frozen=True)
class Containment:
    """How this runner contains its local tasks."""

    user: TaskUser | None
    cgroup: Path | None
    memory_max: int | None
    pids_max: int | None
    cpu_seconds: int | None
    log_max: int
    timeout: float
    uids: UidPool | None = None
    """Where each attempt's own uid comes from (None: every task runs as `user`)."""

    @classmethod
    def probe(cls, settings: Settings) -> Containment:
        user = task_user(settings.runner_task_user)
        uids = None
        if user is not None and settings.runner_task_uids is not None:
            uids = UidPool(*settings.runner_task_uids)
            uids.check()
        return cls(
            user=user,
            uids=uids,
            cgroup=cgroup_base(settings.runner_dir),
            memory_max=settings.task_memory_max,
            pids_max=settings.task_pids_max,
            cpu_seconds=settings.task_cpu_seconds,
            log_max=settings.task_log_max,
            timeout=settings.task_timeout,
        )

    def limits_in_cgroup(self) -> tuple[bool, bool]:
        """Whether memory.max and pids.max can be set in the attempts' cgroups."""
        if self.cgroup is None:
            return False, False
        try:
            offered = (self.cgroup / "cgroup.controllers").read_text().split()
        except OSError:
            return False, False
        return "memory" in offered, "pids" in offered

    def unreachable(self, runner_dir: Path) -> Path | None:
        """A directory above `runner_dir` the task user may not pass through, if any."""
        if self.user is None:
            return None
        for parent in runner_dir.resolve().parents:
            try:
                mode = parent.stat().st_mode
            except OSError:
                continue
            if not mode & 0o001:
                return parent
        return None

    def describe(self) -> dict[str, object]:
        """What holds and what does not, for the runner's start-up log line."""
        memory, pids = self.limits_in_cgroup()
        if self.uids is not None:
            user = self.uids.describe()
        elif self.user is not None:
            user = f"{self.user.name} (uid {self.user.uid})"
        else:
            user = f"the runner's own (uid {os.geteuid()})"
        whose = "the attempt's uid" if self.uids is not None else "the task user"
        return {
            "task_user": user,
            "cgroup": str(self.cgroup) if self.cgroup else None,
            "memory_limit": "cgroup" if memory else "RLIMIT_AS",
            "pids_limit": "cgroup"
            if pids
            else (f"RLIMIT_NPROC of {whose}" if self.user else "none"),
        }

    def warnings(self) -> list[str]:
        """What does not hold on this machine, said once at start."""
        notes = []
        if os.geteuid() == 0 and self.user is None:
            notes.append("tasks run as root: they can read the runner's memory and files")
        if runner_dumpable():
            notes.append("the runner is dumpable: tasks of its user can read its environment")
        if self.cgroup is None:
            notes.append(
                "no cgroup v2 the runner may write: leftovers are found through the "
                "supervisor (a subreaper), limits are rlimits"
            )
        return notes
