"""Attacks on the person at the terminal, run against a real scheduler and runner (Postgres,
NATS JetStream) with the `weir` CLI as a process:

- a task writes terminal escape sequences (retitle, clear screen, a one-byte CSI, bidi
  overrides) to its stderr, its failure message, and a flow's name and tags carry them: no
  human output of `weir show`, `events`, `flows`, `trace` or `logs` (on a terminal) passes
  them on,
  and `--json` and a redirected `weir logs` keep them exact;
- a flow names an output like a path (`../../x`): refused; an artifact already stored under
  such a name is written into the current directory, and a link planted at the target or at
  a temporary file beside it is replaced, never written through;
- the NATS password on the command line: a file or the environment works instead, and the
  password never appears in the CLI's argv.
"""

from __future__ import annotations

import asyncio
import errno
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from weir.artifacts import ArtifactStore
from weir.client import Client
from weir.jetstream import close, connect

from tests.conftest import Services
from tests.flows import WAIT, finish, shell, task, types
from tests.fuzz.test_security import PASSWORD, running_nats

ATTACK = "\x1b]0;PWNED\x07\x1b[2J\x9b31m\u202egnp.exe\u2066\u200b\x7f\x08 done"
"""OSC retitle + BEL, clear screen, a C1 CSI, right-to-left override, isolate, zero-width
space, DEL and backspace."""
RAW_CONTROLS = ["\x1b", "\x07", "\x9b", "\u202e", "\u2066", "\u200b", "\x7f", "\x08"]
ESCAPED = "\\x1b]0;PWNED\\x07\\x1b[2J\\x9b31m\\u202egnp.exe\\u2066\\u200b\\x7f\\x08 done"


async def weir(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[bytes]:
    """The CLI as a process (the services in this test's event loop go on meanwhile)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "weir.cli",
        *args,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "COLUMNS": "400", **(env or {})},
        cwd=cwd,
    )
    out, err = await asyncio.wait_for(proc.communicate(), WAIT)
    return subprocess.CompletedProcess(args, proc.returncode or 0, out, err)


async def weir_on_a_terminal(*args: str) -> str:
    """What the CLI shows on a terminal (a pseudo-terminal as its stdout and stderr)."""
    leader, follower = os.openpty()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "weir.cli", *args, stdout=follower, stderr=follower
    )
    os.close(follower)
    shown = bytearray()

    def read_all() -> None:
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError as exc:  # EIO: the terminal's last writer is gone
                assert exc.errno == errno.EIO
                return
            if not chunk:
                return
            shown.extend(chunk)

    try:
        await asyncio.wait_for(asyncio.gather(asyncio.to_thread(read_all), proc.wait()), WAIT)
    finally:
        os.close(leader)
    return shown.decode("utf-8", errors="replace")


def assert_safe(text: str) -> None:
    found = [repr(c) for c in RAW_CONTROLS if c in text]
    assert not found, f"raw control characters reached the terminal: {found}\n{text!r}"


def printf_format(text: str) -> str:
    """`text` as a printf format of printable characters (octal escapes for the rest)."""
    return "".join(
        chr(b) if b < 128 and (chr(b).isalnum() or chr(b) in " .;[]") else f"\\{b:03o}"
        for b in text.encode()
    )


@pytest.fixture
async def attacked_flow(client: Client) -> str:
    """A failed flow whose task wrote ATTACK to stderr, and whose name and tag carry it."""
    spec = {
        "name": "nightly\x9b\u202e",
        "tags": ["t\u202eag"],
        "tasks": [shell("evil", f"printf '{printf_format(ATTACK)}' >&2; exit 3", retry=1)],
    }
    flow_id, _ = await finish(client, spec)
    view = await client.get(flow_id)
    assert ATTACK in (view.tasks[0].error_message or ""), view.tasks[0].error_message
    return flow_id


async def test_task_text_is_escaped_in_show_events_and_flows(
    services: Services, attacked_flow: str
) -> None:
    url = services.settings.nats_url
    for args in (
        ["show", attacked_flow],
        ["events", attacked_flow],
        ["flows"],
        ["trace", attacked_flow],
    ):
        done = await weir(*args, "--nats-url", url)
        assert done.returncode == 0, done.stderr
        shown = done.stdout.decode() + done.stderr.decode()
        assert_safe(shown)
        if args[0] in ("flows", "trace"):
            assert "nightly\\x9b\\u202e" in shown, shown
        else:
            assert ESCAPED in shown, shown
    show = json.loads((await weir("show", attacked_flow, "--json", "--nats-url", url)).stdout)
    assert ATTACK in show["tasks"][0]["error_message"]
    assert (show["name"], show["tags"]) == ("nightly\x9b\u202e", ["t\u202eag"])


async def test_logs_are_exact_when_redirected_and_escaped_on_a_terminal(
    services: Services, attacked_flow: str
) -> None:
    url = services.settings.nats_url
    redirected = await weir("logs", attacked_flow, "evil", "--nats-url", url)
    assert redirected.returncode == 0, redirected.stderr
    assert redirected.stderr.decode() == ATTACK
    on_terminal = await weir_on_a_terminal("logs", attacked_flow, "evil", "--nats-url", url)
    assert_safe(on_terminal)
    assert ESCAPED in on_terminal, on_terminal
    raw = await weir_on_a_terminal("logs", attacked_flow, "evil", "--raw", "--nats-url", url)
    assert ATTACK in raw


async def test_an_output_named_like_a_path_is_refused(services: Services, tmp_path: Path) -> None:
    spec = tmp_path / "flow.yaml"
    spec.write_text(
        "name: escape\ntasks:\n  - name: a\n    cmd: [touch, x]\n"
        "    outputs: [{name: ../../.bashrc, path: x}]\n"
    )
    done = await weir("submit", str(spec), "--nats-url", services.settings.nats_url)
    assert done.returncode == 1
    assert (
        'task "a": output name "../../.bashrc" is not a name (letters, digits,'
        in done.stderr.decode()
    ), done.stderr


async def stored(url: str, flow_id: str, name: str, content: bytes, tmp_path: Path) -> None:
    """An artifact stored under `name` directly (as a flow planned before names were
    checked, or a hostile writer of the bucket, could have)."""
    source = tmp_path / "source"
    source.write_bytes(content)
    nc = await connect(url, "attacker")
    try:
        await ArtifactStore(nc.jetstream()).upload(flow_id, name, source)
    finally:
        await close(nc)


async def test_artifacts_get_writes_an_odd_name_into_the_current_directory(
    services: Services, client: Client, tmp_path: Path
) -> None:
    """A real flow, then an object under a name that is not one put beside its outputs (as
    a hostile writer of the bucket could): `get` writes it into the current directory."""
    url = services.settings.nats_url
    flow_id, events = await finish(client, {"id": "f1", "name": "odd", "tasks": [task("a")]})
    assert types(events)[-1] == "flow_succeeded"
    here = tmp_path / "a" / "b" / "here"
    here.mkdir(parents=True)
    await stored(url, flow_id, "../../.bashrc", b"evil", tmp_path)
    done = await weir("artifacts", "get", flow_id, "../../.bashrc", "--nats-url", url, cwd=here)
    assert done.returncode == 0, done.stderr
    assert not (tmp_path / "a" / ".bashrc").exists()
    assert [p.name for p in here.iterdir()] == ["artifact_.._.bashrc"]
    assert (here / "artifact_.._.bashrc").read_bytes() == b"evil"


async def test_artifacts_get_replaces_planted_links_instead_of_writing_through_them(
    services: Services, client: Client, tmp_path: Path
) -> None:
    """Another user of a shared directory plants links at the file `get` writes and at the
    temporary file it used to write beside it."""
    url = services.settings.nats_url
    here, victim = tmp_path / "shared", tmp_path / "victim"
    here.mkdir()
    victim.write_bytes(b"precious")
    (here / "report.csv").symlink_to(victim)
    (here / ".report.csv.weir-partial").symlink_to(victim)
    make = shell(
        "make",
        "printf 'a,b\\n' > r.csv",
        outputs=[{"name": "report.csv", "path": "r.csv"}],
    )
    flow_id, events = await finish(client, {"id": "f2", "name": "links", "tasks": [make]})
    assert types(events)[-1] == "flow_succeeded"
    done = await weir("artifacts", "get", flow_id, "report.csv", "--nats-url", url, cwd=here)
    assert done.returncode == 0, done.stderr
    assert victim.read_bytes() == b"precious"
    assert not (here / "report.csv").is_symlink()
    assert (here / "report.csv").read_bytes() == b"a,b\n"
    assert not [p for p in here.iterdir() if p.name.startswith(".weir-get-")]


@pytest.fixture
def password_nats(tmp_path: Path) -> Iterator[str]:
    """A nats-server (JetStream) that wants user `weir` with PASSWORD."""
    with running_nats(tmp_path, f'authorization {{ user: weir, password: "{PASSWORD}" }}') as url:
        yield url


async def test_nats_password_from_a_file_never_in_the_arguments(
    password_nats: str, tmp_path: Path
) -> None:
    secret_file = tmp_path / "nats-password"
    secret_file.write_text(PASSWORD + "\n")
    secret_file.chmod(0o600)
    wrong = tmp_path / "wrong"
    wrong.write_text("wrong\n")
    base = ["--nats-user", "weir", "--nats-password-file"]

    refused = await weir(*base, str(wrong), "secret", "ls", "--nats-url", password_nats)
    assert refused.returncode == 2 and b"cannot reach NATS" in refused.stderr, refused.stderr

    by_flag = [*base, str(secret_file), "secret", "ls", "--nats-url", password_nats]
    done = await weir(*by_flag)
    assert done.returncode == 0, done.stderr
    assert done.stderr == b""
    assert not any(PASSWORD in arg for arg in by_flag)

    from_env = await weir(
        "secret",
        "ls",
        "--nats-url",
        password_nats,
        env={"WEIR_NATS_USER": "weir", "WEIR_NATS_PASSWORD_FILE": str(secret_file)},
    )
    assert from_env.returncode == 0, from_env.stderr

    visible = await weir(
        "--nats-user",
        "weir",
        "--nats-password",
        PASSWORD,
        "secret",
        "ls",
        "--nats-url",
        password_nats,
    )
    assert visible.returncode == 0, visible.stderr
    assert b"warning: --nats-password is visible to every user of this machine" in visible.stderr
