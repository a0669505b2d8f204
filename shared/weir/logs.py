"""Structured logging: one JSON object per line on stderr."""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import Any

import msgspec

_RESERVED = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "at": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _RESERVED and not key.startswith("_"):
                line[key] = value
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return msgspec.json.encode(line, enc_hook=str).decode()


QUIET_LIBRARIES = (
    "nats",
    "botocore",
    "boto3",
    "s3transfer",
    "urllib3",
    "kubernetes_asyncio",
    "aiohttp.access",
)
"""Libraries whose own debug output is not weir's: kept at WARNING even when
WEIR_LOG_LEVEL=DEBUG. boto3's tell of every 256 KiB chunk of an S3 transfer (thousands of
lines, and their memory, per artifact), the Kubernetes client's kubeconfig details."""


def setup(service: str, level: str = "INFO") -> logging.Logger:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for library in QUIET_LIBRARIES:
        logging.getLogger(library).setLevel("WARNING")
    return logging.getLogger(service)
