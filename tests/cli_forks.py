"""A process that has imported `weir.cli` and forks one child per `weir` command a test runs.

Most of a `weir` process's time in a test is the interpreter's start and its imports (about a
second, more on a loaded machine), the same for every command. This server pays it once per
test process; each command still runs in a process of its own, as `python -m weir.cli ARGS`
does: its own stdin, stdout and stderr (pipes of the test), environment, working directory
and exit status, `weir/cli/__main__.py` run as `__main__`, and the interpreter's usual exit
(threads joined, atexit handlers run, a traceback and status 1 for an uncaught exception).
Tests that must see a fresh interpreter start the command themselves (tests/security,
tests/artifacts, tests/fuzz).

Protocol, over a Unix socket: the test sends the length of its request with the child's
stdin, stdout and stderr as file descriptors, then the request (JSON: argv, env, cwd); the
server answers the child's pid on a line, then its exit status (negative: killed by that
signal) on another. The server stops when its stdin (a pipe from the test process) closes.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import runpy
import selectors
import signal
import socket
import struct
import sys
from typing import Any

import weir.cli  # noqa: F401 - what every child would otherwise import itself

FIRST_USE = (
    "pydantic",
    "typer._adapters",
    "zoneinfo",
    "rich._emoji_codes",
    "rich._unicode_data",
    "weir_scheduler.planner",
)
"""What a command imports on first use (typer when it parses a command line, rich when it
draws a table, `weir trace` for the plan): imported once here too, each if it exists."""

HEADER = struct.Struct("!I")
"""The length of the JSON request that follows the file descriptors."""
STREAMS = 3
"""stdin, stdout and stderr of the command, in that order."""


def receive(conn: socket.socket) -> tuple[dict[str, Any], list[int]]:
    """A request and the child's three standard streams."""
    head, fds, _, _ = socket.recv_fds(conn, HEADER.size, STREAMS)
    (length,) = HEADER.unpack(head)
    body = b""
    while len(body) < length:
        chunk = conn.recv(length - len(body))
        if not chunk:
            raise ConnectionError("the request ended early")
        body += chunk
    return json.loads(body), fds


def serve(path: str) -> tuple[dict[str, Any], list[int]]:
    """Answer requests until stdin closes (then exit); returns only in a forked child, with
    its request and streams."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(64)
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    signal.set_wakeup_fd(wake_w)
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ, "accept")
    selector.register(wake_r, selectors.EVENT_READ, "reap")
    selector.register(sys.stdin, selectors.EVENT_READ, "stop")
    children: dict[int, socket.socket] = {}
    print("ready", flush=True)
    while True:
        for key, _ in selector.select():
            if key.data == "stop":
                if not os.read(sys.stdin.fileno(), 4096):
                    raise SystemExit(0)
            elif key.data == "accept":
                conn, _ = listener.accept()
                request, fds = receive(conn)
                pid = os.fork()
                if pid == 0:
                    signal.set_wakeup_fd(-1)
                    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                    selector.close()
                    listener.close()
                    for held in (conn, *children.values()):
                        held.close()
                    os.close(wake_r)
                    os.close(wake_w)
                    return request, fds
                for fd in fds:
                    os.close(fd)
                children[pid] = conn
                conn.sendall(f"{pid}\n".encode())
            else:
                os.read(wake_r, 4096)
                while children:
                    pid, status = os.waitpid(-1, os.WNOHANG)
                    if pid == 0:
                        break
                    if pid in children:
                        done = children.pop(pid)
                        done.sendall(f"{os.waitstatus_to_exitcode(status)}\n".encode())
                        done.close()


def become(request: dict[str, Any], fds: list[int]) -> None:
    """Make this child the process `python -m weir.cli ARGV` would start."""
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
        os.close(fd)
    os.environ.clear()
    os.environ.update(request["env"])
    os.chdir(request["cwd"])
    sys.argv = ["-m", *request["argv"]]


if __name__ == "__main__":
    for module in FIRST_USE:
        with contextlib.suppress(ImportError):
            importlib.import_module(module)
    become(*serve(sys.argv[1]))
    runpy.run_module("weir.cli", run_name="__main__", alter_sys=True)
