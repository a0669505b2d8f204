"""weir-web as the `weir-web` user of deploy/nats/permissions.conf (as the file is), beside a
scheduler and a runner with their own users: every endpoint works, and the user can change
no stream nor take another role's messages."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
from collections.abc import AsyncIterator

import pytest
from nats.js.api import ConsumerConfig, KeyValueConfig, StreamConfig
from weir.embedded import free_port
from weir.secrets import SECRET_KEY_ENV, SECRETS_BUCKET, SecretStore, new_secret_key
from weir_web.config import WebSettings, parse_tokens

from tests.conftest import Services
from tests.flows import shell, task
from tests.fuzz.test_security import connected_as, permissions_url, permitted
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
def secret_key(monkeypatch: pytest.MonkeyPatch) -> bytes:
    """WEIR_SECRET_KEY, the same for weir-web (which seals) and the in-process runner (which
    reads the variable); the scheduler is given none and needs none."""
    key = new_secret_key()
    monkeypatch.setenv(SECRET_KEY_ENV, key)
    return base64.urlsafe_b64decode(key)


@pytest.fixture
async def web_as_user(
    stack: Services, permissions_url: str, secret_key: bytes
) -> AsyncIterator[Web]:
    settings = dataclasses.replace(stack.settings, nats_url=as_user(permissions_url, "weir-web"))
    running = Web(
        WebSettings(port=free_port(), tokens=parse_tokens(tokens_text(), "tokens")),
        settings,
        secret_key,
    )
    await running.start()
    yield running
    for made in running.clients:
        await made.aclose()
    await running.stop()


async def test_every_endpoint_works_as_the_web_user(web_as_user: Web) -> None:
    admin = web_as_user.client("admin")
    out = {"name": "out", "path": "out.txt"}
    made = shell("m", "echo hello; echo data > out.txt", outputs=[out])
    flow_id = await submit(admin, {"name": "made", "tasks": [made]})
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
        "flow": {"name": "x", "tasks": [task("a", "true")]},
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
        flow_id = await submit(admin, {"name": "seen", "tasks": [task("a", "true")]})
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


SECRET = "hunter2-kept-from-weir-web-5d2e"


async def test_secrets_over_http_go_through_the_scheduler_and_a_task_reads_them(
    web_as_user: Web,
) -> None:
    """weir-web holds no right on the secrets bucket: PUT, GET and DELETE /secrets ask the
    scheduler, which stores what weir-web sealed; a task then reads the value."""
    admin = web_as_user.client("admin")
    assert (await admin.get("/secrets")).json() == {"names": []}  # no bucket yet
    assert (await admin.put("/secrets/api.token", json={"value": SECRET})).status_code == 204
    assert (await admin.get("/secrets")).json() == {"names": ["api.token"]}
    digest = hashlib.sha256(SECRET.encode()).hexdigest()
    check = f'printf %s "$TOKEN" | sha256sum | grep -q {digest}'
    spec = {
        "name": "reads-secret",
        "tasks": [shell("t", check, env=[{"name": "TOKEN", "fromSecret": "api.token"}])],
    }
    flow_id = await submit(admin, spec)
    assert (await events_of(admin, flow_id))[-1].event == "flow_succeeded"
    for role in ("viewer", "operator"):
        client = web_as_user.client(role)
        assert (await client.put("/secrets/x", json={"value": "v"})).status_code == 403
        assert (await client.delete("/secrets/api.token")).status_code == 403
    assert (await admin.delete("/secrets/api.token")).status_code == 204
    gone = await admin.delete("/secrets/api.token")
    assert gone.status_code == 404 and gone.json()["error"]["code"] == "not_found"
    assert (await admin.get("/secrets")).json() == {"names": []}


async def test_the_web_user_can_neither_read_write_delete_nor_create_on_the_secrets_bucket(
    web_as_user: Web, permissions_url: str, secret_key: bytes
) -> None:
    """What a stolen weir-web NATS password (with WEIR_SECRET_KEY beside it) could do to the
    secrets bucket before: each is tried directly with nats-py, and each is refused."""
    kv, stream = f"$KV.{SECRETS_BUCKET}", f"KV_{SECRETS_BUCKET}"
    async with connected_as(permissions_url, "weir-web") as nc:
        js = nc.jetstream(timeout=1.0)
        before_any = {
            "create the bucket": lambda: js.create_key_value(
                KeyValueConfig(bucket=SECRETS_BUCKET, history=1)
            ),
            "create the bucket's stream": lambda: js.add_stream(
                StreamConfig(name=stream, subjects=[f"{kv}.>"])
            ),
        }
        assert await permitted(before_any) == []
    admin = web_as_user.client("admin")
    assert (await admin.put("/secrets/db", json={"value": SECRET})).status_code == 204

    async with connected_as(permissions_url, "weir-web") as nc:
        js = nc.jetstream(timeout=1.0)
        attacks = {
            "bind the bucket": lambda: js.key_value(SECRETS_BUCKET),
            "read through the store": lambda: SecretStore(js, secret_key).get("db"),
            "list through the store": lambda: SecretStore(js, secret_key).names(),
            "direct get": lambda: nc.request(
                f"$JS.API.DIRECT.GET.{stream}.{kv}.db", b"", timeout=1.0
            ),
            "message get": lambda: js.get_msg(stream, subject=f"{kv}.db"),
            "last message get": lambda: js.get_last_msg(stream, f"{kv}.db"),
            "stream info": lambda: js.stream_info(stream),
            "watch (consumer)": lambda: js.subscribe(
                f"{kv}.>", stream=stream, ordered_consumer=True
            ),
            "overwrite": lambda: js.publish(f"{kv}.db", b"\x01forged", timeout=1.0),
            "write another key": lambda: js.publish(f"{kv}.planted", b"\x01x", timeout=1.0),
            "delete": lambda: js.publish(
                f"{kv}.db", b"", headers={"KV-Operation": "DEL"}, timeout=1.0
            ),
            "purge the key": lambda: js.publish(
                f"{kv}.db", b"", headers={"KV-Operation": "PURGE"}, timeout=1.0
            ),
            "purge the stream": lambda: js.purge_stream(stream),
            "delete the stream": lambda: js.delete_stream(stream),
            "store through the store": lambda: SecretStore(js, secret_key).set("db", b"mine"),
        }
        assert await permitted(attacks) == []
    async with connected_as(permissions_url, "weir-operator") as operator:
        store = SecretStore(operator.jetstream(), secret_key)
        assert await store.get("db") == SECRET.encode()  # neither changed nor deleted
        assert await store.names() == ["db"]
    assert (await admin.get("/secrets")).json() == {"names": ["db"]}
