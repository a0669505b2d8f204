// DOM building without HTML parsing: every name, message and log line becomes a text node.

/**
 * An element with attributes, listeners (`onclick`) and children (strings become text).
 * @param {string} tag
 * @param {Record<string, any>} [props]
 * @param {...any} children
 * @returns {HTMLElement}
 */
export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  setProps(el, props);
  append(el, children);
  return el;
}

const SVG_NS = "http://www.w3.org/2000/svg";

/** An SVG element; attributes as `h`. */
export function svg(tag, props = {}, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  setProps(el, props);
  append(el, children);
  return el;
}

function setProps(el, props) {
  for (const [key, value] of Object.entries(props)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") el.setAttribute("class", value);
    else if (key.startsWith("on") && typeof value === "function") {
      el.addEventListener(key.slice(2), value);
    } else if (key === "dataset") Object.assign(el.dataset, value);
    else if (key === "style") throw new Error("no inline styles: use classes (CSP)");
    else el.setAttribute(key, value === true ? "" : String(value));
  }
}

/** Appends children: nodes as they are, strings and numbers as text, arrays flattened. */
export function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

/** Replaces every child of `el`. */
export function replace(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

/** A file download of `text` (a Blob URL; nothing leaves the browser). */
export function download(name, text, type = "application/json") {
  const url = URL.createObjectURL(new Blob([text], { type }));
  const link = h("a", { href: url, download: name });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

/** Runs `fn` at most once per animation frame, however often it is asked. */
export function perFrame(fn) {
  let queued = false;
  return () => {
    if (queued) return;
    queued = true;
    requestAnimationFrame(() => {
      queued = false;
      fn();
    });
  };
}

/**
 * Calls `fn` every `ms` while the tab is visible; pauses while hidden and runs at once on
 * return. Returns a stop function.
 */
export function whileVisible(fn, ms) {
  let timer = null;
  const schedule = () => {
    clearTimeout(timer);
    if (!document.hidden) timer = setTimeout(tick, ms);
  };
  const tick = async () => {
    try {
      await fn();
    } finally {
      schedule();
    }
  };
  const onVisibility = () => {
    if (document.hidden) clearTimeout(timer);
    else tick();
  };
  document.addEventListener("visibilitychange", onVisibility);
  schedule();
  return () => {
    clearTimeout(timer);
    document.removeEventListener("visibilitychange", onVisibility);
  };
}

/**
 * Follows the Server-Sent Events at `url` while the tab is visible: closes the stream when the
 * tab is hidden and opens it again on return. `handlers` maps event names to functions; the
 * server's `ready` event (sent on every connection, the first and each reconnection) is the
 * moment to fetch what may have changed meanwhile. `onState` hears "live", "paused" and
 * "reconnecting". Returns a stop function.
 */
export function followWhileVisible(url, handlers, onState = () => {}) {
  let source = null;
  const open = () => {
    source = new EventSource(url);
    for (const [name, fn] of Object.entries(handlers)) source.addEventListener(name, fn);
    source.addEventListener("ready", () => onState("live"));
    source.addEventListener("error", () => onState(source && source.readyState === EventSource.CLOSED ? "closed" : "reconnecting"));
  };
  const close = () => {
    if (source) source.close();
    source = null;
  };
  const onVisibility = () => {
    if (document.hidden) {
      close();
      onState("paused");
    } else if (!source) {
      open();
    }
  };
  document.addEventListener("visibilitychange", onVisibility);
  if (!document.hidden) open();
  else onState("paused");
  return () => {
    close();
    document.removeEventListener("visibilitychange", onVisibility);
  };
}

/**
 * `fn`, run at most once per `ms` however often it is asked, never twice at once; a request
 * that arrives while it runs (or waits) is served by one more run afterwards.
 */
export function throttled(fn, ms) {
  let last = 0;
  let timer = null;
  let running = false;
  let wanted = false;
  const run = async () => {
    timer = null;
    running = true;
    wanted = false;
    last = Date.now();
    try {
      await fn();
    } finally {
      running = false;
      if (wanted) ask();
    }
  };
  const ask = () => {
    if (running) {
      wanted = true;
      return;
    }
    if (timer) return;
    timer = setTimeout(run, Math.max(0, last + ms - Date.now()));
  };
  ask.cancel = () => {
    clearTimeout(timer);
    timer = null;
    wanted = false;
  };
  return ask;
}
