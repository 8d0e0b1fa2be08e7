//! Operational endpoints and the error rendering every route shares.

use std::sync::Arc;
use std::time::Duration;

use actix_web::http::header::{HeaderValue, CONTENT_LENGTH};
use actix_web::http::{Method, Uri};
use actix_web::{test, web};
use diesel::r2d2::{ConnectionManager, Pool};
use serde_json::json;

use keyward::AppState;

use crate::common::*;

const T405: &str = "https://tools.ietf.org/html/rfc9110#section-15.5.6";
const T413: &str = "https://tools.ietf.org/html/rfc9110#section-15.5.14";
const T415: &str = "https://tools.ietf.org/html/rfc9110#section-15.5.16";
const T503: &str = "https://tools.ietf.org/html/rfc9110#section-15.6.4";
const KEYS: &str = "/v1/user-api-keys";

/// The media type of a response, without parameters.
fn essence(reply: &Reply) -> String {
    let content_type = reply.header("content-type").unwrap_or_default();
    content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

/// What a generated request id looks like: a short token safe to log and echo.
fn assert_sane_request_id(reply: &Reply) -> String {
    let id = reply
        .header("x-request-id")
        .unwrap_or_else(|| panic!("no x-request-id: {reply:?}"));
    assert!((1..=128).contains(&id.len()), "request id {id:?}");
    assert!(
        id.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b)),
        "request id {id:?}"
    );
    id.to_owned()
}

/// A request as the World's administrator in tenant `acme`.
fn as_admin(w: &World, req: test::TestRequest) -> test::TestRequest {
    req.insert_header(("tenant", "acme"))
        .insert_header(("x-key", w.admin_secret().to_owned()))
}

/// A valid POST body for the World's administrator, padded with an ignored field to `len` bytes.
fn create_body_of_len(w: &World, len: usize) -> Vec<u8> {
    let expiration_date = (today() + chrono::Days::new(30)).to_string();
    let base = json!({"name": "padded", "user_id": w.admin.id, "expiration_date": expiration_date, "pad": ""});
    let text = base.to_string();
    assert!(text.len() <= len);
    let padded = text.replacen(
        "\"pad\":\"\"",
        &format!("\"pad\":\"{}\"", "x".repeat(len - text.len())),
        1,
    );
    assert_eq!(padded.len(), len);
    padded.into_bytes()
}

/// An app state whose pool can never connect: for this backend, a database that is not there.
fn dead_state(app: &TestApp) -> web::Data<AppState> {
    let (url, target) = if app.database_url.starts_with("sqlite") {
        let path = "/nonexistent-keyward-dir/sub/keyward.db";
        (format!("sqlite://{path}"), path.to_owned())
    } else {
        let url = "postgres://postgres@127.0.0.1:1/none".to_owned();
        (url.clone(), url)
    };
    let pool = Pool::builder()
        .connection_timeout(Duration::from_millis(300))
        .build_unchecked(ConnectionManager::<keyward::db::DbConnection>::new(target));
    web::Data::new(AppState::new(
        pool,
        settings(&url),
        Arc::new(app.clock.clone()),
    ))
}

fn assert_no_internals(reply: &Reply) {
    let text = reply.text.to_ascii_lowercase();
    for leak in [
        "127.0.0.1",
        "connection",
        "postgres",
        "sqlite",
        "nonexistent",
        "keyward.db",
        "refused",
    ] {
        assert!(!text.contains(leak), "{leak:?} leaked in {}", reply.text);
    }
}

/// A body-less request whose `Content-Length` is removed after the fact, as a
/// chunked upload would arrive.
async fn send_without_length(app: &TestApp, req: test::TestRequest) -> Reply {
    let service = test::init_service(keyward::app(app.state.clone())).await;
    let mut req = req.to_request();
    req.headers_mut().remove(CONTENT_LENGTH);
    Reply::read(test::call_service(&service, req).await).await
}

/// A 400 whose only error names `field` with one non-empty message.
fn assert_400_naming(reply: &Reply, field: &str) {
    assert_eq!(reply.status.as_u16(), 400, "{}", reply.text);
    assert_eq!(
        reply.header("content-type"),
        Some("application/problem+json"),
        "{}",
        reply.text
    );
    assert_eq!(reply.body["type"], T400, "{}", reply.text);
    assert_eq!(reply.body["title"], VALIDATION, "{}", reply.text);
    assert_eq!(reply.body["status"], 400, "{}", reply.text);
    assert_eq!(
        reply.body["traceId"].as_str(),
        reply.header("x-request-id"),
        "{}",
        reply.text
    );
    let errors = reply.body["errors"]
        .as_object()
        .unwrap_or_else(|| panic!("no errors: {}", reply.text));
    assert_eq!(
        errors.keys().collect::<Vec<_>>(),
        vec![field],
        "{}",
        reply.text
    );
    let messages = errors[field].as_array().unwrap();
    assert_eq!(messages.len(), 1, "{}", reply.text);
    assert!(!messages[0].as_str().unwrap().is_empty(), "{}", reply.text);
}

/// One request of the "no 5xx" sweep.
struct Case {
    method: Method,
    uri: String,
    headers: Vec<(&'static str, HeaderValue)>,
    body: Option<Vec<u8>>,
}

impl Case {
    fn describe(&self) -> String {
        let headers: Vec<String> = self
            .headers
            .iter()
            .map(|(n, v)| format!("{n}: {v:?}"))
            .collect();
        let uri: String = self.uri.chars().take(120).collect();
        let body = self
            .body
            .as_ref()
            .map(|b| String::from_utf8_lossy(&b[..b.len().min(120)]).into_owned());
        format!("{} {uri} {headers:?} body={body:?}", self.method)
    }

    fn request(&self) -> test::TestRequest {
        let mut req = test::TestRequest::default()
            .method(self.method.clone())
            .uri(&self.uri);
        if let Some(body) = &self.body {
            req = req.set_payload(body.clone());
        }
        for (name, value) in &self.headers {
            req = if *name == "content-length" {
                req.insert_header((*name, value.clone()))
            } else {
                req.append_header((*name, value.clone()))
            };
        }
        req
    }
}

fn hv(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).unwrap()
}

crate::both_backends! {
    async fn liveness_is_plain_text_healthy(app: &TestApp) {
        let reply = app.send(test::TestRequest::get().uri("/liveness")).await;
        assert_eq!(reply.status.as_u16(), 200, "{}", reply.text);
        assert_eq!(essence(&reply), "text/plain");
        assert_eq!(reply.text, "Healthy");
        assert_sane_request_id(&reply);
        // Unauthenticated: a bogus tenant and key change nothing.
        let reply = app.get("/liveness", "nobody", "kw_nonsense").await;
        assert_eq!(reply.status.as_u16(), 200, "{}", reply.text);
        assert_eq!(reply.text, "Healthy");
    }

    async fn readiness_is_200_when_the_database_answers(app: &TestApp) {
        let reply = app.send(test::TestRequest::get().uri("/readiness")).await;
        assert_eq!(reply.status.as_u16(), 200, "{}", reply.text);
        assert_sane_request_id(&reply);
        let reply = app.get("/readiness", "nobody", "").await;
        assert_eq!(reply.status.as_u16(), 200, "{}", reply.text);
    }

    async fn readiness_is_503_without_internals_when_the_database_is_down(app: &TestApp) {
        let reply = app.send_to(dead_state(app), test::TestRequest::get().uri("/readiness")).await;
        assert_problem(&reply, 503, T503, "Service Unavailable", None);
        assert_no_internals(&reply);
        assert_sane_request_id(&reply);
    }

    async fn an_authenticated_route_is_503_when_the_database_is_down(app: &TestApp) {
        let secret = keyward::keys::secret::Secret::generate("kw");
        let reply = app.send_to(
            dead_state(app),
            test::TestRequest::get().uri(KEYS).insert_header(("tenant", "acme")).insert_header(("x-key", secret.expose())),
        ).await;
        assert_problem(&reply, 503, T503, "Service Unavailable", None);
        assert_no_internals(&reply);
        assert!(!reply.text.contains(secret.expose()));
    }

    async fn every_response_carries_a_request_id(app: &TestApp) {
        let cases = [
            (Method::GET, "/liveness", 200),
            (Method::GET, "/readiness", 200),
            (Method::GET, KEYS, 401),
            (Method::GET, "/nope", 404),
            (Method::PUT, KEYS, 405),
        ];
        let mut seen = std::collections::HashSet::new();
        for (method, path, status) in cases {
            let reply = app.send(test::TestRequest::default().method(method.clone()).uri(path)).await;
            assert_eq!(reply.status.as_u16(), status, "{method} {path}: {}", reply.text);
            let id = assert_sane_request_id(&reply);
            if status >= 400 {
                assert_eq!(reply.body["traceId"], id.as_str(), "{method} {path}: {}", reply.text);
            }
            assert!(seen.insert(id.clone()), "request id {id} given twice");
        }
    }

    async fn a_sane_incoming_request_id_is_echoed(app: &TestApp) {
        let reply = app.send(test::TestRequest::get().uri(KEYS).insert_header(("x-request-id", "abc-123"))).await;
        assert_eq!(reply.header("x-request-id"), Some("abc-123"));
        assert_401(&reply, "tenant", "Tenant header missing or empty");
        assert_eq!(reply.body["traceId"], "abc-123");

        let reply = app.send(test::TestRequest::get().uri("/liveness").insert_header(("x-request-id", "abc-123"))).await;
        assert_eq!(reply.status.as_u16(), 200);
        assert_eq!(reply.header("x-request-id"), Some("abc-123"));

        // The longest sane token is kept whole.
        let longest = format!("a-_.:{}", "z".repeat(123));
        assert_eq!(longest.len(), 128);
        let reply = app.send(test::TestRequest::get().uri("/nope").insert_header(("x-request-id", longest.as_str()))).await;
        assert_404(&reply);
        assert_eq!(reply.header("x-request-id"), Some(longest.as_str()));
    }

    async fn an_insane_incoming_request_id_is_replaced(app: &TestApp) {
        let insane: Vec<HeaderValue> = vec![
            hv(&"a".repeat(200)),
            hv(&"a".repeat(129)),
            hv("abc 123"),
            hv(""),
            hv("abc\"><script>"),
            hv("a/b"),
            hv("abc\t123"),
            HeaderValue::from_bytes("abcé".as_bytes()).unwrap(),
        ];
        for value in insane {
            let req = test::TestRequest::get().uri(KEYS).insert_header(("x-request-id", value.clone()));
            let reply = app.send(req).await;
            assert_401(&reply, "tenant", "Tenant header missing or empty");
            let id = assert_sane_request_id(&reply);
            assert_ne!(id.as_bytes(), value.as_bytes(), "{value:?} was echoed");
            assert_eq!(reply.body["traceId"], id.as_str());
        }
    }

    // A key pasted into x-request-id would otherwise be echoed and logged.
    async fn a_request_id_shaped_like_a_secret_is_replaced(app: &TestApp) {
        let w = World::new(app);
        let secret = w.alice_key.1.clone();
        let mut typo = secret.clone();
        typo.pop();
        typo.push(if secret.ends_with('a') { 'b' } else { 'a' });
        for value in [secret.clone(), format!("req-{secret}"), typo.clone(), secret.to_ascii_uppercase()] {
            for req in [
                test::TestRequest::get().uri(KEYS),
                as_admin(&w, test::TestRequest::get().uri(&format!("{KEYS}?UserId={}", w.alice.id))),
                test::TestRequest::get().uri("/user/api-keys").insert_header(("tenant", "acme")),
            ] {
                let reply = app.send(req.insert_header(("x-request-id", value.as_str()))).await;
                let id = assert_sane_request_id(&reply);
                assert_eq!(id.len(), 32, "{id}");
                let seen = format!("{id} {}", reply.text).to_ascii_lowercase();
                assert!(!seen.contains(&secret[3..35].to_ascii_lowercase()), "{value} echoed: {reply:?}");
                if reply.status.is_client_error() && reply.body.get("traceId").is_some() {
                    assert_eq!(reply.body["traceId"], id.as_str());
                }
            }
        }
        // A short token that merely starts like a key is kept.
        let reply = app.send(test::TestRequest::get().uri("/liveness").insert_header(("x-request-id", "kw_deploy-42"))).await;
        assert_eq!(reply.header("x-request-id"), Some("kw_deploy-42"));
    }

    async fn unknown_routes_are_404_problems(app: &TestApp) {
        let w = World::new(app);
        for path in ["/nope", "/", "/v1", "/v1/", "/v1/nothing-here", "/v1/user-api-keys/x/y/z", "/v2/user-api-keys", "/v1/user-api-keyz"] {
            let reply = app.get(path, "", "").await;
            assert_404(&reply);
            // Authenticated or not, an unknown route is 404.
            let reply = app.get(path, "acme", w.admin_secret()).await;
            assert_404(&reply);
        }
        let reply = app.post("/v1/nothing-here", "acme", w.admin_secret(), json!({})).await;
        assert_404(&reply);
    }

    async fn a_wrong_method_on_a_known_route_is_a_405_problem(app: &TestApp) {
        let w = World::new(app);
        for (method, path) in [
            (Method::PUT, KEYS.to_owned()),
            (Method::PATCH, KEYS.to_owned()),
            (Method::PUT, format!("{KEYS}/{}", w.admin_key.0.id)),
            (Method::POST, format!("{KEYS}/{}", w.admin_key.0.id)),
        ] {
            for key in ["", w.admin_secret()] {
                let reply = app.call(method.clone(), &path, "acme", key, None).await;
                assert_problem(&reply, 405, T405, "Method Not Allowed", None);
            }
        }
    }

    async fn a_body_over_64_kib_is_413(app: &TestApp) {
        let w = World::new(app);
        let req = as_admin(&w, test::TestRequest::post().uri(KEYS))
            .insert_header(("content-type", "application/json"))
            .set_payload(create_body_of_len(&w, 64 * 1024 + 1));
        let reply = app.send(req).await;
        assert_problem(&reply, 413, T413, "Request body larger than 64 KiB", None);

        let req = as_admin(&w, test::TestRequest::post().uri(KEYS))
            .insert_header(("content-type", "application/json"))
            .set_payload(vec![b' '; 1024 * 1024]);
        let reply = app.send(req).await;
        assert_problem(&reply, 413, T413, "Request body larger than 64 KiB", None);

        // Nothing was created.
        let reply = app.get(&format!("{KEYS}?UserId={}", w.admin.id), "acme", w.admin_secret()).await;
        assert_eq!(reply.status.as_u16(), 200);
        assert_eq!(reply.body.as_array().unwrap().len(), 1, "{}", reply.text);
    }

    async fn a_body_over_64_kib_without_a_length_is_413(app: &TestApp) {
        let w = World::new(app);
        let req = as_admin(&w, test::TestRequest::post().uri(KEYS))
            .insert_header(("content-type", "application/json"))
            .set_payload(create_body_of_len(&w, 64 * 1024 + 1));
        let reply = send_without_length(app, req).await;
        assert_problem(&reply, 413, T413, "Request body larger than 64 KiB", None);
    }

    async fn a_body_of_exactly_64_kib_is_accepted(app: &TestApp) {
        let w = World::new(app);
        let req = as_admin(&w, test::TestRequest::post().uri(KEYS))
            .insert_header(("content-type", "application/json"))
            .set_payload(create_body_of_len(&w, 64 * 1024));
        let reply = app.send(req).await;
        assert_eq!(reply.status.as_u16(), 201, "{}", reply.text);
        assert_eq!(reply.body["name"], "padded");
        assert!(reply.body.get("pad").is_none(), "{}", reply.text);
    }

    async fn a_body_that_is_not_json_is_415(app: &TestApp) {
        let w = World::new(app);
        for content_type in ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "application/xml"] {
            let req = as_admin(&w, test::TestRequest::post().uri(KEYS))
                .insert_header(("content-type", content_type))
                .set_payload(create_body_of_len(&w, 200));
            let reply = app.send(req).await;
            assert_problem(&reply, 415, T415, "Request body must be application/json", None);
        }
        // A JSON media type with parameters, or a +json one, is JSON.
        for content_type in ["application/json; charset=utf-8", "Application/JSON"] {
            let req = as_admin(&w, test::TestRequest::post().uri(KEYS))
                .insert_header(("content-type", content_type))
                .set_payload(create_body_of_len(&w, 200));
            let reply = app.send(req).await;
            assert_eq!(reply.status.as_u16(), 201, "{content_type}: {}", reply.text);
        }
    }

    async fn a_missing_or_malformed_body_is_400_body(app: &TestApp) {
        let w = World::new(app);
        let reply = app.send(as_admin(&w, test::TestRequest::post().uri(KEYS))).await;
        assert_400_naming(&reply, "body");
        let reply = app.send(as_admin(&w, test::TestRequest::post().uri(KEYS)).insert_header(("content-type", "application/json"))).await;
        assert_400_naming(&reply, "body");
        for payload in ["", "   \n", "[1,2]", "{\"name\":", "\"text\"", "42", "null", "true", "{\"a\":1}{", "{'name':'x'}", "\u{feff}{}"] {
            let req = as_admin(&w, test::TestRequest::post().uri(KEYS))
                .insert_header(("content-type", "application/json"))
                .set_payload(payload);
            let reply = app.send(req).await;
            assert_400_naming(&reply, "body");
        }
        let req = as_admin(&w, test::TestRequest::post().uri(KEYS))
            .insert_header(("content-type", "application/json"))
            .set_payload(vec![0xff, 0xfe, b'{', b'}']);
        assert_400_naming(&app.send(req).await, "body");
    }

    async fn a_trailing_slash_is_ignored(app: &TestApp) {
        let w = World::new(app);
        let plain = app.get(KEYS, "acme", w.admin_secret()).await;
        assert_eq!(plain.status.as_u16(), 200, "{}", plain.text);
        assert_eq!(plain.body.as_array().unwrap().len(), 3, "{}", plain.text);
        for path in ["/v1/user-api-keys/", "//v1//user-api-keys", "/v1/user-api-keys//"] {
            let slashed = app.get(path, "acme", w.admin_secret()).await;
            assert_eq!(slashed.status.as_u16(), 200, "{path}: {}", slashed.text);
            assert_eq!(slashed.body, plain.body, "{path}");
        }
        let one = app.get(&format!("{KEYS}/{}/", w.alice_key.0.id), "acme", w.admin_secret()).await;
        assert_eq!(one.status.as_u16(), 200, "{}", one.text);
        assert_eq!(one.body["id"], w.alice_key.0.id.as_str());
        let unauthenticated = app.get("/v1/user-api-keys/", "", "").await;
        assert_401(&unauthenticated, "tenant", "Tenant header missing or empty");
        let reply = app.get("/liveness/", "", "").await;
        assert_eq!(reply.status.as_u16(), 200);
        assert_eq!(reply.text, "Healthy");
        let reply = app.get(&format!("{KEYS}/?UserId={}", w.alice.id), "acme", w.admin_secret()).await;
        assert_eq!(reply.status.as_u16(), 200, "{}", reply.text);
        assert_eq!(reply.body.as_array().unwrap().len(), 1, "{}", reply.text);
    }

    async fn nasty_inputs_never_cause_a_5xx(app: &TestApp) {
        let w = World::new(app);
        let admin = w.admin_secret().to_owned();
        let alice = w.alice_key.1.clone();
        let random_uuid = uuid::Uuid::new_v4().to_string();
        let long = "a".repeat(5000);

        let ids = vec![
            long.clone(),
            "%00".to_owned(),
            "a%00b".to_owned(),
            "%C3%A9%F0%9F%94%91".to_owned(),
            "..".to_owned(),
            "%2e%2e".to_owned(),
            "%2F".to_owned(),
            "%27%20OR%20%271%27%3D%271".to_owned(),
            "1'%3B%20DROP%20TABLE%20api_keys%3B--".to_owned(),
            "%zz".to_owned(),
            "%".to_owned(),
            "%ff%fe".to_owned(),
            "-1".to_owned(),
            "99999999999999999999999999".to_owned(),
            "00000000-0000-0000-0000-000000000000".to_owned(),
            w.bob_key.0.id.to_uppercase(),
            format!("{}x", w.bob_key.0.id),
            format!("%20{}%20", w.bob_key.0.id),
            w.beta_key.0.id.clone(),
            random_uuid.clone(),
            "null".to_owned(),
        ];
        let queries = vec![
            "take=99999999999999999999".to_owned(),
            "take=-1".to_owned(),
            "take=0".to_owned(),
            "take=1001".to_owned(),
            "take=1&take=2".to_owned(),
            "take=%zz".to_owned(),
            "take=1e3".to_owned(),
            format!("take={}", "9".repeat(5000)),
            "UserId=%zz".to_owned(),
            "UserId=".to_owned(),
            "UserId=%00".to_owned(),
            "UserId=a&UserId=b".to_owned(),
            format!("UserId={}&UserId={}", w.alice.id, w.bob.id),
            format!("userid={}", w.beta_admin.id),
            format!("UserId={long}"),
            "UserId=%27%3B%20DROP%20TABLE%20users%3B--".to_owned(),
            "UserId=%C3%A9".to_owned(),
            "start_with=%00".to_owned(),
            format!("start_with={random_uuid}"),
            format!("start_with={}&take=1", w.beta_key.0.id),
            "%zz=%zz".to_owned(),
            "&&&==&".to_owned(),
            "take=5&start_with=".to_owned(),
            "state=bogus&expires_before=99999-99-99&last_used_before=%00".to_owned(),
            "expires_before=-262144-01-01".to_owned(),
        ];

        let auths: Vec<Vec<(&'static str, HeaderValue)>> = vec![
            vec![],
            vec![("tenant", hv("acme")), ("x-key", hv(&admin))],
            vec![("tenant", hv("acme")), ("x-key", hv(&alice))],
            vec![("tenant", hv("beta")), ("x-key", hv(&admin))],
            vec![("tenant", hv("acme")), ("x-key", hv("kw_garbage"))],
        ];
        let nasty_headers: Vec<Vec<(&'static str, HeaderValue)>> = vec![
            vec![("tenant", hv("")), ("x-key", hv(""))],
            vec![("tenant", hv("acme")), ("x-key", hv("")), ("x-api-key", hv("")), ("authorization", hv(""))],
            vec![("tenant", hv("acme")), ("authorization", hv("Bearer"))],
            vec![("tenant", hv("acme")), ("authorization", hv("Bearer "))],
            vec![("tenant", hv("acme")), ("authorization", hv(&format!("Basic {admin}")))],
            vec![("tenant", hv("acme")), ("x-key", hv(&admin)), ("x-api-key", hv(&alice))],
            vec![("tenant", hv("acme")), ("x-key", hv(&admin)), ("x-key", hv(&alice))],
            vec![("tenant", hv("acme")), ("tenant", hv("beta")), ("x-key", hv(&admin))],
            vec![("tenant", hv(&long)), ("x-key", hv(&admin))],
            vec![("tenant", hv("acme")), ("x-key", hv(&long))],
            vec![("tenant", hv("acme'--")), ("x-key", hv(&admin))],
            vec![("tenant", HeaderValue::from_bytes(b"ac\xffme").unwrap()), ("x-key", hv(&admin))],
            vec![("tenant", hv("acme")), ("x-key", HeaderValue::from_bytes(b"kw_\xff\xfe").unwrap())],
            vec![("tenant", hv("acme")), ("x-key", HeaderValue::from_bytes(format!("{admin}\u{e9}").as_bytes()).unwrap())],
            vec![("tenant", hv("acme")), ("x-key", hv(&admin)), ("x-request-id", hv(""))],
            vec![("tenant", hv("acme")), ("x-key", hv(&admin)), ("content-type", hv(""))],
            vec![("tenant", hv("acme")), ("x-key", hv(&admin)), ("content-type", hv("application/json; charset=klingon"))],
            vec![("tenant", hv("acme")), ("x-key", hv(&admin)), ("content-length", hv("abc"))],
            vec![("tenant", hv("acme")), ("x-key", hv(&admin)), ("content-length", hv("-1"))],
            vec![("tenant", hv("acme")), ("x-key", hv(&admin)), ("content-length", hv("99999999999999999999999"))],
            vec![("tenant", hv("acme")), ("x-key", hv(&admin)), ("accept", hv("*/*;q=abc"))],
        ];

        let expiration = (today() + chrono::Days::new(30)).to_string();
        let nasty_bodies: Vec<String> = vec![
            "{}".to_owned(),
            json!({"name": null, "user_id": null, "expiration_date": null, "scopes": null}).to_string(),
            json!({"name": 5, "user_id": 5, "expiration_date": 5, "scopes": 5}).to_string(),
            json!({"name": ["x"], "user_id": {"a": 1}, "expiration_date": true, "scopes": {}}).to_string(),
            json!({"name": "ok-name", "user_id": w.admin.id, "expiration_date": "9999-99-99"}).to_string(),
            json!({"name": "ok-name", "user_id": w.admin.id, "expiration_date": "+262143-12-31"}).to_string(),
            json!({"name": "ok-name", "user_id": w.admin.id, "expiration_date": "262142-12-31T23:59:59Z"}).to_string(),
            json!({"name": "ok-name", "user_id": w.admin.id, "expiration_date": "2026-06-15T99:00:00Z"}).to_string(),
            json!({"name": "ok-name", "user_id": w.admin.id, "expiration_date": "2026-06-15T12:00:00.9999999999999999999+14:00"}).to_string(),
            json!({"name": "ok-name", "user_id": w.admin.id, "expiration_date": "0000-01-01"}).to_string(),
            json!({"name": "ok-name", "user_id": w.admin.id, "expiration_date": expiration, "scopes": [null, 1, "public_api"]}).to_string(),
            json!({"name": "ok-name", "user_id": w.admin.id, "expiration_date": expiration, "scopes": []}).to_string(),
            json!({"name": "ok-name", "user_id": w.admin.id, "expiration_date": expiration, "scopes": ["PUBLIC_API"]}).to_string(),
            json!({"name": "ok-name", "user_id": w.beta_admin.id, "expiration_date": expiration}).to_string(),
            json!({"name": "ok-name", "user_id": "'; DROP TABLE users; --", "expiration_date": expiration}).to_string(),
            json!({"name": "x".repeat(256), "user_id": w.admin.id, "expiration_date": expiration}).to_string(),
            json!({"name": "é🔑\u{202e}名前", "user_id": w.admin.id, "expiration_date": expiration}).to_string(),
            json!({"name": "'; DROP TABLE api_keys; --", "user_id": w.admin.id, "expiration_date": expiration}).to_string(),
            json!({"name": "ok-name", "UserId": w.alice.id, "Expiration_Date": expiration, "user_id": "x"}).to_string(),
            format!("{{\"name\": 1e400, \"user_id\": \"{}\"}}", w.admin.id),
            format!("{}{}", "[".repeat(100_000), "]".repeat(100_000)).chars().take(60_000).collect(),
            format!("{{\"name\": \"{}\"}}", "\\ud800"),
            "{\"name\":\"ok-name\",\"name\":\"dup\"}".to_owned(),
        ];

        let mut cases: Vec<Case> = Vec::new();
        let mut targets: Vec<(Method, String)> = Vec::new();
        for method in [Method::GET, Method::POST, Method::DELETE] {
            targets.push((method.clone(), KEYS.to_owned()));
            for id in &ids {
                targets.push((method.clone(), format!("{KEYS}/{id}")));
            }
            for query in &queries {
                targets.push((method.clone(), format!("{KEYS}?{query}")));
                targets.push((method.clone(), format!("{KEYS}/{}?{query}", w.bob_key.0.id)));
            }
        }
        for (method, uri) in &targets {
            for auth in &auths {
                let body = (*method == Method::POST).then(|| create_body_of_len(&w, 300));
                let mut headers = auth.clone();
                if body.is_some() {
                    headers.push(("content-type", hv("application/json")));
                }
                cases.push(Case { method: method.clone(), uri: uri.clone(), headers, body });
            }
        }
        for method in [Method::GET, Method::POST, Method::DELETE] {
            for uri in [KEYS.to_owned(), format!("{KEYS}/{}", w.bob_key.0.id), format!("{KEYS}?UserId={}", w.alice.id)] {
                for headers in &nasty_headers {
                    let body = (method == Method::POST).then(|| create_body_of_len(&w, 300));
                    cases.push(Case { method: method.clone(), uri: uri.clone(), headers: headers.clone(), body });
                }
            }
        }
        for body in &nasty_bodies {
            for key in [&admin, &alice] {
                cases.push(Case {
                    method: Method::POST,
                    uri: KEYS.to_owned(),
                    headers: vec![("tenant", hv("acme")), ("x-key", hv(key)), ("content-type", hv("application/json"))],
                    body: Some(body.clone().into_bytes()),
                });
            }
        }

        let mut skipped = Vec::new();
        let total = cases.len();
        for case in &cases {
            if case.uri.parse::<Uri>().is_err() {
                skipped.push(case.uri.clone());
                continue;
            }
            let reply = app.send(case.request()).await;
            assert!(reply.status.as_u16() < 500, "{} -> {}: {}", case.describe(), reply.status, reply.text);
            assert!(reply.header("x-request-id").is_some(), "{}", case.describe());
            if reply.status.is_client_error() {
                assert_eq!(reply.header("content-type"), Some("application/problem+json"), "{}", case.describe());
                assert_eq!(reply.body["status"], reply.status.as_u16(), "{}", case.describe());
            }
        }
        if !skipped.is_empty() {
            eprintln!("{} of {total} URIs could not be built by TestRequest: {skipped:?}", skipped.len());
        }
        assert!(skipped.len() * 10 < total, "too many cases skipped: {skipped:?}");
        // The keys the sweep made with valid bodies all belong to acme's admin; beta is untouched.
        let reply = app.get(KEYS, "beta", &w.beta_key.1).await;
        assert_eq!(reply.status.as_u16(), 200, "{}", reply.text);
        assert_eq!(reply.body.as_array().unwrap().len(), 1, "{}", reply.text);
    }
}

crate::both_backends! {
    // PostgreSQL text cannot hold NUL; a name with a control character is a 400, on both backends.
    async fn a_control_character_in_a_name_is_a_400(app: &TestApp) {
        let w = World::new(app);
        let expiration = (today() + chrono::Days::new(30)).to_string();
        for name in ["nul\u{0}byte", "tab\there", "bell\u{7}"] {
            let body = json!({"name": name, "user_id": w.admin.id, "expiration_date": expiration});
            let reply = app.post(KEYS, "acme", w.admin_secret(), body).await;
            assert_400(&reply, "name", "Name must not contain control characters.");
            let user = json!({"email": "x@acme.test", "name": name});
            let reply = app.post("/v1/users", "acme", w.admin_secret(), user).await;
            assert_400(&reply, "name", "Name must not contain control characters.");
        }
    }
}
