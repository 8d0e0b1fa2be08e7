//! The `keyward` binary: its commands, their `--json` output, and the server seeing what they create.

use std::path::Path;
use std::process::Command;

use actix_web::test;
use chrono::{Days, NaiveDate, Utc};
use diesel::prelude::*;
use serde_json::{json, Value};

use keyward::keys::secret;
use keyward::schema::{api_keys, tenants, users};

use crate::common::*;

const KEYS: &str = "/v1/user-api-keys";
const ALL_SCOPES: [&str; 3] = ["public_api", "user_key_management", "user_management"];

/// What one run of the binary did.
#[derive(Debug)]
struct Run {
    args: Vec<String>,
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    /// The one JSON object a successful `--json` run prints.
    fn json(&self) -> Value {
        assert_eq!(
            self.code,
            Some(0),
            "`keyward {}` failed: {self:#?}",
            self.args.join(" ")
        );
        let out = self.stdout.trim();
        assert_eq!(out.lines().count(), 1, "not one line: {self:#?}");
        let value: Value =
            serde_json::from_str(out).unwrap_or_else(|e| panic!("not JSON ({e}): {self:#?}"));
        assert!(value.is_object(), "not an object: {self:#?}");
        value
    }

    /// A failed run: non-zero exit, and no secret on either stream.
    fn failed(&self) {
        assert!(
            matches!(self.code, Some(c) if c != 0),
            "expected `keyward {}` to fail: {self:#?}",
            self.args.join(" ")
        );
        assert!(secrets_in(&self.stdout).is_empty(), "{self:#?}");
        assert!(secrets_in(&self.stderr).is_empty(), "{self:#?}");
    }
}

/// Runs the binary in `dir` with `KEYWARD_DATABASE_URL` = `url` (unset if `None`)
/// and no other `KEYWARD_*` variable.
fn keyward_in(dir: &Path, url: Option<&str>, args: &[&str]) -> Run {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_keyward"));
    cmd.args(args).current_dir(dir);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("KEYWARD_") {
            cmd.env_remove(&name);
        }
    }
    cmd.env_remove("KEYWARD_CONFIG");
    if let Some(url) = url {
        cmd.env("KEYWARD_DATABASE_URL", url);
    }
    let output = cmd.output().expect("run keyward");
    Run {
        args: args.iter().map(|a| a.to_string()).collect(),
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Runs the binary against the test's database, in a fresh empty folder.
fn keyward(app: &TestApp, args: &[&str]) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let run = keyward_in(dir.path(), Some(&app.database_url), args);
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert!(
        left.is_empty(),
        "{args:?} left files in the working directory: {left:?}"
    );
    run
}

/// The well-formed key secrets in `text`.
fn secrets_in(text: &str) -> Vec<&str> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| secret::well_formed(w, "kw"))
        .collect()
}

fn real_today() -> NaiveDate {
    Utc::now().date_naive()
}

fn str_of<'a>(value: &'a Value, field: &str) -> &'a str {
    value[field]
        .as_str()
        .unwrap_or_else(|| panic!("no string {field:?} in {value}"))
}

fn assert_uuid(s: &str) {
    assert!(uuid::Uuid::try_parse(s).is_ok(), "{s:?} is not a UUID");
}

fn sorted_scopes(key: &Value) -> Vec<String> {
    let mut scopes: Vec<String> = key["scopes"]
        .as_array()
        .unwrap_or_else(|| panic!("no scopes in {key}"))
        .iter()
        .map(|s| s.as_str().unwrap().to_owned())
        .collect();
    scopes.sort();
    scopes
}

/// `bootstrap` for `email` in `tenant`: (key id, secret, user id).
fn bootstrap(app: &TestApp, tenant: &str, email: &str) -> (String, String, String) {
    let out = keyward(
        app,
        &["bootstrap", "--tenant", tenant, "--email", email, "--json"],
    )
    .json();
    let (id, key, user_id) = (
        str_of(&out, "id"),
        str_of(&out, "key"),
        str_of(&out, "user_id"),
    );
    assert_uuid(id);
    assert_uuid(user_id);
    assert!(secret::well_formed(key, "kw"), "{key:?}");
    (id.to_owned(), key.to_owned(), user_id.to_owned())
}

fn create_user(app: &TestApp, tenant: &str, email: &str) -> String {
    let out = keyward(
        app,
        &[
            "user", "create", "--tenant", tenant, "--email", email, "--json",
        ],
    )
    .json();
    let id = str_of(&out, "id");
    assert_uuid(id);
    id.to_owned()
}

/// `key create` with extra `args`: (key id, secret).
fn create_key(app: &TestApp, tenant: &str, user: &str, args: &[&str]) -> (String, String) {
    let mut all = vec![
        "key", "create", "--tenant", tenant, "--user", user, "--name", "ci-key", "--json",
    ];
    all.extend_from_slice(args);
    let out = keyward(app, &all).json();
    let (id, key) = (str_of(&out, "id"), str_of(&out, "key"));
    assert_uuid(id);
    assert!(secret::well_formed(key, "kw"), "{key:?}");
    (id.to_owned(), key.to_owned())
}

/// The key object of `id` as the App shows it to `admin_key` in `tenant`.
async fn key_object(app: &TestApp, tenant: &str, admin_key: &str, id: &str) -> Value {
    let reply = app.get(&format!("{KEYS}/{id}"), tenant, admin_key).await;
    assert_eq!(reply.status.as_u16(), 200, "{}", reply.text);
    assert_eq!(reply.body["id"], id, "{}", reply.text);
    reply.body
}

/// The expiration date the App shows, which must be `days` after the real
/// today as of just before or just after the CLI ran.
fn assert_expires_in(key: &Value, before: NaiveDate, after: NaiveDate, days: u64) {
    let date = str_of(key, "expiration_date");
    let candidates = [
        (before + Days::new(days)).to_string(),
        (after + Days::new(days)).to_string(),
    ];
    assert!(
        candidates.contains(&date.to_owned()),
        "expiration_date {date}, expected {candidates:?}"
    );
}

fn tenant_count(app: &TestApp) -> i64 {
    tenants::table.count().get_result(&mut *app.conn()).unwrap()
}

fn user_count(app: &TestApp) -> i64 {
    users::table.count().get_result(&mut *app.conn()).unwrap()
}

fn key_count(app: &TestApp) -> i64 {
    api_keys::table
        .count()
        .get_result(&mut *app.conn())
        .unwrap()
}

crate::both_backends! {
    async fn bootstrap_prints_a_working_key_with_every_scope(app: &TestApp) {
        app.clock.set(Utc::now());
        let before = real_today();
        let (id, key, user_id) = bootstrap(app, "acme", "admin@acme.test");
        let after = real_today();

        let reply = app.get(&format!("{KEYS}?UserId={user_id}"), "acme", &key).await;
        assert_eq!(reply.status.as_u16(), 200, "{}", reply.text);
        let list = reply.body.as_array().unwrap();
        assert_eq!(list.len(), 1, "{}", reply.text);
        assert_eq!(list[0]["id"], id.as_str());
        assert_eq!(list[0]["user_id"], user_id.as_str());
        assert_eq!(sorted_scopes(&list[0]), ALL_SCOPES);
        assert_expires_in(&list[0], before, after, 365);

        // An administrator: it may list every key of the tenant.
        let reply = app.get(KEYS, "acme", &key).await;
        assert_eq!(reply.status.as_u16(), 200, "{}", reply.text);
        assert_eq!(reply.body.as_array().unwrap().len(), 1, "{}", reply.text);

        // Again for the same email: a second working key for the same user.
        let (id2, key2, user_id2) = bootstrap(app, "acme", "admin@acme.test");
        assert_eq!(user_id2, user_id);
        assert_ne!(id2, id);
        assert_ne!(key2, key);
        for k in [&key, &key2] {
            let reply = app.get(&format!("{KEYS}?UserId={user_id}"), "acme", k).await;
            assert_eq!(reply.status.as_u16(), 200, "{}", reply.text);
            let ids: Vec<&str> = reply.body.as_array().unwrap().iter().map(|k| k["id"].as_str().unwrap()).collect();
            assert_eq!(ids, [id.as_str(), id2.as_str()], "{}", reply.text);
        }
        assert_eq!(tenant_count(app), 1);
        assert_eq!(user_count(app), 1);

        // Another email in the same tenant: another administrator.
        let (_, key3, user_id3) = bootstrap(app, "acme", "second@acme.test");
        assert_ne!(user_id3, user_id);
        let reply = app.get(&format!("{KEYS}?UserId={user_id}"), "acme", &key3).await;
        assert_eq!(reply.status.as_u16(), 200, "{}", reply.text);
        assert_eq!(reply.body.as_array().unwrap().len(), 2, "{}", reply.text);

        // The key is of acme only.
        let other = bootstrap(app, "beta", "admin@beta.test");
        let reply = app.get(KEYS, "beta", &key).await;
        assert_401(&reply, "x-key", "Invalid API key");
        let reply = app.get(KEYS, "beta", &other.1).await;
        assert_eq!(reply.status.as_u16(), 200, "{}", reply.text);
    }

    async fn a_failed_bootstrap_leaves_nothing_behind(app: &TestApp) {
        // The tenant would be new; the user cannot be made (not an email).
        keyward(app, &["bootstrap", "--tenant", "newco", "--email", "not-an-email", "--json"]).failed();
        assert!(keyward::tenants::find_by_name(&mut app.conn(), "newco").unwrap().is_none());
        // And then it works, from scratch.
        let (_, key, user_id) = bootstrap(app, "newco", "admin@newco.test");
        let reply = app.get(&format!("{KEYS}?UserId={user_id}"), "newco", &key).await;
        assert_eq!(reply.status.as_u16(), 200, "{}", reply.text);
    }

    async fn tenant_create_prints_the_id_and_refuses_duplicates_and_bad_names(app: &TestApp) {
        app.clock.set(Utc::now());
        let reply = app.get(KEYS, "globex", "").await;
        assert_401(&reply, "tenant", "Unknown tenant specified");

        let out = keyward(app, &["tenant", "create", "globex", "--json"]).json();
        assert_uuid(str_of(&out, "id"));
        // The server knows it on its very next request.
        let reply = app.get(KEYS, "globex", "").await;
        assert_401(&reply, "x-key", "API key missing");

        keyward(app, &["tenant", "create", "globex", "--json"]).failed();
        keyward(app, &["tenant", "create", "globex"]).failed();
        for bad in ["Bad_Name", "a", "-acme", "acme.io", "", &"a".repeat(64)] {
            keyward(app, &["tenant", "create", bad, "--json"]).failed();
        }
        assert_eq!(tenant_count(app), 1);

        // The id printed is the tenant's.
        let stored: String = tenants::table
            .filter(tenants::name.eq("globex"))
            .select(tenants::id)
            .first(&mut *app.conn())
            .unwrap();
        assert_eq!(stored, str_of(&out, "id"));
    }

    async fn user_create_prints_the_id_and_checks_tenant_and_role(app: &TestApp) {
        app.clock.set(Utc::now());
        let (_, admin_key, admin_id) = bootstrap(app, "acme", "admin@acme.test");
        let out = keyward(
            app,
            &["user", "create", "--tenant", "acme", "--email", "bob@acme.test", "--name", "Bob", "--role", "Default users", "--json"],
        )
        .json();
        let bob = str_of(&out, "id");
        assert_uuid(bob);
        assert_ne!(bob, admin_id);

        // The server knows the user: an administrator may list its (no) keys.
        let reply = app.get(&format!("{KEYS}?UserId={bob}"), "acme", &admin_key).await;
        assert_eq!(reply.status.as_u16(), 200, "{}", reply.text);
        assert_eq!(reply.body, json!([]));

        let (email, name, roles, active): (String, String, String, bool) = users::table
            .filter(users::id.eq(bob))
            .select((users::email, users::name, users::roles, users::active))
            .first(&mut *app.conn())
            .unwrap();
        assert_eq!((email.as_str(), name.as_str(), active), ("bob@acme.test", "Bob", true));
        assert_eq!(serde_json::from_str::<Value>(&roles).unwrap(), json!(["Default users"]));

        let base = ["user", "create", "--email", "carol@acme.test", "--json"];
        keyward(app, &[&base[..], &["--tenant", "nowhere"][..]].concat()).failed();
        keyward(app, &[&base[..], &["--tenant", "acme", "--role", "Superusers"][..]].concat()).failed();
        keyward(app, &["user", "create", "--tenant", "acme", "--email", "bob@acme.test", "--json"]).failed();
        keyward(app, &["user", "create", "--tenant", "acme", "--email", "not-an-email", "--json"]).failed();
        assert_eq!(user_count(app), 2);

        // Without --role: a default user, not an administrator.
        let carol = create_user(app, "acme", "carol@acme.test");
        let (_, carol_key) = create_key(app, "acme", &carol, &["--scope", "user_key_management", "--scope", "public_api"]);
        let reply = app.get(KEYS, "acme", &carol_key).await;
        assert_eq!(reply.status.as_u16(), 403, "{}", reply.text);
        let reply = app.get(&format!("{KEYS}?UserId={carol}"), "acme", &carol_key).await;
        assert_eq!(reply.status.as_u16(), 200, "{}", reply.text);
    }

    async fn key_create_defaults_and_options(app: &TestApp) {
        app.clock.set(Utc::now());
        let (_, admin_key, _) = bootstrap(app, "acme", "admin@acme.test");
        let bob = create_user(app, "acme", "bob@acme.test");

        // By email, with the defaults: public_api, the tenant's maximum lifetime.
        let before = real_today();
        let (id, key) = create_key(app, "acme", "bob@acme.test", &[]);
        let after = real_today();
        let object = key_object(app, "acme", &admin_key, &id).await;
        assert_eq!(object["name"], "ci-key");
        assert_eq!(object["user_id"], bob.as_str());
        assert_eq!(object["scopes"], json!(["public_api"]));
        assert_expires_in(&object, before, after, 365);
        // It authenticates (lacking user_key_management, it is refused with 403, not 401).
        let reply = app.get(&format!("{KEYS}?UserId={bob}"), "acme", &key).await;
        assert_eq!(reply.status.as_u16(), 403, "{}", reply.text);

        // By id, with two scopes: the key can manage its user's keys.
        let (id2, key2) = create_key(app, "acme", &bob, &["--scope", "user_key_management", "--scope", "public_api"]);
        let object = key_object(app, "acme", &admin_key, &id2).await;
        assert_eq!(object["user_id"], bob.as_str());
        assert_eq!(sorted_scopes(&object), ["public_api", "user_key_management"]);
        let reply = app.get(&format!("{KEYS}?UserId={bob}"), "acme", &key2).await;
        assert_eq!(reply.status.as_u16(), 200, "{}", reply.text);
        let ids: Vec<&str> = reply.body.as_array().unwrap().iter().map(|k| k["id"].as_str().unwrap()).collect();
        assert_eq!(ids, [id.as_str(), id2.as_str()]);

        // Today is allowed; it works through the end of today.
        let today = real_today();
        let (id3, key3) = create_key(app, "acme", &bob, &["--expires", &today.to_string()]);
        assert_eq!(key_object(app, "acme", &admin_key, &id3).await["expiration_date"], today.to_string());
        let reply = app.get(KEYS, "acme", &key3).await;
        assert_eq!(reply.status.as_u16(), 403, "{}", reply.text);

        let count = key_count(app);
        let yesterday = (real_today() - Days::new(1)).to_string();
        let too_far = (real_today() + Days::new(366)).to_string();
        for args in [
            vec!["--expires", yesterday.as_str()],
            vec!["--expires", too_far.as_str()],
            vec!["--expires", "not-a-date"],
            vec!["--expires", "2026-02-30"],
            vec!["--scope", "bogus"],
            vec!["--scope", "public_api", "--scope", "everything"],
            vec!["--meta", "[1]"],
            vec!["--meta", "{not json"],
        ] {
            let all = [&["key", "create", "--tenant", "acme", "--user", bob.as_str(), "--name", "ci-key", "--json"][..], &args[..]].concat();
            keyward(app, &all).failed();
        }
        let no_user = uuid::Uuid::new_v4().to_string();
        for (tenant, user, name) in [
            ("acme", "nobody@acme.test", "ci-key"),
            ("acme", no_user.as_str(), "ci-key"),
            ("acme", "not-a-uuid-nor-email", "ci-key"),
            ("nowhere", bob.as_str(), "ci-key"),
            ("acme", bob.as_str(), "ab"),
            ("acme", bob.as_str(), ""),
        ] {
            keyward(app, &["key", "create", "--tenant", tenant, "--user", user, "--name", name, "--json"]).failed();
        }
        assert_eq!(key_count(app), count, "a refused key create made a key");
        // Metadata is a JSON object, shown back and stored.
        let made = keyward(app, &["key", "create", "--tenant", "acme", "--user", bob.as_str(), "--name", "with-meta", "--meta", r#"{"plan":"pro"}"#, "--json"]).json();
        assert_eq!(made["meta"], serde_json::json!({"plan": "pro"}));
        let tenant = keyward::tenants::get_by_name(&mut app.conn(), "acme").unwrap();
        let stored = keyward::keys::find(&mut app.conn(), &tenant.id, &keyward::keys::KeyRef::Id(str_of(&made, "id").to_owned())).unwrap().unwrap();
        assert_eq!(serde_json::Value::Object(stored.meta.as_map().clone()), serde_json::json!({"plan": "pro"}));
        let count = key_count(app);
        // A user of another tenant, by id or email, is not one of acme's.
        let (_, _, beta_admin) = bootstrap(app, "beta", "admin@beta.test");
        let count_with_beta = key_count(app);
        assert_eq!(count_with_beta, count + 1);
        keyward(app, &["key", "create", "--tenant", "acme", "--user", &beta_admin, "--name", "ci-key", "--json"]).failed();
        keyward(app, &["key", "create", "--tenant", "acme", "--user", "admin@beta.test", "--name", "ci-key", "--json"]).failed();
        assert_eq!(key_count(app), count_with_beta);
    }

    async fn key_and_user_create_take_usage_control_flags(app: &TestApp) {
        let (_, admin_key, _) = bootstrap(app, "acme", "admin@acme.test");
        let (id, secret) = create_key(app, "acme", "admin@acme.test", &[
            "--ratelimit", "burst:2:60000", "--ratelimit", "daily:100:86400000",
            "--credits", "10", "--refill", "monthly:50:3", "--allow-ip", "10.1.2.3/8",
        ]);
        let key = key_object(app, "acme", &admin_key, &id).await;
        assert_eq!(key["ratelimits"], serde_json::json!([
            {"name": "burst", "limit": 2, "duration_ms": 60000},
            {"name": "daily", "limit": 100, "duration_ms": 86400000}]));
        assert_eq!(key["credits"], serde_json::json!({"remaining": 10,
            "refill": {"interval": "monthly", "amount": 50, "day": 3}}));
        assert_eq!(key["allowed_ips"], serde_json::json!(["10.0.0.0/8"]));
        assert!(!secret.is_empty());
        let out = keyward(app, &["user", "create", "--tenant", "acme", "--email", "l@acme.test",
            "--credits", "7", "--refill", "daily:7", "--ratelimit", "u:1:1000", "--json"]).json();
        assert_eq!(out["credits"], serde_json::json!({"remaining": 7, "refill": {"interval": "daily", "amount": 7}}));
        for bad in [
            vec!["--ratelimit", "burst:2"],
            vec!["--ratelimit", "BURST:2:1000"],
            vec!["--refill", "daily:5"],
            vec!["--credits", "5", "--refill", "weekly:5"],
            vec!["--allow-ip", "10.0.0.0/33"],
        ] {
            let mut args = vec!["key", "create", "--tenant", "acme", "--user", "admin@acme.test",
                "--name", "bad-key", "--json"];
            args.extend(bad.iter());
            keyward(app, &args).failed();
        }
    }

    async fn the_secret_is_printed_once_and_only_its_hash_is_stored(app: &TestApp) {
        app.clock.set(Utc::now());
        let (_, admin_key, _) = bootstrap(app, "acme", "admin@acme.test");
        create_user(app, "acme", "bob@acme.test");
        let run = keyward(app, &["key", "create", "--tenant", "acme", "--user", "bob@acme.test", "--name", "ci-key", "--json"]);
        let out = run.json();
        let (id, key) = (str_of(&out, "id"), str_of(&out, "key"));
        assert_eq!(run.stdout.matches(key).count(), 1, "{run:#?}");
        assert!(!run.stderr.contains(key), "the secret was logged: {run:#?}");
        let random = &key[3..];

        type Row = (String, String, String, String, String, String);
        let rows: Vec<Row> = api_keys::table
            .select((api_keys::tenant_id, api_keys::id, api_keys::user_id, api_keys::name, api_keys::secret_hash, api_keys::scopes))
            .load(&mut *app.conn())
            .unwrap();
        assert_eq!(rows.len(), 2);
        for secret_text in [key, admin_key.as_str(), &admin_key[3..]] {
            for row in &rows {
                for column in [&row.0, &row.1, &row.2, &row.3, &row.4, &row.5] {
                    assert!(!column.contains(secret_text), "a column holds the secret: {row:?}");
                }
            }
        }
        let row = rows.iter().find(|r| r.1 == id).expect("the key's row");
        assert_eq!(row.4, secret::hash(key));
        assert_ne!(row.4, secret::hash(&admin_key));

        // Not anywhere in the SQLite files either.
        if let Some(path) = app.database_url.strip_prefix("sqlite://") {
            for file in [path.to_owned(), format!("{path}-wal"), format!("{path}-shm")] {
                if let Ok(bytes) = std::fs::read(&file) {
                    let found = bytes.windows(random.len()).any(|w| w == random.as_bytes());
                    assert!(!found, "the secret is stored in {file}");
                }
            }
        }

        // Text output prints it once too, and the key works.
        let run = keyward(app, &["key", "create", "--tenant", "acme", "--user", "bob@acme.test", "--name", "text-key"]);
        assert_eq!(run.code, Some(0), "{run:#?}");
        let secrets = secrets_in(&run.stdout);
        assert_eq!(secrets.len(), 1, "{run:#?}");
        let reply = app.get(KEYS, "acme", secrets[0]).await;
        assert_eq!(reply.status.as_u16(), 403, "{}", reply.text);
    }

    async fn the_server_sees_what_the_cli_creates_on_its_next_request(app: &TestApp) {
        app.clock.set(Utc::now());
        let (_, admin_key, _) = bootstrap(app, "acme", "admin@acme.test");
        let alice = create_user(app, "acme", "alice@acme.test");
        let reply = app.get(KEYS, "acme", &admin_key).await;
        assert_eq!(reply.status.as_u16(), 200, "{}", reply.text);
        let reply = app.get(KEYS, "newco", "").await;
        assert_401(&reply, "tenant", "Unknown tenant specified");

        keyward(app, &["tenant", "create", "newco", "--json"]).json();
        let reply = app.get(KEYS, "newco", "").await;
        assert_401(&reply, "x-key", "API key missing");

        let dave = create_user(app, "newco", "dave@newco.test");
        let (id, key) = create_key(app, "newco", "dave@newco.test", &["--scope", "public_api", "--scope", "user_key_management"]);
        let reply = app.get(&format!("{KEYS}?UserId={dave}"), "newco", &key).await;
        assert_eq!(reply.status.as_u16(), 200, "{}", reply.text);
        let ids: Vec<&str> = reply.body.as_array().unwrap().iter().map(|k| k["id"].as_str().unwrap()).collect();
        assert_eq!(ids, [id.as_str()]);

        // A key added by the CLI to a tenant the server has been serving.
        let (id2, key2) = create_key(app, "acme", &alice, &["--scope", "public_api", "--scope", "user_key_management"]);
        let reply = app.get(&format!("{KEYS}/{id2}"), "acme", &key2).await;
        assert_eq!(reply.status.as_u16(), 200, "{}", reply.text);
        assert_eq!(reply.body["user_id"], alice.as_str());

        // And the server's writes are seen by the CLI: a key created over HTTP
        // for a CLI-made user counts for that user.
        app.clock.set(Utc::now());
        let expiration = (real_today() + Days::new(10)).to_string();
        let reply = app.post(KEYS, "newco", &key, json!({"name": "over-http", "user_id": dave, "expiration_date": expiration})).await;
        assert_eq!(reply.status.as_u16(), 201, "{}", reply.text);
        let by_id = create_key(app, "newco", &dave, &[]);
        let reply = app.get(&format!("{KEYS}?UserId={dave}"), "newco", &key).await;
        assert_eq!(reply.body.as_array().unwrap().len(), 3, "{}", reply.text);
        assert_eq!(reply.body[2]["id"], by_id.0.as_str());
    }

    async fn tenant_set_bounds_key_lifetimes(app: &TestApp) {
        app.clock.set(Utc::now());
        let (_, admin_key, admin_id) = bootstrap(app, "acme", "admin@acme.test");
        create_user(app, "acme", "bob@acme.test");

        let out = keyward(app, &["tenant", "set", "acme", "--max-key-lifetime-days", "30", "--json"]).json();
        assert!(out.is_object());
        let day = |n: u64| (real_today() + Days::new(n)).to_string();

        keyward(app, &["key", "create", "--tenant", "acme", "--user", "bob@acme.test", "--name", "ci-key", "--expires", &day(31), "--json"]).failed();
        let (id, _) = create_key(app, "acme", "bob@acme.test", &["--expires", &day(30)]);
        assert_eq!(key_object(app, "acme", &admin_key, &id).await["expiration_date"], day(30));
        let before = real_today();
        let (id, _) = create_key(app, "acme", "bob@acme.test", &[]);
        let after = real_today();
        assert_expires_in(&key_object(app, "acme", &admin_key, &id).await, before, after, 30);

        // The server honours the new policy within a second.
        std::thread::sleep(std::time::Duration::from_millis(1100));
        app.clock.set(Utc::now());
        let reply = app.post(KEYS, "acme", &admin_key, json!({"name": "too-long", "user_id": admin_id, "expiration_date": day(31)})).await;
        assert_eq!(reply.status.as_u16(), 400, "{}", reply.text);
        assert_eq!(reply.body["errors"].as_object().unwrap().keys().collect::<Vec<_>>(), ["expiration_date"], "{}", reply.text);
        let reply = app.post(KEYS, "acme", &admin_key, json!({"name": "just-right", "user_id": admin_id, "expiration_date": day(30)})).await;
        assert_eq!(reply.status.as_u16(), 201, "{}", reply.text);

        // Out of range, or an unknown tenant: refused, and the policy stays.
        for days in ["0", "3651", "-1", "abc", "99999999999"] {
            keyward(app, &["tenant", "set", "acme", "--max-key-lifetime-days", days, "--json"]).failed();
        }
        keyward(app, &["tenant", "set", "nowhere", "--max-key-lifetime-days", "30", "--json"]).failed();
        keyward(app, &["key", "create", "--tenant", "acme", "--user", "bob@acme.test", "--name", "ci-key", "--expires", &day(31), "--json"]).failed();

        // The bounds themselves are allowed.
        keyward(app, &["tenant", "set", "acme", "--max-key-lifetime-days", "1", "--json"]).json();
        keyward(app, &["key", "create", "--tenant", "acme", "--user", "bob@acme.test", "--name", "ci-key", "--expires", &day(2), "--json"]).failed();
        create_key(app, "acme", "bob@acme.test", &["--expires", &day(1)]);
        keyward(app, &["tenant", "set", "acme", "--max-key-lifetime-days", "3650", "--json"]).json();
        create_key(app, "acme", "bob@acme.test", &["--expires", &day(3650)]);
        keyward(app, &["key", "create", "--tenant", "acme", "--user", "bob@acme.test", "--name", "ci-key", "--expires", &day(3651), "--json"]).failed();
        // Bootstrap follows the policy too.
        let before = real_today();
        let (id, key, _) = bootstrap(app, "acme", "admin@acme.test");
        let after = real_today();
        assert_expires_in(&key_object(app, "acme", &key, &id).await, before, after, 3650);
    }

    async fn migrate_refuses_unknown_schemes_without_creating_files(app: &TestApp) {
        for url in ["mysql://x", "sqlite:data.db", "data/keyward.db", "postgre://u@h/db", "sqlite://", "file:keyward.db"] {
            for json_flag in [true, false] {
                let dir = tempfile::tempdir().unwrap();
                let args: &[&str] = if json_flag { &["migrate", "--json"] } else { &["migrate"] };
                let run = keyward_in(dir.path(), Some(url), args);
                run.failed();
                let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().path()).collect();
                assert!(left.is_empty(), "{url}: created {left:?}");
            }
        }
        // Any other command refuses it too.
        let dir = tempfile::tempdir().unwrap();
        keyward_in(dir.path(), Some("mysql://x"), &["tenant", "create", "acme", "--json"]).failed();
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);

        // On the test's database: success, twice (nothing left to apply), and the App still works.
        keyward(app, &["migrate", "--json"]).json();
        keyward(app, &["migrate", "--json"]).json();
        let reply = app.send(test::TestRequest::get().uri("/readiness")).await;
        assert_eq!(reply.status.as_u16(), 200, "{}", reply.text);
        let w = World::new(app);
        let reply = app.get(KEYS, "acme", w.admin_secret()).await;
        assert_eq!(reply.status.as_u16(), 200, "{}", reply.text);
    }
}

/// Configuration layers: the compiled-in defaults, `config/default.toml` in the
/// working directory, the `KEYWARD_CONFIG` file, then `KEYWARD_*` variables.
#[::core::prelude::v1::test]
fn configuration_files_and_environment_layer_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let db = |name: &str| format!("sqlite://{}", dir.path().join(name).display());
    let run = |config_file: Option<&Path>, env_url: Option<&str>| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_keyward"));
        cmd.args(["tenant", "create", "layered", "--json"])
            .current_dir(dir.path());
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("KEYWARD_") {
                cmd.env_remove(&name);
            }
        }
        if let Some(file) = config_file {
            cmd.env("KEYWARD_CONFIG", file);
        }
        if let Some(url) = env_url {
            cmd.env("KEYWARD_DATABASE_URL", url);
        }
        cmd.output().unwrap()
    };
    // config/default.toml in the working directory overrides the compiled-in default.
    std::fs::create_dir(dir.path().join("config")).unwrap();
    std::fs::write(
        dir.path().join("config/default.toml"),
        format!("database_url = {:?}\n", db("local.db")),
    )
    .unwrap();
    assert!(run(None, None).status.success());
    assert!(dir.path().join("local.db").exists());
    // The KEYWARD_CONFIG file overrides it...
    let file = dir.path().join("keyward.toml");
    std::fs::write(
        &file,
        format!(
            "database_url = {:?}\nkey_prefix = \"acme\"\n",
            db("from-file.db")
        ),
    )
    .unwrap();
    assert!(run(Some(&file), None).status.success());
    assert!(dir.path().join("from-file.db").exists());
    // ...and the environment overrides both.
    assert!(run(Some(&file), Some(&db("from-env.db"))).status.success());
    assert!(dir.path().join("from-env.db").exists());
    // A KEYWARD_CONFIG that does not exist, or a bad value in it, stops the command.
    let missing = run(Some(&dir.path().join("nope.toml")), None);
    assert!(!missing.status.success());
    std::fs::write(&file, "key_prefix = \"bad_prefix!\"\n").unwrap();
    let bad = run(Some(&file), None);
    assert!(!bad.status.success());
    // With --json, the error is the one JSON object on stdout.
    let error: Value = serde_json::from_slice(&bad.stdout).unwrap();
    assert!(
        error["error"].as_str().unwrap().contains("key_prefix"),
        "{bad:?}"
    );
}

/// With no database URL at all, the CLI uses a SQLite file under `./data/`.
/// (No backend to choose: the test is about the default.)
#[::core::prelude::v1::test]
fn without_a_url_the_default_is_a_sqlite_file_under_data() {
    let dir = tempfile::tempdir().unwrap();
    let run = keyward_in(dir.path(), None, &["migrate", "--json"]);
    run.json();
    assert!(dir.path().join("data").is_dir(), "{run:#?}");
    let files: Vec<String> = std::fs::read_dir(dir.path().join("data"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(files.iter().any(|f| f.ends_with(".db")), "{files:?}");
    // The file is a working database: the CLI can use it.
    let run = keyward_in(
        dir.path(),
        None,
        &[
            "bootstrap",
            "--tenant",
            "acme",
            "--email",
            "admin@acme.test",
            "--json",
        ],
    );
    assert!(secret::well_formed(str_of(&run.json(), "key"), "kw"));
}

/// Everything `migrate --citus` could change in the test's PostgreSQL schema:
/// its relations, constraints and rows, and the database's extensions.
fn pg_shape(url: &str) -> String {
    #[derive(QueryableByName)]
    struct Shape {
        #[diesel(sql_type = diesel::sql_types::Text)]
        shape: String,
    }
    let mut conn = PgConnection::establish(url).unwrap();
    diesel::sql_query(
        "SELECT string_agg(x, E'\\n' ORDER BY x) AS shape FROM (
           SELECT 'rel ' || relname || ' ' || relkind::text FROM pg_class
             WHERE relnamespace = current_schema()::regnamespace
           UNION ALL SELECT 'con ' || conname || ' ' || pg_get_constraintdef(oid) FROM pg_constraint
             WHERE connamespace = current_schema()::regnamespace
           UNION ALL SELECT 'ext ' || extname FROM pg_extension
           UNION ALL SELECT 'rows ' || (SELECT count(*) FROM tenants) || ' ' || (SELECT count(*) FROM users)
             || ' ' || (SELECT count(*) FROM api_keys) || ' ' || (SELECT count(*) FROM audit_events)
         ) s(x)",
    )
    .get_result::<Shape>(&mut conn)
    .unwrap()
    .shape
}

crate::both_backends! {
    // Without the citus extension (CI has none) the command must leave the
    // database exactly as it was, every time; SQLite has nothing to distribute.
    async fn migrate_citus_is_a_no_op_without_citus(app: &TestApp) {
        World::new(app);
        if !app.database_url.starts_with("postgres") {
            let run = keyward(app, &["migrate", "--citus", "--json"]);
            run.failed();
            assert!(run.stdout.contains("PostgreSQL"), "{run:#?}");
            let run = keyward(app, &["migrate", "--json"]);
            assert_eq!(run.json(), json!({"migrated": true}));
            assert!(!run.stderr.contains("migrate --citus"), "{run:#?}");
            return;
        }
        let before = pg_shape(&app.database_url);
        assert!(before.contains("rel api_keys r") && before.contains("rows 2 4 4 "), "{before}");
        for _ in 0..2 {
            let run = keyward(app, &["migrate", "--citus", "--json"]);
            // The probe ran (and left nothing behind: the shape is the same).
            assert_eq!(run.json(), json!({"migrated": true, "citus": false, "distributed": [], "probe": "ok"}));
            assert_eq!(pg_shape(&app.database_url), before);
        }
        let text = keyward(app, &["migrate", "--citus"]);
        assert!(text.stdout.contains("citus: false"), "{text:#?}");
        // Nor does plain `migrate` warn of tables to distribute (that takes
        // Citus: docs/citus.md shows the warning on a real cluster).
        let run = keyward(app, &["migrate", "--json"]);
        assert_eq!(run.json(), json!({"migrated": true}));
        assert!(!run.stderr.contains("migrate --citus"), "{run:#?}");
    }
}

/// Creates a key over HTTP on a connection of its own; its id once the
/// server has acknowledged it (201), else `None`.
fn create_key_over_http(port: u16, key: &str, user_id: &str, name: &str) -> Option<String> {
    use std::io::{Read, Write};
    let body = json!({
        "name": name,
        "user_id": user_id,
        "expiration_date": (real_today() + Days::new(30)).to_string(),
    })
    .to_string();
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .ok()?;
    let request = format!(
        "POST {KEYS} HTTP/1.1\r\nHost: a\r\nConnection: close\r\ntenant: acme\r\nx-key: {key}\r\n\
         content-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    if head.split(' ').nth(1) != Some("201") {
        return None;
    }
    let created: Value = serde_json::from_str(body).ok()?;
    created["id"].as_str().map(str::to_owned)
}

/// `keyward backup` copies a live SQLite database while a client creates keys
/// through the server without pause: the copy opens as a keyward database
/// and holds every key whose creation was acknowledged before the backup
/// began. It refuses to overwrite a file unless `--force`, and for
/// PostgreSQL points to pg_dump.
#[::core::prelude::v1::test]
fn a_backup_of_a_live_database_holds_every_acknowledged_key() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    let mut server = crate::operability::Served::start();
    let (port, key, user_id) = (server.port, server.field("key"), server.field("user_id"));
    let acked: Arc<Mutex<Vec<(String, Instant)>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = std::thread::spawn({
        let (acked, stop) = (Arc::clone(&acked), Arc::clone(&stop));
        move || {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                if let Some(id) = create_key_over_http(port, &key, &user_id, &format!("w{n}")) {
                    acked.lock().unwrap().push((id, Instant::now()));
                }
                // (The server's log goes to a pipe read only once it stops: a
                // pace that keeps it within the pipe's buffer.)
                std::thread::sleep(Duration::from_millis(10));
            }
            n
        }
    });
    std::thread::sleep(Duration::from_millis(500));

    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("copy.db");
    let copy_arg = copy.to_str().unwrap();
    let began = Instant::now();
    let run = keyward_in(
        dir.path(),
        Some(server.database_url()),
        &["backup", copy_arg, "--json"],
    );
    let out = run.json();
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    let attempts = writer.join().unwrap();
    assert_eq!(out["backup"], copy_arg, "{out}");
    assert_eq!(
        out["bytes"].as_u64(),
        Some(std::fs::metadata(&copy).unwrap().len())
    );
    let acked = acked.lock().unwrap().clone();
    let before: Vec<&String> = acked
        .iter()
        .filter(|(_, at)| *at < began)
        .map(|(id, _)| id)
        .collect();
    assert!(
        before.len() >= 5,
        "too few keys before the backup: {acked:?}"
    );
    assert!(
        acked.len() > before.len(),
        "no key was written during or after the backup ({attempts} attempts)"
    );

    // A second backup to the same path is refused and leaves the copy as it is...
    let saved = std::fs::read(&copy).unwrap();
    let again = keyward_in(
        dir.path(),
        Some(server.database_url()),
        &["backup", copy_arg, "--json"],
    );
    again.failed();
    assert!(again.stdout.contains("--force"), "{again:#?}");
    assert_eq!(std::fs::read(&copy).unwrap(), saved);
    // ...and with --force replaces it (the server still writes nothing now: same keys or more).
    let forced = dir.path().join("forced.db");
    std::fs::write(&forced, b"not a database").unwrap();
    let forced_arg = forced.to_str().unwrap();
    keyward_in(
        dir.path(),
        Some(server.database_url()),
        &["backup", forced_arg, "--force", "--json"],
    )
    .json();
    let (status, log) = server.stop();
    assert!(status.success(), "{log}");

    // Restore: keyward opens each copy as its database, and every key
    // acknowledged before the backup began is there.
    for file in [&copy, &forced] {
        let url = format!("sqlite://{}", file.display());
        keyward_in(dir.path(), Some(&url), &["migrate", "--json"]).json();
        let mut conn = SqliteConnection::establish(file.to_str().unwrap()).unwrap();
        let ids: std::collections::HashSet<String> = api_keys::table
            .select(api_keys::id)
            .load::<String>(&mut conn)
            .unwrap()
            .into_iter()
            .collect();
        for id in &before {
            assert!(ids.contains(*id), "{}: key {id} is missing", file.display());
        }
        // And it serves: a key can be made in it.
        let made = keyward_in(
            dir.path(),
            Some(&url),
            &[
                "key",
                "create",
                "--tenant",
                "acme",
                "--user",
                "admin@acme.test",
                "--name",
                "restored",
                "--json",
            ],
        );
        assert!(secret::well_formed(str_of(&made.json(), "key"), "kw"));
    }

    // PostgreSQL: refused, pointing to pg_dump (nothing is connected to).
    let pg = keyward_in(
        dir.path(),
        Some("postgres://nobody@127.0.0.1:1/none"),
        &[
            "backup",
            dir.path().join("pg.db").to_str().unwrap(),
            "--json",
        ],
    );
    pg.failed();
    assert!(pg.stdout.contains("pg_dump --format=custom"), "{pg:#?}");
    assert!(!dir.path().join("pg.db").exists());
}
