// A task attempt's log on the page: followed live or fetched once, shown as a terminal would
// show it, at most LOG_RENDER_MAX characters of it, with Copy and Download raw.

import { API, readText, seg } from "./api.js";
import { h, perFrame } from "./dom.js";

/** At most this many characters of a log are on the page; the rest is in the download. */
export const LOG_RENDER_MAX = 1_000_000;

/**
 * The line being written, as a terminal shows it: a bare "\r" moves back to the line's
 * start and what follows overwrites it ("10%\r20%" shows "20%", "abcdef\rXY" shows
 * "XYcdef"); "\r\n" ends a line like "\n". Escape sequences are shown as they are.
 */
export class TerminalLine {
  constructor() {
    this.line = "";
    this.col = 0;
  }

  /** Feeds `data`; returns the lines it completed, each ending in "\n". */
  write(data) {
    if (!data.includes("\r") && this.col === this.line.length) {
      const end = data.lastIndexOf("\n");
      if (end < 0) {
        this.line += data;
      } else {
        const done = this.line + data.slice(0, end + 1);
        this.line = data.slice(end + 1);
        this.col = this.line.length;
        return this.#bounded(done);
      }
      this.col = this.line.length;
      return this.#bounded("");
    }
    let done = "";
    for (const piece of data.split(/(\r|\n)/)) {
      if (piece === "\r") {
        this.col = 0;
      } else if (piece === "\n") {
        done += this.line + "\n";
        this.line = "";
        this.col = 0;
      } else if (piece) {
        this.line = this.line.slice(0, this.col) + piece + this.line.slice(this.col + piece.length);
        this.col += piece.length;
      }
    }
    return this.#bounded(done);
  }

  // A line longer than the panel keeps is handed on as it is, so memory stays bounded.
  #bounded(done) {
    if (this.line.length <= LOG_RENDER_MAX) return done;
    done += this.line;
    this.line = "";
    this.col = 0;
    return done;
  }
}

/**
 * A log that follows while the attempt runs (SSE) or is fetched once when it has ended.
 * It stays where the reader scrolled to (it only follows the bottom when the reader is
 * there), keeps at most LOG_RENDER_MAX characters on the page and in memory (the oldest
 * lines go, with a notice linking to the raw download), copies what it shows, and downloads
 * the raw log.
 */
export function logTail(flowId, task, attempt, finished) {
  const path = `/flows/${seg(flowId)}/tasks/${seg(task)}/logs?attempt=${attempt}`;
  const pre = h("pre", { class: "log", tabindex: 0, "data-log": "" });
  const state = h("span", { class: "muted" }, finished ? "loading…" : "following…");
  const rawUrl = `${API}${path}`;
  const filename = `${flowId}-${task}-${attempt}.log`;
  const dropped = h("p", { class: "muted", hidden: true, "data-log-cut": "" },
    `Earlier output is not shown: this panel keeps the last ${LOG_RENDER_MAX.toLocaleString()} characters (Copy takes only those). `,
    h("a", { href: rawUrl, download: filename }, "Download the raw log"), " for all of it.");
  const terminal = new TerminalLine();
  const open = h("span"); // the line being written, redrawn on each write
  pre.append(open);
  let rendered = 0; // characters in the finished spans
  let pending = []; // [stream, text] received since the last frame
  let pendingChars = 0;
  let received = 0;

  const copy = h("button", { type: "button", onclick: async () => {
    await navigator.clipboard.writeText(pre.textContent);
    copy.textContent = "Copied";
    setTimeout(() => (copy.textContent = "Copy"), 1500);
  } }, "Copy");
  const raw = h("a", { href: rawUrl, download: filename, class: "button" }, "Download raw");
  const el = h("div", {}, h("div", { class: "log-bar" }, state, copy, raw), dropped, pre);

  const cutShown = () => { dropped.hidden = false; };
  /** Drops the oldest characters down to `keep`, at a line's start where there is one. */
  const trim = (keep) => {
    while (rendered > keep && pre.firstChild !== open) {
      const first = pre.firstChild;
      const text = first.textContent;
      const over = rendered - keep;
      if (over >= text.length) {
        first.remove();
        rendered -= text.length;
      } else {
        const nl = text.indexOf("\n", over - 1);
        let from = nl >= 0 && (nl + 1 < text.length || first.nextSibling !== open) ? nl + 1 : over;
        if (from < text.length && /[\uDC00-\uDFFF]/.test(text[from])) from += 1; // not inside a pair
        first.textContent = text.slice(from);
        rendered -= from;
        if (!first.textContent) first.remove();
      }
      cutShown();
    }
  };
  const atBottom = () => pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 8;
  const flush = perFrame(() => {
    const follow = atBottom();
    const fragment = document.createDocumentFragment();
    for (const [stream, data] of pending) {
      const done = terminal.write(data);
      if (done) {
        const span = document.createElement("span");
        if (stream === "stderr") span.className = "stderr";
        span.textContent = done;
        fragment.append(span);
        rendered += done.length;
      }
      open.className = stream === "stderr" ? "stderr" : "";
    }
    pending = [];
    pendingChars = 0;
    open.before(fragment);
    open.textContent = terminal.line;
    // Trim from the top only while the reader is at the bottom (or past twice the cap):
    // trimming above a reader who scrolled up would move the text under their eyes.
    trim(follow ? LOG_RENDER_MAX - open.textContent.length : LOG_RENDER_MAX * 2);
    if (follow) pre.scrollTop = pre.scrollHeight;
  });
  const add = (stream, data) => {
    received += data.length;
    pending.push([stream, data]);
    pendingChars += data.length;
    // A hidden tab draws no frames: what it could never show is not kept either.
    while (pendingChars > LOG_RENDER_MAX * 2 && pending.length > 1) {
      pendingChars -= pending.shift()[1].length;
      cutShown();
    }
    flush();
  };
  const reset = () => {
    pending = [];
    pendingChars = 0;
    rendered = 0;
    received = 0;
    Object.assign(terminal, new TerminalLine());
    open.textContent = "";
    pre.replaceChildren(open);
    dropped.hidden = true;
  };

  let source = null;
  const controller = new AbortController();
  if (finished) {
    // An ended attempt's log does not change: fetched once, never polled, read as it
    // arrives so that only what the panel keeps is held.
    readText(path, controller.signal, (chunk) => add("stdout", chunk))
      .then(() => { state.textContent = received ? `${received.toLocaleString()} characters` : "empty"; })
      .catch((error) => { if (error.name !== "AbortError") state.textContent = error.message; });
  } else {
    let opened = 0;
    source = new EventSource(`${rawUrl}&follow=true`);
    source.addEventListener("open", () => {
      // A reconnect replays the log from its start: start over rather than repeat it.
      if (opened++ > 0) reset();
    });
    // Each event's data is a JSON string (a bare "\r" cannot travel in SSE as it is).
    source.addEventListener("stdout", (m) => add("stdout", JSON.parse(m.data)));
    source.addEventListener("stderr", (m) => add("stderr", JSON.parse(m.data)));
    source.addEventListener("end", () => {
      source.close();
      state.textContent = "ended";
    });
  }
  const stop = () => {
    controller.abort();
    if (source) source.close();
  };
  return { el, stop };
}
