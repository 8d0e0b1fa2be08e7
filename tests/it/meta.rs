//! Key metadata (API.md section 8): set at creation, copied by rotation,
//! replaced by PATCH (audited as `key.updated`), shown by the key object and
//! Estuary's export.

use actix_web::http::Method;
use actix_web::test::TestRequest;
use serde_json::{json, Value};

use crate::both_backends;
use crate::common::*;
use keyward::keys::Scope;

const KEYS: &str = "/v1/user-api-keys";

async fn patch(app: &TestApp, id: &str, key: &str, body: Value) -> Reply {
    app.call(
        Method::PATCH,
        &format!("{KEYS}/{id}"),
        "acme",
        key,
        Some(body),
    )
    .await
}

fn new_key(user_id: &str, meta: Value) -> Value {
    json!({"name": "with meta", "user_id": user_id, "expiration_date": today().to_string(), "meta": meta})
}

both_backends! {
    async fn meta_is_set_shown_and_copied(app: &TestApp) {
        let w = World::new(app);
        let meta = json!({"plan": "pro", "limits": {"rps": 10}, "tags": ["a", "b"]});
        let created = app.post(KEYS, "acme", &w.alice_key.1, new_key(&w.alice.id, meta.clone())).await;
        assert_eq!(created.status, 201, "{}", created.text);
        assert_eq!(created.body["meta"], meta);
        let id = created.body["id"].as_str().unwrap().to_owned();
        assert_eq!(app.get(&format!("{KEYS}/{id}"), "acme", &w.alice_key.1).await.body["meta"], meta);
        // A key made without meta shows {}.
        assert_eq!(app.get(&format!("{KEYS}/{}", w.alice_key.0.id), "acme", &w.alice_key.1).await.body["meta"], json!({}));
        // Rotation copies it.
        let rotated = app.post(&format!("{KEYS}/{id}/rotate"), "acme", &w.alice_key.1, json!({})).await;
        assert_eq!(rotated.status, 201, "{}", rotated.text);
        assert_eq!(rotated.body["meta"], meta);
        // Estuary's export shows it.
        let export = app.send(TestRequest::get().uri("/user/export").insert_header(("tenant", "acme")).insert_header(("x-key", w.alice_key.1.as_str()))).await;
        let keys = export.body["keys"].as_array().unwrap();
        assert!(keys.iter().any(|k| k["id"] == id.as_str() && k["meta"] == meta), "{}", export.text);
    }

    async fn meta_must_be_a_small_object(app: &TestApp) {
        let w = World::new(app);
        let big = json!({"x": "y".repeat(4096)});
        for bad in [json!([1]), json!("text"), json!(3), big] {
            let reply = app.post(KEYS, "acme", &w.alice_key.1, new_key(&w.alice.id, bad.clone())).await;
            assert_400(&reply, "meta", "meta must be a JSON object of at most 4 KiB.");
            let reply = patch(app, &w.alice_key.0.id, &w.alice_key.1, json!({"meta": bad})).await;
            assert_400(&reply, "meta", "meta must be a JSON object of at most 4 KiB.");
        }
        // Exactly 4096 bytes serialized is allowed.
        let fits = json!({"x": "y".repeat(4096 - r#"{"x":""}"#.len())});
        assert_eq!(fits.to_string().len(), 4096);
        let reply = app.post(KEYS, "acme", &w.alice_key.1, new_key(&w.alice.id, fits)).await;
        assert_eq!(reply.status, 201, "{}", reply.text);
    }

    async fn patch_renames_and_replaces_meta(app: &TestApp) {
        let w = World::new(app);
        let id = w.bob_key.0.id.clone();
        app.clock.advance(chrono::TimeDelta::seconds(5));
        let reply = patch(app, &id, &w.bob_key.1, json!({"name": "renamed", "meta": {"team": "blue"}})).await;
        assert_eq!(reply.status, 200, "{}", reply.text);
        assert_eq!(reply.body["name"], "renamed");
        assert_eq!(reply.body["meta"], json!({"team": "blue"}));
        assert_eq!(reply.body["updated_on"], keyward::api::timestamp(app.now()));
        // Only what is sent changes.
        let reply = patch(app, &id, w.admin_secret(), json!({"meta": {}})).await;
        assert_eq!(reply.status, 200, "{}", reply.text);
        assert_eq!((reply.body["name"].as_str(), &reply.body["meta"]), (Some("renamed"), &json!({})));
        let reply = patch(app, &id, w.admin_secret(), json!({"name": "again"})).await;
        assert_eq!((reply.body["name"].as_str(), &reply.body["meta"]), (Some("again"), &json!({})));
        // Audited, once per change.
        let events = app.get(&format!("/v1/audit-events?user_id={}", w.bob.id), "acme", w.admin_secret()).await;
        let updated = events.body["events"].as_array().unwrap().iter().filter(|e| e["action"] == "key.updated" && e["target_id"] == id.as_str()).count();
        assert_eq!(updated, 3);
        // The key still works.
        assert_eq!(app.get(&format!("{KEYS}?UserId={}", w.bob.id), "acme", &w.bob_key.1).await.status, 200);
        // Bad names.
        assert_400(&patch(app, &id, w.admin_secret(), json!({"name": "x"})).await, "name", "Name must be between 3 and 255 characters.");
        assert_400(&patch(app, &id, w.admin_secret(), json!({"name": 5})).await, "name", "Name must be a string.");
    }

    async fn patch_sees_only_what_the_caller_may(app: &TestApp) {
        let w = World::new(app);
        let body = json!({"name": "hijack"});
        // Another user's key, another tenant's key, an unknown or malformed id: 404.
        assert_404(&patch(app, &w.bob_key.0.id, &w.alice_key.1, body.clone()).await);
        assert_404(&patch(app, &w.beta_key.0.id, w.admin_secret(), body.clone()).await);
        assert_404(&patch(app, &uuid::Uuid::now_v7().to_string(), w.admin_secret(), body.clone()).await);
        assert_404(&patch(app, "nope", w.admin_secret(), body.clone()).await);
        // A revoked key: 404.
        let (revoked, _) = app.key(&w.acme, &w.alice, KEY_MANAGER);
        assert_eq!(app.delete(&format!("{KEYS}/{}", revoked.id), "acme", w.admin_secret()).await.status, 200);
        assert_404(&patch(app, &revoked.id, w.admin_secret(), body.clone()).await);
        // The scope is needed.
        let (_, weak) = app.key(&w.acme, &w.alice, &[Scope::PublicApi]);
        assert_403(&patch(app, &w.alice_key.0.id, &weak, body.clone()).await, "The calling key lacks the user_key_management scope");
        // No key: 401 before the body is looked at.
        let reply = app.call(Method::PATCH, &format!("{KEYS}/{}", w.alice_key.0.id), "acme", "", None).await;
        assert_401(&reply, "x-key", "API key missing");
        // Nothing changed.
        let key = app.get(&format!("{KEYS}/{}", w.bob_key.0.id), "acme", w.admin_secret()).await;
        assert_ne!(key.body["name"], "hijack");
    }
}
