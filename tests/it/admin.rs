//! Administration (API.md section 4b): users, rotation, last used, filters, audit log.

use chrono::{Days, TimeDelta};
use serde_json::{json, Value};

use crate::both_backends;
use crate::common::*;
use keyward::keys::Scope;

const USERS: &str = "/v1/users";
const KEYS: &str = "/v1/user-api-keys";
const EVENTS: &str = "/v1/audit-events";
const ID_INVALID: &str = "ID is either missing, incorrect, or does not exist in the database.";

async fn patch(app: &TestApp, path: &str, key: &str, body: Value) -> Reply {
    app.call(
        actix_web::http::Method::PATCH,
        path,
        "acme",
        key,
        Some(body),
    )
    .await
}

async fn rotate(app: &TestApp, id: &str, key: &str, body: Value) -> Reply {
    app.post(&format!("{KEYS}/{id}/rotate"), "acme", key, body)
        .await
}

fn actions(reply: &Reply) -> Vec<String> {
    reply.body["events"]
        .as_array()
        .unwrap_or_else(|| panic!("{}", reply.text))
        .iter()
        .map(|e| e["action"].as_str().unwrap().to_owned())
        .collect()
}

fn ids(reply: &Reply) -> Vec<String> {
    reply
        .body
        .as_array()
        .unwrap_or_else(|| panic!("{}", reply.text))
        .iter()
        .map(|k| k["id"].as_str().unwrap().to_owned())
        .collect()
}

both_backends! {
    async fn create_get_and_list_users(app: &TestApp) {
        let w = World::new(app);
        let key = w.admin_secret();
        let reply = app.post(USERS, "acme", key, json!({"email": "Carol@Acme.test", "name": "Carol", "roles": ["Default users"]})).await;
        assert_eq!(reply.status, 201, "{}", reply.text);
        let id = reply.body["id"].as_str().unwrap().to_owned();
        assert_eq!(reply.body, json!({
            "id": id, "email": "carol@acme.test", "name": "Carol", "roles": ["Default users"],
            "active": true, "created_on": "2026-06-15T12:00:04Z", "updated_on": null, "external_id": null,
            "ratelimits": [], "credits": null,
        }));
        assert_eq!(app.get(&format!("{USERS}/{id}"), "acme", key).await.body, reply.body);
        let dup = app.post(USERS, "acme", key, json!({"email": "carol@acme.test", "name": "C2"})).await;
        assert_eq!(dup.status, 409);
        // The same email in another tenant is another user.
        let other = app.post(USERS, "beta", &w.beta_key.1, json!({"email": "carol@acme.test", "name": "C"})).await;
        assert_eq!(other.status, 201);
        let listed = app.get(USERS, "acme", key).await;
        let emails: Vec<&str> = listed.body["users"].as_array().unwrap().iter().map(|u| u["email"].as_str().unwrap()).collect();
        assert_eq!(emails, ["admin@acme.test", "alice@acme.test", "bob@acme.test", "carol@acme.test"]);
        let page = app.get(&format!("{USERS}?take=2&start_with={}", w.alice.id), "acme", key).await;
        let emails: Vec<&str> = page.body["users"].as_array().unwrap().iter().map(|u| u["email"].as_str().unwrap()).collect();
        assert_eq!(emails, ["bob@acme.test", "carol@acme.test"]);
        for take in ["0", "1001", "x"] {
            assert_400(&app.get(&format!("{USERS}?take={take}"), "acme", key).await, "take", "take must be an integer from 1 to 1000.");
        }
        for bad in [json!({"name": "x"}), json!({"email": "nope", "name": "x"}), json!({"email": "a@b.c", "roles": ["Root"]}), json!({"email": "a@b.c", "roles": "Administrators"})] {
            assert_eq!(app.post(USERS, "acme", key, bad.clone()).await.status, 400, "{bad}");
        }
    }

    async fn user_administration_needs_the_role_and_the_scope(app: &TestApp) {
        let w = World::new(app);
        let (_, admin_without_scope) = app.key(&w.acme, &w.admin, KEY_MANAGER);
        let (_, user_with_scope) = app.key(&w.acme, &w.alice, &[Scope::UserManagement]);
        let path = format!("{USERS}/{}", w.bob.id);
        for (key, title) in [
            (admin_without_scope.as_str(), "The calling key lacks the user_management scope"),
            (user_with_scope.as_str(), "Only Administrators may administer users"),
        ] {
            assert_403(&app.get(USERS, "acme", key).await, title);
            assert_403(&app.get(&path, "acme", key).await, title);
            assert_403(&app.post(USERS, "acme", key, json!({"email": "x@y.z", "name": "x"})).await, title);
            assert_403(&patch(app, &path, key, json!({"name": "x"})).await, title);
            assert_403(&app.delete(&path, "acme", key).await, title);
            let events_title = if title.starts_with("Only") { "Only Administrators may read the audit log" } else { title };
            assert_403(&app.get(EVENTS, "acme", key).await, events_title);
        }
    }

    async fn another_tenants_user_is_unknown(app: &TestApp) {
        let w = World::new(app);
        let foreign = format!("{USERS}/{}", w.beta_admin.id);
        let unknown = format!("{USERS}/{}", uuid::Uuid::now_v7());
        for path in [&foreign, &unknown, &format!("{USERS}/not-a-uuid")] {
            assert_404(&app.get(path, "acme", w.admin_secret()).await);
            assert_404(&patch(app, path, w.admin_secret(), json!({"name": "x"})).await);
            assert_404(&app.delete(path, "acme", w.admin_secret()).await);
        }
        assert_eq!(app.get(&format!("{KEYS}?UserId={}", w.beta_admin.id), "beta", &w.beta_key.1).await.status, 200);
    }

    async fn patch_and_deactivate(app: &TestApp) {
        let w = World::new(app);
        let path = format!("{USERS}/{}", w.alice.id);
        let reply = patch(app, &path, w.admin_secret(), json!({"name": "Alice A.", "roles": ["Administrators", "Default users"]})).await;
        assert_eq!(reply.status, 200, "{}", reply.text);
        assert_eq!(reply.body["name"], "Alice A.");
        assert_eq!(reply.body["roles"], json!(["Administrators", "Default users"]));
        assert_eq!(reply.body["updated_on"], "2026-06-15T12:00:04Z");
        // Alice, now an administrator, lists every key.
        assert_eq!(app.get(KEYS, "acme", &w.alice_key.1).await.status, 200);
        // Deactivation: her keys fail on the next request; reactivation restores them.
        let reply = app.delete(&path, "acme", w.admin_secret()).await;
        assert_eq!((reply.status.as_u16(), reply.body.clone()), (200, json!({"result": "OK"})));
        assert_401(&app.get(KEYS, "acme", &w.alice_key.1).await, "x-key", "Invalid API key");
        assert_eq!(app.get(&path, "acme", w.admin_secret()).await.body["active"], false);
        assert_eq!(patch(app, &path, w.admin_secret(), json!({"active": true})).await.status, 200);
        assert_eq!(app.get(KEYS, "acme", &w.alice_key.1).await.status, 200);
        assert_eq!(patch(app, &path, w.admin_secret(), json!({"active": "no"})).await.status, 400);
        assert_eq!(patch(app, &path, w.admin_secret(), json!({"roles": ["Root"]})).await.status, 400);
    }

    // N administrators step down at once, half by PATCH and half by DELETE:
    // the guard must let exactly N-1 through, every round.
    async fn parallel_demotions_leave_one_administrator(app: &TestApp) {
        use diesel::prelude::*;
        use keyward::schema::users::dsl;
        const N: usize = 6;
        let acme = app.tenant("acme");
        let admins: Vec<_> = (0..N)
            .map(|i| {
                let user = app.user(&acme, &format!("admin{i}@acme.test"), &[keyward::users::ADMINISTRATORS]);
                let (_, key) = app.key(&acme, &user, &Scope::ALL);
                (user, key)
            })
            .collect();
        for round in 0..5 {
            let requests = admins.iter().enumerate().map(|(i, (user, key))| {
                let path = format!("{USERS}/{}", user.id);
                async move {
                    if i % 2 == 0 {
                        patch(app, &path, key, json!({"roles": ["Default users"]})).await
                    } else {
                        app.delete(&path, "acme", key).await
                    }
                }
            });
            let replies = futures_util::future::join_all(requests).await;
            let statuses: Vec<u16> = replies.iter().map(|r| r.status.as_u16()).collect();
            assert_eq!(statuses.iter().filter(|&&s| s == 200).count(), N - 1, "round {round}: {statuses:?}");
            assert_eq!(statuses.iter().filter(|&&s| s == 409).count(), 1, "round {round}: {statuses:?}");
            let remaining: i64 = dsl::users
                .filter(dsl::tenant_id.eq(&acme.id))
                .filter(dsl::active.eq(true))
                .filter(dsl::roles.like("%\"Administrators\"%"))
                .count()
                .get_result(&mut *app.conn())
                .unwrap();
            assert_eq!(remaining, 1, "round {round}");
            // Everyone back for the next round.
            diesel::update(dsl::users.filter(dsl::tenant_id.eq(&acme.id)))
                .set((dsl::active.eq(true), dsl::roles.eq("[\"Administrators\"]")))
                .execute(&mut *app.conn())
                .unwrap();
            app.state.auth_cache.clear();
        }
    }

    async fn the_last_administrator_stays(app: &TestApp) {
        let w = World::new(app);
        let admin = format!("{USERS}/{}", w.admin.id);
        let key = w.admin_secret();
        let title = "The tenant's last active administrator can be neither demoted nor deactivated";
        assert_problem(&patch(app, &admin, key, json!({"roles": ["Default users"]})).await, 409, "https://tools.ietf.org/html/rfc9110#section-15.5.10", title, None);
        assert_eq!(patch(app, &admin, key, json!({"active": false})).await.status, 409);
        assert_eq!(app.delete(&admin, "acme", key).await.status, 409);
        // Still an active administrator, and no event was written for the refused changes.
        assert_eq!(app.get(KEYS, "acme", key).await.status, 200);
        let events = app.get(&format!("{EVENTS}?user_id={}", w.admin.id), "acme", key).await;
        assert!(!actions(&events).iter().any(|a| a.starts_with("user.updated") || a == "user.deactivated"));
        // With a second administrator, the first may step down.
        assert_eq!(patch(app, &format!("{USERS}/{}", w.bob.id), key, json!({"roles": ["Administrators"]})).await.status, 200);
        assert_eq!(patch(app, &admin, key, json!({"roles": ["Default users"]})).await.status, 200);
        // Bob is now the last one.
        let (_, bob_admin) = app.key(&w.acme, &w.bob, &Scope::ALL);
        assert_eq!(app.delete(&format!("{USERS}/{}", w.bob.id), "acme", &bob_admin).await.status, 409);
        // Another tenant's administrators do not count.
        assert_eq!(app.delete(&format!("{USERS}/{}", w.beta_admin.id), "beta", &w.beta_key.1).await.status, 409);
    }

    async fn rotation_with_a_grace_window(app: &TestApp) {
        let w = World::new(app);
        let (old, old_secret) = app.key(&w.acme, &w.alice, KEY_MANAGER);
        let reply = rotate(app, &old.id, &w.alice_key.1, json!({"grace_seconds": 60})).await;
        assert_eq!(reply.status, 201, "{}", reply.text);
        let new_id = reply.body["id"].as_str().unwrap().to_owned();
        let new_secret = reply.body["key"].as_str().unwrap().to_owned();
        assert_eq!(reply.body["name"], old.name.as_str());
        assert_eq!(reply.body["user_id"], w.alice.id.as_str());
        assert_eq!(reply.body["scopes"], json!(["public_api", "user_key_management"]));
        assert_eq!(reply.body["expiration_date"], old.expiration_date().to_string());
        // Both work and both are listed during the grace window.
        assert_403(&app.get(KEYS, "acme", &old_secret).await, "Only Administrators may list every key");
        assert_eq!(app.get(&format!("{KEYS}?UserId={}", w.alice.id), "acme", &new_secret).await.status, 200);
        let listed = ids(&app.get(&format!("{KEYS}?UserId={}", w.alice.id), "acme", &old_secret).await);
        assert!(listed.contains(&old.id) && listed.contains(&new_id));
        app.clock.advance(TimeDelta::seconds(59));
        assert_eq!(app.get(&format!("{KEYS}/{}", old.id), "acme", &old_secret).await.status, 200);
        app.clock.advance(TimeDelta::seconds(1));
        assert_401(&app.get(KEYS, "acme", &old_secret).await, "x-key", "Invalid API key");
        let listed = ids(&app.get(&format!("{KEYS}?UserId={}", w.alice.id), "acme", &new_secret).await);
        assert!(!listed.contains(&old.id) && listed.contains(&new_id));
        // A revoked key cannot be rotated.
        assert_400(&rotate(app, &old.id, &new_secret, json!({})).await, "id", ID_INVALID);
    }

    async fn rotation_without_grace_and_with_a_new_date(app: &TestApp) {
        let w = World::new(app);
        let (old, old_secret) = app.key(&w.acme, &w.alice, KEY_MANAGER);
        let date = (today() + Days::new(100)).to_string();
        // No body at all: grace 0.
        let reply = app.call(actix_web::http::Method::POST, &format!("{KEYS}/{}/rotate", w.alice_key.0.id), "acme", &old_secret, None).await;
        assert_eq!(reply.status, 201, "{}", reply.text);
        assert_401(&app.get(KEYS, "acme", &w.alice_key.1).await, "x-key", "Invalid API key");
        let reply = rotate(app, &old.id, w.admin_secret(), json!({"expiration_date": date})).await;
        assert_eq!(reply.body["expiration_date"], date);
        for bad in [json!({"grace_seconds": -1}), json!({"grace_seconds": 604801}), json!({"grace_seconds": "10"}), json!({"expiration_date": "tomorrow"})] {
            let (key, _) = app.key(&w.acme, &w.alice, KEY_MANAGER);
            assert_eq!(rotate(app, &key.id, w.admin_secret(), bad.clone()).await.status, 400, "{bad}");
        }
        let (key, _) = app.key(&w.acme, &w.alice, KEY_MANAGER);
        let too_far = (today() + Days::new(366)).to_string();
        assert_eq!(rotate(app, &key.id, w.admin_secret(), json!({"expiration_date": too_far})).await.status, 400);
    }

    async fn rotation_is_for_owner_or_admin_without_escalation(app: &TestApp) {
        let w = World::new(app);
        // Bob may not rotate Alice's key: the same 400 as an unknown key.
        assert_400(&rotate(app, &w.alice_key.0.id, &w.bob_key.1, json!({})).await, "id", ID_INVALID);
        assert_400(&rotate(app, &w.beta_key.0.id, w.admin_secret(), json!({})).await, "id", ID_INVALID);
        assert_400(&rotate(app, &uuid::Uuid::now_v7().to_string(), w.admin_secret(), json!({})).await, "id", ID_INVALID);
        assert_400(&rotate(app, "nope", w.admin_secret(), json!({})).await, "id", ID_INVALID);
        // An administrator's key that lacks user_management cannot rotate a key that has it.
        let (_, admin_km) = app.key(&w.acme, &w.admin, KEY_MANAGER);
        assert_403(&rotate(app, &w.admin_key.0.id, &admin_km, json!({})).await, "A key cannot grant a scope the calling key lacks");
        // Rotation needs user_key_management.
        let (_, weak) = app.key(&w.acme, &w.alice, &[Scope::PublicApi]);
        assert_403(&rotate(app, &w.alice_key.0.id, &weak, json!({})).await, "The calling key lacks the user_key_management scope");
        // Nothing happened to the keys involved.
        assert_eq!(app.get(KEYS, "acme", w.admin_secret()).await.status, 200);
        assert_eq!(app.get(&format!("{KEYS}?UserId={}", w.alice.id), "acme", &w.alice_key.1).await.status, 200);
    }

    async fn last_used_is_recorded_and_filterable(app: &TestApp) {
        let w = World::new(app);
        let path = format!("{KEYS}/{}", w.alice_key.0.id);
        assert_eq!(app.get(&path, "acme", w.admin_secret()).await.body["last_used_on"], Value::Null);
        assert_eq!(app.get(&path, "acme", &w.alice_key.1).await.status, 200);
        let used_at = app.now();
        app.state.clone().into_inner().flush_usage().await.unwrap();
        app.clock.advance(TimeDelta::seconds(5));
        let reply = app.get(&path, "acme", w.admin_secret()).await;
        assert_eq!(reply.body["last_used_on"], used_at.format("%Y-%m-%dT%H:%M:%SZ").to_string());
        // Unused for 90 days: Bob's (never used) key, not Alice's.
        app.state.clone().into_inner().flush_usage().await.unwrap();
        let today_ = today().to_string();
        let unused = ids(&app.get(&format!("{KEYS}?last_used_before={today_}"), "acme", w.admin_secret()).await);
        assert_eq!(unused, vec![w.bob_key.0.id.clone()]);
        let tomorrow = (today() + Days::new(1)).to_string();
        let unused = ids(&app.get(&format!("{KEYS}?last_used_before={tomorrow}"), "acme", w.admin_secret()).await);
        assert_eq!(unused.len(), 3);
        let stats = app.send(actix_web::test::TestRequest::get().uri("/user/stats").insert_header(("tenant", "acme")).insert_header(("x-key", w.bob_key.1.as_str()))).await;
        assert_eq!(stats.body["lastKeyUsedAt"], Value::Null);
        let stats = app.send(actix_web::test::TestRequest::get().uri("/user/stats").insert_header(("tenant", "acme")).insert_header(("x-key", w.alice_key.1.as_str()))).await;
        assert_eq!(stats.body["lastKeyUsedAt"], used_at.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true));
    }

    async fn state_and_expiry_filters(app: &TestApp) {
        let w = World::new(app);
        let (soon, _) = app.key_until(&w.acme, &w.bob, KEY_MANAGER, today());
        let (later, _) = app.key_until(&w.acme, &w.bob, KEY_MANAGER, today() + Days::new(5));
        app.clock.advance(TimeDelta::days(1));
        let bob = format!("{KEYS}?UserId={}", w.bob.id);
        let admin = w.admin_secret();
        assert_eq!(ids(&app.get(&format!("{bob}&state=expired"), "acme", admin).await), vec![soon.id.clone()]);
        assert_eq!(ids(&app.get(&format!("{bob}&state=active"), "acme", admin).await), vec![w.bob_key.0.id.clone(), later.id.clone()]);
        // expires_before=D: the key whose last day is before D.
        let d = |n| (today() + Days::new(n)).to_string();
        assert_eq!(ids(&app.get(&format!("{bob}&expires_before={}", d(1)), "acme", admin).await), vec![soon.id.clone()]);
        assert_eq!(ids(&app.get(&format!("{bob}&expires_before={}", d(5)), "acme", admin).await), vec![soon.id.clone()]);
        assert_eq!(ids(&app.get(&format!("{bob}&expires_before={}", d(6)), "acme", admin).await), vec![soon.id.clone(), later.id.clone()]);
        assert_eq!(ids(&app.get(&format!("{KEYS}?state=active&expires_before={}&take=1", d(6)), "acme", admin).await), vec![later.id.clone()]);
        for (param, value) in [("state", "revoked"), ("expires_before", "soon"), ("last_used_before", "2026-13-01")] {
            let reply = app.get(&format!("{KEYS}?{param}={value}"), "acme", admin).await;
            assert_eq!(reply.status, 400);
            assert!(reply.body["errors"][param].is_array(), "{}", reply.text);
        }
    }

    async fn the_audit_log(app: &TestApp) {
        let w = World::new(app);
        let key = w.admin_secret();
        let carol = app.post(USERS, "acme", key, json!({"email": "carol@acme.test", "name": "Carol"})).await.body["id"].as_str().unwrap().to_owned();
        patch(app, &format!("{USERS}/{carol}"), key, json!({"name": "Carol C."})).await;
        let created = app.post(KEYS, "acme", key, json!({"name": "carol-ci", "user_id": carol, "expiration_date": today().to_string()})).await;
        let carol_key = created.body["id"].as_str().unwrap().to_owned();
        let rotated = rotate(app, &carol_key, key, json!({})).await;
        let new_key = rotated.body["id"].as_str().unwrap().to_owned();
        app.delete(&format!("{KEYS}/{new_key}"), "acme", key).await;
        app.delete(&format!("{USERS}/{carol}"), "acme", key).await;
        let reply = app.get(&format!("{EVENTS}?user_id={carol}"), "acme", key).await;
        assert_eq!(reply.status, 200, "{}", reply.text);
        assert_eq!(actions(&reply), ["user.created", "user.updated", "key.created", "key.created", "key.rotated", "key.revoked", "user.deactivated"]);
        let events = reply.body["events"].as_array().unwrap();
        let rotation = &events[4];
        assert_eq!(rotation["target_id"], carol_key.as_str());
        assert_eq!(rotation["new_key_id"], new_key.as_str());
        assert_eq!(rotation["actor_user_id"], w.admin.id.as_str());
        assert_eq!(rotation["actor_key_id"], w.admin_key.0.id.as_str());
        assert!(rotation["request_id"].as_str().is_some_and(|id| !id.is_empty()));
        assert_eq!(events[0]["target_id"], carol.as_str());
        // Paging, and other tenants' events are not there.
        let all = app.get(EVENTS, "acme", key).await;
        let all_ids: Vec<&str> = all.body["events"].as_array().unwrap().iter().map(|e| e["id"].as_str().unwrap()).collect();
        let second = app.get(&format!("{EVENTS}?take=2&start_with={}", all_ids[0]), "acme", key).await;
        let second_ids: Vec<&str> = second.body["events"].as_array().unwrap().iter().map(|e| e["id"].as_str().unwrap()).collect();
        assert_eq!(second_ids, all_ids[1..3]);
        let beta = app.get(EVENTS, "beta", &w.beta_key.1).await;
        assert!(!beta.text.contains(&carol));
        assert_eq!(app.get(&format!("{EVENTS}?take=0"), "acme", key).await.status, 400);
        assert_eq!(app.get(&format!("{EVENTS}?user_id=x"), "acme", key).await.status, 400);
        // The Estuary export holds Carol's... and Alice's own events.
        let export = app.send(actix_web::test::TestRequest::get().uri("/user/export").insert_header(("tenant", "acme")).insert_header(("x-key", key))).await;
        let exported: Vec<&str> = export.body["audit_events"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
        assert!(exported.contains(&"key.rotated"), "{}", export.text);
    }

    async fn a_failed_change_leaves_no_event(app: &TestApp) {
        let w = World::new(app);
        let key = w.admin_secret();
        let before = app.get(EVENTS, "acme", key).await.body["events"].as_array().unwrap().len();
        // Refused changes: duplicate email, last admin, invalid key body, revoking the unknown.
        app.post(USERS, "acme", key, json!({"email": "alice@acme.test", "name": "x"})).await;
        app.delete(&format!("{USERS}/{}", w.admin.id), "acme", key).await;
        app.post(KEYS, "acme", key, json!({"name": "x"})).await;
        app.delete(&format!("{KEYS}/{}", uuid::Uuid::now_v7()), "acme", key).await;
        let after = app.get(EVENTS, "acme", key).await.body["events"].as_array().unwrap().len();
        assert_eq!(before, after);
        // A change whose event cannot be written is rolled back with it.
        {
            use diesel::RunQueryDsl;
            diesel::sql_query("DROP TABLE audit_events").execute(&mut *app.conn()).unwrap();
        }
        let reply = app.post(USERS, "acme", key, json!({"email": "dave@acme.test", "name": "Dave"})).await;
        assert_eq!(reply.status, 500);
        assert!(keyward::users::find_by_email(&mut app.conn(), &w.acme.id, "dave@acme.test").unwrap().is_none());
        let reply = app.delete(&format!("{KEYS}/{}", w.bob_key.0.id), "acme", key).await;
        assert_eq!(reply.status, 500);
        assert_eq!(app.get(&format!("{KEYS}?UserId={}", w.bob.id), "acme", &w.bob_key.1).await.status, 200);
    }
}
