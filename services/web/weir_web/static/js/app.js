// The weir web UI: one page, routed in the browser; each view builds its DOM from the API.

import { canWrite, logout, resume, session, call } from "./api.js";
import { h, replace, whileVisible } from "./dom.js";
import { onZoneChange, setZone, zone } from "./time.js";
import { notify } from "./ui.js";
import { loginView } from "./login.js";
import { flowsView } from "./flows.js";
import { flowView } from "./flow.js";
import { taskView } from "./task.js";
import { schedulesView } from "./schedules.js";
import { submitView } from "./submit.js";
import { tasksView } from "./tasks.js";

const ROUTES = [
  [/^\/login$/, loginView],
  [/^\/flows$/, flowsView],
  [/^\/flows\/([^/]+)$/, flowView],
  [/^\/flows\/([^/]+)\/tasks\/([^/]+)$/, taskView],
  [/^\/schedules$/, schedulesView],
  [/^\/submit$/, submitView],
  [/^\/tasks$/, tasksView],
];

let cleanup = null;
let authenticated = false;

/** Shows the view of the current URL (the previous view stops its streams first). */
async function route() {
  if (cleanup) cleanup();
  cleanup = null;
  const root = document.getElementById("view");
  let path = location.pathname;
  if (path === "/" || path === "") {
    history.replaceState(null, "", "/flows");
    path = "/flows";
  }
  if (!authenticated && path !== "/login") {
    history.replaceState(null, "", `/login?next=${encodeURIComponent(location.pathname + location.search)}`);
    path = "/login";
  }
  for (const [pattern, view] of ROUTES) {
    const match = path.match(pattern);
    if (match) {
      const params = match.slice(1).map(decodeURIComponent);
      const stop = new AbortController();
      root.replaceChildren();
      document.body.dataset.view = view.name;
      cleanup = () => stop.abort();
      await view(root, params, { signal: stop.signal, navigate, onLogin });
      return;
    }
  }
  replace(root, h("h1", {}, "Not found"), h("p", {}, "There is no page at "), h("code", {}, path));
}

/** Goes to `href` inside the app. */
export function navigate(href, { replace: swap = false } = {}) {
  if (swap) history.replaceState(null, "", href);
  else history.pushState(null, "", href);
  route();
}

function onLogin() {
  authenticated = true;
  showWho();
}

function showWho() {
  const who = document.getElementById("whoami");
  who.textContent = session.role ? (session.open ? "admin (open, localhost)" : session.role) : "";
  document.getElementById("logout").hidden = !session.role || session.open;
  document.body.classList.toggle("can-write", canWrite());
}

function showZone() {
  document.getElementById("tz-toggle").textContent = zone() === "utc" ? "UTC" : "Local time";
}

async function checkHealth() {
  const banner = document.getElementById("health");
  if (!authenticated) return;
  let report;
  try {
    report = await call("/health");
  } catch (error) {
    report = error.status === 503 ? null : { status: "unknown" };
    if (error.status === 503) {
      // 503 carries the report too; fetch it raw to show which service is down.
      const response = await fetch("/api/v1/health", { credentials: "same-origin" });
      report = await response.json().catch(() => ({ status: "degraded" }));
    }
  }
  // The API's status follows the scheduler alone; a runner that does not answer is named
  // too (with none, nothing runs).
  const down = Object.entries((report && report.services) || {})
    .filter(([, r]) => r && r.status !== "ok")
    .map(([name, r]) => `${name}: ${r.status}`);
  if (!report || (report.status === "ok" && !down.length)) {
    banner.hidden = true;
    return;
  }
  const status = report.status === "ok" ? "degraded" : report.status;
  replace(banner, h("strong", {}, `weir is ${status}`), down.length ? ` — ${down.join(", ")}` : "");
  banner.hidden = false;
}

function start() {
  document.addEventListener("click", (event) => {
    const a = event.target.closest("a");
    if (!a || a.hasAttribute("download") || a.target || event.ctrlKey || event.metaKey || event.shiftKey) return;
    const url = new URL(a.href, location.href);
    if (url.origin !== location.origin || url.pathname.startsWith("/api/") || url.pathname.startsWith("/static/")) return;
    event.preventDefault();
    navigate(url.pathname + url.search);
  });
  window.addEventListener("popstate", route);
  window.addEventListener("weir:logged-out", () => {
    if (!authenticated) return;
    authenticated = false;
    Object.assign(session, { role: null, csrf: "" });
    showWho();
    notify("Your session has ended; log in again.", "error");
    navigate(`/login?next=${encodeURIComponent(location.pathname + location.search)}`, { replace: true });
  });
  document.getElementById("tz-toggle").addEventListener("click", () => {
    setZone(zone() === "utc" ? "local" : "utc");
  });
  onZoneChange(() => {
    showZone();
    route();
  });
  document.getElementById("logout").addEventListener("click", async () => {
    await logout().catch(() => {});
    authenticated = false;
    showWho();
    navigate("/login", { replace: true });
  });
  showZone();
  whileVisible(checkHealth, 5_000);
}

start();
resume()
  .then((ok) => {
    authenticated = ok;
    showWho();
    if (ok) checkHealth();
  })
  .catch((error) => notify(`weir-web did not answer: ${error.message}`, "error"))
  .finally(route);
