// Small shared pieces: status badges, notices, the confirmation dialog, links.

import { h, replace } from "./dom.js";

/** A status badge; its class colours it (app.css). */
export function badge(status) {
  return h("span", { class: `badge s-${status}` }, status);
}

/** A link inside the app (the router intercepts it). */
export function link(href, ...children) {
  return h("a", { href }, ...children);
}

let noticeTimer = null;

/** A message at the top of the page; errors stay until dismissed or replaced. */
export function notify(message, kind = "info") {
  const box = document.getElementById("notice");
  clearTimeout(noticeTimer);
  replace(
    box,
    h("span", {}, message),
    h("button", { type: "button", class: "link", onclick: () => (box.hidden = true) }, "dismiss"),
  );
  box.className = `notice-${kind}`;
  box.hidden = false;
  if (kind !== "error") noticeTimer = setTimeout(() => (box.hidden = true), 6000);
}

/** Tells the user about a failed call, with every problem the API listed. */
export function showError(error, what = "") {
  const problems = (error.problems || []).map((p) => `${p.path || ""} ${p.message}`.trim());
  const text = [what ? `${what}: ${error.message}` : error.message, ...problems].join(" — ");
  notify(text, "error");
}

/**
 * Asks before a write. Resolves true if the user confirmed.
 * @param {string} title
 * @param {string} detail
 * @param {string} action the confirm button's label
 */
export function confirmAction(title, detail, action) {
  return new Promise((resolve) => {
    const dialog = h(
      "dialog",
      { class: "confirm" },
      h("h2", {}, title),
      h("p", {}, detail),
    );
    const done = (value) => {
      dialog.close();
      dialog.remove();
      resolve(value);
    };
    const buttons = h(
      "div",
      { class: "buttons" },
      h("button", { type: "button", onclick: () => done(false) }, "Keep"),
      h("button", { type: "button", class: "danger", "data-confirm": "", onclick: () => done(true) }, action),
    );
    dialog.append(buttons);
    dialog.addEventListener("cancel", () => done(false));
    document.body.append(dialog);
    dialog.showModal();
  });
}

/** A key/value table; rows without a value (none, "" or []) are left out. */
export function facts(rows) {
  const empty = (v) => v === null || v === undefined || v === "" || (Array.isArray(v) && v.length === 0);
  return h(
    "dl",
    { class: "facts" },
    rows.filter(([, v]) => !empty(v)).map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]),
  );
}
