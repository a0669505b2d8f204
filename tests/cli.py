"""Running the `weir` command in tests, as a user does: a process of its own."""

from __future__ import annotations

import atexit
import json
import locale
import os
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from tests.cli_forks import HEADER

UNREACHABLE_NATS = "nats://127.0.0.1:1"
"""A NATS URL nobody answers: for commands that must stop before they reach NATS."""
CHUNK = 65536
REPO = Path(__file__).resolve().parents[1]


def run_weir(
    *args: str, nats_url: str = UNREACHABLE_NATS, stdin: str | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """`weir ARGS --nats-url NATS_URL`, its output captured as text: a process of its own,
    forked from one that has imported the CLI already (tests/cli_forks.py), so a command
    takes the time it runs, not the interpreter's start and imports again."""
    argv = [*args, "--nats-url", nats_url]
    command = [sys.executable, "-m", "weir.cli", *argv]
    encoding = locale.getpreferredencoding(False)
    sent = b"" if stdin is None else stdin.encode(encoding)
    out, err, code = _FORKS.run(argv, sent, timeout, command)
    return subprocess.CompletedProcess(command, code, _text(out, encoding), _text(err, encoding))


def _text(data: bytes, encoding: str) -> str:
    """As `subprocess.run(text=True)` reads it (universal newlines)."""
    return data.decode(encoding).replace("\r\n", "\n").replace("\r", "\n")


class _Forks:
    """The fork server of this test process, started at its first command."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.server: subprocess.Popen[bytes] | None = None
        self.path = ""

    def _socket(self) -> str:
        with self.lock:
            if self.server is None or self.server.poll() is not None:
                self.path = os.path.join(tempfile.mkdtemp(prefix="weir-cli-"), "forks")
                self.server = subprocess.Popen(
                    [sys.executable, "-m", "tests.cli_forks", self.path],
                    stdin=subprocess.PIPE,  # it stops when this process's end closes
                    cwd=REPO,
                    stdout=subprocess.PIPE,
                )
                assert self.server.stdout is not None
                if self.server.stdout.readline() != b"ready\n":
                    raise RuntimeError(f"the weir fork server exited with {self.server.wait()}")
                atexit.register(self._stop, self.server, self.path)
            return self.path

    @staticmethod
    def _stop(server: subprocess.Popen[bytes], path: str) -> None:
        assert server.stdin is not None and server.stdout is not None
        server.stdin.close()
        server.stdout.close()
        server.wait(10)
        shutil.rmtree(os.path.dirname(path), ignore_errors=True)

    def run(
        self, argv: list[str], stdin: bytes, timeout: float, command: list[str]
    ) -> tuple[bytes, bytes, int]:
        """stdout, stderr and exit status of `weir ARGV` given `stdin`; raises
        `subprocess.TimeoutExpired` (having killed it) after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        in_r, in_w = os.pipe()
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        mine = [in_w, out_r, err_r]
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
                conn.connect(self._socket())
                request = {"argv": argv, "env": dict(os.environ), "cwd": os.getcwd()}
                body = json.dumps(request).encode()
                try:
                    socket.send_fds(conn, [HEADER.pack(len(body))], [in_r, out_w, err_w])
                    conn.sendall(body)
                finally:
                    for theirs in (in_r, out_w, err_w):
                        os.close(theirs)
                replies = conn.makefile("rb")
                pid = int(replies.readline())
                mine = [out_r, err_r]  # _communicate closes in_w
                out, err = _communicate(in_w, out_r, err_r, stdin, deadline)
                if out is None or err is None:
                    os.kill(pid, signal.SIGKILL)
                    raise subprocess.TimeoutExpired(command, timeout)
                conn.settimeout(max(deadline - time.monotonic(), 1.0))
                return out, err, int(replies.readline())
        finally:
            for fd in mine:
                os.close(fd)


def _communicate(
    in_w: int, out_r: int, err_r: int, stdin: bytes, deadline: float
) -> tuple[bytes | None, bytes | None]:
    """Write `stdin` (then close `in_w`) and read stdout and stderr to their ends; (None,
    None) at `deadline`."""
    read = {out_r: bytearray(), err_r: bytearray()}
    left = memoryview(stdin)
    try:
        with selectors.DefaultSelector() as selector:
            for fd in read:
                selector.register(fd, selectors.EVENT_READ)
            if left:
                os.set_blocking(in_w, False)
                selector.register(in_w, selectors.EVENT_WRITE)
            while selector.get_map():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None, None
                for key, _ in selector.select(remaining):
                    if key.fd == in_w:
                        try:
                            left = left[os.write(in_w, left[:CHUNK]) :]
                        except BrokenPipeError:
                            left = left[:0]
                        if not left:
                            selector.unregister(in_w)
                            os.close(in_w)
                            in_w = -1
                    elif chunk := os.read(int(key.fd), CHUNK):
                        read[int(key.fd)] += chunk
                    else:
                        selector.unregister(key.fd)
    finally:
        if in_w >= 0:
            os.close(in_w)
    return bytes(read[out_r]), bytes(read[err_r])


_FORKS = _Forks()
