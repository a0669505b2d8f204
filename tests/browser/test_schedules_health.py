"""The schedules page's actions and the health banner, in Chromium against the real stack:
pause, resume and delete (after confirming) from the buttons with the next run shown as the
API has it; and the banner that names a stopped scheduler or runner without a reload, and
goes once it is back."""

from __future__ import annotations

import asyncio
from datetime import datetime

import pytest
from playwright.async_api import Browser, Page, expect
from weir_runner.worker import Runner
from weir_scheduler.service import Scheduler

from tests.browser.conftest import PageProblems, watched
from tests.browser.stack import Stack
from tests.browser.test_ui import LIVE
from tests.conftest import _start

pytestmark = pytest.mark.asyncio(loop_scope="session")

HEALTH_POLL_MS = 5_000
"""How often a page asks /api/v1/health (app.js)."""
BANNER = LIVE + HEALTH_POLL_MS


def utc_text(iso: str) -> str:
    """An API time as the pages show it in UTC."""
    return datetime.fromisoformat(iso).strftime("%Y-%m-%d %H:%M:%SZ")


async def schedule_view(stack: Stack, name: str) -> dict[str, object] | None:
    listed = (await stack.api("viewer").get("/schedules")).json()["schedules"]
    return next((s for s in listed if s["name"] == name), None)


async def test_pause_resume_and_delete_a_schedule_from_its_page(
    browser: Browser, stack: Stack, problems: PageProblems
) -> None:
    operator = stack.api("operator")
    for name, cron, zone in (
        ("sched-pause", "0 4 * * *", "Europe/Paris"),
        ("sched-keep", "*/5 * * * *", "UTC"),
    ):
        request = {
            "name": name,
            "cron": cron,
            "timezone": zone,
            "flow": {"name": "tick", "tasks": [{"name": "a", "cmd": ["true"]}]},
        }
        assert (await operator.post("/schedules", json=request)).status_code == 201
    context, page = await watched(browser, stack, "operator", problems)
    await page.goto(f"{stack.url}/schedules")
    await page.click("#tz-toggle")
    await expect(page.locator("#tz-toggle")).to_have_text("UTC")
    row = page.locator('tr[data-schedule="sched-pause"]')
    cells = row.locator("td")
    view = await schedule_view(stack, "sched-pause")
    assert view is not None
    # The next run as the scheduler computed it: 04:00 in Paris.
    await expect(cells.nth(5)).to_have_text(utc_text(str(view["next_run_at"])))
    assert datetime.fromisoformat(str(view["next_run_at"])).hour in (2, 3)  # CEST / CET in UTC
    await expect(cells.nth(2)).to_have_text("0 4 * * *")
    await expect(cells.nth(3)).to_have_text("Europe/Paris")

    await row.get_by_role("button", name="Pause").click()
    await expect(cells.nth(7)).to_have_text("paused", timeout=LIVE)
    await expect(cells.nth(5)).to_have_text("paused")
    assert (await schedule_view(stack, "sched-pause") or {})["paused"] is True
    await expect(page.locator("#notice")).to_contain_text("sched-pause: paused")

    await row.get_by_role("button", name="Resume").click()
    await expect(cells.nth(7)).to_have_text("active", timeout=LIVE)
    view = await schedule_view(stack, "sched-pause")
    assert view is not None and view["paused"] is False
    await expect(cells.nth(5)).to_have_text(utc_text(str(view["next_run_at"])))

    # Delete asks first; keeping it changes nothing.
    await row.get_by_role("button", name="Delete").click()
    dialog = page.locator("dialog.confirm")
    await expect(dialog).to_contain_text("Delete the schedule sched-pause?")
    await dialog.get_by_role("button", name="Keep").click()
    await expect(dialog).to_be_hidden()
    assert await schedule_view(stack, "sched-pause") is not None
    await row.get_by_role("button", name="Delete").click()
    await page.click("dialog.confirm [data-confirm]")
    await expect(row).to_have_count(0, timeout=LIVE)
    assert await schedule_view(stack, "sched-pause") is None
    # The other schedule is untouched, and still shows its next run.
    kept = await schedule_view(stack, "sched-keep")
    assert kept is not None and kept["paused"] is False
    other = page.locator('tr[data-schedule="sched-keep"] td')
    await expect(other.nth(5)).to_have_text(utc_text(str(kept["next_run_at"])))
    assert (await operator.delete("/schedules/sched-keep")).status_code == 204
    await problems.check_and_close(context)


async def banner_shows(page: Page, words: str) -> None:
    banner = page.locator("#health")
    await expect(banner).to_be_visible(timeout=BANNER)
    await expect(banner).to_contain_text(words, timeout=BANNER)


async def test_the_health_banner_names_a_stopped_service_live_and_clears_when_it_is_back(
    browser: Browser, stack: Stack, problems: PageProblems
) -> None:
    context, page = await watched(browser, stack, "viewer", problems)
    await expect(page.locator("table.flows")).to_have_attribute("data-live", "live", timeout=LIVE)
    banner = page.locator("#health")
    assert await banner.is_hidden()
    await page.evaluate("window.stillHere = true")
    services = stack.services

    # The scheduler stops: the banner says weir is degraded and names it.
    services.scheduler.stop.set()
    await asyncio.wait_for(services.scheduler_task, 30)
    try:
        await banner_shows(page, "scheduler: unreachable")
        await expect(banner).to_contain_text("weir is degraded")
    finally:
        services.scheduler = Scheduler(services.settings)
        services.scheduler_task = await _start("scheduler", services.scheduler)
    await expect(banner).to_be_hidden(timeout=BANNER)

    # The runner stops: nothing would run, and the banner names it too.
    services.runner.stop.set()
    await asyncio.wait_for(services.runner_task, 30)
    try:
        await banner_shows(page, "runner: unreachable")
        assert "scheduler" not in (await banner.text_content() or "")
    finally:
        services.runner = Runner(services.settings)
        services.runner_task = await _start("runner", services.runner)
    await expect(banner).to_be_hidden(timeout=BANNER)
    assert await page.evaluate("window.stillHere") is True, "the page was reloaded"
    assert not problems.errors, problems.errors
    await context.close()
