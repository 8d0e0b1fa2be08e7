// The console's shell: sign-in, navigation, and the hash router
// (#/overview, #/keys?state=active, #/users, #/audit?user_id=..., #/webhooks).

import { h, replace, field, notice } from "./dom.js";
import { session, whoAmI, call, all, ApiError } from "./api.js";
import { overviewView } from "./overview.js";
import { keysView } from "./keys.js";
import { usersView } from "./users.js";
import { auditView } from "./audit.js";
import { usageView } from "./usage.js";
import { webhooksView } from "./webhooks.js";

const main = document.getElementById("main");
const topbar = document.getElementById("topbar");

/** What every view shares: who is signed in, and the tenant's users by id. */
const ctx = {
  me: null,
  usersById: null,
  /** Loads (once per sign-in, or again after a change) the tenant's users, if allowed. */
  async users(reload = false) {
    if (!this.me.canManageUsers) return new Map([[this.me.user.id, this.me.user]]);
    if (!this.usersById || reload) {
      const list = await all("/v1/users", (body) => body.users);
      this.usersById = new Map(list.map((u) => [u.id, u]));
    }
    return this.usersById;
  },
  go(route, query = {}) {
    const params = new URLSearchParams();
    for (const [k, v] of Object.entries(query)) if (v) params.set(k, v);
    const hash = `#/${route}${params.size ? `?${params}` : ""}`;
    if (location.hash === hash) render();
    else location.hash = hash;
  },
  /** A call failed: a 401 means the key no longer works, so sign out. */
  failed(error) {
    if (error instanceof ApiError && error.status === 401) {
      signOut(error.message);
      return null;
    }
    return notice("error", error.message || String(error));
  },
};

const ROUTES = {
  overview: { title: "Overview", view: overviewView, allowed: () => true },
  keys: { title: "Keys", view: keysView, allowed: () => true },
  users: { title: "Users", view: usersView, allowed: (me) => me.canManageUsers },
  audit: { title: "Audit log", view: auditView, allowed: (me) => me.canManageUsers },
  // One key's charts, reached from the key table (not in the navigation).
  usage: { title: "Usage", view: usageView, allowed: (me) => me.canManageKeys, hidden: true },
  webhooks: { title: "Webhooks", view: webhooksView, allowed: (me) => me.canManageUsers },
};

function parseHash() {
  const raw = location.hash.startsWith("#/") ? location.hash.slice(2) : "";
  const [name, search = ""] = raw.split("?");
  return { name, query: Object.fromEntries(new URLSearchParams(search)) };
}

let rendering = 0;
async function render() {
  if (!ctx.me) return;
  const { name, query } = parseHash();
  const route = ROUTES[name];
  if (!route || !route.allowed(ctx.me)) {
    ctx.go("overview");
    return;
  }
  const ticket = ++rendering;
  for (const link of document.querySelectorAll("#nav a")) {
    if (link.dataset.route === name) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  document.title = `${route.title} · keyward console`;
  main.setAttribute("aria-busy", "true");
  let content;
  try {
    content = await route.view(ctx, query);
  } catch (error) {
    content = ctx.failed(error);
    if (!content) {
      main.removeAttribute("aria-busy");
      return;
    }
  }
  if (ticket !== rendering || !ctx.me) return; // a newer navigation won
  replace(main, content);
  main.removeAttribute("aria-busy");
  // Which route the page shows now (tests wait for it).
  main.dataset.view = location.hash;
}

function showShell() {
  const me = ctx.me;
  replace(
    document.getElementById("nav"),
    Object.entries(ROUTES)
      .filter(([, r]) => !r.hidden && r.allowed(me))
      .map(([name, r]) => h("li", {}, h("a", { href: `#/${name}`, "data-route": name }, r.title))),
  );
  replace(
    document.getElementById("whoami"),
    h("span", { class: "email" }, me.user.email),
    h("span", { class: "tenant" }, me.tenant),
  );
  topbar.hidden = false;
}

function signOut(message) {
  session.clear();
  for (const dialog of document.querySelectorAll("dialog")) dialog.close();
  ctx.me = null;
  ctx.usersById = null;
  topbar.hidden = true;
  history.replaceState(null, "", location.pathname);
  showSignIn(message);
}

let config = { pinned_tenant: false };

function showSignIn(message) {
  document.title = "Sign in · keyward console";
  const tenant = h("input", {
    name: "tenant",
    autocomplete: "organization",
    required: true,
    spellcheck: "false",
    autocapitalize: "none",
    pattern: "[a-z0-9][a-z0-9\\-]{1,62}",
  });
  const key = h("input", {
    name: "key",
    type: "password",
    autocomplete: "off",
    required: true,
    spellcheck: "false",
  });
  const error = h("div", { class: "form-error" });
  const submit = h("button", { type: "submit", class: "button primary wide" }, "Sign in");
  const form = h(
    "form",
    {
      class: "signin-form",
      "aria-describedby": "signin-lede",
      onsubmit: async (event) => {
        event.preventDefault();
        submit.disabled = true;
        replace(error);
        const credentials = { tenant: config.pinned_tenant ? "" : tenant.value.trim(), key: key.value.trim() };
        try {
          ctx.me = await whoAmI(credentials);
          session.save(credentials.tenant, credentials.key);
          key.value = "";
          start();
        } catch (e) {
          replace(error, notice("error", e.message || String(e)));
          submit.disabled = false;
          key.focus();
        }
      },
    },
    config.pinned_tenant ? null : field("Tenant", tenant, "The tenant's name, e.g. acme."),
    field("API key", key, "A key with the user_key_management scope, such as the one keyward bootstrap prints."),
    error,
    submit,
  );
  replace(
    main,
    h(
      "section",
      { class: "signin" },
      h("div", { class: "signin-brand" }, h("img", { src: "/console/assets/icon.svg", alt: "", width: 36, height: 36 }), h("span", {}, "keyward")),
      h("h1", {}, "Sign in to the console"),
      h("p", { id: "signin-lede", class: "muted" }, "The key stays in this tab only, and is forgotten when you sign out or close it."),
      message ? notice("error", message) : null,
      form,
    ),
  );
  (config.pinned_tenant ? key : tenant).focus();
}

function start() {
  showShell();
  if (!parseHash().name) ctx.go(ctx.me.isAdmin ? "overview" : "keys");
  else render();
  main.focus();
}

async function boot() {
  try {
    config = await call("GET", "/console/config.json", { credentials: null });
  } catch {
    // Served by the same binary; if it fails, ask for a tenant anyway.
  }
  document.getElementById("sign-out").addEventListener("click", () => signOut());
  document.querySelector("[data-skip]").addEventListener("click", (event) => {
    event.preventDefault();
    main.focus();
  });
  window.addEventListener("hashchange", render);
  const saved = session.load();
  if (!saved) {
    showSignIn();
    return;
  }
  try {
    ctx.me = await whoAmI(saved);
    start();
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) signOut(e.message);
    else {
      session.clear();
      showSignIn(e.message);
    }
  }
}

boot();
