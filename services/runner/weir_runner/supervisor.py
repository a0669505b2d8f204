"""The supervisor of one local attempt: starts the task, keeps its logs, records its exit code,
and kills everything it left behind.

Run by the local executor as `python -I supervisor.py <attempt dir>` in its own session, with
a fixed environment, and given its instructions (`Instructions`, JSON) on stdin, so the task's
environment and secrets never appear on a command line or in a file. Standard library only:
nothing the task controls (its PATH, LD_PRELOAD, PYTHONPATH) reaches this process.

In the attempt directory it writes `exit.pid` (its own pid, the process group of the attempt
as far as the runner is concerned), `stdout.log` and `stderr.log` (each at most half of
`log_max` bytes: past that the end is kept after a truncation marker) and, once the task has
ended and everything it started is gone, `exit` (the exit code, 128+N for signal N). It
outlives a runner killed with -9; the next runner adopts the attempt through these files.

Containment, as far as the machine allows:
- the supervisor is not dumpable, so a task of the same user cannot read its memory (which
  holds the task's environment);
- the task runs in its own session, as `uid`/`gid` when given (the runner runs as root), with
  rlimits for memory (address space), processes and CPU time where no cgroup enforces them;
- it runs in cgroup `cgroup` when given (cgroup v2): memory.max and pids.max when the
  controllers are there, and `cgroup.kill` ends everything in it at once;
- the supervisor is a child subreaper: whatever the task starts and orphans (`setsid`,
  double forks) becomes the supervisor's, and is killed when the task ends;
- with `own_uid` (a uid no other attempt holds while this one runs: `task_uids.py`) every
  process of that uid is killed as the task starts (what an attempt whose supervisor was
  killed left) and again with everything of the attempt, whatever it escaped into.

SIGTERM stops the attempt: SIGTERM to all of it, SIGKILL after `grace` seconds.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import os
import resource
import select
import signal
import subprocess
import sys
import time
from typing import Any

PR_SET_DUMPABLE = 4
PR_SET_CHILD_SUBREAPER = 36
PR_SET_NO_NEW_PRIVS = 38
UID_KILL_SECONDS = 10.0
"""How long `end_uid` tries before it says processes of the uid are left."""
READ_BYTES = 64 * 1024
POLL_SECONDS = 0.2
LEFTOVER_KILL_SECONDS = 10.0
"""How long processes left behind are killed again and again (fork loops) before giving up."""
START_FAILED = 127
CANNOT_EXECUTE = 126


class Log:
    """An append-only log file holding at most `limit` bytes: the end of what was written,
    after a marker saying how much was dropped."""

    def __init__(self, path: str, limit: int) -> None:
        self.path = path
        self.limit = max(limit, 1024)
        self.file = open(path, "ab", buffering=0)  # noqa: SIM115 - closed by close()
        self.size = self.file.tell()
        self.dropped = 0
        self.marker = 0

    def write(self, data: bytes) -> None:
        """Keep `data` if the disk lets it (a full disk loses log, never the attempt's end:
        the supervisor must go on to kill what the task left and record its exit)."""
        try:
            self.file.write(data)
            self.size += len(data)
            if self.size > self.limit:
                self._trim()
        except OSError:
            self.dropped += len(data)

    def _trim(self) -> None:
        keep = self.limit // 2
        with open(self.path, "rb") as old:
            old.seek(self.size - keep)
            tail = old.read()
        self.dropped += self.size - len(tail) - self.marker
        marker = f"[weir: log truncated, {self.dropped} bytes dropped]\n".encode()
        self.marker = len(marker)
        self.file.truncate(0)
        self.file.write(marker + tail)
        self.size = len(marker) + len(tail)

    def close(self) -> None:
        self.file.close()


def _write_atomic(name: str, text: str) -> None:
    with open(f"{name}.tmp", "w") as handle:
        handle.write(text)
    os.replace(f"{name}.tmp", name)


def _live_processes() -> dict[int, tuple[int, int]]:
    """Every live (not zombie) process: pid -> (parent pid, process group id), from /proc."""
    found: dict[int, tuple[int, int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as handle:
                stat = handle.read()
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2 :].split()
        if len(fields) > 17 and not _gone(state=fields[0], threads=fields[17]):
            found[int(entry)] = (int(fields[1]), int(fields[2]))
    return found


def _gone(state: bytes, threads: bytes) -> bool:
    """Whether a process /proc still lists has ended: a zombie, but for one whose main thread
    alone exited while other threads run on (it shows as a zombie all the same)."""
    return state == b"Z" and threads == b"1"


def processes_of(uid: int) -> list[int]:
    """The live (not zombie) processes any of whose uids is `uid`, from /proc."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/status", "rb") as handle:
                lines = handle.read().splitlines()
        except OSError:
            continue
        fields = dict(line.split(b":", 1) for line in lines if b":" in line)
        state = fields.get(b"State", b"?").split()[:1] or [b"?"]
        threads = fields.get(b"Threads", b"1").strip()
        uids = fields.get(b"Uid", b"").split()
        if not _gone(state=state[0], threads=threads) and str(uid).encode() in uids:
            found.append(int(entry))
    return found


def end_uid(uid: int, gid: int) -> bool:
    """SIGKILL every process of `uid`, a uid of one attempt's own (see `task_uids.py`):
    a helper that takes the uid kills them all at once (`kill -9 -1`, which a process
    forking as fast as it exits cannot slip past), again until /proc shows none. A helper a
    process of the uid stopped (SIGSTOP, between taking the uid and killing) is killed
    and replaced. Whether none is left within UID_KILL_SECONDS."""
    if uid == 0:
        raise ValueError("never kill every process of root")
    deadline = time.monotonic() + UID_KILL_SECONDS
    while processes_of(uid):
        if time.monotonic() > deadline:
            return False
        helper = subprocess.Popen(  # (/bin/sh: a program any uid may run, unlike ours)
            ["/bin/sh", "-c", "kill -9 -1"],
            user=uid,
            group=gid,
            extra_groups=[],
            cwd="/",
            env={"PATH": "/usr/bin:/bin"},  # the uid may read its environment: none of ours
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            helper.wait(timeout=1.0)
        except subprocess.TimeoutExpired:
            helper.kill()
            helper.wait()
    return True


def _descendants(root: int, live: dict[int, tuple[int, int]] | None = None) -> list[int]:
    """Every live process below `root` (by parent pid, read from /proc)."""
    children: dict[int, list[int]] = {}
    for pid, (parent, _) in (_live_processes() if live is None else live).items():
        children.setdefault(parent, []).append(pid)
    found: list[int] = []
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


class Attempt:
    def __init__(self, instructions: dict[str, Any]) -> None:
        self.argv: list[str] = instructions["argv"]
        self.env: dict[str, str] = instructions["env"]
        self.cwd: str = instructions["cwd"]
        self.uid: int | None = instructions.get("uid")
        self.gid: int | None = instructions.get("gid")
        self.own_uid = bool(instructions.get("own_uid")) and bool(self.uid)
        """`uid` is the attempt's alone: every process of it is the attempt's."""
        self.memory: int | None = instructions.get("memory_max")
        self.pids: int | None = instructions.get("pids_max")
        self.cpu: int | None = instructions.get("cpu_seconds")
        self.log_max: int = instructions["log_max"]
        self.grace: float = instructions.get("grace", 5.0)
        self.memory_by_cgroup = False
        self.pids_by_cgroup = False
        self.cgroup = self._make_cgroup(instructions.get("cgroup"))
        self.child = 0
        self.reaped = False
        """The task itself was reaped: its pid (and so its group's id) may be anyone's now."""
        self.stop_requested = False
        self.umask = 0o022

    def _make_cgroup(self, path: str | None) -> str | None:
        """The attempt's cgroup, with the limits it can enforce; None where there is none."""
        if not path:
            return None
        parent = os.path.dirname(path)
        try:
            os.makedirs(parent, exist_ok=True)
            control = os.path.join(parent, "cgroup.subtree_control")
            with contextlib.suppress(OSError), open(control, "w") as handle:
                handle.write("+memory +pids")  # the controllers the parent may hand down
            os.mkdir(path)
        except FileExistsError:
            pass
        except OSError as exc:
            print(f"weir supervisor: no cgroup {path}: {exc.strerror}", file=sys.stderr)
            return None
        for name, value in (("memory.max", self.memory), ("pids.max", self.pids)):
            if value is None or not os.path.exists(os.path.join(path, name)):
                continue
            try:
                with open(os.path.join(path, name), "w") as handle:
                    handle.write(str(value))
            except OSError:
                continue
            if name == "memory.max":
                self.memory_by_cgroup = True
            else:
                self.pids_by_cgroup = True
        return path

    def start(self, out: int, err: int) -> None:
        self.child = os.fork()
        if self.child == 0:
            self._exec(out, err)

    def _exec(self, out: int, err: int) -> None:
        """In the forked child: contain, drop privileges, become the task."""
        try:
            os.setsid()
            if self.cgroup:
                with open(os.path.join(self.cgroup, "cgroup.procs"), "w") as handle:
                    handle.write("0")
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
            if self.memory is not None and not self.memory_by_cgroup:
                resource.setrlimit(resource.RLIMIT_AS, (self.memory, self.memory))
            if self.pids is not None and not self.pids_by_cgroup and self.uid is not None:
                # Counted per user: only meaningful for a user of the tasks alone.
                resource.setrlimit(resource.RLIMIT_NPROC, (self.pids, self.pids))
            if self.cpu is not None:
                resource.setrlimit(resource.RLIMIT_CPU, (self.cpu, self.cpu + 5))
            os.umask(self.umask)
            os.chdir(self.cwd)  # before dropping privileges: the parents may be closed to it
            if self.gid is not None:
                os.setgroups([])
                os.setgid(self.gid)
            if self.uid is not None:
                os.setuid(self.uid)
                # No setuid or setcap program makes it anyone else (one an earlier holder of
                # its uid left in /tmp, say), nor anything it starts.
                ctypes.CDLL(None, use_errno=True).prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
            if self.own_uid:  # what an earlier holder of the uid may have left running
                with contextlib.suppress(OSError):
                    os.kill(-1, signal.SIGKILL)  # (never the caller itself)
            null = os.open(os.devnull, os.O_RDONLY)
            os.dup2(null, 0)
            os.dup2(out, 1)
            os.dup2(err, 2)
            os.closerange(3, 65536)
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGPIPE):
                signal.signal(sig, signal.SIG_DFL)
            os.execvpe(self.argv[0], self.argv, self.env)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.write(2, f"weir: cannot start {self.argv[0]!r}: {exc.strerror}\n".encode())
            os._exit(START_FAILED if exc.errno == errno.ENOENT else CANNOT_EXECUTE)
        os._exit(START_FAILED)

    def remaining(self) -> list[int]:
        """The processes of the attempt still alive (the task itself included)."""
        return self._remaining(_live_processes())

    def _remaining(self, live: dict[int, tuple[int, int]]) -> list[int]:
        found = set(_descendants(os.getpid(), live))
        if self.cgroup:
            with contextlib.suppress(OSError), open(f"{self.cgroup}/cgroup.procs") as handle:
                found.update(int(line) for line in handle if line.strip())
        found.discard(os.getpid())
        return sorted(found)

    def kill_uid(self) -> None:
        """SIGKILL every process of the attempt's own uid (`end_uid`)."""
        if self.own_uid and self.uid:
            end_uid(self.uid, self.gid if self.gid is not None else self.uid)

    def signal_all(self, sig: int) -> None:
        if sig == signal.SIGKILL and self.cgroup:
            with contextlib.suppress(OSError), open(f"{self.cgroup}/cgroup.kill", "w") as handle:
                handle.write("1")
        if sig == signal.SIGKILL:
            self.kill_uid()
        live = _live_processes()
        remaining = self._remaining(live)
        # The group is signalled at once (a process forking as fast as it exits cannot slip
        # past one pid at a time). Once the task is reaped its pid, the group's id, stays
        # taken only while a member of the group lives: then it is still the attempt's own
        # group (a member is one of our processes); with none left it may be a stranger's.
        if not self.reaped or any(live[pid][1] == self.child for pid in remaining if pid in live):
            with contextlib.suppress(OSError):
                os.killpg(self.child, sig)
        for pid in remaining:  # the group's survivors are orphans handed to us, and others
            with contextlib.suppress(OSError):
                os.kill(pid, sig)

    def remove_cgroup(self) -> None:
        if self.cgroup:
            with contextlib.suppress(OSError):
                os.rmdir(self.cgroup)


def _exit_code(status: int) -> int:
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


def supervise(attempt: Attempt) -> int:
    """Run the task to its end and everything it started with it; its exit code."""
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    attempt.start(out_w, err_w)
    os.close(out_w)
    os.close(err_w)
    _write_atomic("task.pid", str(attempt.child))
    half = attempt.log_max // 2
    logs = {out_r: Log("stdout.log", half), err_r: Log("stderr.log", half)}
    status: int | None = None
    kill_at: float | None = None
    ended_at: float | None = None
    while True:
        if logs:
            ready, _, _ = select.select(list(logs), [], [], POLL_SECONDS)
            for fd in ready:
                data = os.read(fd, READ_BYTES)
                if data:
                    logs[fd].write(data)
                else:
                    logs.pop(fd).close()
                    os.close(fd)
        else:
            time.sleep(POLL_SECONDS / 4)
        while True:  # reap the task and every orphan handed to this subreaper
            try:
                pid, waited = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            if pid == attempt.child:
                status = waited
                attempt.reaped = True
        now = time.monotonic()
        if attempt.stop_requested and kill_at is None:
            attempt.signal_all(signal.SIGTERM)
            kill_at = now + attempt.grace
        if status is not None and ended_at is None:
            ended_at = now
        if (kill_at is not None and now >= kill_at) or ended_at is not None:
            leftovers = attempt.remaining()
            if leftovers:
                attempt.signal_all(signal.SIGKILL)
            elif status is not None and not logs:
                break
            if ended_at is not None and now - ended_at > LEFTOVER_KILL_SECONDS:
                break  # unkillable leftovers (uninterruptible sleep): give up on them
    for log in logs.values():
        log.close()
    attempt.kill_uid()  # a process of the attempt none of the above saw
    attempt.remove_cgroup()
    assert status is not None
    return _exit_code(status)


def main() -> None:
    home = sys.argv[1]
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
    instructions = json.loads(sys.stdin.buffer.read())
    task_umask = os.umask(0o077)  # its logs and records are the runner's alone
    os.chdir(home)
    _write_atomic("exit.pid", str(os.getpid()))
    libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    attempt = Attempt(instructions)
    attempt.umask = task_umask

    def stop(_sig: int, _frame: object) -> None:
        attempt.stop_requested = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    code = supervise(attempt)
    if attempt.own_uid:  # what the task left here stays its uid's, which a later attempt
        os.chmod(".", 0o700)  # may hold once this process (and its lock) is gone
    _write_atomic("exit", str(code))
    sys.exit(code)


if __name__ == "__main__":
    main()
