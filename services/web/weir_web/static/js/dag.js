// The flow's graph: laid out by topological depth (a layered layout, left to right), ordered
// within a layer by the mean position of its parents. Small flows are SVG; big ones (up to
// WEIR_MAX_TASKS) are drawn on a canvas, only the nodes in view, redrawn per frame.

import { h, perFrame, svg } from "./dom.js";

export const SVG_MAX_TASKS = 300;

/**
 * Depth of each task (longest path from a root) and its place in its layer.
 * @param {{name: string, depends: string[]}[]} tasks
 * @returns {{layers: string[][], pos: Map<string, {layer: number, row: number}>}}
 */
export function layout(tasks) {
  const depends = new Map(tasks.map((t) => [t.name, t.depends.filter((d) => d !== t.name)]));
  const children = new Map(tasks.map((t) => [t.name, []]));
  const waiting = new Map();
  for (const [name, deps] of depends) {
    const known = deps.filter((d) => children.has(d));
    waiting.set(name, known.length);
    for (const d of known) children.get(d).push(name);
  }
  const depth = new Map();
  const queue = [];
  for (const [name, n] of waiting) if (n === 0) { queue.push(name); depth.set(name, 0); }
  for (let i = 0; i < queue.length; i++) {
    const name = queue[i];
    for (const child of children.get(name)) {
      depth.set(child, Math.max(depth.get(child) ?? 0, depth.get(name) + 1));
      waiting.set(child, waiting.get(child) - 1);
      if (waiting.get(child) === 0) queue.push(child);
    }
  }
  for (const t of tasks) if (!depth.has(t.name)) depth.set(t.name, 0); // a cycle: never in a valid flow
  const layers = [];
  for (const name of queue.length === tasks.length ? queue : tasks.map((t) => t.name)) {
    const d = depth.get(name);
    (layers[d] ||= []).push(name);
  }
  const pos = new Map();
  layers.forEach((layer, index) => {
    if (index > 0) {
      const key = (name) => {
        const parents = depends.get(name).filter((p) => pos.has(p));
        return parents.length ? parents.reduce((s, p) => s + pos.get(p).row, 0) / parents.length : 0;
      };
      const keys = new Map(layer.map((n) => [n, key(n)]));
      layer.sort((a, b) => keys.get(a) - keys.get(b));
    }
    layer.forEach((name, row) => pos.set(name, { layer: index, row }));
  });
  return { layers: layers.filter(Boolean), pos };
}

const SMALL = { w: 150, h: 30, gx: 60, gy: 14, pad: 10 };
const BIG = { w: 130, h: 16, gx: 40, gy: 4, pad: 8 };

/**
 * A graph view of `tasks`; `statusOf(name)` colours it; `open(name)` follows a click.
 * @returns {{el: HTMLElement, update: (names?: Iterable<string>) => void}}
 */
export function graph(tasks, statusOf, open) {
  const { layers, pos } = layout(tasks);
  return tasks.length <= SVG_MAX_TASKS ? svgGraph(tasks, layers, pos, statusOf, open) : canvasGraph(tasks, layers, pos, statusOf, open);
}

function svgGraph(tasks, layers, pos, statusOf, open) {
  const g = SMALL;
  const tallest = Math.max(1, ...layers.map((l) => l.length));
  const width = g.pad * 2 + layers.length * (g.w + g.gx) - g.gx;
  const height = g.pad * 2 + tallest * (g.h + g.gy) - g.gy;
  const xy = (name) => {
    const p = pos.get(name);
    return [g.pad + p.layer * (g.w + g.gx), g.pad + p.row * (g.h + g.gy)];
  };
  const edges = svg("g", { class: "edges" });
  for (const t of tasks) {
    const [x2, y2] = xy(t.name);
    for (const d of t.depends) {
      if (!pos.has(d)) continue;
      const [x1, y1] = xy(d);
      const sx = x1 + g.w, sy = y1 + g.h / 2, ex = x2, ey = y2 + g.h / 2, mx = (sx + ex) / 2;
      edges.append(svg("path", { d: `M${sx},${sy} C${mx},${sy} ${mx},${ey} ${ex},${ey}` }));
    }
  }
  const nodes = new Map();
  const group = svg("g", { class: "nodes" });
  for (const t of tasks) {
    const [x, y] = xy(t.name);
    const node = svg(
      "g",
      { class: `node s-${statusOf(t.name)}`, transform: `translate(${x},${y})`, tabindex: 0, role: "link", "data-task": t.name },
      svg("title", {}, t.name),
      svg("rect", { width: g.w, height: g.h, rx: 5 }),
      svg("text", { x: 10, y: g.h / 2 + 4 }, t.name.length > 20 ? t.name.slice(0, 19) + "…" : t.name),
    );
    node.addEventListener("click", () => open(t.name));
    node.addEventListener("keydown", (e) => { if (e.key === "Enter") open(t.name); });
    nodes.set(t.name, node);
    group.append(node);
  }
  const el = h("div", { class: "graph" }, svg("svg", { width, height, viewBox: `0 0 ${width} ${height}`, class: "dag" }, edges, group));
  const update = (names = nodes.keys()) => {
    for (const name of names) {
      const node = nodes.get(name);
      if (node) node.setAttribute("class", `node s-${statusOf(name)}`);
    }
  };
  return { el, update };
}

/** Canvas colours per status, read once from app.css's custom properties. */
function palette() {
  const style = getComputedStyle(document.documentElement);
  const colour = (status) => style.getPropertyValue(`--s-${status}`).trim() || "#999";
  const names = ["pending", "queued", "dispatched", "running", "retrying", "succeeded", "failed", "skipped", "cancelled"];
  return Object.fromEntries(names.map((n) => [n, colour(n)]));
}

function canvasGraph(tasks, layers, pos, statusOf, open) {
  const g = BIG;
  const tallest = Math.max(1, ...layers.map((l) => l.length));
  const width = g.pad * 2 + layers.length * (g.w + g.gx);
  const height = g.pad * 2 + tallest * (g.h + g.gy);
  const byName = new Map(tasks.map((t) => [t.name, t]));
  const colours = palette();
  const canvas = h("canvas", { class: "dag-canvas" });
  const sizer = h("div", { class: "sizer" });
  const scroller = h("div", { class: "graph big", tabindex: 0 }, canvas, sizer);
  const ctx = canvas.getContext("2d");
  // The overview: one column per depth, its tasks stacked by status; a click goes there.
  const overview = h("canvas", { class: "dag-overview", title: "Tasks by depth and status; click to go to a depth" });
  const octx = overview.getContext("2d");
  const ORDER = ["succeeded", "running", "dispatched", "queued", "retrying", "failed", "cancelled", "skipped", "pending"];
  const drawOverview = () => {
    const ratio = window.devicePixelRatio || 1;
    const w = overview.clientWidth, hgt = overview.clientHeight;
    if (!w) return;
    overview.width = w * ratio;
    overview.height = hgt * ratio;
    octx.setTransform(ratio, 0, 0, ratio, 0, 0);
    octx.clearRect(0, 0, w, hgt);
    const col = w / layers.length;
    layers.forEach((layer, i) => {
      const n = {};
      for (const name of layer) { const s = statusOf(name); n[s] = (n[s] || 0) + 1; }
      let y = hgt;
      for (const s of ORDER) {
        if (!n[s]) continue;
        const bar = (n[s] / tallest) * hgt;
        octx.fillStyle = colours[s] || colours.pending;
        octx.fillRect(i * col, y - bar, Math.max(1, col - (col > 3 ? 1 : 0)), bar);
        y -= bar;
      }
    });
    octx.strokeStyle = "#2b59c3";
    octx.strokeRect((scroller.scrollLeft / width) * w, 0.5, Math.max(4, (scroller.clientWidth / width) * w), hgt - 1);
  };
  overview.addEventListener("click", (event) => {
    const rect = overview.getBoundingClientRect();
    const layer = Math.floor(((event.clientX - rect.left) / rect.width) * layers.length);
    scroller.scrollLeft = g.pad + layer * (g.w + g.gx) - scroller.clientWidth / 3;
  });

  const draw = perFrame(() => {
    const ratio = window.devicePixelRatio || 1;
    const vw = scroller.clientWidth, vh = scroller.clientHeight;
    if (canvas.width !== vw * ratio || canvas.height !== vh * ratio) {
      canvas.width = vw * ratio;
      canvas.height = vh * ratio;
    }
    const left = scroller.scrollLeft, top = scroller.scrollTop;
    ctx.setTransform(ratio, 0, 0, ratio, -left * ratio, -top * ratio);
    ctx.clearRect(left, top, vw, vh);
    const first = Math.max(0, Math.floor((left - g.pad) / (g.w + g.gx)));
    const last = Math.min(layers.length - 1, Math.ceil((left + vw) / (g.w + g.gx)));
    const rowFirst = Math.max(0, Math.floor((top - g.pad) / (g.h + g.gy)));
    const rowLast = Math.ceil((top + vh) / (g.h + g.gy));
    const xy = (p) => [g.pad + p.layer * (g.w + g.gx), g.pad + p.row * (g.h + g.gy)];
    ctx.strokeStyle = "rgba(120,120,140,0.35)";
    ctx.lineWidth = 1;
    ctx.beginPath();
    let edgesDrawn = 0;
    for (let l = first; l <= last; l++) {
      const layer = layers[l];
      for (let r = rowFirst; r <= Math.min(rowLast, layer.length - 1); r++) {
        const t = byName.get(layer[r]);
        const [x2, y2] = xy(pos.get(t.name));
        for (const d of t.depends) {
          const p = pos.get(d);
          if (!p || edgesDrawn > 5000) continue;
          const [x1, y1] = xy(p);
          ctx.moveTo(x1 + g.w, y1 + g.h / 2);
          ctx.lineTo(x2, y2 + g.h / 2);
          edgesDrawn++;
        }
      }
    }
    ctx.stroke();
    drawOverview();
    ctx.font = "11px system-ui, sans-serif";
    ctx.textBaseline = "middle";
    for (let l = first; l <= last; l++) {
      const layer = layers[l];
      for (let r = rowFirst; r <= Math.min(rowLast, layer.length - 1); r++) {
        const name = layer[r];
        const [x, y] = xy(pos.get(name));
        ctx.fillStyle = colours[statusOf(name)] || colours.pending;
        ctx.fillRect(x, y, g.w, g.h);
        ctx.fillStyle = "#111";
        ctx.fillText(name.length > 20 ? name.slice(0, 19) + "…" : name, x + 4, y + g.h / 2, g.w - 8);
      }
    }
  });
  scroller.addEventListener("scroll", draw);
  new ResizeObserver(draw).observe(scroller);
  canvas.addEventListener("click", (event) => {
    const rect = scroller.getBoundingClientRect();
    const x = event.clientX - rect.left + scroller.scrollLeft - g.pad;
    const y = event.clientY - rect.top + scroller.scrollTop - g.pad;
    const layer = layers[Math.floor(x / (g.w + g.gx))];
    const row = Math.floor(y / (g.h + g.gy));
    if (layer && layer[row] && x % (g.w + g.gx) <= g.w && y % (g.h + g.gy) <= g.h) open(layer[row]);
  });
  // The sizer gives the scroller its full extent; its size is set through the CSSOM (no inline styles in markup).
  sizer.style.width = `${width}px`;
  sizer.style.height = `${height}px`;
  return { el: h("div", {}, overview, scroller), update: () => draw(), layers };
}
