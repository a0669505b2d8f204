"""`weir secret …`: the encrypted secrets tasks read with `fromSecret`, kept in a NATS KV
bucket. The CLI talks to the bucket directly, not to the scheduler: it is the operators'
tool (their NATS user holds the bucket, deploy/nats/permissions.conf) and works while no
scheduler runs. It seals values as weir-web does (`seal_secret`) and checks names by the
same rule (`check_secret_name`) before any subject is formed."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from nats.js import JetStreamContext

from weir.cli.entry import Json, NatsUrl, print_json, run_jetstream
from weir.config import NATS_URL_DEFAULT
from weir.secrets import (
    MAX_SECRET_BYTES,
    SecretError,
    SecretStore,
    check_secret_name,
    new_secret_key,
    secret_key_from_env,
)
from weir.terminal import fail, note, say

secret_app = typer.Typer(
    help="Encrypted secrets tasks read with `fromSecret` (key: WEIR_SECRET_KEY).",
    no_args_is_help=True,
)


@secret_app.command("set")
def secret_set(
    name: Annotated[str, typer.Argument(help="Secret name, as tasks use it in fromSecret.")],
    from_file: Annotated[
        Path | None,
        typer.Option("--from-file", "-f", help="Read the value from this file (default: stdin)."),
    ] = None,
    nats_url: NatsUrl = NATS_URL_DEFAULT,
) -> None:
    """Store a secret. The value comes from stdin or a file, never from the command line."""
    try:
        check_secret_name(name)
        key = secret_key_from_env()
    except SecretError as exc:
        fail(str(exc), 2)
    if key is None:
        fail("WEIR_SECRET_KEY is not set (make one with `weir secret keygen`)", 2)
    try:
        if from_file is not None:
            value = from_file.read_bytes()
        else:
            if sys.stdin.isatty():
                note("value (end with Ctrl-D):")
            value = sys.stdin.buffer.read(MAX_SECRET_BYTES + 1)
    except OSError as exc:
        fail(f"cannot read {from_file}: {exc.strerror}", 2)
    if from_file is None and value.endswith(b"\n") and value.count(b"\n") == 1:
        value = value[:-1]  # `echo value | weir secret set x` means "value"

    async def body(js: JetStreamContext) -> None:
        await SecretStore(js, key).set(name, value)

    run_jetstream(nats_url, body)
    note(f"secret {name} set")


@secret_app.command("ls")
def secret_ls(nats_url: NatsUrl = NATS_URL_DEFAULT, as_json: Json = False) -> None:
    """List secret names (never values)."""
    names = run_jetstream(nats_url, lambda js: SecretStore(js, None).names())
    if as_json:
        print_json(names)
        return
    for name in names:
        say(name)


@secret_app.command("rm")
def secret_rm(
    name: Annotated[str, typer.Argument(help="Secret name.")],
    nats_url: NatsUrl = NATS_URL_DEFAULT,
) -> None:
    """Delete a secret."""
    try:
        check_secret_name(name)
    except SecretError as exc:
        fail(str(exc), 2)
    removed = run_jetstream(nats_url, lambda js: SecretStore(js, None).delete(name))
    if not removed:
        fail(f"secret {name} does not exist")
    note(f"secret {name} removed")


@secret_app.command("keygen")
def secret_keygen() -> None:
    """Print a fresh WEIR_SECRET_KEY (give the same key to the CLI and every runner)."""
    sys.stdout.write(new_secret_key() + "\n")
