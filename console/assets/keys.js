// Keys: the tenant's keys (an administrator) or one's own, with the API's
// filters and paging, and creating, editing (name and metadata; for
// Administrators also rate limits, credits and allowed addresses), rotating
// and revoking. Everyone sees their keys' limits and remaining credits.

import { h, replace, field, select, notice, modal, confirmDialog, toast, time, utcDay } from "./dom.js";
import { call, SCOPES } from "./api.js";
import { limitChips, limitsDetails, limitsEditor } from "./limits.js";

const PAGE_SIZES = ["25", "50", "100"];

/** Whether a listed key is still usable by its expiry (revoked keys are never listed). */
export function keyState(key) {
  return key.expiration_date < utcDay(0) ? "expired" : "active";
}

/** `start_with` cursors of the pages before the current one, per filter set. */
let pages = { filters: "", cursors: [] };

export async function keysView(ctx, query) {
  const me = ctx.me;
  const users = await ctx.users();
  const take = PAGE_SIZES.includes(query.take) ? query.take : "25";
  const filters = {
    UserId: me.isAdmin ? query.user || undefined : me.user.id,
    state: query.state,
    expires_before: query.expires_before,
    last_used_before: query.last_used_before,
  };
  const filterKey = JSON.stringify({ ...filters, take });
  if (pages.filters !== filterKey) pages = { filters: filterKey, cursors: [] };

  // One more than a page, to know whether there is a next one.
  let keys = await call("GET", "/v1/user-api-keys", {
    query: { ...filters, take: Number(take) + 1, start_with: query.start_with },
  });
  const hasNext = keys.length > Number(take);
  keys = keys.slice(0, Number(take));

  const userLabel = (id) => users.get(id)?.email ?? id;

  const view = h("section", { class: "view", "aria-labelledby": "keys-title" });
  const status = h("div", { class: "view-status" });

  const refresh = () => keysView(ctx, query).then((v) => view.replaceWith(v)).catch((e) => replace(status, ctx.failed(e)));

  // Filters -------------------------------------------------------------
  const fState = select(
    [
      ["", "Any"],
      ["active", "Active"],
      ["expired", "Expired"],
    ],
    query.state || "",
    { name: "state" },
  );
  const fExpires = h("input", { type: "date", name: "expires_before", value: query.expires_before || "" });
  const fUnused = h("input", { type: "date", name: "last_used_before", value: query.last_used_before || "" });
  const fTake = select(PAGE_SIZES.map((n) => [n, n]), take, { name: "take" });
  const fUser = me.isAdmin && me.canManageUsers
    ? select([["", "Everyone"], ...[...users.values()].map((u) => [u.id, u.email])], query.user || "", { name: "user" })
    : null;
  const filterForm = h(
    "form",
    {
      class: "filters",
      role: "search",
      "aria-label": "Filter keys",
      onsubmit: (event) => {
        event.preventDefault();
        ctx.go("keys", {
          user: fUser?.value,
          state: fState.value,
          expires_before: fExpires.value,
          last_used_before: fUnused.value,
          take: fTake.value === "25" ? "" : fTake.value,
        });
      },
    },
    fUser ? field("User", fUser) : null,
    field("State", fState),
    field("Expires before", fExpires),
    field("Not used since", fUnused),
    field("Per page", fTake),
    h(
      "div",
      { class: "filter-actions" },
      h("button", { type: "submit", class: "button" }, "Apply"),
      h("button", { type: "button", class: "button subtle", onclick: () => ctx.go("keys") }, "Clear"),
    ),
  );

  // Table -----------------------------------------------------------------
  const columns = ["Name", "User", "Scopes", "Metadata", "Limits", "Created", "Expires", "Last used", "Actions"];
  const row = (key) => {
    const state = keyState(key);
    const tr = h(
      "tr",
      { "data-key-id": key.id },
      h("td", { "data-label": "Name", class: "name" }, key.name),
      h("td", { "data-label": "User" }, userLabel(key.user_id)),
      h("td", { "data-label": "Scopes" }, h("ul", { class: "chips" }, key.scopes.map((s) => h("li", { class: "chip" }, s)))),
      h("td", { "data-label": "Metadata", class: "meta" }, metaSummary(key.meta)),
      h("td", { "data-label": "Limits", class: "limits" }, limitChips(key)),
      // The day (the columns must fit a laptop's width); the instant is its tooltip.
      h("td", { "data-label": "Created" }, h("time", { datetime: key.created_on, title: key.created_on }, key.created_on.slice(0, 10))),
      // The state follows from the expiry: shown under it.
      h(
        "td",
        { "data-label": "Expires", class: "expires" },
        h("time", { datetime: key.expiration_date }, key.expiration_date),
        " ",
        h("span", { class: `badge ${state}` }, state === "active" ? "Active" : "Expired"),
      ),
      h(
        "td",
        { "data-label": "Last used" },
        time(key.last_used_on),
        // The key's own usage charts (usage.js).
        me.canManageKeys ? h("a", { class: "usage-link", href: `#/usage?key_id=${encodeURIComponent(key.id)}`, "aria-label": `Usage of ${key.name}` }, "Usage") : null,
      ),
      h(
        "td",
        { "data-label": "Actions", class: "row-actions" },
        me.canManageKeys
          ? [
              h(
                "button",
                {
                  type: "button",
                  class: "button small",
                  "data-edit": "",
                  "aria-label": `Edit ${key.name}`,
                  onclick: async () => {
                    const changed = await edit(ctx, key);
                    if (!changed) return;
                    // Only this row changed: keep the table (and the reader's place in it).
                    const fresh = row(changed);
                    tr.replaceWith(fresh);
                    fresh.querySelector("[data-edit]").focus();
                  },
                },
                "Edit",
              ),
              h("button", { type: "button", class: "button small", onclick: () => rotate(ctx, key).then((done) => done && refresh()), "aria-label": `Rotate ${key.name}` }, "Rotate"),
              h("button", { type: "button", class: "button small danger-outline", onclick: () => revoke(ctx, key).then((done) => done && refresh()), "aria-label": `Revoke ${key.name}` }, "Revoke"),
            ]
          : null,
      ),
    );
    return tr;
  };
  const rows = keys.map(row);
  const filtered = Object.entries(query).some(([k, v]) => v && k !== "take" && k !== "start_with");
  const table = keys.length
    ? h(
        "div",
        { class: "table-wrap" },
        h(
          "table",
          { class: "data keys" },
          h("caption", { class: "visually-hidden" }, me.isAdmin ? "The tenant's API keys" : "Your API keys"),
          h("thead", {}, h("tr", {}, columns.map((c) => h("th", { scope: "col" }, c)))),
          h("tbody", {}, rows),
        ),
      )
    : h("p", { class: "empty" }, filtered ? "No key matches these filters." : "No keys yet.");

  // Paging ------------------------------------------------------------------
  const onPage = query.start_with ? Math.max(pages.cursors.length, 1) : 0;
  const pager = h(
    "nav",
    { class: "pager", "aria-label": "Pages" },
    h(
      "button",
      {
        type: "button",
        class: "button subtle",
        disabled: !query.start_with,
        onclick: () => {
          const previous = pages.cursors.pop();
          ctx.go("keys", { ...query, start_with: previous });
        },
      },
      "← Previous",
    ),
    h("span", { class: "muted" }, `Page ${onPage + 1}`),
    h(
      "button",
      {
        type: "button",
        class: "button subtle",
        disabled: !hasNext,
        onclick: () => {
          pages.cursors.push(query.start_with || "");
          ctx.go("keys", { ...query, start_with: keys[keys.length - 1].id });
        },
      },
      "Next →",
    ),
  );

  replace(
    view,
    h(
      "div",
      { class: "view-head" },
      h("h1", { id: "keys-title" }, me.isAdmin ? "API keys" : "Your API keys"),
      me.canManageKeys
        ? h("button", { type: "button", class: "button primary", onclick: () => create(ctx).then((done) => done && refresh()) }, "New key")
        : null,
    ),
    me.canManageKeys ? null : notice("info", "This key lacks the user_key_management scope: it can list keys but not change them."),
    filterForm,
    status,
    table,
    keys.length || query.start_with ? pager : null,
    h("p", { class: "footnote muted" }, "Revoked keys are not listed. Times are UTC."),
  );
  return view;
}

// Metadata ------------------------------------------------------------------

const META_SHOWN = 3;
const META_VALUE_CHARS = 40;

/** A key's metadata in the table: its first members as `name: value` chips. */
function metaSummary(meta) {
  const entries = Object.entries(meta && typeof meta === "object" ? meta : {});
  if (!entries.length) return h("span", { class: "muted" }, "none");
  const chips = entries.slice(0, META_SHOWN).map(([name, value]) => {
    const full = `${name}: ${typeof value === "string" ? value : JSON.stringify(value)}`;
    const shown = full.length > META_VALUE_CHARS ? `${full.slice(0, META_VALUE_CHARS - 1)}…` : full;
    return h("li", { class: "chip meta", title: full }, shown);
  });
  if (entries.length > META_SHOWN) chips.push(h("li", { class: "chip more" }, `+${entries.length - META_SHOWN} more`));
  return h("ul", { class: "chips" }, chips);
}

/**
 * The metadata a person typed: `{ meta }` (an object; empty text is `{}`), or
 * `{ error }` to show instead of sending. The API checks the size (4 KiB).
 */
function parseMeta(text) {
  if (!text.trim()) return { meta: {} };
  let value;
  try {
    value = JSON.parse(text);
  } catch (e) {
    return { error: `Metadata is not valid JSON: ${e.message}` };
  }
  if (!value || typeof value !== "object" || Array.isArray(value)) {
    return { error: 'Metadata must be a JSON object, like {"team": "payments"}.' };
  }
  return { meta: value };
}

/** The metadata textarea; `meta` pre-fills it, pretty-printed. */
function metaInput(meta) {
  const empty = !meta || !Object.keys(meta).length;
  return h("textarea", {
    name: "meta",
    class: "json",
    rows: empty ? 3 : Math.min(12, JSON.stringify(meta, null, 2).split("\n").length + 1),
    spellcheck: "false",
    autocomplete: "off",
    autocapitalize: "off",
    value: empty ? "" : JSON.stringify(meta, null, 2),
    placeholder: '{"team": "payments"}',
  });
}

/** Shows why the metadata cannot be sent, on the control and in `error`. */
function metaRefused(input, error, message) {
  input.setAttribute("aria-invalid", "true");
  replace(error, notice("error", message));
  input.focus();
}

/** The secret of a new key, shown this once. */
function showSecret(title, created) {
  return modal(
    title,
    (close) => {
      const secret = h("input", { type: "text", readonly: true, value: created.key, class: "secret", spellcheck: "false", "data-secret": "" });
      const copied = h("span", { class: "muted", role: "status" });
      return h(
        "div",
        {},
        notice("warning", h("strong", {}, "Copy this key now. "), "It is not stored and will never be shown again: if it is lost, revoke it and make another."),
        field(`Secret of “${created.name}”`, secret),
        h(
          "div",
          { class: "actions" },
          copied,
          h(
            "button",
            {
              type: "button",
              class: "button",
              onclick: async () => {
                try {
                  await navigator.clipboard.writeText(created.key);
                } catch {
                  secret.select();
                  document.execCommand("copy");
                }
                copied.textContent = "Copied.";
              },
            },
            "Copy",
          ),
          h("button", { type: "button", class: "button primary", onclick: () => close(true) }, "Done"),
        ),
      );
    },
    { wide: true },
  );
}

async function create(ctx) {
  const me = ctx.me;
  const users = [...(await ctx.users()).values()].filter((u) => u.active);
  const created = await modal("New key", (close) => {
    const name = h("input", { name: "name", required: true, minlength: 3, maxlength: 255, autocomplete: "off" });
    const user = select(
      users.map((u) => [u.id, u.name && u.name !== u.email ? `${u.email} (${u.name})` : u.email]),
      me.user.id,
      { name: "user", disabled: !me.isAdmin },
    );
    const expires = h("input", { type: "date", name: "expiration_date", required: true, min: utcDay(0), max: utcDay(3650), value: utcDay(90) });
    const held = SCOPES.filter((s) => me.scopes.includes(s));
    const scopeBoxes = held.map((s) => {
      const box = h("input", { type: "checkbox", name: "scopes", value: s, checked: s === "public_api" });
      return h("label", { class: "check" }, box, " ", s);
    });
    const meta = metaInput(null);
    // Administrators may limit the key from the start (API.md section 9).
    const limits = me.isAdmin ? limitsEditor({ ratelimits: [], credits: null, allowed_ips: [] }, { ips: true }) : null;
    const error = h("div", { class: "form-error" });
    const submit = h("button", { type: "submit", class: "button primary" }, "Create key");
    return h(
      "form",
      {
        onsubmit: async (event) => {
          event.preventDefault();
          const scopes = scopeBoxes.map((l) => l.querySelector("input")).filter((b) => b.checked).map((b) => b.value);
          if (!scopes.length) {
            replace(error, notice("error", "Choose at least one scope."));
            return;
          }
          meta.removeAttribute("aria-invalid");
          const parsed = parseMeta(meta.value);
          if (parsed.error) {
            metaRefused(meta, error, parsed.error);
            return;
          }
          const body = { name: name.value, user_id: user.value, expiration_date: expires.value, scopes, ...limits?.changes() };
          if (Object.keys(parsed.meta).length) body.meta = parsed.meta;
          submit.disabled = true;
          try {
            close(await call("POST", "/v1/user-api-keys", { body }));
          } catch (e) {
            submit.disabled = false;
            limits?.invalid(e.body?.errors);
            replace(error, ctx.failed(e));
          }
        },
      },
      field("Name", name, "3 to 255 characters, e.g. deploy-ci."),
      field("User", user, me.isAdmin ? "Whose key it is; the key acts as that user." : "You can create keys for yourself."),
      field("Expires on (UTC)", expires, "Its last valid day. The tenant's maximum lifetime applies (365 days unless changed)."),
      h(
        "fieldset",
        { class: "field" },
        h("legend", {}, "Scopes"),
        h("div", { class: "checks" }, scopeBoxes),
        h("small", { class: "hint" }, "Only scopes the key you signed in with holds."),
      ),
      field("Metadata (JSON object, optional)", meta, "Shown with the key and to services that verify it; at most 4 KiB."),
      limits ? h("details", { class: "limits-more" }, h("summary", {}, "Rate limits, credits and allowed addresses"), limits.element) : null,
      error,
      h(
        "div",
        { class: "actions" },
        h("button", { type: "button", class: "button subtle", onclick: () => close(null) }, "Cancel"),
        submit,
      ),
    );
  }, { wide: me.isAdmin });
  if (!created) return false;
  await showSecret("Key created", created);
  toast(`Key “${created.name}” created.`);
  return true;
}

/** Edits a key's name and metadata (and, for Administrators, its limits); resolves with the changed key, or null. */
async function edit(ctx, key) {
  const changed = await modal(`Edit “${key.name}”`, (close) => {
    const name = h("input", { name: "name", required: true, minlength: 3, maxlength: 255, autocomplete: "off", autofocus: true, value: key.name });
    const meta = metaInput(key.meta);
    // Only Administrators may change the limits; everyone else sees them.
    const limits = ctx.me.isAdmin ? limitsEditor(key, { ips: true }) : null;
    const error = h("div", { class: "form-error" });
    const submit = h("button", { type: "submit", class: "button primary" }, "Save");
    return h(
      "form",
      {
        onsubmit: async (event) => {
          event.preventDefault();
          name.removeAttribute("aria-invalid");
          meta.removeAttribute("aria-invalid");
          replace(error);
          const parsed = parseMeta(meta.value);
          if (parsed.error) {
            metaRefused(meta, error, parsed.error);
            return;
          }
          // Only what changed: an unchanged form sends nothing.
          const body = {};
          if (name.value !== key.name) body.name = name.value;
          if (JSON.stringify(parsed.meta) !== JSON.stringify(key.meta ?? {})) body.meta = parsed.meta;
          if (limits) Object.assign(body, limits.changes());
          if (!Object.keys(body).length) {
            close(null);
            return;
          }
          submit.disabled = true;
          try {
            close(await call("PATCH", `/v1/user-api-keys/${encodeURIComponent(key.id)}`, { body }));
          } catch (e) {
            submit.disabled = false;
            if (e.body?.errors?.name) name.setAttribute("aria-invalid", "true");
            if (e.body?.errors?.meta) meta.setAttribute("aria-invalid", "true");
            limits?.invalid(e.body?.errors);
            replace(error, ctx.failed(e));
          }
        },
      },
      field("Name", name, "3 to 255 characters."),
      field("Metadata (JSON object)", meta, "Replaces the key's metadata; empty for none. At most 4 KiB."),
      limits
        ? limits.element
        : h(
            "section",
            { class: "limits-readonly", "aria-labelledby": "limits-readonly-title" },
            h("h3", { id: "limits-readonly-title" }, "Limits"),
            limitsDetails(key, { ips: true }),
            h("p", { class: "hint" }, "Set by the tenant's Administrators."),
          ),
      error,
      h(
        "div",
        { class: "actions" },
        h("button", { type: "button", class: "button subtle", onclick: () => close(null) }, "Cancel"),
        submit,
      ),
    );
  }, { wide: ctx.me.isAdmin });
  if (!changed) return null;
  toast(`Key “${changed.name}” saved.`);
  return changed;
}

async function rotate(ctx, key) {
  const rotated = await modal(`Rotate “${key.name}”`, (close) => {
    const grace = select(
      [
        ["0", "None: the old key stops now"],
        ["3600", "1 hour"],
        ["86400", "1 day"],
        ["604800", "7 days"],
      ],
      "3600",
      { name: "grace_seconds" },
    );
    const expires = h("input", { type: "date", name: "expiration_date", min: utcDay(0), max: utcDay(3650) });
    const error = h("div", { class: "form-error" });
    const submit = h("button", { type: "submit", class: "button primary" }, "Rotate key");
    return h(
      "form",
      {
        onsubmit: async (event) => {
          event.preventDefault();
          submit.disabled = true;
          const body = { grace_seconds: Number(grace.value) };
          if (expires.value) body.expiration_date = expires.value;
          try {
            close(await call("POST", `/v1/user-api-keys/${encodeURIComponent(key.id)}/rotate`, { body }));
          } catch (e) {
            submit.disabled = false;
            replace(error, ctx.failed(e));
          }
        },
      },
      h("p", {}, "A new key with the same user, name and scopes replaces this one. Clients keep working with the old key during the grace period."),
      field("Grace period", grace),
      field("New expiry (UTC, optional)", expires, "Empty: the old key's, within the tenant's maximum lifetime."),
      error,
      h(
        "div",
        { class: "actions" },
        h("button", { type: "button", class: "button subtle", onclick: () => close(null) }, "Cancel"),
        submit,
      ),
    );
  });
  if (!rotated) return false;
  await showSecret("Key rotated", rotated);
  toast(`Key “${key.name}” rotated.`);
  return true;
}

async function revoke(ctx, key) {
  const sure = await confirmDialog(
    `Revoke “${key.name}”?`,
    "Every client using this key is refused from its next request on. This cannot be undone.",
    "Revoke key",
    { danger: true },
  );
  if (!sure) return false;
  try {
    await call("DELETE", `/v1/user-api-keys/${encodeURIComponent(key.id)}`);
    toast(`Key “${key.name}” revoked.`);
    return true;
  } catch (e) {
    const shown = ctx.failed(e);
    if (shown) await modal("Not revoked", (close) => h("div", {}, shown, h("div", { class: "actions" }, h("button", { type: "button", class: "button", onclick: () => close() }, "Close"))));
    return false;
  }
}
