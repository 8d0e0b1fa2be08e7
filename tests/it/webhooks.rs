//! Webhooks (section 11): endpoints, the outbox written with the change, the
//! sender (signing, retries, disabling, one attempt across instances), expiry
//! notices, and the real binary with a receiver that verifies signatures with
//! the `standardwebhooks` Python package.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::http::Method;
use actix_web::web;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use chrono::TimeDelta;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

use crate::both_backends;
use crate::common::*;
use keyward::keys::Scope;
use keyward::webhooks::client::{resolve_public, Client, Outcome, Request};
use keyward::AppState;

/// How the webhook tests run the real binary: receivers on 127.0.0.1, retries a second apart.
const WEBHOOK_BINARY_ENV: &[(&str, &str)] = &[
    ("KEYWARD_WEBHOOK_ALLOW_PRIVATE", "1"),
    ("KEYWARD_WEBHOOK_RETRY_SCHEDULE", "1,1,1,1,1,1,1,1,1,1"),
];

const HOOKS: &str = "/v1/webhooks";

/// One request a [`Receiver`] got.
#[derive(Debug, Clone)]
struct Received {
    headers: HashMap<String, String>,
    body: String,
}

impl Received {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap()
    }
}

/// An HTTP endpoint on 127.0.0.1 that records what it gets and answers `status`.
struct Receiver {
    port: u16,
    got: Arc<Mutex<Vec<Received>>>,
    status: Arc<AtomicU16>,
    /// A `Location` header to answer with, when not empty.
    location: Arc<Mutex<String>>,
}

impl Receiver {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let got = Arc::new(Mutex::new(Vec::new()));
        let status = Arc::new(AtomicU16::new(204));
        let location = Arc::new(Mutex::new(String::new()));
        let (g, s, l) = (Arc::clone(&got), Arc::clone(&status), Arc::clone(&location));
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { break };
                let (g, s, l) = (Arc::clone(&g), Arc::clone(&s), Arc::clone(&l));
                std::thread::spawn(move || serve_one(stream, &g, &s, &l));
            }
        });
        Self {
            port,
            got,
            status,
            location,
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hook", self.port)
    }

    fn got(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }

    fn answer(&self, status: u16) {
        self.status.store(status, Ordering::SeqCst);
    }

    /// Answers `status` with `Location: to`.
    fn redirect(&self, status: u16, to: &str) {
        *self.location.lock().unwrap() = to.to_owned();
        self.answer(status);
    }
}

fn serve_one(
    stream: TcpStream,
    got: &Mutex<Vec<Received>>,
    status: &AtomicU16,
    location: &Mutex<String>,
) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    let mut headers = HashMap::new();
    loop {
        let mut h = String::new();
        reader.read_line(&mut h).unwrap();
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (name, value) = h.split_once(':').unwrap();
        headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_owned());
    }
    let length: usize = headers
        .get("content-length")
        .map_or(0, |l| l.parse().unwrap());
    let mut body = vec![0; length];
    reader.read_exact(&mut body).unwrap();
    got.lock().unwrap().push(Received {
        headers,
        body: String::from_utf8(body).unwrap(),
    });
    let code = status.load(Ordering::SeqCst);
    let location = location.lock().unwrap().clone();
    let location = if location.is_empty() {
        String::new()
    } else {
        format!("location: {location}\r\n")
    };
    let mut stream = stream;
    let _ = write!(
        stream,
        "HTTP/1.1 {code} X\r\n{location}content-length: 0\r\nconnection: close\r\n\r\n"
    );
}

/// Whether `signature` (one `v1,...` or several, space-separated) holds the
/// HMAC-SHA256 of the delivery under `secret` (`whsec_...`).
fn signed_by(got: &Received, secret: &str) -> bool {
    let key = STANDARD
        .decode(secret.strip_prefix("whsec_").unwrap())
        .unwrap();
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    let content = format!(
        "{}.{}.{}",
        got.headers["webhook-id"], got.headers["webhook-timestamp"], got.body
    );
    mac.update(content.as_bytes());
    let expected = format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()));
    got.headers["webhook-signature"]
        .split(' ')
        .any(|s| s == expected)
}

/// The app's state with private addresses allowed (the receivers are on
/// 127.0.0.1) and other settings changed by `change`.
fn allowing(
    app: &TestApp,
    change: impl FnOnce(&mut keyward::config::Settings),
) -> web::Data<AppState> {
    app.reconfigured(|s| {
        s.webhook_allow_private = true;
        change(s);
    })
}

async fn call(
    app: &TestApp,
    state: &web::Data<AppState>,
    method: Method,
    path: &str,
    tenant: &str,
    key: &str,
    body: Option<Value>,
) -> Reply {
    let mut req = actix_web::test::TestRequest::default()
        .method(method)
        .uri(path)
        .insert_header(("tenant", tenant))
        .insert_header(("x-key", key));
    if let Some(body) = body {
        req = req.set_json(body);
    }
    app.send_to(state.clone(), req).await
}

/// Registers an endpoint as acme's administrator; returns (id, secret).
async fn register(
    app: &TestApp,
    state: &web::Data<AppState>,
    w: &World,
    url: &str,
    events: Value,
) -> (String, String) {
    let reply = call(
        app,
        state,
        Method::POST,
        HOOKS,
        "acme",
        w.admin_secret(),
        Some(json!({"url": url, "events": events})),
    )
    .await;
    assert_eq!(reply.status, 201, "{}", reply.text);
    (
        reply.body["id"].as_str().unwrap().to_owned(),
        reply.body["secret"].as_str().unwrap().to_owned(),
    )
}

async fn send(state: &web::Data<AppState>) -> usize {
    let client = Client::new(true).unwrap();
    state
        .clone()
        .into_inner()
        .send_webhooks(&client)
        .await
        .unwrap()
}

async fn deliveries(app: &TestApp, state: &web::Data<AppState>, w: &World, id: &str) -> Vec<Value> {
    let reply = call(
        app,
        state,
        Method::GET,
        &format!("{HOOKS}/{id}/deliveries"),
        "acme",
        w.admin_secret(),
        None,
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    reply.body["deliveries"].as_array().unwrap().clone()
}

both_backends! {
    async fn endpoints_are_managed_and_validated(app: &TestApp) {
        let w = World::new(app);
        let admin = w.admin_secret();
        let created = app.post(HOOKS, "acme", admin, json!({
            "url": "https://hooks.example.com/keyward", "events": ["key.revoked", "key.expiring", "key.revoked"],
            "description": "SIEM"})).await;
        assert_eq!(created.status, 201, "{}", created.text);
        let id = created.body["id"].as_str().unwrap().to_owned();
        let secret = created.body["secret"].as_str().unwrap();
        assert_eq!(STANDARD.decode(secret.strip_prefix("whsec_").unwrap()).unwrap().len(), 32);
        let object = json!({"id": id, "url": "https://hooks.example.com/keyward",
            "events": ["key.revoked", "key.expiring"], "description": "SIEM", "enabled": true,
            "created_on": "2026-06-15T12:00:04Z", "updated_on": null});
        let mut with_secret = object.clone();
        with_secret["secret"] = json!(secret);
        assert_eq!(created.body, with_secret);

        // The secret is never shown again.
        let got = app.get(&format!("{HOOKS}/{id}"), "acme", admin).await;
        assert_eq!(got.body, object);
        let listed = app.get(HOOKS, "acme", admin).await;
        assert_eq!(listed.body, json!({"webhooks": [object]}));
        assert!(!listed.text.contains(secret));

        // PATCH: any field; events ["*"].
        app.clock.advance(TimeDelta::seconds(1));
        let patched = app.call(Method::PATCH, &format!("{HOOKS}/{id}"), "acme", admin,
            Some(json!({"events": ["*"], "enabled": false, "description": ""}))).await;
        assert_eq!(patched.status, 200, "{}", patched.text);
        assert_eq!(patched.body["events"], json!(["*"]));
        assert_eq!(patched.body["enabled"], json!(false));
        assert_eq!(patched.body["updated_on"], json!("2026-06-15T12:00:05Z"));
        assert_eq!(patched.body["url"], json!("https://hooks.example.com/keyward"));

        // Validation names the field.
        for (body, field, message) in [
            (json!({"url": "ftp://x.example.com/", "events": ["*"]}), "url", "url must be an absolute http:// or https:// URL."),
            (json!({"url": "http://127.0.0.1:9000/", "events": ["*"]}), "url", "url must not point at a loopback, private, link-local or otherwise non-public address."),
            (json!({"url": "http://10.1.2.3/", "events": ["*"]}), "url", "url must not point at a loopback, private, link-local or otherwise non-public address."),
            (json!({"url": "http://localhost/", "events": ["*"]}), "url", "url must not point at a loopback, private, link-local or otherwise non-public address."),
            (json!({"url": "http://[fe80::1]/", "events": ["*"]}), "url", "url must not point at a loopback, private, link-local or otherwise non-public address."),
            (json!({"events": ["*"]}), "url", "url is required."),
            (json!({"url": 5, "events": ["*"]}), "url", "url must be a string."),
            (json!({"url": "https://a.example.com/", "events": []}), "events", "events must name at least one event type, or be [\"*\"]."),
            (json!({"url": "https://a.example.com/", "events": ["key.nope"]}), "events", "Unknown event type \"key.nope\"."),
            (json!({"url": "https://a.example.com/", "events": ["*", "key.created"]}), "events", "\"*\" subscribes to every event type and stands alone."),
            (json!({"url": "https://a.example.com/", "events": "key.created"}), "events", "events must be an array of event types, or [\"*\"]."),
            (json!({"url": "https://a.example.com/"}), "events", "events is required: an array of event types, or [\"*\"]."),
            (json!({"url": "https://a.example.com/", "events": ["*"], "description": 1}), "description", "description must be a string."),
        ] {
            assert_400(&app.post(HOOKS, "acme", admin, body.clone()).await, field, message);
        }
        let bad_patch = app.call(Method::PATCH, &format!("{HOOKS}/{id}"), "acme", admin,
            Some(json!({"enabled": "yes"}))).await;
        assert_400(&bad_patch, "enabled", "enabled must be true or false.");
        let bad_patch = app.call(Method::PATCH, &format!("{HOOKS}/{id}"), "acme", admin,
            Some(json!({"url": "http://192.168.0.1/"}))).await;
        assert_eq!(bad_patch.status, 400);
        // credits_low is accepted (not generated yet).
        let credits = app.post(HOOKS, "acme", admin, json!({"url": "https://b.example.com/", "events": ["key.credits_low", "webhook.test"]})).await;
        assert_eq!(credits.status, 201, "{}", credits.text);

        // The operator may allow private addresses.
        let private = app.reconfigured(|s| s.webhook_allow_private = true);
        let ok = call(app, &private, Method::POST, HOOKS, "acme", admin, Some(json!({"url": "http://127.0.0.1:9000/", "events": ["*"]}))).await;
        assert_eq!(ok.status, 201, "{}", ok.text);

        // Administrators with user_management only.
        assert_403(&app.get(HOOKS, "acme", &w.alice_key.1).await, "The calling key lacks the user_management scope");
        let (_, alice_all) = app.key(&w.acme, &w.alice, &Scope::ALL);
        assert_403(&app.get(HOOKS, "acme", &alice_all).await, "Only Administrators may manage webhooks");
        let (_, no_um) = app.key(&w.acme, &w.admin, &[Scope::PublicApi, Scope::UserKeyManagement]);
        assert_403(&app.get(HOOKS, "acme", &no_um).await, "The calling key lacks the user_management scope");

        // Every change is audited.
        let audit = app.get("/v1/audit-events?take=1000", "acme", admin).await;
        let actions: Vec<&str> = audit.body["events"].as_array().unwrap().iter()
            .filter(|e| e["target_id"] == json!(id)).map(|e| e["action"].as_str().unwrap()).collect();
        assert_eq!(actions, ["webhook.created", "webhook.updated"]);

        // DELETE, then it is gone.
        assert_eq!(app.delete(&format!("{HOOKS}/{id}"), "acme", admin).await.body, json!({"result": "OK"}));
        assert_404(&app.get(&format!("{HOOKS}/{id}"), "acme", admin).await);
        assert_404(&app.delete(&format!("{HOOKS}/{id}"), "acme", admin).await);
        assert_404(&app.get(&format!("{HOOKS}/not-a-uuid"), "acme", admin).await);
    }

    async fn another_tenants_endpoint_is_unknown(app: &TestApp) {
        let w = World::new(app);
        let created = app.post(HOOKS, "acme", w.admin_secret(), json!({"url": "https://a.example.com/", "events": ["*"]})).await;
        let id = created.body["id"].as_str().unwrap();
        let beta = &w.beta_key.1;
        for (method, path, body) in [
            (Method::GET, format!("{HOOKS}/{id}"), None),
            (Method::PATCH, format!("{HOOKS}/{id}"), Some(json!({"enabled": false}))),
            (Method::DELETE, format!("{HOOKS}/{id}"), None),
            (Method::POST, format!("{HOOKS}/{id}/rotate-secret"), None),
            (Method::POST, format!("{HOOKS}/{id}/test"), None),
            (Method::GET, format!("{HOOKS}/{id}/deliveries"), None),
        ] {
            let foreign = app.call(method.clone(), &path, "beta", beta, body.clone()).await;
            let unknown = app.call(method, &path.replace(id, "0193a5b0-0000-7000-8000-000000000000"), "beta", beta, body).await;
            assert_404(&foreign);
            assert_eq!(foreign.body_without_trace(), unknown.body_without_trace());
        }
        assert_eq!(app.get(HOOKS, "beta", beta).await.body, json!({"webhooks": []}));
        assert_eq!(app.get(&format!("{HOOKS}/{id}"), "acme", w.admin_secret()).await.body["enabled"], json!(true));
    }

    async fn changes_are_delivered_signed_to_subscribers(app: &TestApp) {
        let w = World::new(app);
        let receiver = Receiver::start();
        let other = Receiver::start();
        let state = allowing(app, |_| {});
        let (_, secret) = register(app, &state, &w, &receiver.url(), json!(["key.created", "key.revoked"])).await;
        register(app, &state, &w, &other.url(), json!(["user.created"])).await;
        // A change through the API ...
        let created = call(app, &state, Method::POST, "/v1/user-api-keys", "acme", w.admin_secret(),
            Some(json!({"name": "deploy", "user_id": w.alice.id, "expiration_date": "2026-07-01"}))).await;
        assert_eq!(created.status, 201);
        let key_id = created.body["id"].as_str().unwrap().to_owned();
        let plaintext = created.body["key"].as_str().unwrap().to_owned();
        // ... and one through the core as the CLI makes it.
        let (cli_key, _) = app.key(&w.acme, &w.bob, &[Scope::PublicApi]);
        let revoked = app.delete(&format!("/v1/user-api-keys/{key_id}"), "acme", w.admin_secret()).await;
        assert_eq!(revoked.status, 200);
        // Another tenant's change goes nowhere here.
        app.key(&w.beta, &w.beta_admin, &[Scope::PublicApi]);
        assert_eq!(send(&state).await, 3);
        assert_eq!(send(&state).await, 0);

        let got = receiver.got();
        let types: Vec<Value> = got.iter().map(|g| g.json()["type"].clone()).collect();
        assert_eq!(types, [json!("key.created"), json!("key.created"), json!("key.revoked")]);
        for g in &got {
            assert!(signed_by(g, &secret), "bad signature: {g:?}");
            assert_eq!(g.headers["content-type"], "application/json");
            assert_eq!(g.headers["webhook-timestamp"], app.now().timestamp().to_string());
            assert!(!g.body.contains(&plaintext), "the secret was sent");
        }
        let first = got[0].json();
        assert_eq!(first["timestamp"], json!("2026-06-15T12:00:04Z"));
        assert_eq!(first["data"]["action"], json!("key.created"));
        assert_eq!(first["data"]["target_id"], json!(key_id));
        assert_eq!(first["data"]["actor_user_id"], json!(w.admin.id));
        assert_eq!(first["data"]["id"], json!(got[0].headers["webhook-id"]));
        assert_eq!(first["data"]["key"]["id"], json!(key_id));
        assert_eq!(first["data"]["key"]["expiration_date"], json!("2026-07-01"));
        assert_eq!(first["data"]["key"]["user_id"], json!(w.alice.id));
        assert!(first["data"]["key"].get("token_hash").is_none());
        assert_eq!(got[1].json()["data"]["target_id"], json!(cli_key.id));
        assert_eq!(got[1].json()["data"]["actor_user_id"], Value::Null);
        assert_eq!(got[2].json()["data"]["key"]["revoked_on"], json!("2026-06-15T12:00:04Z"));
        // Nothing the other endpoint did not subscribe to.
        assert!(other.got().is_empty());
        // The log: one delivered attempt each, newest first.
        let log = deliveries(app, &state, &w, &register(app, &state, &w, "http://127.0.0.1:1/", json!(["*"])).await.0).await;
        assert!(log.is_empty());
    }

    async fn failures_are_retried_on_the_schedule_then_given_up_and_the_endpoint_disabled(app: &TestApp) {
        let w = World::new(app);
        let receiver = Receiver::start();
        receiver.answer(500);
        let state = allowing(app, |s| {
            s.webhook_retry_schedule = vec![10, 100];
            s.webhook_disable_after_secs = 1000;
        });
        let (id, _) = register(app, &state, &w, &receiver.url(), json!(["*"])).await;
        let test = call(app, &state, Method::POST, &format!("{HOOKS}/{id}/test"), "acme", w.admin_secret(), None).await;
        assert_eq!(test.status, 202, "{}", test.text);
        let event_id = test.body["event_id"].as_str().unwrap().to_owned();
        assert_eq!(send(&state).await, 1);
        assert_eq!(send(&state).await, 0, "not due yet");
        let log = deliveries(app, &state, &w, &id).await;
        assert_eq!(log.len(), 1);
        assert_eq!(log[0]["event_id"], json!(event_id));
        assert_eq!(log[0]["type"], json!("webhook.test"));
        assert_eq!(log[0]["attempt"], json!(1));
        assert_eq!(log[0]["status_code"], json!(500));
        assert_eq!(log[0]["error"], json!("answered HTTP 500"));
        let next = chrono::DateTime::parse_from_rfc3339(log[0]["next_attempt_at"].as_str().unwrap()).unwrap();
        let after = (next.with_timezone(&chrono::Utc) - app.now()).num_seconds();
        assert!((8..=11).contains(&after), "retry in {after} s");

        app.clock.advance(TimeDelta::seconds(12));
        assert_eq!(send(&state).await, 1);
        app.clock.advance(TimeDelta::seconds(50));
        assert_eq!(send(&state).await, 0, "the second retry waits about 100 s");
        app.clock.advance(TimeDelta::seconds(70));
        assert_eq!(send(&state).await, 1);
        let log = deliveries(app, &state, &w, &id).await;
        assert_eq!(log.iter().map(|d| d["attempt"].clone()).collect::<Vec<_>>(), [json!(3), json!(2), json!(1)]);
        assert_eq!(log[0]["next_attempt_at"], Value::Null, "given up");
        assert_eq!(receiver.got().len(), 3);
        assert!(receiver.got().iter().all(|g| g.headers["webhook-id"] == event_id));
        // Paging.
        let page = call(app, &state, Method::GET, &format!("{HOOKS}/{id}/deliveries?take=1&start_with={}", log[0]["id"].as_str().unwrap()), "acme", w.admin_secret(), None).await;
        assert_eq!(page.body["deliveries"][0]["attempt"], json!(2));
        assert_eq!(page.body["deliveries"].as_array().unwrap().len(), 1);

        // Failing for longer than disable_after (1000 s since the first failure): disabled.
        app.clock.advance(TimeDelta::seconds(900));
        call(app, &state, Method::POST, &format!("{HOOKS}/{id}/test"), "acme", w.admin_secret(), None).await;
        assert_eq!(send(&state).await, 1);
        let endpoint = call(app, &state, Method::GET, &format!("{HOOKS}/{id}"), "acme", w.admin_secret(), None).await;
        assert_eq!(endpoint.body["enabled"], json!(false));
        // Nothing more is attempted; a test is refused.
        app.clock.advance(TimeDelta::seconds(3600));
        assert_eq!(send(&state).await, 0);
        let refused = call(app, &state, Method::POST, &format!("{HOOKS}/{id}/test"), "acme", w.admin_secret(), None).await;
        assert_eq!(refused.status, 409);
        assert_eq!(receiver.got().len(), 4);

        // Re-enabled and answering: delivered, and the failure count starts afresh.
        receiver.answer(200);
        call(app, &state, Method::PATCH, &format!("{HOOKS}/{id}"), "acme", w.admin_secret(), Some(json!({"enabled": true}))).await;
        call(app, &state, Method::POST, &format!("{HOOKS}/{id}/test"), "acme", w.admin_secret(), None).await;
        assert_eq!(send(&state).await, 1);
        let log = deliveries(app, &state, &w, &id).await;
        assert_eq!(log[0]["status_code"], json!(200));
        assert_eq!(log[0]["error"], Value::Null);
        assert_eq!(log[0]["next_attempt_at"], Value::Null);
    }

    async fn two_instances_make_each_attempt_once(app: &TestApp) {
        let w = World::new(app);
        let receiver = Receiver::start();
        let one = allowing(app, |_| {});
        let two = allowing(app, |_| {});
        register(app, &one, &w, &receiver.url(), json!(["key.created"])).await;
        for _ in 0..12 {
            app.key(&w.acme, &w.alice, &[Scope::PublicApi]);
        }
        let client = Client::new(true).unwrap();
        let (a, b) = (one.clone().into_inner(), two.clone().into_inner());
        let mut made = 0;
        for _ in 0..5 {
            let (x, y) = futures_util::future::join(a.send_webhooks(&client), b.send_webhooks(&client)).await;
            made += x.unwrap() + y.unwrap();
        }
        let got = receiver.got();
        let mut ids: Vec<&str> = got.iter().map(|g| g.headers["webhook-id"].as_str()).collect();
        assert_eq!(made, 12);
        assert_eq!(ids.len(), 12);
        // In the order of the changes (UUIDv7 ids are in order of creation).
        let in_order = ids.clone();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), 12, "an event was sent twice");
        assert_eq!(in_order, ids, "out of order");
    }

    async fn a_rotated_secret_signs_beside_the_new_one_for_a_day(app: &TestApp) {
        let w = World::new(app);
        let receiver = Receiver::start();
        let state = allowing(app, |_| {});
        let (id, old) = register(app, &state, &w, &receiver.url(), json!(["key.created"])).await;
        let rotated = call(app, &state, Method::POST, &format!("{HOOKS}/{id}/rotate-secret"), "acme", w.admin_secret(), None).await;
        assert_eq!(rotated.status, 200, "{}", rotated.text);
        let new = rotated.body["secret"].as_str().unwrap().to_owned();
        assert_ne!(new, old);
        assert_eq!(rotated.body["id"], json!(id));
        call(app, &state, Method::POST, &format!("{HOOKS}/{id}/test"), "acme", w.admin_secret(), None).await;
        assert_eq!(send(&state).await, 1);
        let got = receiver.got();
        assert_eq!(got[0].headers["webhook-signature"].split(' ').count(), 2);
        assert!(signed_by(&got[0], &old) && signed_by(&got[0], &new));
        app.clock.advance(TimeDelta::hours(24) + TimeDelta::seconds(1));
        call(app, &state, Method::POST, &format!("{HOOKS}/{id}/test"), "acme", w.admin_secret(), None).await;
        assert_eq!(send(&state).await, 1);
        let got = receiver.got();
        assert_eq!(got[1].headers["webhook-signature"].split(' ').count(), 1);
        assert!(signed_by(&got[1], &new) && !signed_by(&got[1], &old));
    }

    async fn secrets_are_sealed_with_the_operators_key(app: &TestApp) {
        use diesel::prelude::*;
        use keyward::schema::webhook_endpoints::dsl;
        let w = World::new(app);
        let receiver = Receiver::start();
        let state = allowing(app, |s| s.webhook_key = STANDARD.encode([9u8; 32]));
        let (id, secret) = register(app, &state, &w, &receiver.url(), json!(["*"])).await;
        let stored: String = dsl::webhook_endpoints.filter(dsl::id.eq(&id)).select(dsl::secret).first(&mut *app.conn()).unwrap();
        let raw = STANDARD.encode(STANDARD.decode(secret.strip_prefix("whsec_").unwrap()).unwrap());
        assert!(stored.starts_with("sealed1:") && !stored.contains(&raw), "{stored}");
        call(app, &state, Method::POST, &format!("{HOOKS}/{id}/test"), "acme", w.admin_secret(), None).await;
        assert_eq!(send(&state).await, 1);
        assert!(signed_by(&receiver.got()[0], &secret));
        // Without the key the secret cannot be read: the attempt fails and says so.
        let keyless = allowing(app, |_| {});
        call(app, &keyless, Method::POST, &format!("{HOOKS}/{id}/test"), "acme", w.admin_secret(), None).await;
        assert_eq!(send(&keyless).await, 1);
        assert_eq!(receiver.got().len(), 1);
        let log = deliveries(app, &keyless, &w, &id).await;
        assert_eq!(log[0]["error"], json!("the webhook secret is sealed and no webhook_key is configured"));
    }

    async fn deleted_or_disabled_endpoints_get_nothing_more(app: &TestApp) {
        let w = World::new(app);
        let receiver = Receiver::start();
        let state = allowing(app, |_| {});
        let (gone, _) = register(app, &state, &w, &receiver.url(), json!(["key.created"])).await;
        let (off, _) = register(app, &state, &w, &receiver.url(), json!(["key.created"])).await;
        app.key(&w.acme, &w.alice, &[Scope::PublicApi]);
        call(app, &state, Method::DELETE, &format!("{HOOKS}/{gone}"), "acme", w.admin_secret(), None).await;
        call(app, &state, Method::PATCH, &format!("{HOOKS}/{off}"), "acme", w.admin_secret(), Some(json!({"enabled": false}))).await;
        assert_eq!(send(&state).await, 0);
        // Re-enabling does not bring back what was dropped; new events flow.
        call(app, &state, Method::PATCH, &format!("{HOOKS}/{off}"), "acme", w.admin_secret(), Some(json!({"enabled": true}))).await;
        assert_eq!(send(&state).await, 0);
        assert!(receiver.got().is_empty());
        app.key(&w.acme, &w.alice, &[Scope::PublicApi]);
        assert_eq!(send(&state).await, 1);
    }

    async fn credits_low_is_sent_once_per_period(app: &TestApp) {
        let w = World::new(app);
        let receiver = Receiver::start();
        let state = allowing(app, |_| {});
        register(app, &state, &w, &receiver.url(), json!(["key.credits_low"])).await;
        let body = json!({"name": "metered", "user_id": w.alice.id,
            "expiration_date": (today() + chrono::Days::new(10)).to_string(),
            "credits": {"remaining": 20, "refill": {"interval": "daily", "amount": 20}}});
        let made = call(app, &state, Method::POST, "/v1/user-api-keys", "acme", w.admin_secret(), Some(body)).await;
        assert_eq!(made.status, 201, "{}", made.text);
        let (id, secret) = (made.body["id"].as_str().unwrap().to_owned(), made.body["key"].as_str().unwrap().to_owned());
        let verify = |cost: u32| {
            let (state, secret) = (state.clone(), secret.clone());
            async move {
                let req = actix_web::test::TestRequest::get().uri(&format!("/v1/auth?cost={cost}"))
                    .insert_header(("tenant", "acme")).insert_header(("x-key", secret.as_str()));
                app.send_to(state, req).await
            }
        };
        // 20 -> 3: above a tenth; 3 -> 2: at a tenth, one notice; then no more.
        assert_eq!(verify(17).await.status, 200);
        assert_eq!(send(&state).await, 0);
        assert_eq!(verify(1).await.body["credits"]["key"], 2);
        assert_eq!(verify(2).await.body["credits"]["key"], 0);
        assert_eq!(send(&state).await, 1);
        // The next day's refill starts a new period: one more notice when it runs low.
        app.clock.advance(TimeDelta::days(1));
        assert_eq!(verify(19).await.body["credits"]["key"], 1);
        assert_eq!(verify(1).await.status, 200);
        assert_eq!(send(&state).await, 1);
        let got: Vec<Value> = receiver.got().iter().map(Received::json).collect();
        assert_eq!(got.len(), 2);
        for g in &got {
            assert_eq!(g["type"], "key.credits_low");
            assert_eq!(g["data"]["scope"], "key");
            assert_eq!(g["data"]["target_id"], id.as_str());
            assert_eq!(g["data"]["user_id"], w.alice.id.as_str());
            assert_eq!(g["data"]["base"], 20);
        }
        assert_eq!(got[0]["data"]["remaining"], 2);
        assert_eq!(got[1]["data"]["remaining"], 1);
    }

    async fn expiry_notices_are_recorded_once(app: &TestApp) {
        let w = World::new(app);
        let receiver = Receiver::start();
        let state = allowing(app, |_| {});
        let other = allowing(app, |_| {});
        register(app, &state, &w, &receiver.url(), json!(["key.expiring", "key.expired"])).await;
        // Expires at 2026-06-26T00:00Z: 10.5 days ahead.
        let (key, _) = app.key_until(&w.acme, &w.alice, &[Scope::PublicApi], today() + chrono::Days::new(10));
        // Already inside the 1-day window: one notice (1 day), not two.
        app.clock.advance(TimeDelta::hours(1));
        let (soon, _) = app.key_until(&w.acme, &w.bob, &[Scope::PublicApi], today());
        // A revoked key gets nothing.
        let (revoked, _) = app.key_until(&w.acme, &w.bob, &[Scope::PublicApi], today() + chrono::Days::new(2));
        let gone = app.delete(&format!("/v1/user-api-keys/{}", revoked.id), "acme", w.admin_secret()).await;
        assert_eq!(gone.status, 200);
        let sweep = |s: &web::Data<AppState>| {
            let s = s.clone().into_inner();
            async move { s.sweep_expiry().await.unwrap() }
        };
        assert_eq!(sweep(&state).await, 1);
        assert_eq!(sweep(&other).await, 0);
        app.clock.advance(TimeDelta::days(3) + TimeDelta::hours(12)); // key: 6.96 days left
        assert_eq!(sweep(&state).await + sweep(&other).await, 2, "soon expired; key entered 7 days");
        assert_eq!(sweep(&state).await + sweep(&other).await, 0);
        app.clock.advance(TimeDelta::days(6)); // key: 0.96 days left
        assert_eq!(sweep(&other).await, 1);
        assert_eq!(sweep(&state).await, 0);
        app.clock.advance(TimeDelta::days(1));
        assert_eq!(sweep(&state).await, 1);
        assert_eq!(sweep(&state).await + sweep(&other).await, 0);
        assert_eq!(send(&state).await, 5);
        let got: Vec<Value> = receiver.got().iter().map(Received::json).collect();
        let seen: Vec<(String, String, Value)> = got.iter().map(|g| (
            g["type"].as_str().unwrap().to_owned(),
            g["data"]["target_id"].as_str().unwrap().to_owned(),
            g["data"]["days"].clone(),
        )).collect();
        // In the order they were recorded: at 06-19, the sweep records the
        // expiring notices before the expired ones.
        assert_eq!(seen, [
            ("key.expiring".into(), soon.id.clone(), json!(1)),
            ("key.expiring".into(), key.id.clone(), json!(7)),
            ("key.expired".into(), soon.id.clone(), Value::Null),
            ("key.expiring".into(), key.id.clone(), json!(1)),
            ("key.expired".into(), key.id.clone(), Value::Null),
        ]);
        assert_eq!(got[1]["data"]["key"]["id"], json!(key.id));
        assert_eq!(got[1]["data"]["expires_at"], json!("2026-06-26T00:00:00Z"));
    }

    async fn the_real_binary_delivers_after_kill_9(app: &TestApp) {
        let Some(python) = python_with_standardwebhooks() else { return };
        let w = World::new(app);
        let dir = tempfile::tempdir().unwrap();
        let secrets = dir.path().join("secrets");
        let out = dir.path().join("received.jsonl");
        std::fs::write(&secrets, "").unwrap();
        let receiver_port = free_port();
        let url = format!("http://127.0.0.1:{receiver_port}/hook");
        // The binary runs on the wall clock: a key that works today.
        let real_today = chrono::Utc::now().date_naive();
        let admin = app.key_until(&w.acme, &w.admin, &Scope::ALL, real_today + chrono::Days::new(30)).1;

        // The receiver is down: the first attempt fails and is retried.
        let mut server = Instance::start(app, dir.path(), WEBHOOK_BINARY_ENV);
        let (status, created) = http_json(server.port, "POST", HOOKS, &admin, &json!({"url": url, "events": ["*"]}));
        assert_eq!(status, 201, "{created}");
        let id = created["id"].as_str().unwrap().to_owned();
        std::fs::write(&secrets, format!("{}\n", created["secret"].as_str().unwrap())).unwrap();
        let (status, key) = http_json(server.port, "POST", "/v1/user-api-keys", &admin,
            &json!({"name": "made before the crash", "user_id": w.alice.id, "expiration_date": "2027-01-01"}));
        assert_eq!(status, 201, "{key}");
        server.kill_9();

        let _receiver = Python::start(&python, receiver_port, &secrets, &out);
        let server = Instance::start(app, dir.path(), WEBHOOK_BINARY_ENV);
        let delivered = wait_for(&out, |r| r["type"] == json!("key.created") && r["body"]["data"]["target_id"] == key["id"]);
        assert_eq!(delivered["verified_by"], json!([0]), "{delivered}");
        assert_eq!(delivered["content_type"], json!("application/json"));

        // A rotated secret: both signatures verify, each with its own secret.
        let (status, rotated) = http_json(server.port, "POST", &format!("{HOOKS}/{id}/rotate-secret"), &admin, &json!({}));
        assert_eq!(status, 200, "{rotated}");
        std::fs::write(&secrets, format!("{}\n{}\n", created["secret"].as_str().unwrap(), rotated["secret"].as_str().unwrap())).unwrap();
        let (status, test) = http_json(server.port, "POST", &format!("{HOOKS}/{id}/test"), &admin, &json!({}));
        assert_eq!(status, 202, "{test}");
        let delivered = wait_for(&out, |r| r["id"] == test["event_id"]);
        assert_eq!(delivered["signatures"], json!(2));
        assert_eq!(delivered["verified_by"], json!([0, 1]), "{delivered}");
        assert_eq!(delivered["type"], json!("webhook.test"));
    }

    async fn the_resolver_refuses_names_of_private_addresses(_app: &TestApp) {
        let refused = resolve_public("localhost", false).await.unwrap_err();
        assert_eq!(refused.to_string(), "refused: the address is not public");
        assert!(!resolve_public("localhost", true).await.unwrap().is_empty());
        // Where the connection is made: a name and a literal address.
        let receiver = Receiver::start();
        let strict = Client::new(false).unwrap();
        let request = |url: String| Request { url, body: "{}".into(), id: "x".into(), timestamp: 1, signature: "v1,x".into() };
        let by_name = strict.send(request(format!("http://localhost:{}/hook", receiver.port))).await;
        assert!(matches!(&by_name, Outcome::Failed(why) if why.contains("refused: the address is not public")), "{by_name:?}");
        let literal = strict.send(request(receiver.url())).await;
        assert_eq!(literal, Outcome::Failed("refused: the address is not public".into()));
        assert!(receiver.got().is_empty());
        let allowed = Client::new(true).unwrap().send(request(format!("http://localhost:{}/hook", receiver.port))).await;
        assert_eq!(allowed, Outcome::Answered(204));
        // A redirect is not followed (it could lead anywhere, a private
        // address included), even where private addresses are allowed: the
        // answer is the 3xx, which is not delivered.
        let elsewhere = Receiver::start();
        for code in [301, 302, 307, 308] {
            receiver.redirect(code, &elsewhere.url());
            let moved = Client::new(true).unwrap().send(request(receiver.url())).await;
            assert_eq!(moved, Outcome::Answered(code));
            assert!(!keyward::webhooks::sender::delivered(&moved));
        }
        assert_eq!(receiver.got().len(), 5);
        assert!(elsewhere.got().is_empty(), "the redirect was followed");
    }

    async fn two_instances_make_each_retry_once(app: &TestApp) {
        let w = World::new(app);
        let receiver = Receiver::start();
        receiver.answer(503);
        let schedule = vec![10, 10, 10];
        let one = allowing(app, |s| s.webhook_retry_schedule = schedule.clone());
        let two = allowing(app, |s| s.webhook_retry_schedule = schedule.clone());
        let (id, _) = register(app, &one, &w, &receiver.url(), json!(["webhook.test"])).await;
        let mut events = Vec::new();
        for _ in 0..3 {
            let test = call(app, &one, Method::POST, &format!("{HOOKS}/{id}/test"), "acme", w.admin_secret(), None).await;
            assert_eq!(test.status, 202, "{}", test.text);
            events.push(test.body["event_id"].as_str().unwrap().to_owned());
        }
        let client = Client::new(true).unwrap();
        let (a, b) = (one.clone().into_inner(), two.clone().into_inner());
        let mut made = 0;
        // Both instances poll at once, again and again, while every retry
        // falls due (10 s ± 10 %), until the schedule is used up.
        for _ in 0..6 {
            for _ in 0..4 {
                let (x, y) = futures_util::future::join(a.send_webhooks(&client), b.send_webhooks(&client)).await;
                made += x.unwrap() + y.unwrap();
            }
            app.clock.advance(TimeDelta::seconds(12));
        }
        // Each event: the first attempt and 3 retries, each made once.
        assert_eq!(made, 12);
        assert_eq!(receiver.got().len(), 12);
        let log = deliveries(app, &one, &w, &id).await;
        let mut seen: Vec<(String, i64)> = log.iter()
            .map(|d| (d["event_id"].as_str().unwrap().to_owned(), d["attempt"].as_i64().unwrap()))
            .collect();
        seen.sort();
        let mut wanted: Vec<(String, i64)> = events.iter()
            .flat_map(|e| (1..=4).map(move |n| (e.clone(), n)))
            .collect();
        wanted.sort();
        assert_eq!(seen, wanted, "an attempt was made twice or not at all");
        // Given up: nothing more, whoever polls.
        assert!(log.iter().filter(|d| d["attempt"] == json!(4)).all(|d| d["next_attempt_at"].is_null()));
        app.clock.advance(TimeDelta::hours(1));
        assert_eq!(send(&one).await + send(&two).await, 0);
    }

    async fn the_delivery_log_is_pruned_after_the_retention(app: &TestApp) {
        use diesel::prelude::*;
        use keyward::schema::{webhook_attempts, webhook_deliveries, webhook_events};
        let w = World::new(app);
        let up = Receiver::start();
        let down = Receiver::start();
        down.answer(500);
        // Kept 2 days; a failed delivery is retried once, 3 days later: it
        // is still pending when the retention has passed.
        let configure = |s: &mut keyward::config::Settings| {
            s.webhook_retention_days = 2;
            s.webhook_retry_schedule = vec![3 * 24 * 3600];
        };
        let one = allowing(app, configure);
        let two = allowing(app, configure);
        let prune = |s: &web::Data<AppState>| {
            let s = s.clone().into_inner();
            async move { s.prune_webhooks().await.unwrap() }
        };
        let count = |app: &TestApp| {
            let mut conn = app.conn();
            (
                webhook_attempts::table.count().get_result::<i64>(&mut *conn).unwrap(),
                webhook_deliveries::table.count().get_result::<i64>(&mut *conn).unwrap(),
                webhook_events::table.count().get_result::<i64>(&mut *conn).unwrap(),
            )
        };
        let pruned = |attempts, deliveries, events| Some(keyward::webhooks::retention::Pruned { attempts, deliveries, events });
        let (to_up, _) = register(app, &one, &w, &up.url(), json!(["*"])).await;
        let (to_down, _) = register(app, &one, &w, &down.url(), json!(["*"])).await;
        let test = |id: String| {
            let (one, admin) = (one.clone(), w.admin_secret().to_owned());
            async move {
                let reply = call(app, &one, Method::POST, &format!("{HOOKS}/{id}/test"), "acme", &admin, None).await;
                assert_eq!(reply.status, 202, "{}", reply.text);
                reply.body["event_id"].as_str().unwrap().to_owned()
            }
        };
        // Day 0: one delivered, one failed and waiting for its retry.
        test(to_up.clone()).await;
        let waiting = test(to_down.clone()).await;
        assert_eq!(send(&one).await, 2);
        // Day 1: another delivered.
        app.clock.advance(TimeDelta::days(1));
        let recent = test(to_up.clone()).await;
        assert_eq!(send(&one).await, 1);
        assert_eq!(count(app), (3, 3, 3));
        assert_eq!(prune(&one).await, pruned(0, 0, 0), "nothing is 2 days old yet");

        // Day 2 and a second: day 0's delivered one goes with its attempt and
        // event; the pending one and its event stay (its attempt is log).
        app.clock.advance(TimeDelta::days(1) + TimeDelta::seconds(1));
        assert_eq!(prune(&one).await, pruned(2, 1, 1));
        assert_eq!(count(app), (1, 2, 2));
        let log = deliveries(app, &one, &w, &to_up).await;
        assert_eq!(log.iter().map(|d| d["event_id"].clone()).collect::<Vec<_>>(), [json!(recent)]);
        assert!(deliveries(app, &one, &w, &to_down).await.is_empty());
        // The pending delivery is still sent, body and all, and then given up.
        app.clock.advance(TimeDelta::days(1) + TimeDelta::hours(12));
        assert_eq!(send(&one).await, 1);
        let retried = down.got();
        assert_eq!(retried.len(), 2);
        assert_eq!(retried[1].headers["webhook-id"], waiting);
        assert_eq!(retried[1].body, retried[0].body);

        // Day 3.5, two instances at once: day 1's delivery and the given-up
        // one (recorded on day 0) go; the retry's attempt, 0 days old, stays.
        // One instance prunes, the other finds nothing left or skips.
        let (x, y) = futures_util::future::join(prune(&one), prune(&two)).await;
        let total = |p: Option<keyward::webhooks::retention::Pruned>| p.map_or(0, |p| p.total());
        assert_eq!(total(x) + total(y), 5, "{x:?} {y:?}");
        assert_eq!(count(app), (1, 0, 0));
        assert_eq!(prune(&two).await, pruned(0, 0, 0));
        let log = deliveries(app, &one, &w, &to_down).await;
        assert_eq!(log.len(), 1);
        assert_eq!((log[0]["event_id"].clone(), log[0]["attempt"].clone()), (json!(waiting), json!(2)));
        // The endpoints themselves are untouched.
        let listed = call(app, &one, Method::GET, HOOKS, "acme", w.admin_secret(), None).await;
        assert_eq!(listed.body["webhooks"].as_array().unwrap().len(), 2);

        // While one instance prunes, another skips at once. (PostgreSQL's job
        // lock; on SQLite the second would wait for the one writer, as the
        // pair above did.)
        if app.database_url.starts_with("postgres") {
            use keyward::webhooks::retention::prune as prune_with;
            let (now, keep) = (app.now(), Duration::from_secs(2 * 24 * 3600));
            let (mut holder, mut other) = (app.conn(), app.conn());
            keyward::db::write_transaction(&mut holder, |held| {
                assert_eq!(prune_with(held, now, keep)?, pruned(0, 0, 0));
                assert_eq!(prune_with(&mut other, now, keep)?, None, "pruned beside another instance");
                Ok(())
            })
            .unwrap();
            assert_eq!(prune_with(&mut other, now, keep).unwrap(), pruned(0, 0, 0), "the lock outlived its transaction");
        }
    }

    async fn the_binary_prunes_the_old_delivery_log_at_start(app: &TestApp) {
        use diesel::prelude::*;
        use keyward::schema::webhook_events;
        let w = World::new(app);
        let receiver = Receiver::start();
        let state = allowing(app, |_| {});
        // The binary runs on the wall clock: a key that works then, and at
        // the instants below.
        let real_now = chrono::Utc::now();
        let admin = app.key_until(&w.acme, &w.admin, &Scope::ALL, real_now.date_naive() + chrono::Days::new(30)).1;
        let as_admin = |method: Method, path: String| {
            let (state, admin) = (state.clone(), admin.clone());
            async move { call(app, &state, method, &path, "acme", &admin, None).await }
        };
        // A delivery made 91 days before the binary starts (it keeps 90 days
        // by default), and one made 89 days before.
        app.clock.set(real_now - TimeDelta::days(91));
        let created = call(app, &state, Method::POST, HOOKS, "acme", &admin,
            Some(json!({"url": receiver.url(), "events": ["*"]}))).await;
        assert_eq!(created.status, 201, "{}", created.text);
        let id = created.body["id"].as_str().unwrap().to_owned();
        as_admin(Method::POST, format!("{HOOKS}/{id}/test")).await;
        assert_eq!(send(&state).await, 1);
        app.clock.set(real_now - TimeDelta::days(89));
        let kept = as_admin(Method::POST, format!("{HOOKS}/{id}/test")).await;
        assert_eq!(send(&state).await, 1);
        let log = as_admin(Method::GET, format!("{HOOKS}/{id}/deliveries")).await;
        assert_eq!(log.body["deliveries"].as_array().unwrap().len(), 2, "{}", log.text);

        let dir = tempfile::tempdir().unwrap();
        let server = Instance::start(app, dir.path(), WEBHOOK_BINARY_ENV);
        let deadline = Instant::now() + Duration::from_secs(20);
        let log = loop {
            let (status, log) = http_json(server.port, "GET", &format!("{HOOKS}/{id}/deliveries"), &admin, &Value::Null);
            assert_eq!(status, 200, "{log}");
            if log["deliveries"].as_array().unwrap().len() < 2 {
                break log;
            }
            assert!(Instant::now() < deadline, "the binary did not prune the log: {log}");
            std::thread::sleep(Duration::from_millis(100));
        };
        assert_eq!(log["deliveries"].as_array().unwrap().len(), 1);
        assert_eq!(log["deliveries"][0]["event_id"], kept.body["event_id"]);
        let events: i64 = webhook_events::table.count().get_result(&mut *app.conn()).unwrap();
        assert_eq!(events, 1);
    }
}

/// A Python 3 with `standardwebhooks`; `None` (the test skipped) outside CI,
/// a failure in CI (`CI` set): `.ci/run` installs it.
fn python_with_standardwebhooks() -> Option<String> {
    for python in ["python3", "python"] {
        let ok = Command::new(python)
            .args(["-c", "import standardwebhooks"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            return Some(python.to_owned());
        }
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "CI: python3 with the standardwebhooks package is required (pip install standardwebhooks)"
    );
    eprintln!("skipped: no python3 with standardwebhooks (pip install standardwebhooks)");
    None
}

/// The Python receiver, killed when dropped.
struct Python(Child);

impl Python {
    fn start(python: &str, port: u16, secrets: &std::path::Path, out: &std::path::Path) -> Self {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/webhooks/receiver.py");
        let mut child = Command::new(python)
            .arg(script)
            .arg(port.to_string())
            .arg(secrets)
            .arg(out)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "ready");
        Self(child)
    }
}

impl Drop for Python {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A request to the binary as acme's `key`: (status, JSON body or Null).
fn http_json(port: u16, method: &str, path: &str, key: &str, body: &Value) -> (u16, Value) {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return (0, Value::Null);
    };
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let body = if body.is_null() {
        String::new()
    } else {
        body.to_string()
    };
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\ntenant: acme\r\nx-key: {key}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    if stream.write_all(request.as_bytes()).is_err() {
        return (0, Value::Null);
    }
    let mut response = String::new();
    if stream.read_to_string(&mut response).is_err() {
        return (0, Value::Null);
    }
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b)
        .unwrap_or_default();
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

/// The first record of the receiver's log that `wanted` accepts, waiting up to 30 s.
fn wait_for(out: &std::path::Path, wanted: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = std::fs::read_to_string(out).unwrap_or_default();
        if let Some(found) = text
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|r| wanted(r))
        {
            return found;
        }
        assert!(
            Instant::now() < deadline,
            "not delivered; the receiver got:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
