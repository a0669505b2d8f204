"""The web UI's forms and the tasks page, in Chromium against the real stack: submitting a
flow with its params, creating a schedule with params, a flow's metadata in the update form,
and tasks across flows; each refusal with every problem as text, and none of it for a viewer."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from playwright.async_api import Browser, BrowserContext, Page, expect

from tests.browser.conftest import OpenFlow, PageProblems, watched
from tests.browser.stack import Stack
from tests.browser.test_ui import HOSTILE, LIVE
from tests.flows import scheduled, shell, task
from tests.web.test_api import events_of

pytestmark = pytest.mark.asyncio(loop_scope="session")

SPEC_YAML = """\
name: ui-submitted
params:
  day:
    type: string
    description: the day to load
  n: {type: int, default: 2}
  loud: false
  extra: {type: json, default: {}}
tasks:
  - name: greet
    cmd: [sh, -c, 'echo "day=$1 n=$WEIR_PARAM_n"', greet, "{{ params.day }}"]
    timeout: 5m
"""


async def closed_clean(context: BrowserContext, problems: PageProblems) -> None:
    """Closes the page's context, once it is known the page raised nothing and asked nothing."""
    await problems.check_and_close(context)


async def fill_spec(page: Page, text: str) -> None:
    await page.locator("textarea[name=spec]").fill(text)


async def test_submit_a_yaml_spec_with_its_params_and_the_new_flow_opens(
    browser: Browser, stack: Stack, problems: PageProblems
) -> None:
    context, page = await watched(browser, stack, "operator", problems)
    await page.click("header nav >> text=Submit")
    await expect(page.locator("h1")).to_have_text("Submit a flow")
    await fill_spec(page, SPEC_YAML)
    params = page.locator("[data-params] label.param")
    await expect(params).to_have_count(4)
    day = page.locator('label[data-param="day"]')
    await expect(day).to_contain_text("day string · required")
    await expect(day).to_contain_text("the day to load")
    await expect(page.locator('label[data-param="n"]')).to_contain_text("n int · default 2")
    loud = page.locator('label[data-param="loud"]')
    await expect(loud).to_contain_text("loud bool · default false")
    assert await page.locator("input[name=param-n]").get_attribute("type") == "number"

    async def fill_and_submit() -> None:
        await page.fill("input[name=param-day]", "2026-12-01")
        await page.fill("input[name=param-n]", "7")
        await page.select_option("select[name=param-loud]", "true")
        await page.fill("textarea[name=param-extra]", '{"k": [1, 2]}')
        await page.fill("input[name=id]", "ui-submit-1")
        await page.click("[data-action=submit]")
        await page.wait_for_url(f"{stack.url}/flows/ui-submit-1")

    await fill_and_submit()
    await expect(page.locator("h1 .badge")).to_have_text("succeeded", timeout=LIVE)
    await expect(page.locator('[data-param="n"]')).to_have_text("n=7")
    view = (await stack.api("viewer").get("/flows/ui-submit-1")).json()
    assert view["params"] == {"day": "2026-12-01", "n": 7, "loud": True, "extra": {"k": [1, 2]}}
    log = await stack.api("viewer").get("/flows/ui-submit-1/tasks/greet/logs")
    assert "day=2026-12-01 n=7" in log.text, log.text

    # Again under the same id: the same flow, nothing new (as `weir submit` twice).
    await page.goto(f"{stack.url}/submit")
    await fill_spec(page, SPEC_YAML)
    await fill_and_submit()
    await expect(page.locator("h1 .badge")).to_have_text("succeeded")
    listed = (await stack.api("viewer").get("/flows", params={"where": "name=ui-submitted"})).json()
    assert [f["id"] for f in listed["flows"]] == ["ui-submit-1"], listed
    await closed_clean(context, problems)


async def test_a_spec_file_uploaded_without_params_goes_as_written(
    browser: Browser, stack: Stack, problems: PageProblems, tmp_path: Path
) -> None:
    spec = {"name": "ui-uploaded", "tasks": [task("a", "true", retry=2)]}
    file = tmp_path / "flow.json"
    file.write_text(json.dumps(spec))
    context, page = await watched(browser, stack, "operator", problems)
    await page.goto(f"{stack.url}/submit")
    await page.set_input_files("input[name=spec-file]", str(file))
    await expect(page.locator("textarea[name=spec]")).to_have_value(json.dumps(spec))
    await page.click("[data-action=submit]")
    await page.wait_for_url(re.compile(r"/flows/[^/]+$"))
    await expect(page.locator("h1")).to_contain_text("ui-uploaded")
    await expect(page.locator("h1 .badge")).to_have_text("succeeded", timeout=LIVE)
    await closed_clean(context, problems)


async def test_a_refused_submit_shows_every_problem_as_text_and_a_duplicate_links_the_flow(
    browser: Browser, stack: Stack, problems: PageProblems
) -> None:
    context, page = await watched(browser, stack, "operator", problems)
    await page.goto(f"{stack.url}/submit")
    error = page.locator("[data-submit-error]")
    # A YAML syntax error: the server's line and column.
    await fill_spec(page, "name: broken\ntasks: [\n")
    await expect(page.locator("[data-spec-note]")).to_contain_text("not valid YAML")
    await page.click("[data-action=submit]")
    await expect(error).to_contain_text("YAML syntax error")
    await expect(error).to_contain_text("body:")
    # Structural problems, each listed (the hostile name as text, never markup).
    await fill_spec(
        page,
        json.dumps(
            {
                "name": "bad-structure",
                "colour": "blue",
                "tasks": [{"name": HOSTILE, "cmd": "true", "retry": "many"}],
            }
        ),
    )
    await page.click("[data-action=submit]")
    await expect(error).to_contain_text("problem(s)")
    assert await error.locator("li").count() >= 3, await error.inner_text()
    text = await error.inner_text()
    assert "colour" in text and "retry" in text and "cmd" in text, text
    # The planner's problems and the params': a missing dependency, a required param left
    # empty, an undeclared placeholder; with params, the spec goes inside the JSON submit.
    spec = (
        "name: bad-plan\nparams:\n  day: {type: string}\n  n: {type: int, default: 1}\n"
        "tasks:\n  - name: load\n    depends: [extract]\n"
        "    cmd: [echo, '{{ params.nope }}', '" + HOSTILE + "']\n"
    )
    await fill_spec(page, spec)
    await expect(page.locator("input[name=param-n]")).to_have_count(1)
    await page.fill("input[name=param-n]", "3")
    await page.click("[data-action=submit]")
    await expect(error.locator("li")).to_have_count(3, timeout=LIVE)
    text = await error.inner_text()
    assert "extract" in text and "nope" in text and '"day"' in text, text
    await expect(error).to_contain_text("The rejection is recorded as flow")
    assert await page.locator("main img").count() == 0
    assert page.url.endswith("/submit")
    # A duplicate of a waiting flow with the same unique key: a link to the one that exists.
    unique = scheduled("ui-unique", unique={"key": "ui-unique-key"})
    first = await stack.submit(unique)
    await fill_spec(page, json.dumps(unique))
    await page.click("[data-action=submit]")
    await expect(error).to_contain_text("The flow that exists:")
    await error.locator(f'a[href="/flows/{first}"]').click()
    await page.wait_for_url(f"{stack.url}/flows/{first}")
    await expect(page.locator("h1")).to_contain_text("ui-unique")
    await closed_clean(context, problems)


SCHEDULE_SPEC = """\
name: ui-nightly
params:
  region: {type: string, description: where to run}
  day: "{{ schedule.time }}"
tasks:
  - name: run
    cmd: [echo, "{{ params.region }}", "{{ params.day }}"]
    timeout: 10m
    retry: 2
"""


async def test_create_a_schedule_with_params_from_the_form_and_a_refusal_lists_each_problem(
    browser: Browser, stack: Stack, problems: PageProblems
) -> None:
    context, page = await watched(browser, stack, "operator", problems)
    await page.click("header nav >> text=Schedules")
    await page.click("[data-panel=new-schedule] summary")
    form = page.locator("form.schedule-create")
    error = form.locator("[data-schedule-error]")
    await form.locator("input[name=name]").fill("ui-nightly")
    await form.locator("input[name=cron]").fill("0 2 * * *")
    await form.locator("input[name=timezone]").fill("Europe/Paris")
    await form.locator("textarea[name=spec]").fill(SCHEDULE_SPEC)
    await expect(form.locator('label[data-param="region"]')).to_contain_text("where to run")
    # The region is required: left empty, the scheduler refuses with the reason.
    await form.locator("[data-action=create-schedule]").click()
    await expect(error).to_contain_text('"region"')
    # Every problem of the flow: the spec's own (three: YAML's `true` is no string) and then
    # the planner's (two).
    await form.locator("textarea[name=spec]").fill(
        "name: bad\ntasks:\n  - {name: a, cmd: [true], retry: many, colour: red}\n"
    )
    await form.locator("[data-action=create-schedule]").click()
    await expect(error.locator("li")).to_have_count(3)
    text = await error.inner_text()
    assert "colour" in text and "retry" in text and "cmd" in text, text
    await form.locator("textarea[name=spec]").fill(
        "name: bad\ntasks:\n  - {name: a, cmd: [echo, '{{ params.x }}'], depends: [ghost]}\n"
    )
    await form.locator("[data-action=create-schedule]").click()
    await expect(error.locator("li")).to_have_count(2)
    text = await error.inner_text()
    assert "ghost" in text and "params.x" in text, text
    await form.locator("textarea[name=spec]").fill(SCHEDULE_SPEC)
    await form.locator("input[name=param-region]").fill("eu-west")
    await form.locator("[data-action=create-schedule]").click()
    await expect(page.locator('tr[data-schedule="ui-nightly"]')).to_contain_text("Europe/Paris")
    await expect(page.locator("#notice")).to_contain_text("Schedule ui-nightly created")
    row = page.locator('tr[data-schedule="ui-nightly"]')
    await expect(row.locator('[data-param="region"]')).to_have_text("region=eu-west")
    listed = (await stack.api("viewer").get("/schedules")).json()["schedules"]
    (made,) = [s for s in listed if s["name"] == "ui-nightly"]
    assert made["params"] == {"region": "eu-west"} and made["cron"] == "0 2 * * *", made
    await closed_clean(context, problems)


async def test_update_a_scheduled_flows_metadata_from_the_form(
    stack: Stack, open_flow: OpenFlow, problems: PageProblems
) -> None:
    flow_id, context, page = await open_flow(
        scheduled("ui-metadata", metadata={"owner": "ana", "ticket": 42}), "operator"
    )
    await expect(page.locator('[data-metadata="owner"]')).to_have_text("owner=ana")
    await expect(page.locator("ol.events li")).to_have_count(1)
    await page.click("[data-action=update]")
    form = page.locator("dialog form.update")
    metadata = form.locator("textarea[name=metadata]")
    await expect(metadata).to_have_value("owner=ana\nticket=42")
    await metadata.fill("owner=bo\nticket=42\nno equals sign")
    await form.locator("[data-confirm]").click()
    refused = form.locator("[data-update-error]")
    await expect(refused).to_contain_text('"no equals sign": write key=value')
    await metadata.fill(f"owner=bo\nticket=42\nnote={HOSTILE}")
    await form.locator("[data-confirm]").click()
    await expect(page.locator("#notice")).to_contain_text("Updated metadata")
    await expect(page.locator('[data-metadata="owner"]')).to_have_text("owner=bo", timeout=LIVE)
    await expect(page.locator('[data-metadata="note"]')).to_have_text(f"note={HOSTILE}")
    assert await page.locator("main img").count() == 0
    view = (await stack.api("viewer").get(f"/flows/{flow_id}")).json()
    assert view["metadata"] == {"owner": "bo", "ticket": 42, "note": HOSTILE}, view
    await closed_clean(context, problems)


def wide_flow(name: str, tasks: int) -> dict[str, Any]:
    return scheduled(name, *[task(f"t{i:03d}", "true") for i in range(tasks)])


async def test_tasks_across_flows_with_the_where_box_in_the_url_counts_and_pages(
    browser: Browser, stack: Stack, problems: PageProblems
) -> None:
    failed = await stack.submit(
        {
            "name": "ui-tasks-mixed",
            "defaults": {"retry": {"max_attempts": 1}},
            "tasks": [
                task("ok", "true"),
                shell("boom", "exit 3"),
            ],
        }
    )
    wide = await stack.submit(wide_flow("ui-tasks-wide", 60))
    assert (await events_of(stack.api("viewer"), failed))[-1].event == "flow_failed"
    context, page = await watched(browser, stack, "viewer", problems)
    await page.click("header nav >> text=Tasks")
    await expect(page.locator("h1")).to_have_text("Tasks")
    await page.fill("input[name=where]", "flow_name=ui-tasks-mixed")
    await page.click("form.filters button[type=submit]")
    await page.wait_for_url(f"{stack.url}/tasks?where={quote('flow_name=ui-tasks-mixed', safe='')}")
    rows = page.locator("table.tasks tbody tr[data-task]")
    await expect(rows).to_have_count(2)
    boom = page.locator('tr[data-task="boom"]')
    await expect(boom).to_have_attribute("data-status", "failed")
    await expect(boom).to_contain_text("3")
    counted = page.locator("[data-counts=page]")
    await expect(counted.locator('[data-count="failed"]')).to_have_text("failed 1")
    await expect(counted.locator('[data-count="succeeded"]')).to_have_text("succeeded 1")
    await page.reload()
    await expect(page.locator("input[name=where]")).to_have_value("flow_name=ui-tasks-mixed")
    await boom.locator("td").nth(1).locator("a").click()
    await page.wait_for_url(f"{stack.url}/flows/{failed}/tasks/boom")
    await page.go_back()
    await page.locator('tr[data-task="ok"] td').nth(2).locator("a").click()
    await page.wait_for_url(f"{stack.url}/flows/{failed}")

    # 60 tasks: a page of 50, then the other 10; counting every match reads them all.
    await page.goto(f"{stack.url}/tasks?where={quote(f'flow={wide}')}")
    await expect(rows).to_have_count(50)
    await expect(counted.locator('[data-count="pending"]')).to_have_text("pending 50")
    await page.click("[data-action=count-all]")
    await expect(page.locator("[data-counts=all]")).to_contain_text("Every match (60)")
    await page.click("text=Next page ⟩")
    await expect(rows).to_have_count(10)
    await expect(page.locator("tr[data-task=t059]")).to_have_count(1)
    assert "cursor=" in page.url and "where=" in page.url
    await page.click("text=⟨ First page")
    await expect(rows).to_have_count(50)

    # A where the language refuses: the reason, as text.
    await page.fill("input[name=where]", f"colour={HOSTILE}")
    await page.click("form.filters button[type=submit]")
    await expect(page.locator("[data-tasks-error]")).to_contain_text("where:")
    await expect(rows).to_have_count(0)
    assert await page.locator("main img").count() == 0
    await closed_clean(context, problems)


async def test_a_viewer_sees_none_of_the_forms_and_the_api_refuses_their_writes(
    browser: Browser, stack: Stack, problems: PageProblems
) -> None:
    flow_id = await stack.submit(scheduled("viewer-forms"))
    context, page = await watched(browser, stack, "viewer", problems)
    assert not await page.locator("header nav >> text=Submit").is_visible()
    await expect(page.locator("header nav >> text=Tasks")).to_be_visible()
    await page.goto(f"{stack.url}/submit")
    await expect(page.locator("h1")).to_have_text("Submit a flow")
    assert await page.locator("main form, main textarea, main button").count() == 0
    await page.goto(f"{stack.url}/schedules")
    await expect(page.locator("h1")).to_have_text("Schedules")
    assert await page.locator("[data-panel=new-schedule], main form, main button").count() == 0
    await page.goto(f"{stack.url}/tasks?where={quote(f'flow={flow_id}')}")
    await expect(page.locator("table.tasks tbody tr[data-task]")).to_have_count(1)
    assert [b for b in await page.locator("main button").all_text_contents()] == [
        "Filter",
        "Count every match",
    ]
    await page.goto(f"{stack.url}/flows/{flow_id}")
    await expect(page.locator("ol.events li")).to_have_count(1)
    assert await page.locator("[data-action], dialog").count() == 0
    viewer = stack.api("viewer")
    spec = {"name": "x", "tasks": [task("a", "true")]}
    refused = [
        await viewer.post("/flows", json=spec),
        await viewer.post("/schedules", json={"name": "v", "cron": "* * * * *", "flow": spec}),
        await viewer.patch(f"/flows/{flow_id}", json={"metadata": {"a": "b"}}),
    ]
    assert [r.status_code for r in refused] == [403, 403, 403], [r.text for r in refused]
    await closed_clean(context, problems)
