"""WEIR_LOG_LEVEL=DEBUG is weir's debug output, not that of the libraries it uses."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from weir import logs


@pytest.fixture
def restored_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    levels = {name: logging.getLogger(name).level for name in logs.QUIET_LIBRARIES}
    try:
        yield
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        for name, old in levels.items():
            logging.getLogger(name).setLevel(old)


@pytest.mark.usefixtures("restored_logging")
def test_debug_level_is_weirs_own() -> None:
    logs.setup("weir-runner", "DEBUG")

    assert logging.getLogger("weir.runner.kubernetes").isEnabledFor(logging.DEBUG)
    # boto3 reports every 256 KiB chunk of a transfer at DEBUG: thousands of lines and their
    # memory per artifact; the Kubernetes client logs its kubeconfig.
    for chatty in ("s3transfer.tasks", "botocore.endpoint", "kubernetes_asyncio.config", "nats"):
        assert not logging.getLogger(chatty).isEnabledFor(logging.INFO), chatty
        assert logging.getLogger(chatty).isEnabledFor(logging.WARNING), chatty
