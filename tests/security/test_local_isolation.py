"""Attacks by a task on the local executor, each run as a real flow on a real scheduler and a
real runner process (root here, as in CI) that holds WEIR_SECRET_KEY, NATS credentials and a
`WEIR_SECRET_<NAME>` fallback in its environment. None of them may do harm:

- reading the runner's /proc/<pid>/environ, mem and fds (the runner's pid found by scanning
  /proc, as an attacker would);
- reading, from another flow, a running task's environment (its secret), memory and files,
  or killing it: each attempt runs as a uid of its own (WEIR_RUNNER_TASK_UIDS);
- leaving processes behind: a background child, a `setsid` child, a double-forked daemon;
- flooding its log;
- giving itself a PATH and LD_PRELOAD that would break weir's own supervisor.
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from weir.client import Client
from weir.config import TASK_UIDS_DEFAULT
from weir.devstack import Stack
from weir_proto.events import FlowEvent, TaskFailed
from weir_runner import sandbox

from tests.flows import ended, finish, reached, shell, task, types
from tests.waiting import until

pytestmark = pytest.mark.slow

PYTHON = "/usr/bin/python3"
"""A Python the task user may run (the test's own lives under /root)."""
LOG_MAX = 1024 * 1024


@pytest.fixture
def stack(database_url: str, runner_secrets: dict[str, str]) -> Iterator[Stack]:
    """The services as processes with the default task user (tests elsewhere run tasks as
    root). Under a directory of its own that the task user may pass through, as a runner's
    directory must be."""
    root = Path(tempfile.mkdtemp(prefix="weir-isolation-"))
    root.chmod(0o711)
    env = {**runner_secrets, "WEIR_RUNNER_TASK_USER": "nobody", "WEIR_TASK_LOG_MAX": "1M"}
    try:
        with Stack(root / "stack", env=env, external_database_url=database_url) as running:
            yield running
    finally:
        shutil.rmtree(root, ignore_errors=True)


def attempt_dir(stack: Stack, flow_id: str, name: str, attempt: int = 1) -> Path:
    return stack.root / "runner" / "attempts" / f"{flow_id}-{name}-{attempt}"


async def run(stack: Stack, *tasks: dict[str, Any]) -> tuple[str, list[FlowEvent]]:
    async with await Client.connect(stack.nats_url) as client:
        return await finish(client, {"name": "attack", "tasks": list(tasks)})


PROBE = r"""
import os, signal, sys


def attempt(label, act, done="READ"):
    # Prints `label: done` when act() gets through (what it took goes to stderr), else the
    # name of the OSError that stopped it.
    try:
        loot = act()
    except OSError as exc:
        print(f"{label}: {type(exc).__name__}", flush=True)
    else:
        print(f"{label}: {done}", flush=True)
        sys.stderr.buffer.write(loot if isinstance(loot, bytes) else f"{loot}".encode())
        sys.stderr.buffer.write(b"\n")
"""
"""What the attack scripts share: each intrusion they try, and how they report it."""

STEAL = (
    PROBE
    + r"""
found = []
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        cmdline = open(f"/proc/{pid}/cmdline", "rb").read()
    except OSError:
        continue
    if b"weir_runner" in cmdline and b"supervisor" not in cmdline:
        found.append(pid)
print("runner pids:", found, flush=True)


def take(pid, name):
    path = f"/proc/{pid}/{name}"
    if name == "fd":
        return " ".join(os.listdir(path)).encode()
    if name == "mem":
        start = int(open(f"/proc/{pid}/maps").readline().split("-")[0], 16)
        with open(path, "rb") as mem:
            mem.seek(start)
            return mem.read(4096)
    return open(path, "rb").read()


for pid in found:
    for name in ("environ", "mem", "maps", "fd"):
        attempt(f"/proc/{pid}/{name}", lambda: take(pid, name))
sys.exit(0 if found else 3)
"""
)


async def test_a_task_cannot_read_the_runners_environment_or_memory(
    stack: Stack, runner_secrets: dict[str, str]
) -> None:
    flow_id, events = await run(stack, task("steal", PYTHON, "-c", STEAL))
    home = attempt_dir(stack, flow_id, "steal")
    out = (home / "stdout.log").read_text()
    assert types(events)[-1] == "flow_succeeded", out  # it found the runner: the attack ran
    assert stack.runner is not None and f"'{stack.runner.pid}'" in out
    for name in ("environ", "mem", "maps", "fd"):
        assert f"/proc/{stack.runner.pid}/{name}: PermissionError" in out
    everything = out + (home / "stderr.log").read_text(errors="replace") + repr(events)
    assert stack.nats_server is not None and stack.nats_server.password
    stolen = {**runner_secrets, "the NATS password in WEIR_NATS_URL": stack.nats_server.password}
    for variable, value in stolen.items():
        assert value not in everything, f"the task read {variable}"


async def test_a_task_cannot_list_or_read_other_attempts(stack: Stack) -> None:
    _, first = await run(stack, shell("victim", "echo private > result.txt"))
    assert types(first)[-1] == "flow_succeeded"
    snoop = (
        'ls "$WEIR_WORKDIR/../.." && exit 10; '
        'cat "$WEIR_WORKDIR/../../"*/stdout.log && exit 11; '
        'cat "$WEIR_WORKDIR/../stdout.log" && exit 12; exit 0'
    )
    flow_id, events = await run(stack, shell("snoop", snoop))
    stderr = (attempt_dir(stack, flow_id, "snoop") / "stderr.log").read_text()
    assert types(events)[-1] == "flow_succeeded", stderr
    assert "Permission denied" in stderr


LEAVE_BEHIND = (
    "sleep {t}1 & echo $! > pids; "
    "setsid sleep {t}2 & echo $! >> pids; "
    "sh -c 'setsid sleep {t}3 & echo $! >> pids' ; "
    "sleep 0.2; for p in $(cat pids); do kill -0 $p || exit 9; done; cat pids"
)


def sleeping(token: str) -> list[int]:
    """The processes running `sleep <token>N`."""
    alive = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if (
            len(cmdline) > 1
            and cmdline[0].endswith(b"sleep")
            and cmdline[1].startswith(token.encode())
        ):
            alive.append(int(pid))
    return alive


async def test_nothing_a_task_started_outlives_it(stack: Stack) -> None:
    token = f"3{secrets.randbelow(10**6)}."
    flow_id, events = await run(stack, shell("leave", LEAVE_BEHIND.format(t=token)))
    out = (attempt_dir(stack, flow_id, "leave") / "stdout.log").read_text()
    assert types(events)[-1] == "flow_succeeded", out
    assert len(out.split()) == 3  # three processes were running when the task exited
    assert sleeping(token) == []


async def test_a_log_flood_keeps_only_the_end_on_the_runners_disk(stack: Stack) -> None:
    flood = "head -c 20000000 /dev/zero | tr '\\0' x; echo; echo the end"
    flow_id, events = await run(stack, shell("flood", flood))
    assert types(events)[-1] == "flow_succeeded"
    log = (attempt_dir(stack, flow_id, "flood") / "stdout.log").read_bytes()
    assert len(log) <= LOG_MAX // 2
    assert log.startswith(b"[weir: log truncated, ")
    assert log.endswith(b"xxx\nthe end\n")


async def test_a_tasks_path_and_ld_preload_do_not_reach_the_supervisor(stack: Stack) -> None:
    env = [
        {"name": "PATH", "value": "/nonexistent"},
        {"name": "LD_PRELOAD", "value": "/nonexistent/evil.so"},
    ]
    flow_id, events = await run(stack, task("trick", "/bin/sh", "-c", "exit 7", env=env))
    failed = [e for e in events if isinstance(e, TaskFailed)]
    assert [(e.exit_code, e.error_type) for e in failed] == [(7, "exit_code")], events
    assert 'task "trick" exited with code 7' in failed[0].message
    # What a runner restarted mid-attempt adopts: the exit code, recorded despite the trick.
    assert (attempt_dir(stack, flow_id, "trick") / "exit").read_text() == "7"


VICTIM = (
    "echo private-{t} > mine.txt; "
    "while [ ! -e /tmp/weir-release-{t} ]; do sleep 0.05; done; "
    "cat mine.txt"
)
SPY = (
    PROBE
    + r"""
marker, secret_file, found = sys.argv[1].encode(), sys.argv[2], []
for pid in filter(str.isdigit, os.listdir("/proc")):
    if int(pid) == os.getpid():
        continue
    try:
        if marker in open(f"/proc/{pid}/cmdline", "rb").read():
            found.append(int(pid))
    except OSError:
        continue
print("victims:", found, flush=True)
for pid in found:
    for name in ("environ", "mem", "maps"):
        attempt(name, lambda: open(f"/proc/{pid}/{name}", "rb").read(4096))
    attempt("cwd", lambda: os.readlink(f"/proc/{pid}/cwd"))
    attempt("kill", lambda: os.kill(pid, signal.SIGKILL), done="SENT")
attempt("file", lambda: open(secret_file).read())
sys.exit(0 if found else 3)
"""
)


async def test_a_task_cannot_read_or_kill_another_flows_running_task(
    stack: Stack, runner_secrets: dict[str, str]
) -> None:
    token = secrets.token_hex(8)
    release = Path(f"/tmp/weir-release-{token}")
    secret = runner_secrets["WEIR_SECRET_DB_PASSWORD"]
    victim = shell(
        "victim",
        VICTIM.format(t=token),
        env=[{"name": "DB", "fromSecret": "db-password"}],
    )
    try:
        async with await Client.connect(stack.nats_url) as client:
            victim_id = await client.submit({"name": "victim", "tasks": [victim]})
            await reached(client, victim_id, "task_started", "victim")
            mine = attempt_dir(stack, victim_id, "victim") / "work" / "mine.txt"
            await until(mine.exists, "the victim wrote its file")
            spy = task("spy", PYTHON, "-c", SPY, f"weir-release-{token}", str(mine))
            spy_id, events = await finish(client, {"name": "spy", "tasks": [spy]})
            out = (attempt_dir(stack, spy_id, "spy") / "stdout.log").read_text()
            assert types(events)[-1] == "flow_succeeded", out  # it found the victim
            for name in ("environ", "mem", "maps", "cwd"):
                assert f"{name}: PermissionError" in out, out
            assert "kill: PermissionError" in out
            assert "file: PermissionError" in out
            loot = out + (attempt_dir(stack, spy_id, "spy") / "stderr.log").read_text()
            assert secret not in loot and f"private-{token}" not in loot
            release.touch()
            after = await ended(client, victim_id)
            assert types(after)[-1] == "flow_succeeded", "the victim ran on to its end"
    finally:
        release.unlink(missing_ok=True)


@pytest.mark.skipif(
    not sandbox.available(), reason="no user + mount namespaces here for absolute paths"
)
async def test_tasks_run_as_uids_of_the_range_also_in_their_sandbox(stack: Stack) -> None:
    """Each attempt's uid comes from WEIR_RUNNER_TASK_UIDS, also for a task whose artifacts
    sit at absolute paths (its sandbox is a user namespace the attempt's uid makes: inside
    it the task is root, outside the attempt's uid). Once it has ended, its directory is the
    runner's alone."""
    write = shell("a", "echo made > /out/x", outputs=[{"name": "x", "path": "/out/x"}])
    read = task("b", "cat", "/in/x", depends=["a"], inputs=[{"from": "x", "path": "/in/x"}])
    flow_id, events = await run(stack, write, read)
    out = (attempt_dir(stack, flow_id, "b") / "stdout.log").read_text()
    assert types(events)[-1] == "flow_succeeded", out
    assert out == "made\n"
    first, last = TASK_UIDS_DEFAULT
    for name in ("a", "b"):
        home = attempt_dir(stack, flow_id, name)
        assert first <= (home / "work").stat().st_uid <= last
        assert home.stat().st_mode & 0o777 == 0o700


@pytest.fixture
def root_only(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A file only root may read, with a token in it."""
    token = f"root-only-{secrets.token_hex(8)}"
    path = tmp_path / "root-only.txt"
    path.write_text(token)
    path.chmod(0o600)
    yield path, token


async def test_an_output_that_is_a_link_to_a_file_of_roots_is_refused(
    stack: Stack, root_only: tuple[Path, str]
) -> None:
    """The runner reads outputs as root: a task whose output is a symbolic link (or a hard
    link) to a file it may not read must not get that file uploaded."""
    path, token = root_only
    linked = shell(
        "linked",
        f"ln -s {path} out.txt; mkdir sub; ln -s /proc/1/environ sub/env",
        outputs=[{"name": "a", "path": "out.txt"}, {"name": "b", "path": "sub/env"}],
        retry=1,
    )
    _, events = await run(stack, linked)
    failed = [e for e in events if isinstance(e, TaskFailed)]
    assert [e.error_type for e in failed] == ["executor"], events
    assert failed[0].message == (
        'task "linked": output "a" expected a file at \'out.txt\' in the task\'s working '
        "directory, but there is none (a symbolic link, a directory or a file with another "
        "name is no output)"
    )
    assert token not in repr(events)


SWAP = 'cd "$WEIR_WORKDIR/.." && ln -s {target} paths/new && mv -f paths/new paths/f0-x; exit 0'


@pytest.mark.skipif(
    not sandbox.available(), reason="no user + mount namespaces here for absolute paths"
)
async def test_an_absolute_output_swapped_for_a_link_is_refused(
    stack: Stack, root_only: tuple[Path, str]
) -> None:
    """The attack on the file behind an absolute output: from its sandbox, the task
    replaces that file in the attempt's `paths` directory with a link to a file of root's."""
    path, token = root_only
    swap = shell("swap", SWAP.format(target=path), outputs=[{"name": "x", "path": "/out/x"}])
    _, events = await run(stack, {**swap, "retry": 1})
    failed = [e for e in events if isinstance(e, TaskFailed)]
    assert [e.error_type for e in failed] == ["executor"], events
    assert "is no output" in failed[0].message
    assert token not in repr(events)
