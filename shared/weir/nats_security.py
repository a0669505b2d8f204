"""How every process authenticates to NATS and protects the connection: `WEIR_NATS_*`."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from weir.setting import ConfigError


def _secret_value(env: dict[str, str], name: str) -> str:
    """The value of `name`, or the content of the file `name`_FILE names (without the one
    line end `echo` adds): a file keeps the secret out of every process's arguments and
    environment."""
    path = env.get(f"{name}_FILE", "")
    if not path:
        return env.get(name, "")
    if env.get(name):
        raise ConfigError(f"{name} and {name}_FILE are both set; choose one")
    try:
        with open(path, encoding="utf-8") as handle:
            value = handle.read(SECRET_FILE_MAX + 1)
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "it is not UTF-8 text"
        raise ConfigError(f"{name}_FILE={path!r} cannot be read: {reason}") from None
    value = value.removesuffix("\n").removesuffix("\r")
    if not value or len(value) > SECRET_FILE_MAX or "\n" in value:
        raise ConfigError(
            f"{name}_FILE={path!r} must hold one line of at most {SECRET_FILE_MAX} characters"
        )
    return value


SECRET_FILE_MAX = 4096
"""The longest password or token read from a file."""


@dataclass(frozen=True)
class NatsSecurity:
    """How every process authenticates to NATS and protects the connection (all optional).

    `WEIR_NATS_USER`/`WEIR_NATS_PASSWORD`, `WEIR_NATS_TOKEN`, `WEIR_NATS_CREDS` (a `.creds`
    file: JWT + NKey seed), `WEIR_NATS_NKEY_SEED` (a file holding an NKey seed);
    `WEIR_NATS_PASSWORD_FILE` and `WEIR_NATS_TOKEN_FILE` name a file holding the password or
    the token instead (a Kubernetes Secret volume, a file only its owner reads); and TLS:
    `WEIR_NATS_TLS_CA` (CA bundle to verify the server), `WEIR_NATS_TLS_CERT` and
    `WEIR_NATS_TLS_KEY` (client certificate and key, for servers that verify clients).
    Read by `weir.jetstream.connect`, so every process honours them.
    """

    user: str = ""
    password: str = field(default="", repr=False)
    token: str = field(default="", repr=False)
    creds: str = ""
    nkey_seed: str = ""
    tls_ca: str = ""
    tls_cert: str = ""
    tls_key: str = ""

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> NatsSecurity:
        env = dict(os.environ if env is None else env)
        security = cls(
            user=env.get("WEIR_NATS_USER", ""),
            password=_secret_value(env, "WEIR_NATS_PASSWORD"),
            token=_secret_value(env, "WEIR_NATS_TOKEN"),
            creds=env.get("WEIR_NATS_CREDS", ""),
            nkey_seed=env.get("WEIR_NATS_NKEY_SEED", ""),
            tls_ca=env.get("WEIR_NATS_TLS_CA", ""),
            tls_cert=env.get("WEIR_NATS_TLS_CERT", ""),
            tls_key=env.get("WEIR_NATS_TLS_KEY", ""),
        )
        security.validate()
        return security

    def validate(self) -> None:
        if self.password and not self.user:
            raise ConfigError("WEIR_NATS_PASSWORD is set without WEIR_NATS_USER")
        methods = [
            name
            for name, value in (
                ("WEIR_NATS_USER", self.user),
                ("WEIR_NATS_TOKEN", self.token),
                ("WEIR_NATS_CREDS", self.creds),
                ("WEIR_NATS_NKEY_SEED", self.nkey_seed),
            )
            if value
        ]
        if len(methods) > 1:
            raise ConfigError(
                f"choose one way to authenticate to NATS, not {' and '.join(methods)}"
            )
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ConfigError("WEIR_NATS_TLS_CERT and WEIR_NATS_TLS_KEY go together")
        for name, path in (
            ("WEIR_NATS_CREDS", self.creds),
            ("WEIR_NATS_NKEY_SEED", self.nkey_seed),
            ("WEIR_NATS_TLS_CA", self.tls_ca),
            ("WEIR_NATS_TLS_CERT", self.tls_cert),
            ("WEIR_NATS_TLS_KEY", self.tls_key),
        ):
            if path and not os.path.isfile(path):
                raise ConfigError(f"{name}={path!r} is not a readable file")

    @property
    def tls(self) -> bool:
        return bool(self.tls_ca or self.tls_cert)
