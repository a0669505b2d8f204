"""What the pages show live, pushed by weir-web, in Chromium against the real stack: the flow
list follows new flows and status changes without polling (and not at all while the tab is
hidden)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, Request, expect

from tests.browser.conftest import PageProblems
from tests.browser.stack import Stack, logged_in
from tests.browser.test_ui import LIVE, gate_script
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


def gated_flow(gate: Path, name: str, after: int = 0) -> dict[str, Any]:
    """A flow whose first task waits for `gate`; `after` more tasks follow it in a chain."""
    tasks: list[dict[str, Any]] = [{"name": "wait", "cmd": ["sh", "-c", gate_script(gate)]}]
    previous = "wait"
    for n in range(after):
        tasks.append({"name": f"then-{n}", "cmd": ["true"], "depends": [previous]})
        previous = f"then-{n}"
    return {"name": name, "tasks": tasks}


async def test_a_flow_submitted_while_the_list_is_open_appears_and_turns_green_live(
    browser: Browser, stack: Stack, problems: PageProblems, tmp_path: Path
) -> None:
    context, page = await logged_in(browser, stack, "viewer")
    problems.watch(page)
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
    unseen = await stack.submit({"name": "unseen", "tasks": [{"name": "a", "cmd": ["true"]}]})
    assert (await events_of(stack.api("viewer"), unseen))[-1].event == "flow_succeeded"
    assert fetched == [], fetched
    assert await page.locator(f'tr[data-flow="{unseen}"]').count() == 0
    # Visible again: the stream reopens and one fetch shows what happened meanwhile.
    await page.evaluate(SHOW)
    unseen_row = page.locator(f'tr[data-flow="{unseen}"]')
    await expect(unseen_row).to_have_attribute("data-status", "succeeded", timeout=LIVE)
    await expect(table).to_have_attribute("data-live", "live")
    assert any(url.endswith("/api/v1/flows") for url in fetched), fetched  # the stream
    assert not problems.errors and not problems.dialogs, (problems.errors, problems.dialogs)
    await context.close()
