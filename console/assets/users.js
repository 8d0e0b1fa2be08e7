// Users (administrators whose key has user_management): list, create, change
// roles and limits (rate limits and credits shared by all the user's keys),
// deactivate and reactivate. The API refuses to demote or deactivate
// the tenant's last active administrator (409); its message is shown as is.
// Users an identity provider manages over SCIM (those with an `external_id`)
// are marked, and a manual change to one asks first: the provider may undo it.

import { h, replace, field, notice, modal, confirmDialog, toast } from "./dom.js";
import { call, ROLES } from "./api.js";
import { limitChips, limitsEditor } from "./limits.js";

export async function usersView(ctx) {
  const users = [...(await ctx.users(true)).values()];
  const me = ctx.me;
  const view = h("section", { class: "view", "aria-labelledby": "users-title" });
  const status = h("div", { class: "view-status" });
  const refresh = () => usersView(ctx).then((v) => view.replaceWith(v)).catch((e) => replace(status, ctx.failed(e)));
  const act = async (work, done) => {
    replace(status);
    try {
      await work();
      toast(done);
      refresh();
    } catch (e) {
      const shown = ctx.failed(e);
      if (shown) replace(status, shown);
    }
  };

  // Resolves true when the change may go ahead: at once for a user no
  // identity provider manages, else once the administrator confirms.
  const managedOk = (user) =>
    !user.external_id ||
    confirmDialog(
      `${user.email} is managed by an identity provider`,
      `Your identity provider provisions this user over SCIM (external id ${user.external_id}). A change made here may be undone at its next sync; make it in the identity provider instead if you can.`,
      "Change anyway",
    );

  const rows = users.map((user) =>
    h(
      "tr",
      { "data-user-id": user.id, class: user.active ? null : "inactive" },
      h(
        "td",
        { "data-label": "Email", class: "name" },
        user.email,
        user.id === me.user.id ? h("span", { class: "you" }, " (you)") : null,
        user.external_id ? [" ", h("span", { class: "badge managed", title: `External id: ${user.external_id}` }, "Identity provider")] : null,
      ),
      h("td", { "data-label": "Name" }, user.name),
      h("td", { "data-label": "Roles" }, h("ul", { class: "chips" }, user.roles.map((r) => h("li", { class: "chip" }, r)))),
      h(
        "td",
        { "data-label": "Limits", class: "limits" },
        limitChips(user),
        h(
          "button",
          {
            type: "button",
            class: "button small",
            "aria-label": `Limits of ${user.email}`,
            onclick: async () => {
              const changed = await editLimits(ctx, user);
              if (changed) {
                toast(`Limits of ${user.email} saved.`);
                refresh();
              }
            },
          },
          "Change",
        ),
      ),
      h("td", { "data-label": "State" }, h("span", { class: `badge ${user.active ? "active" : "inactive"}` }, user.active ? "Active" : "Deactivated")),
      // The day (the columns must fit a laptop's width); the instant is its tooltip.
      h("td", { "data-label": "Created" }, h("time", { datetime: user.created_on, title: user.created_on }, user.created_on.slice(0, 10))),
      h(
        "td",
        { "data-label": "Actions", class: "row-actions" },
        h("a", { class: "button small subtle", href: `#/keys?user=${encodeURIComponent(user.id)}`, "aria-label": `Keys of ${user.email}` }, "Keys"),
        h("a", { class: "button small subtle", href: `#/audit?user_id=${encodeURIComponent(user.id)}`, "aria-label": `Audit events of ${user.email}` }, "Audit"),
        h(
          "button",
          {
            type: "button",
            class: "button small",
            "aria-label": `Change roles of ${user.email}`,
            onclick: async () => {
              if (!(await managedOk(user))) return;
              const roles = await chooseRoles(user);
              if (roles) act(() => call("PATCH", `/v1/users/${encodeURIComponent(user.id)}`, { body: { roles } }), `Roles of ${user.email} changed.`);
            },
          },
          "Roles",
        ),
        user.active
          ? h(
              "button",
              {
                type: "button",
                class: "button small danger-outline",
                "aria-label": `Deactivate ${user.email}`,
                onclick: async () => {
                  if (!(await managedOk(user))) return;
                  const sure = await confirmDialog(
                    `Deactivate ${user.email}?`,
                    "Their keys are refused from the next request on. Reactivating the user restores the keys that are neither revoked nor expired.",
                    "Deactivate",
                    { danger: true },
                  );
                  if (sure) act(() => call("PATCH", `/v1/users/${encodeURIComponent(user.id)}`, { body: { active: false } }), `${user.email} deactivated.`);
                },
              },
              "Deactivate",
            )
          : h(
              "button",
              {
                type: "button",
                class: "button small",
                "aria-label": `Reactivate ${user.email}`,
                onclick: async () => {
                  if (!(await managedOk(user))) return;
                  act(() => call("PATCH", `/v1/users/${encodeURIComponent(user.id)}`, { body: { active: true } }), `${user.email} reactivated.`);
                },
              },
              "Reactivate",
            ),
      ),
    ),
  );

  replace(
    view,
    h(
      "div",
      { class: "view-head" },
      h("h1", { id: "users-title" }, "Users"),
      h("button", { type: "button", class: "button primary", onclick: () => createUser(ctx).then((done) => done && refresh()) }, "New user"),
    ),
    status,
    h(
      "div",
      { class: "table-wrap" },
      h(
        "table",
        { class: "data users" },
        h("caption", { class: "visually-hidden" }, "The tenant's users"),
        h("thead", {}, h("tr", {}, ["Email", "Name", "Roles", "Limits", "State", "Created", "Actions"].map((c) => h("th", { scope: "col" }, c)))),
        h("tbody", {}, rows),
      ),
    ),
    h(
      "p",
      { class: "footnote muted" },
      "Deactivated users are kept, with their keys, for the audit log. Users marked “Identity provider” are provisioned over SCIM; change them there.",
    ),
  );
  return view;
}

function roleBoxes(checked) {
  return ROLES.map((role) => h("label", { class: "check" }, h("input", { type: "checkbox", name: "roles", value: role, checked: checked.includes(role) }), " ", role));
}

function chosen(boxes) {
  return boxes.map((l) => l.querySelector("input")).filter((b) => b.checked).map((b) => b.value);
}

function chooseRoles(user) {
  return modal(`Roles of ${user.email}`, (close) => {
    const boxes = roleBoxes(user.roles);
    return h(
      "form",
      { onsubmit: (event) => { event.preventDefault(); close(chosen(boxes)); } },
      h("fieldset", { class: "field" }, h("legend", {}, "Roles"), h("div", { class: "checks" }, boxes), h("small", { class: "hint" }, "Administrators may act on other users and their keys.")),
      h(
        "div",
        { class: "actions" },
        h("button", { type: "button", class: "button subtle", onclick: () => close(null) }, "Cancel"),
        h("button", { type: "submit", class: "button primary" }, "Save roles"),
      ),
    );
  });
}

async function createUser(ctx) {
  const created = await modal("New user", (close) => {
    const email = h("input", { type: "email", name: "email", required: true, autocomplete: "off" });
    const name = h("input", { name: "name", autocomplete: "off" });
    const boxes = roleBoxes(["Default users"]);
    const error = h("div", { class: "form-error" });
    const submit = h("button", { type: "submit", class: "button primary" }, "Create user");
    return h(
      "form",
      {
        onsubmit: async (event) => {
          event.preventDefault();
          submit.disabled = true;
          const body = { email: email.value.trim(), roles: chosen(boxes) };
          if (name.value.trim()) body.name = name.value.trim();
          try {
            close(await call("POST", "/v1/users", { body }));
          } catch (e) {
            submit.disabled = false;
            replace(error, ctx.failed(e));
          }
        },
      },
      field("Email", email),
      field("Name", name, "Optional; the email if left empty."),
      h("fieldset", { class: "field" }, h("legend", {}, "Roles"), h("div", { class: "checks" }, boxes)),
      error,
      h(
        "div",
        { class: "actions" },
        h("button", { type: "button", class: "button subtle", onclick: () => close(null) }, "Cancel"),
        submit,
      ),
    );
  });
  if (!created) return false;
  toast(`User ${created.email} created.`);
  return true;
}

/**
 * Edits a user's rate limits and credits (shared by all of the user's keys);
 * resolves with the changed user, or null. The API's 400 or 403 is shown as is.
 */
function editLimits(ctx, user) {
  return modal(
    `Limits of ${user.email}`,
    (close) => {
      const limits = limitsEditor(user, { scope: "user" });
      const error = h("div", { class: "form-error" });
      const submit = h("button", { type: "submit", class: "button primary" }, "Save limits");
      return h(
        "form",
        {
          onsubmit: async (event) => {
            event.preventDefault();
            replace(error);
            const body = limits.changes();
            if (!Object.keys(body).length) {
              close(null);
              return;
            }
            submit.disabled = true;
            try {
              close(await call("PATCH", `/v1/users/${encodeURIComponent(user.id)}`, { body }));
            } catch (e) {
              submit.disabled = false;
              limits.invalid(e.body?.errors);
              replace(error, ctx.failed(e));
            }
          },
        },
        h("p", { class: "muted" }, "A verification with any of this user's keys must pass these as well as the key's own."),
        limits.element,
        error,
        h(
          "div",
          { class: "actions" },
          h("button", { type: "button", class: "button subtle", onclick: () => close(null) }, "Cancel"),
          submit,
        ),
      );
    },
    { wide: true },
  );
}
