"""The task supervisor (`python -m weir_runner.supervisor`): once the task is reaped its
process group's id may belong to anyone, so only the attempt's own survivors are signalled,
and they still die; with a uid of the attempt's own, every process of that uid dies as the
attempt starts and as it ends, and no process of another uid."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from weir_runner import supervisor
from weir_runner.supervisor import Attempt

OWN_UID = 2_000_100_000
"""A uid as an attempt holds it: outside the default WEIR_RUNNER_TASK_UIDS, which runners of
other tests hand out meanwhile, and each test's own (the supervisor kills all of it)."""
as_root = pytest.mark.skipif(os.geteuid() != 0, reason="only root runs tasks as other uids")


def _attempt(tmp_path: Path, *argv: str, uid: int | None = None) -> dict[str, object]:
    held = {"uid": uid, "gid": uid, "own_uid": True} if uid is not None else {}
    return {
        "argv": list(argv),
        "env": {"PATH": os.environ["PATH"]},
        "cwd": str(tmp_path),
        "log_max": 65536,
        "grace": 1.0,
        **held,
    }


def test_a_reaped_tasks_group_is_signalled_only_while_a_member_lives(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    attempt = Attempt(_attempt(tmp_path, "true"))
    attempt.child = 4242
    groups: list[tuple[int, int]] = []
    monkeypatch.setattr(os, "killpg", lambda pgid, sig: groups.append((pgid, sig)))
    monkeypatch.setattr(os, "kill", lambda pid, sig: None)
    member = {os.getpid(): (1, 1), 4300: (os.getpid(), 4242)}  # a survivor in the group
    monkeypatch.setattr(supervisor, "_live_processes", lambda: member)
    attempt.signal_all(signal.SIGTERM)  # the task alive: its group
    attempt.reaped = True
    attempt.signal_all(signal.SIGKILL)  # reaped, but a member holds the group's id
    assert groups == [(4242, signal.SIGTERM), (4242, signal.SIGKILL)]
    monkeypatch.setattr(supervisor, "_live_processes", lambda: {os.getpid(): (1, 1)})
    attempt.signal_all(signal.SIGKILL)
    assert groups == [(4242, signal.SIGTERM), (4242, signal.SIGKILL)], (
        "a reaped task's group id was signalled with no member left: it may be a stranger's"
    )


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            stat = handle.read()
    except OSError:
        return False
    return stat[stat.rfind(b")") + 2 :].split()[0] != b"Z"


def _supervise(tmp_path: Path, script: str, uid: int | None = None) -> None:
    """`python -m weir_runner.supervisor` over `sh -c script`, as the local executor runs it
    (as `uid`, the attempt's own, when given); the task's exit must be 0."""
    if uid is not None:
        os.chown(tmp_path, uid, uid)
    proc = subprocess.run(
        [sys.executable, "-m", "weir_runner.supervisor", str(tmp_path)],
        input=json.dumps(_attempt(tmp_path, "sh", "-c", script, uid=uid)).encode(),
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr


def test_a_process_the_task_left_behind_dies_before_the_supervisor_ends(tmp_path: Path) -> None:
    script = "sleep 60 & echo $! > left.pid; exit 0"
    _supervise(tmp_path, script)
    assert (tmp_path / "exit").read_text() == "0"
    left = int((tmp_path / "left.pid").read_text())
    assert not _alive(left), "the supervisor ended with the left-behind sleep running"


HOPPER = """
import os, sys, time
deadline = time.monotonic() + 30
while time.monotonic() < deadline:  # a new pid every few milliseconds, never the same one
    if os.fork():
        os._exit(0)
"""


@pytest.mark.parametrize("uid", [None, pytest.param(OWN_UID, marks=as_root)])
def test_processes_that_fork_as_fast_as_they_exit_die_with_the_attempt(
    tmp_path: Path, uid: int | None
) -> None:
    """The attack on killing leftovers one pid at a time: each hopper forks and exits in a
    loop, so a pid read from /proc is gone when its kill comes. The task itself exits at once."""
    marker = f"weir-hopper-{os.getpid()}-{tmp_path.name}"
    script = f"for i in 1 2 3 4; do python3 -c '{HOPPER}' {marker} & done; sleep 1; exit 0"
    _supervise(tmp_path, script, uid)
    survivors = [pid for pid in _with_marker(marker) if _alive(pid)]
    for pid in survivors:  # do not leave them running whatever the outcome
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    assert not survivors, f"{len(survivors)} hopping processes outlived the attempt"


def _with_marker(marker: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError), open(f"/proc/{entry}/cmdline", "rb") as handle:
                if marker.encode() in handle.read():
                    found.append(int(entry))
    return found


@as_root
def test_what_an_earlier_holder_of_the_uid_left_dies_as_the_attempt_starts(
    tmp_path: Path,
) -> None:
    """An attempt whose supervisor was killed leaves its task running as its uid; the next
    attempt that takes the uid kills it before its own task runs, and nothing of another
    uid."""
    marker = f"weir-left-{os.getpid()}-{tmp_path.name}"
    sleeper = ["/bin/sh", "-c", "sleep 60", marker]  # (the test's Python is under /root)
    uid = OWN_UID + 1
    left = subprocess.Popen(sleeper, user=uid, group=uid, extra_groups=[])
    other = subprocess.Popen(sleeper, user=uid + 1, group=uid + 1, extra_groups=[])
    try:
        # The task sees it dead (a zombie until this test reaps it), once the kill its
        # start sent has landed (the end's kill comes only after the task).
        dead = (
            "for i in $(seq 200); do "
            f'read -r pid name state rest < /proc/{left.pid}/stat; [ "$state" = Z ] && exit 0; '
            "sleep 0.05; done; exit 1"
        )
        _supervise(tmp_path, dead, uid)
        assert left.wait(timeout=10) == -signal.SIGKILL
        assert other.poll() is None, "a process of another uid was killed"
    finally:
        for proc in (left, other):
            proc.kill()
            proc.wait()


@as_root
def test_a_setuid_program_left_in_a_shared_directory_gives_a_task_no_other_uid(
    tmp_path: Path,
) -> None:
    """An attempt left a setuid+setgid copy of `id` where every task reaches it, planted
    to become its uid later; a task of another uid runs it: no_new_privs keeps it itself."""
    planted_by = OWN_UID + 3
    shared = Path(tempfile.mkdtemp(prefix="weir-planted-", dir="/tmp"))
    try:
        shared.chmod(0o755)
        program = shared / "id"
        shutil.copy("/usr/bin/id", program)
        os.chown(program, planted_by, planted_by)
        program.chmod(0o6755)
        _supervise(tmp_path, f"{program} -u > uid; {program} -g >> uid", OWN_UID + 4)
        assert (tmp_path / "uid").read_text().split() == [str(OWN_UID + 4)] * 2
    finally:
        shutil.rmtree(shared)


def test_a_full_disk_loses_log_but_not_the_attempts_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A task that fills the disk makes the log's writes fail: the supervisor drops what
    it cannot keep and goes on, to kill what the task left and record its exit."""
    log = supervisor.Log(str(tmp_path / "stdout.log"), 65536)

    def no_space(data: bytes) -> int:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(log.file, "write", no_space)
    log.write(b"x" * 100)
    assert log.dropped == 100


ORPHAN_THREAD = """
import ctypes, os, platform, sys, threading, time
if os.fork():
    sys.exit(0)
os.setsid()
threading.Thread(target=time.sleep, args=(60,)).start()
with open("orphan.pid", "w") as handle:
    handle.write(str(os.getpid()))
# The main thread alone exits: /proc shows the process as a zombie while its thread runs.
ctypes.CDLL(None).syscall({"x86_64": 60, "aarch64": 93}[platform.machine()], 0)
"""


@as_root
def test_a_process_whose_main_thread_exited_dies_with_the_attempt(tmp_path: Path) -> None:
    """A zombie-looking process (`State: Z`, `Threads: 2`) is alive: the uid's kill must
    not take it for gone, nor leave its thread running into the next holder of the uid."""
    uid = OWN_UID + 5
    script = f"/usr/bin/python3 -c '{ORPHAN_THREAD}'; sleep 0.5; exit 0"
    _supervise(tmp_path, script, uid)
    orphan = int((tmp_path / "orphan.pid").read_text())
    threads = Path(f"/proc/{orphan}/task")
    left = os.listdir(threads) if threads.exists() else []
    for tid in left:  # do not leave it running whatever the outcome
        with contextlib.suppress(OSError):
            os.kill(int(tid), signal.SIGKILL)
    assert len(left) <= 1, f"a thread of the attempt's uid outlived it: {left}"
    assert supervisor.processes_of(uid) == []
