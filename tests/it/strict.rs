//! Strict reading of headers, dates and Estuary's query: what the contract
//! does not allow is refused, never guessed at.

use actix_web::test::TestRequest;
use serde_json::json;

use crate::both_backends;
use crate::common::*;

const KEYS: &str = "/v1/user-api-keys";

fn bearer_post(path: &str, key: &str) -> TestRequest {
    TestRequest::post()
        .uri(path)
        .insert_header(("tenant", "acme"))
        .insert_header(("authorization", format!("Bearer {key}")))
}

both_backends! {
    async fn several_tenant_headers_must_agree(app: &TestApp) {
        let w = World::new(app);
        for tenants in [["acme", "beta"], ["beta", "acme"]] {
            let req = TestRequest::get()
                .uri(KEYS)
                .append_header(("tenant", tenants[0]))
                .append_header(("tenant", tenants[1]))
                .insert_header(("x-key", w.admin_secret()));
            assert_401(&app.send(req).await, "tenant", "Unknown tenant specified");
        }
        let pinned = app.reconfigured(|s| s.tenant = "acme".into());
        let req = TestRequest::get()
            .uri(KEYS)
            .append_header(("tenant", "acme"))
            .append_header(("tenant", "beta"))
            .insert_header(("x-key", w.admin_secret()));
        assert_401(&app.send_to(pinned, req).await, "tenant", "Unknown tenant specified");
        let same = TestRequest::get()
            .uri(KEYS)
            .append_header(("tenant", "acme"))
            .append_header(("tenant", "acme"))
            .insert_header(("x-key", w.admin_secret()));
        assert_eq!(app.send(same).await.status, 200);
    }

    async fn expiration_date_is_a_date_only(app: &TestApp) {
        let w = World::new(app);
        let date = (today() + chrono::Days::new(30)).to_string();
        for bad in [format!("{date}T00:00:00Z"), format!("{date}T12:00:00"), format!("{date} "), "2027-1-31".to_owned()] {
            let body = json!({"name": "timestamped", "user_id": w.alice.id, "expiration_date": bad});
            let reply = app.post(KEYS, "acme", w.admin_secret(), body).await;
            assert_400(&reply, "expiration_date", "Expiration date must be a date in the format YYYY-MM-DD.");
        }
        let body = json!({"name": "dated", "user_id": w.alice.id, "expiration_date": date});
        assert_eq!(app.post(KEYS, "acme", w.admin_secret(), body).await.status, 201);
    }

    async fn estuary_expiry_and_perms_are_exact(app: &TestApp) {
        let w = World::new(app);
        for expiry in ["%201h", "1h%20", "1h%09", "%0A1h"] {
            let reply = app.send(bearer_post(&format!("/user/api-keys?expiry={expiry}"), &w.alice_key.1)).await;
            assert_eq!(reply.status, 400, "{expiry}: {}", reply.text);
            assert_eq!(reply.body["error"]["reason"], "ERR_INVALID_INPUT");
        }
        for perms in ["", "ALL", "upload%20"] {
            let reply = app.send(bearer_post(&format!("/user/api-keys?perms={perms}"), &w.alice_key.1)).await;
            assert_eq!(reply.status, 400, "{perms:?}: {}", reply.text);
            assert_eq!(reply.body["error"]["details"], "perms must be 'all' or 'upload'.");
        }
        let reply = app.send(bearer_post("/user/api-keys?expiry=1h&perms=upload", &w.alice_key.1)).await;
        assert_eq!(reply.status, 200, "{}", reply.text);
        assert_eq!(reply.body["scopes"], json!(["public_api"]));
    }
}
