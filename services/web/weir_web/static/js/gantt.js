// The attempt Gantt: one row per attempt, drawn from the flow's events as they arrive (no
// log is needed). A canvas in a scroller: only the rows in view are drawn.

import { h, perFrame } from "./dom.js";
import { formatDuration } from "./time.js";

const ROW = 18;
const LABEL = 190;

/**
 * @param {import("./model.js").Attempts} attempts
 * @param {(task: string) => void} open
 */
export function gantt(attempts, open) {
  const canvas = h("canvas", { class: "gantt-canvas" });
  const sizer = h("div", { class: "sizer" });
  const axis = h("div", { class: "gantt-axis muted" });
  const scroller = h("div", { class: "gantt", tabindex: 0 }, canvas, sizer);
  const el = h("div", {}, axis, scroller);
  const ctx = canvas.getContext("2d");
  let rows = [];
  let running = false;
  const css = getComputedStyle(document.documentElement);
  const colour = (s) => css.getPropertyValue(`--s-${s}`).trim() || "#999";

  const draw = perFrame(() => {
    rows = attempts.all().filter((a) => a.started || a.dispatched).sort((x, y) => (x.started || x.dispatched) - (y.started || y.dispatched) || (x.task < y.task ? -1 : 1));
    sizer.style.height = `${rows.length * ROW}px`;
    // As tall as its rows, up to the stylesheet's max-height; then it scrolls.
    scroller.style.height = `${Math.max(2, rows.length) * ROW + 2}px`;
    const ratio = window.devicePixelRatio || 1;
    const vw = scroller.clientWidth, vh = scroller.clientHeight;
    if (canvas.width !== vw * ratio || canvas.height !== vh * ratio) {
      canvas.width = vw * ratio;
      canvas.height = vh * ratio;
    }
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, vw, vh);
    if (!rows.length) {
      axis.textContent = "No attempt has started yet.";
      return;
    }
    const now = Date.now();
    const t0 = Math.min(...rows.map((a) => a.dispatched || a.started));
    running = rows.some((a) => !a.ended);
    const t1 = Math.max(t0 + 1000, ...rows.map((a) => a.ended || now));
    const span = t1 - t0;
    const scale = (vw - LABEL - 10) / span;
    axis.textContent = `${rows.length} attempts over ${formatDuration(span)}` + (running ? " · live" : "");
    const top = scroller.scrollTop;
    const first = Math.floor(top / ROW), last = Math.min(rows.length - 1, Math.ceil((top + vh) / ROW));
    ctx.font = "11px system-ui, sans-serif";
    ctx.textBaseline = "middle";
    for (let i = first; i <= last; i++) {
      const a = rows[i];
      const y = i * ROW - top;
      ctx.fillStyle = "#444";
      const label = `${a.task}${a.attempt > 1 ? ` #${a.attempt}` : ""}`;
      ctx.fillText(label.length > 28 ? label.slice(0, 27) + "…" : label, 4, y + ROW / 2, LABEL - 8);
      if (a.dispatched && a.started) {
        ctx.fillStyle = colour("dispatched");
        ctx.fillRect(LABEL + (a.dispatched - t0) * scale, y + 6, Math.max(1, (a.started - a.dispatched) * scale), ROW - 12);
      }
      if (a.started) {
        ctx.fillStyle = colour(a.status === "snoozed" ? "retrying" : a.status);
        ctx.fillRect(LABEL + (a.started - t0) * scale, y + 3, Math.max(2, ((a.ended || now) - a.started) * scale), ROW - 6);
      }
    }
  });
  scroller.addEventListener("scroll", draw);
  new ResizeObserver(draw).observe(scroller);
  canvas.addEventListener("click", (event) => {
    const rect = scroller.getBoundingClientRect();
    const a = rows[Math.floor((event.clientY - rect.top + scroller.scrollTop) / ROW)];
    if (a) open(a.task);
  });
  // While attempts run their bars grow: redraw each second (not while the tab is hidden).
  const timer = setInterval(() => { if (running && !document.hidden) draw(); }, 1000);
  return { el, update: draw, stop: () => clearInterval(timer) };
}
