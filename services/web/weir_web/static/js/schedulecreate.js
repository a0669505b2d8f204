// Create (or replace) a schedule from the schedules page (operators), as
// `weir schedule create` does: a name, a cron and its time zone, the flow's spec and its
// params; POST /api/v1/schedules. A refusal stays in the form as text, every problem of it.

import { call } from "./api.js";
import { h, replace } from "./dom.js";
import { formatTime } from "./time.js";
import { notify } from "./ui.js";
import { showProblems } from "./problems.js";
import { specWithParams } from "./specform.js";

/** The form, folded until opened; `onCreated()` runs after the scheduler accepted it. */
export function scheduleForm(onCreated) {
  const field = (label, input) => h("label", {}, h("span", {}, label), input);
  const name = h("input", { name: "name", required: true, placeholder: "nightly-etl" });
  const cron = h("input", { name: "cron", required: true, placeholder: "0 2 * * *", class: "mono" });
  const timezone = h("input", { name: "timezone", value: "UTC", placeholder: "Europe/Paris" });
  const missed = h("select", { name: "missed" }, h("option", { value: "skip" }, "skip missed runs"), h("option", { value: "catch_up" }, "catch up on missed runs"));
  const paused = h("input", { type: "checkbox", name: "paused" });
  const paramsBox = h("div", { class: "params", "data-params": "" });
  const problems = h("div", { class: "error", role: "alert", "data-schedule-error": "" });
  const spec = specWithParams(paramsBox, 10, "The page cannot read it");
  const button = h("button", { type: "submit", "data-action": "create-schedule" }, "Create schedule");
  const form = h(
    "form",
    { class: "submit-flow schedule-create" },
    h("div", { class: "row" }, field("Name", name), field("Cron", cron), field("Time zone", timezone), field("Missed runs", missed)),
    h("label", { class: "inline" }, paused, " create it paused"),
    spec.element,
    paramsBox,
    h("p", { class: "muted" }, "`{{ schedule.time }}` in the flow or in a string param becomes each tick's time."),
    problems,
    h("div", { class: "buttons" }, button),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    spec.flush(); // a spec changed just now, before its params were read: read them first
    if (!spec.text.value.trim()) {
      showProblems(problems, { message: "Enter the flow spec each tick submits." });
      return;
    }
    replace(problems);
    button.disabled = true;
    const body = {
      name: name.value.trim(),
      cron: cron.value.trim(),
      timezone: timezone.value.trim() || "UTC",
      missed: missed.value,
      paused: paused.checked,
      flow: spec.text.value, // read by the server as `weir schedule create` reads a file
      params: spec.values(),
    };
    try {
      const made = await call("/schedules", { method: "POST", body });
      notify(`Schedule ${made.name} created; next run ${formatTime(made.next_run_at)}.`);
      box.open = false;
      form.reset();
      spec.reset();
      await onCreated();
    } catch (error) {
      showProblems(problems, error);
    } finally {
      button.disabled = false;
    }
  });
  const box = h("details", { class: "panel write", "data-panel": "new-schedule" }, h("summary", {}, "New schedule"), form);
  return box;
}
