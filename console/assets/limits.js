// Usage control (API.md section 9): a key's or a user's rate limits and
// credits, and a key's allowed addresses. Shown to everyone who sees the key
// (as text); edited by Administrators only (the API refuses anyone else, 403).
// The editor sends only the fields that changed, each whole: sending credits
// sets the balance anew, so an unchanged balance is never sent back.

import { h, field, select } from "./dom.js";

const UNITS = [
  ["86400000", "days", "day"],
  ["3600000", "hours", "hour"],
  ["60000", "minutes", "minute"],
  ["1000", "seconds", "second"],
  ["1", "milliseconds", "millisecond"],
];

/** 1234567 -> "1,234,567" (the same in every browser locale). */
export function count(n) {
  return Number(n).toLocaleString("en-US");
}

/** A window in the largest unit that divides it: [amount, unit ms as a string]. */
function splitDuration(ms) {
  for (const [unit] of UNITS) {
    if (ms % Number(unit) === 0) return [ms / Number(unit), unit];
  }
  return [ms, "1"];
}

/** 60000 -> "minute", 300000 -> "5 minutes". */
export function duration(ms) {
  const [n, unit] = splitDuration(ms);
  const [, plural, singular] = UNITS.find(([u]) => u === unit);
  return n === 1 ? singular : `${count(n)} ${plural}`;
}

const SHORT = { 86400000: "day", 3600000: "h", 60000: "min", 1000: "s", 1: "ms" };

/** "api: 100/min", "api: 100/5 min": the table's short form. */
function rateShort(limit) {
  const [n, unit] = splitDuration(limit.duration_ms);
  return `${limit.name}: ${count(limit.limit)}/${n === 1 ? "" : `${count(n)} `}${SHORT[unit]}`;
}

export function rateText(limit) {
  return `${limit.name}: ${count(limit.limit)} per ${duration(limit.duration_ms)}`;
}

export function refillText(refill) {
  if (!refill) return "never refilled";
  if (refill.interval === "daily") return `refilled to ${count(refill.amount)} every day (00:00 UTC)`;
  return `refilled to ${count(refill.amount)} on day ${refill.day ?? 1} of every month (00:00 UTC)`;
}

export function creditsText(credits) {
  return `${count(credits.remaining)} credits left`;
}

const IPS_SHOWN = 1;

/**
 * The table's summary: chips for the credits, each rate limit and (keys) the
 * allowed addresses; "none" when nothing limits it.
 */
export function limitChips(item) {
  const chips = [];
  if (item.credits) {
    chips.push(h("li", { class: "chip credits", title: `${creditsText(item.credits)}, ${refillText(item.credits.refill)}` }, `${count(item.credits.remaining)} credits`));
  }
  for (const limit of item.ratelimits || []) {
    chips.push(h("li", { class: "chip rate", title: `Rate limit ${rateText(limit)}` }, rateShort(limit)));
  }
  const ips = item.allowed_ips || [];
  for (const ip of ips.slice(0, IPS_SHOWN)) chips.push(h("li", { class: "chip ip", title: "Allowed address" }, ip));
  if (ips.length > IPS_SHOWN) chips.push(h("li", { class: "chip more", title: ips.join(" ") }, `+${ips.length - IPS_SHOWN} more`));
  if (!chips.length) return h("span", { class: "muted" }, "none");
  return h("ul", { class: "chips limits" }, chips);
}

/** The whole settings, read-only: a description list. */
export function limitsDetails(item, { ips = false } = {}) {
  const rates = item.ratelimits || [];
  const list = (items, empty) =>
    items.length ? h("ul", { class: "plain" }, items.map((text) => h("li", {}, text))) : h("span", { class: "muted" }, empty);
  return h(
    "dl",
    { class: "limits-details" },
    h("dt", {}, "Rate limits"),
    h("dd", {}, list(rates.map(rateText), "None")),
    h("dt", {}, "Credits"),
    h(
      "dd",
      {},
      item.credits
        ? [h("strong", { class: "credits-left" }, creditsText(item.credits)), `, ${refillText(item.credits.refill)}`]
        : h("span", { class: "muted" }, "Unlimited"),
    ),
    ips ? [h("dt", {}, "Allowed addresses"), h("dd", {}, list(item.allowed_ips || [], "Any address"))] : null,
  );
}

/** Shows `part` (a fieldset) or hides and disables it, so its controls are neither validated nor sent. */
function shown(part, on) {
  part.hidden = !on;
  part.disabled = !on;
}

/** The settings as the API answers them, in the shape the editor sends. */
function normalCredits(credits) {
  if (!credits) return null;
  const refill = credits.refill
    ? credits.refill.interval === "monthly"
      ? { interval: "monthly", amount: credits.refill.amount, day: credits.refill.day ?? 1 }
      : { interval: credits.refill.interval, amount: credits.refill.amount }
    : null;
  return { remaining: credits.remaining, refill };
}

function normalRates(rates) {
  return (rates || []).map((r) => ({ name: r.name, limit: r.limit, duration_ms: r.duration_ms }));
}

/** "" stays "" (the API says what is wrong with it), else a number. */
function number(input) {
  const text = input.value.trim();
  return text === "" ? "" : Number(text);
}

/**
 * The editor of `item`'s settings (`ips`: with allowed addresses, for keys).
 * Returns { element, changes() -> the changed fields, invalid(errors) }.
 */
export function limitsEditor(item, { ips = false, scope = "key" } = {}) {
  // Rate limits: a row (its own fieldset) per limit.
  const rows = [];
  const rowList = h("div", { class: "rate-rows" });
  const noRates = h("p", { class: "muted rate-none" }, "None.");
  const addButton = h("button", { type: "button", class: "button small", onclick: () => addRow(null, true) }, "Add a rate limit");
  const renumber = () => {
    rows.forEach((row, i) => {
      row.legend.textContent = `Rate limit ${i + 1}`;
      row.remove.setAttribute("aria-label", `Remove rate limit ${i + 1}`);
    });
    noRates.hidden = rows.length > 0;
  };
  function addRow(limit, focus) {
    const [n, unit] = limit ? splitDuration(limit.duration_ms) : [1, "60000"];
    const row = {
      name: h("input", { name: "ratelimit_name", autocomplete: "off", spellcheck: "false", autocapitalize: "none", required: true, value: limit?.name ?? "" }),
      limit: h("input", { type: "number", name: "ratelimit_limit", min: 1, step: 1, required: true, value: limit ? String(limit.limit) : "" }),
      n: h("input", { type: "number", name: "ratelimit_window", min: 1, step: 1, required: true, value: String(n) }),
      unit: select(UNITS.map(([u, plural]) => [u, plural]), unit, { name: "ratelimit_unit" }),
      legend: h("legend", {}),
      remove: h("button", { type: "button", class: "button small subtle" }, "Remove"),
    };
    row.element = h(
      "fieldset",
      { class: "rate-row" },
      row.legend,
      field("Name", row.name),
      field("Limit", row.limit),
      field("Per", row.n),
      field("Unit", row.unit),
      h("div", { class: "rate-remove" }, row.remove),
    );
    row.remove.addEventListener("click", () => {
      rows.splice(rows.indexOf(row), 1);
      row.element.remove();
      renumber();
      addButton.focus();
    });
    rows.push(row);
    rowList.appendChild(row.element);
    renumber();
    if (focus) row.name.focus();
  }
  for (const limit of item.ratelimits || []) addRow(limit, false);
  renumber();
  const rateSet = h(
    "fieldset",
    { class: "field limits-rates" },
    h("legend", {}, "Rate limits"),
    h("small", { class: "hint" }, `At most so many verifications per window (windows aligned to the clock); at most 5${scope === "user" ? ", shared by all of this user's keys" : ""}. Names: a-z, 0-9, _ and -.`),
    noRates,
    rowList,
    h("div", {}, addButton),
  );

  // Credits: unlimited, or a balance with an optional refill.
  const current = normalCredits(item.credits);
  const mode = select(
    [
      ["unlimited", "Unlimited"],
      ["limited", "Limited"],
    ],
    current ? "limited" : "unlimited",
    { name: "credits_mode" },
  );
  const remaining = h("input", { type: "number", name: "credits_remaining", min: 0, step: 1, required: true, value: current ? String(current.remaining) : "" });
  const refill = select(
    [
      ["", "Never"],
      ["daily", "Every day"],
      ["monthly", "Every month"],
    ],
    current?.refill?.interval ?? "",
    { name: "refill_interval" },
  );
  const amount = h("input", { type: "number", name: "refill_amount", min: 1, step: 1, required: true, value: current?.refill ? String(current.refill.amount) : "" });
  const day = h("input", { type: "number", name: "refill_day", min: 1, max: 28, step: 1, required: true, value: String(current?.refill?.day ?? 1) });
  const dayPart = h("fieldset", { class: "plain-set" }, field("Day of the month", day, "1 to 28; refilled at 00:00 UTC."));
  const refillPart = h("fieldset", { class: "plain-set" }, field("Refill amount", amount, "The balance is set to this on each refill."), dayPart);
  const balancePart = h("fieldset", { class: "plain-set" }, field("Remaining credits", remaining, "Each verification spends its cost (1 unless asked)."), field("Refill", refill), refillPart);
  const sync = () => {
    shown(balancePart, mode.value === "limited");
    shown(refillPart, mode.value === "limited" && refill.value !== "");
    shown(dayPart, mode.value === "limited" && refill.value === "monthly");
  };
  mode.addEventListener("change", sync);
  refill.addEventListener("change", sync);
  sync();
  const creditSet = h(
    "fieldset",
    { class: "field limits-credits" },
    h("legend", {}, "Usage credits"),
    field("Balance", mode, scope === "user" ? "One balance shared by all of this user's keys." : "A balance this key spends."),
    balancePart,
  );

  // Allowed addresses (keys).
  const addresses = ips
    ? h("textarea", {
        name: "allowed_ips",
        class: "json",
        rows: Math.min(8, Math.max(2, (item.allowed_ips || []).length + 1)),
        spellcheck: "false",
        autocomplete: "off",
        autocapitalize: "off",
        value: (item.allowed_ips || []).join("\n"),
        placeholder: "192.0.2.7\n10.0.0.0/8",
      })
    : null;

  const element = h(
    "div",
    { class: "limits-editor" },
    rateSet,
    creditSet,
    ips ? field("Allowed addresses", addresses, "IPv4 or IPv6 addresses or CIDRs, one a line; empty: any address. This key is refused from anywhere else, keyward's own API included.") : null,
  );

  return {
    element,
    /** The fields that differ from `item`'s, as the API takes them. */
    changes() {
      const body = {};
      const rates = rows.map((row) => ({ name: row.name.value.trim(), limit: number(row.limit), duration_ms: number(row.n) === "" ? "" : number(row.n) * Number(row.unit.value) }));
      if (JSON.stringify(rates) !== JSON.stringify(normalRates(item.ratelimits))) body.ratelimits = rates;
      let credits = null;
      if (mode.value === "limited") {
        credits = { remaining: number(remaining), refill: null };
        if (refill.value === "daily") credits.refill = { interval: "daily", amount: number(amount) };
        if (refill.value === "monthly") credits.refill = { interval: "monthly", amount: number(amount), day: number(day) };
      }
      if (JSON.stringify(credits) !== JSON.stringify(current)) body.credits = credits;
      if (ips) {
        const list = addresses.value.split(/[\s,]+/).filter(Boolean);
        if (list.join("\n") !== (item.allowed_ips || []).join("\n")) body.allowed_ips = list;
      }
      return body;
    },
    /** Marks the controls of the fields a 400 names (`errors`: problem details' member). */
    invalid(errors = {}) {
      const controls = {
        ratelimits: rows.flatMap((r) => [r.name, r.limit, r.n]),
        credits: [remaining, amount, day],
        allowed_ips: addresses ? [addresses] : [],
      };
      for (const [name, list] of Object.entries(controls)) {
        for (const control of list) {
          if (errors[name]) control.setAttribute("aria-invalid", "true");
          else control.removeAttribute("aria-invalid");
        }
      }
      const first = Object.keys(controls).find((name) => errors[name] && controls[name].length);
      if (first) controls[first].find((c) => !c.matches(":disabled"))?.focus();
    },
  };
}
