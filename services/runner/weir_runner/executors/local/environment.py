"""The task's environment: the few variables passed through from the runner, weir's own
(`WEIR_FLOW_ID`, `WEIR_WORKDIR`, `TRACEPARENT`, ...), and its `env`, `fromSecret` values
read from weir's encrypted secret store, else from the runner's `WEIR_SECRET_<NAME>`; and
the redaction that keeps those values out of what the event log says of the attempt."""

from __future__ import annotations

import base64
import os

from weir import telemetry
from weir.secrets import SecretError, SecretNotFound, env_secret
from weir_proto.ids import is_secret_name
from weir_proto.messages import Dispatch

from weir_runner.artifacts import DataPlane
from weir_runner.attempt_dir import AttemptDir

PASSED_THROUGH_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR", "USER")
SECRET_ENV_PREFIX = "WEIR_SECRET_"
SECRET_REDACTED = "[secret]"


async def task_environment(
    dispatch: Dispatch, home: AttemptDir, data: DataPlane | None
) -> tuple[dict[str, str], str | None]:
    """The task's whole environment, or why a secret it wants cannot be read."""
    env = {k: os.environ[k] for k in PASSED_THROUGH_ENV if k in os.environ}
    env.update(
        WEIR_FLOW_ID=dispatch.flow_id,
        WEIR_TASK=dispatch.task.name,
        WEIR_ATTEMPT=str(dispatch.attempt),
        WEIR_ATTEMPT_ID=dispatch.attempt_id,
        WEIR_WORKDIR=str(home.work),
        WEIR_SNOOZE_FILE=str(home.snooze),
        # The task's own spans continue the flow's trace under its attempt span.
        TRACEPARENT=telemetry.attempt_traceparent(
            dispatch.flow_id, dispatch.task.name, dispatch.attempt
        ),
    )
    for var in dispatch.task.env:
        if var.value is not None:
            env[var.name] = var.value
            continue
        assert var.from_secret is not None
        value, problem = await read_secret(data, var.from_secret)
        if problem:
            return env, f'task "{dispatch.task.name}": env {var.name} wants {problem}'
        assert value is not None
        env[var.name] = value
    return env, None


async def secret_values(dispatch: Dispatch, data: DataPlane | None) -> list[str]:
    """The values of the task's `fromSecret` variables, to keep them out of what the
    event log says of the attempt."""
    values = []
    for var in dispatch.task.env:
        if var.from_secret is not None:
            value, _ = await read_secret(data, var.from_secret)
            if value:
                values.append(value)
    return values


async def read_secret(data: DataPlane | None, name: str) -> tuple[str | None, str | None]:
    """The value of secret `name` (weir's store first, then WEIR_SECRET_<NAME>), or why
    there is none. The reason names the secret, never a value."""
    key = SECRET_ENV_PREFIX + "".join(c if c.isalnum() else "_" for c in name.upper())
    if data is not None and is_secret_name(name):
        async with data.session() as js:
            try:
                value = await data.secrets(js).get(name)
            except SecretNotFound:
                pass
            except SecretError as exc:
                if env_secret(key) is None:
                    return None, f'secret "{name}": {exc}'
            else:
                try:
                    return value.decode(), None
                except UnicodeDecodeError:
                    return None, f'secret "{name}", which is not UTF-8 text'
    from_env = env_secret(key)
    if from_env is not None:
        return from_env, None
    return None, (
        f'secret "{name}", which does not exist (store it with `weir secret set {name}`, '
        f"or set {key} in the runner's environment)"
    )


def redacted(text: str, secrets: list[str]) -> str:
    """`text` with every secret value in it (as it is, and base64 or hex encoded, the forms a
    careless `echo` or a debug print takes) replaced by `[secret]`.

    This keeps a task's own stderr from carrying its secrets into `task_failed`, which every
    reader of the flow's events sees. It cannot stop a task that means to leak a secret it
    was given (split, reversed, sent elsewhere): secrets are for the flows of trusted
    submitters (docs/security.md)."""
    forms = set()
    for value in secrets:
        if len(value) < 4:  # too short to replace without mangling the message
            continue
        raw = value.encode()
        forms |= {value, base64.b64encode(raw).decode().rstrip("="), raw.hex(), raw.hex().upper()}
    for form in sorted(forms, key=len, reverse=True):
        text = text.replace(form, SECRET_REDACTED)
    return text
