// Webhooks (administrators whose key has user_management): endpoints that
// receive the tenant's events. Create (the signing secret is shown once),
// choose events, enable/disable, send a test, rotate the secret, read the
// recent delivery attempts, delete.

import { h, replace, field, notice, modal, confirmDialog, toast, time } from "./dom.js";
import { call } from "./api.js";

export const EVENTS = [
  "key.created", "key.updated", "key.revoked", "key.rotated",
  "user.created", "user.updated", "user.deactivated",
  "key.expiring", "key.expired", "key.credits_low", "webhook.test",
];

export async function webhooksView(ctx, query) {
  const { webhooks } = await call("GET", "/v1/webhooks");
  const view = h("section", { class: "view", "aria-labelledby": "webhooks-title" });
  const status = h("div", { class: "view-status" });
  const refresh = () => webhooksView(ctx, query).then((v) => view.replaceWith(v)).catch((e) => replace(status, ctx.failed(e)));
  const act = async (work, done) => {
    replace(status);
    try {
      const result = await work();
      toast(done);
      refresh();
      return result;
    } catch (e) {
      const shown = ctx.failed(e);
      if (shown) replace(status, shown);
      return null;
    }
  };
  const path = (hook, tail = "") => `/v1/webhooks/${encodeURIComponent(hook.id)}${tail}`;

  const rows = webhooks.map((hook) =>
    h(
      "tr",
      { "data-webhook-id": hook.id, class: hook.enabled ? null : "inactive" },
      h("td", { "data-label": "URL", class: "name" }, hook.url, hook.description ? h("div", { class: "muted" }, hook.description) : null),
      h("td", { "data-label": "Events" }, h("ul", { class: "chips" }, hook.events.map((e) => h("li", { class: "chip" }, e === "*" ? "every event" : e)))),
      h("td", { "data-label": "State" }, h("span", { class: `badge ${hook.enabled ? "active" : "inactive"}` }, hook.enabled ? "Enabled" : "Disabled")),
      h("td", { "data-label": "Created" }, time(hook.created_on)),
      h(
        "td",
        { "data-label": "Actions", class: "row-actions" },
        h("button", { type: "button", class: "button small subtle", "aria-label": `Deliveries to ${hook.url}`, onclick: () => deliveries(ctx, hook, path(hook, "/deliveries")) }, "Deliveries"),
        h("button", {
          type: "button", class: "button small", "aria-label": `Edit ${hook.url}`,
          onclick: async () => {
            const body = await editHook(ctx, hook);
            if (body) act(() => call("PATCH", path(hook), { body }), "Webhook saved.");
          },
        }, "Edit"),
        hook.enabled
          ? h("button", { type: "button", class: "button small", "aria-label": `Send a test to ${hook.url}`, onclick: () => act(() => call("POST", path(hook, "/test")), "Test event sent.") }, "Test")
          : null,
        h("button", {
          type: "button", class: "button small", "aria-label": `${hook.enabled ? "Disable" : "Enable"} ${hook.url}`,
          onclick: () => act(() => call("PATCH", path(hook), { body: { enabled: !hook.enabled } }), hook.enabled ? "Webhook disabled." : "Webhook enabled."),
        }, hook.enabled ? "Disable" : "Enable"),
        h("button", {
          type: "button", class: "button small", "aria-label": `Rotate the secret of ${hook.url}`,
          onclick: async () => {
            const sure = await confirmDialog("Rotate the signing secret?", "A new secret signs from now on; the old one also signs for 24 hours, so receivers can switch.", "Rotate");
            if (!sure) return;
            const rotated = await act(() => call("POST", path(hook, "/rotate-secret")), "Secret rotated.");
            if (rotated) await showSecret(rotated.secret);
          },
        }, "Rotate secret"),
        h("button", {
          type: "button", class: "button small danger-outline", "aria-label": `Delete ${hook.url}`,
          onclick: async () => {
            const sure = await confirmDialog(`Delete ${hook.url}?`, "Nothing more is sent to it, and its delivery log is deleted.", "Delete", { danger: true });
            if (sure) act(() => call("DELETE", path(hook)), "Webhook deleted.");
          },
        }, "Delete"),
      ),
    ),
  );

  replace(
    view,
    h(
      "div",
      { class: "view-head" },
      h("h1", { id: "webhooks-title" }, "Webhooks"),
      h("button", {
        type: "button", class: "button primary",
        onclick: async () => {
          const body = await editHook(ctx, null);
          if (!body) return;
          const created = await act(() => call("POST", "/v1/webhooks", { body }), "Webhook created.");
          if (created) await showSecret(created.secret);
        },
      }, "New webhook"),
    ),
    status,
    webhooks.length
      ? h(
          "div",
          { class: "table-wrap" },
          h(
            "table",
            { class: "data webhooks" },
            h("caption", { class: "visually-hidden" }, "The tenant's webhook endpoints"),
            h("thead", {}, h("tr", {}, ["URL", "Events", "State", "Created", "Actions"].map((c) => h("th", { scope: "col" }, c)))),
            h("tbody", {}, rows),
          ),
        )
      : h("p", { class: "muted" }, "No webhook yet. A webhook receives the tenant's events: keys created, revoked, rotated or about to expire, users changed."),
    h("p", { class: "footnote muted" }, "Deliveries are signed as Standard Webhooks describes; receivers should deduplicate by webhook-id."),
  );
  return view;
}

/** The create/edit form; resolves with the body to send, or null. */
function editHook(ctx, hook) {
  return modal(hook ? "Edit webhook" : "New webhook", (close) => {
    const url = h("input", { type: "url", name: "url", required: true, autocomplete: "off", value: hook ? hook.url : "" });
    const description = h("input", { name: "description", autocomplete: "off", maxlength: 1000, value: hook ? hook.description : "" });
    const every = h("input", { type: "checkbox", name: "every", checked: hook ? hook.events.includes("*") : false });
    const boxes = EVENTS.map((e) => h("label", { class: "check" }, h("input", { type: "checkbox", name: "events", value: e, checked: hook ? hook.events.includes(e) : false }), " ", e));
    const error = h("div", { class: "form-error" });
    return h(
      "form",
      {
        onsubmit: (event) => {
          event.preventDefault();
          const events = every.checked ? ["*"] : boxes.map((l) => l.querySelector("input")).filter((b) => b.checked).map((b) => b.value);
          if (!events.length) {
            replace(error, notice("error", "Choose at least one event, or every event."));
            return;
          }
          close({ url: url.value.trim(), events, description: description.value.trim() });
        },
      },
      field("URL", url, "http:// or https://, on a public address."),
      field("Description", description, "Optional."),
      h("fieldset", { class: "field" }, h("legend", {}, "Events"),
        h("label", { class: "check" }, every, " every event (*)"),
        h("div", { class: "checks" }, boxes),
        h("small", { class: "hint" }, "key.credits_low is accepted but not sent yet.")),
      error,
      h("div", { class: "actions" },
        h("button", { type: "button", class: "button subtle", onclick: () => close(null) }, "Cancel"),
        h("button", { type: "submit", class: "button primary" }, hook ? "Save" : "Create webhook")),
    );
  });
}

function showSecret(secret) {
  return modal("Signing secret", (close) =>
    h("div", {},
      h("p", {}, "Copy it now: it is not shown again. Receivers verify each delivery's webhook-signature with it."),
      h("pre", { class: "secret", "data-secret": "" }, secret),
      h("div", { class: "actions" }, h("button", { type: "button", class: "button primary", onclick: () => close(true) }, "Done"))),
  );
}

async function deliveries(ctx, hook, path) {
  let list;
  try {
    list = (await call("GET", path, { query: { take: 50 } })).deliveries;
  } catch (e) {
    ctx.failed(e);
    return;
  }
  await modal(`Deliveries to ${hook.url}`, (close) =>
    h("div", {},
      list.length
        ? h("div", { class: "table-wrap" }, h("table", { class: "data deliveries" },
            h("thead", {}, h("tr", {}, ["When", "Event", "Attempt", "Result", "Next attempt"].map((c) => h("th", { scope: "col" }, c)))),
            h("tbody", {}, list.map((d) => h("tr", {},
              h("td", { "data-label": "When" }, time(d.at)),
              h("td", { "data-label": "Event" }, d.type),
              h("td", { "data-label": "Attempt" }, String(d.attempt)),
              h("td", { "data-label": "Result" }, d.error ? h("span", { class: "badge inactive" }, d.error) : h("span", { class: "badge active" }, `HTTP ${d.status_code}`)),
              h("td", { "data-label": "Next attempt" }, time(d.next_attempt_at, "none")),
            ))),
          ))
        : h("p", { class: "muted" }, "No attempt yet."),
      h("div", { class: "actions" }, h("button", { type: "button", class: "button primary", onclick: () => close(true) }, "Close"))),
    { wide: true },
  );
}
