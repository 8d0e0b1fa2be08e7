//! State changes under parallel bursts: each succeeds exactly once, on both
//! backends, and losers get their dialect's "does not exist" answer. Requests
//! are sent together; their database work runs on separate pooled connections.

use actix_web::http::Method;
use actix_web::test::TestRequest;
use diesel::prelude::*;
use futures_util::future::join_all;
use serde_json::json;

use crate::both_backends;
use crate::common::*;
use keyward::keys::{self, secret, KeyRef};
use keyward::schema::audit_events;

const KEYS: &str = "/v1/user-api-keys";
const ROUNDS: usize = 5;

fn events(app: &TestApp, action: &str, target: &str) -> i64 {
    audit_events::table
        .filter(audit_events::action.eq(action))
        .filter(audit_events::target_id.eq(target))
        .count()
        .get_result(&mut *app.conn())
        .unwrap()
}

fn statuses(replies: &[Reply]) -> Vec<u16> {
    let mut statuses: Vec<u16> = replies.iter().map(|r| r.status.as_u16()).collect();
    statuses.sort_unstable();
    statuses
}

fn once(replies: &[Reply], winner: u16, loser: u16) {
    let mut expected = vec![loser; replies.len() - 1];
    expected.push(winner);
    expected.sort_unstable();
    assert_eq!(
        statuses(replies),
        expected,
        "{:?}",
        replies.iter().map(|r| &r.text).collect::<Vec<_>>()
    );
}

both_backends! {
    async fn parallel_revocations_succeed_once(app: &TestApp) {
        let w = World::new(app);
        for _ in 0..ROUNDS {
            let (key, _) = app.key(&w.acme, &w.alice, KEY_MANAGER);
            let path = format!("{KEYS}/{}", key.id);
            let replies = join_all((0..50).map(|_| app.delete(&path, "acme", w.admin_secret()))).await;
            once(&replies, 200, 400);
            for loser in replies.iter().filter(|r| r.status == 400) {
                assert_400(loser, "id", "ID is either missing, incorrect, or does not exist in the database.");
            }
            assert_eq!(events(app, "key.revoked", &key.id), 1);
        }
    }

    async fn parallel_revocations_across_dialects_succeed_once(app: &TestApp) {
        let w = World::new(app);
        for _ in 0..ROUNDS {
            let (key, secret_text) = app.key(&w.acme, &w.alice, KEY_MANAGER);
            let names = [key.id.clone(), secret_text.clone(), secret::hash(&secret_text)];
            let estuary = (0..30).map(|i| {
                let req = TestRequest::delete()
                    .uri(&format!("/user/api-keys/{}", names[i % 3]))
                    .insert_header(("tenant", "acme"))
                    .insert_header(("authorization", format!("Bearer {}", w.alice_key.1)));
                app.send(req)
            });
            let v1_path = format!("{KEYS}/{}", key.id);
            let v1 = (0..20).map(|_| app.delete(&v1_path, "acme", &w.alice_key.1));
            let (estuary, v1) = futures_util::future::join(join_all(estuary), join_all(v1)).await;
            let ok = estuary.iter().chain(&v1).filter(|r| r.status == 200).count();
            assert_eq!(ok, 1, "{:?} {:?}", statuses(&estuary), statuses(&v1));
            assert!(estuary.iter().all(|r| matches!(r.status.as_u16(), 200 | 404)));
            assert!(v1.iter().all(|r| matches!(r.status.as_u16(), 200 | 400)));
            assert_eq!(events(app, "key.revoked", &key.id), 1);
        }
    }

    async fn parallel_rotations_mint_one_successor(app: &TestApp) {
        let w = World::new(app);
        for round in 0..ROUNDS {
            let (key, _) = app.key(&w.acme, &w.bob, KEY_MANAGER);
            let path = format!("{KEYS}/{}/rotate", key.id);
            let grace = json!({"grace_seconds": if round % 2 == 0 { 0 } else { 3600 }});
            let replies = join_all((0..20).map(|_| app.post(&path, "acme", w.admin_secret(), grace.clone()))).await;
            once(&replies, 201, 400);
            assert_eq!(events(app, "key.rotated", &key.id), 1);
            // Exactly one key was made from it, and it is the one that was answered.
            let made: Vec<String> = audit_events::table
                .filter(audit_events::action.eq("key.rotated"))
                .filter(audit_events::target_id.eq(&key.id))
                .select(audit_events::new_key_id.assume_not_null())
                .load(&mut *app.conn())
                .unwrap();
            let winner = replies.iter().find(|r| r.status == 201).unwrap();
            assert_eq!(made, vec![winner.body["id"].as_str().unwrap().to_owned()]);
        }
        // Every key Bob has is either an original (rotated) or its one successor.
        let all = keys::all_of_user(&mut app.conn(), &w.acme.id, &w.bob.id).unwrap();
        assert_eq!(all.len(), 1 + 2 * ROUNDS);
    }

    async fn a_revocation_and_a_rotation_together_succeed_once(app: &TestApp) {
        let w = World::new(app);
        for _ in 0..ROUNDS {
            let (key, _) = app.key(&w.acme, &w.alice, KEY_MANAGER);
            let (rotate_path, key_path) = (format!("{KEYS}/{}/rotate", key.id), format!("{KEYS}/{}", key.id));
            let rotations = (0..10).map(|_| app.post(&rotate_path, "acme", w.admin_secret(), json!({})));
            let revocations = (0..10).map(|_| app.delete(&key_path, "acme", w.admin_secret()));
            let (rotations, revocations) = futures_util::future::join(join_all(rotations), join_all(revocations)).await;
            let won = rotations.iter().filter(|r| r.status == 201).count() + revocations.iter().filter(|r| r.status == 200).count();
            assert_eq!(won, 1, "{:?} {:?}", statuses(&rotations), statuses(&revocations));
            // Whatever won, the old key is revoked now (grace 0) and cannot come back.
            let old = keys::find(&mut app.conn(), &w.acme.id, &KeyRef::Id(key.id.clone())).unwrap().unwrap();
            assert_eq!(old.state(app.now()), keys::KeyState::Revoked);
        }
    }

    async fn parallel_user_creations_with_one_email_succeed_once(app: &TestApp) {
        let w = World::new(app);
        for round in 0..ROUNDS {
            let body = json!({"email": format!("dup{round}@acme.test"), "name": "Dup"});
            let replies = join_all((0..20).map(|_| app.post("/v1/users", "acme", w.admin_secret(), body.clone()))).await;
            once(&replies, 201, 409);
        }
    }

    async fn parallel_deactivations_succeed_once(app: &TestApp) {
        let w = World::new(app);
        for round in 0..ROUNDS {
            let user = app.user(&w.acme, &format!("gone{round}@acme.test"), &[keyward::users::DEFAULT_USERS]);
            let path = format!("/v1/users/{}", user.id);
            let deletes = (0..10).map(|_| app.delete(&path, "acme", w.admin_secret()));
            let patches = (0..10).map(|_| app.call(Method::PATCH, &path, "acme", w.admin_secret(), Some(json!({"active": false}))));
            let (deletes, patches) = futures_util::future::join(join_all(deletes), join_all(patches)).await;
            let all: Vec<Reply> = deletes.into_iter().chain(patches).collect();
            once(&all, 200, 409);
            assert_eq!(events(app, "user.deactivated", &user.id), 1);
        }
    }

    async fn two_administrators_deactivating_each_other_never_fail(app: &TestApp) {
        let w = World::new(app);
        for round in 0..ROUNDS {
            // The tenant's administrators: `admin` and a second one per round.
            let other = app.user(&w.acme, &format!("admin{round}@acme.test"), &[keyward::users::ADMINISTRATORS]);
            let other_key = app.key(&w.acme, &other, &keyward::keys::Scope::ALL);
            let admin_path = format!("/v1/users/{}", w.admin.id);
            let other_path = format!("/v1/users/{}", other.id);
            let by_admin = (0..10).map(|_| app.delete(&other_path, "acme", w.admin_secret()));
            let by_other = (0..10).map(|_| app.delete(&admin_path, "acme", &other_key.1));
            let demote = (0..5).map(|_| app.call(Method::PATCH, &other_path, "acme", w.admin_secret(), Some(json!({"roles": []}))));
            let (a, b, c) = futures_util::future::join3(join_all(by_admin), join_all(by_other), join_all(demote)).await;
            let all: Vec<Reply> = a.into_iter().chain(b).chain(c).collect();
            for reply in &all {
                assert!(
                    [200, 401, 409].contains(&reply.status.as_u16()),
                    "round {round}: {} {}",
                    reply.status,
                    reply.text
                );
            }
            // The last administrator holds: one stays an active administrator.
            let active_admins = [&w.admin, &other]
                .iter()
                .filter(|u| {
                    let user = keyward::users::find(&mut app.conn(), &w.acme.id, &u.id).unwrap().unwrap();
                    user.active && user.is_admin()
                })
                .count();
            assert_eq!(active_admins, 1, "round {round}");
            if !keyward::users::find(&mut app.conn(), &w.acme.id, &w.admin.id).unwrap().unwrap().active {
                // `other` won: make `admin` the survivor for the next round.
                app.set_user_active(&w.admin, true);
                app.set_user_active(&other, false);
            }
        }
    }

    async fn text_that_cannot_be_stored_is_not_found(app: &TestApp) {
        let w = World::new(app);
        for path in ["/user/api-keys/%00", "/user/api-keys/a%00b", "/user/api-keys/%00%00%00"] {
            let req = TestRequest::delete()
                .uri(path)
                .insert_header(("tenant", "acme"))
                .insert_header(("authorization", format!("Bearer {}", w.alice_key.1)));
            let reply = app.send(req).await;
            assert_eq!(reply.status, 404, "{path}: {}", reply.text);
            assert_eq!(reply.body["error"]["reason"], "ERR_NOT_FOUND");
        }
        for path in [format!("{KEYS}/%00"), format!("{KEYS}/%00/rotate")] {
            let method = if path.ends_with("rotate") { Method::POST } else { Method::DELETE };
            let reply = app.call(method, &path, "acme", w.admin_secret(), None).await;
            assert_400(&reply, "id", "ID is either missing, incorrect, or does not exist in the database.");
        }
        let reply = app.get(&format!("{KEYS}?UserId=%00"), "acme", w.admin_secret()).await;
        assert_400(&reply, "UserId", "User ID is empty or incorrect");
        let reply = app.post("/v1/users", "acme", w.admin_secret(), json!({"email": "a\u{0}b@acme.test"})).await;
        assert_eq!(reply.status, 400, "{}", reply.text);
        let reply = app.post(KEYS, "acme", w.admin_secret(), json!({"name": "a\u{0}bc", "user_id": w.alice.id, "expiration_date": today().to_string()})).await;
        assert_400(&reply, "name", "Name must not contain control characters.");
    }

    async fn authentication_comes_before_any_body(app: &TestApp) {
        let w = World::new(app);
        let user_path = format!("/v1/users/{}", w.alice.id);
        let rotate_path = format!("{KEYS}/{}/rotate", w.alice_key.0.id);
        let routes = [(Method::POST, KEYS), (Method::POST, "/v1/users"), (Method::PATCH, user_path.as_str()), (Method::POST, rotate_path.as_str())];
        let bodies: [Option<&str>; 5] = [Some(""), Some("{"), Some("[1]"), Some("\"x\""), Some("null")];
        let beta_key = w.beta_key.1.clone();
        for (method, path) in &routes {
            for body in bodies {
                for (tenant, key, field, message) in [
                    ("acme", "", "x-key", "API key missing"),
                    ("acme", "kw_unknown", "x-key", "Invalid API key"),
                    ("acme", beta_key.as_str(), "x-key", "Invalid API key"),
                    ("", w.admin_secret(), "tenant", "Tenant header missing or empty"),
                ] {
                    // Many tries: a race would lose some of them.
                    let tries = (0..8).map(|_| {
                        let mut req = TestRequest::default().method(method.clone()).uri(path).insert_header(("content-type", "application/json"));
                        if !tenant.is_empty() {
                            req = req.insert_header(("tenant", tenant));
                        }
                        if !key.is_empty() {
                            req = req.insert_header(("x-key", key));
                        }
                        if let Some(body) = body {
                            req = req.set_payload(body.to_owned());
                        }
                        app.send(req)
                    });
                    for reply in join_all(tries).await {
                        assert_401(&reply, field, message);
                    }
                }
            }
        }
    }
}

both_backends! {
    async fn two_instances_write_last_used_times_without_deadlock(app: &TestApp) {
        // Two instances queue the uses of the same keys and flush at the same
        // moment, each in one transaction: they must update the rows they share
        // in one order, else each holds a row the other waits for.
        use keyward::usage::UsageRecorder;
        let w = World::new(app);
        let keys: Vec<_> = (0..60).map(|_| app.key(&w.acme, &w.alice, KEY_MANAGER).0).collect();
        for round in 1..=ROUNDS as i64 {
            let at = app.now() + chrono::TimeDelta::seconds(61 * round);
            let recorders = [UsageRecorder::default(), UsageRecorder::default()];
            for recorder in &recorders {
                for key in &keys {
                    recorder.record(&w.acme.id, &key.id, at);
                }
            }
            let start = std::sync::Barrier::new(recorders.len());
            let flushed: Vec<_> = std::thread::scope(|s| {
                let flushes: Vec<_> = recorders
                    .iter()
                    .map(|recorder| {
                        let start = &start;
                        s.spawn(move || {
                            let mut conn = app.conn();
                            start.wait();
                            recorder.flush(&mut conn, at).map_err(|e| e.to_string())
                        })
                    })
                    .collect();
                flushes.into_iter().map(|f| f.join().unwrap()).collect()
            });
            assert_eq!(flushed, vec![Ok(keys.len()), Ok(keys.len())], "round {round}");
        }
    }
}
