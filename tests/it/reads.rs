//! Short reads (`AppState::read`): inline on a per-thread connection on a
//! SQLite file, through the pool elsewhere. Either way they see every write
//! committed before them, and they cannot write.

use diesel::prelude::*;

use crate::both_backends;
use crate::common::*;
use keyward::keys::Scope;
use keyward::schema::api_keys;

both_backends! {
    async fn a_read_sees_the_write_just_committed(app: &TestApp) {
        let tenant = app.tenant("acme");
        let user = app.user(&tenant, "a@example.com", &[]);
        let count = |app: &TestApp| {
            let tenant_id = tenant.id.clone();
            let state = app.state.clone();
            async move {
                state
                    .read(move |conn| {
                        Ok(api_keys::table
                            .filter(api_keys::tenant_id.eq(tenant_id))
                            .count()
                            .get_result::<i64>(conn)?)
                    })
                    .await
                    .unwrap()
            }
        };
        assert_eq!(count(app).await, 0);
        for n in 1..=3 {
            // Written through the pool (another connection), read at once.
            app.key(&tenant, &user, &[Scope::PublicApi]);
            assert_eq!(count(app).await, n);
        }
    }

    async fn a_read_connection_cannot_write(app: &TestApp) {
        let tenant = app.tenant("acme");
        let written = app
            .state
            .read(move |conn| {
                Ok(diesel::delete(api_keys::table.filter(api_keys::tenant_id.eq(tenant.id)))
                    .execute(conn)?)
            })
            .await;
        // On SQLite the read connection is query-only; PostgreSQL's reads go
        // through the pool, where the one write path is the caller's business.
        if app.database_url.starts_with("sqlite") {
            assert!(written.is_err(), "a write went through a read connection");
        }
    }
}

both_backends! {
    async fn concurrent_listings_each_get_their_own_keys(app: &TestApp) {
        // Two tenants, several users each; on PostgreSQL the listings below are
        // answered in batches, several users per query.
        struct Caller {
            tenant: &'static str,
            user_id: String,
            secret: String,
            ids: Vec<String>,
            hashes: Vec<String>,
        }
        let mut callers = Vec::new();
        for tenant_name in ["acme", "beta"] {
            let tenant = app.tenant(tenant_name);
            for n in 0..4 {
                let user = app.user(&tenant, &format!("u{n}@{tenant_name}.example"), &[]);
                let mut caller = Caller {
                    tenant: tenant_name,
                    user_id: user.id.clone(),
                    secret: String::new(),
                    ids: Vec::new(),
                    hashes: Vec::new(),
                };
                for _ in 0..=n {
                    let (key, secret) = app.key(&tenant, &user, &[Scope::UserKeyManagement]);
                    caller.ids.push(key.id);
                    caller.hashes.push(key.token_hash);
                    caller.secret = secret;
                }
                // A revoked key is never listed.
                let (gone, _) = app.key(&tenant, &user, &[Scope::UserKeyManagement]);
                let path = format!("/v1/user-api-keys/{}", gone.id);
                let reply = app.delete(&path, tenant_name, &caller.secret).await;
                assert_eq!(reply.status.as_u16(), 200, "{}", reply.text);
                callers.push(caller);
            }
        }
        let listed = |reply: &Reply, field: &str| -> Vec<String> {
            assert_eq!(reply.status.as_u16(), 200, "{}", reply.text);
            reply.body.as_array().unwrap().iter()
                .map(|key| key[field].as_str().unwrap().to_owned())
                .collect()
        };
        let v1_paths: Vec<String> = callers
            .iter()
            .map(|c| format!("/v1/user-api-keys?UserId={}", c.user_id))
            .collect();
        for _round in 0..5 {
            let v1 = callers.iter().zip(&v1_paths).map(|(c, path)| app.get(path, c.tenant, &c.secret));
            let estuary = callers.iter().map(|c| app.get("/user/api-keys", c.tenant, &c.secret));
            let (v1, estuary) = futures_util::future::join(
                futures_util::future::join_all(v1),
                futures_util::future::join_all(estuary),
            )
            .await;
            for ((caller, v1), estuary) in callers.iter().zip(&v1).zip(&estuary) {
                assert_eq!(listed(v1, "id"), caller.ids, "exactly the caller's keys, in order");
                assert_eq!(listed(estuary, "tokenHash"), caller.hashes);
            }
        }
    }
}

both_backends! {
    async fn a_listing_follows_every_commit_at_once(app: &TestApp) {
        // On a SQLite file the listing is remembered per worker while the
        // database has not changed: each commit below, made on another
        // connection, must show in the very next listing.
        let tenant = app.tenant("acme");
        let user = app.user(&tenant, "a@example.com", &[]);
        let (first, secret) = app.key(&tenant, &user, &[Scope::UserKeyManagement]);
        let path = format!("/v1/user-api-keys?UserId={}", user.id);
        let ids = |reply: &Reply| -> Vec<String> {
            assert_eq!(reply.status.as_u16(), 200, "{}", reply.text);
            reply.body.as_array().unwrap().iter()
                .map(|key| key["id"].as_str().unwrap().to_owned())
                .collect()
        };
        let mut expected = vec![first.id.clone()];
        for _ in 0..2 {
            assert_eq!(ids(&app.get(&path, "acme", &secret).await), expected);
        }
        // Created on another connection (as the CLI or another instance would).
        let (second, _) = app.key(&tenant, &user, &[Scope::PublicApi]);
        expected.push(second.id.clone());
        assert_eq!(ids(&app.get(&path, "acme", &secret).await), expected);
        // Renamed and revoked in plain SQL.
        diesel::update(api_keys::table.filter(api_keys::id.eq(&second.id)))
            .set(api_keys::name.eq("renamed"))
            .execute(&mut *app.conn())
            .unwrap();
        let reply = app.get(&path, "acme", &secret).await;
        assert_eq!(reply.body[1]["name"], "renamed", "{}", reply.text);
        diesel::update(api_keys::table.filter(api_keys::id.eq(&second.id)))
            .set(api_keys::revoked_at.eq(app.now().naive_utc()))
            .execute(&mut *app.conn())
            .unwrap();
        expected.pop();
        assert_eq!(ids(&app.get(&path, "acme", &secret).await), expected);
        // A revocation scheduled for later (a rotation's grace) comes with the clock alone.
        let later = app.now() + chrono::TimeDelta::hours(1);
        diesel::update(api_keys::table.filter(api_keys::id.eq(&first.id)))
            .set(api_keys::revoked_at.eq(later.naive_utc()))
            .execute(&mut *app.conn())
            .unwrap();
        let (_, fresh) = app.key(&tenant, &user, &[Scope::UserKeyManagement]);
        let listed = ids(&app.get(&path, "acme", &fresh).await);
        assert!(listed.contains(&first.id));
        app.clock.advance(chrono::TimeDelta::hours(2));
        let listed = ids(&app.get(&path, "acme", &fresh).await);
        assert!(!listed.contains(&first.id), "a key past its scheduled revocation is not listed");
    }
}

both_backends! {
    async fn a_batch_renders_each_ask_at_its_own_now(app: &TestApp) {
        // PostgreSQL answers queued listings in one batch, rendered where they
        // are read; asks of one user share a rendering only when they list the
        // same keys in the same dialect.
        use keyward::keys::{own_listings_of, ApiKey, OwnKeys, Rendering};
        let tenant = app.tenant("acme");
        let user = app.user(&tenant, "a@example.com", &[]);
        let (first, _) = app.key(&tenant, &user, &[Scope::UserKeyManagement]);
        let (second, _) = app.key(&tenant, &user, &[Scope::PublicApi]);
        let now = app.now();
        diesel::update(api_keys::table.filter(api_keys::id.eq(&first.id)))
            .set(api_keys::revoked_at.eq((now + chrono::TimeDelta::hours(1)).naive_utc()))
            .execute(&mut *app.conn())
            .unwrap();
        let identity = keyward::access::Identity {
            tenant: tenant.clone(),
            user_id: user.id.clone(),
            roles: vec![],
            key_id: second.id.clone(),
            key_name: second.name.clone(),
            key_expires_at: second.expires_at,
            key_meta: Default::default(),
            scopes: vec![Scope::UserKeyManagement],
            allowed_ips: Default::default(),
            usage: Default::default(),
        };
        let caller = keyward::access::Caller::new(identity, Default::default());
        fn ids(keys: &[ApiKey]) -> Result<bytes::Bytes, keyward::error::Error> {
            Ok(keys.iter().map(|k| k.id.as_str()).collect::<Vec<_>>().join(",").into())
        }
        fn count(keys: &[ApiKey]) -> Result<bytes::Bytes, keyward::error::Error> {
            Ok(keys.len().to_string().into())
        }
        let ids = Rendering { name: "ids", render: ids };
        let count = Rendering { name: "count", render: count };
        let later = now + chrono::TimeDelta::hours(2);
        let asks = [
            OwnKeys::of(&caller, now, ids).unwrap(),
            OwnKeys::of(&caller, later, ids).unwrap(),
            OwnKeys::of(&caller, now, count).unwrap(),
            OwnKeys::of(&caller, now, ids).unwrap(),
        ];
        let answers = own_listings_of(&mut app.conn(), &asks).unwrap();
        let both = format!("{},{}", first.id, second.id);
        assert_eq!(answers[0], both.as_str());
        assert_eq!(answers[1], second.id.as_str(), "past its scheduled revocation");
        assert_eq!(answers[2], "2");
        assert_eq!(answers[3], both.as_str());
    }
}
