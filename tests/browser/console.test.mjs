// The console in a real browser: the release binary on a fresh SQLite
// database, driven through headless Chromium (Debian's /usr/bin/chromium) with
// playwright-core. Run it with `bash tests/browser/run`, which builds the binary
// and installs what is missing.
//
// Environment: KEYWARD_BIN (default target/release/keyward), CHROMIUM (default
// /usr/bin/chromium), KEYWARD_SCREENSHOTS (default target/console-screenshots).

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, execFileSync } from "node:child_process";
import crypto from "node:crypto";
import fs from "node:fs";
import http from "node:http";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const BIN = path.resolve(ROOT, process.env.KEYWARD_BIN || "target/release/keyward");
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const SHOTS = path.resolve(ROOT, process.env.KEYWARD_SCREENSHOTS || "target/console-screenshots");
const XSS = "<img src=x onerror=alert(1)>";

let work;
let env;
let server;
let serverLog = "";
let stopping = false;
let browser;
let page;
let base;
let admin; // { key, user_id }
let dora; // a Default users member: { key }
const requests = [];
const patches = []; // PATCH requests the page sent: { url, body }
const problems = []; // page errors, console errors (CSP violations land here), dialogs
let receiver; // the webhook receiver on 127.0.0.1: { url, got: [{ headers, body }], failNext, server }

function utcDay(days) {
  const d = new Date();
  d.setUTCDate(d.getUTCDate() + days);
  return d.toISOString().slice(0, 10);
}

function cli(...args) {
  const out = execFileSync(BIN, [...args, "--json"], { env, cwd: work, encoding: "utf8" });
  return JSON.parse(out);
}

/** An HTTP endpoint on 127.0.0.1 that records every delivery and answers 204
 * (500 to the next `failNext` ones). */
async function startReceiver() {
  const state = { got: [], failNext: 0 };
  state.server = http.createServer((req, res) => {
    let body = "";
    req.setEncoding("utf8");
    req.on("data", (chunk) => (body += chunk));
    req.on("end", () => {
      state.got.push({ headers: req.headers, body });
      const fail = state.failNext > 0;
      if (fail) state.failNext -= 1;
      res.writeHead(fail ? 500 : 204).end();
    });
  });
  await new Promise((resolve) => state.server.listen(0, "127.0.0.1", resolve));
  state.url = `http://127.0.0.1:${state.server.address().port}/hook`;
  return state;
}

/** The deliveries the receiver got that `wanted` accepts, once there are `count` (waits up to 20 s). */
async function received(wanted, count = 1) {
  const deadline = Date.now() + 20000;
  for (;;) {
    const found = receiver.got.filter(wanted);
    if (found.length >= count) return found;
    assert.ok(Date.now() < deadline, `${count} deliveries did not arrive; got ${JSON.stringify(receiver.got.map((g) => g.body))}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** The signatures of a delivery that verify with `secret` (Standard Webhooks:
 * HMAC-SHA256 of "<id>.<timestamp>.<body>" keyed by the base64 after whsec_),
 * computed here with node's crypto, not with keyward's code. */
function verifiedBy(got, secret) {
  const key = Buffer.from(secret.slice("whsec_".length), "base64");
  const content = `${got.headers["webhook-id"]}.${got.headers["webhook-timestamp"]}.${got.body}`;
  const expected = `v1,${crypto.createHmac("sha256", key).update(content).digest("base64")}`;
  return got.headers["webhook-signature"].split(" ").filter((s) => s === expected).length;
}

function freePort() {
  return new Promise((resolve, reject) => {
    const probe = net.createServer();
    probe.unref();
    probe.on("error", reject);
    probe.listen(0, "127.0.0.1", () => {
      const { port } = probe.address();
      probe.close(() => resolve(port));
    });
  });
}

/** The API as curl would call it. */
async function api(method, urlPath, key, body) {
  const headers = { tenant: "acme", "x-key": key };
  if (body) headers["content-type"] = "application/json";
  const res = await fetch(base + urlPath, { method, headers, body: body ? JSON.stringify(body) : undefined });
  return { status: res.status, body: await res.json().catch(() => null) };
}

async function shot(name) {
  // The passing notice would cover the page.
  await page.evaluate(() => document.getElementById("toast").classList.remove("shown"));
  await page.waitForTimeout(300); // its fade
  await page.screenshot({ path: path.join(SHOTS, `${name}.png`), fullPage: true });
}

/** Waits until the page shows the route in the address bar. */
async function settled() {
  await page.waitForFunction(() => document.getElementById("main").dataset.view === location.hash);
}

async function heading(text) {
  await page.getByRole("heading", { level: 1, name: text }).waitFor();
}

async function signIn(key) {
  await page.goto(`${base}/console`);
  await page.getByLabel("Tenant").fill("acme");
  await page.getByLabel("API key").fill(key);
  await page.getByRole("button", { name: "Sign in" }).click();
}

function keyRows() {
  return page.locator("table.keys tbody tr");
}

async function keyNames() {
  await settled();
  return keyRows().locator("td.name").allTextContents();
}

async function nav(name, title) {
  await page.getByRole("navigation", { name: "Sections" }).getByRole("link", { name }).click();
  await heading(title);
  await settled();
}

before(async () => {
  assert.ok(fs.existsSync(BIN), `${BIN} is missing: cargo build --release`);
  fs.mkdirSync(SHOTS, { recursive: true });
  work = fs.mkdtempSync(path.join(os.tmpdir(), "keyward-console-"));
  // The webhook receiver runs on 127.0.0.1: private addresses are allowed.
  env = { ...process.env, KEYWARD_DATABASE_URL: `sqlite://${work}/keyward.db`, KEYWARD_AUTH_FAILURES_PER_MINUTE: "0", KEYWARD_WEBHOOK_ALLOW_PRIVATE: "1", RUST_LOG: "warn" };
  for (const name of ["KEYWARD_TENANT", "KEYWARD_CONFIG", "KEYWARD_CORS_ORIGINS", "KEYWARD_BIND"]) delete env[name];

  admin = cli("bootstrap", "--tenant", "acme", "--email", "admin@acme.test");
  cli("user", "create", "--tenant", "acme", "--email", "dora@acme.test", "--name", "Dora");
  dora = cli("key", "create", "--tenant", "acme", "--user", "dora@acme.test", "--name", "dora-laptop", "--scope", "public_api", "--scope", "user_key_management", "--meta", '{"device":"laptop"}');
  cli("key", "create", "--tenant", "acme", "--user", "admin@acme.test", "--name", XSS);
  cli("key", "create", "--tenant", "acme", "--user", "admin@acme.test", "--name", "short-lived", "--expires", utcDay(5));

  receiver = await startReceiver();
  const port = await freePort();
  base = `http://127.0.0.1:${port}`;
  server = spawn(BIN, ["serve"], { env: { ...env, KEYWARD_BIND: `127.0.0.1:${port}` }, cwd: work, stdio: ["ignore", "ignore", "pipe"] });
  server.stderr.on("data", (chunk) => (serverLog += chunk));
  server.on("exit", (code, signal) => {
    if (!stopping) console.error(`keyward exited early (${code ?? signal}):\n${serverLog}`);
  });
  for (let i = 0; ; i++) {
    const ready = await fetch(`${base}/readiness`).then((r) => r.ok, () => false);
    if (ready) break;
    if (server.exitCode !== null || i > 100) throw new Error(`keyward did not start:\n${serverLog}`);
    await new Promise((r) => setTimeout(r, 100));
  }

  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 }, colorScheme: "light" });
  context.on("request", (req) => {
    requests.push(req.url());
    if (req.method() === "PATCH") patches.push({ url: req.url(), body: req.postData() });
  });
  page = await context.newPage();
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
  page.on("console", (m) => m.type() === "error" && problems.push(`console: ${m.text()}`));
  page.on("dialog", (d) => {
    problems.push(`dialog: ${d.message()}`);
    d.dismiss().catch(() => {});
  });
  page.setDefaultTimeout(10000);
});

after(async () => {
  await browser?.close().catch(() => {});
  stopping = true;
  receiver?.server.close();
  if (server && server.exitCode === null) {
    server.kill("SIGTERM");
    await new Promise((resolve) => {
      const force = setTimeout(() => server.kill("SIGKILL"), 5000);
      server.once("exit", () => {
        clearTimeout(force);
        resolve();
      });
    });
  }
  if (work) fs.rmSync(work, { recursive: true, force: true });
});

test("a wrong key shows the API's own message", async () => {
  await signIn("kw_not-a-key");
  await page.getByRole("alert").filter({ hasText: "Invalid API key" }).waitFor();
  await shot("01-sign-in-refused");
  assert.equal(await page.evaluate(() => sessionStorage.length), 0);
});

test("the bootstrap key signs in; the key stays in sessionStorage only", async () => {
  await signIn(admin.key);
  await heading("Overview");
  assert.match(page.url(), /\/console#\/overview$/);
  const stored = await page.evaluate(() => ({ session: JSON.stringify(sessionStorage), local: localStorage.length, cookie: document.cookie }));
  assert.ok(stored.session.includes(admin.key));
  assert.equal(stored.local, 0);
  assert.equal(stored.cookie, "");
  const counts = await page.locator(".card .count").allTextContents();
  // Active, expired, expiring within 30 days, unused for 90 days (the bootstrap
  // key's use may or may not have been written yet).
  assert.deepEqual(counts.slice(0, 3), ["4", "0", "1"]);
  assert.ok(["3", "4"].includes(counts[3]), counts[3]);
  await shot("02-overview");
  await page.locator(".card", { hasText: "Expiring within 30 days" }).getByRole("link").click();
  await heading("API keys");
  assert.deepEqual(await keyNames(), ["short-lived"]);
});

let secret;
let secretId;

test("a new key's secret is shown once, and works", async () => {
  await nav("Keys", "API keys");
  await page.getByRole("button", { name: "New key" }).click();
  const dialog = page.getByRole("dialog", { name: "New key" });
  await dialog.getByLabel("Name").fill("ci-deploy");
  await dialog.getByLabel("user_key_management").check();
  await dialog.getByLabel("Metadata (JSON object, optional)").fill('{"env": "ci"}');
  await dialog.getByRole("button", { name: "Create key" }).click();
  const shown = page.getByRole("dialog", { name: "Key created" });
  await shown.getByText("will never be shown again").waitFor();
  secret = await shown.locator("input[data-secret]").inputValue();
  assert.match(secret, /^kw_[0-9A-Za-z]{38}$/);
  await shot("03-key-created");
  await shown.getByRole("button", { name: "Done" }).click();
  await page.locator("table.keys td.name", { hasText: "ci-deploy" }).waitFor();
  secretId = await page.locator("tr", { hasText: "ci-deploy" }).getAttribute("data-key-id");

  // Gone after a reload, still signed in.
  await page.reload();
  await heading("API keys");
  await page.locator("table.keys td.name", { hasText: "ci-deploy" }).waitFor();
  const everything = await page.evaluate(() => document.documentElement.outerHTML + [...document.querySelectorAll("input")].map((i) => i.value).join(" "));
  assert.ok(!everything.includes(secret), "the secret is shown again");

  // curl-like: the secret authenticates.
  const reply = await api("GET", `/v1/user-api-keys/${secretId}`, secret);
  assert.equal(reply.status, 200, JSON.stringify(reply.body));
  assert.equal(reply.body.name, "ci-deploy");
  assert.deepEqual(reply.body.scopes, ["public_api", "user_key_management"]);
  assert.deepEqual(reply.body.meta, { env: "ci" });
});

test("revoking asks first, then the key stops working", async () => {
  const row = page.locator("tr", { hasText: "ci-deploy" });
  await row.getByRole("button", { name: "Revoke ci-deploy" }).click();
  const confirm = page.getByRole("dialog", { name: "Revoke “ci-deploy”?" });
  await shot("04-revoke-confirm");
  await confirm.getByRole("button", { name: "Cancel" }).click();
  assert.equal((await api("GET", `/v1/user-api-keys/${secretId}`, secret)).status, 200);

  await row.getByRole("button", { name: "Revoke ci-deploy" }).click();
  await confirm.getByRole("button", { name: "Revoke key" }).click();
  await page.locator("tr", { hasText: "ci-deploy" }).waitFor({ state: "detached" });
  const reply = await api("GET", `/v1/user-api-keys/${secretId}`, secret);
  assert.equal(reply.status, 401);
  assert.deepEqual(reply.body.errors, { "x-key": ["Invalid API key"] });
});

test("filters narrow the table through the API's own parameters", async () => {
  await nav("Keys", "API keys");
  assert.deepEqual(await keyNames(), ["bootstrap", "dora-laptop", XSS, "short-lived"]);
  await page.getByLabel("Expires before").fill(utcDay(10));
  await page.getByRole("button", { name: "Apply" }).click();
  await page.waitForURL(/expires_before=/);
  assert.deepEqual(await keyNames(), ["short-lived"]);
  await page.getByRole("button", { name: "Clear" }).click();
  await page.waitForURL(/#\/keys$/);
  await settled();
  await page.getByLabel("State").selectOption("expired");
  await page.getByRole("button", { name: "Apply" }).click();
  await page.waitForURL(/state=expired/);
  await settled();
  await page.getByText("No key matches these filters.").waitFor();
  await page.getByLabel("State").selectOption("active");
  await page.getByLabel("Per page").selectOption("25");
  await page.getByRole("button", { name: "Apply" }).click();
  await page.waitForURL(/state=active/);
  assert.equal((await keyNames()).length, 4);
  await page.getByRole("button", { name: "Clear" }).click();
  await page.waitForURL(/#\/keys$/);
  assert.equal((await keyNames()).length, 4);
  await shot("05-keys");
});

test("a key named like markup shows those characters", async () => {
  const cell = page.locator("table.keys td.name", { hasText: "onerror" });
  assert.equal(await cell.textContent(), XSS);
  assert.equal(await page.locator("table.keys img").count(), 0);
  assert.ok(!problems.some((p) => p.startsWith("dialog")), problems.join("\n"));
});

test("editing a key's name and metadata: checked first, refused with the API's words, saved, shown as text", async () => {
  const editButton = () => page.locator("tr", { hasText: "short-lived" }).getByRole("button", { name: /^Edit short-lived/ });
  const id = await page.locator("tr", { hasText: "short-lived" }).getAttribute("data-key-id");
  assert.equal(await page.locator(`tr[data-key-id="${id}"] td.meta`).textContent(), "none");

  // Opened from the keyboard; Escape leaves without a request.
  await editButton().focus();
  await page.keyboard.press("Enter");
  const dialog = page.getByRole("dialog", { name: "Edit “short-lived”" });
  await dialog.waitFor();
  assert.equal(await page.evaluate(() => document.activeElement?.name), "name");
  await page.keyboard.press("Escape");
  await dialog.waitFor({ state: "detached" });
  assert.equal(patches.length, 0);

  await editButton().click();
  const name = dialog.getByLabel("Name");
  const meta = dialog.getByLabel("Metadata (JSON object)");
  assert.equal(await name.inputValue(), "short-lived");
  assert.equal(await meta.inputValue(), "");

  // Not JSON, and JSON that is not an object: a message, and nothing sent.
  await meta.fill('{"team": ');
  await dialog.getByRole("button", { name: "Save" }).click();
  await dialog.getByRole("alert").filter({ hasText: "Metadata is not valid JSON" }).waitFor();
  assert.equal(await meta.getAttribute("aria-invalid"), "true");
  await meta.fill('["payments"]');
  await dialog.getByRole("button", { name: "Save" }).click();
  await dialog.getByRole("alert").filter({ hasText: "Metadata must be a JSON object" }).waitFor();
  assert.equal(patches.length, 0);

  // An object the API refuses (over 4 KiB): its own 400 message, dialog still open.
  await meta.fill(JSON.stringify({ blob: "x".repeat(5000) }));
  await dialog.getByRole("button", { name: "Save" }).click();
  await dialog.getByRole("alert").filter({ hasText: "meta must be a JSON object of at most 4 KiB." }).waitFor();
  assert.equal(patches.length, 1);
  assert.equal((await api("GET", `/v1/user-api-keys/${id}`, admin.key)).body.name, "short-lived");

  // A good change: the row shows it, and the API has it.
  const wanted = { team: "payments", x: XSS };
  await name.fill("short-lived-ci");
  await meta.fill(JSON.stringify(wanted));
  await dialog.getByRole("button", { name: "Save" }).click();
  await dialog.waitFor({ state: "detached" });
  const row = page.locator(`tr[data-key-id="${id}"]`);
  await row.locator("td.name", { hasText: "short-lived-ci" }).waitFor();
  assert.equal(await row.locator("td.name").textContent(), "short-lived-ci");
  assert.deepEqual(await row.locator("td.meta li").allTextContents(), ["team: payments", `x: ${XSS}`]);
  assert.equal(await page.locator("table.keys img").count(), 0);
  assert.equal(await page.evaluate(() => document.activeElement?.getAttribute("aria-label")), "Edit short-lived-ci");
  // Nine columns still fit a laptop's width: no sideways scrolling to reach the actions.
  const wrap = await page.locator(".table-wrap").evaluate((el) => [el.scrollWidth, el.clientWidth]);
  assert.ok(wrap[0] <= wrap[1], `the keys table overflows: ${wrap}`);
  assert.equal(patches.length, 2);
  assert.deepEqual(JSON.parse(patches[1].body), { name: "short-lived-ci", meta: wanted });
  const reply = await api("GET", `/v1/user-api-keys/${id}`, admin.key);
  assert.equal(reply.status, 200, JSON.stringify(reply.body));
  assert.equal(reply.body.name, "short-lived-ci");
  assert.deepEqual(reply.body.meta, wanted);

  // Reopened: the current metadata, pretty-printed, as text.
  await page.getByRole("button", { name: "Edit short-lived-ci" }).click();
  const again = page.getByRole("dialog", { name: "Edit “short-lived-ci”" });
  assert.equal(await again.getByLabel("Metadata (JSON object)").inputValue(), JSON.stringify(wanted, null, 2));
  assert.equal(await again.locator("img").count(), 0);
  await shot("10-key-edit");
  await page.setViewportSize({ width: 390, height: 844 });
  await shot("11-key-edit-phone");
  await page.setViewportSize({ width: 1280, height: 800 });
  // Saving unchanged sends nothing.
  await again.getByRole("button", { name: "Save" }).click();
  await again.waitFor({ state: "detached" });
  assert.equal(patches.length, 2);
  assert.ok(!problems.some((p) => p.startsWith("dialog")), problems.join("\n"));
});

test("an administrator creates and deactivates a user; the last admin is protected", async () => {
  await nav("Users", "Users");
  await page.getByRole("button", { name: "New user" }).click();
  const dialog = page.getByRole("dialog", { name: "New user" });
  await dialog.getByLabel("Email").fill("erin@acme.test");
  await dialog.getByLabel("Name").fill("Erin");
  await dialog.getByRole("button", { name: "Create user" }).click();
  const row = page.locator("tr", { hasText: "erin@acme.test" });
  await row.waitFor();
  await row.getByRole("button", { name: "Deactivate erin@acme.test" }).click();
  await page.getByRole("dialog").getByRole("button", { name: "Deactivate" }).click();
  await page.locator("tr", { hasText: "erin@acme.test" }).getByText("Deactivated").waitFor();
  await page.locator("tr", { hasText: "erin@acme.test" }).getByRole("button", { name: "Reactivate erin@acme.test" }).waitFor();

  await page.locator("tr", { hasText: "admin@acme.test" }).getByRole("button", { name: "Deactivate admin@acme.test" }).click();
  await page.getByRole("dialog").getByRole("button", { name: "Deactivate" }).click();
  await page.getByRole("alert").filter({ hasText: "last active administrator" }).waitFor();
  await shot("06-users");
  const users = await api("GET", "/v1/users", admin.key);
  const erin = users.body.users.find((u) => u.email === "erin@acme.test");
  assert.equal(erin.active, false);
  assert.equal(users.body.users.find((u) => u.email === "admin@acme.test").active, true);
});

test("users an identity provider manages are marked, and a manual change asks first", async () => {
  const res = await fetch(`${base}/scim/v2/acme/Users`, {
    method: "POST",
    headers: { authorization: `Bearer ${admin.key}`, "content-type": "application/scim+json" },
    body: JSON.stringify({ schemas: ["urn:ietf:params:scim:schemas:core:2.0:User"], userName: "finn@acme.test", displayName: "Finn", externalId: "00uFinn" }),
  });
  assert.equal(res.status, 201);
  await nav("Overview", "Overview");
  await nav("Users", "Users");
  const row = page.locator("tr", { hasText: "finn@acme.test" });
  await row.getByText("Identity provider").waitFor();
  assert.equal(await page.locator("tr", { hasText: "dora@acme.test" }).getByText("Identity provider").count(), 0);
  const before = patches.length;
  // Roles: the warning, declined: nothing is sent.
  await row.getByRole("button", { name: "Change roles of finn@acme.test" }).click();
  const warning = page.getByRole("dialog", { name: "finn@acme.test is managed by an identity provider" });
  await warning.getByText("00uFinn").waitFor();
  await shot("06b-managed-user-warning");
  await warning.getByRole("button", { name: "Cancel" }).click();
  await warning.waitFor({ state: "detached" });
  assert.equal(patches.length, before);
  // Deactivate: the warning, accepted, then the usual confirmation.
  await row.getByRole("button", { name: "Deactivate finn@acme.test" }).click();
  await warning.getByRole("button", { name: "Change anyway" }).click();
  await page.getByRole("dialog", { name: "Deactivate finn@acme.test?" }).getByRole("button", { name: "Deactivate" }).click();
  await page.locator("tr", { hasText: "finn@acme.test" }).getByText("Deactivated").waitFor();
  const users = await api("GET", "/v1/users", admin.key);
  const finn = users.body.users.find((u) => u.email === "finn@acme.test");
  assert.equal(finn.active, false);
  assert.equal(finn.external_id, "00uFinn");
  assert.equal(users.body.users.find((u) => u.email === "dora@acme.test").external_id, null);
});

test("the audit log shows the changes, filtered by user", async () => {
  await nav("Audit log", "Audit log");
  const actions = await page.locator("table.audit tbody tr td:nth-child(2)").allTextContents();
  for (const action of ["Key created", "Key updated", "Key revoked", "User created", "User deactivated"]) {
    assert.ok(actions.includes(action), `${action} in ${actions}`);
  }
  await page.getByLabel("User").selectOption({ label: "erin@acme.test" });
  await page.getByRole("button", { name: "Apply" }).click();
  await page.waitForURL(/user_id=/);
  await settled();
  assert.deepEqual(await page.locator("table.audit tbody tr td:nth-child(2)").allTextContents(), ["User created", "User deactivated"]);
  await shot("07-audit");
});

test("usage: the overview and each key's page chart verifications by outcome, as SVG drawn here", async () => {
  // What a reverse proxy asks: 5 valid, 2 refused for a scope Dora's key lacks.
  const verify = (key, query = "") => fetch(`${base}/v1/auth${query}`, { headers: { tenant: "acme", "x-key": key } }).then((r) => r.status);
  for (let i = 0; i < 5; i++) assert.equal(await verify(admin.key), 200);
  for (let i = 0; i < 2; i++) assert.equal(await verify(dora.key, "?scope=user_management"), 403);
  const legend = (label) => page.locator(".usage-chart").first().locator(".legend li", { hasText: label }).locator("strong").textContent();
  // Counts are written within seconds (the contract: 10): reload until they show.
  await nav("Overview", "Overview");
  const deadline = Date.now() + 15000;
  for (;;) {
    await page.locator(".usage-chart").first().waitFor();
    if ((await legend("Valid (200)")) === "5" && (await legend("Forbidden (403)")) === "2") break;
    assert.ok(Date.now() < deadline, "the verifications did not show within 15 s");
    await page.waitForTimeout(1000);
    await page.reload();
    await heading("Overview");
    await settled();
  }
  const charts = page.locator(".usage-chart");
  assert.equal(await charts.count(), 2);
  assert.deepEqual(await charts.locator("figcaption").allTextContents(), [
    "Verifications in the last 24 hours, by hour",
    "Verifications in the last 30 days, by day",
  ]);
  // Bars stacked by outcome, each with its numbers as a title; a legend names every outcome.
  assert.ok((await charts.first().locator("rect.o-valid").count()) >= 1);
  assert.ok((await charts.first().locator("rect.o-forbidden").count()) >= 1);
  assert.deepEqual(await charts.first().locator(".legend li").allTextContents(), [
    "Valid (200): 5", "Forbidden (403): 2", "Rate limited (429): 0", "Usage exceeded (429): 0", "Invalid (401): 0",
  ]);
  // The numbers, behind a toggle: one row per hour.
  const table = charts.first().locator("details.chart-table");
  assert.equal(await table.locator("table").isVisible(), false);
  await table.locator("summary").click();
  assert.equal(await table.locator("tbody tr").count(), 24);
  const valid = (await table.locator("tbody td:nth-child(2)").allTextContents()).reduce((a, n) => a + Number(n), 0);
  assert.equal(valid, 5);
  // Strict CSP: no inline style anywhere, nothing from another origin.
  assert.equal(await page.evaluate(() => document.querySelectorAll("[style]").length), 0);
  await table.locator("summary").click();
  await shot("10-usage-overview");

  // A key's own page, from the key table.
  await nav("Keys", "API keys");
  await page.getByRole("link", { name: "Usage of dora-laptop" }).click();
  await heading("Usage of “dora-laptop”");
  await settled();
  assert.equal(await legend("Valid (200)"), "0");
  assert.equal(await legend("Forbidden (403)"), "2");
  await page.getByRole("link", { name: "← Keys" }).click();
  await heading("API keys");
  await page.getByRole("link", { name: "Usage of bootstrap" }).click();
  await heading("Usage of “bootstrap”");
  await settled();
  assert.equal(await legend("Valid (200)"), "5");
  assert.equal(await legend("Forbidden (403)"), "0");
  await shot("11-usage-key");
});


test("limits: an administrator sets a key's rate limit, monthly credits and allowed addresses; a bad value shows the API's words", async () => {
  await nav("Keys", "API keys");
  const id = await page.locator("tr", { hasText: "short-lived-ci" }).getAttribute("data-key-id");
  const row = page.locator(`tr[data-key-id="${id}"]`);
  assert.equal(await row.locator("td.limits").textContent(), "none");
  const before = patches.length;

  await row.getByRole("button", { name: "Edit short-lived-ci" }).click();
  const dialog = page.getByRole("dialog", { name: "Edit “short-lived-ci”" });
  await dialog.getByRole("button", { name: "Add a rate limit" }).click();
  const rate = dialog.getByRole("group", { name: "Rate limit 1" });
  // The new row's name has the focus.
  assert.equal(await page.evaluate(() => document.activeElement?.name), "ratelimit_name");
  await rate.getByLabel("Name", { exact: true }).fill("api");
  await rate.getByLabel("Limit", { exact: true }).fill("100");
  await rate.getByLabel("Per", { exact: true }).fill("1");
  await rate.getByLabel("Unit", { exact: true }).selectOption("minutes");
  // Refill controls appear only when they apply.
  assert.equal(await dialog.getByLabel("Remaining credits").isVisible(), false);
  await dialog.getByLabel("Balance", { exact: true }).selectOption("limited");
  await dialog.getByLabel("Remaining credits").fill("1000");
  assert.equal(await dialog.getByLabel("Refill amount").isVisible(), false);
  await dialog.getByLabel("Refill", { exact: true }).selectOption("monthly");
  await dialog.getByLabel("Refill amount").fill("1000");
  await dialog.getByLabel("Day of the month").fill("15");
  const addresses = dialog.getByLabel("Allowed addresses");

  // An address the API refuses: its own 400 message, the field marked, nothing changed.
  await addresses.fill("192.0.2.7\n300.1.2.3");
  await dialog.getByRole("button", { name: "Save" }).click();
  await dialog.getByRole("alert").filter({ hasText: "allowed_ips must be an array of at most 100 IPv4 or IPv6 addresses or CIDRs." }).waitFor();
  assert.equal(await addresses.getAttribute("aria-invalid"), "true");
  assert.equal(patches.length, before + 1);
  let reply = await api("GET", `/v1/user-api-keys/${id}`, admin.key);
  assert.deepEqual([reply.body.ratelimits, reply.body.credits, reply.body.allowed_ips], [[], null, []]);

  // Good values, one not canonical: saved, and shown as the API has them.
  await addresses.fill("192.0.2.7\n10.1.2.3/8");
  await dialog.getByRole("button", { name: "Save" }).click();
  await dialog.waitFor({ state: "detached" });
  const sent = JSON.parse(patches[before + 1].body);
  assert.deepEqual(sent, {
    ratelimits: [{ name: "api", limit: 100, duration_ms: 60000 }],
    credits: { remaining: 1000, refill: { interval: "monthly", amount: 1000, day: 15 } },
    allowed_ips: ["192.0.2.7", "10.1.2.3/8"],
  });
  reply = await api("GET", `/v1/user-api-keys/${id}`, admin.key);
  assert.equal(reply.status, 200, JSON.stringify(reply.body));
  assert.deepEqual(reply.body.ratelimits, [{ name: "api", limit: 100, duration_ms: 60000 }]);
  assert.deepEqual(reply.body.credits, { remaining: 1000, refill: { interval: "monthly", amount: 1000, day: 15 } });
  assert.deepEqual(reply.body.allowed_ips, ["192.0.2.7/32", "10.0.0.0/8"]);
  await row.locator("td.limits li").first().waitFor();
  assert.deepEqual(await row.locator("td.limits li").allTextContents(), ["1,000 credits", "api: 100/min", "192.0.2.7/32", "+1 more"]);
  assert.equal(await row.locator("td.limits li.more").getAttribute("title"), "192.0.2.7/32 10.0.0.0/8");
  const wrap = await page.locator(".table-wrap").evaluate((el) => [el.scrollWidth, el.clientWidth]);
  assert.ok(wrap[0] <= wrap[1], `the keys table overflows: ${wrap}`);

  // Reopened: the canonical addresses; saving unchanged sends nothing (the balance is not set anew).
  await row.getByRole("button", { name: "Edit short-lived-ci" }).click();
  assert.equal(await addresses.inputValue(), "192.0.2.7/32\n10.0.0.0/8");
  assert.equal(await rate.getByLabel("Name", { exact: true }).inputValue(), "api");
  assert.equal(await rate.getByLabel("Unit", { exact: true }).inputValue(), "60000");
  assert.equal(await dialog.getByLabel("Remaining credits").inputValue(), "1000");
  assert.equal(await dialog.getByLabel("Day of the month").inputValue(), "15");
  assert.equal(await page.evaluate(() => document.querySelectorAll("[style]").length), 0);
  await shot("12-key-limits-edit");
  await dialog.getByRole("button", { name: "Save" }).click();
  await dialog.waitFor({ state: "detached" });
  assert.equal(patches.length, before + 2);
  await shot("13-keys-limits");

  // The key's own page says it in words.
  await page.getByRole("link", { name: "Usage of short-lived-ci" }).click();
  await heading("Usage of “short-lived-ci”");
  await settled();
  const panel = page.getByRole("region", { name: "Limits" });
  assert.deepEqual(await panel.locator("dd").allTextContents(), [
    "api: 100 per minute",
    "1,000 credits left, refilled to 1,000 on day 15 of every month (00:00 UTC)",
    "192.0.2.7/3210.0.0.0/8",
  ]);
});

test("limits: an administrator edits a user's credits, shared by the user's keys", async () => {
  await nav("Users", "Users");
  const row = page.locator("tr", { hasText: "dora@acme.test" });
  assert.equal(await row.locator("td.limits > .muted").textContent(), "none");
  assert.equal(await row.locator("td.limits li").count(), 0);
  await row.getByRole("button", { name: "Limits of dora@acme.test" }).click();
  const dialog = page.getByRole("dialog", { name: "Limits of dora@acme.test" });
  // A user has no allowed addresses (those are per key).
  assert.equal(await dialog.getByLabel("Allowed addresses").count(), 0);
  await dialog.getByLabel("Balance", { exact: true }).selectOption("limited");
  await dialog.getByLabel("Remaining credits").fill("500");
  await dialog.getByLabel("Refill", { exact: true }).selectOption("daily");
  assert.equal(await dialog.getByLabel("Day of the month").isVisible(), false);
  await dialog.getByLabel("Refill amount").fill("500");
  await shot("14-user-limits");
  await dialog.getByRole("button", { name: "Save limits" }).click();
  await dialog.waitFor({ state: "detached" });
  await page.locator("tr", { hasText: "dora@acme.test" }).locator("td.limits li", { hasText: "500 credits" }).waitFor();
  const wrap = await page.locator(".table-wrap").evaluate((el) => [el.scrollWidth, el.clientWidth]);
  assert.ok(wrap[0] <= wrap[1], `the users table overflows: ${wrap}`);
  await shot("15-users-limits");
  const users = await api("GET", "/v1/users", admin.key);
  const user = users.body.users.find((u) => u.email === "dora@acme.test");
  assert.deepEqual(user.credits, { remaining: 500, refill: { interval: "daily", amount: 500 } });
  assert.deepEqual(user.ratelimits, []);
  assert.deepEqual(JSON.parse(patches[patches.length - 1].body), { credits: { remaining: 500, refill: { interval: "daily", amount: 500 } } });

  // Dora's key gets its own limits too (for the next tests), through the API.
  const doraKey = (await api("GET", `/v1/user-api-keys?UserId=${user.id}`, admin.key)).body.find((k) => k.name === "dora-laptop");
  const set = await api("PATCH", `/v1/user-api-keys/${doraKey.id}`, admin.key, { credits: { remaining: 42, refill: null }, ratelimits: [{ name: "burst", limit: 10, duration_ms: 1000 }] });
  assert.equal(set.status, 200, JSON.stringify(set.body));
});

let webhookSecret;
let webhookId;

test("webhooks: an administrator creates an endpoint, sees its secret once, and events arrive signed", async () => {
  await nav("Webhooks", "Webhooks");
  await page.getByText("No webhook yet.").waitFor();
  const url = receiver.url;
  await page.getByRole("button", { name: "New webhook" }).click();
  const dialog = page.getByRole("dialog", { name: "New webhook" });
  // No event chosen: a message, and nothing sent.
  await dialog.getByLabel("URL", { exact: true }).fill("ftp://hooks.example.com/keyward");
  await dialog.getByRole("button", { name: "Create webhook" }).click();
  await dialog.getByRole("alert").filter({ hasText: "Choose at least one event" }).waitFor();
  assert.deepEqual((await api("GET", "/v1/webhooks", admin.key)).body, { webhooks: [] });
  // A URL the API refuses: its own message.
  await dialog.getByLabel("key.created", { exact: true }).check();
  await dialog.getByRole("button", { name: "Create webhook" }).click();
  await page.getByRole("alert").filter({ hasText: "url must be an absolute http:// or https:// URL." }).waitFor();
  assert.deepEqual((await api("GET", "/v1/webhooks", admin.key)).body, { webhooks: [] });

  await page.getByRole("button", { name: "New webhook" }).click();
  await dialog.getByLabel("URL", { exact: true }).fill(url);
  await dialog.getByLabel("Description").fill(XSS);
  await dialog.getByLabel("key.created", { exact: true }).check();
  await dialog.getByLabel("key.revoked", { exact: true }).check();
  await shot("20-webhook-new");
  await dialog.getByRole("button", { name: "Create webhook" }).click();

  // The secret, shown this once.
  const shown = page.getByRole("dialog", { name: "Signing secret" });
  await shown.getByText("it is not shown again").waitFor();
  webhookSecret = await shown.locator("[data-secret]").textContent();
  assert.match(webhookSecret, /^whsec_[A-Za-z0-9+/]{43}=$/);
  await shot("21-webhook-secret");
  await shown.getByRole("button", { name: "Done" }).click();
  await shown.waitFor({ state: "detached" });
  const row = page.locator("table.webhooks tr", { hasText: url });
  await row.waitFor();
  webhookId = await row.getAttribute("data-webhook-id");
  assert.deepEqual(await row.locator(".chip").allTextContents(), ["key.created", "key.revoked"]);
  assert.equal(await row.locator(".badge").textContent(), "Enabled");
  // The description markup is text.
  assert.equal(await row.locator("td.name .muted").textContent(), XSS);
  assert.equal(await page.locator("table.webhooks img").count(), 0);
  const listed = await api("GET", "/v1/webhooks", admin.key);
  assert.deepEqual(listed.body.webhooks.map((w) => [w.id, w.url, w.events, w.description, w.enabled]), [[webhookId, url, ["key.created", "key.revoked"], XSS, true]]);

  // Gone after a reload.
  await page.reload();
  await heading("Webhooks");
  await row.waitFor();
  const everything = await page.evaluate(() => document.documentElement.outerHTML);
  assert.ok(!everything.includes(webhookSecret), "the secret is shown again");
  assert.ok(!JSON.stringify(listed.body).includes(webhookSecret));

  // A test from the console, and a change it subscribes to: both arrive,
  // signed with the secret the console showed.
  await row.getByRole("button", { name: `Send a test to ${url}` }).click();
  const [test] = await received((g) => JSON.parse(g.body).type === "webhook.test");
  assert.equal(JSON.parse(test.body).data.target_id, webhookId);
  assert.equal(verifiedBy(test, webhookSecret), 1);
  const key = await api("POST", "/v1/user-api-keys", admin.key, { name: "hooked", user_id: admin.user_id, expiration_date: utcDay(30) });
  assert.equal(key.status, 201, JSON.stringify(key.body));
  const [created] = await received((g) => JSON.parse(g.body).data.target_id === key.body.id);
  assert.equal(JSON.parse(created.body).type, "key.created");
  assert.equal(verifiedBy(created, webhookSecret), 1);
  assert.equal(created.headers["content-type"], "application/json");
  assert.ok(!created.body.includes(key.body.key), "the key's secret was sent");
});

test("webhooks: events are picked, the endpoint disabled and enabled", async () => {
  const url = receiver.url;
  const row = page.locator("table.webhooks tr", { hasText: url });
  await row.getByRole("button", { name: `Edit ${url}` }).click();
  const dialog = page.getByRole("dialog", { name: "Edit webhook" });
  assert.equal(await dialog.getByLabel("URL", { exact: true }).inputValue(), url);
  assert.equal(await dialog.getByLabel("key.created", { exact: true }).isChecked(), true);
  assert.equal(await dialog.getByLabel("key.updated", { exact: true }).isChecked(), false);
  await dialog.getByLabel("key.created", { exact: true }).uncheck();
  await dialog.getByLabel("user.created", { exact: true }).check();
  const before = patches.length;
  await dialog.getByRole("button", { name: "Save" }).click();
  await dialog.waitFor({ state: "detached" });
  await row.locator(".chip", { hasText: "user.created" }).waitFor();
  assert.deepEqual(await row.locator(".chip").allTextContents(), ["key.revoked", "user.created"]);
  assert.deepEqual(JSON.parse(patches[before].body).events, ["key.revoked", "user.created"]);
  assert.deepEqual((await api("GET", `/v1/webhooks/${webhookId}`, admin.key)).body.events, ["key.revoked", "user.created"]);

  // Disabled: marked, no test button, and a change it subscribes to is not sent.
  await row.getByRole("button", { name: `Disable ${url}` }).click();
  await row.locator(".badge", { hasText: "Disabled" }).waitFor();
  assert.equal(await row.getByRole("button", { name: `Send a test to ${url}` }).count(), 0);
  assert.equal((await api("GET", `/v1/webhooks/${webhookId}`, admin.key)).body.enabled, false);
  await shot("22-webhook-disabled");
  const silent = await api("POST", "/v1/users", admin.key, { email: "gus@acme.test", name: "Gus", roles: [] });
  assert.equal(silent.status, 201, JSON.stringify(silent.body));

  // Enabled again: the next change is sent, the one made while disabled never.
  await row.getByRole("button", { name: `Enable ${url}` }).click();
  await row.locator(".badge", { hasText: "Enabled" }).waitFor();
  assert.equal((await api("GET", `/v1/webhooks/${webhookId}`, admin.key)).body.enabled, true);
  const heard = await api("POST", "/v1/users", admin.key, { email: "hana@acme.test", name: "Hana", roles: [] });
  assert.equal(heard.status, 201, JSON.stringify(heard.body));
  const [user] = await received((g) => JSON.parse(g.body).type === "user.created");
  assert.equal(JSON.parse(user.body).data.target_id, heard.body.id);
  await new Promise((r) => setTimeout(r, 1500)); // a sender poll and more
  assert.equal(receiver.got.filter((g) => JSON.parse(g.body).type === "user.created").length, 1);
});

test("webhooks: the secret is rotated, and both secrets sign for a while", async () => {
  const url = receiver.url;
  const row = page.locator("table.webhooks tr", { hasText: url });
  // Declined: nothing changes.
  await row.getByRole("button", { name: `Rotate the secret of ${url}` }).click();
  const confirm = page.getByRole("dialog", { name: "Rotate the signing secret?" });
  await confirm.getByRole("button", { name: "Cancel" }).click();
  await confirm.waitFor({ state: "detached" });
  await row.getByRole("button", { name: `Rotate the secret of ${url}` }).click();
  await confirm.getByRole("button", { name: "Rotate" }).click();
  const shown = page.getByRole("dialog", { name: "Signing secret" });
  const rotated = await shown.locator("[data-secret]").textContent();
  assert.match(rotated, /^whsec_/);
  assert.notEqual(rotated, webhookSecret);
  await shown.getByRole("button", { name: "Done" }).click();
  await shown.waitFor({ state: "detached" });

  const tests = () => receiver.got.filter((g) => JSON.parse(g.body).type === "webhook.test").length;
  const already = tests();
  await row.getByRole("button", { name: `Send a test to ${url}` }).click();
  const after = await received((g) => JSON.parse(g.body).type === "webhook.test", already + 1);
  const last = after[after.length - 1];
  assert.equal(last.headers["webhook-signature"].split(" ").length, 2);
  assert.equal(verifiedBy(last, webhookSecret), 1, "the old secret no longer signs");
  assert.equal(verifiedBy(last, rotated), 1, "the new secret does not sign");
  webhookSecret = rotated;
});

test("webhooks: the recent deliveries show each attempt, a failure and its retry", async () => {
  const url = receiver.url;
  const row = page.locator("table.webhooks tr", { hasText: url });
  // The next delivery fails once; the retry (about 5 s later) succeeds.
  receiver.failNext = 1;
  const before = receiver.got.length;
  await row.getByRole("button", { name: `Send a test to ${url}` }).click();
  const [failed] = await received((g) => receiver.got.indexOf(g) >= before);
  const id = failed.headers["webhook-id"];
  const both = await received((g) => g.headers["webhook-id"] === id, 2);
  assert.equal(both[1].body, both[0].body);
  assert.equal(verifiedBy(both[1], webhookSecret), 1);

  await row.getByRole("button", { name: `Deliveries to ${url}` }).click();
  const dialog = page.getByRole("dialog", { name: `Deliveries to ${url}` });
  const rows = dialog.locator("table.deliveries tbody tr");
  await rows.first().waitFor();
  const cells = async (i) => (await rows.nth(i).locator("td").allTextContents()).slice(1);
  // Newest first: the retry delivered, the failed attempt with its next attempt.
  assert.deepEqual(await cells(0), ["webhook.test", "2", "HTTP 204", "none"]);
  const first = await cells(1);
  assert.deepEqual(first.slice(0, 3), ["webhook.test", "1", "answered HTTP 500"]);
  assert.notEqual(first[3], "none");
  // Every attempt the API lists, in the same order.
  const log = (await api("GET", `/v1/webhooks/${webhookId}/deliveries`, admin.key)).body.deliveries;
  assert.equal(await rows.count(), log.length);
  assert.deepEqual(await rows.locator("td:nth-child(2)").allTextContents(), log.map((d) => d.type));
  assert.equal(log.length, receiver.got.length);
  assert.equal(await page.evaluate(() => document.querySelectorAll("[style]").length), 0);
  // Every column fits a laptop's width, the next attempt's time included.
  const wrap = await dialog.locator(".table-wrap").evaluate((el) => [el.scrollWidth, el.clientWidth]);
  assert.ok(wrap[0] <= wrap[1], `the deliveries table overflows: ${wrap}`);
  await shot("23-webhook-deliveries");
  await dialog.getByRole("button", { name: "Close" }).click();
  await dialog.waitFor({ state: "detached" });
  await shot("24-webhooks");
});

test("webhooks: deleting asks first, then nothing more is sent", async () => {
  const url = receiver.url;
  const row = page.locator("table.webhooks tr", { hasText: url });
  await row.getByRole("button", { name: `Delete ${url}` }).click();
  const confirm = page.getByRole("dialog", { name: `Delete ${url}?` });
  await confirm.getByRole("button", { name: "Cancel" }).click();
  assert.equal((await api("GET", `/v1/webhooks/${webhookId}`, admin.key)).status, 200);
  await row.getByRole("button", { name: `Delete ${url}` }).click();
  await confirm.getByRole("button", { name: "Delete" }).click();
  await page.getByText("No webhook yet.").waitFor();
  assert.equal((await api("GET", `/v1/webhooks/${webhookId}`, admin.key)).status, 404);
  const count = receiver.got.length;
  assert.equal((await api("POST", "/v1/users", admin.key, { email: "ivan@acme.test", name: "Ivan", roles: [] })).status, 201);
  await new Promise((r) => setTimeout(r, 1500));
  assert.equal(receiver.got.length, count);
});

test("sign out forgets the key; someone else sees only their own keys", async () => {
  await page.getByRole("button", { name: "Sign out" }).click();
  await page.getByRole("button", { name: "Sign in" }).waitFor();
  assert.equal(await page.evaluate(() => sessionStorage.length), 0);

  await signIn(dora.key);
  await heading("Your API keys");
  assert.deepEqual(await keyNames(), ["dora-laptop"]);
  assert.deepEqual(await keyRows().locator("td:nth-child(2)").allTextContents(), ["dora@acme.test"]);
  const sections = await page.getByRole("navigation", { name: "Sections" }).getByRole("link").allTextContents();
  assert.deepEqual(sections, ["Overview", "Keys"]);
  await shot("08-keys-own");

  // A phone.
  await page.setViewportSize({ width: 390, height: 844 });
  await page.reload();
  await heading("Your API keys");
  await shot("09-keys-phone");
  await page.setViewportSize({ width: 1280, height: 800 });
});


test("limits: someone else sees their key's remaining credits and limits, and no control to change them", async () => {
  await heading("Your API keys");
  await settled();
  const row = page.locator("tr", { hasText: "dora-laptop" });
  assert.deepEqual(await row.locator("td.limits li").allTextContents(), ["42 credits", "burst: 10/s"]);
  await row.getByRole("button", { name: "Edit dora-laptop" }).click();
  const dialog = page.getByRole("dialog", { name: "Edit “dora-laptop”" });
  const shown = dialog.getByRole("region", { name: "Limits" });
  assert.deepEqual(await shown.locator("dd").allTextContents(), ["burst: 10 per second", "42 credits left, never refilled", "Any address"]);
  for (const label of ["Remaining credits", "Balance", "Allowed addresses", "Refill"]) {
    assert.equal(await dialog.getByLabel(label, { exact: true }).count(), 0, label);
  }
  assert.equal(await dialog.getByRole("button", { name: "Add a rate limit" }).count(), 0);
  await shot("16-key-limits-readonly");
  // Saving the name alone sends no limit (which the API would refuse, 403).
  await dialog.getByLabel("Name").fill("dora-laptop-2");
  await dialog.getByRole("button", { name: "Save" }).click();
  await dialog.waitFor({ state: "detached" });
  assert.deepEqual(JSON.parse(patches[patches.length - 1].body), { name: "dora-laptop-2" });
  await page.locator("tr", { hasText: "dora-laptop-2" }).locator("td.limits li", { hasText: "42 credits" }).waitFor();
  await page.getByRole("link", { name: "Usage of dora-laptop-2" }).click();
  await heading("Usage of “dora-laptop-2”");
  await settled();
  assert.deepEqual(await page.getByRole("region", { name: "Limits" }).locator("dd").allTextContents(), ["burst: 10 per second", "42 credits left, never refilled", "Any address"]);
  await page.getByRole("link", { name: "← Keys" }).click();
  await heading("Your API keys");
});

test("webhooks are for administrators: no page, no request, and the API refuses", async () => {
  // Dora (no Administrators role) is signed in: no Webhooks section, and the
  // address of the page leads back to the overview without asking the API.
  const sections = await page.getByRole("navigation", { name: "Sections" }).getByRole("link").allTextContents();
  assert.ok(!sections.includes("Webhooks"), sections.join());
  const asked = requests.length;
  await page.goto(`${base}/console#/webhooks`);
  await heading("Overview");
  await page.waitForURL(/#\/overview$/);
  assert.ok(!requests.slice(asked).some((u) => new URL(u).pathname.startsWith("/v1/webhooks")));
  assert.equal(await page.getByRole("button", { name: "New webhook" }).count(), 0);
  const forbidden = await api("GET", "/v1/webhooks", dora.key);
  assert.equal(forbidden.status, 403);
  assert.equal(forbidden.body.title, "The calling key lacks the user_management scope");

  // An administrator whose key lacks user_management: the same.
  const narrow = cli("key", "create", "--tenant", "acme", "--user", "admin@acme.test", "--name", "narrow", "--scope", "public_api", "--scope", "user_key_management");
  await page.getByRole("button", { name: "Sign out" }).click();
  await signIn(narrow.key);
  await heading("Overview");
  const narrowSections = await page.getByRole("navigation", { name: "Sections" }).getByRole("link").allTextContents();
  assert.ok(!narrowSections.includes("Webhooks"), narrowSections.join());
  await page.goto(`${base}/console#/webhooks`);
  await page.waitForURL(/#\/overview$/);
  await heading("Overview");
  const refused = await api("GET", "/v1/webhooks", narrow.key);
  assert.equal(refused.status, 403);
  assert.equal(refused.body.title, "The calling key lacks the user_management scope");
});

test("keyboard: the sign-in form and the dialogs work without a mouse", async () => {
  await page.getByRole("button", { name: "Sign out" }).click();
  await page.getByLabel("Tenant").waitFor();
  assert.equal(await page.evaluate(() => document.activeElement?.name), "tenant");
  await page.keyboard.type("acme");
  await page.keyboard.press("Tab");
  await page.keyboard.type(admin.key);
  await page.keyboard.press("Enter");
  await heading("Overview");
  await nav("Keys", "API keys");
  await page.getByRole("button", { name: "New key" }).focus();
  await page.keyboard.press("Enter");
  const dialog = page.getByRole("dialog", { name: "New key" });
  await dialog.waitFor();
  await page.keyboard.press("Escape");
  await dialog.waitFor({ state: "detached" });
});

test("no request left the origin, and the page reported no error", async () => {
  assert.ok(requests.length > 10);
  const foreign = requests.filter((u) => new URL(u).origin !== base);
  assert.deepEqual(foreign, []);
  assert.deepEqual(problems.filter((p) => !p.includes("400") && !p.includes("401") && !p.includes("403") && !p.includes("409")), []);
});
