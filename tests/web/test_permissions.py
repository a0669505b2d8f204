"""weir-web as the `weir-web` user of deploy/nats/permissions.conf (as the file is), beside a
scheduler and a runner with their own users: every endpoint works, and the user can change
no stream nor take another role's messages."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
from collections.abc import AsyncIterator

import pytest
from nats.js.api import ConsumerConfig
from weir.embedded import free_port
from weir.secrets import new_secret_key
from weir_web.config import WebSettings, parse_tokens

from tests.conftest import Services
from tests.fuzz.test_security import connected_as, permissions_url
from tests.security.test_nats_privilege import as_user, role_settings, stack
from tests.web.conftest import Web, tokens_text
from tests.web.sse import read_sse
from tests.web.test_api import events_of, submit
from tests.web.test_changes import SSE, changes_of

__all__ = [
    "permissions_url",
    "role_settings",
    "stack",
]  # fixtures: a scheduler and a runner on permissions.conf


@pytest.fixture
async def web_as_user(stack: Services, permissions_url: str) -> AsyncIterator[Web]:
    settings = dataclasses.replace(stack.settings, nats_url=as_user(permissions_url, "weir-web"))
    running = Web(
        WebSettings(port=free_port(), tokens=parse_tokens(tokens_text(), "tokens")),
        settings,
        base64.urlsafe_b64decode(new_secret_key()),
    )
    await running.start()
    yield running
    for made in running.clients:
        await made.aclose()
    await running.stop()


async def test_every_endpoint_works_as_the_web_user(web_as_user: Web) -> None:
    admin = web_as_user.client("admin")
    spec = {
        "name": "made",
        "tasks": [
            {
                "name": "m",
                "cmd": ["sh", "-c", "echo hello; echo data > out.txt"],
                "outputs": [{"name": "out", "path": "out.txt"}],
            }
        ],
    }
    flow_id = await submit(admin, spec)
    assert (await events_of(admin, flow_id))[-1].event == "flow_succeeded"
    assert (await admin.get("/flows")).json()["flows"][0]["id"] == flow_id
    assert (await admin.get("/flows", params={"where": "name=made"})).status_code == 200
    tasks = await admin.get("/tasks", params={"where": "name=m"})
    assert tasks.status_code == 200, tasks.text
    assert [t["flow_id"] for t in tasks.json()["tasks"]] == [flow_id]
    assert (await admin.get(f"/flows/{flow_id}/tasks/m/logs")).text == "hello\n"
    blob = await admin.get(f"/flows/{flow_id}/artifacts/out")
    assert blob.content == b"data\n"
    assert blob.headers["x-weir-sha256"] == hashlib.sha256(b"data\n").hexdigest()
    assert (await admin.post(f"/flows/{flow_id}/rerun", json={})).status_code == 201
    schedule = {
        "name": "s",
        "cron": "0 0 * * *",
        "flow": {"name": "x", "tasks": [{"name": "a", "cmd": ["true"]}]},
    }
    assert (await admin.post("/schedules", json=schedule)).status_code == 201
    assert (await admin.post("/schedules/s/pause")).status_code == 200
    assert (await admin.delete("/schedules/s")).status_code == 204
    assert (await admin.put("/secrets/api-token", json={"value": "v"})).status_code == 204
    assert (await admin.get("/secrets")).json() == {"names": ["api-token"]}
    assert (await admin.delete("/secrets/api-token")).status_code == 204
    health = await admin.get("/health")
    assert health.status_code == 200, health.text


async def test_the_list_stream_works_as_the_web_user(web_as_user: Web) -> None:
    viewer, admin = web_as_user.client("viewer"), web_as_user.client("admin")
    async with viewer.stream("GET", "/flows", headers=SSE) as response:
        frames = read_sse(response)
        assert (await anext(frames)).event == "ready"
        flow_id = await submit(admin, {"name": "seen", "tasks": [{"name": "a", "cmd": ["true"]}]})
        assert (await changes_of(frames, flow_id, "flow_succeeded"))[-1] == "flow_succeeded"


async def test_the_web_user_changes_no_stream_and_takes_no_dispatch(
    web_as_user: Web, permissions_url: str
) -> None:
    async with connected_as(permissions_url, "weir-web") as nc:
        js = nc.jetstream()
        attacks = {
            "delete events": js.delete_stream("WEIR_EVENTS"),
            "purge events": js.purge_stream("WEIR_EVENTS"),
            "take dispatches": js.add_consumer("WEIR_DISPATCH", ConsumerConfig(durable_name="x")),
            "delete artifacts": js.delete_stream("OBJ_weir-artifacts"),
        }
        for name, attack in attacks.items():
            with pytest.raises(Exception):  # noqa: B017 - a timeout or a permissions error
                await attack
                pytest.fail(f"{name} succeeded")
