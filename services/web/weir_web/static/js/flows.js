// The flow list: filters kept in the URL, cursor pages, live by push while the tab is
// visible, and bulk cancel / rerun of a selection (or of every flow matching the filter).

import { API, call, canWrite, seg } from "./api.js";
import { followWhileVisible, h, replace, throttled } from "./dom.js";
import { formatDuration, formatTime, inputToIso, isoToInput } from "./time.js";
import { badge, confirmAction, link, notify, showError } from "./ui.js";

const STATUSES = ["", "scheduled", "pending", "running", "paused", "succeeded", "failed", "cancelling", "cancelled", "rejected", "duplicate"];
const ACTIVE = new Set(["scheduled", "pending", "running", "paused", "cancelling"]);
const PAGE = 50;
/** The list is fetched again at most this often however many flows change. */
const REFRESH_MIN_MS = 1000;
const MATCHING_MAX = 10_000;
const PAGE_MAX = 500;
/** sessionStorage key prefix: the page before the page of a URL. */
const PREVIOUS = "weir.flows.previous:";

const COUNTED_FIRST = ["running", "succeeded", "failed"];

/** How many of a flow's tasks are in each status, as `weir flows` shows them: running,
 * succeeded and failed first, then any other status some task is in. */
function taskCounts(counts) {
  const statuses = Object.keys(counts || {}).sort(
    (a, b) => (COUNTED_FIRST.indexOf(a) + 1 || 99) - (COUNTED_FIRST.indexOf(b) + 1 || 99) || a.localeCompare(b),
  );
  return h("span", { class: "counts inline" }, statuses.map((s) => h("span", { class: `count s-${s}`, title: s }, `${counts[s]} ${s}`)));
}

/** `text` as a quoted value of the `--where` language (a name may hold spaces or quotes). */
export const quoteValue = (text) => `"${text.replace(/[\\"]/g, "\\$&")}"`;

/** The API's `where` for the form's fields (the `--where` language of `weir flows`). */
export function whereOf(filters) {
  const parts = [];
  if (filters.name) parts.push(`name=${quoteValue(filters.name)}`);
  if (filters.tag) parts.push(`tag=${filters.tag.split(/[\s,]+/).filter(Boolean).map(quoteValue).join(",")}`);
  if (filters.after) parts.push(`created>${filters.after}`);
  if (filters.before) parts.push(`created<${filters.before}`);
  if (filters.where) parts.push(`(${filters.where})`);
  return parts.join(" and ");
}

function queryOf(filters, cursor, limit = PAGE) {
  const q = new URLSearchParams({ limit: String(limit) });
  if (filters.status) q.set("status", filters.status);
  const where = whereOf(filters);
  if (where) q.set("where", where);
  if (cursor) q.set("cursor", cursor);
  return `/flows?${q}`;
}

export async function flowsView(root, _params, { signal, navigate }) {
  const url = new URLSearchParams(location.search);
  const filters = {
    status: url.get("status") || "",
    name: url.get("name") || "",
    tag: url.get("tag") || "",
    after: url.get("after") || "",
    before: url.get("before") || "",
    where: url.get("where") || "",
  };
  const cursor = url.get("cursor") || "";
  const selected = new Set();

  // Filters ---------------------------------------------------------------------------
  const field = (label, input) => h("label", {}, h("span", {}, label), input);
  const status = h("select", { name: "status" }, STATUSES.map((s) => h("option", { value: s }, s || "any")));
  status.value = filters.status;
  const name = h("input", { name: "name", value: filters.name, placeholder: "etl" });
  const tag = h("input", { name: "tag", value: filters.tag, placeholder: "nightly,prod" });
  // To the second: a bound from a shared link survives a change of another filter.
  const after = h("input", { name: "after", type: "datetime-local", step: 1, value: isoToInput(filters.after, { seconds: true }) });
  const before = h("input", { name: "before", type: "datetime-local", step: 1, value: isoToInput(filters.before, { seconds: true }) });
  const where = h("input", { name: "where", value: filters.where, placeholder: "status=failed or anytag=a,b", class: "wide" });
  const form = h(
    "form",
    { class: "filters" },
    field("Status", status),
    field("Name", name),
    field("Tags (all of)", tag),
    field("Created after", after),
    field("Created before", before),
    field("Where", where),
    h("button", { type: "submit" }, "Filter"),
    h("a", { href: "/flows", class: "button" }, "Clear"),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const q = new URLSearchParams();
    const values = {
      status: status.value,
      name: name.value.trim(),
      tag: tag.value.trim(),
      after: inputToIso(after.value),
      before: inputToIso(before.value),
      where: where.value.trim(),
    };
    for (const [k, v] of Object.entries(values)) if (v) q.set(k, v);
    navigate(`/flows${q.size ? "?" + q : ""}`);
  });

  // Bulk actions ----------------------------------------------------------------------
  const count = h("span", { class: "muted" });
  const bulkCancel = h("button", { type: "button", class: "write danger", disabled: true }, "Cancel selected");
  const bulkRerun = h("button", { type: "button", class: "write", disabled: true }, "Rerun selected");
  const bulkRerunFailed = h("button", { type: "button", class: "write", disabled: true }, "Rerun failed");
  const selectMatching = h("button", { type: "button", class: "write link" }, "Select every flow matching the filter");
  const bulk = h("div", { class: "bulk" }, count, bulkCancel, bulkRerun, bulkRerunFailed, selectMatching);
  const showSelection = () => {
    count.textContent = selected.size ? `${selected.size} selected` : "";
    bulkCancel.disabled = bulkRerun.disabled = bulkRerunFailed.disabled = selected.size === 0;
  };

  /** `verb` (cancel, rerun) of each selected flow; `body` is the request's (rerun: failed_only). */
  const runBulk = async (verb, what, body = {}) => {
    const ids = [...selected];
    const ok = await confirmAction(`${what} ${ids.length} flow(s)?`, ids.slice(0, 10).join(", ") + (ids.length > 10 ? ", …" : ""), what);
    if (!ok) return;
    let done = 0;
    const failures = [];
    for (const id of ids) {
      try {
        await call(`/flows/${seg(id)}/${verb}`, { method: "POST", body });
        done += 1;
      } catch (error) {
        failures.push(`${id}: ${error.message}`);
      }
    }
    selected.clear();
    notify(`${what}: ${done} done` + (failures.length ? `, ${failures.length} failed (${failures.slice(0, 3).join("; ")})` : ""), failures.length ? "error" : "info");
    await refresh();
  };
  bulkCancel.addEventListener("click", () => runBulk("cancel", "Cancel"));
  bulkRerun.addEventListener("click", () => runBulk("rerun", "Rerun"));
  bulkRerunFailed.addEventListener("click", () => runBulk("rerun", "Rerun failed", { failed_only: true }));
  selectMatching.addEventListener("click", async () => {
    let next = "";
    try {
      do {
        const page = await call(queryOf(filters, next, PAGE_MAX), { signal });
        for (const f of page.flows) selected.add(f.id);
        next = page.next || "";
      } while (next && selected.size < MATCHING_MAX);
    } catch (error) {
      showError(error, "selecting");
    }
    showSelection();
    renderRows();
  });

  // The table -------------------------------------------------------------------------
  const body = h("tbody");
  const all = h("input", { type: "checkbox", class: "write", "aria-label": "select this page" });
  const table = h(
    "table",
    { class: "flows" },
    h("thead", {}, h("tr", {}, h("th", { class: "write" }, all), ["Status", "Name", "Tags", "Tasks", "Created", "Duration", "Id"].map((t) => h("th", {}, t)))),
    body,
  );
  const pager = h("nav", { class: "pager" });
  const live = h("span", { class: "live muted" });
  let flows = [];
  let nextCursor = null;

  const renderRows = () => {
    const rows = flows.map((f) => {
      const box = h("input", { type: "checkbox", class: "write", "aria-label": `select ${f.id}` });
      box.checked = selected.has(f.id);
      box.addEventListener("change", () => {
        if (box.checked) selected.add(f.id);
        else selected.delete(f.id);
        showSelection();
      });
      const end = f.finished_at ? new Date(f.finished_at) : ACTIVE.has(f.status) ? new Date() : null;
      return h(
        "tr",
        { dataset: { flow: f.id, status: f.status } },
        h("td", { class: "write" }, box),
        h("td", {}, badge(f.status)),
        h("td", {}, link(`/flows/${seg(f.id)}`, f.name)),
        h("td", {}, (f.tags || []).map((t) => h("span", { class: "tag" }, t))),
        h("td", { class: "num" }, f.task_count, taskCounts(f.task_counts)),
        h("td", {}, formatTime(f.created_at)),
        h("td", { class: "num" }, end ? formatDuration(end - new Date(f.created_at)) : ""),
        h("td", { class: "mono" }, f.id),
      );
    });
    replace(body, rows.length ? rows : h("tr", {}, h("td", { colspan: 8, class: "muted" }, "No flows match.")));
    all.checked = flows.length > 0 && flows.every((f) => selected.has(f.id));
  };
  all.addEventListener("change", () => {
    for (const f of flows) {
      if (all.checked) selected.add(f.id);
      else selected.delete(f.id);
    }
    showSelection();
    renderRows();
  });

  const renderPager = () => {
    const here = new URLSearchParams(location.search);
    here.delete("cursor");
    const first = `/flows${here.size ? "?" + here : ""}`;
    const nextHere = new URLSearchParams(here);
    if (nextCursor) nextHere.set("cursor", nextCursor);
    const next = `/flows?${nextHere}`;
    // A cursor leads forward only: each page notes itself as the previous one of the page
    // after it (for this tab, so it holds through a reload).
    if (nextCursor) sessionStorage.setItem(`${PREVIOUS}${next}`, location.pathname + location.search);
    const previous = cursor ? sessionStorage.getItem(`${PREVIOUS}${location.pathname}${location.search}`) : null;
    replace(
      pager,
      cursor ? link(first, "⟨ First page") : "",
      previous ? link(previous, "‹ Previous page") : "",
      nextCursor ? link(next, "Next page ⟩") : "",
      live,
    );
  };

  async function refresh() {
    try {
      const page = await call(queryOf(filters, cursor), { signal });
      flows = page.flows;
      nextCursor = page.next;
      renderRows();
      renderPager();
      if (!cursor) live.textContent = `live · updated ${formatTime(new Date().toISOString())}`;
    } catch (error) {
      if (error.name === "AbortError") return;
      const shown = await ownColumns(error);
      showError(shown, "flows");
      if (error.status === 400) {
        // No rows of the filter before: the form now says something else.
        flows = [];
        nextCursor = null;
        replace(body, h("tr", {}, h("td", { colspan: 8, class: "muted" }, `The filter was refused: ${shown.message}`)));
        renderPager();
      }
    }
  }

  /** A refused `where` names a column of the whole expression the form built; the Where
   * box's own error, if it has one, names the column of what was typed there. */
  async function ownColumns(error) {
    if (error.status !== 400 || !filters.where) return error;
    try {
      await call(`/flows?${new URLSearchParams({ limit: "1", where: filters.where })}`, { signal });
    } catch (own) {
      if (own.status === 400) return own;
    }
    return error;
  }

  root.append(h("h1", {}, "Flows"), form, canWrite() ? bulk : "", table, pager);
  showSelection();
  await refresh();
  // The first page follows new flows and status changes, pushed by weir-web (the list
  // stream of GET /flows); later pages stay as they were (a cursor page is a fixed window).
  // While the tab is hidden the stream is closed; on return it opens again, and its `ready`
  // fetches the page once, so nothing that changed meanwhile is missed.
  if (!cursor) {
    const again = throttled(refresh, REFRESH_MIN_MS);
    const onState = (state) => {
      table.dataset.live = state;
      if (state === "paused") again.cancel(); // nothing is fetched while the tab is hidden
      if (state === "paused") live.textContent = "paused while the tab is hidden";
      else if (state === "reconnecting") live.textContent = "reconnecting…";
      else if (state === "closed") live.textContent = "not live: reload the page";
    };
    const stop = followWhileVisible(`${API}/flows`, { ready: again, change: again, resync: again }, onState);
    signal.addEventListener("abort", () => {
      stop();
      again.cancel();
    });
  }
}
