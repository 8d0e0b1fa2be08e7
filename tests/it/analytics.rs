//! Usage analytics (issue 20, API.md section 10): verifications counted per
//! key, minute and outcome; `GET /v1/usage`; roll-up and pruning.

use std::time::{Duration, Instant};

use actix_web::test::TestRequest;
use chrono::{DateTime, TimeDelta, Utc};
use serde_json::{json, Value};

use crate::both_backends;
use crate::common::*;
use crate::operability::{http_get, Served};
use keyward::analytics;
use keyward::keys::Scope;

const ZERO: [i64; 5] = [0; 5];

/// `/v1/auth` with `key` in acme, optionally asking for `scope`.
async fn verify(app: &TestApp, key: &str, scope: Option<&str>) -> u16 {
    let path = match scope {
        Some(scope) => format!("/v1/auth?scope={scope}"),
        None => "/v1/auth".to_owned(),
    };
    app.get(&path, "acme", key).await.status.as_u16()
}

/// Writes every instance's tally now.
fn flush(app: &TestApp, states: &[&actix_web::web::Data<keyward::AppState>]) {
    for state in states {
        state.tally.flush(&mut app.conn()).unwrap();
    }
}

fn rfc(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// The five counts of a bucket or of the totals.
fn five(v: &Value) -> [i64; 5] {
    [
        "valid",
        "forbidden",
        "rate_limited",
        "usage_exceeded",
        "invalid",
    ]
    .map(|name| v[name].as_i64().unwrap_or_else(|| panic!("{name} in {v}")))
}

async fn usage(app: &TestApp, key: &str, query: &str) -> Reply {
    app.get(&format!("/v1/usage?{query}"), "acme", key).await
}

async fn totals(app: &TestApp, key: &str, query: &str) -> [i64; 5] {
    let reply = usage(app, key, query).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    five(&reply.body["totals"])
}

both_backends! {
    async fn every_outcome_is_counted_exactly_for_its_key(app: &TestApp) {
        let w = World::new(app);
        let admin = w.admin_secret().to_owned();
        let (alice_key, alice) = (&w.alice_key.0, w.alice_key.1.clone());
        // Revoked, expired, and of an inactive user: invalid.
        let (revoked, revoked_secret) = app.key(&w.acme, &w.admin, &[Scope::PublicApi]);
        let path = format!("/v1/user-api-keys/{}", revoked.id);
        assert_eq!(app.delete(&path, "acme", w.admin_secret()).await.status, 200);
        let (expired, expired_secret) = app.key_until(&w.acme, &w.admin, &[Scope::PublicApi], today());
        let carol = app.user(&w.acme, "carol@acme.test", &["Default users"]);
        let (inactive, inactive_secret) = app.key(&w.acme, &carol, &[Scope::PublicApi]);
        app.set_user_active(&carol, false);
        app.clock.set(noon() + TimeDelta::hours(13)); // 01:00 the next day: `expired` has expired
        let start = app.now();

        for _ in 0..3 {
            assert_eq!(verify(app, &admin, None).await, 200);
        }
        assert_eq!(verify(app, &alice, Some("public_api,user_key_management")).await, 200);
        for _ in 0..2 {
            assert_eq!(verify(app, &alice, Some("user_management")).await, 403);
        }
        assert_eq!(verify(app, &revoked_secret, None).await, 401);
        assert_eq!(verify(app, &expired_secret, None).await, 401);
        assert_eq!(verify(app, &expired_secret, None).await, 401);
        assert_eq!(verify(app, &inactive_secret, None).await, 401);
        // Not counted: an unknown key, another tenant's key, an unknown scope name,
        // and every other endpoint.
        let unknown = "kw_00000000000000000000000000000000000000";
        assert_eq!(verify(app, unknown, None).await, 401);
        assert_eq!(verify(app, &w.beta_key.1, None).await, 401);
        assert_eq!(verify(app, &admin, Some("nope")).await, 400);
        assert_eq!(app.get("/v1/user-api-keys", "acme", &admin).await.status, 200);
        flush(app, &[&app.state]);

        let minute = format!("granularity=minute&from={}&to={}", rfc(start), rfc(start + TimeDelta::minutes(1)));
        let of = |key: &str| format!("{minute}&key_id={key}");
        assert_eq!(totals(app, &admin, &of(&w.admin_key.0.id)).await, [3, 0, 0, 0, 0]);
        assert_eq!(totals(app, &admin, &of(&alice_key.id)).await, [1, 2, 0, 0, 0]);
        assert_eq!(totals(app, &admin, &of(&revoked.id)).await, [0, 0, 0, 0, 1]);
        assert_eq!(totals(app, &admin, &of(&expired.id)).await, [0, 0, 0, 0, 2]);
        assert_eq!(totals(app, &admin, &of(&inactive.id)).await, [0, 0, 0, 0, 1]);
        assert_eq!(totals(app, &admin, &of(&w.bob_key.0.id)).await, ZERO);
        // The tenant as a whole, by default per hour over the last 24 hours.
        let reply = usage(app, &admin, "").await;
        assert_eq!(reply.status, 200, "{}", reply.text);
        assert_eq!(reply.body["granularity"], "hour");
        assert_eq!(reply.body["to"], rfc(start + TimeDelta::hours(1)));
        assert_eq!(reply.body["from"], rfc(start - TimeDelta::hours(23)));
        let series = reply.body["series"].as_array().unwrap();
        assert_eq!(series.len(), 24);
        assert_eq!(series[23]["start"], rfc(start));
        assert_eq!(five(&series[23]), [4, 2, 0, 0, 4]);
        assert!(series[..23].iter().all(|b| five(b) == ZERO));
        assert_eq!(five(&reply.body["totals"]), [4, 2, 0, 0, 4]);
        // The other tenant saw nothing (its key sent to acme is not its verification).
        let beta = app.get("/v1/usage", "beta", &w.beta_key.1).await;
        assert_eq!(five(&beta.body["totals"]), ZERO);
        // Alice's own.
        assert_eq!(totals(app, &alice, "").await, [1, 2, 0, 0, 0]);
        // /metrics, without a tenant or key label.
        let metrics = app.send(TestRequest::get().uri("/metrics")).await.text;
        for line in [
            r#"keyward_verifications_total{outcome="valid"} 4"#,
            r#"keyward_verifications_total{outcome="forbidden"} 2"#,
            r#"keyward_verifications_total{outcome="invalid"} 4"#,
            r#"keyward_verifications_total{outcome="rate_limited"} 0"#,
            r#"keyward_verifications_total{outcome="usage_exceeded"} 0"#,
        ] {
            assert!(metrics.contains(line), "missing {line} in\n{metrics}");
        }
        // Estuary's stats: the calling user's last 24 hours.
        let stats = app.get("/user/stats", "acme", &alice).await;
        assert_eq!(stats.status, 200, "{}", stats.text);
        assert_eq!(
            stats.body["verificationsLast24h"],
            json!({"valid": 1, "forbidden": 2, "rateLimited": 0, "usageExceeded": 0, "invalid": 0})
        );
    }

    async fn two_instances_add_up_and_count_once(app: &TestApp) {
        let w = World::new(app);
        let admin = w.admin_secret().to_owned();
        let other = app.reconfigured(|_| {});
        for _ in 0..5 {
            assert_eq!(verify(app, &admin, None).await, 200);
        }
        for _ in 0..7 {
            let req = TestRequest::get().uri("/v1/auth").insert_header(("tenant", "acme")).insert_header(("x-key", admin.as_str()));
            assert_eq!(app.send_to(other.clone(), req).await.status, 200);
        }
        flush(app, &[&app.state, &other]);
        // A second flush writes nothing more: counted once.
        flush(app, &[&app.state, &other]);
        let query = format!("key_id={}", w.admin_key.0.id);
        assert_eq!(totals(app, &admin, &query).await, [12, 0, 0, 0, 0]);
        // More in the same minute, through both, add to the same bucket.
        verify(app, &admin, None).await;
        let req = TestRequest::get().uri("/v1/auth").insert_header(("tenant", "acme")).insert_header(("x-key", admin.as_str()));
        app.send_to(other.clone(), req).await;
        flush(app, &[&other, &app.state]);
        assert_eq!(totals(app, &admin, &query).await, [14, 0, 0, 0, 0]);
    }

    async fn counts_are_readable_within_ten_seconds_through_the_flusher(app: &TestApp) {
        let w = World::new(app);
        let admin = w.admin_secret().to_owned();
        app.state.clone().into_inner().count_usage().unwrap();
        for _ in 0..4 {
            assert_eq!(verify(app, &admin, None).await, 200);
        }
        assert_eq!(verify(app, &w.alice_key.1, Some("user_management")).await, 403);
        let verified = Instant::now();
        loop {
            if totals(app, &admin, "").await == [4, 1, 0, 0, 0] {
                break;
            }
            assert!(verified.elapsed() < Duration::from_secs(10), "counts not written within 10 s");
            actix_rt::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn minutes_roll_up_into_hours_and_days_and_are_pruned(app: &TestApp) {
        let w = World::new(app);
        // A key that still works two years on.
        keyward::tenants::set_max_key_lifetime(&mut app.conn(), "acme", 3650, app.now()).unwrap();
        let acme = keyward::tenants::get_by_name(&mut app.conn(), "acme").unwrap();
        let (reader, admin) = app.key_until(&acme, &w.admin, &Scope::ALL, today() + chrono::Days::new(1000));
        let t0 = noon() + TimeDelta::hours(1);
        // 2 at 13:00, 3 at 13:59, 1 at 14:30, 4 the next day at 01:10.
        for (at, n) in [
            (t0, 2),
            (t0 + TimeDelta::minutes(59), 3),
            (t0 + TimeDelta::minutes(90), 1),
            (t0 + TimeDelta::minutes(730), 4),
        ] {
            app.clock.set(at);
            for _ in 0..n {
                assert_eq!(verify(app, &admin, None).await, 200);
            }
        }
        flush(app, &[&app.state]);
        let key = format!("key_id={}", reader.id);
        let hours = format!("{key}&granularity=hour&from={}&to={}", rfc(t0), rfc(t0 + TimeDelta::hours(24)));
        let days = format!("{key}&granularity=day&from={}&to={}", rfc(t0), rfc(t0 + TimeDelta::days(2)));
        let check = |reply: &Reply, expected: &[(usize, [i64; 5])]| {
            let series = reply.body["series"].as_array().unwrap();
            for (i, bucket) in series.iter().enumerate() {
                let want = expected.iter().find(|(at, _)| *at == i).map_or(ZERO, |(_, c)| *c);
                assert_eq!(five(bucket), want, "bucket {i} of {}", reply.text);
            }
        };
        let hourly = [(0, [5, 0, 0, 0, 0]), (1, [1, 0, 0, 0, 0]), (12, [4, 0, 0, 0, 0])];
        let daily = [(0, [6, 0, 0, 0, 0]), (1, [4, 0, 0, 0, 0])];
        // Before any roll-up, from the minutes; after each, the same answers.
        for step in [TimeDelta::hours(1), TimeDelta::hours(49), TimeDelta::days(3)] {
            app.clock.set(t0 + step);
            let report = analytics::roll_up(&mut app.conn(), app.now()).unwrap();
            assert!(report.claimed);
            // Twice: recomputed, not added.
            analytics::roll_up(&mut app.conn(), app.now()).unwrap();
            check(&usage(app, &admin, &hours).await, &hourly);
            check(&usage(app, &admin, &days).await, &daily);
        }
        // The minutes are gone (kept 48 hours), the hours still answer.
        let minutes = format!("{key}&granularity=minute&from={}&to={}", rfc(t0), rfc(t0 + TimeDelta::hours(24)));
        assert_eq!(totals(app, &admin, &minutes).await, ZERO);
        assert_eq!(totals(app, &admin, &hours).await, [10, 0, 0, 0, 0]);
        // Hours are kept 90 days; days 2 years.
        app.clock.set(t0 + TimeDelta::days(92));
        analytics::roll_up(&mut app.conn(), app.now()).unwrap();
        assert_eq!(totals(app, &admin, &hours).await, ZERO);
        check(&usage(app, &admin, &days).await, &daily);
        app.clock.set(t0 + TimeDelta::days(733));
        analytics::roll_up(&mut app.conn(), app.now()).unwrap();
        assert_eq!(totals(app, &admin, &days).await, ZERO);
    }

    async fn two_instances_rolling_up_at_once_count_each_minute_once(app: &TestApp) {
        use diesel::prelude::*;
        use keyward::schema::usage_rollups;
        let w = World::new(app);
        let admin = w.admin_secret().to_owned();
        let t0 = noon() + TimeDelta::hours(1);
        app.clock.set(t0);
        for _ in 0..7 {
            assert_eq!(verify(app, &admin, None).await, 200);
        }
        flush(app, &[&app.state]);
        let hours = format!("key_id={}&granularity=hour&from={}&to={}", w.admin_key.0.id, rfc(t0),
            rfc(t0 + TimeDelta::hours(3)));
        // Rounds of two instances (threads, each its own connection) at once.
        for round in 1..=5 {
            app.clock.set(t0 + TimeDelta::hours(2) + TimeDelta::minutes(round));
            let now = app.now();
            let barrier = std::sync::Arc::new(std::sync::Barrier::new(2));
            let runs: Vec<_> = (0..2).map(|_| {
                let (pool, barrier) = (app.state.pool.clone(), barrier.clone());
                std::thread::spawn(move || {
                    let mut conn = pool.get().unwrap();
                    barrier.wait();
                    analytics::roll_up(&mut conn, now).unwrap()
                })
            }).collect();
            let reports: Vec<_> = runs.into_iter().map(|r| r.join().unwrap()).collect();
            assert!(reports.iter().any(|r| r.claimed), "round {round}: {reports:?}");
            assert_eq!(totals(app, &admin, &hours).await, [7, 0, 0, 0, 0], "round {round}");
        }
        // While one instance holds the claim, another does nothing.
        let now = app.now();
        diesel::update(usage_rollups::table)
            .set(usage_rollups::claimed_until.eq(now.timestamp() + 60))
            .execute(&mut *app.conn())
            .unwrap();
        let held = analytics::roll_up(&mut app.conn(), now).unwrap();
        assert!(!held.claimed && held.rolled == 0 && held.pruned == 0, "{held:?}");
    }

    async fn who_may_read_whose_usage(app: &TestApp) {
        let w = World::new(app);
        let (admin, alice) = (w.admin_secret().to_owned(), w.alice_key.1.clone());
        verify(app, &alice, None).await;
        verify(app, &w.bob_key.1, None).await;
        verify(app, &admin, None).await;
        flush(app, &[&app.state]);
        // Administrators: the tenant, any key, any user.
        assert_eq!(totals(app, &admin, "").await, [3, 0, 0, 0, 0]);
        assert_eq!(totals(app, &admin, &format!("user_id={}", w.bob.id)).await, [1, 0, 0, 0, 0]);
        assert_eq!(totals(app, &admin, &format!("key_id={}", w.bob_key.0.id)).await, [1, 0, 0, 0, 0]);
        // Anyone else: only their own.
        assert_eq!(totals(app, &alice, "").await, [1, 0, 0, 0, 0]);
        assert_eq!(totals(app, &alice, &format!("user_id={}", w.alice.id)).await, [1, 0, 0, 0, 0]);
        assert_eq!(totals(app, &alice, &format!("key_id={}", w.alice_key.0.id)).await, [1, 0, 0, 0, 0]);
        let title = "Only Administrators may read the usage of another user's key";
        assert_403(&usage(app, &alice, &format!("key_id={}", w.bob_key.0.id)).await, title);
        assert_403(&usage(app, &alice, &format!("key_id={}", w.admin_key.0.id)).await, title);
        let title = "Only Administrators may read the usage of another user";
        assert_403(&usage(app, &alice, &format!("user_id={}", w.bob.id)).await, title);
        // Unknown and another tenant's: the same 400.
        for id in [w.beta_key.0.id.clone(), uuid::Uuid::new_v4().to_string()] {
            assert_400(&usage(app, &admin, &format!("key_id={id}")).await, "key_id", analytics::KEY_UNKNOWN);
        }
        for id in [w.beta_admin.id.clone(), uuid::Uuid::new_v4().to_string()] {
            assert_400(&usage(app, &admin, &format!("user_id={id}")).await, "user_id", analytics::USER_UNKNOWN);
        }
        // Revoked keys and inactive users stay readable.
        let path = format!("/v1/user-api-keys/{}", w.bob_key.0.id);
        assert_eq!(app.delete(&path, "acme", &admin).await.status, 200);
        app.set_user_active(&w.bob, false);
        assert_eq!(totals(app, &admin, &format!("key_id={}", w.bob_key.0.id)).await, [1, 0, 0, 0, 0]);
        assert_eq!(totals(app, &admin, &format!("user_id={}", w.bob.id)).await, [1, 0, 0, 0, 0]);
        // The scope user_key_management is needed.
        let (_, public) = app.key(&w.acme, &w.admin, &[Scope::PublicApi]);
        assert_403(&usage(app, &public, "").await, "The calling key lacks the user_key_management scope");
    }

    async fn bad_parameters_are_400_naming_them(app: &TestApp) {
        let w = World::new(app);
        let admin = w.admin_secret().to_owned();
        let now = app.now();
        for (query, field, message) in [
            ("granularity=week", "granularity", "granularity must be one of: minute, hour, day."),
            ("from=yesterday", "from", "from must be an RFC 3339 instant."),
            ("to=2026-06-15", "to", "to must be an RFC 3339 instant."),
            ("key_id=nope", "key_id", "key_id must be a key ID."),
            ("user_id=1", "user_id", "user_id must be a user ID."),
        ] {
            assert_400(&usage(app, &admin, query).await, field, message);
        }
        let span = |g: &str, from: DateTime<Utc>, to: DateTime<Utc>| {
            format!("granularity={g}&from={}&to={}", rfc(from), rfc(to))
        };
        for query in [
            span("minute", now - TimeDelta::hours(48) - TimeDelta::minutes(1), now),
            span("hour", now - TimeDelta::days(91), now),
            span("day", now - TimeDelta::days(731), now),
            span("hour", now, now),
            span("hour", now, now - TimeDelta::hours(2)),
            // Equal once rounded down to the hour.
            span("hour", now + TimeDelta::minutes(1), now + TimeDelta::minutes(59)),
        ] {
            assert_400(&usage(app, &admin, &query).await, "from", analytics::SPAN_INVALID);
        }
        // The longest spans are fine; `to` may lie in the future; offsets are read.
        for query in [
            span("minute", now - TimeDelta::hours(48), now),
            span("hour", now - TimeDelta::days(90), now),
            span("day", now - TimeDelta::days(730), now),
            span("hour", now, now + TimeDelta::days(3)),
            "granularity=minute&from=2026-06-15T14:00:30%2B02:00&to=2026-06-15T12:05:00Z".to_owned(),
        ] {
            assert_eq!(usage(app, &admin, &query).await.status, 200, "{query}");
        }
        let reply = usage(app, &admin, "granularity=minute&from=2026-06-15T14:00:30%2B02:00&to=2026-06-15T12:05:00Z").await;
        assert_eq!(reply.body["from"], "2026-06-15T12:00:00Z");
        assert_eq!(reply.body["series"].as_array().unwrap().len(), 5);
    }
}

/// The real binary: what was counted before SIGTERM is in the database after.
#[::core::prelude::v1::test]
fn graceful_shutdown_writes_every_count() {
    let mut server = Served::start();
    let key = server.field("key");
    let headers = [("tenant", "acme"), ("x-key", key.as_str())];
    for _ in 0..25 {
        assert_eq!(http_get(server.port, "/v1/auth", &headers).unwrap().0, 200);
    }
    // An unknown scope is 400: not an outcome, not counted.
    let unknown_scope = "/v1/auth?scope=nope";
    assert_eq!(
        http_get(server.port, unknown_scope, &headers).unwrap().0,
        400
    );
    let (status, log) = server.stop();
    assert!(status.success(), "exit {status:?}\n{log}");
    let pool = keyward::db::connect(
        &keyward::config::DatabaseUrl::parse(&server.url).unwrap(),
        1,
    )
    .unwrap();
    let mut conn = pool.get().unwrap();
    use diesel::prelude::*;
    use keyward::schema::usage_minutes::dsl;
    let counted: Vec<i64> = dsl::usage_minutes
        .filter(dsl::key_id.eq(server.field("id")))
        .select(dsl::valid)
        .load(&mut conn)
        .unwrap();
    assert_eq!(counted.iter().sum::<i64>(), 25, "{log}");
}
