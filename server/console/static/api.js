// The public HTTP API, with the key of this browser tab's session (sessionStorage: it
// ends with the tab and is never sent as a cookie).
const SESSION = "lorag.console.session";

export function session() {
  const raw = sessionStorage.getItem(SESSION);
  return raw ? JSON.parse(raw) : null;
}

export function saveSession(value) {
  sessionStorage.setItem(SESSION, JSON.stringify(value));
}

export function endSession() {
  sessionStorage.removeItem(SESSION);
}

export class ApiError extends Error {
  constructor(status, error) {
    super(error?.message || `HTTP ${status}`);
    this.status = status;
    this.code = error?.code;
    this.param = error?.param;
  }
}

function headers(key, json) {
  const h = { Authorization: `Bearer ${key}` };
  if (json) h["Content-Type"] = "application/json";
  return h;
}

async function failure(response) {
  let body = null;
  try { body = await response.json(); } catch { /* not JSON */ }
  return new ApiError(response.status, body?.error);
}

/** A JSON call with the session's key (or `key`); throws ApiError on a non-2xx answer. */
export async function call(method, path, body, { key, signal } = {}) {
  const useKey = key ?? session()?.key;
  const isForm = body instanceof FormData;
  const response = await fetch(path, {
    method, signal, headers: headers(useKey, body !== undefined && !isForm),
    body: body === undefined ? undefined : isForm ? body : JSON.stringify(body),
  });
  if (!response.ok) throw await failure(response);
  return response.json();
}

export const get = (path, options) => call("GET", path, undefined, options);
export const post = (path, body, options) => call("POST", path, body, options);
export const put = (path, body, options) => call("PUT", path, body, options);
export const del = (path, options) => call("DELETE", path, undefined, options);

/** Stream a chat completion: `onEvent(chunk)` for each server-sent event until [DONE]. */
export async function streamChat(body, onEvent, { signal } = {}) {
  const response = await fetch("/v1/chat/completions", {
    method: "POST", signal, headers: headers(session()?.key, true),
    body: JSON.stringify({ ...body, stream: true, stream_options: { include_usage: true } }),
  });
  if (!response.ok) throw await failure(response);
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += value;
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const event = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      for (const line of event.split("\n")) {
        if (!line.startsWith("data: ")) continue;
        const data = line.slice(6);
        if (data === "[DONE]") return;
        const chunk = JSON.parse(data);
        if (chunk.error) throw new ApiError(500, chunk.error);
        onEvent(chunk);
      }
    }
  }
}

/** Check a key of the kind the user chose ("tenant" or "admin") with one call that
 * needs it; the session it opens, or null when the server refuses the key. */
export async function signIn(key, kind) {
  try {
    if (kind === "admin") {
      await get("/admin/tenants", { key });
      return { key, kind, tenant: null };
    }
    const models = await get("/v1/models", { key });
    return { key, kind, tenant: models.data[0]?.owned_by ?? null };
  } catch (error) {
    if (error instanceof ApiError && (error.status === 401 || error.status === 403)) return null;
    throw error;
  }
}

export const enc = encodeURIComponent;
