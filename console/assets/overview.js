// Overview: a few counts, each a link to the key table filtered the same way.

import { h, utcDay } from "./dom.js";
import { call } from "./api.js";
import { usageCharts } from "./usage.js";

/** Counting stops here: the overview must stay cheap on a tenant with millions of keys. */
const CAP = 1000;

async function count(ctx, filters) {
  const query = { ...filters, take: CAP };
  if (!ctx.me.isAdmin) query.UserId = ctx.me.user.id;
  const keys = await call("GET", "/v1/user-api-keys", { query });
  return keys.length >= CAP ? `${CAP}+` : String(keys.length);
}

export async function overviewView(ctx) {
  const me = ctx.me;
  // Expiring within 30 days: last valid day before today+31.
  const soon = utcDay(31);
  const unusedSince = utcDay(-90);
  const cards = [
    { label: "Active keys", filters: { state: "active" }, tone: "ok" },
    { label: "Expired keys", filters: { state: "expired" }, tone: "muted" },
    { label: "Expiring within 30 days", filters: { state: "active", expires_before: soon }, tone: "warn" },
    { label: "Unused for 90 days", filters: { state: "active", last_used_before: unusedSince }, tone: "warn" },
  ];
  const [counts, usage] = await Promise.all([
    Promise.all(cards.map((c) => count(ctx, c.filters))),
    me.canManageKeys ? usageCharts() : null,
  ]);
  const scopes = me.scopes.length ? me.scopes.join(", ") : "none";
  return h(
    "section",
    { class: "view", "aria-labelledby": "overview-title" },
    h("div", { class: "view-head" }, h("h1", { id: "overview-title" }, "Overview")),
    h(
      "p",
      { class: "lede" },
      "Signed in to ",
      h("strong", {}, me.tenant),
      " as ",
      h("strong", {}, me.user.email),
      ` (${me.user.roles.join(", ") || "no role"}), with a key holding ${scopes}.`,
    ),
    h(
      "ul",
      { class: "cards" },
      cards.map((card, i) => {
        const params = new URLSearchParams(card.filters);
        return h(
          "li",
          { class: `card ${card.tone}` },
          h(
            "a",
            { href: `#/keys?${params}`, "aria-label": `${card.label}: ${counts[i]}. Show them.` },
            h("span", { class: "count" }, counts[i]),
            h("span", { class: "label" }, card.label),
            h("span", { class: "more" }, "Show →"),
          ),
        );
      }),
    ),
    h(
      "p",
      { class: "footnote muted" },
      me.isAdmin ? "Counts cover every key of the tenant that is not revoked." : "Counts cover your own keys that are not revoked.",
    ),
    usage
      ? h(
          "section",
          { class: "usage-section", "aria-labelledby": "usage-title" },
          h("h2", { id: "usage-title" }, me.isAdmin ? "Verifications of the tenant's keys" : "Verifications of your keys"),
          usage,
        )
      : null,
  );
}
