"""The NATS credentials given to `weir` reach its connections, not its environment."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import typer.main
import weir.cli.entry
import weir.jetstream
from typer.testing import CliRunner
from weir.cli import app
from weir.config import NatsSecurity

UNREACHABLE = "nats://127.0.0.1:9"


def test_credential_flags_reach_the_connection_and_stay_out_of_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in list(os.environ):
        if name.startswith("WEIR_NATS_"):
            monkeypatch.delenv(name)
    password = tmp_path / "password"
    password.write_text("s3cret\n")
    seen: list[NatsSecurity | None] = []
    connect = weir.jetstream.connect

    async def spy(*args: object, security: NatsSecurity | None = None, **options: object) -> object:
        seen.append(security)
        return await connect(*args, security=security, **options)  # type: ignore[arg-type]

    monkeypatch.setattr(weir.client, "connect", spy)
    monkeypatch.setattr(weir.cli.entry, "connect", spy)
    runner = CliRunner()
    base = ["--nats-user", "weir", "--nats-password-file", str(password)]
    for command in (["flows"], ["secret", "ls"]):
        result = runner.invoke(app, [*base, *command, "--nats-url", UNREACHABLE])
        assert result.exit_code == 2, result.output
        assert "cannot reach NATS" in result.output
    assert [(s.user, s.password) if s else None for s in seen] == [("weir", "s3cret")] * 2
    assert not [name for name in os.environ if name.startswith("WEIR_NATS_")]


def test_a_bad_nats_url_is_a_usage_error_naming_the_option() -> None:
    done = CliRunner().invoke(app, ["flows", "--nats-url", "nats://[bad"])
    assert done.exit_code == 2
    assert "Invalid value for '--nats-url'" in done.output
    assert "is not a URL: it has brackets that are not an IPv6 address" in done.output
    assert done.exception is None or isinstance(done.exception, SystemExit)


def test_each_nats_option_is_named_after_its_parameter_and_read_from_its_variable() -> None:
    """`weir` hands on WEIR_NATS_<PARAMETER> for each option given, so every option's flag
    and variable follow its parameter's name (the variables docs/security.md lists)."""
    options = typer.main.get_command(app).params
    assert [o.envvar for o in options] == [
        "WEIR_NATS_USER",
        "WEIR_NATS_PASSWORD",
        "WEIR_NATS_PASSWORD_FILE",
        "WEIR_NATS_TOKEN",
        "WEIR_NATS_TOKEN_FILE",
        "WEIR_NATS_CREDS",
        "WEIR_NATS_NKEY_SEED",
        "WEIR_NATS_TLS_CA",
        "WEIR_NATS_TLS_CERT",
        "WEIR_NATS_TLS_KEY",
    ]
    for option in options:
        assert option.name is not None
        assert option.opts == [f"--nats-{option.name.replace('_', '-')}"]
        assert option.envvar == f"WEIR_NATS_{option.name.upper()}"
