"""A uid of its own for each running local attempt (`WEIR_RUNNER_TASK_UIDS`).

A root runner takes for each attempt a uid of the range that no other attempt on this machine
holds: it locks the uid's file in `LOCK_DIR` (an exclusive `flock`, not waiting) and hands the
open file to the attempt's supervisor, which holds it until everything of the attempt has
ended. The lock goes with the last process holding it, so a crash of the runner or of the
supervisor never leaves a uid taken for ever, and the runners of one machine (whatever their
directories) share the one set of locks.

Two attempts that run at the same time then differ in uid (and gid): neither can read the
other's `/proc/<pid>/environ`, `mem` or files it keeps to itself, nor signal it; RLIMIT_NPROC
counts one attempt alone; and the supervisor kills every process of the uid as the attempt
starts and as it ends (see `supervisor.py`), so nothing of it outlives it, even a process
that left its process group and its cgroup.
"""

from __future__ import annotations

import errno
import fcntl
import grp
import os
import pwd
import secrets
from dataclasses import dataclass
from pathlib import Path

from weir.config import ConfigError
from weir_proto.errors import WeirException

LOCK_DIR = Path("/run/weir/task-uids")
"""One lock file per uid handed out, root's alone (0700). Runners keep apart only when they
see the same directory (one machine, one mount namespace)."""
SUBORDINATE_IDS = (Path("/etc/subuid"), Path("/etc/subgid"))
"""The uid and gid ranges handed to users' containers (`newuidmap`): never a task's."""


class UidsExhausted(WeirException):
    """Every uid of the range is held by a running attempt."""


@dataclass(frozen=True, slots=True)
class UidLease:
    """A uid held for one attempt while `fd` (a locked file) stays open somewhere."""

    uid: int
    fd: int

    def release(self) -> None:
        """Close this process's copy of the lock (the supervisor's copy still holds it)."""
        os.close(self.fd)


@dataclass(frozen=True, slots=True)
class UidPool:
    first: int
    last: int
    lock_dir: Path = LOCK_DIR

    @property
    def size(self) -> int:
        return self.last - self.first + 1

    def describe(self) -> str:
        return f"one uid per attempt of {self.first}-{self.last}"

    def check(self) -> None:
        """Refuse a range that holds a user or group of this machine (a task would get its
        files and its processes) and a lock directory others may write."""
        taken = [
            f"user {entry.pw_name} (uid {entry.pw_uid})"
            for entry in pwd.getpwall()
            if self.first <= entry.pw_uid <= self.last
        ] + [
            f"group {entry.gr_name} (gid {entry.gr_gid})"
            for entry in grp.getgrall()
            if self.first <= entry.gr_gid <= self.last
        ]
        taken += self._subordinate()
        if taken:
            raise ConfigError(
                f"WEIR_RUNNER_TASK_UIDS={self.first}-{self.last} holds "
                f"{', '.join(taken[:3])}{', …' if len(taken) > 3 else ''}: tasks would run as "
                "them; choose a range no user or group of this machine has"
            )
        try:
            self.lock_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            found = self.lock_dir.lstat()
        except OSError as exc:
            raise ConfigError(
                f"WEIR_RUNNER_TASK_UIDS: the runner cannot make {self.lock_dir}, where the "
                f"runners of this machine lock the uids they hand out ({exc.strerror}); "
                "make it (root's, mode 0700) or set WEIR_RUNNER_TASK_UIDS=off"
            ) from None
        if found.st_uid != 0 or found.st_mode & 0o077 or not self.lock_dir.is_dir():
            raise ConfigError(
                f"WEIR_RUNNER_TASK_UIDS: {self.lock_dir} must be a directory of root's alone "
                f"(mode 0700; it is {oct(found.st_mode & 0o7777)}, owner uid {found.st_uid}): "
                "anyone who may write there could hold or release the uids of tasks"
            )

    def _subordinate(self) -> list[str]:
        """The ranges of /etc/subuid and /etc/subgid that overlap this one."""
        found = []
        for path in SUBORDINATE_IDS:
            try:
                lines = path.read_text().splitlines()
            except OSError:
                continue
            for line in lines:
                owner, _, rest = line.partition(":")
                start, _, count = rest.partition(":")
                if not (start.isdecimal() and count.isdecimal()):
                    continue
                low, high = int(start), int(start) + int(count) - 1
                if low <= self.last and self.first <= high:
                    found.append(f"{owner}'s ids {low}-{high} in {path}")
        return found

    def take(self) -> UidLease:
        """A uid no running attempt holds, locked. Tries the range from a random place on,
        so a uid an attempt just left is seldom the next one's."""
        start = secrets.randbelow(self.size)
        for step in range(self.size):
            uid = self.first + (start + step) % self.size
            fd = os.open(
                self.lock_dir / str(uid),
                os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW,
                0o600,
            )
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                os.close(fd)
                if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                    continue
                raise
            return UidLease(uid, fd)
        raise UidsExhausted(
            f"every uid of WEIR_RUNNER_TASK_UIDS={self.first}-{self.last} is held by a "
            "running attempt: widen the range"
        )
