"""The uids a root runner hands its attempts (`WEIR_RUNNER_TASK_UIDS`): one per running
attempt, held by a lock that goes with the last process holding it, never a uid or gid some
user or group of the machine has, and a lock directory nobody else may write."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from weir.config import ConfigError, Settings
from weir_runner.containment import Containment
from weir_runner.executors.local.executor import take_clean
from weir_runner.supervisor import processes_of
from weir_runner.task_uids import UidPool, UidsExhausted


def pool(tmp_path: Path, first: int = 2_000_000_000, last: int = 2_000_000_003) -> UidPool:
    locks = tmp_path / "locks"
    locks.mkdir(mode=0o700, exist_ok=True)
    return UidPool(first, last, locks)


def test_running_attempts_hold_different_uids_until_the_range_is_used_up(tmp_path: Path) -> None:
    uids = pool(tmp_path)
    held = [uids.take() for _ in range(4)]
    assert sorted(lease.uid for lease in held) == list(range(2_000_000_000, 2_000_000_004))
    with pytest.raises(UidsExhausted, match="widen the range"):
        uids.take()
    held[2].release()
    assert uids.take().uid == held[2].uid


def test_a_uid_stays_held_while_a_process_it_was_handed_to_lives(tmp_path: Path) -> None:
    """The runner hands the lock to the attempt's supervisor and closes its own copy: the uid
    stays taken until the supervisor ends (a runner killed meanwhile releases nothing)."""
    uids = pool(tmp_path, last=2_000_000_000)
    lease = uids.take()
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdin.read()"],
        stdin=subprocess.PIPE,
        pass_fds=(lease.fd,),
    )
    lease.release()
    with pytest.raises(UidsExhausted):
        uids.take()
    assert holder.stdin is not None
    holder.stdin.close()
    holder.wait()
    assert uids.take().uid == 2_000_000_000


@pytest.mark.parametrize(
    ("raw", "value"),
    [("2000000000-2000065535", (2_000_000_000, 2_000_065_535)), ("7-7", (7, 7)), ("off", None)],
)
def test_the_range_is_read_as_written(raw: str, value: tuple[int, int] | None) -> None:
    assert Settings.from_env({"WEIR_RUNNER_TASK_UIDS": raw}).runner_task_uids == value


@pytest.mark.parametrize("raw", ["0-10", "10-5", "5", "a-b", "1-4294967295", "-5"])
def test_a_bad_range_names_the_variable_and_the_form(raw: str) -> None:
    with pytest.raises(ConfigError) as raised:
        Settings.from_env({"WEIR_RUNNER_TASK_UIDS": raw})
    assert str(raised.value) == (
        f"WEIR_RUNNER_TASK_UIDS={raw!r} is not a range of uids FIRST-LAST with 1 <= FIRST <= "
        "LAST <= 4294967294 (e.g. 2000000000-2000065535), or off"
    )


def test_a_range_holding_a_user_of_the_machine_is_refused(tmp_path: Path) -> None:
    nobody = 65534  # `nobody` on Debian; root's group 0 is below any range
    with pytest.raises(ConfigError) as raised:
        pool(tmp_path, first=65000, last=66000).check()
    message = str(raised.value)
    assert message.startswith("WEIR_RUNNER_TASK_UIDS=65000-66000 holds user nobody (uid 65534)")
    assert f"(gid {nobody})" in message
    assert message.endswith("choose a range no user or group of this machine has")


def test_a_lock_directory_others_may_write_is_refused(tmp_path: Path) -> None:
    uids = pool(tmp_path)
    uids.lock_dir.chmod(0o733)
    with pytest.raises(
        ConfigError, match=r"must be a directory of root's alone \(mode 0700; it is 0o733"
    ):
        uids.check()


@pytest.mark.skipif(os.geteuid() != 0, reason="only a root runner runs tasks as other uids")
def test_a_root_runner_hands_out_uids_unless_told_otherwise(tmp_path: Path) -> None:
    settings = Settings(runner_dir=str(tmp_path), runner_task_user="nobody")
    held = Containment.probe(settings)
    assert held.uids is not None and (held.uids.first, held.uids.last) == (
        2_000_000_000,
        2_000_065_535,
    )
    assert held.describe()["task_user"] == "one uid per attempt of 2000000000-2000065535"
    off = Containment.probe(Settings(runner_dir=str(tmp_path), runner_task_uids=None))
    assert off.uids is None and off.describe()["task_user"] == "nobody (uid 65534)"
    root = Containment.probe(Settings(runner_dir=str(tmp_path), runner_task_user="root"))
    assert root.uids is None and root.user is None


@pytest.mark.skipif(os.geteuid() != 0, reason="only root runs processes as other uids")
def test_a_uid_is_handed_out_only_once_nothing_of_an_earlier_attempt_runs_as_it(
    tmp_path: Path,
) -> None:
    """An attempt whose supervisor died left a process of its uid; the next attempt that
    takes the uid kills it before anything of the attempt is made the uid's (a leftover
    could otherwise open the new attempt's directory to others)."""
    uid = 2_000_100_010  # outside the default range, which other tests' runners use
    left = subprocess.Popen(["/bin/sh", "-c", "sleep 60"], user=uid, group=uid, extra_groups=[])
    try:
        lease = take_clean(pool(tmp_path, first=uid, last=uid))
        assert lease.uid == uid
        assert left.wait(timeout=10) == -9
        assert processes_of(uid) == []
        lease.release()
    finally:
        left.kill()
        left.wait()
