//! CORS (`cors_origins`): exact origins get a preflight and readable answers;
//! with the setting empty, or for any other origin, no CORS header at all.

use actix_web::http::Method;
use actix_web::test;

use crate::common::*;

const DASHBOARD: &str = "https://dash.acme.test";

fn preflight(origin: &str) -> test::TestRequest {
    test::TestRequest::default()
        .method(Method::OPTIONS)
        .uri("/v1/user-api-keys")
        .insert_header(("origin", origin))
        .insert_header(("access-control-request-method", "POST"))
        .insert_header((
            "access-control-request-headers",
            "tenant, x-key, content-type",
        ))
}

fn listing(origin: &str) -> test::TestRequest {
    test::TestRequest::get()
        .uri("/v1/user-api-keys")
        .insert_header(("origin", origin))
        .insert_header(("tenant", "acme"))
}

fn assert_no_cors(reply: &Reply) {
    let cors: Vec<_> = reply
        .headers
        .keys()
        .filter(|name| name.as_str().starts_with("access-control-"))
        .collect();
    assert!(cors.is_empty(), "CORS headers: {cors:?}");
}

fn with_dashboard(app: &TestApp) -> actix_web::web::Data<keyward::AppState> {
    app.reconfigured(|s| {
        s.cors_origins = vec![DASHBOARD.to_owned(), "http://localhost:3000".to_owned()]
    })
}

#[actix_rt::test]
async fn without_the_setting_there_is_no_cors_at_all() {
    let app = TestApp::sqlite();
    let reply = app.send(preflight(DASHBOARD)).await;
    assert_no_cors(&reply);
    // OPTIONS is no route of the API: as before, 405 with Allow.
    assert_eq!(reply.status, 405);
    assert!(reply.header("allow").is_some());
    let reply = app.send(listing(DASHBOARD)).await;
    assert_eq!(reply.status, 401);
    assert_no_cors(&reply);
    assert_eq!(reply.header("vary"), None);
}

#[actix_rt::test]
async fn an_allowed_origin_gets_a_preflight() {
    let app = TestApp::sqlite();
    let reply = app
        .send_to(with_dashboard(&app), preflight(DASHBOARD))
        .await;
    assert_eq!(reply.status, 204, "{}", reply.text);
    assert_eq!(reply.header("access-control-allow-origin"), Some(DASHBOARD));
    let methods = reply.header("access-control-allow-methods").unwrap();
    for method in ["GET", "POST", "PATCH", "DELETE"] {
        assert!(methods.contains(method), "{methods}");
    }
    let headers = reply.header("access-control-allow-headers").unwrap();
    for header in [
        "tenant",
        "x-key",
        "x-api-key",
        "authorization",
        "content-type",
    ] {
        assert!(
            headers.split(", ").any(|h| h == header),
            "{header} in {headers}"
        );
    }
    assert!(reply.header("access-control-max-age").is_some());
    assert_eq!(reply.header("access-control-allow-credentials"), None);
    assert!(reply.header("vary").unwrap().contains("Origin"));
    assert!(reply.text.is_empty());
}

#[actix_rt::test]
async fn an_allowed_origin_may_read_answers_and_the_request_id() {
    let app = TestApp::sqlite();
    let world = World::new(&app);
    let state = with_dashboard(&app);
    let ok = app
        .send_to(
            state.clone(),
            listing(DASHBOARD).insert_header(("x-key", world.admin_secret())),
        )
        .await;
    assert_eq!(ok.status, 200, "{}", ok.text);
    assert_eq!(ok.header("access-control-allow-origin"), Some(DASHBOARD));
    assert_eq!(
        ok.header("access-control-expose-headers"),
        Some("x-request-id")
    );
    assert_eq!(ok.header("vary"), Some("Origin"));
    // Errors too: a dashboard must be able to show "Invalid API key".
    let refused = app.send_to(state, listing(DASHBOARD)).await;
    assert_eq!(refused.status, 401);
    assert_eq!(
        refused.header("access-control-allow-origin"),
        Some(DASHBOARD)
    );
    assert_eq!(
        refused.header("access-control-expose-headers"),
        Some("x-request-id")
    );
}

#[actix_rt::test]
async fn other_origins_get_nothing() {
    let app = TestApp::sqlite();
    let state = with_dashboard(&app);
    for origin in [
        "https://evil.test",
        "https://dash.acme.test.evil.test",
        "https://dash.acme.test:8443",
        "http://dash.acme.test",
        "https://DASH.acme.test",
        "https://dash.acme.test/",
        "null",
    ] {
        let reply = app.send_to(state.clone(), preflight(origin)).await;
        assert_no_cors(&reply);
        assert_eq!(reply.status, 405, "{origin}");
        let reply = app.send_to(state.clone(), listing(origin)).await;
        assert_no_cors(&reply);
        assert_eq!(reply.status, 401, "{origin}");
        // The answer still depends on Origin, for shared caches.
        assert_eq!(reply.header("vary"), Some("Origin"));
    }
    // No Origin at all (curl): served as always.
    let reply = app
        .send_to(state, test::TestRequest::get().uri("/liveness"))
        .await;
    assert_eq!(reply.status, 200);
    assert_no_cors(&reply);
}

#[actix_rt::test]
async fn the_second_allowed_origin_is_answered_with_its_own_name() {
    let app = TestApp::sqlite();
    let reply = app
        .send_to(with_dashboard(&app), preflight("http://localhost:3000"))
        .await;
    assert_eq!(reply.status, 204);
    assert_eq!(
        reply.header("access-control-allow-origin"),
        Some("http://localhost:3000")
    );
}
