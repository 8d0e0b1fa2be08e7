// Usage charts: verifications (/v1/auth) by outcome, from GET /v1/usage, drawn
// here as SVG (no library, nothing from another origin). Colours come from
// style.css classes; each outcome also has a legend entry, each bar a title,
// and the numbers are in a table behind a toggle, so nothing rests on colour.

import { h, notice } from "./dom.js";
import { call } from "./api.js";
import { limitsDetails } from "./limits.js";

export const OUTCOMES = [
  ["valid", "Valid (200)"],
  ["forbidden", "Forbidden (403)"],
  ["rate_limited", "Rate limited (429)"],
  ["usage_exceeded", "Usage exceeded (429)"],
  ["invalid", "Invalid (401)"],
];

const SVG = "http://www.w3.org/2000/svg";

/** An SVG element; attributes are set as given (never a `style` attribute). */
function s(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs)) el.setAttribute(name, String(value));
  for (const child of children) {
    if (child === null || child === undefined) continue;
    el.appendChild(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

const total = (bucket) => OUTCOMES.reduce((sum, [name]) => sum + (bucket[name] || 0), 0);

/** A round upper bound for the axis: 1, 2, 5, 10, 20, 50, ... */
function niceMax(n) {
  if (n <= 0) return 1;
  let step = 1;
  while (step * 10 <= n) step *= 10;
  for (const m of [1, 2, 5, 10]) if (m * step >= n) return m * step;
  return 10 * step;
}

/** "2026-06-15T12:00:00Z" -> "12:00" (hour) or "06-15" (day). */
function tick(start, granularity) {
  return granularity === "day" ? start.slice(5, 10) : start.slice(11, 16);
}

/** A stacked bar chart of a usage answer. */
export function chart(usage, caption) {
  const series = usage.series;
  const width = 720;
  const height = 220;
  const left = 44;
  const bottom = 24;
  const top = 8;
  const plotW = width - left - 8;
  const plotH = height - top - bottom;
  const max = niceMax(Math.max(0, ...series.map(total)));
  const slot = plotW / Math.max(series.length, 1);
  const barW = Math.max(1, slot * 0.75);
  const sum = total(usage.totals);
  const svg = s("svg", {
    viewBox: `0 0 ${width} ${height}`,
    class: "chart",
    role: "img",
    "aria-label": `${caption}: ${sum} verifications in all.`,
  });
  // Axis: 0, half, max.
  for (const value of [0, max / 2, max]) {
    const y = top + plotH - (value / max) * plotH;
    svg.appendChild(s("line", { x1: left, x2: width - 8, y1: y, y2: y, class: "grid" }));
    svg.appendChild(s("text", { x: left - 6, y: y + 4, class: "axis", "text-anchor": "end" }, String(value)));
  }
  const every = Math.ceil(series.length / 8);
  series.forEach((bucket, i) => {
    const x = left + i * slot + (slot - barW) / 2;
    const group = s("g", { class: "bar" });
    const parts = OUTCOMES.filter(([name]) => bucket[name] > 0)
      .map(([name, label]) => `${label}: ${bucket[name]}`)
      .join(", ");
    group.appendChild(s("title", {}, `${bucket.start}: ${parts || "none"}`));
    let y = top + plotH;
    for (const [name] of OUTCOMES) {
      const n = bucket[name] || 0;
      if (!n) continue;
      const barH = (n / max) * plotH;
      y -= barH;
      group.appendChild(s("rect", { x, y, width: barW, height: barH, class: `o-${name}` }));
    }
    svg.appendChild(group);
    if (i % every === 0) {
      svg.appendChild(
        s("text", { x: x + barW / 2, y: height - 6, class: "axis", "text-anchor": "middle" }, tick(bucket.start, usage.granularity)),
      );
    }
  });
  const legend = h(
    "ul",
    { class: "legend" },
    OUTCOMES.map(([name, label]) =>
      h("li", {}, swatch(name), `${label}: `, h("strong", {}, String(usage.totals[name] || 0))),
    ),
  );
  const table = h(
    "details",
    { class: "chart-table" },
    h("summary", {}, "Show the numbers"),
    h(
      "table",
      { class: "table compact" },
      h("caption", {}, caption),
      h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "From (UTC)"), OUTCOMES.map(([, label]) => h("th", { scope: "col" }, label)))),
      h(
        "tbody",
        {},
        series.map((bucket) =>
          h("tr", {}, h("th", { scope: "row" }, bucket.start.replace("T", " ").replace(":00Z", "")), OUTCOMES.map(([name]) => h("td", {}, String(bucket[name] || 0)))),
        ),
      ),
    ),
  );
  return h("figure", { class: "usage-chart" }, h("figcaption", {}, caption), svg, legend, table);
}

function swatch(name) {
  const svg = s("svg", { viewBox: "0 0 12 12", class: "swatch", "aria-hidden": "true" });
  svg.appendChild(s("rect", { x: 0, y: 0, width: 12, height: 12, class: `o-${name}` }));
  return svg;
}

/**
 * The last 24 hours by hour and the last 30 days by day, for `filter`
 * ({ key_id } or {}: the tenant for Administrators, one's own keys otherwise).
 */
export async function usageCharts(filter = {}) {
  try {
    const [hours, days] = await Promise.all([
      call("GET", "/v1/usage", { query: { ...filter, granularity: "hour" } }),
      call("GET", "/v1/usage", { query: { ...filter, granularity: "day", from: daysAgo(29) } }),
    ]);
    return h(
      "div",
      { class: "usage" },
      chart(hours, "Verifications in the last 24 hours, by hour"),
      chart(days, "Verifications in the last 30 days, by day"),
    );
  } catch (error) {
    if (error && error.status === 401) throw error;
    return notice("info", `Usage is not shown: ${error.message || error}`);
  }
}

/** 00:00Z of the UTC day `n` days ago, RFC 3339. */
function daysAgo(n) {
  const d = new Date();
  d.setUTCHours(0, 0, 0, 0);
  d.setUTCDate(d.getUTCDate() - n);
  return d.toISOString().replace(".000Z", "Z");
}

/**
 * What limits a key (API.md section 9): its own rate limits, credits and
 * allowed addresses, and those its user shares with all of the user's keys.
 */
async function limitsPanel(ctx, key) {
  // User objects (with their limits) come from /v1/users: Administrators only.
  const owner = ctx.me.canManageUsers ? (await ctx.users()).get(key.user_id) : null;
  const shared = owner && (owner.credits || owner.ratelimits?.length) ? owner : null;
  return h(
    "section",
    { class: "limits-panel", "aria-labelledby": "limits-title" },
    h("h2", { id: "limits-title" }, "Limits"),
    limitsDetails(key, { ips: true }),
    shared
      ? [h("h2", { class: "limits-shared" }, `Shared by all keys of ${shared.email}`), limitsDetails(shared)]
      : null,
  );
}

/** #/usage?key_id=...: one key's limits and charts. */
export async function usageView(ctx, query) {
  const keyId = query.key_id || "";
  const key = keyId ? await call("GET", `/v1/user-api-keys/${encodeURIComponent(keyId)}`).catch(() => null) : null;
  const title = key ? `Usage of “${key.name}”` : "Usage";
  return h(
    "section",
    { class: "view", "aria-labelledby": "usage-title" },
    h("div", { class: "view-head" }, h("h1", { id: "usage-title" }, title), h("a", { href: "#/keys", class: "button subtle" }, "← Keys")),
    key ? h("p", { class: "lede" }, "Key ", h("code", {}, key.id), ".") : null,
    key ? await limitsPanel(ctx, key) : null,
    await usageCharts(keyId ? { key_id: keyId } : {}),
  );
}
