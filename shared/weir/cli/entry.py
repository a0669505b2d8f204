"""The `weir` command itself: its global NATS options, how a command reaches NATS, and the
entry point that turns every failure into one line and an exit status."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import Annotated, Any, TypeVar

import msgspec
import typer
from nats.js import JetStreamContext

from weir.artifacts import ArtifactError
from weir.client import Client, WeirError
from weir.config import ConfigError, NatsSecurity
from weir.jetstream import close, connect, redact_url
from weir.secrets import SecretError
from weir.setting import nats_urls
from weir.terminal import error, fail, note

app = typer.Typer(
    help="weir: submit flows (DAGs of container tasks) and watch them run.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
_T = TypeVar("_T")
FIRST_RETRIES = 1
"""A command tries NATS twice, 0.2 s apart, and then says why it cannot reach it."""


def _checked_nats_url(value: str) -> str:
    try:
        return nats_urls("--nats-url", value)
    except ConfigError as exc:
        raise typer.BadParameter(str(exc).removeprefix("--nats-url ")) from None


NatsUrl = Annotated[
    str,
    typer.Option(
        "--nats-url",
        envvar="WEIR_NATS_URL",
        help="NATS server to talk to.",
        callback=_checked_nats_url,
    ),
]
Json = Annotated[bool, typer.Option("--json", help="Machine-readable JSON output.")]

nats_security: ContextVar[NatsSecurity | None] = ContextVar("nats_security", default=None)
"""The NATS credentials and TLS chosen on the command line (`weir --nats-...`, else the
`WEIR_NATS_*` variables), which every connection of the command uses: held here, never
written back to the process environment."""


def _nats_option(flag: str, help_: str) -> Any:
    """A NATS credential or TLS option `--nats-NAME`, also read from `WEIR_NATS_NAME`."""
    return typer.Option(flag, envvar=_nats_variable(flag), help=help_, show_default=False)


def _nats_variable(flag: str) -> str:
    """The variable that stands for `flag`: `--nats-tls-ca` is `WEIR_NATS_TLS_CA`."""
    return "WEIR_" + flag.removeprefix("--").replace("-", "_").upper()


@app.callback()
def _nats_security(
    ctx: typer.Context,
    user: Annotated[str, _nats_option("--nats-user", "NATS user.")] = "",
    password: Annotated[
        str,
        _nats_option(
            "--nats-password",
            "NATS password (on the command line other users see it: prefer the file).",
        ),
    ] = "",
    password_file: Annotated[
        str, _nats_option("--nats-password-file", "File holding the NATS password.")
    ] = "",
    token: Annotated[
        str,
        _nats_option(
            "--nats-token", "NATS token (on the command line other users see it: prefer the file)."
        ),
    ] = "",
    token_file: Annotated[
        str, _nats_option("--nats-token-file", "File holding the NATS token.")
    ] = "",
    creds: Annotated[str, _nats_option("--nats-creds", "NATS .creds file (JWT+NKey).")] = "",
    nkey_seed: Annotated[str, _nats_option("--nats-nkey-seed", "File with an NKey seed.")] = "",
    tls_ca: Annotated[str, _nats_option("--nats-tls-ca", "CA bundle for the server.")] = "",
    tls_cert: Annotated[str, _nats_option("--nats-tls-cert", "Client certificate.")] = "",
    tls_key: Annotated[str, _nats_option("--nats-tls-key", "Client certificate key.")] = "",
) -> None:
    """NATS credentials and TLS (flags before the command, or WEIR_NATS_* variables); read by
    weir.jetstream.connect like in every other process. See docs/security.md."""
    for flag, name in (("--nats-password", "password"), ("--nats-token", "token")):
        source = ctx.get_parameter_source(name)
        if source is not None and source.name == "COMMANDLINE":
            note(
                f"warning: {flag} is visible to every user of this machine (ps, /proc); "
                f"use {flag}-file or WEIR_NATS_{name.upper()}(_FILE) instead"
            )
    # Each parameter NAME above is the option --nats-NAME.
    chosen = {
        _nats_variable(f"--nats-{name}"): value for name, value in ctx.params.items() if value
    }
    try:
        security = NatsSecurity.from_env({**os.environ, **chosen})
    except ConfigError as exc:
        fail(str(exc), 2)
    nats_security.set(security)


async def connect_client(nats_url: str, security: NatsSecurity | None) -> Client:
    """A client of the scheduler's API, as every command connects: quietly, one retry of the
    first connect, at most 10 seconds (raises what the connect raised)."""
    return await asyncio.wait_for(
        Client.connect(nats_url, quiet=True, security=security, first_retries=FIRST_RETRIES),
        10,
    )


def run(nats_url: str, body: Callable[[Client], Awaitable[_T]]) -> _T:
    """`body` with a client of the scheduler's API; an API error ends the command."""
    security = nats_security.get()

    async def main() -> _T:
        try:
            client = await connect_client(nats_url, security)
        except Exception as exc:
            fail(f"cannot reach NATS at {redact_url(nats_url)}: {reason(exc)}", 2)
        try:
            return await body(client)
        finally:
            await client.close()

    try:
        return asyncio.run(main())
    except WeirError as exc:
        fail(f"({exc.code}) {exc.message}", 1, (d.message for d in exc.details))


def run_jetstream(nats_url: str, body: Callable[[JetStreamContext], Awaitable[_T]]) -> _T:
    """`body` with JetStream itself (Object Store, KV), not the scheduler; an artifact or
    secret error ends the command."""
    security = nats_security.get()

    async def main() -> _T:
        try:
            nc = await asyncio.wait_for(
                connect(
                    nats_url,
                    "weir-cli",
                    quiet=True,
                    security=security,
                    first_retries=FIRST_RETRIES,
                ),
                10,
            )
        except Exception as exc:
            fail(f"cannot reach NATS at {redact_url(nats_url)}: {reason(exc)}", 2)
        try:
            return await body(nc.jetstream())
        finally:
            await close(nc)

    try:
        return asyncio.run(main())
    except (ArtifactError, SecretError) as exc:
        fail(str(exc))


def reason(exc: BaseException) -> str:
    """An exception as a user reads it: its message, else its type's name."""
    return str(exc) or type(exc).__name__


def print_json(value: object) -> None:
    """`--json` output: one JSON document a line on stdout."""
    sys.stdout.write(msgspec.json.encode(value).decode() + "\n")
    sys.stdout.flush()


def main() -> None:
    """The `weir` command. An error nobody foresaw still ends as one line and exit status 1,
    never a traceback (WEIR_LOG_LEVEL=DEBUG logs the traceback too)."""
    try:
        result = app(standalone_mode=False)
    except typer.Abort:
        error("aborted")
        sys.exit(130)
    except typer.TyperException as exc:  # a usage error: typer's click shows its own message
        show = getattr(exc, "show", None)
        show() if show is not None else error(exc.format_message())
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        error("interrupted")
        sys.exit(130)
    except Exception as exc:
        logging.getLogger("weir.cli").debug("unexpected error", exc_info=True)
        error(f"unexpected {type(exc).__name__}: {reason(exc)}")
        sys.exit(1)
    sys.exit(result if isinstance(result, int) else 0)
