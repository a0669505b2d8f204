"""The whole of weir on one machine: private Postgres and NATS, the scheduler and a runner.

`python -m weir.devstack demo FLOW.yaml` starts it all in a temporary directory, submits the
flow, prints its events until it ends and stops everything (exit 0 iff the flow succeeded).
`python -m weir.devstack up` keeps the stack running in the foreground (state in .weir/dev).
The test suite uses `Stack` to kill and restart real processes.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import nats
from nats.aio.client import Client as NATS
from weir_scheduler.data.databases import create_database

from weir.embedded import (
    EmbeddedNats,
    EmbeddedPostgres,
    free_port,
    nats_password,
    private_secret,
    stop_process,
    write_private,
)

SERVICE_READY_TIMEOUT = 30.0

_Probe = Callable[[NATS], Awaitable[bool]]
_Service = Literal["scheduler", "runner"]


@dataclass
class Stack:
    """Postgres + NATS + scheduler + runner as real processes under `root`."""

    root: Path
    env: dict[str, str] = field(default_factory=dict)
    external_database_url: str | None = None
    """Use this database instead of starting a private Postgres (the tests share one)."""
    nats_port: int = 0
    postgres: EmbeddedPostgres | None = None
    nats_server: EmbeddedNats | None = None
    scheduler: subprocess.Popen[bytes] | None = None
    runner: subprocess.Popen[bytes] | None = None
    web: subprocess.Popen[bytes] | None = None
    web_port: int = 0
    replicas: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    """Scheduler and runner replicas beyond the first, by name (`scheduler-1`, `runner-1`)."""

    @property
    def nats_url(self) -> str:
        assert self.nats_server is not None
        return self.nats_server.url

    @property
    def database_url(self) -> str:
        if self.external_database_url:
            return self.external_database_url
        assert self.postgres is not None
        return self.postgres.url_for("weir")

    def start_infra(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        if not self.external_database_url:
            self.postgres = EmbeddedPostgres(self.root / "postgres")
            self.postgres.start()
            asyncio.run(create_database(self.postgres.url, "weir"))
        self.nats_server = EmbeddedNats(
            self.root / "nats", port=self.nats_port, password=nats_password(self.root / "nats")
        )
        self.nats_server.start()

    def service_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            WEIR_NATS_URL=self.nats_url,
            WEIR_DATABASE_URL=self.database_url,
            WEIR_RUNNER_DIR=str(self.root / "runner" / "attempts"),
        )
        env.update(self.env)
        return env

    def _replica_env(self, name: str) -> dict[str, str]:
        """Runner replicas after the first get their own `WEIR_RUNNER_NAME`."""
        if not name.startswith("runner-"):
            return {}
        base = self.env.get("WEIR_RUNNER_NAME") or socket.gethostname()
        return {"WEIR_RUNNER_NAME": f"{base}-{name.removeprefix('runner-')}"}

    def _command(self, module: str, name: str) -> list[str]:
        """The command line that runs service `module` as process `name`."""
        return [sys.executable, "-m", module]

    def _spawn(self, module: str, name: str) -> subprocess.Popen[bytes]:
        log = open(self.root / f"{name}.log", "ab")  # noqa: SIM115 - handed to the child
        proc = subprocess.Popen(
            self._command(module, name),
            env={**self.service_env(), **self._replica_env(name)},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        return proc

    def start_scheduler(self, replica: int = 0) -> None:
        """Start scheduler `replica` (0 is `self.scheduler`; others are in `replicas`)."""
        self.start_services(("scheduler", replica))

    def start_runner(self, replica: int = 0) -> None:
        """Start runner `replica`; replicas after the first get their own `WEIR_RUNNER_NAME`."""
        self.start_services(("runner", replica))

    def start_services(self, *replicas: tuple[_Service, int]) -> None:
        """Start these (service, replica) processes at once and return when each is ready. A
        process spends most of its start importing, which they do side by side; a runner
        waits by itself for the streams a scheduler creates, and schedulers that start
        together migrate once."""
        started = [self._start(service, replica) for service, replica in replicas]
        asyncio.run(self._wait_all_ready(started))

    def _start(
        self, service: _Service, replica: int
    ) -> tuple[str, subprocess.Popen[bytes], _Probe]:
        name = _replica_name(service, replica)
        proc = self._spawn(f"weir_{service}", name)
        if replica:
            self.replicas[name] = proc
        elif service == "scheduler":
            self.scheduler = proc
        else:
            self.runner = proc
        return name, proc, _scheduler_ready if service == "scheduler" else _runner_ready

    @property
    def web_url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    @property
    def web_token(self) -> str:
        """The dev stack's weir-web admin token (made by `start_web`)."""
        return (self.root / "web" / "token").read_text().strip()

    def start_web(self) -> None:
        """Start weir-web on a free loopback port with a random admin token of its own: a
        loopback port is no boundary on a machine shared with the local executor's tasks and
        other users, so the dev stack's weir-web wants a token like any other."""
        self.web_port = self.web_port or free_port()
        self.env.setdefault("WEIR_WEB_LISTEN", f"127.0.0.1:{self.web_port}")
        web_dir = self.root / "web"
        web_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        token = private_secret(web_dir / "token")
        tokens = web_dir / "tokens"
        if not tokens.exists():
            write_private(tokens, f"{token} admin\n")
        self.env.setdefault("WEIR_WEB_TOKENS", str(tokens))
        # A key of its own signs browser sessions, kept beside the token: a restart of the
        # dev stack logs no one out.
        session_key = web_dir / "session-key"
        if not session_key.exists():
            write_private(session_key, base64.urlsafe_b64encode(os.urandom(32)).decode() + "\n")
        self.env.setdefault("WEIR_WEB_SESSION_KEY_FILE", str(session_key))
        self.web = self._spawn("weir_web", "web")
        deadline = time.monotonic() + SERVICE_READY_TIMEOUT
        while time.monotonic() < deadline:
            if self.web.poll() is not None:
                log = (self.root / "web.log").read_text(errors="replace")[-3000:]
                raise RuntimeError(f"weir-web exited with {self.web.returncode}:\n{log}")
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", self.web_port)) == 0:
                    return
            time.sleep(0.1)
        raise RuntimeError(f"weir-web was not ready within {SERVICE_READY_TIMEOUT:.0f}s")

    def process(self, service: str, replica: int = 0) -> subprocess.Popen[bytes] | None:
        """The process of `service` ("scheduler" or "runner") replica `replica`, if started."""
        if replica:
            return self.replicas.get(_replica_name(service, replica))
        return self.scheduler if service == "scheduler" else self.runner

    def restart_nats(self) -> None:
        """Stop nats-server and start it again on the same port with the same store."""
        assert self.nats_server is not None
        self.nats_server.stop()
        self.nats_server.start()

    def restart_postgres(self) -> None:
        """Stop the private Postgres (fast shutdown) and start it on the same port and data."""
        assert self.postgres is not None, "an external database cannot be restarted"
        self.postgres.stop()
        self.postgres.start()

    def __enter__(self) -> Stack:
        """Start it all; leaving the `with` stops it, as does a start that fails midway."""
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def start(self) -> None:
        self.start_infra()
        self.start_services(("scheduler", 0), ("runner", 0))

    async def _wait_all_ready(
        self, started: list[tuple[str, subprocess.Popen[bytes], _Probe]]
    ) -> None:
        await asyncio.gather(*(self._wait_ready(*one) for one in started))

    async def _wait_ready(self, name: str, proc: subprocess.Popen[bytes], probe: _Probe) -> None:
        deadline = time.monotonic() + SERVICE_READY_TIMEOUT
        nc = await nats.connect(self.nats_url)
        try:
            while time.monotonic() < deadline:
                if proc.poll() is not None:
                    log = (self.root / f"{name}.log").read_text(errors="replace")[-3000:]
                    raise RuntimeError(f"{name} exited with {proc.returncode}:\n{log}")
                if await probe(nc):
                    return
                await asyncio.sleep(0.1)
        finally:
            await nc.close()
        raise RuntimeError(f"{name} was not ready within {SERVICE_READY_TIMEOUT:.0f}s")

    @staticmethod
    def _stop(proc: subprocess.Popen[bytes] | None, kill: bool = False) -> None:
        stop_process(proc, signal.SIGKILL if kill else signal.SIGTERM, 20)

    def kill_scheduler(self, replica: int = 0) -> None:
        self._stop(self.process("scheduler", replica), kill=True)

    def kill_runner(self, replica: int = 0) -> None:
        self._stop(self.process("runner", replica), kill=True)

    def stop(self) -> None:
        self._stop(self.web)
        for name, proc in sorted(self.replicas.items(), reverse=True):  # runners first
            if name.startswith("runner"):
                self._stop(proc)
        self._stop(self.runner)
        for name, proc in self.replicas.items():
            if name.startswith("scheduler"):
                self._stop(proc)
        self._stop(self.scheduler)
        if self.nats_server:
            self.nats_server.stop()
        if self.postgres:
            self.postgres.stop()


def _replica_name(service: str, replica: int) -> str:
    return f"{service}-{replica}" if replica else service


async def _scheduler_ready(nc: NATS) -> bool:
    try:
        await nc.request("$SRV.PING.weir", b"", timeout=0.5)
        return True
    except Exception:
        return False


async def _runner_ready(nc: NATS) -> bool:
    try:
        await nc.jetstream().consumer_info("WEIR_DISPATCH", "weir-runner-default")
        return True
    except Exception:
        return False


def demo(flow_file: str, hold: bool = False) -> int:
    """Run `flow_file` on a private stack and stop it; with `hold`, stop it only at Enter."""
    from weir.cli import app

    with tempfile.TemporaryDirectory(prefix="weir-demo-") as tmp:
        stack = Stack(Path(tmp))
        started = time.monotonic()
        print(f"starting Postgres, NATS, scheduler and runner in {tmp} ...", flush=True)
        try:
            stack.start()
            stack.start_web()
            print(
                f"stack up in {time.monotonic() - started:.1f}s; web UI and HTTP API at "
                f"{stack.web_url} (token: {stack.web_token}); submitting {flow_file}",
                flush=True,
            )
            result = app(
                ["submit", flow_file, "--follow", "--nats-url", stack.nats_url],
                standalone_mode=False,
            )
            code = result if isinstance(result, int) else 0
            if code == 0:
                print(f"demo flow succeeded ({time.monotonic() - started:.1f}s in all)")
                for out in sorted((stack.root / "runner" / "attempts").glob("*/stdout.log")):
                    text = out.read_text(errors="replace").strip()
                    if text:
                        print(f"stdout of {out.parent.name}: {text}")
            else:
                print("demo flow did not succeed; service logs:")
                for name in ("scheduler", "runner"):
                    print((stack.root / f"{name}.log").read_text(errors="replace")[-3000:])
            if hold:
                _hold_for_browsing(stack)
            return code
        finally:
            stack.stop()


def _hold_for_browsing(stack: Stack) -> None:
    """Keep the demo's stack up until Enter (or Ctrl-C, or end of input), so the flow can be
    looked at in the web UI; only asked at a terminal, so scripts never wait."""
    print(
        f"\nweb UI: {stack.web_url} (log in with the token {stack.web_token})\n"
        "press Enter to stop the demo",
        flush=True,
    )
    with contextlib.suppress(EOFError, KeyboardInterrupt):
        input()


def up() -> int:
    root = Path(".weir/dev").resolve()
    port = 4222 if _port_free(4222) else free_port()
    stack = Stack(root, nats_port=port)
    stack.start()
    stack.start_web()
    print(
        f"weir is up. HTTP API and web UI: {stack.web_url} (docs/http.md, docs/ui.md)\n"
        f"  token (admin): {stack.web_token}\n"
        f"In another shell:\n  export WEIR_NATS_URL={stack.nats_url}\n"
        f"  .venv/bin/weir submit examples/diamond.yaml --follow\n"
        f"Postgres: {stack.database_url}\nLogs: {root}/scheduler.log, {root}/runner.log\n"
        "Ctrl-C stops everything.",
        flush=True,
    )
    stopping = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        while not stopping:
            for name, proc in (
                ("scheduler", stack.scheduler),
                ("runner", stack.runner),
                ("web", stack.web),
            ):
                if proc is not None and proc.poll() is not None:
                    print(f"{name} exited with {proc.returncode}; see {root}/{name}.log")
                    return 1
            time.sleep(0.5)
    finally:
        print("stopping ...", flush=True)
        stack.stop()
    return 0


def _port_free(port: int) -> bool:
    import socket

    with socket.socket() as sock, contextlib.suppress(OSError):
        sock.bind(("127.0.0.1", port))
        return True
    return False


def main(argv: list[str]) -> int:
    if len(argv) >= 1 and argv[0] == "demo":
        # At a terminal the demo waits for Enter before it stops, to look at the web UI.
        hold = "--hold" in argv or ("--no-hold" not in argv and sys.stdin.isatty())
        files = [a for a in argv[1:] if not a.startswith("--")]
        return demo(files[0] if files else "examples/diamond.yaml", hold)
    if len(argv) >= 1 and argv[0] == "up":
        return up()
    print(
        "usage: python -m weir.devstack demo [FLOW.yaml] [--hold|--no-hold] | up", file=sys.stderr
    )
    return 2


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
