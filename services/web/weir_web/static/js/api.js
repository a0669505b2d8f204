// The HTTP API (/api/v1) as the page uses it: the session cookie, the CSRF token for writes.

export const API = "/api/v1";

/** Who is logged in: role "viewer" | "operator" | "admin", or null before login. */
export const session = { role: null, csrf: "", open: false };

export class ApiError extends Error {
  constructor(status, code, message, problems, detail) {
    super(message);
    this.status = status;
    this.code = code;
    this.problems = problems || [];
    /** The whole `error` object (e.g. a duplicate's `existing`, a rejection's `flow_id`). */
    this.detail = detail || {};
  }
}

/** Whether the caller may submit, cancel, rerun and change schedules. */
export function canWrite() {
  return session.role === "operator" || session.role === "admin";
}

async function failure(response) {
  let body = null;
  try {
    body = await response.json();
  } catch {
    /* not JSON */
  }
  const error = body && body.error ? body.error : {};
  return new ApiError(
    response.status,
    error.code || "http_" + response.status,
    error.message || `${response.status} ${response.statusText}`,
    error.problems,
    error,
  );
}

/** GET (or another method) of an API path; the decoded JSON, or null for 204. `text` is
 * sent as it is (a YAML flow spec) instead of `body` as JSON. */
export async function call(path, { method = "GET", body, text, signal } = {}) {
  const headers = { Accept: "application/json" };
  if (method !== "GET") {
    headers["Content-Type"] = text === undefined ? "application/json" : "application/yaml";
    if (session.csrf) headers["X-CSRF-Token"] = session.csrf;
  }
  const response = await fetch(API + path, {
    method,
    headers,
    body: text !== undefined ? text : body === undefined ? undefined : JSON.stringify(body),
    credentials: "same-origin",
    signal,
  });
  if (response.status === 401 && path !== "/session") {
    window.dispatchEvent(new CustomEvent("weir:logged-out"));
  }
  if (!response.ok) throw await failure(response);
  if (response.status === 204) return null;
  return response.json();
}

/** GETs an API path as text (a finished log), handing each decoded piece to `onText` as
 * it arrives, so that a caller keeps only what it needs of a big body. */
export async function readText(path, signal, onText) {
  const response = await fetch(API + path, { credentials: "same-origin", signal });
  if (!response.ok) throw await failure(response);
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) return;
    if (value) onText(value);
  }
}

/** Finds out who we are: a session cookie, or an open (tokenless) weir-web on localhost. */
export async function resume() {
  try {
    const found = await call("/session");
    Object.assign(session, { role: found.role, csrf: found.csrf, open: false });
    return true;
  } catch (error) {
    if (!(error instanceof ApiError) || error.status !== 401) throw error;
  }
  // Without WEIR_WEB_TOKENS every local caller is an admin and needs no session.
  const response = await fetch(API + "/flows?limit=1", { credentials: "same-origin" });
  if (response.ok) {
    Object.assign(session, { role: "admin", csrf: "", open: true });
    return true;
  }
  return false;
}

export async function login(token) {
  const found = await call("/session", { method: "POST", body: { token } });
  Object.assign(session, { role: found.role, csrf: found.csrf, open: false });
}

export async function logout() {
  try {
    await call("/session", { method: "DELETE" });
  } finally {
    Object.assign(session, { role: null, csrf: "", open: false });
  }
}

/** `encodeURIComponent` for path segments. */
export const seg = encodeURIComponent;
