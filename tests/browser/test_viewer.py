"""A viewer logged in through the login page (a session cookie, no bearer header), in Chromium
against the real stack: no page offers it a write, and every write route of the served
OpenAPI document refuses its session with 403, even with the session's CSRF token."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, Page, expect

from tests.browser.conftest import PageProblems, watched
from tests.browser.stack import Stack, logged_in
from tests.browser.test_ui import LIVE, gated_flow
from tests.flows import shell, task

pytestmark = pytest.mark.asyncio(loop_scope="session")

WRITE_METHODS = ("post", "put", "patch", "delete")

WRITES_FROM_THE_PAGE = """async (requests) => {
  const session = await (await fetch("/api/v1/session", { credentials: "same-origin" })).json();
  const answers = [];
  for (const [method, path, body] of requests) {
    const response = await fetch("/api/v1" + path, {
      method,
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": session.csrf },
      body: JSON.stringify(body),
    });
    answers.push([method, path, response.status, await response.text()]);
  }
  return { role: session.role, csrf: session.csrf, answers };
}"""
"""Each write made by the page's own script: the session cookie, its CSRF token."""


async def visible_buttons(page: Page) -> list[str]:
    texts: list[str] = []
    for button in await page.locator("main button, main [data-action]").all():
        if await button.is_visible():
            texts.append((await button.text_content() or "").strip())
    return texts


async def buttons_of_every_page(page: Page, stack: Stack, ids: dict[str, str]) -> dict[str, Any]:
    """The visible buttons of the flow list, a running flow, a failed flow, a failed task and
    the schedules page."""
    seen: dict[str, Any] = {}
    await page.goto(f"{stack.url}/flows?tag=viewer-walk")
    await expect(page.locator("tr[data-flow]")).to_have_count(2, timeout=LIVE)
    seen["list"] = await visible_buttons(page)
    seen["list checkboxes"] = await page.locator("main input[type=checkbox]:visible").count()
    await page.goto(f"{stack.url}/flows/{ids['running']}")
    await expect(page.locator("h1 .badge")).to_have_text("running", timeout=LIVE)
    seen["running flow"] = await visible_buttons(page)
    await page.goto(f"{stack.url}/flows/{ids['failed']}")
    await expect(page.locator("h1 .badge")).to_have_text("failed", timeout=LIVE)
    seen["failed flow"] = await visible_buttons(page)
    await page.goto(f"{stack.url}/flows/{ids['failed']}/tasks/broken")
    await expect(page.locator("pre.log")).to_contain_text("broken on purpose", timeout=LIVE)
    seen["failed task"] = await visible_buttons(page)
    await page.goto(f"{stack.url}/schedules")
    await expect(page.locator('tr[data-schedule="viewer-walk"]')).to_be_visible(timeout=LIVE)
    seen["schedules"] = await visible_buttons(page)
    return seen


def operations(
    document: dict[str, Any], methods: tuple[str, ...], fill: dict[str, str]
) -> list[tuple[str, str]]:
    """(METHOD, path) of each operation of the OpenAPI document with one of `methods`, with
    `fill`'s real values in its path (each value of a list: a path for each)."""
    found: list[tuple[str, str]] = []
    for path, by_method in document["paths"].items():
        for method in by_method:
            if method not in methods:
                continue
            concrete = [path]
            for key, value in fill.items():
                values = value.split("|")
                concrete = [c.replace("{" + key + "}", v) for c in concrete for v in values]
            for filled in dict.fromkeys(concrete):
                assert "{" not in filled, f"no real value for a parameter of {path}"
                found.append((method.upper(), filled))
    return found


def write_requests(document: dict[str, Any], ids: dict[str, str]) -> list[list[Any]]:
    """Every write operation of the OpenAPI document, with real ids in its path (both verbs of
    a `{verb}`), except the session's own (logging in and out are not writes of weir's)."""
    fill = {
        "flow_id": ids["failed"],
        "task": "broken",
        "name": "viewer-walk",
        "verb": "pause|resume",
    }
    return [
        [method, path, {}]
        for method, path in operations(document, WRITE_METHODS, fill)
        if path != "/session"
    ]


async def test_a_viewer_session_shows_no_write_and_every_write_route_refuses_it(
    browser: Browser, stack: Stack, problems: PageProblems, tmp_path: Path
) -> None:
    gate = tmp_path / "viewer.open"
    running = await stack.submit(gated_flow(gate, "viewer-running", tags=["viewer-walk"]))
    failed = await stack.submit(
        {
            "name": "viewer-failed",
            "tags": ["viewer-walk"],
            "tasks": [shell("broken", "echo broken on purpose; exit 3")],
        }
    )
    operator_api = stack.api("operator")
    made = await operator_api.post(
        "/schedules",
        json={
            "name": "viewer-walk",
            "cron": "0 3 * * *",
            "flow": {"name": "nightly", "tasks": [task("t", "true")]},
        },
    )
    assert made.status_code in (200, 201), made.text
    ids = {"running": running, "failed": failed}

    # The same pages offer an operator its writes: what the viewer must not see is there.
    context, page = await logged_in(browser, stack, "operator")
    shown = await buttons_of_every_page(page, stack, ids)
    assert {"Cancel selected", "Rerun selected"} <= set(shown["list"]), shown
    assert shown["list checkboxes"] > 0
    assert "Cancel" in shown["running flow"], shown
    assert {"Rerun", "Rerun failed"} <= set(shown["failed flow"]), shown
    assert any("Retry" in b for b in shown["failed task"]), shown
    assert {"Pause", "Delete"} <= set(shown["schedules"]), shown
    await context.close()

    context, page = await watched(browser, stack, "viewer", problems)
    # A session cookie, HttpOnly, and no bearer header on any request the pages make.
    cookies = await context.cookies()
    assert any(c["httpOnly"] and c["sameSite"] == "Strict" for c in cookies), cookies
    authorized: list[str] = []
    page.on(
        "request",
        lambda r: authorized.append(r.url) if "authorization" in r.headers else None,
    )
    shown = await buttons_of_every_page(page, stack, ids)
    assert shown == {
        "list": ["Filter"],
        "list checkboxes": 0,
        "running flow": ["Download JSON"],
        "failed flow": ["Download JSON"],
        "failed task": ["Copy"],
        "schedules": [],
    }, shown
    assert await page.locator("[data-action]").count() == 0

    document = (await stack.api("viewer").get("/openapi.json")).json()
    requests = write_requests(document, ids)
    assert len(requests) >= 12, requests  # submit, cancel, rerun, retry, schedules, secrets…
    outcome = await page.evaluate(WRITES_FROM_THE_PAGE, requests)
    assert outcome["role"] == "viewer" and outcome["csrf"]
    for method, path, status, body in outcome["answers"]:
        assert status == 403, (method, path, status, body)
        # Refused for the role, not for a missing CSRF token or another site's origin.
        assert "the caller is a viewer" in body, (method, path, body)
    assert not authorized, authorized

    # Nothing was done: the running flow still runs, the failed one was not rerun, the
    # schedule is neither paused nor gone, no flow was submitted.
    assert (await operator_api.get(f"/flows/{running}")).json()["status"] == "running"
    listed = (await operator_api.get("/flows", params={"where": "tag=viewer-walk"})).json()
    assert {f["id"] for f in listed["flows"]} == {running, failed}
    schedules = (await operator_api.get("/schedules")).json()["schedules"]
    assert [s["paused"] for s in schedules if s["name"] == "viewer-walk"] == [False]

    # The same session and token do write where a viewer may: logging itself out.
    closed = await page.evaluate(
        """async () => {
          const session = await (await fetch("/api/v1/session")).json();
          const r = await fetch("/api/v1/session", { method: "DELETE",
            headers: { "X-CSRF-Token": session.csrf } });
          return r.status;
        }"""
    )
    assert closed == 204
    gate.touch()
    assert (await operator_api.delete("/schedules/viewer-walk")).status_code in (200, 204)
    assert not problems.errors, problems.errors
    await context.close()
