"""A task's stderr goes into `task_failed`, which every reader of the flow's events sees: the
values of its secrets are replaced there (as they are, and base64 or hex encoded)."""

from __future__ import annotations

import base64

import pytest
from weir.client import Client

from tests.conftest import Services
from tests.flows import finish, shell, types

VALUE = "s3cr3t-VALUE-42-redact-me"


async def test_a_failing_tasks_stderr_never_carries_its_secret_into_the_events(
    services: Services, client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WEIR_SECRET_DEMO", VALUE)  # the runner's fallback for secret "demo"
    leak = (
        'echo "plain $X" >&2; printf %s "$X" | base64 >&2; '
        'printf %s "$X" | od -An -tx1 | tr -d " \\n" >&2; echo >&2; exit 3'
    )
    spec = {
        "name": "leaky",
        "tasks": [shell("t", leak, env=[{"name": "X", "fromSecret": "demo"}], retry=1)],
    }
    _, events = await finish(client, spec)
    assert types(events)[-1] == "flow_failed"
    text = repr(events)
    assert "[secret]" in text and "plain [secret]" in text, text
    for form in (
        VALUE,
        base64.b64encode(VALUE.encode()).decode().rstrip("="),
        VALUE.encode().hex(),
    ):
        assert form not in text, f"{form!r} reached the events"
