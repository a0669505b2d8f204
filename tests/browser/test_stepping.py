"""Stepping in on a flow from the web UI, in Chromium against the real stack: what the CLI and
the HTTP API change (pause, resume, retry, update) shows live on an open page, and the
buttons that do the same."""

from __future__ import annotations

from pathlib import Path
from typing import Any, get_args

import msgspec
import pytest
from playwright.async_api import Browser, expect
from weir_proto.events import FlowEvent, event_type
from weir_proto.status import FlowStatus, flow_status_after

from tests.browser.conftest import OpenFlow, PageProblems, watched
from tests.browser.stack import Stack, logged_in
from tests.browser.test_live import HIDE, SHOW
from tests.browser.test_ui import HOSTILE, LIVE, gated_flow, node
from tests.flows import scheduled, shell, task, waits_for
from tests.web.test_api import events_of

pytestmark = pytest.mark.asyncio(loop_scope="session")


def failing_until(fixed: Path, name: str) -> dict[str, Any]:
    """A flow whose `load` fails (one attempt) until `fixed` exists; `publish` follows it."""
    return {
        "name": name,
        "defaults": {"retry": {"max_attempts": 1}},
        "tasks": [
            shell("load", f'echo "try"; test -e "{fixed}"'),
            task("publish", "true", depends=["load"]),
        ],
    }


async def test_a_flow_paused_through_the_api_shows_paused_live(
    stack: Stack, open_flow: OpenFlow, problems: PageProblems, tmp_path: Path
) -> None:
    gate = tmp_path / "paused.open"
    flow_id, context, page = await open_flow(gated_flow(gate, "paused-by-api", after=1), "viewer")
    await expect(await node(page, "wait")).to_have_class("node s-running", timeout=LIVE)
    await page.evaluate("window.stillHere = true")
    paused = await stack.api("operator").post(f"/flows/{flow_id}/pause", json={})
    assert paused.status_code == 200, paused.text
    await expect(page.locator("h1 .badge")).to_have_text("paused", timeout=LIVE)
    resumed = await stack.api("operator").post(f"/flows/{flow_id}/resume")
    assert resumed.status_code == 200, resumed.text
    await expect(page.locator("h1 .badge")).to_have_text("running", timeout=LIVE)
    gate.touch()
    await expect(page.locator("h1 .badge")).to_have_text("succeeded", timeout=LIVE)
    assert await page.evaluate("window.stillHere") is True, "the page was reloaded"
    await problems.check_and_close(context)


async def test_the_pages_listen_to_every_event_type_of_the_proto(
    browser: Browser, stack: Stack
) -> None:
    every = sorted(str(kind.__struct_config__.tag) for kind in get_args(FlowEvent))
    context, page = await logged_in(browser, stack, "viewer")
    listened = await page.evaluate("async () => (await import('/static/js/model.js')).EVENT_TYPES")
    assert sorted(listened) == every, set(every) ^ set(listened)
    await context.close()


def log_of(*steps: tuple[str, dict[str, Any]]) -> list[FlowEvent]:
    """Events of flow "f" over tasks a and b, seq from 1, each with its own fields."""
    spec = {"name": "f", "tasks": [task("a", "true"), task("b", "true")]}
    at = "2026-12-01T00:00:00Z"
    common = {"flow_id": "f", "at": at, "task": "a", "attempt": 1, "reason": "r", "spec": spec}
    events = []
    for seq, (kind, fields) in enumerate(steps, 1):
        data = {**common, "type": kind, "id": f"e{seq}", "seq": seq, **fields}
        cls = next(c for c in get_args(FlowEvent) if c.__struct_config__.tag == kind)
        known = {k: v for k, v in data.items() if k in cls.__struct_fields__ or k == "type"}
        events.append(msgspec.convert(known, FlowEvent))
    return events


LATER = {"start_at": "2026-12-02T00:00:00Z"}
LOGS = [
    log_of(
        ("flow_submitted", LATER),
        ("flow_updated", {"changed": ["priority"]}),
        ("flow_paused", {}),
        ("flow_updated", {"changed": ["tags"], **LATER}),
        ("flow_resumed", {"status": "scheduled"}),
        ("task_skipped", {"task": "b"}),
        ("task_queued", {"queue": "q", "priority": 1}),
        ("task_dispatched", {"queue": "q"}),
        ("task_started", {}),
        ("task_taken_over", {"runner": "r2", "previous_runner": "r1", "silent_for": 9.0}),
        (
            "task_attempt_failed",
            {"error_type": "exit", "message": "m", "retry_at": LATER["start_at"]},
        ),
        ("task_snoozed", {"until": LATER["start_at"]}),
        ("task_expanded", {"count": 2, "items": [1, 2]}),
        ("task_condition_read", {"values": {"out": "go"}}),
        ("flow_cancel_requested", {"fail_fast": True}),
        ("task_failed", {"error_type": "exit", "message": "m"}),
        ("flow_failed", {"failed_tasks": ["a"]}),
        ("flow_paused", {}),
        ("task_retried", {"tasks": ["a"]}),
        ("flow_resumed", {"status": "running"}),
        ("task_cancelled", {}),
        ("task_succeeded", {"outputs": [{"name": "o", "size": 1, "sha256": "00"}]}),
        ("flow_cancel_requested", {}),
        ("flow_cancelled", {}),
    ),
    log_of(("flow_submitted", {}), ("task_retried", {"tasks": ["a"]}), ("flow_succeeded", {})),
    log_of(("flow_rejected", {"errors": [{"path": "$", "message": "m"}]})),
    log_of(("flow_deduplicated", {"existing": "g", "key": "k"})),
]
FOLD = """async (logs) => {
  const { FlowState } = await import('/static/js/model.js');
  return logs.map((log) => {
    const state = new FlowState({ seq: 0, status: "pending", tasks: [] });
    return log.map((event) => (state.fold(event), state.status));
  });
}"""


async def test_the_pages_fold_every_event_type_into_the_proto_s_flow_status(
    browser: Browser, stack: Stack
) -> None:
    assert {event_type(e) for log in LOGS for e in log} == {
        str(kind.__struct_config__.tag) for kind in get_args(FlowEvent)
    }, "every event type is in a log"
    expected = []
    for log in LOGS:
        status, statuses = FlowStatus.PENDING, []
        for event in log:
            status = flow_status_after(status, event)
            statuses.append(str(status))
        expected.append(statuses)
    context, page = await logged_in(browser, stack, "viewer")
    folded = await page.evaluate(FOLD, [[msgspec.to_builtins(e) for e in log] for log in LOGS])
    assert folded == expected
    await context.close()


async def test_pause_and_resume_from_the_buttons_and_the_flow_finishes(
    open_flow: OpenFlow, problems: PageProblems, tmp_path: Path
) -> None:
    gate = tmp_path / "buttons.open"
    _, context, page = await open_flow(gated_flow(gate, "paused-by-button", after=1), "operator")
    await expect(await node(page, "wait")).to_have_class("node s-running", timeout=LIVE)
    assert await page.locator("[data-action=resume]").count() == 0
    await page.click("[data-action=pause]")
    await page.click("dialog.confirm [data-confirm]")
    await expect(page.locator("h1 .badge")).to_have_text("paused", timeout=LIVE)
    # While paused the gated task finishes, and nothing new is handed out.
    gate.touch()
    await expect(await node(page, "wait")).to_have_class("node s-succeeded", timeout=LIVE)
    await expect(page.locator("[data-action=resume]")).to_be_visible()
    assert await page.locator("[data-action=pause]").count() == 0
    assert await (await node(page, "then-0")).get_attribute("class") == "node s-pending"
    await page.click("[data-action=resume]")
    await page.click("dialog.confirm [data-confirm]")
    await expect(page.locator("h1 .badge")).to_have_text("succeeded", timeout=LIVE)
    await expect(await node(page, "then-0")).to_have_class("node s-succeeded")
    events = page.locator("ol.events")
    await expect(events).to_contain_text("flow_paused")
    await expect(events).to_contain_text("flow_resumed")
    await problems.check_and_close(context)


async def test_retry_a_failed_task_from_its_page_and_the_new_attempt_shows_live(
    stack: Stack, open_flow: OpenFlow, problems: PageProblems, tmp_path: Path
) -> None:
    fixed = tmp_path / "fixed"
    flow_id, context, page = await open_flow(
        failing_until(fixed, "retried-in-ui"), "operator", "/tasks/load"
    )
    await expect(page.locator("h1 .badge")).to_have_text("failed", timeout=LIVE)
    await expect(page.locator("tr[data-attempt]")).to_have_count(1)
    await page.evaluate("window.stillHere = true")
    fixed.touch()
    await page.click("[data-action=retry]")
    await page.click("dialog.confirm [data-confirm]")
    await expect(page.locator("#notice")).to_contain_text("Retrying load, publish")
    await expect(page.locator('tr[data-attempt="2"]')).to_be_visible(timeout=LIVE)
    await expect(page.locator("h1 .badge")).to_have_text("succeeded", timeout=LIVE)
    await expect(page.locator('tr[data-attempt="2"] .badge')).to_have_text("succeeded")
    await expect(page.locator("[data-panel=log] h2")).to_have_text("Log — attempt 2")
    await expect(page.locator("dl.facts")).not_to_contain_text("Error")  # attempt 1's
    assert await page.evaluate("window.stillHere") is True, "the page was reloaded"
    await page.goto(f"{stack.url}/flows/{flow_id}")
    await expect(page.locator("h1 .badge")).to_have_text("succeeded", timeout=LIVE)
    await expect(await node(page, "publish")).to_have_class("node s-succeeded")

    await problems.check_and_close(context)


async def test_retry_a_failed_instance_from_its_page_runs_it_alone(
    browser: Browser, stack: Stack, problems: PageProblems, tmp_path: Path
) -> None:
    fixed = tmp_path / "fixed"
    check = f'test "{{{{ item }}}}" != b || test -e "{fixed}"'
    flow_id = await stack.submit(
        {
            "name": "instance-in-ui",
            "defaults": {"retry": {"max_attempts": 1}},
            "tasks": [
                shell(
                    "list",
                    """echo '["a","b"]' > files.json""",
                    outputs=[{"name": "files", "path": "files.json"}],
                ),
                shell("each", check, depends=["list"], map={"over": "files"}),
            ],
        }
    )
    context, page = await watched(browser, stack, "operator", problems)
    await page.goto(f"{stack.url}/flows/{flow_id}")
    await expect(page.locator("h1 .badge")).to_have_text("failed", timeout=LIVE)
    await page.goto(f"{stack.url}/flows/{flow_id}/tasks/each[1]")
    await expect(page.locator("h1 .badge")).to_have_text("failed", timeout=LIVE)
    fixed.touch()
    await page.click("[data-action=retry]")
    await page.click("dialog.confirm [data-confirm]")
    await expect(page.locator("#notice")).to_contain_text("Retrying each, each[1]")
    await expect(page.locator('tr[data-attempt="2"] .badge')).to_have_text(
        "succeeded", timeout=LIVE
    )
    await page.goto(f"{stack.url}/flows/{flow_id}")
    await expect(page.locator("h1 .badge")).to_have_text("succeeded", timeout=LIVE)
    view = await stack.api("viewer").get(f"/flows/{flow_id}")
    attempts = {t["name"]: t["attempt"] for t in view.json()["tasks"]}
    assert (attempts["each[0]"], attempts["each[1]"]) == (1, 2), attempts
    await problems.check_and_close(context)


async def test_update_a_scheduled_flow_from_the_form_and_a_refusal_shows_as_text(
    stack: Stack, open_flow: OpenFlow, problems: PageProblems
) -> None:
    params = {"n": {"type": "int", "default": 1}, "day": "mon"}
    flow_id, context, page = await open_flow(scheduled("later-in-ui", params=params), "operator")
    await expect(page.locator("h1 .badge")).to_have_text("scheduled")
    await expect(page.locator("ol.events li")).to_have_count(1)  # the spec, from the log
    assert await page.locator("[data-action=cancel]").count() == 1
    await page.click("[data-action=update]")
    form = page.locator("dialog form.update")
    await expect(form.locator("input[name=priority]")).to_have_value("100")
    await expect(form.locator("input[name=param-n]")).to_have_value("1")
    # A bad value: the scheduler's problems, as text, and the form stays open.
    await form.locator("input[name=param-n]").fill(HOSTILE)
    await form.locator("[data-confirm]").click()
    error = form.locator("[data-update-error]")
    await expect(error).to_contain_text('parameter "n" is int')
    await expect(error).to_contain_text(HOSTILE)
    assert await page.locator("dialog img").count() == 0
    await form.locator("input[name=param-n]").fill("5")
    await form.locator("input[name=priority]").fill("7")
    await form.locator("input[name=tags]").fill("urgent, ui")
    await form.locator("[data-confirm]").click()
    await expect(page.locator("#notice")).to_contain_text("Updated priority, params, tags")
    await expect(page.locator("dialog")).to_have_count(0)
    await expect(page.locator('[data-param="n"]')).to_have_text("n=5", timeout=LIVE)
    await expect(page.locator("dl.facts")).to_contain_text("urgent")
    await expect(page.locator("ol.events")).to_contain_text("changed priority, params, tags")
    view = (await stack.api("viewer").get(f"/flows/{flow_id}")).json()
    assert view["params"]["n"] == 5 and view["tags"] == ["urgent", "ui"], view
    await page.click("[data-action=update]")
    await expect(form.locator("input[name=priority]")).to_have_value("7")

    # Started meanwhile: the refusal says why, in the form.
    started = await stack.api("operator").patch(f"/flows/{flow_id}", json={"start_now": True})
    assert started.status_code == 200, started.text
    await expect(page.locator("h1 .badge")).to_have_text("succeeded", timeout=LIVE)
    await form.locator("input[name=priority]").fill("8")
    await form.locator("[data-confirm]").click()
    await expect(error).to_contain_text("only a flow that has not started can be updated")
    await form.locator("text=Keep").click()
    assert await page.locator("[data-action=update]").count() == 0
    await problems.check_and_close(context)


async def test_a_viewer_sees_no_stepping_button_and_the_api_refuses_each(
    browser: Browser, stack: Stack, problems: PageProblems, tmp_path: Path
) -> None:
    later = await stack.submit(scheduled("viewer-later", task("a", "false")))
    failed = await stack.submit(
        {
            "name": "viewer-failed",
            "defaults": {"retry": {"max_attempts": 1}},
            "tasks": [task("a", "false")],
        }
    )
    context, page = await watched(browser, stack, "viewer", problems)
    await page.goto(f"{stack.url}/flows/{later}")
    await expect(page.locator("h1 .badge")).to_have_text("scheduled")
    await page.goto(f"{stack.url}/flows/{failed}/tasks/a")
    await expect(page.locator("h1 .badge")).to_have_text("failed", timeout=LIVE)
    await expect(page.locator("tr[data-attempt]")).to_have_count(1)
    assert await page.locator("[data-action]").count() == 0
    await page.goto(f"{stack.url}/flows/{later}")
    await expect(page.locator("h1 .badge")).to_have_text("scheduled")
    await expect(page.locator("ol.events li")).to_have_count(1)
    assert await page.locator("[data-action]").count() == 0
    viewer = stack.api("viewer")
    writes = [
        viewer.post(f"/flows/{later}/pause", json={}),
        viewer.post(f"/flows/{later}/resume"),
        viewer.patch(f"/flows/{later}", json={"priority": 1}),
        viewer.post(f"/flows/{failed}/retry", json={"task": "a"}),
    ]
    for write in writes:
        response = await write
        assert response.status_code == 403, response.text
    await problems.check_and_close(context)


async def test_a_mapped_tasks_instances_and_a_condition_read_show_live(
    browser: Browser, stack: Stack, problems: PageProblems, tmp_path: Path
) -> None:
    gate = tmp_path / "list.open"
    write = f"""{waits_for(gate)}; echo '["a","b","c"]' > files.json; echo go > decision.txt"""
    flow_id = await stack.submit(
        {
            "name": "fan-out-ui",
            "tasks": [
                shell(
                    "list",
                    write,
                    outputs=[
                        {"name": "files", "path": "files.json"},
                        {"name": "decision", "path": "decision.txt"},
                    ],
                ),
                task("each", "echo", "item {{ item }}", depends=["list"], map={"over": "files"}),
                task(
                    "deploy",
                    "echo",
                    "deploying",
                    depends=["list"],
                    when='tasks.list.outputs.decision == "go"',
                ),
            ],
        }
    )
    context, page = await watched(browser, stack, "viewer", problems)
    await page.goto(f"{stack.url}/flows/{flow_id}")
    await expect(await node(page, "list")).to_have_class("node s-running", timeout=LIVE)
    assert await page.locator("svg.dag g.node").count() == 3
    await page.evaluate("window.stillHere = true")
    gate.touch()
    for i in range(3):
        instance = await node(page, f"each[{i}]")
        await expect(instance).to_have_class("node s-succeeded", timeout=LIVE)
    await expect(page.locator("h1 .badge")).to_have_text("succeeded", timeout=LIVE)
    await expect(page.locator("svg.dag g.node")).to_have_count(6)
    await expect(page.locator(".gantt-axis")).to_contain_text("5 attempts")  # list, 3, deploy
    await expect(page.locator("p.counts")).to_contain_text("succeeded 6")
    await expect(page.locator("dl.facts")).to_contain_text("Tasks6")
    await expect(page.locator("ol.events")).to_contain_text("into 3 instances")
    await expect(page.locator('#task-names option[value="each[2]"]')).to_have_count(1)
    assert await page.evaluate("window.stillHere") is True, "the page was reloaded"

    await (await node(page, "each[1]")).click()
    await expect(page.locator("h1")).to_contain_text("each[1]")
    await expect(page.locator("dl.facts")).to_contain_text("Instance of")
    await expect(page.locator("pre.log")).to_contain_text("item b", timeout=LIVE)
    await page.goto(f"{stack.url}/flows/{flow_id}/tasks/deploy")
    await expect(page.locator("[data-condition]")).to_have_text('decision="go"', timeout=LIVE)
    await expect(page.locator("h1 .badge")).to_have_text("succeeded")
    await problems.check_and_close(context)


async def test_an_ended_flow_retried_through_the_api_runs_again_on_its_open_page(
    browser: Browser, stack: Stack, problems: PageProblems, tmp_path: Path
) -> None:
    fixed = tmp_path / "fixed-later"
    flow_id = await stack.submit(failing_until(fixed, "retried-by-api"))
    context, page = await watched(browser, stack, "viewer", problems)
    streams: list[str] = []
    page.on("request", lambda r: streams.append(r.url) if r.url.endswith("/events") else None)
    async with page.expect_request(lambda r: r.url.endswith("/api/v1/flows"), timeout=LIVE):
        await page.goto(f"{stack.url}/flows/{flow_id}")
    await expect(page.locator("h1 .badge")).to_have_text("failed", timeout=LIVE)
    await expect(await node(page, "publish")).to_have_class("node s-skipped")
    await page.evaluate("window.stillHere = true")
    # Ended: the page follows the list's feed (above) and does not reconnect its stream.
    await page.wait_for_timeout(4000)  # longer than EventSource's reconnection delay
    assert len(streams) == 1, streams
    operator = stack.api("operator")
    # Retried while the page looks (the feed names the flow): it runs, and fails again.
    retried = await operator.post(f"/flows/{flow_id}/retry", json={"task": "load"})
    assert retried.status_code == 200, retried.text
    await expect(page.locator("ol.events")).to_contain_text("runs again: load, publish")
    await expect(page.locator(".gantt-axis")).to_contain_text("2 attempts", timeout=LIVE)
    await expect(page.locator("h1 .badge")).to_have_text("failed", timeout=LIVE)
    # Retried while the tab is hidden (no feed then): seen once it is shown again.
    await page.evaluate(HIDE)
    fixed.touch()
    retried = await operator.post(f"/flows/{flow_id}/retry", json={"task": "load"})
    assert retried.status_code == 200, retried.text
    # Followed from the retry's own seq: the end before it (reopened) is not this run's end.
    after = retried.json()["seq"]
    assert (await events_of(operator, flow_id, after))[-1].event == "flow_succeeded"
    await page.evaluate(SHOW)
    await expect(page.locator("h1 .badge")).to_have_text("succeeded", timeout=LIVE)
    await expect(await node(page, "publish")).to_have_class("node s-succeeded")
    await expect(page.locator(".gantt-axis")).to_contain_text("4 attempts")
    assert await page.evaluate("window.stillHere") is True, "the page was reloaded"
    assert len(streams) == 3, streams
    await problems.check_and_close(context)
