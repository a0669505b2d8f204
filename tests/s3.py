"""S3-compatible storage for tests: moto's standalone server, a real S3 HTTP API in its own
process, with a fresh bucket per test. Import the fixtures into a test module to use them."""

from __future__ import annotations

import contextlib
import dataclasses
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator

import pytest
from weir.artifacts_s3 import _client
from weir.config import Settings
from weir.embedded import free_port
from weir.s3_storage import S3Storage

S3_START_TIMEOUT = 20.0
CREDENTIALS = {"access_key_id": "weir-test", "secret_access_key": "weir-test-secret"}


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """moto's S3 server on a free port of the loopback, for this module's tests."""
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + S3_START_TIMEOUT
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                break
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"moto's S3 server did not listen on port {port}")
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(10)


@pytest.fixture
def storage(s3_endpoint: str) -> S3Storage:
    """A fresh bucket of its own for each test, under a two-level prefix."""
    storage = S3Storage(
        bucket=f"weir-{uuid.uuid4().hex[:12]}",
        prefix="deploy/prod",
        endpoint_url=s3_endpoint,
        region="us-east-1",
        **CREDENTIALS,
    )
    _client(storage).create_bucket(Bucket=storage.bucket)
    return storage


def on_storage(settings: Settings, storage: S3Storage) -> Settings:
    """`settings` with artifacts in `storage`, as WEIR_ARTIFACTS_URL and the AWS_* variables
    set them."""
    return dataclasses.replace(
        settings,
        artifacts_url=storage.url,
        s3_endpoint_url=storage.endpoint_url,
        s3_region=storage.region,
        aws_access_key_id=storage.access_key_id,
        aws_secret_access_key=storage.secret_access_key,
    )
