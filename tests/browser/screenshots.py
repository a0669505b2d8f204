"""Screenshots of each page of the web UI for the docs: `python -m tests.browser.screenshots`
starts a whole weir (stack.py), makes a few flows and a schedule, and writes
docs/images/ui-*.png (1280x800, the viewport only, so they stay small). With names
(`python -m tests.browser.screenshots task health`) it writes only those pictures."""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

from playwright.async_api import Page, async_playwright
from weir.embedded import EmbeddedPostgres

from tests.browser.stack import Stack, launch, logged_in
from tests.browser.test_ui import big_flow

IMAGES = Path(__file__).resolve().parents[2] / "docs" / "images"
WAIT_SECONDS = 120.0
SUBMIT_SPEC = """\
name: daily-load
params:
  day: {type: string, description: the day to load (YYYY-MM-DD)}
  rows: {type: int, default: 1000, description: rows per batch}
  dry_run: false
tasks:
  - name: extract
    cmd: [echo, "extract {{ params.day }}"]
  - name: load
    depends: [extract]
    cmd: [echo, "load {{ params.rows }}"]
"""
SCHEDULE_SPEC = """\
name: daily-report
params:
  region: {type: string, description: where the report is for}
  day: "{{ schedule.time }}"
tasks:
  - {name: report, cmd: [echo, "{{ params.region }}", "{{ params.day }}"]}
"""
BANNER_TIMEOUT_MS = 60_000
"""The health banner shows within a page's health poll (15 s) of a service stopping."""
WANTED = set(sys.argv[1:])
"""The pictures to take (every one when none is named)."""


def wanted(name: str) -> bool:
    return not WANTED or name in WANTED


async def wait_status(stack: Stack, flow_id: str, *statuses: str) -> None:
    api = stack.api("viewer")
    deadline = time.monotonic() + WAIT_SECONDS
    while (view := (await api.get(f"/flows/{flow_id}")).json())["status"] not in statuses:
        if time.monotonic() > deadline:
            tasks = ", ".join(f"{t['name']}={t['status']}" for t in view["tasks"])
            raise RuntimeError(f"flow {view['name']} is still {view['status']}: {tasks}")
        await asyncio.sleep(0.2)


async def wait_succeeded(stack: Stack, flow_id: str, tasks: int) -> None:
    api = stack.api("viewer")
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        view = (await api.get(f"/flows/{flow_id}")).json()
        if sum(t["status"] == "succeeded" for t in view["tasks"]) >= tasks:
            return
        await asyncio.sleep(1)
    raise RuntimeError(f"fewer than {tasks} tasks of {flow_id} succeeded in {WAIT_SECONDS}s")


async def shoot(page: Page, name: str) -> None:
    if not wanted(name):
        return
    await page.wait_for_timeout(400)  # let the last frame paint
    await page.screenshot(path=str(IMAGES / f"ui-{name}.png"))
    print(f"docs/images/ui-{name}.png", file=sys.stderr)


async def main() -> None:
    IMAGES.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="weir-shots-") as tmp:
        root = Path(tmp)
        postgres = EmbeddedPostgres(root / "postgres")
        postgres.start()
        stack = await Stack.start(root, postgres)
        try:
            await scenes(stack, root)
        finally:
            await stack.stop()
            postgres.stop()


async def scenes(stack: Stack, root: Path) -> None:
    gate = root / "gate"
    etl = await stack.submit(
        {
            "name": "etl",
            "tags": ["nightly", "prod"],
            "tasks": [
                {"name": "extract", "cmd": ["sh", "-c", "seq 1 5; echo extracted"]},
                {"name": "clean", "cmd": ["echo", "clean"], "depends": ["extract"]},
                {"name": "enrich", "cmd": ["echo", "enrich"], "depends": ["extract"]},
                {"name": "geo", "cmd": ["echo", "geo"], "depends": ["extract"]},
                {"name": "load", "cmd": ["echo", "load"], "depends": ["clean", "enrich", "geo"]},
                {"name": "report", "cmd": ["echo", "report"], "depends": ["load"]},
            ],
        }
    )
    billing = await stack.submit(
        {
            "name": "billing",
            "tags": ["prod"],
            "tasks": [
                {"name": "fetch", "cmd": ["echo", "fetch"]},
                {
                    "name": "charge",
                    "cmd": ["sh", "-c", "echo charging; echo 'card declined' >&2; exit 3"],
                    "depends": ["fetch"],
                },
            ],
        }
    )
    script = (
        "i=0; while [ ! -e " + str(gate) + " ]; do i=$((i+1)); "
        'echo "processed batch $i of 200 (rows=$((i*1000)))"; sleep 0.1; done'
    )
    running = await stack.submit(
        {
            "name": "backfill",
            "tags": ["adhoc"],
            "tasks": [
                {"name": "plan", "cmd": ["echo", "plan"]},
                {"name": "shard-1", "cmd": ["sh", "-c", script], "depends": ["plan"]},
                {"name": "shard-2", "cmd": ["sh", "-c", script], "depends": ["plan"]},
                {"name": "merge", "cmd": ["echo", "merge"], "depends": ["shard-1", "shard-2"]},
            ],
        }
    )
    later = await stack.submit(
        {
            "name": "report",
            "delay": "2h",
            "tags": ["monthly"],
            "metadata": {"owner": "finance", "ticket": "FIN-42"},
            "params": {
                "month": {"type": "string", "default": "2026-11"},
                "regions": {"type": "int", "default": 3},
            },
            "tasks": [{"name": "build", "cmd": ["echo", "{{ params.month }}"]}],
        }
    )
    schedule = {
        "name": "nightly-etl",
        "cron": "0 2 * * *",
        "timezone": "Europe/Paris",
        "flow": {"name": "etl", "tasks": [{"name": "a", "cmd": ["true"]}]},
    }
    assert (await stack.api("operator").post("/schedules", json=schedule)).status_code == 201
    await wait_status(stack, etl, "succeeded")
    await wait_status(stack, billing, "failed")
    await wait_status(stack, running, "running")

    async with async_playwright() as playwright:
        browser = await launch(playwright)
        context = await browser.new_context(viewport={"width": 1280, "height": 800})
        page = await context.new_page()
        await page.goto(f"{stack.url}/login")
        await shoot(page, "login")
        await context.close()
        context, page = await logged_in(browser, stack, "operator")
        await page.locator("tr[data-flow]").first.wait_for()
        await shoot(page, "flows")
        await page.goto(f"{stack.url}/flows/{running}")
        await page.locator("svg.dag").wait_for()
        await page.wait_for_timeout(1500)
        await shoot(page, "flow")
        await page.goto(f"{stack.url}/flows/{running}/tasks/shard-1")
        await page.locator("pre.log span").first.wait_for()
        await page.wait_for_timeout(2000)
        await shoot(page, "task")
        await page.goto(f"{stack.url}/flows/{etl}")
        await page.locator("svg.dag").wait_for()
        await page.locator("[data-panel=gantt]").scroll_into_view_if_needed()
        await shoot(page, "gantt")
        await page.goto(f"{stack.url}/flows/{billing}/tasks/charge")
        await page.locator("[data-action=retry]").wait_for()
        await page.locator("pre.log span").first.wait_for()
        await shoot(page, "retry")
        await page.goto(f"{stack.url}/flows/{later}")
        await page.locator("ol.events li").first.wait_for()  # the spec the form starts from
        await page.click("[data-action=update]")
        await page.fill("dialog form.update input[name=param-month]", "2026-12")
        await shoot(page, "update")
        await page.click("dialog form.update >> text=Keep")
        await page.goto(f"{stack.url}/tasks?where={quote('status=failed or flow_name=etl')}")
        await page.locator("tr[data-task]").first.wait_for()
        await page.click("[data-action=count-all]")
        await page.locator("[data-counts=all] .count").first.wait_for()
        await shoot(page, "tasks")
        await page.goto(f"{stack.url}/submit")
        await page.fill("textarea[name=spec]", SUBMIT_SPEC)
        await page.locator("input[name=param-day]").wait_for()
        await page.fill("input[name=param-day]", "2026-12-01")
        await page.fill("input[name=id]", "load-2026-12-01")
        await shoot(page, "submit")
        await page.fill("input[name=param-day]", "")
        await page.fill("textarea[name=spec]", SUBMIT_SPEC.replace("[extract]", "[extract, clean]"))
        await page.click("[data-action=submit]")
        await page.locator("[data-submit-error] li").first.wait_for()
        await page.locator("[data-submit-error]").scroll_into_view_if_needed()
        await shoot(page, "submit-refused")
        if wanted("big-flow"):
            # Submitted late, so its 2,000 processes do not slow the pictures before.
            big_spec = big_flow(2_000, width=40)
            del big_spec["delay"]  # it runs, so the picture shows statuses moving
            big = await stack.submit(big_spec)
            await wait_succeeded(stack, big, 400)
            await page.goto(f"{stack.url}/flows/{big}")
            await page.locator(".graph.big canvas").wait_for()
            await shoot(page, "big-flow")
        await page.goto(f"{stack.url}/schedules")
        await page.locator("tr[data-schedule]").wait_for()
        await shoot(page, "schedules")
        await page.click("[data-panel=new-schedule] summary")
        form = page.locator("form.schedule-create")
        await form.locator("input[name=name]").fill("daily-load")
        await form.locator("input[name=cron]").fill("30 6 * * *")
        await form.locator("input[name=timezone]").fill("Europe/Paris")
        await form.locator("textarea[name=spec]").fill(SCHEDULE_SPEC)
        await form.locator("input[name=param-region]").fill("eu-west")
        await shoot(page, "schedule-create")
        if wanted("health"):
            # Last, as the runner stops: the banner names it, over the flow list.
            stack.services.runner.stop.set()
            await stack.services.runner_task
            await page.goto(f"{stack.url}/flows")
            await page.locator("#health").wait_for(state="visible", timeout=BANNER_TIMEOUT_MS)
            await shoot(page, "health")
        await context.close()
        await browser.close()
    gate.touch()


if __name__ == "__main__":
    asyncio.run(main())
