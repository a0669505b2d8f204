"""The dev stack (`./just demo`, `./just up`, the test stack) lets no other local process in:
its Postgres and NATS want the random passwords only the stack's own processes are given."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import asyncpg
import nats
import pytest
from nats.errors import NoServersError
from weir.devstack import Stack
from weir.embedded import EmbeddedPostgres

from tests.inspection import inspecting


async def test_the_dev_stacks_nats_refuses_a_client_without_its_password(tmp_path: Path) -> None:
    stack = Stack(tmp_path / "stack")
    await asyncio.to_thread(stack.start_infra)
    try:
        server = stack.nats_server
        assert server is not None and server.password
        anonymous = f"nats://127.0.0.1:{server.port}"
        with pytest.raises((NoServersError, nats.errors.Error, OSError)):
            await nats.connect(anonymous, allow_reconnect=False, max_reconnect_attempts=0)
        with pytest.raises((NoServersError, nats.errors.Error, OSError)):
            await nats.connect(
                f"nats://weir:guess@127.0.0.1:{server.port}",
                allow_reconnect=False,
                max_reconnect_attempts=0,
            )
        nc = await nats.connect(stack.nats_url)
        await nc.close()
        stored = (tmp_path / "stack" / "nats" / "password").stat().st_mode & 0o777
        assert stored == 0o600
    finally:
        await asyncio.to_thread(stack.stop)


async def test_the_private_postgres_refuses_a_login_without_its_password(
    postgres: EmbeddedPostgres,
) -> None:
    for url in (
        f"postgresql://postgres@127.0.0.1:{postgres.port}/postgres",
        f"postgresql://postgres:guess@127.0.0.1:{postgres.port}/postgres",
    ):
        with pytest.raises(
            (asyncpg.InvalidPasswordError, asyncpg.InvalidAuthorizationSpecificationError)
        ):
            await asyncpg.connect(url)
    async with inspecting(postgres.url) as db:
        assert await db.ping() == 1
    assert postgres.password_file.stat().st_mode & 0o777 == 0o600


def test_the_private_postgres_does_not_run_as_the_local_executors_task_user(
    postgres: EmbeddedPostgres,
) -> None:
    import os
    import pwd

    from weir.config import TASK_USER_DEFAULT

    if os.geteuid() != 0:
        pytest.skip("only a root runner switches tasks to another user")
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        pytest.skip("this machine has no postgres account; the cluster runs as nobody")
    owner = pwd.getpwuid(postgres.data_dir.stat().st_uid).pw_name
    assert owner == "postgres" != TASK_USER_DEFAULT
    assert postgres.data_dir.stat().st_mode & 0o077 == 0


async def test_the_dev_stacks_weir_web_wants_its_token_even_on_loopback(tmp_path: Path) -> None:
    """A task of the local executor (or any local user) reaching the dev stack's weir-web on
    127.0.0.1 without the stack's random admin token gets 401, never an admin's rights."""
    import httpx

    stack = Stack(tmp_path / "stack")
    await asyncio.to_thread(stack.start_infra)
    try:
        await asyncio.to_thread(stack.start_web)
        async with httpx.AsyncClient(base_url=f"{stack.web_url}/api/v1", timeout=30) as http:
            anonymous = await http.post("/flows/victim/cancel", json={"reason": "x"})
            assert anonymous.status_code == 401, anonymous.text
            assert (await http.get("/flows")).status_code == 401
            login = await http.post("/session", json={"token": stack.web_token})
            assert login.status_code == 201 and login.json()["role"] == "admin", login.text
        for name in ("token", "tokens"):
            assert (tmp_path / "stack" / "web" / name).stat().st_mode & 0o777 == 0o600
    finally:
        await asyncio.to_thread(stack.stop)


def test_the_stacks_secret_files_are_never_readable_by_others_even_while_written(
    tmp_path: Path,
) -> None:
    """Created 0600 with O_EXCL: no window in which another user could open them (a file
    made with the default umask and chmodded afterwards can be opened in between)."""
    from weir.embedded import nats_password, write_private

    old = os.umask(0o000)  # the worst umask: the mode must not depend on it
    try:
        nats_password(tmp_path / "nats")
        write_private(tmp_path / "other", "x")
    finally:
        os.umask(old)
    for path in (tmp_path / "nats" / "password", tmp_path / "other"):
        assert path.stat().st_mode & 0o777 == 0o600
    with pytest.raises(FileExistsError):
        write_private(tmp_path / "other", "y")  # never writes through what is already there
