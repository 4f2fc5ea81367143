// The API over fetch(): the credential the person signed in with, kept in sessionStorage
// only (it goes when the tab closes), sent on every request as Bearer or Basic.
// credentials: "omit" keeps the browser's own login dialog and cached logins out of it.

const STORAGE = "cc2api.console.credential";

export function loadCredential() {
  try {
    const value = JSON.parse(sessionStorage.getItem(STORAGE) ?? "null");
    return value && (value.kind === "key" || value.kind === "admin") ? value : null;
  } catch {
    return null;
  }
}

export function saveCredential(credential) {
  sessionStorage.setItem(STORAGE, JSON.stringify(credential));
}

export function forgetCredential() {
  sessionStorage.removeItem(STORAGE);
}

function base64(text) {
  let binary = "";
  for (const byte of new TextEncoder().encode(text)) binary += String.fromCharCode(byte);
  return btoa(binary);
}

export function authorization(credential) {
  if (credential.kind === "key") return `Bearer ${credential.token}`;
  return `Basic ${base64(`${credential.user}:${credential.password}`)}`;
}

/** An answer that is not 2xx: the server's status, code and detail. */
export class ApiError extends Error {
  constructor(status, code, detail) {
    super(detail || `HTTP ${status}`);
    this.status = status;
    this.code = code;
    this.detail = detail;
  }
}

async function failure(response) {
  const text = await response.text().catch(() => "");
  let body = null;
  try {
    body = JSON.parse(text);
  } catch {
    body = null;
  }
  return new ApiError(response.status, body?.code ?? "http_error", body?.detail ?? text);
}

export class Api {
  constructor(credential) {
    this.credential = credential;
  }

  headers(extra = {}) {
    return { Authorization: authorization(this.credential), ...extra };
  }

  async request(method, path, { params, body, signal } = {}) {
    const query = params ? new URLSearchParams(
      Object.entries(params).filter(([, v]) => v !== undefined && v !== null && v !== ""),
    ).toString() : "";
    const init = { method, headers: this.headers(), credentials: "omit", cache: "no-store", signal };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const response = await fetch(query ? `${path}?${query}` : path, init);
    if (!response.ok) throw await failure(response);
    const text = await response.text();
    return text ? JSON.parse(text) : null;
  }

  get(path, params, signal) {
    return this.request("GET", path, { params, signal });
  }

  post(path, body) {
    return this.request("POST", path, { body });
  }

  delete(path) {
    return this.request("DELETE", path);
  }

  /** Open a run's event stream after event ``lastId`` (0: from its start). */
  async events(processId, lastId, signal) {
    const headers = this.headers({ Accept: "text/event-stream" });
    if (lastId > 0) headers["Last-Event-ID"] = String(lastId);
    const response = await fetch(`/chat/${encodeURIComponent(processId)}/events`, {
      headers, signal, credentials: "omit", cache: "no-store",
    });
    if (!response.ok) throw await failure(response);
    return response;
  }
}

export function runPath(processId, rest = "") {
  return `/chat/${encodeURIComponent(processId)}${rest}`;
}
