// Schedules: their next runs, pause / resume / delete, and a new one (schedulecreate.js).

import { call, canWrite, seg } from "./api.js";
import { h, replace, whileVisible } from "./dom.js";
import { formatTime } from "./time.js";
import { confirmAction, notify, showError } from "./ui.js";
import { scheduleForm } from "./schedulecreate.js";

export async function schedulesView(root, _params, { signal }) {
  const body = h("tbody");
  root.append(
    h("h1", {}, "Schedules"),
    canWrite() ? scheduleForm(() => refresh()) : "",
    h("table", { class: "schedules" },
      h("thead", {}, h("tr", {}, ["Name", "Flow", "Cron", "Time zone", "Missed runs", "Next run", "Last tick", "State", ""].map((t) => h("th", {}, t)))),
      body),
  );
  const act = async (name, verb) => {
    if (verb === "delete" && !(await confirmAction("Delete schedule", `Delete the schedule ${name}? Flows it started stay.`, "Delete"))) return;
    try {
      if (verb === "delete") await call(`/schedules/${seg(name)}`, { method: "DELETE" });
      else await call(`/schedules/${seg(name)}/${verb}`, { method: "POST" });
      notify(`${name}: ${verb}d`);
    } catch (error) {
      showError(error, name);
    }
    await refresh();
  };
  async function refresh() {
    let list;
    try {
      list = (await call("/schedules", { signal })).schedules;
    } catch (error) {
      if (error.name !== "AbortError") showError(error, "schedules");
      return;
    }
    replace(body, list.length ? list.map((s) => h(
      "tr",
      { dataset: { schedule: s.name } },
      h("td", {}, s.name),
      h("td", {}, s.flow_name, Object.entries(s.params || {}).map(([k, v]) => [" ", h("span", { class: "tag mono", "data-param": k }, `${k}=${typeof v === "string" ? v : JSON.stringify(v)}`)])),
      h("td", { class: "mono" }, s.cron),
      h("td", {}, s.timezone),
      h("td", {}, s.missed),
      h("td", {}, s.paused ? h("span", { class: "muted" }, "paused") : formatTime(s.next_run_at)),
      h("td", {}, formatTime(s.last_tick_at)),
      h("td", {}, s.paused ? "paused" : "active"),
      h("td", {}, canWrite() ? [
        h("button", { type: "button", onclick: () => act(s.name, s.paused ? "resume" : "pause") }, s.paused ? "Resume" : "Pause"),
        h("button", { type: "button", class: "danger", onclick: () => act(s.name, "delete") }, "Delete"),
      ] : ""),
    )) : h("tr", {}, h("td", { colspan: 9, class: "muted" }, "No schedules. Create one with `weir schedule create` or, as an operator, here.")));
  }
  await refresh();
  const stop = whileVisible(refresh, 30_000);
  signal.addEventListener("abort", stop);
}
