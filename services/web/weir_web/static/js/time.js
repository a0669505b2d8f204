// Times shown in local time or UTC, as the user chose (kept in localStorage).

const KEY = "weir.tz";
const listeners = new Set();

/** @returns {"local"|"utc"} */
export function zone() {
  return localStorage.getItem(KEY) === "utc" ? "utc" : "local";
}

export function setZone(value) {
  localStorage.setItem(KEY, value);
  for (const fn of listeners) fn(value);
}

export function onZoneChange(fn) {
  listeners.add(fn);
  return () => listeners.delete(fn);
}

const pad = (n) => String(n).padStart(2, "0");

/** `2026-11-30 14:05:09` (local) or `2026-11-30 13:05:09Z` (UTC); "" for none. */
export function formatTime(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return String(iso);
  if (zone() === "utc") {
    return `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())} ` +
      `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())}Z`;
  }
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
    `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

/** `1.2 s`, `3 m 04 s`, `2 h 01 m`. */
export function formatDuration(ms) {
  if (ms === null || ms === undefined || Number.isNaN(ms)) return "";
  if (ms < 1000) return `${Math.max(0, Math.round(ms))} ms`;
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(1)} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} m ${pad(Math.floor(s % 60))} s`;
  return `${Math.floor(m / 60)} h ${pad(m % 60)} m`;
}

/**
 * An ISO instant in UTC from a `datetime-local` input's value, read in the chosen zone.
 * @param {string} value
 */
export function inputToIso(value) {
  if (!value) return "";
  const d = zone() === "utc" ? new Date(`${value}Z`) : new Date(value);
  return Number.isNaN(d.getTime()) ? "" : d.toISOString().replace(/\.\d{3}Z$/, "Z");
}

/** The `datetime-local` value showing an ISO instant in the chosen zone, to the minute (or,
 * with `seconds`, to the second: for an input with `step: 1`). */
export function isoToInput(iso, { seconds = false } = {}) {
  if (!iso) return "";
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return "";
  if (zone() === "utc") return d.toISOString().slice(0, seconds ? 19 : 16);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T` +
    `${pad(d.getHours())}:${pad(d.getMinutes())}` + (seconds ? `:${pad(d.getSeconds())}` : "");
}
