"""Who may do what through weir-web, and what it never does: attacks and misuses run against
the real services."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import httpx
import nats
import pytest
from nats.aio.msg import Msg
from weir.client import Client, WeirError
from weir.config import ConfigError
from weir_web.config import WebSettings

from tests.conftest import Services
from tests.waiting import quiet_for
from tests.web.conftest import Web, write_session_key, write_tokens
from tests.web.test_api import DIAMOND, events_of, submit

SECRET_VALUE = "hunter2-very-secret-value-8c1f"

WRITES = [
    ("POST", "/flows", {"name": "x", "tasks": [{"name": "a", "cmd": ["true"]}]}),
    ("POST", "/flows/abc/cancel", {}),
    ("POST", "/flows/abc/rerun", {"failed_only": True}),
    ("POST", "/flows/abc/retry", {"task": "a"}),
    ("POST", "/flows/abc/pause", {}),
    ("POST", "/flows/abc/resume", {}),
    ("PATCH", "/flows/abc", {"priority": 1}),
    ("POST", "/schedules", {"name": "s", "cron": "* * * * *", "flow": {"name": "x", "tasks": []}}),
    ("POST", "/schedules/s/pause", {}),
    ("POST", "/schedules/s/resume", {}),
    ("DELETE", "/schedules/s", None),
    ("PUT", "/secrets/token", {"value": SECRET_VALUE}),
    ("DELETE", "/secrets/token", None),
]
READS = [
    "/flows",
    "/flows/abc",
    "/flows/abc/events",
    "/flows/abc/tasks/a/logs",
    "/flows/abc/artifacts",
    "/flows/abc/artifacts/out",
    "/schedules",
    "/secrets",
    "/health",
]


async def test_no_token_is_401_and_a_viewer_is_403_on_every_write(web: Web) -> None:
    anonymous = web.client()
    for path in READS:
        response = await anonymous.get(path)
        assert response.status_code == 401, path
        assert response.json()["error"]["code"] == "unauthorized"
    wrong = web.client()
    wrong.headers["Authorization"] = "Bearer not-a-token-at-all-123"
    assert (await wrong.get("/flows")).status_code == 401
    viewer = web.client("viewer")
    operator = web.client("operator")
    for method, path, body in WRITES:
        response = await viewer.request(method, path, json=body)
        assert response.status_code == 403, (method, path)
        assert "needs the" in response.json()["error"]["message"]
        assert (await anonymous.request(method, path, json=body)).status_code == 401
        if path.startswith("/secrets"):
            assert (await operator.request(method, path, json=body)).status_code == 403
    assert (await viewer.get("/flows")).json()["flows"] == []  # nothing was submitted


async def test_session_cookie_login_needs_csrf_for_writes(web: Web) -> None:
    browser = web.client()
    refused = await browser.post("/session", json={"token": "wrong-token-0123456789"})
    assert refused.status_code == 401
    login = await browser.post("/session", json={"token": "operator-token-0123456789"})
    assert login.status_code == 201
    cookie = login.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie
    csrf = login.json()["csrf"]
    assert login.json()["role"] == "operator"
    assert (await browser.get("/flows")).status_code == 200  # reads: the cookie suffices
    spec = {"name": "x", "tasks": [{"name": "a", "cmd": ["true"]}]}
    forged = await browser.post("/flows", json=spec)
    assert forged.status_code == 403 and "X-CSRF-Token" in forged.json()["error"]["message"]
    wrong = await browser.post("/flows", json=spec, headers={"X-CSRF-Token": "guess"})
    assert wrong.status_code == 403
    other_site = await browser.post(
        "/flows", json=spec, headers={"X-CSRF-Token": csrf, "Origin": "https://evil.example"}
    )
    assert other_site.status_code == 403
    accepted = await browser.post("/flows", json=spec, headers={"X-CSRF-Token": csrf})
    assert accepted.status_code == 201
    assert (await browser.get("/session")).json()["csrf"] == csrf
    assert (await browser.delete("/session", headers={"X-CSRF-Token": csrf})).status_code == 204
    assert (await browser.get("/flows")).status_code == 401


async def test_login_from_another_sites_page_is_refused(web: Web) -> None:
    """A login CSRF: a page of another site posts its author's token to /session, so the
    victim's browser works (and types) in the attacker's session. Refused like any write."""
    browser = web.client()
    token = {"token": "admin-token-0123456789"}
    for origin in ("https://evil.example", "null", f"http://127.0.0.1:{web.web.port + 1}"):
        forged = await browser.post("/session", json=token, headers={"Origin": origin})
        assert forged.status_code == 403, origin
        assert forged.json()["error"]["message"] == "a write from another site's page is refused"
        assert "set-cookie" not in forged.headers
    assert (await browser.get("/session")).status_code == 401  # no session was opened
    own = await browser.post("/session", json=token, headers={"Origin": web.url})
    assert own.status_code == 201 and "set-cookie" in own.headers
    assert (await browser.post("/session", json=token)).status_code == 201  # curl: no Origin


async def test_secret_names_that_form_no_subject_are_refused_naming_the_rule(
    web: Web, services: Services
) -> None:
    """`a..b` passed the old rule and formed `$KV.weir-secrets.a..b` (an empty token): a 500.
    weir-web and the scheduler's API now refuse it, and every other bad name, by one rule."""
    admin = web.client("admin")
    for bad in ["a..b", "a...b", "a%0A", "ok%0Aok", "a.", ".a", "a b", "a" * 254]:
        for method in ("PUT", "DELETE"):
            response = await admin.request(
                method, f"/secrets/{bad}", json={"value": SECRET_VALUE} if method == "PUT" else None
            )
            assert response.status_code == 400, (method, bad, response.text)
            error = response.json()["error"]
            assert error["code"] == "bad_request"
            assert "is not a secret name" in error["message"]
            assert "never two '.' in a row" in error["message"]
            assert SECRET_VALUE not in response.text
    assert (await admin.get("/secrets")).json() == {"names": []}
    async with await Client.connect(services.settings.nats_url) as client:
        for bad in ["a..b", "a\n", ""]:
            with pytest.raises(WeirError) as refused:
                await client.secret_put(bad, b"\x01" + bytes(40))
            assert refused.value.code == "bad_request" and "is not a secret name" in str(
                refused.value
            )
            with pytest.raises(WeirError) as refused:
                await client.secret_delete(bad)
            assert refused.value.code == "bad_request"
        with pytest.raises(WeirError) as refused:
            await client.secret_put("ok", b"not sealed")
        assert refused.value.code == "bad_request" and "not one sealed" in str(refused.value)
        assert await client.secret_names() == []


async def test_secret_value_never_appears_in_a_response_or_a_log(
    web: Web, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    admin = web.client("admin")
    seen: list[str] = []

    async def keep(response: httpx.Response) -> None:
        await response.aread()
        seen.append(str(response.headers) + response.text)

    admin.event_hooks["response"].append(keep)
    assert (await admin.put("/secrets/api-token", json={"value": SECRET_VALUE})).status_code == 204
    assert (await admin.get("/secrets")).json() == {"names": ["api-token"]}
    bad_name = await admin.put("/secrets/Bad*Name", json={"value": SECRET_VALUE})
    assert bad_name.status_code == 400
    wrong_shape = await admin.put("/secrets/api-token", json={"value": 12, "x": SECRET_VALUE})
    assert wrong_shape.status_code == 400
    not_json = await admin.put("/secrets/api-token", content=b"{" + SECRET_VALUE.encode())
    assert not_json.status_code == 400
    assert (await admin.delete("/secrets/api-token")).status_code == 204
    assert (await admin.delete("/secrets/api-token")).status_code == 404
    assert seen and not [s for s in seen if SECRET_VALUE in s]
    assert SECRET_VALUE not in caplog.text


async def test_get_never_changes_anything(web: Web, tmp_path: Path) -> None:
    operator = web.client("operator")
    flow_id = await submit(operator, DIAMOND)
    await events_of(operator, flow_id)
    await web.client("admin").put("/secrets/kept", json={"value": "v"})

    async def state() -> list[object]:
        flows = (await operator.get("/flows")).json()
        log = await operator.get(f"/flows/{flow_id}/events", headers={"Accept": "application/json"})
        return [
            flows,
            (await operator.get(f"/flows/{flow_id}")).json(),
            log.json(),
            (await operator.get("/schedules")).json(),
            (await operator.get("/secrets")).json(),
        ]

    before = await state()
    for path in [p.replace("abc", flow_id) for p in READS] + ["/session", "/openapi.json"]:
        await operator.get(path)
    await events_of(operator, flow_id)
    await operator.get(f"/flows/{flow_id}/tasks/d/logs", params={"follow": "true"})
    for method, path, _ in WRITES:  # a write's path reached with GET is no write
        if method != "GET":
            response = await operator.get(path.replace("abc", flow_id))
            assert response.status_code in {200, 404, 405}, path
    assert await state() == before


async def test_invalid_names_are_400_before_any_nats_subject_is_formed(web: Web) -> None:
    seen: list[str] = []
    watcher = await nats.connect(web.settings.nats_url)

    async def record(msg: Msg) -> None:
        seen.append(msg.subject)

    await watcher.subscribe(">", cb=record)
    await watcher.flush()
    admin = web.client("admin")
    hostile = ["a.b", "x>", "star*", "UPPER", "-dash", "a" * 64, "a%2Eb", "%3E"]
    bad_secret_names = {"x>", "star*", "UPPER", "-dash", "%3E"}  # a.b is a secret's name
    try:
        for bad in hostile:
            for method, path in [
                ("GET", f"/flows/{bad}"),
                ("GET", f"/flows/{bad}/events"),
                ("GET", f"/flows/ok/tasks/{bad}/logs"),
                ("GET", f"/flows/{bad}/artifacts"),
                ("POST", f"/flows/{bad}/cancel"),
                ("POST", f"/flows/{bad}/rerun"),
                ("POST", f"/flows/{bad}/retry"),
                ("PATCH", f"/flows/{bad}"),
                ("POST", f"/schedules/{bad}/pause"),
                ("DELETE", f"/schedules/{bad}"),
            ] + ([("PUT", f"/secrets/{bad}")] if bad in bad_secret_names else []):
                response = await admin.request(
                    method, path, json={"value": "v"} if method == "PUT" else None
                )
                assert response.status_code == 400, (method, path, response.text)
        for bad in ["..", ".hidden", "a b", "a%2Fb"]:
            response = await admin.get(f"/flows/ok/artifacts/{bad}")
            assert response.status_code in {400, 404}, bad
            assert response.json()["error"]["code"] in {"bad_request", "not_found"}
        await watcher.flush()
        await quiet_for(0.2, "a subject formed from the bad input above")
    finally:
        await watcher.close()
    formed = [s for s in seen if not s.startswith(("_INBOX.", "$JS.", "weir.health."))]
    assert [s for s in formed if any(b.replace("%2E", ".") in s for b in hostile)] == []
    assert not [s for s in seen if "star*" in s or "x>" in s]


def test_non_loopback_listen_without_tokens_is_refused_at_start(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not a loopback address"):
        WebSettings.from_env({"WEIR_WEB_LISTEN": "0.0.0.0:8080"})
    proc = subprocess.run(
        [sys.executable, "-m", "weir_web"],
        env={**os.environ, "WEIR_WEB_LISTEN": "0.0.0.0:8080", "WEIR_WEB_TOKENS": ""},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "WEIR_WEB_TOKENS is not set" in proc.stderr and "Traceback" not in proc.stderr
    tokens = write_tokens(tmp_path / "tokens")
    key = write_session_key(tmp_path / "key")
    assert WebSettings.from_env(
        {
            "WEIR_WEB_LISTEN": "0.0.0.0:8080",
            "WEIR_WEB_TOKENS": str(tokens),
            "WEIR_WEB_SESSION_KEY_FILE": str(key),
        }
    ).tokens
    short = tmp_path / "short"
    short.write_text("abc viewer\nlong-enough-token-123 king\n")
    with pytest.raises(ConfigError) as refused:
        WebSettings.from_env({"WEIR_WEB_TOKENS": str(short)})
    assert ":1: the token is shorter" in str(refused.value) and ":2: role 'king'" in str(
        refused.value
    )
