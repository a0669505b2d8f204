"""The flow list in Chromium against the real stack: its filters live in the URL (a reload,
back and forward keep them), its cursor pages, a name with a space found through the Where
box, and bulk rerun / rerun-failed of a selection."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from playwright.async_api import Browser, Page, expect

from tests.browser.conftest import PageProblems, watched
from tests.browser.stack import Stack
from tests.browser.test_ui import LIVE
from tests.flows import scheduled, shell, task
from tests.waiting import until
from tests.web.test_api import events_of

pytestmark = pytest.mark.asyncio(loop_scope="session")

PAGE = 50
"""Flows on one page of the list (flows.js)."""
AT_ONCE = 10
"""Requests in flight at once where a test makes many independent ones."""


def unique(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(3)}"


async def shown(page: Page) -> list[str]:
    """The ids of the listed flows, top to bottom, once the list has settled (read in one
    look at the page, not one round trip per row)."""
    ids: list[str | None] = await page.locator("tr[data-flow]").evaluate_all(
        "rows => rows.map(row => row.getAttribute('data-flow'))"
    )
    return [flow_id or "" for flow_id in ids]


async def at_once(calls: list[Awaitable[Any]]) -> None:
    """Await `calls`, `AT_ONCE` at a time."""
    for start in range(0, len(calls), AT_ONCE):
        await asyncio.gather(*calls[start : start + AT_ONCE])


async def expect_rows(page: Page, ids: list[str]) -> None:
    """The list shows exactly `ids` (in any order)."""
    rows = page.locator("tr[data-flow]")
    await expect(rows).to_have_count(len(ids), timeout=LIVE)
    for flow_id in ids:
        await expect(page.locator(f'tr[data-flow="{flow_id}"]')).to_have_count(1)
    if not ids:
        await expect(page.locator("table.flows tbody")).to_contain_text("No flows match.")


def query_of(page: Page) -> dict[str, list[str]]:
    return parse_qs(urlsplit(page.url).query)


async def ended(stack: Stack, flow_id: str) -> str:
    return (await events_of(stack.api("viewer"), flow_id))[-1].event


async def test_filters_live_in_the_url_and_survive_reload_back_and_forward(
    browser: Browser, stack: Stack, problems: PageProblems
) -> None:
    tag = unique("urlf")
    api = stack.api("operator")
    early = await stack.submit({"name": "early", "tags": [tag], "tasks": [task("t", "false")]})
    created = datetime.fromisoformat((await api.get(f"/flows/{early}")).json()["created_at"])
    boundary = created.replace(microsecond=0) + timedelta(seconds=1)
    if boundary.second == 0:  # seconds a minute-wide input would lose
        boundary += timedelta(seconds=1)
    await until(
        lambda: datetime.now(UTC) > boundary + timedelta(milliseconds=50), "the boundary passed"
    )
    ok = await stack.submit(
        {"name": "nightly etl", "tags": [tag, "prod"], "tasks": [task("t", "true")]}
    )
    bad = await stack.submit({"name": "nightly etl", "tags": [tag], "tasks": [task("t", "false")]})
    other = await stack.submit(
        {"name": "hourly", "tags": [tag, "prod"], "tasks": [task("t", "false")]}
    )
    assert [await ended(stack, f) for f in (early, ok, bad, other)] == [
        "flow_failed",
        "flow_succeeded",
        "flow_failed",
        "flow_failed",
    ]
    context, page = await watched(browser, stack, "viewer", problems)
    await page.goto(f"{stack.url}/flows?tag={tag}")
    await expect_rows(page, [other, bad, ok, early])
    assert await shown(page) == [other, bad, ok, early]  # newest first

    # Status and name (with a space) from the form: into the URL, and the list follows.
    await page.select_option("form.filters select[name=status]", "failed")
    await page.fill("form.filters input[name=name]", "nightly etl")
    await page.click("form.filters button[type=submit]")
    await page.wait_for_url(lambda url: "name=" in url)
    assert query_of(page) == {"status": ["failed"], "name": ["nightly etl"], "tag": [tag]}
    await expect_rows(page, [bad])
    await page.reload()
    await expect_rows(page, [bad])
    await expect(page.locator("form.filters select[name=status]")).to_have_value("failed")
    await expect(page.locator("form.filters input[name=name]")).to_have_value("nightly etl")
    await expect(page.locator("form.filters input[name=tag]")).to_have_value(tag)

    # Tags (all of them) and a quoted name in the Where box.
    await page.goto(f"{stack.url}/flows?tag={tag}+prod")
    await expect_rows(page, [other, ok])
    await page.goto(f"{stack.url}/flows?tag={tag}")
    await expect_rows(page, [other, bad, ok, early])
    await page.fill("form.filters input[name=where]", "name=\"nightly etl\" or name='hourly'")
    await page.click("form.filters button[type=submit]")
    await page.wait_for_url(lambda url: "where=" in url)
    await expect_rows(page, [other, bad, ok])
    await page.fill("form.filters input[name=where]", 'name="nightly etl" and not status=failed')
    await page.click("form.filters button[type=submit]")
    await expect_rows(page, [ok])
    # An expression the language refuses says where in the Where box, and the rows of the
    # filter before it go.
    await page.fill("form.filters input[name=where]", "name=nightly etl")
    await page.click("form.filters button[type=submit]")
    notice = page.locator("#notice")
    await expect(notice).to_contain_text("where: column 14: unexpected 'etl'", timeout=LIVE)
    await expect(page.locator("tr[data-flow]")).to_have_count(0)
    await expect(page.locator("table.flows tbody")).to_contain_text("The filter was refused")

    # A time range, from a shared link, to the second; changing another filter keeps it.
    at = boundary.strftime("%Y-%m-%dT%H:%M:%SZ")
    await page.goto(f"{stack.url}/flows?tag={tag}&after={at}")
    await expect_rows(page, [other, bad, ok])
    await page.select_option("form.filters select[name=status]", "failed")
    await page.click("form.filters button[type=submit]")
    await page.wait_for_url(lambda url: "status=failed" in url)
    assert query_of(page)["after"] == [at], page.url
    await expect_rows(page, [other, bad])
    await page.goto(f"{stack.url}/flows?tag={tag}&before={at}")
    await expect_rows(page, [early])

    # Back and forward walk the filters, each with its list.
    await page.go_back()
    await expect_rows(page, [other, bad])
    await expect(page.locator("form.filters select[name=status]")).to_have_value("failed")
    await page.go_back()
    await expect_rows(page, [other, bad, ok])
    await expect(page.locator("form.filters select[name=status]")).to_have_value("")
    await page.go_forward()
    await expect_rows(page, [other, bad])
    await page.go_forward()
    await expect_rows(page, [early])
    assert query_of(page) == {"tag": [tag], "before": [at]}
    assert not problems.dialogs, problems.dialogs
    await context.close()


async def test_cursor_pages_are_disjoint_and_ordered_and_previous_returns_to_the_page_before(
    browser: Browser, stack: Stack, problems: PageProblems
) -> None:
    tag = unique("paged")
    spec = scheduled("paged", task("t", "true"), tags=[tag])
    await at_once([stack.submit(spec) for _ in range(2 * PAGE + 10)])
    listed = (
        await stack.api("viewer").get("/flows", params={"where": f"tag={tag}", "limit": 500})
    ).json()
    everything = [f["id"] for f in listed["flows"]]
    assert len(everything) == 2 * PAGE + 10
    context, page = await watched(browser, stack, "viewer", problems)
    await page.goto(f"{stack.url}/flows?tag={tag}")
    pages: list[list[str]] = []
    for size in (PAGE, PAGE, 10):
        await expect(page.locator("tr[data-flow]")).to_have_count(size, timeout=LIVE)
        pages.append(await shown(page))
        if size == PAGE:
            await page.click("nav.pager >> text=Next page")
            gone = page.locator(f'tr[data-flow="{pages[-1][0]}"]')
            await expect(gone).to_have_count(0, timeout=LIVE)
    assert await page.locator("nav.pager >> text=Next page").count() == 0
    assert pages[0] + pages[1] + pages[2] == everything  # disjoint, newest first, none missed
    assert query_of(page)["tag"] == [tag]
    # A reload keeps the page; back and forward walk the pages.
    await page.reload()
    await expect(page.locator("tr[data-flow]")).to_have_count(10, timeout=LIVE)
    assert await shown(page) == pages[2]
    await page.go_back()
    await expect(page.locator(f'tr[data-flow="{pages[1][0]}"]')).to_be_visible(timeout=LIVE)
    assert await shown(page) == pages[1]
    await page.go_back()
    await expect(page.locator(f'tr[data-flow="{pages[0][0]}"]')).to_be_visible(timeout=LIVE)
    assert await shown(page) == pages[0]
    await page.go_forward()
    await expect(page.locator(f'tr[data-flow="{pages[1][0]}"]')).to_be_visible(timeout=LIVE)
    assert await shown(page) == pages[1]
    await page.click("nav.pager >> text=First page")
    await expect(page.locator(f'tr[data-flow="{pages[0][0]}"]')).to_be_visible(timeout=LIVE)
    assert await shown(page) == pages[0] and "cursor" not in query_of(page)
    # Previous page steps back one page at a time, also after a reload.
    for n in (1, 2):
        await page.click("nav.pager >> text=Next page")
        await expect(page.locator(f'tr[data-flow="{pages[n][0]}"]')).to_be_visible(timeout=LIVE)
    await page.reload()
    for n in (1, 0):
        await page.click("nav.pager >> text=Previous page")
        await expect(page.locator(f'tr[data-flow="{pages[n][0]}"]')).to_be_visible(timeout=LIVE)
        assert await shown(page) == pages[n]
    assert await page.locator("nav.pager >> text=Previous page").count() == 0
    operator = stack.api("operator")
    await at_once([operator.post(f"/flows/{flow_id}/cancel") for flow_id in everything])
    await problems.check_and_close(context)


def fixable(tag: str, trail: Path, fixed: Path) -> dict[str, Any]:
    """`make` succeeds; `use` fails until `fixed` exists; both note each run in `trail`."""
    return {
        "name": "fixable",
        "tags": [tag],
        "tasks": [
            shell("make", f"echo make >> {trail}"),
            shell(
                "use",
                f"echo use >> {trail}; test -e {fixed}",
                depends=["make"],
                retry={"max_attempts": 1},
            ),
        ],
    }


async def test_bulk_rerun_and_rerun_failed_of_a_selection(
    browser: Browser, stack: Stack, problems: PageProblems, tmp_path: Path
) -> None:
    tag = unique("bulkrerun")
    fixed = tmp_path / "fixed"
    trails = [tmp_path / f"trail-{n}" for n in range(3)]
    first = [await stack.submit(fixable(tag, trail, fixed)) for trail in trails]
    assert [await ended(stack, f) for f in first] == ["flow_failed"] * 3
    api = stack.api("viewer")
    context, page = await watched(browser, stack, "operator", problems)
    await page.goto(f"{stack.url}/flows?tag={tag}")
    await expect_rows(page, first)
    fixed.touch()

    async def rerun_selected(ids: list[str], button: str) -> list[dict[str, Any]]:
        """Select `ids`, press `button`, confirm; the new flows, once they have ended."""
        for flow_id in ids:
            await page.check(f'tr[data-flow="{flow_id}"] input[type=checkbox]')
        await expect(page.locator(".bulk")).to_contain_text(f"{len(ids)} selected")
        await page.click(f".bulk >> text={button}")
        dialog = page.locator("dialog.confirm")
        await expect(dialog).to_contain_text(f"{len(ids)} flow(s)")
        await page.click("dialog.confirm [data-confirm]")
        await expect(page.locator("#notice")).to_contain_text(f"{len(ids)} done", timeout=LIVE)
        reruns: list[dict[str, Any]] = []

        async def all_there() -> bool:
            listed = (await api.get("/flows", params={"where": f"tag={tag}", "limit": 100})).json()
            new = [f["id"] for f in listed["flows"] if f["id"] not in seen]
            reruns[:] = [(await api.get(f"/flows/{flow_id}")).json() for flow_id in new]
            return len(reruns) >= len(ids)

        await until(all_there, "the reruns listed")
        for made in reruns:
            assert await ended(stack, made["id"]) == "flow_succeeded"
            seen.add(made["id"])
        return reruns

    seen: set[str] = set(first)
    # Rerun failed: only `use` runs again; `make` keeps its success.
    again = await rerun_selected(first[:2], "Rerun failed")
    assert sorted(f["rerun_of"] for f in again) == sorted(first[:2])
    assert [t.read_text().split() for t in trails] == [["make", "use", "use"]] * 2 + [
        ["make", "use"]
    ]
    # Rerun: every task runs again, as a new flow, from the list (it shows the new flows live).
    await expect_rows(page, first + [f["id"] for f in again])
    again_all = await rerun_selected([first[2]], "Rerun selected")
    assert [f["rerun_of"] for f in again_all] == [first[2]]
    assert trails[2].read_text().split() == ["make", "use", "make", "use"]
    # Nothing not selected was rerun.
    listed = (await api.get("/flows", params={"where": f"tag={tag}", "limit": 100})).json()["flows"]
    assert len(listed) == 6
    await problems.check_and_close(context)
