"""Where artifacts go when not in the NATS Object Store: S3-compatible storage, its settings
(`WEIR_ARTIFACTS_URL`, `WEIR_S3_ENDPOINT_URL` and the standard AWS variables) checked once."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from weir.setting import ConfigError, declared_setting

__all__ = ["S3Storage", "aws_settings", "s3_storage"]

S3_BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
"""S3's rules for bucket names (3-63 lower-case letters, digits, dots and hyphens)."""


@dataclass(frozen=True)
class S3Storage:
    """S3-compatible storage of artifacts: `WEIR_ARTIFACTS_URL=s3://BUCKET/PREFIX`, with
    `WEIR_S3_ENDPOINT_URL` for MinIO, R2, Ceph and the like. Without keys, boto3 finds
    credentials itself (profile, instance role, Kubernetes service account)."""

    bucket: str
    prefix: str = ""
    """Key prefix without slashes at its ends; the artifact `name` of flow `flow` is the
    object `<prefix>/<flow>/<name>`."""
    endpoint_url: str = ""
    region: str = ""
    access_key_id: str = ""
    secret_access_key: str = field(default="", repr=False)
    session_token: str = field(default="", repr=False)

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> S3Storage | None:
        """The storage the environment selects; None: the NATS Object Store."""
        env = dict(os.environ if env is None else env)
        return s3_storage(**_s3_settings(env))


def _s3_settings(env: Mapping[str, str]) -> dict[str, str]:
    """The S3 settings `Settings` keeps, by field name."""
    from weir.config import Settings

    return {
        "artifacts_url": declared_setting(Settings, "artifacts_url").text(env),
        "s3_endpoint_url": declared_setting(Settings, "s3_endpoint_url").text(env),
        **aws_settings(env),
    }


def aws_settings(env: Mapping[str, str]) -> dict[str, str]:
    """The standard AWS variables for the region and the credentials, so boto3's
    documentation applies as it is."""
    return {
        "s3_region": env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "",
        "aws_access_key_id": env.get("AWS_ACCESS_KEY_ID", ""),
        "aws_secret_access_key": env.get("AWS_SECRET_ACCESS_KEY", ""),
        "aws_session_token": env.get("AWS_SESSION_TOKEN", ""),
    }


def s3_storage(
    artifacts_url: str,
    s3_endpoint_url: str = "",
    s3_region: str = "",
    aws_access_key_id: str = "",
    aws_secret_access_key: str = "",
    aws_session_token: str = "",
) -> S3Storage | None:
    """Check the S3 settings; None when `artifacts_url` is empty (the NATS Object Store)."""
    if not artifacts_url:
        if s3_endpoint_url:
            raise ConfigError(
                "WEIR_S3_ENDPOINT_URL is set, but WEIR_ARTIFACTS_URL is not: set "
                "WEIR_ARTIFACTS_URL=s3://BUCKET/PREFIX to keep artifacts in S3"
            )
        return None
    parts = urlsplit(artifacts_url)
    if parts.scheme != "s3" or not parts.netloc:
        raise ConfigError(
            f"WEIR_ARTIFACTS_URL={artifacts_url!r} is not s3://BUCKET/PREFIX (leave it unset to "
            "keep artifacts in the NATS Object Store bucket WEIR_ARTIFACTS_BUCKET)"
        )
    if "@" in parts.netloc or parts.query or parts.fragment:
        raise ConfigError(
            "WEIR_ARTIFACTS_URL is s3://BUCKET/PREFIX only: no credentials, query or fragment "
            "(credentials go in AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)"
        )
    if not S3_BUCKET_NAME.match(parts.netloc):
        raise ConfigError(
            f"WEIR_ARTIFACTS_URL: {parts.netloc!r} is not an S3 bucket name "
            "(3-63 lower-case letters, digits, '.' and '-', starting and ending with a letter "
            "or digit)"
        )
    prefix = parts.path.strip("/")
    if prefix and any(segment in ("", ".", "..") for segment in prefix.split("/")):
        raise ConfigError(
            f"WEIR_ARTIFACTS_URL={artifacts_url!r}: the prefix {prefix!r} has an empty, '.' or "
            "'..' part"
        )
    if s3_endpoint_url:
        endpoint = urlsplit(s3_endpoint_url)
        if endpoint.scheme not in ("http", "https") or not endpoint.hostname:
            raise ConfigError(
                f"WEIR_S3_ENDPOINT_URL={s3_endpoint_url!r} is not an http:// or https:// URL "
                "(like http://minio:9000)"
            )
    if bool(aws_access_key_id) != bool(aws_secret_access_key):
        raise ConfigError("AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY go together")
    if aws_session_token and not aws_access_key_id:
        raise ConfigError(
            "AWS_SESSION_TOKEN is set without AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
        )
    return S3Storage(
        bucket=parts.netloc,
        prefix=prefix,
        endpoint_url=s3_endpoint_url,
        region=s3_region,
        access_key_id=aws_access_key_id,
        secret_access_key=aws_secret_access_key,
        session_token=aws_session_token,
    )
