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
