//! `/v1/user-api-keys` (API.md section 4).

use chrono::{Days, TimeDelta};
use serde_json::{json, Value};

use crate::both_backends;
use crate::common::*;
use keyward::keys::Scope;

const LIST: &str = "/v1/user-api-keys";
const ID_INVALID: &str = "ID is either missing, incorrect, or does not exist in the database.";
const USER_ID_INVALID: &str = "User ID is empty or incorrect";
const NO_SCOPE: &str = "The calling key lacks the user_key_management scope";

fn ids(reply: &Reply) -> Vec<String> {
    reply
        .body
        .as_array()
        .unwrap_or_else(|| panic!("not an array: {}", reply.text))
        .iter()
        .map(|k| k["id"].as_str().unwrap().to_owned())
        .collect()
}

fn by_user(user_id: &str) -> String {
    format!("{LIST}?UserId={user_id}")
}

fn date(d: chrono::NaiveDate) -> String {
    d.format("%Y-%m-%d").to_string()
}

fn new_key_body(user_id: &str) -> Value {
    json!({"name": "NewKey", "user_id": user_id, "expiration_date": date(today() + Days::new(10)), "scopes": ["public_api"]})
}

both_backends! {
    async fn admin_lists_every_key_of_the_tenant_oldest_first(app: &TestApp) {
        let w = World::new(app);
        let reply = app.get(LIST, "acme", w.admin_secret()).await;
        assert_eq!(reply.status, 200, "{}", reply.text);
        assert_eq!(reply.header("content-type"), Some("application/json"));
        assert_eq!(ids(&reply), vec![w.admin_key.0.id.clone(), w.alice_key.0.id.clone(), w.bob_key.0.id.clone()]);
        // The key object, exactly.
        let alice = &reply.body[1];
        assert_eq!(alice, &json!({
            "id": w.alice_key.0.id,
            "user_id": w.alice.id,
            "name": "key of alice@acme.test",
            "expiration_date": date(today() + Days::new(30)),
            "created_on": w.alice_key.0.created_at.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
            "updated_on": null,
            "scopes": ["public_api", "user_key_management"],
            "last_used_on": null,
            "meta": {},
            "ratelimits": [],
            "credits": null,
            "allowed_ips": [],
        }));
    }

    async fn revoked_keys_are_not_listed_expired_ones_are(app: &TestApp) {
        let w = World::new(app);
        let (expiring, _) = app.key_until(&w.acme, &w.alice, KEY_MANAGER, today());
        let (revoked, _) = app.key(&w.acme, &w.alice, KEY_MANAGER);
        assert_eq!(app.delete(&format!("{LIST}/{}", revoked.id), "acme", w.admin_secret()).await.status, 200);
        app.clock.advance(TimeDelta::days(1));
        let listed = ids(&app.get(&by_user(&w.alice.id), "acme", w.admin_secret()).await);
        assert_eq!(listed, vec![w.alice_key.0.id.clone(), expiring.id]);
    }

    async fn only_administrators_list_every_key(app: &TestApp) {
        let w = World::new(app);
        assert_403(&app.get(LIST, "acme", &w.alice_key.1).await, "Only Administrators may list every key");
    }

    async fn a_user_lists_its_own_keys_only(app: &TestApp) {
        let w = World::new(app);
        let own = app.get(&by_user(&w.alice.id), "acme", &w.alice_key.1).await;
        assert_eq!(ids(&own), vec![w.alice_key.0.id.clone()]);
        // Another user's id, an unknown id, another tenant's user: all 403 for a non-admin.
        for other in [w.bob.id.clone(), uuid::Uuid::now_v7().to_string(), w.beta_admin.id.clone()] {
            assert_403(&app.get(&by_user(&other), "acme", &w.alice_key.1).await, "Only Administrators may list other users' keys");
        }
        // Parameter names are case-insensitive, as in ASP.NET.
        assert_eq!(ids(&app.get(&format!("{LIST}?userid={}", w.alice.id), "acme", &w.alice_key.1).await), vec![w.alice_key.0.id.clone()]);
    }

    async fn administrators_list_any_users_keys(app: &TestApp) {
        let w = World::new(app);
        let reply = app.get(&by_user(&w.bob.id), "acme", w.admin_secret()).await;
        assert_eq!(ids(&reply), vec![w.bob_key.0.id.clone()]);
    }

    async fn user_id_must_be_a_user_of_the_tenant(app: &TestApp) {
        let w = World::new(app);
        for bad in ["", "nope", "123", "0193a5a1-zzzz-7000-8000-000000000000"] {
            for key in [w.admin_secret(), &w.alice_key.1] {
                assert_400(&app.get(&by_user(bad), "acme", key).await, "UserId", USER_ID_INVALID);
            }
        }
        let unknown = app.get(&by_user(&uuid::Uuid::now_v7().to_string()), "acme", w.admin_secret()).await;
        assert_400(&unknown, "UserId", USER_ID_INVALID);
        let foreign = app.get(&by_user(&w.beta_admin.id), "acme", w.admin_secret()).await;
        assert_400(&foreign, "UserId", USER_ID_INVALID);
    }

    async fn key_management_needs_the_scope(app: &TestApp) {
        let w = World::new(app);
        let (weak_key, weak) = app.key(&w.acme, &w.admin, &[Scope::PublicApi]);
        let some_id = &w.alice_key.0.id;
        assert_403(&app.get(LIST, "acme", &weak).await, NO_SCOPE);
        assert_403(&app.get(&by_user(&w.admin.id), "acme", &weak).await, NO_SCOPE);
        assert_403(&app.post(LIST, "acme", &weak, new_key_body(&w.admin.id)).await, NO_SCOPE);
        assert_403(&app.get(&format!("{LIST}/{some_id}"), "acme", &weak).await, NO_SCOPE);
        assert_403(&app.get(&format!("{LIST}/{}", weak_key.id), "acme", &weak).await, NO_SCOPE);
        assert_403(&app.get(&format!("{LIST}/not-a-uuid"), "acme", &weak).await, NO_SCOPE);
        assert_403(&app.delete(&format!("{LIST}/{some_id}"), "acme", &weak).await, NO_SCOPE);
        assert_403(&app.delete(&format!("{LIST}/not-a-uuid"), "acme", &weak).await, NO_SCOPE);
        // Nothing was revoked: the weak key still authenticates (and is refused for lack of scope).
        assert_403(&app.get(LIST, "acme", &weak).await, NO_SCOPE);
        assert_eq!(app.get(&format!("{LIST}/{some_id}"), "acme", w.admin_secret()).await.status, 200);
    }

    async fn paging(app: &TestApp) {
        let w = World::new(app);
        let all = ids(&app.get(LIST, "acme", w.admin_secret()).await);
        assert_eq!(all.len(), 3);
        let first = ids(&app.get(&format!("{LIST}?take=2"), "acme", w.admin_secret()).await);
        assert_eq!(first, all[..2]);
        let rest = ids(&app.get(&format!("{LIST}?take=2&start_with={}", first[1]), "acme", w.admin_secret()).await);
        assert_eq!(rest, all[2..]);
        let after_last = ids(&app.get(&format!("{LIST}?start_with={}", all[2]), "acme", w.admin_secret()).await);
        assert!(after_last.is_empty());
        assert_eq!(ids(&app.get(&format!("{LIST}?take=1000"), "acme", w.admin_secret()).await), all);
        for take in ["0", "1001", "-1", "abc", "", "1.5"] {
            let reply = app.get(&format!("{LIST}?take={take}"), "acme", w.admin_secret()).await;
            assert_400(&reply, "take", "take must be an integer from 1 to 1000.");
        }
        for start in ["nope".to_owned(), uuid::Uuid::now_v7().to_string(), w.beta_key.0.id.clone()] {
            let reply = app.get(&format!("{LIST}?start_with={start}"), "acme", w.admin_secret()).await;
            assert_400(&reply, "start_with", "No key with this ID is in the listing.");
        }
        // A cursor from another user's listing is not in this one.
        let reply = app.get(&format!("{}&start_with={}", by_user(&w.alice.id), w.bob_key.0.id), "acme", w.admin_secret()).await;
        assert_400(&reply, "start_with", "No key with this ID is in the listing.");
    }

    async fn keys_created_in_the_same_instant_are_ordered_by_id(app: &TestApp) {
        let w = World::new(app);
        let mut made: Vec<String> = (0..4).map(|_| app.key(&w.acme, &w.bob, KEY_MANAGER).0.id).collect();
        made.insert(0, w.bob_key.0.id.clone());
        let mut expected = made.clone();
        expected[1..].sort();
        assert_eq!(ids(&app.get(&by_user(&w.bob.id), "acme", w.admin_secret()).await), expected);
    }

    async fn create_returns_the_key_and_its_secret_once(app: &TestApp) {
        let w = World::new(app);
        let reply = app.post(LIST, "acme", &w.alice_key.1, new_key_body(&w.alice.id)).await;
        assert_eq!(reply.status, 201, "{}", reply.text);
        let body = &reply.body;
        let secret = body["key"].as_str().unwrap().to_owned();
        assert!(keyward::keys::secret::well_formed(&secret, "kw"));
        let id = body["id"].as_str().unwrap();
        assert_eq!(body, &json!({
            "id": id,
            "user_id": w.alice.id,
            "name": "NewKey",
            "expiration_date": date(today() + Days::new(10)),
            "created_on": "2026-06-15T12:00:04Z",
            "updated_on": null,
            "scopes": ["public_api"],
            "last_used_on": null,
            "meta": {},
            "ratelimits": [],
            "credits": null,
            "allowed_ips": [],
            "key": secret,
        }));
        // The secret works, and is never shown again.
        let own = app.get(&by_user(&w.alice.id), "acme", &w.alice_key.1).await;
        assert!(!own.text.contains(&secret));
        assert_eq!(ids(&own).last().map(String::as_str), Some(id));
        let fetched = app.get(&format!("{LIST}/{id}"), "acme", &w.alice_key.1).await;
        assert!(fetched.body.get("key").is_none());
        // public_api only: it cannot manage keys, but it authenticates.
        assert_403(&app.get(&by_user(&w.alice.id), "acme", &secret).await, NO_SCOPE);
    }

    async fn create_defaults_scopes_and_ignores_unknown_fields(app: &TestApp) {
        let w = World::new(app);
        let body = json!({"name": "abc", "user_id": w.alice.id, "expiration_date": date(today()), "extra": [1, 2]});
        let reply = app.post(LIST, "acme", &w.alice_key.1, body).await;
        assert_eq!(reply.status, 201, "{}", reply.text);
        assert_eq!(reply.body["scopes"], json!(["public_api"]));
        assert_eq!(reply.body["expiration_date"], date(today()));
    }

    async fn create_for_others_is_for_administrators(app: &TestApp) {
        let w = World::new(app);
        let by_alice = app.post(LIST, "acme", &w.alice_key.1, new_key_body(&w.bob.id)).await;
        assert_403(&by_alice, "Only Administrators may create keys for other users");
        let by_admin = app.post(LIST, "acme", w.admin_secret(), new_key_body(&w.bob.id)).await;
        assert_eq!(by_admin.status, 201);
        assert_eq!(by_admin.body["user_id"], w.bob.id.as_str());
    }

    async fn a_key_cannot_grant_a_scope_it_lacks(app: &TestApp) {
        let w = World::new(app);
        let mut body = new_key_body(&w.alice.id);
        body["scopes"] = json!(["public_api", "user_management"]);
        assert_403(&app.post(LIST, "acme", &w.alice_key.1, body.clone()).await, "A key cannot grant a scope the calling key lacks");
        body["scopes"] = json!(["user_key_management"]);
        assert_eq!(app.post(LIST, "acme", &w.alice_key.1, body.clone()).await.status, 201);
        // An administrator's key without user_management cannot grant it either.
        let (_, admin_km) = app.key(&w.acme, &w.admin, KEY_MANAGER);
        body["user_id"] = json!(w.bob.id);
        body["scopes"] = json!(["user_management"]);
        assert_403(&app.post(LIST, "acme", &admin_km, body).await, "A key cannot grant a scope the calling key lacks");
    }

    async fn create_validates_every_field(app: &TestApp) {
        let w = World::new(app);
        let key = w.admin_secret();
        let max = today() + Days::new(365);
        let cases: Vec<(Value, &str, &str)> = vec![
            (json!({"user_id": w.alice.id, "expiration_date": date(max)}), "name", "Name is required."),
            (json!({"name": "ab", "user_id": w.alice.id, "expiration_date": date(max)}), "name", "Name must be between 3 and 255 characters."),
            (json!({"name": "x".repeat(256), "user_id": w.alice.id, "expiration_date": date(max)}), "name", "Name must be between 3 and 255 characters."),
            (json!({"name": 12, "user_id": w.alice.id, "expiration_date": date(max)}), "name", "Name must be a string."),
            (json!({"name": "abc", "expiration_date": date(max)}), "user_id", USER_ID_INVALID),
            (json!({"name": "abc", "user_id": "nope", "expiration_date": date(max)}), "user_id", USER_ID_INVALID),
            (json!({"name": "abc", "user_id": 5, "expiration_date": date(max)}), "user_id", USER_ID_INVALID),
            (json!({"name": "abc", "user_id": uuid::Uuid::now_v7().to_string(), "expiration_date": date(max)}), "user_id", USER_ID_INVALID),
            (json!({"name": "abc", "user_id": w.beta_admin.id, "expiration_date": date(max)}), "user_id", USER_ID_INVALID),
            (json!({"name": "abc", "user_id": w.alice.id}), "expiration_date", "Expiration date is required."),
            (json!({"name": "abc", "user_id": w.alice.id, "expiration_date": "31/01/2027"}), "expiration_date", "Expiration date must be a date in the format YYYY-MM-DD."),
            (json!({"name": "abc", "user_id": w.alice.id, "expiration_date": "2026-02-30"}), "expiration_date", "Expiration date must be a date in the format YYYY-MM-DD."),
            (json!({"name": "abc", "user_id": w.alice.id, "expiration_date": 20270131}), "expiration_date", "Expiration date must be a date in the format YYYY-MM-DD."),
            (json!({"name": "abc", "user_id": w.alice.id, "expiration_date": date(today() - Days::new(1))}), "expiration_date", "Expiration date cannot be in the past."),
            (json!({"name": "abc", "user_id": w.alice.id, "expiration_date": date(max + Days::new(1))}), "expiration_date", "Expiration date cannot be more than 365 days from today."),
            (json!({"name": "abc", "user_id": w.alice.id, "expiration_date": date(max), "scopes": ["root"]}), "scopes", keyward::keys::SCOPES_INVALID),
            (json!({"name": "abc", "user_id": w.alice.id, "expiration_date": date(max), "scopes": []}), "scopes", keyward::keys::SCOPES_INVALID),
            (json!({"name": "abc", "user_id": w.alice.id, "expiration_date": date(max), "scopes": "public_api"}), "scopes", keyward::keys::SCOPES_INVALID),
        ];
        for (body, field, message) in cases {
            let reply = app.post(LIST, "acme", key, body.clone()).await;
            assert_400(&reply, field, message);
        }
        // Several bad fields are named together.
        let reply = app.post(LIST, "acme", key, json!({"name": "ab", "user_id": "x"})).await;
        assert_eq!(reply.status, 400);
        let named: Vec<&String> = reply.body["errors"].as_object().unwrap().keys().collect();
        assert_eq!(named, ["expiration_date", "name", "user_id"]);
        // The boundaries themselves are accepted.
        let ok = app.post(LIST, "acme", key, json!({"name": "x".repeat(255), "user_id": w.alice.id, "expiration_date": date(max)})).await;
        assert_eq!(ok.status, 201, "{}", ok.text);
        // An inactive user gets no new key.
        app.set_user_active(&w.bob, false);
        assert_400(&app.post(LIST, "acme", key, new_key_body(&w.bob.id)).await, "user_id", USER_ID_INVALID);
    }

    async fn the_tenants_lifetime_policy_bounds_expiry(app: &TestApp) {
        let w = World::new(app);
        keyward::tenants::set_max_key_lifetime(&mut app.conn(), "acme", 30, app.now()).unwrap();
        let mut body = new_key_body(&w.alice.id);
        body["expiration_date"] = json!(date(today() + Days::new(31)));
        assert_400(&app.post(LIST, "acme", &w.alice_key.1, body.clone()).await, "expiration_date", "Expiration date cannot be more than 30 days from today.");
        body["expiration_date"] = json!(date(today() + Days::new(30)));
        assert_eq!(app.post(LIST, "acme", &w.alice_key.1, body).await.status, 201);
    }

    async fn get_one_key(app: &TestApp) {
        let w = World::new(app);
        let path = format!("{LIST}/{}", w.alice_key.0.id);
        let own = app.get(&path, "acme", &w.alice_key.1).await;
        assert_eq!(own.status, 200);
        assert_eq!(own.body["id"], w.alice_key.0.id.as_str());
        assert_eq!(own.body["user_id"], w.alice.id.as_str());
        assert_eq!(app.get(&path, "acme", w.admin_secret()).await.status, 200);
        // Not visible to another non-admin, nor to another tenant; unknown and malformed ids.
        assert_404(&app.get(&path, "acme", &w.bob_key.1).await);
        assert_404(&app.get(&path, "beta", &w.beta_key.1).await);
        assert_404(&app.get(&format!("{LIST}/{}", uuid::Uuid::now_v7()), "acme", w.admin_secret()).await);
        assert_404(&app.get(&format!("{LIST}/not-an-id"), "acme", w.admin_secret()).await);
        // Revoked: gone.
        let (revoked, _) = app.key(&w.acme, &w.alice, KEY_MANAGER);
        app.delete(&format!("{LIST}/{}", revoked.id), "acme", w.admin_secret()).await;
        assert_404(&app.get(&format!("{LIST}/{}", revoked.id), "acme", w.admin_secret()).await);
    }

    async fn revoke(app: &TestApp) {
        let w = World::new(app);
        let (key, secret) = app.key(&w.acme, &w.alice, KEY_MANAGER);
        let path = format!("{LIST}/{}", key.id);
        // Another non-admin may not see it: 400 like an unknown id, and nothing happens.
        assert_400(&app.delete(&path, "acme", &w.bob_key.1).await, "id", ID_INVALID);
        assert_400(&app.delete(&path, "beta", &w.beta_key.1).await, "id", ID_INVALID);
        assert_eq!(app.get(&by_user(&w.alice.id), "acme", &secret).await.status, 200);
        // The owner revokes it.
        let reply = app.delete(&path, "acme", &w.alice_key.1).await;
        assert_eq!((reply.status.as_u16(), reply.body.clone()), (200, json!({"result": "OK"})));
        assert_401(&app.get(LIST, "acme", &secret).await, "x-key", "Invalid API key");
        // Already revoked, unknown, malformed, missing: all the same 400.
        assert_400(&app.delete(&path, "acme", &w.alice_key.1).await, "id", ID_INVALID);
        assert_400(&app.delete(&format!("{LIST}/{}", uuid::Uuid::now_v7()), "acme", w.admin_secret()).await, "id", ID_INVALID);
        assert_400(&app.delete(&format!("{LIST}/x"), "acme", w.admin_secret()).await, "id", ID_INVALID);
        assert_400(&app.delete(LIST, "acme", w.admin_secret()).await, "id", ID_INVALID);
        assert_400(&app.delete(&format!("{LIST}/"), "acme", w.admin_secret()).await, "id", ID_INVALID);
        // An administrator revokes anyone's key in the tenant.
        let reply = app.delete(&format!("{LIST}/{}", w.bob_key.0.id), "acme", w.admin_secret()).await;
        assert_eq!(reply.status, 200);
        assert_401(&app.get(LIST, "acme", &w.bob_key.1).await, "x-key", "Invalid API key");
        // The row is kept, revoked.
        let kept = keyward::keys::find(&mut app.conn(), &w.acme.id, &keyward::keys::KeyRef::Id(key.id.clone()))
            .unwrap()
            .expect("the revoked key's row is kept");
        assert_eq!(kept.revoked_at, Some(app.now()));
        assert_eq!(kept.state(app.now()), keyward::keys::KeyState::Revoked);
    }

    async fn another_tenants_ids_behave_like_unknown_ids(app: &TestApp) {
        let w = World::new(app);
        let unknown = uuid::Uuid::now_v7().to_string();
        let foreign_key = w.beta_key.0.id.clone();
        let foreign_user = w.beta_admin.id.clone();
        let admin = w.admin_secret();
        let alice = w.alice_key.1.as_str();
        let checks: Vec<(&str, String, String, Option<Value>)> = vec![
            ("GET", format!("{LIST}/{foreign_key}"), format!("{LIST}/{unknown}"), None),
            ("DELETE", format!("{LIST}/{foreign_key}"), format!("{LIST}/{unknown}"), None),
            ("GET", by_user(&foreign_user), by_user(&unknown), None),
            ("GET", format!("{LIST}?start_with={foreign_key}"), format!("{LIST}?start_with={unknown}"), None),
            ("POST", LIST.to_owned(), LIST.to_owned(), Some(new_key_body(&foreign_user))),
        ];
        for key in [admin, alice] {
            for (method, foreign, missing, body) in &checks {
                let method: actix_web::http::Method = method.parse().unwrap();
                let a = app.call(method.clone(), foreign, "acme", key, body.clone()).await;
                let b = match body {
                    Some(_) => app.call(method.clone(), missing, "acme", key, Some(new_key_body(&unknown))).await,
                    None => app.call(method.clone(), missing, "acme", key, None).await,
                };
                assert_eq!((a.status, a.body_without_trace()), (b.status, b.body_without_trace()), "{method} {foreign}");
                assert!(a.status.is_client_error());
            }
        }
        // And nothing in beta was touched.
        assert_eq!(app.get(LIST, "beta", &w.beta_key.1).await.status, 200);
    }
}
