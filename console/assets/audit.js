// Audit log: the tenant's key and user events, oldest first as the API lists
// them, filterable by user, paged with the API's take/start_with.

import { h, field, select, time } from "./dom.js";
import { call } from "./api.js";

const TAKE = 50;
let cursors = { filter: "", stack: [] };

const ACTIONS = {
  "key.created": "Key created",
  "key.updated": "Key updated",
  "key.revoked": "Key revoked",
  "key.rotated": "Key rotated",
  "user.created": "User created",
  "user.updated": "User updated",
  "user.deactivated": "User deactivated",
  "webhook.created": "Webhook created",
  "webhook.updated": "Webhook updated",
  "webhook.deleted": "Webhook deleted",
  "webhook.secret_rotated": "Webhook secret rotated",
};

export async function auditView(ctx, query) {
  const users = await ctx.users();
  if (cursors.filter !== (query.user_id || "")) cursors = { filter: query.user_id || "", stack: [] };
  let events = (
    await call("GET", "/v1/audit-events", {
      query: { user_id: query.user_id, take: TAKE + 1, start_with: query.start_with },
    })
  ).events;
  const hasNext = events.length > TAKE;
  events = events.slice(0, TAKE);
  const who = (id) => (id ? users.get(id)?.email ?? id : null);
  const short = (id) => (id ? id.slice(0, 8) : "");

  const userFilter = select([["", "Everyone"], ...[...users.values()].map((u) => [u.id, u.email])], query.user_id || "", { name: "user_id" });
  const rows = events.map((event) =>
    h(
      "tr",
      {},
      h("td", { "data-label": "When" }, time(event.at)),
      h("td", { "data-label": "Action" }, h("span", { class: `badge action ${event.action.split(".")[1] || ""}` }, ACTIONS[event.action] || event.action)),
      h("td", { "data-label": "By" }, event.actor_user_id ? who(event.actor_user_id) : h("span", { class: "muted" }, "command line")),
      h(
        "td",
        { "data-label": "Target" },
        event.action.startsWith("user.")
          ? who(event.target_id)
          : h("code", { title: event.target_id }, `key ${short(event.target_id)}`),
        event.new_key_id ? h("span", { class: "muted" }, " → ", h("code", { title: event.new_key_id }, short(event.new_key_id))) : null,
      ),
      h("td", { "data-label": "Request" }, event.request_id ? h("code", { title: event.request_id }, short(event.request_id)) : ""),
      h("td", { "data-label": "Address" }, event.ip || ""),
    ),
  );
  return h(
    "section",
    { class: "view", "aria-labelledby": "audit-title" },
    h("div", { class: "view-head" }, h("h1", { id: "audit-title" }, "Audit log")),
    h(
      "form",
      {
        class: "filters",
        role: "search",
        "aria-label": "Filter events",
        onsubmit: (e) => {
          e.preventDefault();
          ctx.go("audit", { user_id: userFilter.value });
        },
      },
      field("User", userFilter, "Events by this user, or on this user or its keys."),
      h("div", { class: "filter-actions" }, h("button", { type: "submit", class: "button" }, "Apply")),
    ),
    events.length
      ? h(
          "div",
          { class: "table-wrap" },
          h(
            "table",
            { class: "data audit" },
            h("caption", { class: "visually-hidden" }, "Audit events, oldest first"),
            h("thead", {}, h("tr", {}, ["When", "Action", "By", "Target", "Request", "Address"].map((c) => h("th", { scope: "col" }, c)))),
            h("tbody", {}, rows),
          ),
        )
      : h("p", { class: "empty" }, "No events."),
    h(
      "nav",
      { class: "pager", "aria-label": "Pages" },
      h("button", { type: "button", class: "button subtle", disabled: !query.start_with, onclick: () => ctx.go("audit", { ...query, start_with: cursors.stack.pop() }) }, "← Previous"),
      h("span", { class: "muted" }, `Page ${query.start_with ? Math.max(cursors.stack.length, 1) + 1 : 1}`),
      h(
        "button",
        {
          type: "button",
          class: "button subtle",
          disabled: !hasNext,
          onclick: () => {
            cursors.stack.push(query.start_with || "");
            ctx.go("audit", { ...query, start_with: events[events.length - 1].id });
          },
        },
        "Next →",
      ),
    ),
    h("p", { class: "footnote muted" }, "Oldest first. Times are UTC."),
  );
}
