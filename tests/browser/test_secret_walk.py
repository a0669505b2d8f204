"""A secret's value is in no response of the API and on no page: after a flow used the secret,
every GET route of the served OpenAPI document (with real ids in its path, as JSON and, where
it streams, as Server-Sent Events) and every page of the UI (its HTML and every response its
scripts fetched) is searched for the value, in its bodies and its headers."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import secrets

import httpx
import pytest
from playwright.async_api import Browser, Request, expect
from playwright.async_api import Error as PlaywrightError

from tests.browser.stack import Stack, logged_in
from tests.browser.test_ui import LIVE
from tests.browser.test_viewer import operations
from tests.flows import shell, task
from tests.web.test_api import events_of

pytestmark = pytest.mark.asyncio(loop_scope="session")

STREAM_SECONDS = 30.0
"""The longest a stream of an ended flow may take to end by itself."""


def forms_of(value: str) -> list[str]:
    """The value as it would show if leaked as text, base64 or hex."""
    raw = value.encode()
    return [
        value,
        base64.b64encode(raw).decode(),
        base64.urlsafe_b64encode(raw).decode().rstrip("="),
        raw.hex(),
    ]


def leaks(value: str, where: str, text: str) -> list[str]:
    return [f"{where} holds {form!r}" for form in forms_of(value) if form in text]


async def fetched(api: httpx.AsyncClient, path: str, accept: str) -> tuple[int, str]:
    """Status and everything of one answer, headers and body, as text."""
    async with api.stream("GET", path, headers={"Accept": accept}, timeout=STREAM_SECONDS) as r:
        body = b"".join([chunk async for chunk in r.aiter_bytes()])
    head = "\n".join(f"{k}: {v}" for k, v in r.headers.items())
    return r.status_code, head + "\n\n" + body.decode(errors="replace")


async def test_a_secret_value_is_in_no_api_response_and_on_no_page(
    browser: Browser, stack: Stack
) -> None:
    value = "leak-" + secrets.token_hex(12)
    admin = stack.api("admin")
    stored = await admin.put("/secrets/walk-token", json={"value": value})
    assert stored.status_code == 204, stored.text
    # The task proves it had the value without the spec holding it: by its digest.
    digest = hashlib.sha256(value.encode()).hexdigest()
    check = (
        f'[ "$(printf %s "$TOKEN" | sha256sum | cut -c1-64)" = {digest} ] '
        '&& echo "token ok" && echo report > report.txt'
    )
    flow_id = await stack.submit(
        {
            "name": "walks-secret",
            "tags": ["secret-walk"],
            "tasks": [
                shell(
                    "use",
                    check,
                    env=[{"name": "TOKEN", "fromSecret": "walk-token"}],
                    outputs=[{"name": "report", "path": "report.txt"}],
                )
            ],
        }
    )
    assert (await events_of(admin, flow_id))[-1].event == "flow_succeeded"
    schedule = {
        "name": "walk-secret",
        "cron": "0 1 * * *",
        "flow": {
            "name": "uses-secret",
            "tasks": [task("t", "true", env=[{"name": "T", "fromSecret": "walk-token"}])],
        },
    }
    assert (await admin.post("/schedules", json=schedule)).status_code == 201
    found: list[str] = []

    # The API: every GET route, as the most privileged caller, JSON and streamed.
    document = (await admin.get("/openapi.json")).json()
    fill = {"flow_id": flow_id, "task": "use", "name": "report"}
    paths = [path for _, path in operations(document, ("get",), fill)]
    assert len(paths) >= 10, paths
    asked = 0
    for path in paths:
        accepts = ["application/json", "*/*"]
        if "{" not in path and path.startswith(f"/flows/{flow_id}/") and "artifacts" not in path:
            accepts.append("text/event-stream")  # the event log and the log follow, ended
        for accept in accepts:
            status, text = await fetched(admin, path, accept)
            # A bearer caller has no session (the pages' answers below have one).
            expected = 401 if path == "/session" else 200
            assert status == expected, (path, accept, status, text[:500])
            found += leaks(value, f"GET {path} ({accept})", text)
            asked += 1
    for path in (
        f"/flows/{flow_id}/tasks/use/logs?attempt=1",
        f"/flows/{flow_id}/tasks/use/logs?follow=true",
        "/flows?where=tag=secret-walk",
        "/tasks?where=name=use",
    ):
        status, text = await fetched(admin, path, "*/*")
        assert status == 200, (path, status, text[:500])
        found += leaks(value, f"GET {path}", text)
        asked += 1
    secret_names = (await admin.get("/secrets")).json()
    assert "walk-token" in str(secret_names)
    # The search would see the value where it is: the task's own proof that it had it.
    log = (await admin.get(f"/flows/{flow_id}/tasks/use/logs")).text
    assert "token ok" in log and leaks("token ok", "the log", log)

    # Every page, with every response its scripts fetched (each read as soon as it has
    # arrived, before a navigation can drop it).
    reads: list[asyncio.Task[None]] = []
    bodies: list[str] = []
    unreadable: list[str] = []

    async def search_answer(request: Request) -> None:
        answer = await request.response()
        if answer is None:
            return
        head = "\n".join(f"{k}: {v}" for k, v in (await answer.all_headers()).items())
        found.extend(leaks(value, f"headers of {answer.url}", head))
        try:
            body = await answer.text()
        except PlaywrightError:  # the page went elsewhere before Chromium kept the body
            unreadable.append(answer.url)
            return
        found.extend(leaks(value, f"body of {answer.url}", body))
        bodies.append(answer.url)

    def on_finished(request: Request) -> None:
        reads.append(asyncio.ensure_future(search_answer(request)))

    context, page = await logged_in(browser, stack, "admin")
    page.on("requestfinished", on_finished)
    pages = [
        ("/flows", "tr[data-flow]"),
        ("/flows?tag=secret-walk", f'tr[data-flow="{flow_id}"]'),
        (f"/flows/{flow_id}", "ol.events li"),
        (f"/flows/{flow_id}/tasks/use", "table.artifacts"),
        (f"/flows/{flow_id}/tasks/use?attempt=1", "pre.log"),
        ("/schedules", 'tr[data-schedule="walk-secret"]'),
    ]
    for url, ready in pages:
        await page.goto(f"{stack.url}{url}")
        await expect(page.locator(ready).first).to_be_visible(timeout=LIVE)
        if "tasks" in url:
            await expect(page.locator("pre.log")).to_contain_text("token ok", timeout=LIVE)
        found += leaks(value, f"page {url}", await page.content())
        await asyncio.gather(*reads)
    await context.close()
    login = await browser.new_context()
    login_page = await login.new_page()
    login_page.on("requestfinished", on_finished)
    await login_page.goto(f"{stack.url}/login")
    await expect(login_page.locator("#token")).to_be_visible()
    found += leaks(value, "page /login", await login_page.content())
    await asyncio.gather(*reads)
    await login.close()
    assert asked >= 2 * len(paths)
    api_bodies = [url for url in bodies if "/api/v1/" in url]
    # What the pages read was searched: the flow, its events, the task's log, the schedules.
    for part in (f"/flows/{flow_id}", "/logs", "/schedules"):
        assert any(part in url for url in api_bodies), (part, api_bodies)
    assert len(api_bodies) >= len(pages) and len(unreadable) < len(api_bodies), (
        bodies,
        unreadable,
    )
    assert not found, found
    assert (await admin.delete("/schedules/walk-secret")).status_code == 204
