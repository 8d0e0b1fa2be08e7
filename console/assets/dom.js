// Building the page. Every value from the API goes in as text (text nodes,
// textContent, attribute values): never as markup, so a key named
// `<img src=x onerror=alert(1)>` shows exactly those characters.

/**
 * h("button", { class: "button", onclick: f }, "Save") -> an element.
 * Children: strings and numbers become text nodes, null/false are skipped,
 * arrays are flattened.
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") {
      el.addEventListener(name.slice(2), value);
    } else if (name === "class") {
      el.className = value;
    } else if (name === "for") {
      el.htmlFor = value;
    } else if (name === "value") {
      el.value = value;
    } else if (name === "checked" || name === "selected" || name === "disabled" || name === "required") {
      el[name] = Boolean(value);
    } else {
      el.setAttribute(name, value === true ? "" : String(value));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else if (child instanceof Node) el.appendChild(child);
    else el.appendChild(document.createTextNode(String(child)));
  }
}

/** Replaces the children of `el`. */
export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

let ids = 0;
/** A fresh id, for tying labels to controls. */
export function uid(prefix = "f") {
  ids += 1;
  return `${prefix}-${ids}`;
}

/** A labelled control: <div class="field"><label>..</label>control<small>hint</small></div>. */
export function field(label, control, hint) {
  if (!control.id) control.id = uid();
  const hintEl = hint ? h("small", { class: "hint", id: `${control.id}-hint` }, hint) : null;
  if (hintEl) control.setAttribute("aria-describedby", hintEl.id);
  return h("div", { class: "field" }, h("label", { for: control.id }, label), control, hintEl);
}

/** A <select> of [value, label] pairs. */
export function select(options, selected, attrs = {}) {
  return h(
    "select",
    attrs,
    options.map(([value, label]) => h("option", { value, selected: value === selected }, label)),
  );
}

/** A notice box; `kind` is "error", "warning" or "info". */
export function notice(kind, ...children) {
  return h("div", { class: `notice ${kind}`, role: kind === "error" ? "alert" : "status" }, ...children);
}

/** A short message at the bottom of the screen. */
export function toast(message) {
  const el = document.getElementById("toast");
  if (!el) return;
  el.textContent = message;
  el.classList.add("shown");
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => el.classList.remove("shown"), 3500);
}

/**
 * A modal dialog (<dialog>, so focus stays inside and Escape closes it).
 * `build(close)` returns the dialog's content; resolves with what close() is given.
 */
export function modal(title, build, { wide = false } = {}) {
  return new Promise((resolve) => {
    const titleId = uid("dialog-title");
    const dialog = h("dialog", { class: wide ? "wide" : null, "aria-labelledby": titleId });
    let result;
    const close = (value) => {
      result = value;
      dialog.close();
    };
    dialog.addEventListener("close", () => {
      dialog.remove();
      resolve(result);
    });
    append(dialog, [h("h2", { id: titleId }, title), build(close)]);
    document.body.appendChild(dialog);
    dialog.showModal();
  });
}

/** Asks a yes/no question; resolves true on the confirming button. */
export function confirmDialog(title, message, confirmLabel, { danger = false } = {}) {
  return modal(title, (close) =>
    h(
      "div",
      {},
      h("p", {}, message),
      h(
        "div",
        { class: "actions" },
        h("button", { type: "button", class: "button subtle", onclick: () => close(false) }, "Cancel"),
        h(
          "button",
          { type: "button", class: danger ? "button danger" : "button primary", onclick: () => close(true) },
          confirmLabel,
        ),
      ),
    ),
  ).then(Boolean);
}

// Dates. The API speaks UTC (instants with Z, and key expiry as a UTC day), so
// does the console: no silent shift into the browser's zone.

/** "2026-06-15T12:03:09Z" -> "2026-06-15 12:03". */
export function instant(iso) {
  if (!iso) return "";
  return iso.replace("T", " ").replace(/:\d\dZ$/, "");
}

/** Today's UTC date plus `days`, as YYYY-MM-DD. */
export function utcDay(days = 0) {
  const d = new Date();
  d.setUTCDate(d.getUTCDate() + days);
  return d.toISOString().slice(0, 10);
}

/** A <time> element showing an instant (UTC), with the full value as a tooltip. */
export function time(iso, empty = "never") {
  if (!iso) return h("span", { class: "muted" }, empty);
  return h("time", { datetime: iso, title: iso }, instant(iso));
}
