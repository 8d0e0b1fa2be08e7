//! Estuary's `/user` API (API.md section 5).

use actix_web::test::TestRequest;
use chrono::{DateTime, TimeDelta, Utc};
use serde_json::{json, Value};

use crate::both_backends;
use crate::common::*;
use keyward::keys::secret;
use keyward::keys::Scope;

const KEYS: &str = "/user/api-keys";

fn envelope(reply: &Reply, code: u16, reason: &str) {
    assert_eq!(reply.status.as_u16(), code, "{}", reply.text);
    assert_eq!(
        reply.header("content-type"),
        Some("application/json"),
        "{}",
        reply.text
    );
    assert_eq!(reply.body["error"]["code"], code, "{}", reply.text);
    assert_eq!(reply.body["error"]["reason"], reason, "{}", reply.text);
    assert!(reply.body["error"]["details"]
        .as_str()
        .is_some_and(|d| !d.is_empty()));
    assert_eq!(reply.body.as_object().unwrap().len(), 1);
}

fn bearer(path: &str, tenant: &str, key: &str) -> TestRequest {
    TestRequest::default()
        .uri(path)
        .insert_header(("tenant", tenant))
        .insert_header(("authorization", format!("Bearer {key}")))
}

async fn create(app: &TestApp, key: &str, query: &str) -> Reply {
    app.send(bearer(&format!("{KEYS}?{query}"), "acme", key).method(actix_web::http::Method::POST))
        .await
}

fn instant(value: &Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(value.as_str().unwrap())
        .unwrap()
        .with_timezone(&Utc)
}

both_backends! {
    async fn list_shows_own_keys_with_their_hash_never_the_secret(app: &TestApp) {
        let w = World::new(app);
        let (other, _) = app.key(&w.acme, &w.admin, &Scope::ALL);
        let reply = app.send(bearer(KEYS, "acme", w.admin_secret())).await;
        assert_eq!(reply.status, 200, "{}", reply.text);
        let (key, secret_text) = &w.admin_key;
        assert_eq!(reply.body, json!([
            {
                "label": key.name, "expiry": key.expires_at.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
                "tokenHash": secret::hash(secret_text), "token": "", "isSession": false,
                "id": key.id, "scopes": ["public_api", "user_key_management", "user_management"],
            },
            {
                "label": other.name, "expiry": other.expires_at.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
                "tokenHash": other.token_hash, "token": "", "isSession": false,
                "id": other.id, "scopes": ["public_api", "user_key_management", "user_management"],
            },
        ]));
        assert!(!reply.text.contains(secret_text.as_str()));
    }

    async fn create_with_defaults(app: &TestApp) {
        let w = World::new(app);
        let reply = create(app, &w.alice_key.1, "").await;
        assert_eq!(reply.status, 200, "{}", reply.text);
        let token = reply.body["token"].as_str().unwrap().to_owned();
        assert!(secret::well_formed(&token, "kw"));
        assert_eq!(reply.body["label"], "estuary key");
        assert_eq!(reply.body["tokenHash"], secret::hash(&token));
        assert_eq!(reply.body["isSession"], false);
        assert_eq!(reply.body["scopes"], json!(["public_api", "user_key_management"]));
        assert_eq!(instant(&reply.body["expiry"]), app.now() + TimeDelta::days(30));
        // The new token works, and the listing never shows it again.
        let listed = app.send(bearer(KEYS, "acme", &token)).await;
        assert_eq!(listed.status, 200);
        assert!(!listed.text.contains(&token));
        assert_eq!(listed.body.as_array().unwrap().len(), 2);
    }

    async fn create_with_expiry_perms_and_label(app: &TestApp) {
        let w = World::new(app);
        let reply = create(app, &w.alice_key.1, "expiry=300h&perms=upload&label=deploy-ci").await;
        assert_eq!(reply.status, 200, "{}", reply.text);
        assert_eq!(reply.body["label"], "deploy-ci");
        assert_eq!(reply.body["scopes"], json!(["public_api"]));
        assert_eq!(instant(&reply.body["expiry"]), app.now() + TimeDelta::hours(300));
        let max = create(app, &w.alice_key.1, "expiry=false").await;
        assert_eq!(instant(&max.body["expiry"]), app.now() + TimeDelta::days(365));
        // The same instants through Go's duration grammar.
        for (raw, expected) in [
            ("1h30m", TimeDelta::minutes(90)),
            ("1.5h", TimeDelta::minutes(90)),
            ("2h45m30.5s", TimeDelta::milliseconds(((2 * 60 + 45) * 60 + 30) * 1000 + 500)),
            ("90m", TimeDelta::minutes(90)),
            ("3600000ms", TimeDelta::hours(1)),
            ("3600000000us", TimeDelta::hours(1)),
            ("3600000000%C2%B5s", TimeDelta::hours(1)),
            ("8760h", TimeDelta::days(365)),
        ] {
            let reply = create(app, &w.alice_key.1, &format!("expiry={raw}")).await;
            assert_eq!(reply.status, 200, "{raw}: {}", reply.text);
            assert_eq!(instant(&reply.body["expiry"]), app.now() + expected, "{raw}");
        }
    }

    async fn bad_input_is_400_never_500(app: &TestApp) {
        let w = World::new(app);
        for query in [
            "expiry=0", "expiry=-5m", "expiry=10d", "expiry=abc", "expiry=1h%2030m", "expiry=300",
            "expiry=9223372036854775808ns", "expiry=8761h", "expiry=true",
            "perms=admin", "label=ab", &format!("label={}", "x".repeat(256)),
        ] {
            envelope(&create(app, &w.alice_key.1, query).await, 400, "ERR_INVALID_INPUT");
        }
        // A policy change made by another process (the CLI) is honoured within a second.
        keyward::tenants::set_max_key_lifetime(&mut app.conn(), "acme", 7, app.now()).unwrap();
        app.clock.advance(TimeDelta::seconds(1));
        envelope(&create(app, &w.alice_key.1, "expiry=169h").await, 400, "ERR_INVALID_INPUT");
        // The default shrinks to the tenant's maximum.
        let reply = create(app, &w.alice_key.1, "").await;
        assert_eq!(instant(&reply.body["expiry"]), app.now() + TimeDelta::days(7));
    }

    // The OpenAPI document declares `perms` as the enum `all | upload`: an empty
    // or padded value is not `all` (schemathesis flags a request outside the
    // document that is accepted). Absent is `all`.
    async fn perms_is_exactly_all_or_upload(app: &TestApp) {
        let w = World::new(app);
        for query in ["perms=", "perms=%20all", "perms=all%20", "perms=ALL", "perms=Upload", "perms=%09upload"] {
            envelope(&create(app, &w.alice_key.1, query).await, 400, "ERR_INVALID_INPUT");
        }
        for query in ["perms=all", "perms=upload", "label=no-perms"] {
            assert_eq!(create(app, &w.alice_key.1, query).await.status, 200, "{query}");
        }
    }

    async fn perms_never_exceed_the_calling_key(app: &TestApp) {
        let w = World::new(app);
        let (_, no_public) = app.key(&w.acme, &w.alice, &[Scope::UserKeyManagement]);
        let reply = create(app, &no_public, "perms=upload").await;
        envelope(&reply, 403, "ERR_NOT_AUTHORIZED");
        let all = create(app, &no_public, "perms=all").await;
        assert_eq!(all.body["scopes"], json!(["user_key_management"]));
    }

    async fn key_management_needs_the_scope(app: &TestApp) {
        let w = World::new(app);
        let (key, weak) = app.key(&w.acme, &w.alice, &[Scope::PublicApi]);
        envelope(&app.send(bearer(KEYS, "acme", &weak)).await, 403, "ERR_NOT_AUTHORIZED");
        envelope(&create(app, &weak, "").await, 403, "ERR_NOT_AUTHORIZED");
        let delete = bearer(&format!("{KEYS}/{}", key.id), "acme", &weak).method(actix_web::http::Method::DELETE);
        envelope(&app.send(delete).await, 403, "ERR_NOT_AUTHORIZED");
        // Stats and export need no particular scope.
        assert_eq!(app.send(bearer("/user/stats", "acme", &weak)).await.status, 200);
        assert_eq!(app.send(bearer("/user/export", "acme", &weak)).await.status, 200);
    }

    async fn revoke_by_id_secret_or_hash(app: &TestApp) {
        let w = World::new(app);
        for how in ["id", "secret", "hash"] {
            let (key, secret_text) = app.key(&w.acme, &w.alice, KEY_MANAGER);
            let named = match how {
                "id" => key.id.clone(),
                "secret" => secret_text.clone(),
                _ => secret::hash(&secret_text),
            };
            let req = bearer(&format!("{KEYS}/{named}"), "acme", &w.alice_key.1).method(actix_web::http::Method::DELETE);
            let reply = app.send(req).await;
            assert_eq!(reply.status, 200, "{how}: {}", reply.text);
            assert!(reply.text.is_empty(), "{how}");
            envelope(&app.send(bearer(KEYS, "acme", &secret_text)).await, 401, "ERR_INVALID_TOKEN");
            // Gone: a second revocation is a 404.
            let again = bearer(&format!("{KEYS}/{named}"), "acme", &w.alice_key.1).method(actix_web::http::Method::DELETE);
            envelope(&app.send(again).await, 404, "ERR_NOT_FOUND");
        }
    }

    async fn other_users_and_tenants_keys_are_unknown(app: &TestApp) {
        let w = World::new(app);
        let targets = [(&w.bob_key, "acme"), (&w.admin_key, "acme"), (&w.beta_key, "beta")];
        for ((key, secret_text), _) in targets {
            for named in [key.id.clone(), secret_text.clone(), secret::hash(secret_text)] {
                // Alice (and even the administrator, for someone else's key) cannot delete it.
                for caller in [&w.alice_key.1, w.admin_secret()] {
                    if caller == secret_text {
                        continue;
                    }
                    let req = bearer(&format!("{KEYS}/{named}"), "acme", caller).method(actix_web::http::Method::DELETE);
                    envelope(&app.send(req).await, 404, "ERR_NOT_FOUND");
                }
            }
        }
        for ((_, secret_text), tenant) in targets {
            assert_eq!(app.send(bearer(KEYS, tenant, secret_text)).await.status, 200);
        }
        let unknown = bearer(&format!("{KEYS}/{}", uuid::Uuid::now_v7()), "acme", &w.alice_key.1).method(actix_web::http::Method::DELETE);
        envelope(&app.send(unknown).await, 404, "ERR_NOT_FOUND");
    }

    async fn a_duration_key_expires_at_its_instant(app: &TestApp) {
        let w = World::new(app);
        // 12:00:04 + 11h59m56s = midnight exactly: the last valid instant is the day before.
        let reply = create(app, &w.alice_key.1, "expiry=11h59m56s").await;
        let token = reply.body["token"].as_str().unwrap().to_owned();
        let id = reply.body["id"].as_str().unwrap().to_owned();
        let v1 = app.get(&format!("/v1/user-api-keys/{id}"), "acme", &w.alice_key.1).await;
        assert_eq!(v1.body["expiration_date"], "2026-06-15");
        let later = create(app, &w.alice_key.1, "expiry=11h59m57s").await;
        let v1 = app.get(&format!("/v1/user-api-keys/{}", later.body["id"].as_str().unwrap()), "acme", &w.alice_key.1).await;
        assert_eq!(v1.body["expiration_date"], "2026-06-16");
        let expires = instant(&reply.body["expiry"]);
        app.clock.set(expires - TimeDelta::microseconds(1));
        assert_eq!(app.send(bearer(KEYS, "acme", &token)).await.status, 200);
        app.clock.set(expires);
        envelope(&app.send(bearer(KEYS, "acme", &token)).await, 401, "ERR_TOKEN_EXPIRED");
    }

    async fn stats_count_every_state(app: &TestApp) {
        let w = World::new(app);
        app.key_until(&w.acme, &w.alice, KEY_MANAGER, today());
        let (revoked, _) = app.key(&w.acme, &w.alice, KEY_MANAGER);
        app.delete(&format!("/v1/user-api-keys/{}", revoked.id), "acme", &w.alice_key.1).await;
        // The DELETE above used Alice's key; once written, stats show when.
        let used_at = app.now();
        app.state.clone().into_inner().flush_usage().await.unwrap();
        app.clock.advance(TimeDelta::days(1));
        let reply = app.send(bearer("/user/stats", "acme", &w.alice_key.1)).await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.body, json!({"totalKeys": 3, "activeKeys": 1, "expiredKeys": 1, "revokedKeys": 1,
            "lastKeyUsedAt": used_at.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
            // No verification of Alice's keys (usage analytics): zeros.
            "verificationsLast24h": {"valid": 0, "forbidden": 0, "rateLimited": 0, "usageExceeded": 0, "invalid": 0}}));
    }

    async fn export_holds_everything_but_secrets(app: &TestApp) {
        let w = World::new(app);
        let (revoked, revoked_secret) = app.key(&w.acme, &w.alice, KEY_MANAGER);
        app.delete(&format!("/v1/user-api-keys/{}", revoked.id), "acme", &w.alice_key.1).await;
        // Usage control is part of what is stored (API.md section 9).
        let limits = json!({"credits": {"remaining": 4}, "ratelimits": [{"name": "r", "limit": 9, "duration_ms": 1000}]});
        for path in [format!("/v1/user-api-keys/{}", w.alice_key.0.id), format!("/v1/users/{}", w.alice.id)] {
            let reply = app.call(actix_web::http::Method::PATCH, &path, "acme", w.admin_secret(), Some(limits.clone())).await;
            assert_eq!(reply.status, 200, "{}", reply.text);
        }
        let reply = app.send(bearer("/user/export", "acme", &w.alice_key.1)).await;
        assert_eq!(reply.status, 200, "{}", reply.text);
        let doc = &reply.body;
        assert_eq!(doc["user"]["id"], w.alice.id.as_str());
        assert_eq!(doc["user"]["email"], "alice@acme.test");
        assert_eq!(doc["user"]["roles"], json!(["Default users"]));
        assert_eq!(doc["user"]["active"], true);
        assert_eq!(doc["tenant"]["name"], "acme");
        let keys = doc["keys"].as_array().unwrap();
        assert_eq!(keys.len(), 2);
        assert_eq!(keys[0]["id"], w.alice_key.0.id.as_str());
        assert_eq!(keys[0]["state"], "active");
        assert_eq!(keys[0]["credits"], json!({"remaining": 4, "refill": null}));
        assert_eq!(keys[0]["ratelimits"], limits["ratelimits"]);
        assert_eq!(keys[0]["allowed_ips"], json!([]));
        assert_eq!(keys[1]["credits"], json!(null));
        assert_eq!(doc["user"]["credits"], json!({"remaining": 4, "refill": null}));
        assert_eq!(doc["user"]["ratelimits"], limits["ratelimits"]);
        assert_eq!(keys[1]["id"], revoked.id.as_str());
        assert_eq!(keys[1]["state"], "revoked");
        assert!(keys[1]["revoked_on"].is_string());
        for forbidden in [&w.alice_key.1, &revoked_secret, &secret::hash(&w.alice_key.1), &revoked.token_hash] {
            assert!(!reply.text.contains(forbidden.as_str()));
        }
        assert!(!reply.text.contains("bob@acme.test"));
        // The events that concern Alice: her key's creation (by the CLI) and
        // revocation (by her), and nothing of Bob's.
        let events = doc["audit_events"].as_array().unwrap();
        let actions: Vec<(&str, &str)> = events.iter().map(|e| (e["action"].as_str().unwrap(), e["targetId"].as_str().unwrap())).collect();
        assert!(actions.contains(&("key.created", revoked.id.as_str())), "{actions:?}");
        assert!(actions.contains(&("key.revoked", revoked.id.as_str())), "{actions:?}");
        let revocation = events.iter().find(|e| e["action"] == "key.revoked").unwrap();
        assert_eq!(revocation["actorUserId"], w.alice.id.as_str());
        assert_eq!(revocation["actorKeyId"], w.alice_key.0.id.as_str());
        assert!(!reply.text.contains(&w.bob.id), "{}", reply.text);
    }

    async fn authentication_errors_use_the_envelope(app: &TestApp) {
        let w = World::new(app);
        let no_tenant = TestRequest::get().uri(KEYS).insert_header(("authorization", format!("Bearer {}", w.alice_key.1)));
        envelope(&app.send(no_tenant).await, 401, "ERR_AUTH_MISSING");
        envelope(&app.send(bearer(KEYS, "nope", &w.alice_key.1)).await, 401, "ERR_INVALID_AUTH");
        envelope(&app.send(TestRequest::get().uri(KEYS).insert_header(("tenant", "acme"))).await, 401, "ERR_AUTH_MISSING");
        let basic = TestRequest::get().uri(KEYS).insert_header(("tenant", "acme")).insert_header(("authorization", "Basic abc"));
        envelope(&app.send(basic).await, 401, "ERR_INVALID_AUTH");
        let invalid = app.send(bearer(KEYS, "acme", "kw_nope")).await;
        assert_eq!(invalid.body, json!({"error": {"code": 401, "reason": "ERR_INVALID_TOKEN", "details": "api key does not exist"}}));
        envelope(&app.send(bearer(KEYS, "beta", &w.alice_key.1)).await, 401, "ERR_INVALID_TOKEN");
        let (_, expired) = app.key_until(&w.acme, &w.alice, KEY_MANAGER, today());
        app.clock.advance(TimeDelta::days(1));
        envelope(&app.send(bearer(KEYS, "acme", &expired)).await, 401, "ERR_TOKEN_EXPIRED");
        envelope(&app.send(bearer("/user/nothing-here", "acme", &w.alice_key.1)).await, 404, "ERR_NOT_FOUND");
        assert!(app.send(bearer("/user/nothing-here", "acme", "")).await.header("x-request-id").is_some());
    }
}
