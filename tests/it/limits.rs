//! Usage control (API.md section 9) through the App: the fields, who may set
//! them, and what `/v1/auth` does with them. Several instances and kills are
//! in `exactness`.

use std::net::SocketAddr;

use actix_web::http::Method;
use actix_web::test::TestRequest;
use serde_json::{json, Value};

use crate::both_backends;
use crate::common::*;

const KEYS: &str = "/v1/user-api-keys";

fn verify(query: &str, key: &str) -> TestRequest {
    TestRequest::get()
        .uri(&format!("/v1/auth{query}"))
        .insert_header(("tenant", "acme"))
        .insert_header(("x-key", key))
        .peer_addr(SocketAddr::new("192.0.2.7".parse().unwrap(), 40000))
}

/// A key of alice's made by the admin with `limits` (merged into the body).
async fn key_with(app: &TestApp, w: &World, limits: Value) -> (String, String) {
    let mut body = json!({"name": "limited", "user_id": w.alice.id,
        "expiration_date": (today() + chrono::Days::new(10)).to_string()});
    for (k, v) in limits.as_object().unwrap() {
        body[k] = v.clone();
    }
    let reply = app.post(KEYS, "acme", w.admin_secret(), body).await;
    assert_eq!(reply.status, 201, "{}", reply.text);
    (
        reply.body["id"].as_str().unwrap().to_owned(),
        reply.body["key"].as_str().unwrap().to_owned(),
    )
}

async fn patch(app: &TestApp, path: &str, key: &str, body: Value) -> Reply {
    app.call(Method::PATCH, path, "acme", key, Some(body)).await
}

both_backends! {
    async fn the_fields_are_answered_canonical_and_checked(app: &TestApp) {
        let w = World::new(app);
        let limits = json!({
            "ratelimits": [{"name": "per_minute", "limit": 3, "duration_ms": 60000}],
            "credits": {"remaining": 5, "refill": {"interval": "monthly", "amount": 100, "day": 3}},
            "allowed_ips": ["10.1.2.3/8", "192.0.2.7", "2001:db8::1/32"],
        });
        let (id, _) = key_with(app, &w, limits).await;
        let got = app.get(&format!("{KEYS}/{id}"), "acme", w.admin_secret()).await;
        assert_eq!(got.status, 200, "{}", got.text);
        assert_eq!(got.body["ratelimits"], json!([{"name": "per_minute", "limit": 3, "duration_ms": 60000}]));
        assert_eq!(got.body["credits"], json!({"remaining": 5,
            "refill": {"interval": "monthly", "amount": 100, "day": 3}}));
        assert_eq!(got.body["allowed_ips"], json!(["10.0.0.0/8", "192.0.2.7/32", "2001:db8::/32"]));
        // A daily refill has no day.
        let daily = patch(app, &format!("{KEYS}/{id}"), w.admin_secret(),
            json!({"credits": {"remaining": 1, "refill": {"interval": "daily", "amount": 2}}})).await;
        assert_eq!(daily.body["credits"], json!({"remaining": 1, "refill": {"interval": "daily", "amount": 2}}));
        // Each bad field is named.
        for (field, bad) in [
            ("ratelimits", json!([{"name": "UPPER", "limit": 1, "duration_ms": 1000}])),
            ("ratelimits", json!([{"name": "a", "limit": 1, "duration_ms": 999}])),
            ("ratelimits", json!({"name": "a"})),
            ("credits", json!({"remaining": -1})),
            ("credits", json!({"remaining": 1, "refill": {"interval": "daily", "amount": 1, "day": 2}})),
            ("credits", json!(5)),
            ("allowed_ips", json!(["300.1.1.1"])),
            ("allowed_ips", json!("10.0.0.0/8")),
        ] {
            let reply = patch(app, &format!("{KEYS}/{id}"), w.admin_secret(), json!({field: bad})).await;
            assert_eq!(reply.status, 400, "{field} {bad}: {}", reply.text);
            assert!(reply.body["errors"].get(field).is_some(), "{}", reply.text);
        }
        // Users carry ratelimits and credits.
        let user = app.post("/v1/users", "acme", w.admin_secret(), json!({"email": "l@acme.test",
            "ratelimits": [{"name": "a", "limit": 1, "duration_ms": 1000}], "credits": {"remaining": 7}})).await;
        assert_eq!(user.status, 201, "{}", user.text);
        assert_eq!(user.body["credits"], json!({"remaining": 7, "refill": null}));
        assert_eq!(user.body["ratelimits"][0]["name"], "a");
        let bad = app.post("/v1/users", "acme", w.admin_secret(), json!({"email": "m@acme.test", "credits": {"remaining": "x"}})).await;
        assert_eq!(bad.status, 400);
        assert!(bad.body["errors"].get("credits").is_some(), "{}", bad.text);
    }

    async fn only_administrators_set_them(app: &TestApp) {
        let w = World::new(app);
        let body = |extra: Value| {
            let mut body = json!({"name": "mine", "user_id": w.alice.id,
                "expiration_date": (today() + chrono::Days::new(10)).to_string()});
            for (k, v) in extra.as_object().unwrap() {
                body[k] = v.clone();
            }
            body
        };
        for extra in [
            json!({"ratelimits": [{"name": "a", "limit": 1, "duration_ms": 1000}]}),
            json!({"credits": {"remaining": 1}}),
            json!({"allowed_ips": ["10.0.0.0/8"]}),
        ] {
            let reply = app.post(KEYS, "acme", &w.alice_key.1, body(extra.clone())).await;
            assert_403(&reply, "Only Administrators may set ratelimits, credits or allowed_ips.");
        }
        // The defaults, sent, are not a change.
        let reply = app.post(KEYS, "acme", &w.alice_key.1,
            body(json!({"ratelimits": [], "credits": null, "allowed_ips": []}))).await;
        assert_eq!(reply.status, 201, "{}", reply.text);
        // On a key the admin limited, its owner may send the current values but not others.
        let (id, _) = key_with(app, &w, json!({"credits": {"remaining": 9}})).await;
        let same = patch(app, &format!("{KEYS}/{id}"), &w.alice_key.1,
            json!({"name": "renamed", "credits": {"remaining": 9, "refill": null}})).await;
        assert_eq!(same.status, 200, "{}", same.text);
        let more = patch(app, &format!("{KEYS}/{id}"), &w.alice_key.1, json!({"credits": {"remaining": 99}})).await;
        assert_403(&more, "Only Administrators may set ratelimits, credits or allowed_ips.");
        let audit = app.get("/v1/audit-events", "acme", w.admin_secret()).await;
        assert!(audit.text.contains("key.updated"), "{}", audit.text);
    }

    async fn a_rate_limit_admits_its_limit_then_answers_429(app: &TestApp) {
        let w = World::new(app);
        let (_, key) = key_with(app, &w, json!({"ratelimits": [
            {"name": "burst", "limit": 3, "duration_ms": 60000},
            {"name": "hourly", "limit": 100, "duration_ms": 3600000}]})).await;
        for left in [2, 1, 0] {
            let reply = app.send(verify("", &key)).await;
            assert_eq!(reply.status, 200, "{}", reply.text);
            assert_eq!(reply.body["ratelimits"][0], json!({"name": "burst", "scope": "key",
                "limit": 3, "remaining": left, "reset": "2026-06-15T12:01:00Z"}));
            assert_eq!(reply.body["ratelimits"][1]["remaining"], 97 + left);
            assert_eq!(reply.header("ratelimit-policy"), Some("\"burst\";q=3;w=60"));
            assert_eq!(reply.header("ratelimit"), Some(format!("\"burst\";r={left};t=56").as_str()));
        }
        let refused = app.send(verify("", &key)).await;
        assert_problem(&refused, 429, "https://tools.ietf.org/html/rfc6585#section-4",
            "Rate limit burst exceeded", None);
        assert_eq!(refused.header("retry-after"), Some("56"));
        assert_eq!(refused.header("ratelimit-policy"), Some("\"burst\";q=3;w=60"));
        assert_eq!(refused.header("ratelimit"), Some("\"burst\";r=0;t=56"));
        // The next window admits again.
        app.clock.advance(chrono::TimeDelta::seconds(60));
        let again = app.send(verify("", &key)).await;
        assert_eq!(again.status, 200, "{}", again.text);
        assert_eq!(again.body["ratelimits"][0]["remaining"], 2);
        // The refused one took nothing from the hourly limit: 3 admitted, then this one.
        assert_eq!(again.body["ratelimits"][1]["remaining"], 96);
    }

    async fn credits_are_spent_by_cost_and_never_below_zero(app: &TestApp) {
        let w = World::new(app);
        let (id, key) = key_with(app, &w, json!({"credits": {"remaining": 5}})).await;
        let reply = app.send(verify("?cost=2", &key)).await;
        assert_eq!(reply.status, 200, "{}", reply.text);
        assert_eq!(reply.body["credits"], json!({"key": 3, "user": null}));
        assert_eq!(reply.body["ratelimits"], json!([]));
        assert_eq!(reply.header("ratelimit"), None);
        assert_eq!(app.send(verify("?cost=3", &key)).await.body["credits"]["key"], 0);
        let refused = app.send(verify("?cost=1", &key)).await;
        assert_problem(&refused, 429, "https://tools.ietf.org/html/rfc6585#section-4",
            "Usage credits exhausted", None);
        // No refill: no Retry-After.
        assert_eq!(refused.header("retry-after"), None);
        let free = app.send(verify("?cost=0", &key)).await;
        assert_eq!(free.status, 200, "{}", free.text);
        assert_eq!(free.body["credits"]["key"], 0);
        let got = app.get(&format!("{KEYS}/{id}"), "acme", w.admin_secret()).await;
        assert_eq!(got.body["credits"]["remaining"], 0);
        // Set anew by an administrator: spendable again.
        patch(app, &format!("{KEYS}/{id}"), w.admin_secret(), json!({"credits": {"remaining": 1}})).await;
        assert_eq!(app.send(verify("", &key)).await.status, 200);
    }

    async fn a_refused_verification_holds_nothing_a_read_right_after_would_see(app: &TestApp) {
        let w = World::new(app);
        let (id, key) = key_with(app, &w, json!({
            "ratelimits": [{"name": "burst", "limit": 1, "duration_ms": 60000}],
            "credits": {"remaining": 10}})).await;
        assert_eq!(app.send(verify("", &key)).await.status, 200);
        for _ in 0..3 {
            // Refused by the window after the credits were reserved for it:
            // they go back at once, not when the lease idles.
            let refused = app.send(verify("?cost=2", &key)).await;
            assert_eq!(refused.status, 429, "{}", refused.text);
            let got = app.get(&format!("{KEYS}/{id}"), "acme", w.admin_secret()).await;
            assert_eq!(got.body["credits"]["remaining"], 9, "{}", got.text);
        }
    }

    async fn a_monthly_refill_comes_on_its_day_and_retry_after_says_when(app: &TestApp) {
        let w = World::new(app);
        // Noon on 2026-06-15; refills on the 16th of each month.
        let (_, key) = key_with(app, &w, json!({"credits": {"remaining": 1,
            "refill": {"interval": "monthly", "amount": 4, "day": 16}}})).await;
        assert_eq!(app.send(verify("", &key)).await.status, 200);
        let refused = app.send(verify("", &key)).await;
        assert_eq!(refused.status, 429);
        // Until 2026-06-16T00:00:00Z: 12 hours less the seconds World took.
        let wait: u64 = refused.header("retry-after").unwrap().parse().unwrap();
        assert!((43_100..=43_200).contains(&wait), "{wait}");
        app.clock.advance(chrono::TimeDelta::seconds(wait as i64));
        let refilled = app.send(verify("", &key)).await;
        assert_eq!(refilled.status, 200, "{}", refilled.text);
        assert_eq!(refilled.body["credits"]["key"], 3);
    }

    async fn user_limits_are_shared_by_all_the_users_keys(app: &TestApp) {
        let w = World::new(app);
        let user = patch(app, &format!("/v1/users/{}", w.alice.id), w.admin_secret(),
            json!({"credits": {"remaining": 3}, "ratelimits": [{"name": "u", "limit": 10, "duration_ms": 60000}]})).await;
        assert_eq!(user.status, 200, "{}", user.text);
        let (_, first) = key_with(app, &w, json!({})).await;
        let (_, second) = key_with(app, &w, json!({"credits": {"remaining": 100}})).await;
        let a = app.send(verify("", &first)).await;
        assert_eq!(a.body["credits"], json!({"key": null, "user": 2}));
        assert_eq!(a.body["ratelimits"][0]["scope"], "user");
        let b = app.send(verify("?cost=2", &second)).await;
        assert_eq!(b.body["credits"], json!({"key": 98, "user": 0}));
        // The user's balance ran out: all or nothing, the key's stays at 98.
        let refused = app.send(verify("", &second)).await;
        assert_eq!(refused.status, 429);
        assert_eq!(refused.body["title"], "Usage credits exhausted");
        patch(app, &format!("/v1/users/{}", w.alice.id), w.admin_secret(), json!({"credits": null})).await;
        let after = app.send(verify("?cost=0", &second)).await;
        assert_eq!(after.body["credits"], json!({"key": 98, "user": null}));
        assert_eq!(after.body["ratelimits"][0]["remaining"], 7);
    }

    async fn allowed_ips_guard_verification_and_the_api(app: &TestApp) {
        let w = World::new(app);
        let (id, key) = key_with(app, &w, json!({"allowed_ips": ["10.0.0.0/8"]})).await;
        let refused = app.send(verify("", &key)).await;
        assert_403(&refused, "Key not allowed from this address");
        // The scope check comes first.
        let scope = app.send(verify("?scope=user_management", &key)).await;
        assert_403(&scope, "The calling key lacks the user_management scope");
        let api = app.send(TestRequest::get().uri(&format!("{KEYS}?UserId={}", w.alice.id))
            .insert_header(("tenant", "acme")).insert_header(("x-key", key.as_str()))
            .peer_addr(SocketAddr::new("192.0.2.7".parse().unwrap(), 40000))).await;
        assert_403(&api, "Key not allowed from this address");
        let inside = app.send(TestRequest::get().uri("/v1/auth")
            .insert_header(("tenant", "acme")).insert_header(("x-key", key.as_str()))
            .peer_addr(SocketAddr::new("10.9.8.7".parse().unwrap(), 40000))).await;
        assert_eq!(inside.status, 200, "{}", inside.text);
        // Widened by an administrator: honoured at once.
        patch(app, &format!("{KEYS}/{id}"), w.admin_secret(), json!({"allowed_ips": []})).await;
        assert_eq!(app.send(verify("", &key)).await.status, 200);
    }

    async fn cost_is_an_integer_from_0_to_1000(app: &TestApp) {
        let w = World::new(app);
        for bad in ["?cost=-1", "?cost=1001", "?cost=abc", "?cost=1.5", "?cost=", "?cost=1&cost=1", "?cost=+1"] {
            let reply = app.send(verify(bad, &w.alice_key.1)).await;
            assert_400(&reply, "cost", "cost must be an integer from 0 to 1000.");
        }
        for good in ["?cost=0", "?cost=1000", "?COST=7"] {
            assert_eq!(app.send(verify(good, &w.alice_key.1)).await.status, 200, "{good}");
        }
    }

    async fn rotation_moves_the_balance_and_the_old_key_spends_from_it(app: &TestApp) {
        let w = World::new(app);
        let (id, old) = key_with(app, &w, json!({"credits": {"remaining": 10},
            "ratelimits": [{"name": "r", "limit": 50, "duration_ms": 60000}]})).await;
        assert_eq!(app.send(verify("?cost=3", &old)).await.body["credits"]["key"], 7);
        let rotated = app.post(&format!("{KEYS}/{id}/rotate"), "acme", w.admin_secret(),
            json!({"grace_seconds": 600})).await;
        assert_eq!(rotated.status, 201, "{}", rotated.text);
        assert_eq!(rotated.body["credits"], json!({"remaining": 7, "refill": null}));
        assert_eq!(rotated.body["ratelimits"][0]["name"], "r");
        let new = rotated.body["key"].as_str().unwrap().to_owned();
        assert_eq!(app.send(verify("?cost=2", &new)).await.body["credits"]["key"], 5);
        assert_eq!(app.send(verify("?cost=5", &old)).await.body["credits"]["key"], 0);
        assert_eq!(app.send(verify("", &new)).await.status, 429);
    }
}
