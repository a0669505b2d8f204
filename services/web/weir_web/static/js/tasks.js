// Tasks across flows (`weir tasks --where`): the where box kept in the URL, cursor pages,
// the count of each status (on the page, or over every match on asking), each row linking
// to its flow and to its task.

import { call, seg } from "./api.js";
import { h, replace, whileVisible } from "./dom.js";
import { formatDuration, formatTime } from "./time.js";
import { badge, link } from "./ui.js";
import { showProblems } from "./problems.js";

const PAGE = 50;
/** "Count every match" reads pages of this many tasks, up to COUNT_MAX in all. */
const COUNT_PAGE = 1000;
const COUNT_MAX = 10_000;
/** The first page is read again this often while the tab is visible (later pages stay). */
const REFRESH_MS = 5000;

function query(where, cursor, limit = PAGE) {
  const q = new URLSearchParams({ limit: String(limit) });
  if (where) q.set("where", where);
  if (cursor) q.set("cursor", cursor);
  return `/tasks?${q}`;
}

/** Count spans, one per status, in a stable order. */
function countsOf(tasks) {
  const n = {};
  for (const t of tasks) n[t.status] = (n[t.status] || 0) + 1;
  return Object.entries(n).sort().map(([s, c]) => h("span", { class: `count s-${s}`, dataset: { count: s } }, `${s} ${c.toLocaleString()}`));
}

export async function tasksView(root, _params, { signal, navigate }) {
  const url = new URLSearchParams(location.search);
  const where = url.get("where") || "";
  const cursor = url.get("cursor") || "";

  const input = h("input", { name: "where", value: where, class: "wide", placeholder: "status=failed and queue=gpu" });
  const form = h(
    "form",
    { class: "filters" },
    h("label", {}, h("span", {}, "Where (flow, flow_name, name, status, queue, finished>/<; and, or, not)"), input),
    h("button", { type: "submit" }, "Filter"),
    h("a", { href: "/tasks", class: "button" }, "Clear"),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const q = new URLSearchParams();
    if (input.value.trim()) q.set("where", input.value.trim());
    navigate(`/tasks${q.size ? "?" + q : ""}`);
  });

  const problems = h("div", { class: "error", role: "alert", "data-tasks-error": "" });
  const pageCounts = h("span", { class: "counts", "data-counts": "page" });
  const allCounts = h("span", { class: "counts", "data-counts": "all" });
  const countAll = h("button", { type: "button", class: "link", "data-action": "count-all" }, "Count every match");
  const body = h("tbody");
  const table = h(
    "table",
    { class: "tasks" },
    h("thead", {}, h("tr", {}, ["Status", "Task", "Flow", "Queue", "Attempt", "Started", "Duration", "Exit", "Error"].map((t) => h("th", {}, t)))),
    body,
  );
  const pager = h("nav", { class: "pager" });
  const updated = h("span", { class: "live muted" });

  const row = (t) => {
    const end = t.finished_at ? new Date(t.finished_at) : t.started_at ? new Date() : null;
    return h(
      "tr",
      { dataset: { flow: t.flow_id, task: t.name, status: t.status } },
      h("td", {}, badge(t.status)),
      h("td", {}, link(`/flows/${seg(t.flow_id)}/tasks/${seg(t.name)}`, t.name)),
      h("td", {}, link(`/flows/${seg(t.flow_id)}`, t.flow_name), " ", h("span", { class: "mono muted" }, t.flow_id)),
      h("td", {}, t.queue),
      h("td", { class: "num" }, t.attempt),
      h("td", {}, formatTime(t.started_at)),
      h("td", { class: "num" }, end && t.started_at ? formatDuration(end - new Date(t.started_at)) : ""),
      h("td", { class: "num" }, t.exit_code ?? ""),
      h("td", { class: "message" }, [t.error_type ? h("strong", {}, t.error_type) : "", t.error_type && t.error_message ? ": " : "", t.error_message || ""]),
    );
  };

  const renderPager = (next) => {
    const here = new URLSearchParams(location.search);
    here.delete("cursor");
    const nextHere = new URLSearchParams(here);
    if (next) nextHere.set("cursor", next);
    replace(
      pager,
      cursor ? link(`/tasks${here.size ? "?" + here : ""}`, "⟨ First page") : "",
      next ? link(`/tasks?${nextHere}`, "Next page ⟩") : "",
      updated,
    );
  };

  async function refresh() {
    let page;
    try {
      page = await call(query(where, cursor), { signal });
    } catch (error) {
      if (error.name === "AbortError") return;
      showProblems(problems, error);
      replace(body, h("tr", {}, h("td", { colspan: 9, class: "muted" }, "No tasks shown: the query was refused.")));
      return;
    }
    replace(problems);
    replace(body, page.tasks.length ? page.tasks.map(row) : h("tr", {}, h("td", { colspan: 9, class: "muted" }, "No tasks match.")));
    replace(pageCounts, "On this page: ", countsOf(page.tasks));
    renderPager(page.next);
    updated.textContent = cursor ? "" : `updated ${formatTime(new Date().toISOString())}`;
  }

  countAll.addEventListener("click", async () => {
    countAll.disabled = true;
    const seen = [];
    let next = "";
    try {
      do {
        const page = await call(query(where, next, COUNT_PAGE), { signal });
        seen.push(...page.tasks);
        next = page.next || "";
      } while (next && seen.length < COUNT_MAX);
      replace(allCounts, next ? `The first ${seen.length.toLocaleString()} matches (of more): ` : `Every match (${seen.length.toLocaleString()}): `, countsOf(seen));
    } catch (error) {
      if (error.name !== "AbortError") showProblems(problems, error);
    } finally {
      countAll.disabled = false;
    }
  });

  root.append(
    h("h1", {}, "Tasks"),
    h("p", { class: "muted" }, "Tasks across flows, as `weir tasks` lists them: the newest flows' first, each flow's in its order."),
    form,
    problems,
    h("p", { class: "task-counts" }, pageCounts, " ", countAll, " ", allCounts),
    table,
    pager,
  );
  await refresh();
  if (!cursor) {
    const stop = whileVisible(refresh, REFRESH_MS);
    signal.addEventListener("abort", stop);
  }
}
