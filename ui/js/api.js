// The dashboard's only way into Comet: the public REST API under /api/v1, with the signed-in
// user's bearer token (kept in sessionStorage: gone when the tab closes, never in a cookie).
const BASE = "/api/v1";
const ACCESS = "comet.access_token";
const REFRESH = "comet.refresh_token";

export class ApiError extends Error {
  constructor(status, problem) {
    super(problem?.detail || problem?.title || `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
  }
}

export function signedIn() {
  return sessionStorage.getItem(ACCESS) !== null;
}

function keep(pair) {
  sessionStorage.setItem(ACCESS, pair.access_token);
  sessionStorage.setItem(REFRESH, pair.refresh_token);
}

export function forget() {
  sessionStorage.removeItem(ACCESS);
  sessionStorage.removeItem(REFRESH);
}

async function problemOf(response) {
  try {
    return await response.json();
  } catch {
    return null;
  }
}

export async function signIn(email, password) {
  const response = await fetch(`${BASE}/auth/login`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ email, password }),
  });
  if (!response.ok) throw new ApiError(response.status, await problemOf(response));
  keep(await response.json());
}

// The OAuth providers configured on this Comet (public; [] when none or unreachable).
export async function oauthProviders() {
  try {
    const response = await fetch(`${BASE}/auth/providers`);
    return response.ok ? (await response.json()).data : [];
  } catch {
    return [];
  }
}

// Where a provider's button leads: the API's authorize route, told the dashboard started it.
export function oauthStart(name) {
  return `${BASE}/auth/oauth/${encodeURIComponent(name)}/authorize?return_to=ui`;
}

// Trade the one-time code the OAuth callback put in the page's URL for the token pair.
export async function exchangeOAuthCode(code) {
  const response = await fetch(`${BASE}/auth/oauth/exchange`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ code }),
  });
  if (!response.ok) throw new ApiError(response.status, await problemOf(response));
  keep(await response.json());
}

export async function signOut() {
  const refresh = sessionStorage.getItem(REFRESH);
  try {
    await request("/auth/logout", { method: "POST", body: refresh ? { refresh_token: refresh } : {} });
  } finally {
    forget();
  }
}

let refreshing = null;

// One refresh at a time: the API rotates the pair, and re-using a spent refresh token revokes it.
async function refresh() {
  const token = sessionStorage.getItem(REFRESH);
  if (!token) return false;
  refreshing ??= fetch(`${BASE}/auth/refresh`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ refresh_token: token }),
  })
    .then(async (r) => {
      if (!r.ok) return false;
      keep(await r.json());
      return true;
    })
    .catch(() => false)
    .finally(() => {
      refreshing = null;
    });
  return refreshing;
}

async function send(path, { method = "GET", body, headers = {}, signal } = {}) {
  const h = { ...headers };
  const token = sessionStorage.getItem(ACCESS);
  if (token) h.Authorization = `Bearer ${token}`;
  if (body !== undefined) h["Content-Type"] = "application/json";
  return fetch(`${BASE}${path}`, {
    method, headers: h, signal, body: body === undefined ? undefined : JSON.stringify(body),
  });
}

// A call to the API; 401 refreshes the session once, then sends the user to sign in.
export async function raw(path, options = {}) {
  let response = await send(path, options);
  if (response.status === 401 && (await refresh())) response = await send(path, options);
  if (response.status === 401) {
    forget();
    window.dispatchEvent(new CustomEvent("comet:signed-out"));
  }
  if (!response.ok) throw new ApiError(response.status, await problemOf(response));
  return response;
}

export async function request(path, options = {}) {
  const response = await raw(path, options);
  return response.status === 204 ? null : response.json();
}

// Server-Sent Events over fetch (EventSource cannot send an Authorization header): yields
// {id, event, data} frames until the server ends the stream or `signal` aborts it.
export async function* events(path, { signal, lastEventId } = {}) {
  const headers = { Accept: "text/event-stream" };
  if (lastEventId) headers["Last-Event-ID"] = lastEventId;
  const response = await raw(path, { headers, signal });
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value.replace(/\r\n?/g, "\n");
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const frame = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const parsed = parseFrame(frame);
      if (parsed) yield parsed;
    }
  }
}

export function parseFrame(frame) {
  const out = { id: null, event: "message", data: [] };
  let any = false;
  for (const line of frame.split("\n")) {
    if (line === "" || line.startsWith(":")) continue;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "data") {
      out.data.push(value);
      any = true;
    } else if (field === "event") out.event = value;
    else if (field === "id") out.id = value;
  }
  return any ? { ...out, data: out.data.join("\n") } : null;
}

// Roles as the API orders them (owner > maintainer > developer > viewer).
const RANK = { viewer: 1, developer: 2, maintainer: 3, owner: 4 };

export function atLeast(role, needed) {
  return (RANK[role] ?? 0) >= RANK[needed];
}
