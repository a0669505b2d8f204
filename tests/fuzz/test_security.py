"""NATS credentials and TLS for every process (WEIR_NATS_* through weir.jetstream.connect),
checked against real nats-servers that demand them; and no secret in any log line."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import io
import logging
import os
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from pathlib import Path

import pytest
from nats.aio.client import Client as NATS
from weir import logs
from weir.artifacts import ARTIFACTS_BUCKET_DEFAULT, ArtifactStore
from weir.config import ConfigError, NatsSecurity, Settings
from weir.embedded import EmbeddedPostgres, _wait_for_port, free_port
from weir.jetstream import close, connect, ensure_streams, redact_url
from weir.secrets import SECRETS_BUCKET, SecretNotFound, SecretStore
from weir_runner.worker import Runner
from weir_scheduler.service import Scheduler

from tests.conftest import _start
from tests.waiting import until

PASSWORD = "pw-Zq8-never-in-logs"
TOKEN = "tok-Xr4-never-in-logs"


def _nats_binary() -> str:
    beside = Path(sys.executable).parent / "nats-server"
    found = str(beside) if beside.exists() else shutil.which("nats-server")
    assert found, "nats-server not found"
    return found


def _start_nats(config: Path, port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [_nats_binary(), "-c", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
    )
    _wait_for_port(port, 30, "nats-server", proc)
    return proc


@contextlib.contextmanager
def running_nats(directory: Path, settings: str) -> Iterator[str]:
    """A nats-server with JetStream (its store in `directory`) and these config `settings`;
    yields its URL and stops it after."""
    port = free_port()
    config = directory / "nats.conf"
    config.write_text(
        f"listen: 127.0.0.1:{port}\n"
        f"jetstream {{ store_dir: {str(directory / 'js')!r} }}\n{settings}\n"
    )
    proc = _start_nats(config, port)
    try:
        yield f"nats://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture
def secured_nats(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    """A nats-server (JetStream) whose `authorization` block is the test's parameter."""
    with running_nats(tmp_path, f"max_payload: 8MB\nauthorization {{ {request.param} }}") as url:
        yield url


USER_AUTH = f'user: weir, password: "{PASSWORD}"'
TOKEN_AUTH = f'token: "{TOKEN}"'


async def assert_refused(url: str, name: str) -> None:
    """Connecting as the environment says is refused by the server's authorization."""
    with pytest.raises(Exception, match=r"[Aa]uthorization"):
        await connect(url, name, max_reconnect_attempts=0, allow_reconnect=False)


async def assert_admitted(url: str, name: str) -> None:
    """Connecting as the environment says is let in, JetStream included."""
    nc = await connect(url, name, max_reconnect_attempts=0)
    try:
        assert nc.is_connected
        await nc.jetstream().account_info()
    finally:
        await close(nc)


@pytest.mark.parametrize("secured_nats", [USER_AUTH], indirect=True)
async def test_user_and_password_from_the_environment(
    secured_nats: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    await assert_refused(secured_nats, "no-creds")
    monkeypatch.setenv("WEIR_NATS_USER", "weir")
    monkeypatch.setenv("WEIR_NATS_PASSWORD", "wrong")
    await assert_refused(secured_nats, "bad-creds")
    monkeypatch.setenv("WEIR_NATS_PASSWORD", PASSWORD)
    await assert_admitted(secured_nats, "good-creds")


@pytest.mark.parametrize("secured_nats", [TOKEN_AUTH], indirect=True)
async def test_token_from_the_environment_or_an_explicit_security_object(
    secured_nats: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    await assert_refused(secured_nats, "no-token")
    nc = await connect(secured_nats, "explicit", security=NatsSecurity(token=TOKEN))
    await close(nc)
    monkeypatch.setenv("WEIR_NATS_TOKEN", TOKEN)
    await assert_admitted(secured_nats, "from-env")


@pytest.mark.parametrize("secured_nats", [USER_AUTH], indirect=True)
async def test_services_and_cli_run_against_an_authenticated_server(
    secured_nats: str,
    database_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("WEIR_NATS_USER", "weir")
    monkeypatch.setenv("WEIR_NATS_PASSWORD", PASSWORD)
    settings = Settings(
        nats_url=secured_nats, database_url=database_url, runner_dir=str(tmp_path / "runs")
    )
    scheduler, runner = Scheduler(settings), Runner(settings)
    tasks = [await _start("scheduler", scheduler), await _start("runner", runner)]
    try:
        spec = tmp_path / "one.yaml"
        spec.write_text("name: one\ntasks:\n  - {name: a, cmd: ['true']}\n")
        monkeypatch.delenv("WEIR_NATS_PASSWORD")
        cli = await asyncio.create_subprocess_exec(
            *[sys.executable, "-m", "weir.cli", "--nats-password", PASSWORD, "submit", str(spec)],
            *["--wait", "--nats-url", secured_nats],
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env={**os.environ, "WEIR_NATS_USER": "weir"},
        )
        output, _ = await asyncio.wait_for(cli.communicate(), 60)
        assert cli.returncode == 0, output.decode(errors="replace")
    finally:
        runner.stop.set()
        scheduler.stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 30)


def test_conflicting_or_missing_settings_are_refused_by_name(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="WEIR_NATS_PASSWORD is set without WEIR_NATS_USER"):
        NatsSecurity.from_env({"WEIR_NATS_PASSWORD": "x"})
    with pytest.raises(ConfigError, match="not WEIR_NATS_USER and WEIR_NATS_TOKEN"):
        NatsSecurity.from_env({"WEIR_NATS_USER": "u", "WEIR_NATS_TOKEN": "t"})
    with pytest.raises(ConfigError, match="WEIR_NATS_TLS_CERT and WEIR_NATS_TLS_KEY go together"):
        NatsSecurity.from_env({"WEIR_NATS_TLS_CERT": str(tmp_path)})
    with pytest.raises(ConfigError, match=r"WEIR_NATS_CREDS='/nope\.creds' is not a readable"):
        NatsSecurity.from_env({"WEIR_NATS_CREDS": "/nope.creds"})
    assert PASSWORD not in repr(NatsSecurity(user="u", password=PASSWORD))


@pytest.mark.skipif(
    importlib.util.find_spec("nkeys") is not None, reason="nkeys is installed: creds would load"
)
def test_creds_without_the_nkeys_package_say_what_to_install(tmp_path: Path) -> None:
    creds = tmp_path / "user.creds"
    creds.write_text("-----BEGIN NATS USER JWT-----\n")
    with pytest.raises(ConfigError, match="pip install nkeys"):
        asyncio.run(connect("nats://127.0.0.1:1", "x", security=NatsSecurity(creds=str(creds))))


@pytest.mark.skipif(
    importlib.util.find_spec("cryptography") is None,
    reason="the TLS test makes a throwaway CA with the `cryptography` package, which is not "
    "installed in .venv",
)
async def test_tls_with_a_throwaway_ca_and_client_certificates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.fuzz.throwaway_ca import make_pki

    pki = make_pki(tmp_path / "pki")
    tls = (
        f"tls {{ cert_file: {str(pki.server_cert)!r}, key_file: {str(pki.server_key)!r}, "
        f"ca_file: {str(pki.ca)!r}, verify: true }}"
    )
    with running_nats(tmp_path, tls) as url:
        monkeypatch.setenv("WEIR_NATS_TLS_CA", str(pki.ca))
        with pytest.raises(Exception):  # noqa: B017 - the server demands a client certificate
            await connect(url, "no-cert", max_reconnect_attempts=0, allow_reconnect=False)
        monkeypatch.setenv("WEIR_NATS_TLS_CERT", str(pki.client_cert))
        monkeypatch.setenv("WEIR_NATS_TLS_KEY", str(pki.client_key))
        await assert_admitted(url, "with-cert")


def test_urls_are_redacted_for_logs() -> None:
    assert redact_url("nats://weir:pw@h:4222") == "nats://weir:***@h:4222"
    assert redact_url("nats://tok@h:4222") == "nats://***@h:4222"
    assert redact_url("postgresql://u:pw@h/db?sslmode=require") == (
        "postgresql://u:***@h/db?sslmode=require"
    )
    assert redact_url("nats://127.0.0.1:4222") == "nats://127.0.0.1:4222"
    # forms WEIR_NATS_URL accepts: a bare HOST:PORT with a user, a list of servers
    assert redact_url("weir:pw@h1:4222") == "nats://weir:***@h1:4222"
    assert redact_url("nats://u:pw@a:1, tls://v:pw@b:2") == "nats://u:***@a:1, tls://v:***@b:2"
    for unreadable in ("postgresql://weir:pw/Ab+c==@db:5432/w", "nats://u:[pw]@h:1"):
        assert "pw" not in redact_url(unreadable)


@contextlib.contextmanager
def _captured_logs() -> Iterator[io.StringIO]:
    """Every record at DEBUG and above, as the services write them, while inside; the root
    logger is as it was afterwards (a DEBUG level left behind slows every later test)."""
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(logs.JsonFormatter())
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield buffer
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


async def test_the_database_password_is_never_logged(
    postgres: EmbeddedPostgres, nats_server: object, database_url: str, tmp_path: Path
) -> None:
    # Trust auth accepts any password, so the URL can carry one and still work.
    with_password = database_url.replace("postgres@", f"postgres:{PASSWORD}@")
    nats_url = getattr(nats_server, "url")  # noqa: B009 - typed as object on purpose
    with _captured_logs() as buffer:
        unreachable = Settings(
            nats_url=nats_url,
            database_url=f"postgresql://postgres:{PASSWORD}@127.0.0.1:{free_port()}/x",
        )
        down = Scheduler(unreachable)
        waiting = asyncio.create_task(down.run())
        await until(  # the first failure and a retry, each logged with the URL's error
            lambda: buffer.getvalue().count("postgres not reachable") >= 2, "two retries logged"
        )
        down.stop.set()
        await asyncio.wait_for(waiting, 10)

        settings = Settings(
            nats_url=nats_url, database_url=with_password, runner_dir=str(tmp_path / "r")
        )
        scheduler = Scheduler(settings)
        task = await _start("scheduler", scheduler)
        scheduler.stop.set()
        await asyncio.wait_for(task, 30)
    text = buffer.getvalue()
    assert "postgres not reachable" in text, "the failure path was not exercised"
    assert PASSWORD not in text, [line for line in text.splitlines() if PASSWORD in line][:3]


@pytest.mark.parametrize("secured_nats", [USER_AUTH], indirect=True)
async def test_a_password_in_the_nats_url_is_never_logged(
    secured_nats: str, database_url: str, tmp_path: Path
) -> None:
    url = secured_nats.replace("nats://", f"nats://weir:{PASSWORD}@")
    with _captured_logs() as buffer:
        settings = Settings(nats_url=url, database_url=database_url, runner_dir=str(tmp_path))
        scheduler = Scheduler(settings)
        task = await _start("scheduler", scheduler)
        scheduler.stop.set()
        await asyncio.wait_for(task, 30)
    assert PASSWORD not in buffer.getvalue()


PERMISSIONS = Path(__file__).parents[2] / "deploy" / "nats" / "permissions.conf"
ROLE_PASSWORDS = {
    "WEIR_SCHEDULER_NATS_PASSWORD": "sched-pw",
    "WEIR_RUNNER_NATS_PASSWORD": "runner-pw",
    "WEIR_SUBMITTER_NATS_PASSWORD": "submit-pw",
    "WEIR_TASK_NATS_PASSWORD": "task-pw",
    "WEIR_OPERATOR_NATS_PASSWORD": "operator-pw",
    "WEIR_WEB_NATS_PASSWORD": "web-pw",
}


PASSWORDS = {
    "weir-scheduler": "sched-pw",
    "weir-runner": "runner-pw",
    "weir-submitter": "submit-pw",
    "weir-task": "task-pw",
    "weir-operator": "operator-pw",
    "weir-web": "web-pw",
}
"""Each user of the example config and its password (as ROLE_PASSWORDS gives the server)."""


@pytest.fixture
def permissions_url(tmp_path: Path) -> Iterator[str]:
    """A nats-server running deploy/nats/permissions.conf as it is (but its port and store)."""
    port = free_port()
    text = PERMISSIONS.read_text()
    text = text.replace("listen: 0.0.0.0:4222", f"listen: 127.0.0.1:{port}")
    text = text.replace("/data/jetstream", str(tmp_path / "js"))
    config = tmp_path / "permissions.conf"
    config.write_text(text)
    proc = subprocess.Popen(
        [_nats_binary(), "-c", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
        env={**os.environ, **ROLE_PASSWORDS},
    )
    try:
        _wait_for_port(port, 30, "nats-server", proc)
        yield f"nats://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


async def permitted(attacks: Mapping[str, Callable[[], Awaitable[object]]]) -> list[str]:
    """The attacks that worked: each is tried, and one that raises was refused."""
    allowed = []
    for what, attack in attacks.items():
        try:
            await attack()
        except Exception:
            continue
        allowed.append(what)
    return allowed


@contextlib.asynccontextmanager
async def connected_as(url: str, user: str) -> AsyncIterator[NATS]:
    nc = await connect(
        url,
        user,
        security=NatsSecurity(user=user, password=PASSWORDS[user]),
        max_reconnect_attempts=0,
    )
    try:
        yield nc
    finally:
        await close(nc)


async def _may_publish(url: str, user: str, subject: str) -> bool:
    async with connected_as(url, user) as nc:
        try:
            await nc.jetstream().publish(subject, b"{}", timeout=1.0)
        except Exception:
            return False
        return True


async def test_example_permissions_let_each_role_do_its_part_only(permissions_url: str) -> None:
    url = permissions_url
    async with connected_as(url, "weir-scheduler") as scheduler:
        await ensure_streams(scheduler.jetstream())
    assert await _may_publish(url, "weir-submitter", "weir.cmd.submit")
    assert not await _may_publish(url, "weir-submitter", "weir.status.f")
    assert await _may_publish(url, "weir-runner", "weir.status.f")
    assert not await _may_publish(url, "weir-runner", "weir.cmd.submit")
    assert not await _may_publish(url, "weir-task", "weir.cmd.submit")
    assert not await _may_publish(url, "weir-task", "weir.status.f")


def _helper(url: str, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The artifact helper of a task pod, as the `weir-task` user of the example config."""
    env = {
        **os.environ,
        "WEIR_NATS_URL": url,
        "WEIR_NATS_USER": "weir-task",
        "WEIR_NATS_PASSWORD": PASSWORDS["weir-task"],
    }
    return subprocess.run(
        [sys.executable, "-m", "weir_runner.artifacts", *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def test_task_pods_user_moves_artifacts_and_reads_no_secret(
    permissions_url: str, tmp_path: Path
) -> None:
    url = permissions_url
    key = os.urandom(32)
    async with connected_as(url, "weir-scheduler") as scheduler:  # as it does at start
        await ArtifactStore(scheduler.jetstream(), ARTIFACTS_BUCKET_DEFAULT).ensure_bucket()
    async with connected_as(url, "weir-runner") as runner:
        js = runner.jetstream()
        assert await ArtifactStore(js, ARTIFACTS_BUCKET_DEFAULT).list("f") == []
        # No secret stored yet: runners find none (they may not create the bucket).
        with pytest.raises(SecretNotFound):
            await SecretStore(js, key).get("db")
        assert await SecretStore(js, key).names() == []
        async with connected_as(url, "weir-operator") as operator:  # `weir secret set`
            await SecretStore(operator.jetstream(), key).set("db", b"hunter2")
        assert await SecretStore(js, key).get("db") == b"hunter2"  # runners read them
    (tmp_path / "out.bin").write_bytes(bytes(range(256)) * 1000)

    stored = await asyncio.to_thread(
        _helper, url, tmp_path, "upload", "--flow", "f", "data=out.bin"
    )
    fetched = await asyncio.to_thread(_helper, url, tmp_path, "download", "f/data=in.bin")

    assert stored.returncode == 0, stored.stderr
    assert fetched.returncode == 0, fetched.stderr
    assert (tmp_path / "in.bin").read_bytes() == (tmp_path / "out.bin").read_bytes()
    async with connected_as(url, "weir-task") as task_pod:
        with pytest.raises(Exception, match=r"[Pp]ermission|[Tt]imeout|denied"):
            bucket = await task_pod.jetstream(timeout=1.0).key_value(SECRETS_BUCKET)
            await bucket.get("db")
