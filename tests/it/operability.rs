//! Throttling, metrics, the access log and graceful shutdown (issue: operable and measurable).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use actix_web::test::TestRequest;
use chrono::TimeDelta;
use serde_json::Value;

use crate::both_backends;
use crate::common::*;

const LIST: &str = "/v1/user-api-keys";

fn from(ip: &str, path: &str, key: &str) -> TestRequest {
    TestRequest::get()
        .uri(path)
        .peer_addr(SocketAddr::new(ip.parse().unwrap(), 40000))
        .insert_header(("tenant", "acme"))
        .insert_header(("x-key", key))
}

/// A plain HTTP/1.1 GET over loopback; returns (status, body).
fn http_get(port: u16, path: &str, headers: &[(&str, &str)]) -> Option<(u16, String)> {
    http(port, "GET", path, headers)
}

/// A plain HTTP/1.1 request without a body over loopback; returns (status, body).
fn http(port: u16, method: &str, path: &str, headers: &[(&str, &str)]) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut request =
        format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.split(' ').nth(1)?.parse().ok()?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Some((status, body))
}

both_backends! {
    async fn failed_authentications_are_throttled_per_address(app: &TestApp) {
        let w = World::new(app);
        let state = app.reconfigured(|s| s.auth_failures_per_minute = 3);
        let good = &w.alice_key.1;
        let own = format!("{LIST}?UserId={}", w.alice.id);
        for _ in 0..3 {
            assert_401(&app.send_to(state.clone(), from("10.0.0.1", LIST, "kw_guess")).await, "x-key", "Invalid API key");
        }
        let refused = app.send_to(state.clone(), from("10.0.0.1", LIST, "kw_guess")).await;
        assert_problem(&refused, 429, "https://tools.ietf.org/html/rfc6585#section-4", "Too many failed authentications", None);
        assert_eq!(refused.header("retry-after"), Some("60"));
        // Even a good key from that address waits; the same key from elsewhere does not.
        assert_eq!(app.send_to(state.clone(), from("10.0.0.1", &own, good)).await.status, 429);
        assert_eq!(app.send_to(state.clone(), from("10.0.0.2", &own, good)).await.status, 200);
        let estuary = app.send_to(state.clone(), from("10.0.0.1", "/user/stats", good)).await;
        assert_eq!(estuary.status, 429);
        assert_eq!(estuary.body["error"]["reason"], "ERR_RATE_LIMITED");
        assert!(estuary.header("retry-after").is_some());
        // Probes are not behind authentication, so not throttled.
        assert_eq!(app.send_to(state.clone(), TestRequest::get().uri("/liveness").peer_addr("10.0.0.1:1".parse().unwrap())).await.status, 200);
        app.clock.advance(TimeDelta::seconds(30));
        assert_eq!(app.send_to(state.clone(), from("10.0.0.1", &own, good)).await.header("retry-after"), Some("30"));
        app.clock.advance(TimeDelta::seconds(30));
        assert_eq!(app.send_to(state.clone(), from("10.0.0.1", &own, good)).await.status, 200);
    }

    async fn metrics_count_requests_without_tenant_or_key_material(app: &TestApp) {
        let w = World::new(app);
        let key_path = format!("{LIST}/{}", w.alice_key.0.id);
        assert_eq!(app.get(&key_path, "acme", &w.alice_key.1).await.status, 200);
        app.get(LIST, "acme", "kw_nope").await;
        app.get(LIST, "nope", "kw_nope").await;
        app.get("/no/such/route", "", "").await;
        let reply = app.send(TestRequest::get().uri("/metrics")).await;
        assert_eq!(reply.status, 200);
        assert!(reply.header("content-type").unwrap().starts_with("text/plain"));
        let text = &reply.text;
        for expected in [
            r#"keyward_http_requests_total{method="GET",route="/v1/user-api-keys/{id}",status="200"} 1"#,
            r#"keyward_http_requests_total{method="GET",route="/v1/user-api-keys",status="401"} 2"#,
            r#"keyward_http_requests_total{method="GET",route="unmatched",status="404"} 1"#,
            r#"keyward_auth_failures_total{reason="key_invalid"} 1"#,
            r#"keyward_auth_failures_total{reason="tenant_unknown"} 1"#,
            "keyward_http_request_duration_seconds_bucket",
            "keyward_db_pool_connections",
            "keyward_db_pool_idle_connections",
            "keyward_db_pool_wait_seconds_count",
        ] {
            assert!(text.contains(expected), "missing {expected} in\n{text}");
        }
        for secret in [w.alice_key.1.as_str(), w.alice_key.0.id.as_str(), "acme", "kw_nope"] {
            assert!(!text.contains(secret), "{secret} leaked into metrics");
        }
    }
}

/// The real binary, serving a SQLite file bootstrapped with tenant `acme`.
struct Served {
    _dir: tempfile::TempDir,
    url: String,
    boot: Value,
    port: u16,
    child: std::process::Child,
}

impl Served {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("k.db").display());
        let keyward = env!("CARGO_BIN_EXE_keyward");
        let boot = Command::new(keyward)
            .args([
                "bootstrap",
                "--tenant",
                "acme",
                "--email",
                "admin@acme.test",
                "--json",
            ])
            .env("KEYWARD_DATABASE_URL", &url)
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(
            boot.status.success(),
            "{}",
            String::from_utf8_lossy(&boot.stderr)
        );
        let boot: Value = serde_json::from_slice(&boot.stdout).unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(keyward)
            .env("KEYWARD_DATABASE_URL", &url)
            .env("KEYWARD_BIND", format!("127.0.0.1:{port}"))
            .env("RUST_LOG", "info")
            .current_dir(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while http_get(port, "/readiness", &[]).map(|r| r.0) != Some(200) {
            assert!(Instant::now() < deadline, "server did not become ready");
            std::thread::sleep(Duration::from_millis(100));
        }
        Self {
            _dir: dir,
            url,
            boot,
            port,
            child,
        }
    }

    fn field(&self, name: &str) -> String {
        self.boot[name].as_str().unwrap().to_owned()
    }

    /// SIGTERM, then the exit status and everything the server logged.
    fn stop(&mut self) -> (std::process::ExitStatus, String) {
        let term = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(term.success());
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(Instant::now() < deadline, "server did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        };
        let mut log = String::new();
        self.child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut log)
            .unwrap();
        (status, log)
    }
}

/// The real binary: SIGTERM stops it cleanly, and it writes the buffered
/// last-used times before exiting. Its access log names routes, never secrets.
#[::core::prelude::v1::test]
fn graceful_shutdown_flushes_last_used_and_logs_no_secret() {
    let mut server = Served::start();
    let (key, user_id, key_id) = (
        server.field("key"),
        server.field("user_id"),
        server.field("id"),
    );
    let path = format!("{LIST}?UserId={user_id}&note={key}");
    let headers = [
        ("tenant", "acme"),
        ("x-key", key.as_str()),
        ("x-request-id", "shutdown-test-1"),
    ];
    assert_eq!(http_get(server.port, &path, &headers).unwrap().0, 200);
    let (status, log) = server.stop();
    let url = &server.url;
    assert!(status.success(), "exit {status:?}\n{log}");

    // The use was written at shutdown (or by the periodic flush before it).
    let pool = keyward::db::connect(&keyward::config::DatabaseUrl::parse(url).unwrap(), 1).unwrap();
    let tenant = keyward::tenants::get_by_name(&mut pool.get().unwrap(), "acme").unwrap();
    let key_row = keyward::keys::find_unrevoked(
        &mut pool.get().unwrap(),
        &tenant.id,
        &keyward::keys::KeyRef::Id(key_id),
        chrono::Utc::now(),
    )
    .unwrap()
    .unwrap();
    assert!(
        key_row.last_used_at.is_some(),
        "last use not recorded\n{log}"
    );

    // One access line for the request, by route template; never the key, the query or the path.
    let line = log
        .lines()
        .find(|l| l.contains("shutdown-test-1"))
        .unwrap_or_else(|| panic!("no access line\n{log}"));
    assert!(
        line.contains("tenant=acme GET /v1/user-api-keys 200"),
        "{line}"
    );
    assert!(!log.contains(&key), "the secret reached the log:\n{log}");
    assert!(
        !log.contains(&user_id),
        "the query string reached the log:\n{log}"
    );
}

/// A 5xx is logged with its detail, but by route: a secret in the path (Estuary
/// revokes by secret) never reaches the log.
#[::core::prelude::v1::test]
fn a_server_error_logs_the_route_not_the_path() {
    let mut server = Served::start();
    let key = server.field("key");
    // Make the revocation's audit write fail.
    let pool = keyward::db::connect(
        &keyward::config::DatabaseUrl::parse(&server.url).unwrap(),
        1,
    )
    .unwrap();
    {
        use diesel::RunQueryDsl;
        diesel::sql_query("DROP TABLE audit_events")
            .execute(&mut *pool.get().unwrap())
            .unwrap();
    }
    let path = format!("/user/api-keys/{key}");
    let headers = [
        ("tenant", "acme"),
        ("authorization", &*format!("Bearer {key}")),
        ("x-request-id", "five-hundred-1"),
    ];
    let (status, body) = http(server.port, "DELETE", &path, &headers).unwrap();
    assert_eq!(status, 500, "{body}");
    assert!(
        !body.contains("audit_events") && !body.contains(&key),
        "{body}"
    );
    let (_, log) = server.stop();
    let line = log
        .lines()
        .find(|l| l.contains("ERROR") && l.contains("five-hundred-1"))
        .unwrap_or_else(|| panic!("no error line\n{log}"));
    assert!(
        line.contains("DELETE /user/api-keys/{key_or_hash}"),
        "{line}"
    );
    assert!(!log.contains(&key), "the secret reached the log:\n{log}");
}

crate::both_backends! {
    // (The body of a HEAD answer is dropped by actix's HTTP/1 writer, on the wire.)
    async fn probes_answer_head_like_get(app: &TestApp) {
        for path in ["/liveness", "/readiness"] {
            let reply = app.send(TestRequest::default().method(actix_web::http::Method::HEAD).uri(path)).await;
            assert_eq!(reply.status, 200, "HEAD {path}");
            assert!(reply.header("x-request-id").is_some());
        }
        let post = app.send(TestRequest::post().uri("/liveness")).await;
        assert_eq!(post.status, 405);
    }
}
