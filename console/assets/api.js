// The console's only way to the server: keyward's public API, on this origin,
// with the same headers curl would send. The key lives in sessionStorage (gone
// when the tab closes), never in a URL, localStorage or a cookie.

const STORE = "keyward.console.session";

export const SCOPES = ["public_api", "user_key_management", "user_management"];
export const ROLES = ["Administrators", "Default users"];

export const session = {
  /** { tenant, key } or null. */
  load() {
    try {
      const value = JSON.parse(sessionStorage.getItem(STORE) || "null");
      return value && typeof value.key === "string" ? value : null;
    } catch {
      return null;
    }
  },
  save(tenant, key) {
    sessionStorage.setItem(STORE, JSON.stringify({ tenant, key }));
  },
  clear() {
    sessionStorage.removeItem(STORE);
  },
};

/** An answer other than 2xx, with the API's own words for it. */
export class ApiError extends Error {
  constructor(status, message, body) {
    super(message);
    this.status = status;
    this.body = body;
  }
}

/**
 * The message a person should read: problem details' field messages ("Invalid
 * API key", "Name must be ..."), else its title, else Estuary's details.
 */
export function messageOf(status, body) {
  if (body && typeof body === "object") {
    if (body.errors && typeof body.errors === "object") {
      const messages = Object.values(body.errors).flat().filter((m) => typeof m === "string");
      if (messages.length) return messages.join(" ");
    }
    if (typeof body.title === "string" && body.title) return body.title;
    if (body.error && typeof body.error.details === "string") return body.error.details;
  }
  if (status === 0) return "The server cannot be reached.";
  return `The server answered ${status}.`;
}

/**
 * Calls the API. `query` is an object (empty values left out), `body` is sent
 * as JSON. Resolves with the parsed JSON (or null); rejects with ApiError.
 */
export async function call(method, path, { query, body, credentials } = {}) {
  const creds = credentials === undefined ? session.load() : credentials;
  const params = new URLSearchParams();
  for (const [name, value] of Object.entries(query || {})) {
    if (value !== undefined && value !== null && value !== "") params.set(name, String(value));
  }
  const url = params.size ? `${path}?${params}` : path;
  const headers = { accept: "application/json" };
  if (creds) {
    headers["x-key"] = creds.key;
    if (creds.tenant) headers.tenant = creds.tenant;
  }
  const init = { method, headers, cache: "no-store", credentials: "omit", redirect: "error" };
  if (body !== undefined) {
    headers["content-type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(url, init);
  } catch {
    throw new ApiError(0, messageOf(0, null), null);
  }
  const type = res.headers.get("content-type") || "";
  const data = type.includes("json") ? await res.json().catch(() => null) : null;
  if (!res.ok) throw new ApiError(res.status, messageOf(res.status, data), data);
  return data;
}

/** base64url (no padding) of SHA-256: Estuary's `tokenHash` of a secret. */
async function tokenHash(secret) {
  if (!globalThis.crypto || !crypto.subtle) return null; // not a secure context
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(secret)));
  let binary = "";
  for (const b of digest) binary += String.fromCharCode(b);
  return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

/**
 * Who the key belongs to and what it may do, from the public API:
 * - a /v1 call checks the key and gives the API's own 401 message;
 * - `GET /user/export` names the key's user, roles and tenant;
 * - `GET /user/api-keys` lists the user's keys by `tokenHash`, which finds
 *   this key's scopes;
 * - `GET /v1/users` answers administrators whose key has `user_management`.
 */
export async function whoAmI(credentials) {
  try {
    await call("GET", "/v1/user-api-keys", { query: { take: 1 }, credentials });
  } catch (e) {
    if (e.status !== 403) throw e; // 403: a valid key, just not an administrator's
  }
  const exported = await call("GET", "/user/export", { credentials });
  const user = exported.user;
  let scopes = null;
  try {
    const hash = await tokenHash(credentials.key);
    const own = await call("GET", "/user/api-keys", { credentials });
    const me = own.find((k) => k.tokenHash === hash);
    if (me) scopes = me.scopes;
  } catch (e) {
    if (e.status === 403) scopes = []; // no user_key_management
    else if (e.status === 401) throw e;
  }
  const isAdmin = user.roles.includes("Administrators");
  let canManageUsers = false;
  if (isAdmin && (scopes === null || scopes.includes("user_management"))) {
    try {
      await call("GET", "/v1/users", { query: { take: 1 }, credentials });
      canManageUsers = true;
    } catch (e) {
      if (e.status === 401) throw e;
    }
  }
  return {
    tenant: exported.tenant.name,
    user,
    isAdmin,
    // Unknown (no secure context for hashing): offer every scope and let the
    // API refuse an escalation.
    scopes: scopes ?? SCOPES,
    canManageKeys: scopes === null || scopes.includes("user_key_management"),
    canManageUsers,
  };
}

/** Every page of a `take`/`start_with` listing, up to `limit` items. */
export async function all(path, pick, { query = {}, limit = 10000, take = 1000 } = {}) {
  const items = [];
  let startWith;
  for (;;) {
    const page = pick(await call("GET", path, { query: { ...query, take, start_with: startWith } }));
    items.push(...page);
    if (page.length < take || items.length >= limit) return items;
    startWith = page[page.length - 1].id;
  }
}
