//! Instant invalidation across instances (API.md section 6): a change made
//! through one instance, the CLI or plain SQL is honoured by another instance
//! that cached the key within 100 ms, on both backends.

use std::time::{Duration, Instant};

use actix_web::test::TestRequest;
use actix_web::web;
use chrono::Days;
use diesel::prelude::*;
use serde_json::json;

use crate::both_backends;
use crate::common::*;
use keyward::schema::api_keys;
use keyward::AppState;

const KEYS: &str = "/v1/user-api-keys";

/// A second instance on the same database, watching the change signal.
fn instance_b(app: &TestApp) -> web::Data<AppState> {
    let b = app.reconfigured(|_| {});
    b.clone().into_inner().watch_changes().unwrap();
    let started = Instant::now();
    while !b.changes.fresh() {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the change watch never became fresh"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    b
}

fn get(path: &str, key: &str) -> TestRequest {
    TestRequest::get()
        .uri(path)
        .insert_header(("tenant", "acme"))
        .insert_header(("x-key", key))
}

/// Makes B authenticate `key` (200) and keep it in its cache, before a change.
async fn warm(app: &TestApp, b: &web::Data<AppState>, path: &str, key: &str) {
    let digest = keyward::keys::secret::SecretDigest::of(key);
    for _ in 0..50 {
        assert_eq!(app.send_to(b.clone(), get(path, key)).await.status, 200);
        if b.auth_cache
            .get("acme", &digest, app.now(), |_| true)
            .is_some()
        {
            return;
        }
        actix_web::rt::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("B does not cache the key");
}

/// Waits 150 ms after a change (the contract allows 100), then expects B to
/// refuse; reports how long B actually took, by asking every 2 ms before that.
async fn refused_within_bound(
    app: &TestApp,
    b: &web::Data<AppState>,
    path: &str,
    key: &str,
    what: &str,
) {
    // A dead watch would pass the rest by reading the database every time:
    // the watch must be alive before and after (and the key cached: `warm`).
    assert!(b.changes.fresh(), "{what}: B's watch is not alive");
    let changed = Instant::now();
    let mut refused_after = None;
    while changed.elapsed() < Duration::from_millis(150) {
        if refused_after.is_none() && app.send_to(b.clone(), get(path, key)).await.status != 200 {
            refused_after = Some(changed.elapsed());
        }
        actix_web::rt::time::sleep(Duration::from_millis(2)).await;
    }
    let reply = app.send_to(b.clone(), get(path, key)).await;
    assert_eq!(
        reply.status, 401,
        "{what}: still accepted 150 ms after the change: {}",
        reply.text
    );
    assert!(
        b.changes.fresh(),
        "{what}: B's watch died, so this proves nothing about the signal"
    );
    eprintln!(
        "{what}: refused by the other instance after {:?}",
        refused_after.unwrap_or_default()
    );
}

both_backends! {
    async fn another_instances_revocation_is_honoured_within_100_ms(app: &TestApp) {
        let w = World::new(app);
        let b = instance_b(app);
        let own = format!("{KEYS}?UserId={}", w.alice.id);
        assert_eq!(app.send_to(b.clone(), get(&own, &w.alice_key.1)).await.status, 200);
        assert_eq!(b.auth_cache.len(), 1, "B caches the authentication");
        // A second request is answered from B's cache.
        warm(app, &b, &own, &w.alice_key.1).await;
        // Revoked through instance A.
        assert_eq!(app.delete(&format!("{KEYS}/{}", w.alice_key.0.id), "acme", w.admin_secret()).await.status, 200);
        refused_within_bound(app, &b, &own, &w.alice_key.1, "revocation through A").await;
    }

    async fn deactivation_and_sql_revocation_are_honoured_within_100_ms(app: &TestApp) {
        let w = World::new(app);
        let b = instance_b(app);
        let alice = format!("{KEYS}?UserId={}", w.alice.id);
        let bob = format!("{KEYS}?UserId={}", w.bob.id);
        warm(app, &b, &alice, &w.alice_key.1).await;
        assert_eq!(app.delete(&format!("/v1/users/{}", w.alice.id), "acme", w.admin_secret()).await.status, 200);
        refused_within_bound(app, &b, &alice, &w.alice_key.1, "deactivation through A").await;
        warm(app, &b, &bob, &w.bob_key.1).await;
        // An operator's SQL, as the CLI or any other process writes.
        diesel::update(api_keys::table.filter(api_keys::id.eq(&w.bob_key.0.id)))
            .set(api_keys::revoked_at.eq(app.now().naive_utc()))
            .execute(&mut *app.conn())
            .unwrap();
        refused_within_bound(app, &b, &bob, &w.bob_key.1, "revocation by SQL").await;
    }

    async fn a_policy_change_is_honoured_within_100_ms(app: &TestApp) {
        let w = World::new(app);
        let b = instance_b(app);
        let body = json!({"name": "abc", "user_id": w.alice.id, "expiration_date": (today() + Days::new(100)).to_string()});
        let post = || TestRequest::post().uri(KEYS).insert_header(("tenant", "acme")).insert_header(("x-key", w.alice_key.1.as_str())).set_json(body.clone());
        assert_eq!(app.send_to(b.clone(), post()).await.status, 201);
        // What the CLI's `tenant set` does.
        keyward::tenants::set_max_key_lifetime(&mut app.conn(), "acme", 30, app.now()).unwrap();
        std::thread::sleep(Duration::from_millis(150));
        let reply = app.send_to(b.clone(), post()).await;
        assert_eq!(reply.status, 400, "{}", reply.text);
    }

    async fn a_key_the_cli_creates_works_and_is_listed_on_the_very_next_request(app: &TestApp) {
        let w = World::new(app);
        let b = instance_b(app);
        let own = format!("{KEYS}?UserId={}", w.bob.id);
        assert_eq!(app.send_to(b.clone(), get(&own, &w.bob_key.1)).await.status, 200);
        let (key, secret) = app.key(&w.acme, &w.bob, KEY_MANAGER);
        let listed = app.send_to(b.clone(), get(&own, &w.bob_key.1)).await;
        assert!(listed.body.as_array().unwrap().iter().any(|k| k["id"] == key.id.as_str()), "{}", listed.text);
        assert_eq!(app.send_to(b.clone(), get(&own, &secret)).await.status, 200);
    }

    async fn a_stale_watch_reads_the_database(app: &TestApp) {
        let w = World::new(app);
        // No watch at all: nothing is answered from the cache, so a change
        // nobody signals is still seen at once.
        let b = app.reconfigured(|_| {});
        let own = format!("{KEYS}?UserId={}", w.alice.id);
        assert_eq!(app.send_to(b.clone(), get(&own, &w.alice_key.1)).await.status, 200);
        diesel::update(api_keys::table.filter(api_keys::id.eq(&w.alice_key.0.id)))
            .set(api_keys::revoked_at.eq(app.now().naive_utc()))
            .execute(&mut *app.conn())
            .unwrap();
        assert_eq!(app.send_to(b.clone(), get(&own, &w.alice_key.1)).await.status, 401);
    }
}

/// The `keyward_change_signal_age_seconds` B's `/metrics` shows.
async fn signal_age(app: &TestApp, b: &web::Data<AppState>) -> f64 {
    let metrics = app
        .send_to(b.clone(), TestRequest::get().uri("/metrics"))
        .await
        .text;
    metrics
        .lines()
        .find_map(|line| line.strip_prefix("keyward_change_signal_age_seconds "))
        .and_then(|age| age.trim().parse().ok())
        .expect("the metric is exposed")
}

both_backends! {
    async fn a_broken_watch_serves_nothing_stale_comes_back_and_is_seen(app: &TestApp) {
        let w = World::new(app);
        let b = instance_b(app);
        let own = format!("{KEYS}?UserId={}", w.alice.id);
        warm(app, &b, &own, &w.alice_key.1).await;
        assert!(signal_age(app, &b).await < 0.1, "a live watch's signal is recent");
        // Break the watch: on PostgreSQL its connection dies (as in a
        // restart); on SQLite the signal's table cannot be read (renamed:
        // its triggers follow the new name, so writes still signal).
        let postgres = app.database_url.starts_with("postgres");
        if postgres {
            diesel::sql_query(format!(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE application_name = '{}' AND pid <> pg_backend_pid()",
                keyward::db::WATCH_APPLICATION_NAME
            ))
            .execute(&mut *app.conn())
            .unwrap();
        } else {
            diesel::sql_query("ALTER TABLE tenant_changes RENAME TO tenant_changes_away")
                .execute(&mut *app.conn())
                .unwrap();
        }
        // Revoked while the watch is broken: refused within the bound all the same.
        diesel::update(api_keys::table.filter(api_keys::id.eq(&w.alice_key.0.id)))
            .set(api_keys::revoked_at.eq(app.now().naive_utc()))
            .execute(&mut *app.conn())
            .unwrap();
        let changed = Instant::now();
        let (mut stale, mut oldest) = (0, 0.0_f64);
        while changed.elapsed() < Duration::from_millis(300) {
            if changed.elapsed() > Duration::from_millis(100)
                && app.send_to(b.clone(), get(&own, &w.alice_key.1)).await.status == 200
            {
                stale += 1;
            }
            oldest = oldest.max(signal_age(app, &b).await);
            actix_web::rt::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(stale, 0, "a revoked key was accepted more than 100 ms after its revocation");
        assert!(oldest > 0.1, "the metric saw the watch stop: oldest age {oldest}");
        if !postgres {
            diesel::sql_query("ALTER TABLE tenant_changes_away RENAME TO tenant_changes")
                .execute(&mut *app.conn())
                .unwrap();
        }
        // Back on its own within a second, and the cache answers again.
        let repaired = Instant::now();
        while !b.changes.fresh() {
            assert!(repaired.elapsed() < Duration::from_secs(1), "the change watch did not come back within a second");
            actix_web::rt::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(signal_age(app, &b).await < 0.1, "the metric saw the watch come back");
        assert_eq!(app.send_to(b.clone(), get(&own, &w.alice_key.1)).await.status, 401);
        let bob = format!("{KEYS}?UserId={}", w.bob.id);
        warm(app, &b, &bob, &w.bob_key.1).await;
        // And it watches again: a revocation now is seen through the signal.
        diesel::update(api_keys::table.filter(api_keys::id.eq(&w.bob_key.0.id)))
            .set(api_keys::revoked_at.eq(app.now().naive_utc()))
            .execute(&mut *app.conn())
            .unwrap();
        refused_within_bound(app, &b, &bob, &w.bob_key.1, "revocation after the watch came back").await;
    }

    async fn a_bulk_write_costs_the_signal_a_row_per_tenant(app: &TestApp) {
        let w = World::new(app);
        let b = instance_b(app);
        let bob = format!("{KEYS}?UserId={}", w.bob.id);
        let postgres = app.database_url.starts_with("postgres");
        let signal_rows = |app: &TestApp| -> i64 {
            let table = if postgres { "change_log" } else { "tenant_changes" };
            diesel::sql_query(format!("SELECT count(*) AS n FROM {table}"))
                .get_result::<Count>(&mut *app.conn())
                .unwrap()
                .n
        };
        let before = signal_rows(app);
        // 20 000 keys for alice in one statement, as an operator's import would.
        diesel::sql_query(
            "INSERT INTO api_keys (tenant_id, id, user_id, name, secret_hash, scopes, expires_at, created_at) \
             SELECT u.tenant_id, 'bulk-' || n, u.id, 'bulk', 'hash-' || n, '[\"public_api\"]', \
                    '2030-01-01 00:00:00', '2026-01-01 00:00:00' \
             FROM users u, (WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < 20000) SELECT n FROM s) s \
             WHERE u.id = $1",
        )
        .bind::<diesel::sql_types::Text, _>(&w.alice.id)
        .execute(&mut *app.conn())
        .unwrap();
        let added = signal_rows(app) - before;
        assert!(added <= 1, "20 000 rows cost the signal {added} rows");
        // The signal still works after it.
        warm(app, &b, &bob, &w.bob_key.1).await;
        diesel::update(api_keys::table.filter(api_keys::id.eq(&w.bob_key.0.id)))
            .set(api_keys::revoked_at.eq(app.now().naive_utc()))
            .execute(&mut *app.conn())
            .unwrap();
        refused_within_bound(app, &b, &bob, &w.bob_key.1, "revocation after a bulk write").await;
    }
}

#[derive(diesel::QueryableByName)]
struct Count {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

/// On Citus the triggers cannot run in the shards (`migrate --citus` drops
/// them): keyward's own writes must signal themselves. Without the triggers,
/// a revocation, a deactivation and a new key made through instance A are
/// honoured by instance B within the bound.
#[actix_rt::test]
async fn without_triggers_keywards_own_writes_signal_themselves_postgres() {
    let Some(app) = TestApp::postgres() else {
        return skip_postgres();
    };
    assert_eq!(
        keyward::db::signal_triggers(&mut app.conn()).unwrap().len(),
        9
    );
    keyward::db::drop_signal_triggers(&mut app.conn()).unwrap();
    // Dropped: a second run (`migrate --citus` after an upgrade) has none to
    // drop, and sends no trigger command, which Citus would refuse.
    assert_eq!(
        keyward::db::signal_triggers(&mut app.conn()).unwrap(),
        vec![]
    );
    keyward::db::drop_signal_triggers(&mut app.conn()).unwrap();
    let w = World::new(&app);
    let b = instance_b(&app);
    let alice = format!("{KEYS}?UserId={}", w.alice.id);
    let bob = format!("{KEYS}?UserId={}", w.bob.id);
    warm(&app, &b, &alice, &w.alice_key.1).await;
    let revoke = format!("{KEYS}/{}", w.alice_key.0.id);
    assert_eq!(
        app.delete(&revoke, "acme", w.admin_secret()).await.status,
        200
    );
    refused_within_bound(
        &app,
        &b,
        &alice,
        &w.alice_key.1,
        "revocation without triggers",
    )
    .await;
    warm(&app, &b, &bob, &w.bob_key.1).await;
    let deactivate = format!("/v1/users/{}", w.bob.id);
    assert_eq!(
        app.delete(&deactivate, "acme", w.admin_secret())
            .await
            .status,
        200
    );
    refused_within_bound(
        &app,
        &b,
        &bob,
        &w.bob_key.1,
        "deactivation without triggers",
    )
    .await;
}
