"""What the pages show live, pushed by weir-web, in Chromium against the real stack: the flow
list follows new flows and status changes without polling (and not at all while the tab is
hidden), and a logged-in flow page's event stream resumes across a restart of weir-web, its
session intact."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.async_api import Browser, Page, Request, expect

from tests.browser.conftest import PageProblems, watched
from tests.browser.stack import Stack, logged_in, start_web
from tests.browser.test_ui import LIVE, gated_flow
from tests.flows import task
from tests.web.conftest import Web
from tests.web.test_api import events_of

pytestmark = pytest.mark.asyncio(loop_scope="session")

HIDE = """() => {
  Object.defineProperty(document, "hidden", { configurable: true, get: () => true });
  document.dispatchEvent(new Event("visibilitychange"));
}"""
SHOW = """() => {
  Object.defineProperty(document, "hidden", { configurable: true, get: () => false });
  document.dispatchEvent(new Event("visibilitychange"));
}"""
RECORD_EVENT_FRAMES = """
window.eventFrames = [];
const add = EventSource.prototype.addEventListener;
EventSource.prototype.addEventListener = function (type, listener, options) {
  const recording = function (message) {
    if (this.url.endsWith("/events")) window.eventFrames.push(Number(message.lastEventId));
    return listener.call(this, message);
  };
  return add.call(this, type, recording, options);
};
"""
"""Every event frame a flow page's EventSource hands to the page, by its `id:` (the seq),
as the page receives them: before the page's own de-duplication could hide a repeat."""


async def test_a_flow_submitted_while_the_list_is_open_appears_and_turns_green_live(
    browser: Browser, stack: Stack, problems: PageProblems, tmp_path: Path
) -> None:
    context, page = await watched(browser, stack, "viewer", problems)
    table = page.locator("table.flows")
    await expect(table).to_have_attribute("data-live", "live", timeout=LIVE)
    await page.evaluate("window.stillHere = true")
    gate = tmp_path / "listed.open"
    flow_id = await stack.submit(gated_flow(gate, "listed"))
    row = page.locator(f'tr[data-flow="{flow_id}"]')
    await expect(row).to_have_attribute("data-status", "running", timeout=LIVE)
    gate.touch()
    await expect(row).to_have_attribute("data-status", "succeeded", timeout=LIVE)
    await expect(row.locator(".badge")).to_have_class("badge s-succeeded")
    assert await page.evaluate("window.stillHere") is True, "the page was reloaded"

    # Hidden: the stream closes and nothing is fetched, however much changes.
    fetched: list[str] = []

    def on_request(request: Request) -> None:
        if "/api/v1/flows" in request.url:
            fetched.append(request.url)

    await page.evaluate(HIDE)
    await expect(table).to_have_attribute("data-live", "paused")
    page.on("request", on_request)
    unseen = await stack.submit({"name": "unseen", "tasks": [task("a", "true")]})
    assert (await events_of(stack.api("viewer"), unseen))[-1].event == "flow_succeeded"
    assert fetched == [], fetched
    assert await page.locator(f'tr[data-flow="{unseen}"]').count() == 0
    # Visible again: the stream reopens and one fetch shows what happened meanwhile.
    await page.evaluate(SHOW)
    unseen_row = page.locator(f'tr[data-flow="{unseen}"]')
    await expect(unseen_row).to_have_attribute("data-status", "succeeded", timeout=LIVE)
    await expect(table).to_have_attribute("data-live", "live")
    assert any(url.endswith("/api/v1/flows") for url in fetched), fetched  # the stream
    await problems.check_and_close(context)


async def second_web(stack: Stack) -> Web:
    """A second weir-web over the same services, with the same tokens and session key (as a
    deployment's replicas have): a session it opened survives its restart."""
    return await start_web(stack.services.settings, stack.secret_key)


async def seqs_seen(page: Page) -> list[int]:
    seen: list[int] = await page.evaluate("window.eventFrames")
    return seen


async def test_a_flow_pages_event_stream_resumes_after_a_restart_with_no_gap_or_duplicate(
    browser: Browser, stack: Stack, problems: PageProblems, tmp_path: Path
) -> None:
    web = await second_web(stack)
    context, page = await logged_in(browser, stack, "viewer", url=web.url)
    try:
        problems.watch(page)
        await page.add_init_script(RECORD_EVENT_FRAMES)
        streams: list[Request] = []
        logins: list[Request] = []
        page.on("request", lambda r: streams.append(r) if r.url.endswith("/events") else None)
        page.on("request", lambda r: logins.append(r) if urlsplit(r.url).path == "/login" else None)
        gate = tmp_path / "restart.open"
        flow_id = await stack.submit(gated_flow(gate, "restarted", after=5))
        await page.goto(f"{web.url}/flows/{flow_id}")
        await expect(page.locator("h1 .badge")).to_have_text("running", timeout=LIVE)
        # The badge comes from the flow's view; wait for the stream to have delivered too.
        await page.wait_for_function("() => window.eventFrames.length > 0", timeout=LIVE)

        await web.stop()
        before = await seqs_seen(page)  # final for the first stream: the page resumes after it
        gate.touch()  # the rest of the flow happens while weir-web is down
        log = await events_of(stack.api("viewer"), flow_id)
        assert log[-1].event == "flow_succeeded"
        await web.start()

        await expect(page.locator("h1 .badge")).to_have_text("succeeded", timeout=LIVE)
        # The same session goes on: no trip to the login page, and the restarted weir-web
        # accepted the cookie of the one before (the resumed stream answered 200).
        assert page.url == f"{web.url}/flows/{flow_id}" and logins == [], page.url
        resumed_response = await streams[-1].response()
        assert resumed_response is not None and resumed_response.status == 200
        await expect(page.locator("#logout")).to_be_visible()
        seen = await seqs_seen(page)
        assert seen == [int(e.id or 0) for e in log], (before, seen)  # each once, in order
        assert len(seen) > len(before) and len(streams) >= 2
        resumed = await streams[-1].all_headers()
        assert resumed.get("last-event-id") == str(before[-1]), resumed
        assert not problems.errors and not problems.dialogs, (problems.errors, problems.dialogs)
    finally:
        await context.close()
        await web.stop()
