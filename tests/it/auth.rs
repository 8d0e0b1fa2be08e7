//! Authentication (API.md section 2) and its 401 answers (section 3).

use actix_web::test::TestRequest;
use chrono::{Days, NaiveTime, TimeDelta};
use serde_json::json;

use crate::both_backends;
use crate::common::*;
use keyward::keys::Scope;

const LIST: &str = "/v1/user-api-keys";

both_backends! {
    async fn missing_tenant_header(app: &TestApp) {
        let w = World::new(app);
        let reply = app.get(LIST, "", w.admin_secret()).await;
        assert_401(&reply, "tenant", "Tenant header missing or empty");
        let empty = app.send(TestRequest::get().uri(LIST).insert_header(("tenant", "")).insert_header(("x-key", w.admin_secret()))).await;
        assert_401(&empty, "tenant", "Tenant header missing or empty");
    }

    async fn unknown_tenant(app: &TestApp) {
        let w = World::new(app);
        for tenant in ["nope", "Acme", "a", "acme_1", "x".repeat(100).as_str()] {
            let reply = app.get(LIST, tenant, w.admin_secret()).await;
            assert_401(&reply, "tenant", "Unknown tenant specified");
        }
    }

    async fn missing_key(app: &TestApp) {
        World::new(app);
        assert_401(&app.get(LIST, "acme", "").await, "x-key", "API key missing");
    }

    async fn malformed_and_unknown_keys(app: &TestApp) {
        let w = World::new(app);
        let secret = w.admin_secret();
        let mut wrong_checksum = secret.to_owned();
        let last = wrong_checksum.pop().unwrap();
        wrong_checksum.push(if last == '0' { '1' } else { '0' });
        // Well-formed (valid checksum) but never issued:
        let unknown = keyward::keys::secret::Secret::generate("kw");
        let other_prefix = keyward::keys::secret::Secret::generate("zz");
        for key in [
            "garbage",
            "kw_",
            &wrong_checksum,
            &secret[..secret.len() - 1],
            unknown.expose(),
            other_prefix.expose(),
        ] {
            assert_401(&app.get(LIST, "acme", key).await, "x-key", "Invalid API key");
        }
    }

    async fn the_three_key_headers(app: &TestApp) {
        let w = World::new(app);
        let secret = w.admin_secret();
        let base = || TestRequest::get().uri(LIST).insert_header(("tenant", "acme"));
        for req in [
            base().insert_header(("x-key", secret)),
            base().insert_header(("x-api-key", secret)),
            base().insert_header(("authorization", format!("Bearer {secret}"))),
            base()
                .insert_header(("x-key", secret))
                .insert_header(("x-api-key", secret))
                .insert_header(("authorization", format!("Bearer {secret}"))),
        ] {
            assert_eq!(app.send(req).await.status, 200);
        }
        let other = &w.alice_key.1;
        for req in [
            base().insert_header(("x-key", secret)).insert_header(("x-api-key", other.as_str())),
            base().insert_header(("x-key", secret)).insert_header(("authorization", format!("Bearer {other}"))),
            base().insert_header(("authorization", format!("Basic {secret}"))),
        ] {
            assert_401(&app.send(req).await, "x-key", "Invalid API key");
        }
    }

    async fn another_tenants_key_is_an_unknown_key(app: &TestApp) {
        let w = World::new(app);
        let foreign = app.get(LIST, "acme", &w.beta_key.1).await;
        let unknown = app.get(LIST, "acme", keyward::keys::secret::Secret::generate("kw").expose()).await;
        assert_401(&foreign, "x-key", "Invalid API key");
        assert_eq!(foreign.body_without_trace(), unknown.body_without_trace());
        assert_eq!(app.get(LIST, &w.beta.name, &w.beta_key.1).await.status, 200);
    }

    async fn a_key_works_through_its_last_day(app: &TestApp) {
        let w = World::new(app);
        let (_, secret) = app.key_until(&w.acme, &w.admin, &Scope::ALL, today());
        assert_eq!(app.get(LIST, "acme", &secret).await.status, 200);
        let next_day = (today() + Days::new(1)).and_time(NaiveTime::MIN).and_utc();
        app.clock.set(next_day - TimeDelta::microseconds(1));
        assert_eq!(app.get(LIST, "acme", &secret).await.status, 200);
        app.clock.set(next_day);
        assert_401(&app.get(LIST, "acme", &secret).await, "x-key", "API key expired");
        // The other keys still work.
        assert_eq!(app.get(LIST, "acme", w.admin_secret()).await.status, 200);
    }

    async fn an_inactive_users_keys_are_invalid(app: &TestApp) {
        let w = World::new(app);
        app.set_user_active(&w.alice, false);
        assert_401(&app.get(LIST, "acme", &w.alice_key.1).await, "x-key", "Invalid API key");
        app.set_user_active(&w.alice, true);
        let own = format!("{LIST}?UserId={}", w.alice.id);
        assert_eq!(app.get(&own, "acme", &w.alice_key.1).await.status, 200);
    }

    async fn revocation_takes_effect_on_the_next_request(app: &TestApp) {
        let w = World::new(app);
        let (id, secret) = (&w.alice_key.0.id, &w.alice_key.1);
        let reply = app.delete(&format!("{LIST}/{id}"), "acme", secret).await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.body, json!({"result": "OK"}));
        assert_401(&app.get(LIST, "acme", secret).await, "x-key", "Invalid API key");
    }

    async fn a_revoked_and_expired_key_is_invalid_not_expired(app: &TestApp) {
        let w = World::new(app);
        let (key, secret) = app.key_until(&w.acme, &w.alice, KEY_MANAGER, today());
        assert_eq!(app.delete(&format!("{LIST}/{}", key.id), "acme", &secret).await.status, 200);
        app.clock.advance(TimeDelta::days(2));
        assert_401(&app.get(LIST, "acme", &secret).await, "x-key", "Invalid API key");
    }

    async fn a_pinned_deployment_needs_no_tenant_header(app: &TestApp) {
        let w = World::new(app);
        let pinned = app.reconfigured(|s| s.tenant = "acme".to_owned());
        let own = format!("{LIST}?UserId={}", w.alice.id);
        let bare = TestRequest::get().uri(&own).insert_header(("x-key", w.alice_key.1.as_str()));
        assert_eq!(app.send_to(pinned.clone(), bare).await.status, 200);
        let named = TestRequest::get().uri(&own).insert_header(("x-key", w.alice_key.1.as_str())).insert_header(("tenant", "acme"));
        assert_eq!(app.send_to(pinned.clone(), named).await.status, 200);
        let wrong = TestRequest::get().uri(LIST).insert_header(("x-key", w.beta_key.1.as_str())).insert_header(("tenant", "beta"));
        assert_401(&app.send_to(pinned.clone(), wrong).await, "tenant", "Unknown tenant specified");
        let foreign = TestRequest::get().uri(LIST).insert_header(("x-key", w.beta_key.1.as_str()));
        assert_401(&app.send_to(pinned, foreign).await, "x-key", "Invalid API key");
    }

    async fn trace_id_is_the_request_id(app: &TestApp) {
        World::new(app);
        let reply = app.send(TestRequest::get().uri(LIST).insert_header(("x-request-id", "client-42"))).await;
        assert_eq!(reply.header("x-request-id"), Some("client-42"));
        assert_eq!(reply.body["traceId"], "client-42");
    }
}

/// Changes made by another process (the CLI, a second instance) straight in
/// the database: honoured within one second, whatever this instance cached.
mod changes_from_another_process {
    use super::*;
    use diesel::prelude::*;
    use keyward::schema::{api_keys, tenants};

    both_backends! {
        async fn revocation_is_honoured_within_a_second(app: &TestApp) {
            let w = World::new(app);
            let own = format!("{LIST}?UserId={}", w.alice.id);
            assert_eq!(app.get(&own, "acme", &w.alice_key.1).await.status, 200);
            diesel::update(api_keys::table.filter(api_keys::id.eq(&w.alice_key.0.id)))
                .set(api_keys::revoked_at.eq(app.now().naive_utc()))
                .execute(&mut *app.conn())
                .unwrap();
            app.clock.advance(TimeDelta::seconds(1));
            assert_401(&app.get(&own, "acme", &w.alice_key.1).await, "x-key", "Invalid API key");
        }

        async fn deactivation_is_honoured_within_a_second(app: &TestApp) {
            let w = World::new(app);
            let own = format!("{LIST}?UserId={}", w.alice.id);
            assert_eq!(app.get(&own, "acme", &w.alice_key.1).await.status, 200);
            app.set_user_active(&w.alice, false);
            app.clock.advance(TimeDelta::seconds(1));
            assert_401(&app.get(&own, "acme", &w.alice_key.1).await, "x-key", "Invalid API key");
        }

        async fn a_policy_change_is_honoured_within_a_second(app: &TestApp) {
            let w = World::new(app);
            let body = |days| json!({"name": "abc", "user_id": w.alice.id, "expiration_date": (today() + Days::new(days)).to_string()});
            assert_eq!(app.post(LIST, "acme", &w.alice_key.1, body(100)).await.status, 201);
            diesel::update(tenants::table.filter(tenants::id.eq(&w.acme.id)))
                .set(tenants::max_key_lifetime_days.eq(30))
                .execute(&mut *app.conn())
                .unwrap();
            app.clock.advance(TimeDelta::seconds(1));
            assert_eq!(app.post(LIST, "acme", &w.alice_key.1, body(100)).await.status, 400);
        }

        async fn a_new_key_works_on_the_very_next_request(app: &TestApp) {
            let w = World::new(app);
            // A failed attempt is not remembered: the key made right after it works at once.
            let (key, secret) = app.key(&w.acme, &w.bob, KEY_MANAGER);
            diesel::update(api_keys::table.filter(api_keys::id.eq(&key.id)))
                .set(api_keys::revoked_at.eq(app.now().naive_utc()))
                .execute(&mut *app.conn())
                .unwrap();
            assert_401(&app.get(LIST, "acme", &secret).await, "x-key", "Invalid API key");
            diesel::update(api_keys::table.filter(api_keys::id.eq(&key.id)))
                .set(api_keys::revoked_at.eq(None::<chrono::NaiveDateTime>))
                .execute(&mut *app.conn())
                .unwrap();
            let own = format!("{LIST}?UserId={}", w.bob.id);
            assert_eq!(app.get(&own, "acme", &secret).await.status, 200);
        }
    }
}

both_backends! {
    async fn this_instances_changes_take_effect_on_the_very_next_request(app: &TestApp) {
        let w = World::new(app);
        let own = format!("{LIST}?UserId={}", w.bob.id);
        // Cached by a first use, then revoked, rotated or deactivated through this instance.
        assert_eq!(app.get(&own, "acme", &w.bob_key.1).await.status, 200);
        app.delete(&format!("{LIST}/{}", w.bob_key.0.id), "acme", w.admin_secret()).await;
        assert_401(&app.get(&own, "acme", &w.bob_key.1).await, "x-key", "Invalid API key");

        let alice = format!("{LIST}?UserId={}", w.alice.id);
        assert_eq!(app.get(&alice, "acme", &w.alice_key.1).await.status, 200);
        let reply = app.post(&format!("/v1/users/{}", w.alice.id), "acme", w.admin_secret(), json!({})).await;
        assert_eq!(reply.status, 405);
        let deactivate = app.delete(&format!("/v1/users/{}", w.alice.id), "acme", w.admin_secret()).await;
        assert_eq!(deactivate.status, 200);
        assert_401(&app.get(&alice, "acme", &w.alice_key.1).await, "x-key", "Invalid API key");

        let (key, secret) = app.key(&w.acme, &w.admin, &Scope::ALL);
        assert_eq!(app.get(LIST, "acme", &secret).await.status, 200);
        let rotated = app.post(&format!("{LIST}/{}/rotate", key.id), "acme", w.admin_secret(), json!({})).await;
        assert_eq!(rotated.status, 201);
        assert_401(&app.get(LIST, "acme", &secret).await, "x-key", "Invalid API key");
    }
}
