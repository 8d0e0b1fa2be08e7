//! Verification, `/v1/auth` (API.md section 8), and trusted proxies.

use std::net::SocketAddr;

use actix_web::http::Method;
use actix_web::test::TestRequest;
use chrono::TimeDelta;
use serde_json::{json, Value};

use crate::both_backends;
use crate::common::*;
use keyward::keys::Scope;

const AUTH: &str = "/v1/auth";
const KEYS: &str = "/v1/user-api-keys";
const CHALLENGE: &str = "Bearer realm=\"keyward\"";
const T405: &str = "https://tools.ietf.org/html/rfc9110#section-15.5.6";
const T429: &str = "https://tools.ietf.org/html/rfc6585#section-4";

fn verify(uri: &str, tenant: &str, key: &str) -> TestRequest {
    let mut req = TestRequest::get().uri(uri);
    if !tenant.is_empty() {
        req = req.insert_header(("tenant", tenant));
    }
    if !key.is_empty() {
        req = req.insert_header(("x-key", key));
    }
    req
}

fn from(req: TestRequest, ip: &str) -> TestRequest {
    req.peer_addr(SocketAddr::new(ip.parse().unwrap(), 40000))
}

fn rfc3339(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Every answer of `/v1/auth`: never stored by a cache.
fn assert_no_store(reply: &Reply) {
    assert_eq!(
        reply.header("cache-control"),
        Some("no-store"),
        "{} {}",
        reply.status,
        reply.text
    );
}

/// A 401 of `/v1/auth`: section 2's body, the challenge, no-store.
fn assert_refused(reply: &Reply, field: &str, message: &str) {
    assert_401(reply, field, message);
    assert_eq!(reply.header("www-authenticate"), Some(CHALLENGE));
    assert_no_store(reply);
    assert!(reply.header("x-keyward-user-id").is_none());
}

fn assert_verified_as(reply: &Reply, user_id: &str) {
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.header("x-keyward-user-id"), Some(user_id));
    assert_no_store(reply);
}

/// The reply with its per-request id blanked, for byte-for-byte comparisons.
fn without_request_id(reply: &Reply) -> (u16, Vec<(String, String)>, String) {
    let id = reply.header("x-request-id").unwrap();
    let mut headers: Vec<(String, String)> = reply
        .headers
        .iter()
        .filter(|(name, _)| name.as_str() != "x-request-id")
        .map(|(name, value)| (name.to_string(), value.to_str().unwrap().to_owned()))
        .collect();
    headers.sort();
    (
        reply.status.as_u16(),
        headers,
        reply.text.replace(id, "<id>"),
    )
}

both_backends! {
    async fn a_good_key_is_answered_with_whose_it_is(app: &TestApp) {
        let w = World::new(app);
        let reply = app.send(verify(AUTH, "acme", &w.alice_key.1)).await;
        assert_verified_as(&reply, &w.alice.id);
        assert_eq!(reply.header("content-type"), Some("application/json"));
        assert_eq!(reply.body, json!({
            "tenant": "acme",
            "user_id": w.alice.id,
            "key_id": w.alice_key.0.id,
            "key_name": "key of alice@acme.test",
            "scopes": ["public_api", "user_key_management"],
            "roles": ["Default users"],
            "expires_at": rfc3339(w.alice_key.0.expires_at),
            "meta": {},
            "ratelimits": [],
            "credits": {"key": null, "user": null},
        }));
        assert_eq!(reply.body["expires_at"], "2026-07-16T00:00:00Z");
        assert_eq!(reply.header("x-keyward-tenant"), Some("acme"));
        assert_eq!(reply.header("x-keyward-key-id"), Some(w.alice_key.0.id.as_str()));
        assert_eq!(reply.header("x-keyward-scopes"), Some("public_api,user_key_management"));
        assert_eq!(reply.header("x-keyward-roles"), Some("Default users"));
        assert!(reply.header("www-authenticate").is_none());

        let admin = app.send(verify(AUTH, "acme", w.admin_secret())).await;
        assert_verified_as(&admin, &w.admin.id);
        assert_eq!(admin.header("x-keyward-scopes"), Some("public_api,user_key_management,user_management"));
        assert_eq!(admin.header("x-keyward-roles"), Some("Administrators"));
        // The key's metadata, as the last PATCH left it, on the very next verification.
        let meta = json!({"plan": "pro", "limits": {"rps": 10}});
        let patched = app
            .call(actix_web::http::Method::PATCH, &format!("/v1/user-api-keys/{}", w.alice_key.0.id), "acme", &w.alice_key.1, Some(json!({"meta": meta})))
            .await;
        assert_eq!(patched.status, 200, "{}", patched.text);
        let reply = app.send(verify(AUTH, "acme", &w.alice_key.1)).await;
        assert_eq!(reply.body["meta"], meta);
        let beta = app.send(verify(AUTH, "beta", &w.beta_key.1)).await;
        assert_verified_as(&beta, &w.beta_admin.id);
        assert_eq!(beta.header("x-keyward-tenant"), Some("beta"));
        assert_eq!(beta.body["tenant"], "beta");

        // The other key headers, and a pinned tenant, as everywhere (section 2).
        for req in [
            TestRequest::get().uri(AUTH).insert_header(("tenant", "acme")).insert_header(("x-api-key", w.alice_key.1.as_str())),
            TestRequest::get().uri(AUTH).insert_header(("tenant", "acme")).insert_header(("authorization", format!("Bearer {}", w.alice_key.1))),
        ] {
            assert_verified_as(&app.send(req).await, &w.alice.id);
        }
        let pinned = app.reconfigured(|s| s.tenant = "acme".into());
        assert_verified_as(&app.send_to(pinned, verify(AUTH, "", &w.alice_key.1)).await, &w.alice.id);
    }

    async fn head_answers_the_headers_without_a_body(app: &TestApp) {
        let w = World::new(app);
        let reply = app.send(verify(AUTH, "acme", &w.alice_key.1).method(Method::HEAD)).await;
        assert_verified_as(&reply, &w.alice.id);
        assert_eq!(reply.text, "");
        assert_eq!(reply.header("x-keyward-tenant"), Some("acme"));
        assert_eq!(reply.header("x-keyward-scopes"), Some("public_api,user_key_management"));
    }

    async fn any_method_and_any_path_below_it(app: &TestApp) {
        let w = World::new(app);
        let methods = [Method::GET, Method::HEAD, Method::POST, Method::PUT, Method::PATCH, Method::DELETE, Method::OPTIONS];
        for method in methods {
            for path in [AUTH, "/v1/auth/", "/v1/auth/orders/42", "/v1/auth/orders/42/?x=1", "/v1/auth/a%20b"] {
                let reply = app.send(verify(path, "acme", &w.alice_key.1).method(method.clone())).await;
                assert_verified_as(&reply, &w.alice.id);
                let bad = app.send(verify(path, "acme", "kw_nope").method(method.clone())).await;
                assert_eq!(bad.status, 401, "{method} {path}");
                assert_eq!(bad.header("www-authenticate"), Some(CHALLENGE));
                assert_no_store(&bad);
            }
        }
        for method in [Method::TRACE, Method::from_bytes(b"PURGE").unwrap()] {
            let reply = app.send(verify(AUTH, "acme", &w.alice_key.1).method(method)).await;
            assert_problem(&reply, 405, T405, "Method Not Allowed", None);
            assert_eq!(reply.header("allow"), Some("GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"));
            assert_no_store(&reply);
        }
        assert_404(&app.send(verify("/v1/authx", "acme", &w.alice_key.1)).await);

        // Verification is no write: a POST does not clear the authentication cache.
        let digest = keyward::keys::secret::SecretDigest::of(&w.alice_key.1);
        app.send(verify(AUTH, "acme", &w.alice_key.1).method(Method::POST)).await;
        assert!(app.state.auth_cache.get("acme", &digest, app.now(), |_| true).is_some());
    }

    async fn the_body_is_never_read(app: &TestApp) {
        let w = World::new(app);
        let huge = vec![b'x'; 1024 * 1024];
        let with_body = |body: Vec<u8>, content_type: &str| {
            verify(AUTH, "acme", &w.alice_key.1)
                .method(Method::POST)
                .insert_header(("content-type", content_type))
                .set_payload(body)
        };
        let reply = app.send(with_body(huge.clone(), "text/plain")).await;
        assert_verified_as(&reply, &w.alice.id);
        assert_verified_as(&app.send(with_body(b"{not json".to_vec(), "application/json")).await, &w.alice.id);
        // Declared larger than 64 KiB, with no body following: not a 413 either.
        let declared = verify("/v1/auth/upload", "acme", &w.alice_key.1)
            .method(Method::PUT)
            .insert_header(("content-length", "10000000"));
        assert_verified_as(&app.send(declared).await, &w.alice.id);
        // Elsewhere, the limit holds.
        let keys = TestRequest::post().uri(KEYS).insert_header(("tenant", "acme")).insert_header(("x-key", w.admin_secret()))
            .insert_header(("content-type", "application/json")).set_payload(huge);
        assert_eq!(app.send(keys).await.status, 413);
    }

    async fn scopes_are_required_default_public_api(app: &TestApp) {
        let w = World::new(app);
        let alice = &w.alice_key.1;
        let admin = w.admin_secret();
        let (_, no_public) = app.key(&w.acme, &w.bob, &[Scope::UserKeyManagement]);
        let lacks = |scope: &str| format!("The calling key lacks the {scope} scope");

        let reply = app.send(verify(AUTH, "acme", &no_public)).await;
        assert_403(&reply, &lacks("public_api"));
        assert_no_store(&reply);
        assert!(reply.header("www-authenticate").is_none());
        assert_verified_as(&app.send(verify("/v1/auth?scope=user_key_management", "acme", &no_public)).await, &w.bob.id);

        for query in ["scope=user_management", "scope=public_api,user_management", "scope=public_api&scope=user_management", "SCOPE=user_management"] {
            let reply = app.send(verify(&format!("{AUTH}?{query}"), "acme", alice)).await;
            assert_403(&reply, &lacks("user_management"));
            assert_no_store(&reply);
            assert_verified_as(&app.send(verify(&format!("{AUTH}?{query}"), "acme", admin)).await, &w.admin.id);
        }
        for query in ["scope=user_key_management", "scope=public_api,user_key_management", "scope=user_key_management&scope=public_api", "other=1"] {
            assert_verified_as(&app.send(verify(&format!("{AUTH}?{query}"), "acme", alice)).await, &w.alice.id);
        }
        // The first missing scope is named.
        let reply = app.send(verify("/v1/auth?scope=user_management,public_api", "acme", &no_public)).await;
        assert_403(&reply, &lacks("public_api"));

        // 401 first, then 400, then 403.
        let unknown = "Each scope must be one of: public_api, user_key_management, user_management.";
        for query in ["scope=admin", "scope=public_api,nope", "scope=public_api&scope=Public_Api", "scope=user_management,x", "scope=", "scope=public_api,", "scope=%20public_api"] {
            let reply = app.send(verify(&format!("{AUTH}?{query}"), "acme", alice)).await;
            assert_400(&reply, "scope", unknown);
            assert_no_store(&reply);
            assert!(reply.header("www-authenticate").is_none());
            assert_refused(&app.send(verify(&format!("{AUTH}?{query}"), "acme", "kw_nope")).await, "x-key", "Invalid API key");
        }
        // The scopes are the key's, not the ones asked for.
        let reply = app.send(verify("/v1/auth?scope=user_management", "acme", admin)).await;
        assert_eq!(reply.body["scopes"], json!(["public_api", "user_key_management", "user_management"]));
    }

    async fn refusals_are_section_2s(app: &TestApp) {
        let w = World::new(app);
        let alice = w.alice_key.1.as_str();
        assert_refused(&app.send(verify(AUTH, "", alice)).await, "tenant", "Tenant header missing or empty");
        assert_refused(&app.send(verify(AUTH, "nope", alice)).await, "tenant", "Unknown tenant specified");
        assert_refused(&app.send(verify(AUTH, "acme", "")).await, "x-key", "API key missing");
        let unknown = keyward::keys::secret::Secret::generate("kw");
        for key in ["garbage", &alice[..alice.len() - 1], unknown.expose()] {
            assert_refused(&app.send(verify(AUTH, "acme", key)).await, "x-key", "Invalid API key");
        }
        let disagree = verify(AUTH, "acme", alice).insert_header(("x-api-key", w.admin_secret()));
        assert_refused(&app.send(disagree).await, "x-key", "Invalid API key");
        let basic = TestRequest::get().uri(AUTH).insert_header(("tenant", "acme")).insert_header(("authorization", "Basic abc"));
        assert_refused(&app.send(basic).await, "x-key", "Invalid API key");

        app.set_user_active(&w.bob, false);
        assert_refused(&app.send(verify(AUTH, "acme", &w.bob_key.1)).await, "x-key", "Invalid API key");

        let (_, short) = app.key_until(&w.acme, &w.alice, &[Scope::PublicApi], today());
        assert_verified_as(&app.send(verify(AUTH, "acme", &short)).await, &w.alice.id);
        app.clock.advance(TimeDelta::hours(12));
        assert_refused(&app.send(verify(AUTH, "acme", &short)).await, "x-key", "API key expired");
    }

    async fn another_tenants_key_is_an_unknown_key(app: &TestApp) {
        let w = World::new(app);
        let unknown = keyward::keys::secret::Secret::generate("kw");
        let foreign = app.send(verify(AUTH, "acme", &w.beta_key.1)).await;
        let never_issued = app.send(verify(AUTH, "acme", unknown.expose())).await;
        assert_refused(&foreign, "x-key", "Invalid API key");
        assert_eq!(without_request_id(&foreign), without_request_id(&never_issued));
        let foreign = app.send(verify("/v1/auth?scope=user_management", "acme", &w.beta_key.1)).await;
        let never_issued = app.send(verify("/v1/auth?scope=user_management", "acme", unknown.expose())).await;
        assert_eq!(without_request_id(&foreign), without_request_id(&never_issued));
    }

    async fn a_revoked_key_is_refused_on_the_next_request(app: &TestApp) {
        let w = World::new(app);
        let alice = w.alice_key.1.as_str();
        assert_verified_as(&app.send(verify(AUTH, "acme", alice)).await, &w.alice.id);
        let revoked = app.delete(&format!("{KEYS}/{}", w.alice_key.0.id), "acme", w.admin_secret()).await;
        assert_eq!(revoked.status, 200, "{}", revoked.text);
        assert_refused(&app.send(verify(AUTH, "acme", alice)).await, "x-key", "Invalid API key");
    }

    async fn a_verification_records_last_use(app: &TestApp) {
        let w = World::new(app);
        let path = format!("{KEYS}/{}", w.bob_key.0.id);
        assert_eq!(app.get(&path, "acme", w.admin_secret()).await.body["last_used_on"], Value::Null);
        app.clock.advance(TimeDelta::minutes(5));
        let used_at = app.now();
        assert_verified_as(&app.send(verify(AUTH, "acme", &w.bob_key.1)).await, &w.bob.id);
        app.state.clone().into_inner().flush_usage().await.unwrap();
        assert_eq!(app.get(&path, "acme", w.admin_secret()).await.body["last_used_on"], rfc3339(used_at));
    }

    async fn throttled_clients_get_429_with_retry_after(app: &TestApp) {
        let w = World::new(app);
        let state = app.reconfigured(|s| s.auth_failures_per_minute = 2);
        for _ in 0..2 {
            let reply = app.send_to(state.clone(), from(verify(AUTH, "acme", "kw_guess"), "10.0.0.1")).await;
            assert_refused(&reply, "x-key", "Invalid API key");
        }
        let reply = app.send_to(state.clone(), from(verify(AUTH, "acme", &w.alice_key.1), "10.0.0.1")).await;
        assert_problem(&reply, 429, T429, "Too many failed authentications", None);
        assert_eq!(reply.header("retry-after"), Some("60"));
        assert_no_store(&reply);
        assert!(reply.header("www-authenticate").is_none());
        // 403s and 400s are no failed authentications.
        for query in ["scope=user_management", "scope=nope", "scope=user_management", "scope=nope"] {
            let reply = app.send_to(state.clone(), from(verify(&format!("{AUTH}?{query}"), "acme", &w.alice_key.1), "10.0.0.2")).await;
            assert!([400, 403].contains(&reply.status.as_u16()), "{}", reply.text);
        }
        assert_verified_as(&app.send_to(state.clone(), from(verify(AUTH, "acme", &w.alice_key.1), "10.0.0.2")).await, &w.alice.id);
    }

    async fn behind_a_trusted_proxy_each_forwarded_client_has_its_own_bucket(app: &TestApp) {
        let w = World::new(app);
        let state = app.reconfigured(|s| {
            s.auth_failures_per_minute = 2;
            s.trusted_proxies = vec!["127.0.0.0/8".parse().unwrap(), "fd00::/8".parse().unwrap()];
        });
        let via_proxy = |key: &str, xff: &str| from(verify(AUTH, "acme", key), "127.0.0.1").insert_header(("x-forwarded-for", xff.to_owned()));
        for i in 0..2 {
            // The client's own left-most entry changes nothing: the proxy appended the real one.
            let forged = format!("192.0.2.{i}, 203.0.113.7");
            assert_eq!(app.send_to(state.clone(), via_proxy("kw_guess", &forged)).await.status, 401);
        }
        let locked = app.send_to(state.clone(), via_proxy(&w.alice_key.1, "9.9.9.9, 203.0.113.7, 127.0.0.2")).await;
        assert_eq!(locked.status, 429, "{}", locked.text);
        // Another client behind the same proxy, and the proxy itself, still get through.
        assert_verified_as(&app.send_to(state.clone(), via_proxy(&w.alice_key.1, "203.0.113.8")).await, &w.alice.id);
        assert_verified_as(&app.send_to(state.clone(), from(verify(AUTH, "acme", &w.alice_key.1), "127.0.0.1")).await, &w.alice.id);
        let real_ip = from(verify(AUTH, "acme", &w.alice_key.1), "fd00::1").insert_header(("x-real-ip", "203.0.113.7"));
        assert_eq!(app.send_to(state.clone(), real_ip).await.status, 429, "X-Real-IP when there is no X-Forwarded-For");

        // The audit log names the forwarded client.
        let revoke = TestRequest::delete().uri(&format!("{KEYS}/{}", w.bob_key.0.id))
            .insert_header(("tenant", "acme")).insert_header(("x-key", w.admin_secret()))
            .insert_header(("x-forwarded-for", "198.51.100.23"));
        assert_eq!(app.send_to(state.clone(), from(revoke, "127.0.0.1")).await.status, 200);
        let events = app.get(&format!("/v1/audit-events?user_id={}", w.bob.id), "acme", w.admin_secret()).await;
        let revoked = events.body["events"].as_array().unwrap().iter().find(|e| e["action"] == "key.revoked").unwrap().clone();
        assert_eq!(revoked["ip"], "198.51.100.23", "{}", events.text);
    }

    async fn from_an_untrusted_peer_forwarding_headers_change_nothing(app: &TestApp) {
        let w = World::new(app);
        let state = app.reconfigured(|s| {
            s.auth_failures_per_minute = 2;
            s.trusted_proxies = vec!["127.0.0.0/8".parse().unwrap()];
        });
        let claiming = |key: &str, xff: &str| from(verify(AUTH, "acme", key), "198.51.100.1")
            .insert_header(("x-forwarded-for", xff.to_owned()))
            .insert_header(("x-real-ip", xff.to_owned()));
        assert_eq!(app.send_to(state.clone(), claiming("kw_guess", "203.0.113.1")).await.status, 401);
        assert_eq!(app.send_to(state.clone(), claiming("kw_guess", "203.0.113.2")).await.status, 401);
        let locked = app.send_to(state.clone(), claiming(&w.alice_key.1, "203.0.113.3")).await;
        assert_eq!(locked.status, 429, "{}", locked.text);
        // The addresses it claimed were never charged.
        let proxied = from(verify(AUTH, "acme", &w.alice_key.1), "127.0.0.1").insert_header(("x-forwarded-for", "203.0.113.1"));
        assert_verified_as(&app.send_to(state.clone(), proxied).await, &w.alice.id);

        let revoke = TestRequest::delete().uri(&format!("{KEYS}/{}", w.bob_key.0.id))
            .insert_header(("tenant", "acme")).insert_header(("x-key", w.admin_secret()))
            .insert_header(("x-forwarded-for", "203.0.113.99"));
        assert_eq!(app.send_to(state.clone(), from(revoke, "192.0.2.50")).await.status, 200);
        let events = app.get(&format!("/v1/audit-events?user_id={}", w.bob.id), "acme", w.admin_secret()).await;
        let revoked = events.body["events"].as_array().unwrap().iter().find(|e| e["action"] == "key.revoked").unwrap().clone();
        assert_eq!(revoked["ip"], "192.0.2.50", "{}", events.text);
    }
}
