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
pub(crate) fn http_get(port: u16, path: &str, headers: &[(&str, &str)]) -> Option<(u16, String)> {
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
pub(crate) struct Served {
    _dir: tempfile::TempDir,
    pub(crate) url: String,
    boot: Value,
    pub(crate) port: u16,
    child: std::process::Child,
}

impl Served {
    pub(crate) fn start() -> Self {
        Self::start_with(&[])
    }

    /// The server with extra environment variables (settings) set.
    pub(crate) fn start_with(env: &[(&str, &str)]) -> Self {
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
            .envs(env.iter().copied())
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

    /// The server's database (`sqlite://...`).
    pub(crate) fn database_url(&self) -> &str {
        &self.url
    }

    pub(crate) fn field(&self, name: &str) -> String {
        self.boot[name].as_str().unwrap().to_owned()
    }

    /// SIGTERM, then the exit status and everything the server logged.
    pub(crate) fn stop(&mut self) -> (std::process::ExitStatus, String) {
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

/// A test that fails before [`Served::stop`] leaves no server running.
impl Drop for Served {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
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

/// Access lines are buffered off the request's path, but reach stderr while
/// the server runs (within the flusher's period), not only at shutdown.
#[::core::prelude::v1::test]
fn access_lines_reach_stderr_while_serving() {
    let mut server = Served::start();
    let key = server.field("key");
    let headers = [
        ("tenant", "acme"),
        ("x-key", key.as_str()),
        ("x-request-id", "live-line-1"),
    ];
    let stderr = server.child.stderr.take().unwrap();
    let (lines, seen) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if lines.send(line).is_err() {
                return;
            }
        }
    });
    assert_eq!(http_get(server.port, "/v1/auth", &headers).unwrap().0, 200);
    let sent = Instant::now();
    let line = loop {
        let left = Duration::from_secs(5).saturating_sub(sent.elapsed());
        let line = seen
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("no access line within 5 s of the request"));
        if line.contains("live-line-1") {
            break line;
        }
    };
    assert!(
        line.contains("INFO  keyward::access] live-line-1 tenant=acme GET /v1/auth 200 "),
        "{line}"
    );
    assert!(line.ends_with("ms"), "{line}");
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

/// Sends `head` (and `body`) on a fresh connection, keeps it open, and reads
/// until the server closes it or `patience` runs out; returns the response
/// and how long it took.
fn raw_exchange(port: u16, head: &str, body: &[u8], patience: Duration) -> (String, Duration) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(patience)).unwrap();
    let started = Instant::now();
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    (
        String::from_utf8_lossy(&response).into_owned(),
        started.elapsed(),
    )
}

/// Status, one header (lower-case name) and the body of a raw HTTP/1.1 response.
fn parse_raw(response: &str) -> (u16, Option<String>, Value, String) {
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((response, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let request_id = head
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(name, _)| name.eq_ignore_ascii_case("x-request-id"))
        .map(|(_, v)| v.trim().to_owned());
    let json = serde_json::from_str(body).unwrap_or(Value::Null);
    (status, request_id, json, head.to_owned())
}

/// A client that sends the head and part of the body, then stalls, gets 408
/// in the dialect's format once `request_timeout_secs` is over, and loses the connection.
#[::core::prelude::v1::test]
fn a_stalled_body_is_408_within_the_request_timeout() {
    let mut server = Served::start_with(&[("KEYWARD_REQUEST_TIMEOUT_SECS", "1")]);
    let key = server.field("key");
    let head = format!(
        "POST /v1/user-api-keys HTTP/1.1\r\nHost: 127.0.0.1\r\ntenant: acme\r\nx-key: {key}\r\n\
         content-type: application/json\r\ncontent-length: 100\r\n\r\n"
    );
    let (response, took) = raw_exchange(
        server.port,
        &head,
        b"{\"name\": \"",
        Duration::from_secs(10),
    );
    let (status, request_id, body, raw_head) = parse_raw(&response);
    assert_eq!(status, 408, "{response}");
    assert!(took < Duration::from_secs(5), "{took:?}");
    assert!(
        raw_head
            .to_ascii_lowercase()
            .contains("content-type: application/problem+json"),
        "{response}"
    );
    let request_id = request_id.expect("x-request-id");
    assert_eq!(
        body,
        serde_json::json!({
            "type": "https://tools.ietf.org/html/rfc9110#section-15.5.9",
            "title": "Request Timeout",
            "status": 408,
            "traceId": request_id,
        })
    );
    // The server is still there for everyone else.
    assert_eq!(http_get(server.port, "/liveness", &[]).unwrap().0, 200);
    let (status, log) = server.stop();
    assert!(status.success(), "{log}");
}

/// Heads that actix's HTTP/1 codec would refuse with a bare status (a huge
/// header block, a 100 KB query, a stalled head, junk) are answered in the
/// dialect of their path, with an `x-request-id`.
#[::core::prelude::v1::test]
fn oversized_and_stalled_heads_get_the_dialects_answer() {
    let mut server = Served::start_with(&[("KEYWARD_REQUEST_TIMEOUT_SECS", "1")]);
    let patience = Duration::from_secs(10);
    let huge_header = format!("x-filler: {}\r\n", "a".repeat(8000)).repeat(25);
    let long_query = format!("?q={}", "a".repeat(100_000));
    let cases: Vec<(String, u16, &str)> = vec![
        (
            format!("GET /v1/user-api-keys HTTP/1.1\r\nHost: a\r\n{huge_header}\r\n"),
            431,
            "https://tools.ietf.org/html/rfc6585#section-5",
        ),
        (
            format!("GET /v1/user-api-keys{long_query} HTTP/1.1\r\nHost: a\r\n\r\n"),
            414,
            "https://tools.ietf.org/html/rfc9110#section-15.5.15",
        ),
        (
            format!(
                "GET /v1/user-api-keys HTTP/1.1\r\nHost: a\r\n{}\r\n",
                "a: b\r\n".repeat(100)
            ),
            431,
            "https://tools.ietf.org/html/rfc6585#section-5",
        ),
        (
            "GET /v1/user-api-keys HTTP/1.1\r\nHost: a\r\nbad header\r\n\r\n".to_owned(),
            400,
            "https://tools.ietf.org/html/rfc9110#section-15.5.1",
        ),
        (
            "GET /v1/user-api-keys HTTP/1.1\r\nHost: a\r\n".to_owned(),
            408,
            "https://tools.ietf.org/html/rfc9110#section-15.5.9",
        ),
    ];
    for (head, status, kind) in &cases {
        for dialect in ["/v1/user-api-keys", "/user/api-keys"] {
            let head = head.replacen("/v1/user-api-keys", dialect, 1);
            let (response, took) = raw_exchange(server.port, &head, b"", patience);
            let (got, request_id, body, raw_head) = parse_raw(&response);
            let what = format!(
                "{dialect} {status}: {}",
                &response[..response.len().min(400)]
            );
            assert_eq!(got, *status, "{what}");
            assert!(took < Duration::from_secs(5), "{what} took {took:?}");
            let request_id = request_id.unwrap_or_else(|| panic!("no x-request-id: {what}"));
            assert_eq!(request_id.len(), 32, "{what}");
            let raw_head = raw_head.to_ascii_lowercase();
            if dialect == "/user/api-keys" {
                assert!(
                    raw_head.contains("content-type: application/json"),
                    "{what}"
                );
                assert_eq!(body["error"]["code"], *status, "{what}");
                assert_eq!(body["error"]["reason"], "ERR_INVALID_INPUT", "{what}");
            } else {
                assert!(
                    raw_head.contains("content-type: application/problem+json"),
                    "{what}"
                );
                assert_eq!(body["type"], *kind, "{what}");
                assert_eq!(body["status"], *status, "{what}");
                assert_eq!(body["traceId"], request_id.as_str(), "{what}");
            }
        }
    }
    // Good requests, and kept-alive ones, are untouched.
    let key = server.field("key");
    let user_id = server.field("user_id");
    let path = format!("{LIST}?UserId={user_id}");
    let headers = [("tenant", "acme"), ("x-key", key.as_str())];
    assert_eq!(http_get(server.port, &path, &headers).unwrap().0, 200);
    let one = format!("GET {path} HTTP/1.1\r\nHost: a\r\ntenant: acme\r\nx-key: {key}\r\n\r\n");
    let two = one.replace("\r\n\r\n", "\r\nconnection: close\r\n\r\n");
    let (response, _) = raw_exchange(server.port, &format!("{one}{two}"), b"", patience);
    assert_eq!(response.matches("HTTP/1.1 200 OK").count(), 2, "{response}");
    let (status, log) = server.stop();
    assert!(status.success(), "{log}");
    assert!(log.contains(" unmatched 414 "), "{log}");
}
