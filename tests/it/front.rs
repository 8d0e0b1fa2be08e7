//! The front door on kept-alive connections (issue 13): every request head on
//! a connection, not only the first, is judged before actix's HTTP/1 codec
//! sees it, so an oversized, malformed or stalled later head gets the
//! dialect's answer with an `x-request-id`, after the answers owed to the
//! requests before it; and request bodies (by length or chunked) are framed so
//! that the next head is found.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use chrono::Days;
use serde_json::{json, Value};

use crate::operability::Served;

/// How long a client waits for an answer before the test fails.
const PATIENCE: Duration = Duration::from_secs(10);

/// One response read off a connection.
#[derive(Debug)]
struct Response {
    status: u16,
    /// The status line and headers, lower-cased.
    head: String,
    body: Vec<u8>,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.head
            .lines()
            .filter_map(|l| l.split_once(':'))
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.trim())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    fn text(&self) -> String {
        format!("{}\n{}", self.head, String::from_utf8_lossy(&self.body))
    }
}

/// A kept-alive client connection that reads one response at a time.
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    fn open(port: u16) -> Self {
        let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream.set_read_timeout(Some(PATIENCE)).unwrap();
        stream.set_nodelay(true).unwrap();
        Self {
            stream,
            buf: Vec::new(),
        }
    }

    fn send(&mut self, bytes: impl AsRef<[u8]>) {
        self.stream.write_all(bytes.as_ref()).unwrap();
    }

    /// Sends `bytes` a few at a time, so that heads, chunk-size lines and
    /// bodies are split across the server's reads.
    fn dribble(&mut self, bytes: impl AsRef<[u8]>, piece: usize) {
        for part in bytes.as_ref().chunks(piece) {
            self.send(part);
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Reads more from the server; false once it has closed the connection.
    fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 16384];
        match self.stream.read(&mut chunk) {
            Ok(0) => false,
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                panic!(
                    "no answer within {PATIENCE:?}; so far: {}",
                    String::from_utf8_lossy(&self.buf)
                )
            }
            Err(_) => false,
        }
    }

    /// The next response, or `None` if the server closed the connection first.
    fn response(&mut self) -> Option<Response> {
        self.response_to(false)
    }

    /// The next response, to a `HEAD` request if `head` (then it has no body,
    /// whatever its `content-length`).
    fn response_to(&mut self, is_head: bool) -> Option<Response> {
        let end = loop {
            if let Some(at) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
            if !self.fill() {
                assert!(
                    self.buf.is_empty(),
                    "closed mid-response: {}",
                    String::from_utf8_lossy(&self.buf)
                );
                return None;
            }
        };
        let head = String::from_utf8_lossy(&self.buf[..end]).to_ascii_lowercase();
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let length: usize = head
            .lines()
            .filter_map(|l| l.split_once(':'))
            .find(|(n, _)| *n == "content-length")
            .map_or(0, |(_, v)| v.trim().parse().unwrap());
        let length = if is_head { 0 } else { length };
        while self.buf.len() < end + length {
            assert!(self.fill(), "closed mid-body");
        }
        let body = self.buf[end..end + length].to_vec();
        self.buf.drain(..end + length);
        Some(Response { status, head, body })
    }

    /// The next response, which must exist.
    fn expect(&mut self, what: &str) -> Response {
        self.response()
            .unwrap_or_else(|| panic!("{what}: closed without an answer"))
    }

    /// The server closes the connection without sending anything more.
    fn assert_closed(&mut self, what: &str) {
        while self.fill() {}
        assert!(
            self.buf.is_empty(),
            "{what}: more after the last answer: {}",
            String::from_utf8_lossy(&self.buf)
        );
    }
}

/// The `type` of a problem details document for `status`.
fn problem_type(status: u16) -> &'static str {
    match status {
        400 => "https://tools.ietf.org/html/rfc9110#section-15.5.1",
        408 => "https://tools.ietf.org/html/rfc9110#section-15.5.9",
        414 => "https://tools.ietf.org/html/rfc9110#section-15.5.15",
        431 => "https://tools.ietf.org/html/rfc6585#section-5",
        _ => unreachable!(),
    }
}

/// `reply` is `status` in the format of the dialect of `prefix`, with an
/// `x-request-id`, and closes the connection.
fn assert_refusal(reply: &Response, status: u16, prefix: &str, what: &str) {
    let what = format!("{what}: {}", reply.text());
    assert_eq!(reply.status, status, "{what}");
    let id = reply
        .header("x-request-id")
        .unwrap_or_else(|| panic!("no x-request-id: {what}"));
    assert_eq!(id.len(), 32, "{what}");
    assert_eq!(reply.header("connection"), Some("close"), "{what}");
    let body = reply.json();
    if prefix == "/user" {
        assert_eq!(
            reply.header("content-type"),
            Some("application/json"),
            "{what}"
        );
        assert_eq!(body["error"]["code"], status, "{what}");
        assert_eq!(body["error"]["reason"], "ERR_INVALID_INPUT", "{what}");
    } else {
        assert_eq!(
            reply.header("content-type"),
            Some("application/problem+json"),
            "{what}"
        );
        assert_eq!(body["type"], problem_type(status), "{what}");
        assert_eq!(body["status"], status, "{what}");
        assert_eq!(body["traceId"], id, "{what}");
    }
}

/// A request that succeeds, in the dialect of `prefix`.
fn good(server: &Served, prefix: &str) -> String {
    let key = server.field("key");
    let path = if prefix == "/user" {
        "/user/api-keys".to_owned()
    } else {
        format!("/v1/user-api-keys?UserId={}", server.field("user_id"))
    };
    format!("GET {path} HTTP/1.1\r\nHost: a\r\ntenant: acme\r\nx-key: {key}\r\n\r\n")
}

/// Heads actix-http would refuse with a bare answer (or, stalled, never
/// answer), with the status keyward answers instead; `{path}` stands for a
/// path of the dialect.
fn bad_heads() -> Vec<(&'static str, String, u16)> {
    vec![
        (
            "a 70 KB header",
            format!(
                "GET {{path}} HTTP/1.1\r\nHost: a\r\nx-big: {}\r\n\r\n",
                "a".repeat(70_000)
            ),
            431,
        ),
        (
            "a 100 KB query",
            format!(
                "GET {{path}}?q={} HTTP/1.1\r\nHost: a\r\n\r\n",
                "a".repeat(100_000)
            ),
            414,
        ),
        (
            "more than 96 headers",
            format!(
                "GET {{path}} HTTP/1.1\r\nHost: a\r\n{}\r\n",
                "a: b\r\n".repeat(100)
            ),
            431,
        ),
        (
            "a malformed header",
            "GET {path} HTTP/1.1\r\nHost: a\r\nbad header\r\n\r\n".to_owned(),
            400,
        ),
        (
            "Content-Length and Transfer-Encoding",
            "POST {path} HTTP/1.1\r\nHost: a\r\ncontent-length: 3\r\n\
             transfer-encoding: chunked\r\n\r\n0\r\n\r\n"
                .to_owned(),
            400,
        ),
        (
            "two Content-Lengths",
            "POST {path} HTTP/1.1\r\nHost: a\r\ncontent-length: 2\r\ncontent-length: 3\r\n\r\n{}"
                .to_owned(),
            400,
        ),
        (
            "a Transfer-Encoding other than chunked",
            "POST {path} HTTP/1.1\r\nHost: a\r\ntransfer-encoding: gzip, chunked\r\n\r\n0\r\n\r\n"
                .to_owned(),
            400,
        ),
        (
            "a stalled head",
            "GET {path} HTTP/1.1\r\nHost: a\r\n".to_owned(),
            408,
        ),
    ]
}

/// On one kept-alive connection, a good request and then a bad head: the
/// good request's answer, then the dialect's refusal, then the connection
/// closes. Sent one after the other, and pipelined in one write.
#[::core::prelude::v1::test]
fn later_heads_get_the_dialects_answer_after_the_earlier_ones() {
    let mut server = Served::start_with(&[("KEYWARD_REQUEST_TIMEOUT_SECS", "1")]);
    for prefix in ["/v1", "/user"] {
        let path = format!("{prefix}/user-api-keys").replace("/user/user-", "/user/");
        for (what, head, status) in bad_heads() {
            let head = head.replace("{path}", &path);
            let what = format!("{prefix} {what}");

            // One after the other.
            let mut conn = Conn::open(server.port);
            conn.send(good(&server, prefix));
            let first = conn.expect(&what);
            assert_eq!(first.status, 200, "{what}: {}", first.text());
            assert!(first.header("x-request-id").is_some());
            let sent = Instant::now();
            conn.send(&head);
            let refusal = conn.expect(&what);
            assert_refusal(&refusal, status, prefix, &what);
            if status == 408 {
                let took = sent.elapsed();
                assert!(took >= Duration::from_millis(900), "{what}: {took:?}");
                assert!(took < Duration::from_secs(5), "{what}: {took:?}");
            }
            conn.assert_closed(&what);

            // Pipelined behind two good requests.
            let mut conn = Conn::open(server.port);
            conn.send(format!(
                "{}{}{head}",
                good(&server, prefix),
                good(&server, prefix)
            ));
            for n in 0..2 {
                let reply = conn.expect(&what);
                assert_eq!(reply.status, 200, "{what} #{n}: {}", reply.text());
            }
            assert_refusal(&conn.expect(&what), status, prefix, &what);
            conn.assert_closed(&what);

            // The first head of a connection is judged the same way.
            let mut conn = Conn::open(server.port);
            conn.send(&head);
            assert_refusal(&conn.expect(&what), status, prefix, &what);
            conn.assert_closed(&what);
        }
    }
    let (status, log) = server.stop();
    assert!(status.success(), "{log}");
    for status in [400, 408, 414, 431] {
        assert!(log.contains(&format!(" unmatched {status} ")), "{log}");
    }
}

/// A key-creation body for the bootstrap user.
fn new_key(server: &Served, name: &str) -> String {
    let expires = (chrono::Utc::now().date_naive() + Days::new(30)).format("%Y-%m-%d");
    json!({
        "name": name,
        "user_id": server.field("user_id"),
        "expiration_date": expires.to_string(),
    })
    .to_string()
}

/// Bodies framed by Content-Length and by chunked transfer coding (with chunk
/// extensions and trailers) are passed whole, and the request after them on
/// the same connection is served: one after the other, pipelined in one
/// write, and dribbled a few bytes at a time.
#[::core::prelude::v1::test]
fn bodies_are_framed_and_the_next_request_is_served() {
    let mut server = Served::start();
    let key = server.field("key");
    let auth = format!("Host: a\r\ntenant: acme\r\nx-key: {key}\r\n");
    let list = format!(
        "GET /v1/user-api-keys?UserId={} HTTP/1.1\r\n{auth}\r\n",
        server.field("user_id")
    );
    let by_length = |name: &str| {
        let body = new_key(&server, name);
        format!(
            "POST /v1/user-api-keys HTTP/1.1\r\n{auth}content-type: application/json\r\n\
             content-length: {}\r\n\r\n{body}",
            body.len()
        )
    };
    let chunked = |name: &str| {
        let body = new_key(&server, name);
        let (one, two) = body.split_at(7);
        format!(
            "POST /v1/user-api-keys HTTP/1.1\r\n{auth}content-type: application/json\r\n\
             transfer-encoding: chunked\r\n\r\n\
             {:x};name=value\r\n{one}\r\n{:X} ; quoted=\"a;b\"\r\n{two}\r\n0\r\nx-trailer: yes\r\n\r\n",
            one.len(),
            two.len()
        )
    };
    let estuary =
        format!("POST /user/api-keys?label=framed HTTP/1.1\r\n{auth}content-length: 0\r\n\r\n");
    let keys = |reply: &Response| reply.json().as_array().map_or(0, Vec::len);

    // One after the other.
    let mut conn = Conn::open(server.port);
    conn.send(by_length("by-length"));
    let created = conn.expect("by length");
    assert_eq!(created.status, 201, "{}", created.text());
    assert_eq!(created.json()["name"], "by-length");
    conn.send(&list);
    let listed = conn.expect("list");
    assert_eq!(listed.status, 200, "{}", listed.text());
    assert_eq!(keys(&listed), 2, "{}", listed.text());
    conn.send(chunked("chunked"));
    let created = conn.expect("chunked");
    assert_eq!(created.status, 201, "{}", created.text());
    assert_eq!(created.json()["name"], "chunked");
    conn.send(&list);
    assert_eq!(keys(&conn.expect("list")), 3);
    conn.send(&estuary);
    assert_eq!(conn.expect("estuary").status, 200);

    // Pipelined in one write, then dribbled: every answer, in order.
    for dribbled in [false, true] {
        let requests = format!(
            "{list}{}{}{list}{estuary}GET /liveness HTTP/1.1\r\nHost: a\r\n\r\n",
            by_length("pipelined-length"),
            chunked("pipelined-chunked"),
        );
        let mut conn = Conn::open(server.port);
        if dribbled {
            conn.dribble(&requests, 7);
        } else {
            conn.send(&requests);
        }
        let before = keys(&conn.expect("list"));
        for (status, name) in [(201, "pipelined-length"), (201, "pipelined-chunked")] {
            let reply = conn.expect(name);
            assert_eq!(reply.status, status, "{}", reply.text());
            assert_eq!(reply.json()["name"], name, "{}", reply.text());
        }
        assert_eq!(keys(&conn.expect("list")), before + 2);
        assert_eq!(conn.expect("estuary").status, 200);
        let live = conn.expect("liveness");
        assert_eq!(live.status, 200);
        assert_eq!(live.body, b"Healthy");
        // Still open and serving.
        conn.send(&list);
        assert_eq!(conn.expect("list").status, 200);
    }

    // A refused head behind bodies: their answers first, then the refusal.
    let mut conn = Conn::open(server.port);
    conn.send(format!(
        "{}{}GET /v1/user-api-keys HTTP/1.1\r\nHost: a\r\nbad header\r\n\r\n",
        by_length("before-refusal-1"),
        chunked("before-refusal-2")
    ));
    assert_eq!(conn.expect("by length").status, 201);
    assert_eq!(conn.expect("chunked").status, 201);
    assert_refusal(&conn.expect("refusal"), 400, "/v1", "behind bodies");
    conn.assert_closed("behind bodies");
    let (status, log) = server.stop();
    assert!(status.success(), "{log}");
}

/// A chunked body that actix's decoder refuses is cut before the offending
/// byte: the request gets one answer, its handler's (a /v1 key creation
/// cannot read its body: 400 in the dialect; actix would add a bare 400 after
/// it), and the connection closes.
#[::core::prelude::v1::test]
fn a_broken_chunked_body_gets_one_answer() {
    let mut server = Served::start_with(&[("KEYWARD_REQUEST_TIMEOUT_SECS", "2")]);
    let key = server.field("key");
    // (Estuary's key creation reads no body.)
    for (path, status) in [("/v1/user-api-keys", 400), ("/user/api-keys", 200)] {
        let mut conn = Conn::open(server.port);
        conn.send(format!(
            "POST {path} HTTP/1.1\r\nHost: a\r\ntenant: acme\r\nx-key: {key}\r\n\
             content-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n\
             2\r\n{{}}\r\nzz\r\n\r\n"
        ));
        let reply = conn.expect(path);
        assert_eq!(reply.status, status, "{}", reply.text());
        let id = reply.header("x-request-id").unwrap().to_owned();
        if status == 400 {
            assert_eq!(reply.json()["traceId"], id.as_str(), "{}", reply.text());
            assert!(
                reply.json()["errors"]["body"].is_array(),
                "{}",
                reply.text()
            );
        }
        conn.assert_closed(path);
    }
    let (status, log) = server.stop();
    assert!(status.success(), "{log}");
}

/// A connection that sends nothing gets 408 once the request timeout is
/// over, as before. A later head is timed from its first byte, and actix's
/// keep-alive (5 s, restarted whenever the idle connection wakes up) does not
/// cut it while it arrives.
#[::core::prelude::v1::test]
fn heads_are_timed_from_their_first_byte() {
    let mut server = Served::start_with(&[("KEYWARD_REQUEST_TIMEOUT_SECS", "8")]);
    let silent = std::thread::spawn({
        let port = server.port;
        move || {
            let mut conn = Conn::open(port);
            let started = Instant::now();
            let reply = conn.expect("silent");
            (reply.status, started.elapsed())
        }
    });
    let request = good(&server, "/v1");
    let (start, end) = request.split_at(20);
    let mut conn = Conn::open(server.port);
    conn.send(&request);
    assert_eq!(conn.expect("first").status, 200);
    std::thread::sleep(Duration::from_millis(1000));
    conn.send(start);
    std::thread::sleep(Duration::from_millis(6000));
    conn.send(end);
    let reply = conn.expect("over the keep-alive");
    assert_eq!(reply.status, 200, "{}", reply.text());
    let (status, took) = silent.join().unwrap();
    assert_eq!(status, 408);
    assert!(took >= Duration::from_millis(7900), "{took:?}");
    let (status, log) = server.stop();
    assert!(status.success(), "{log}");
}

/// A request whose body is larger than actix's payload buffer (32 KiB),
/// followed by a refused head: the request is still served whole.
#[::core::prelude::v1::test]
fn a_large_body_before_a_refused_head_is_served_whole() {
    let mut server = Served::start();
    let key = server.field("key");
    let mut body: Value = serde_json::from_str(&new_key(&server, "large")).unwrap();
    body["padding"] = Value::String("x".repeat(60_000));
    let body = body.to_string();
    let head = format!(
        "POST /v1/user-api-keys HTTP/1.1\r\nHost: a\r\ntenant: acme\r\nx-key: {key}\r\n\
         content-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    let bad = "GET /v1/user-api-keys HTTP/1.1\r\nHost: a\r\nbad header\r\n\r\n";
    for pause in [None, Some(Duration::from_millis(50))] {
        let mut conn = Conn::open(server.port);
        match pause {
            None => conn.send(format!("{head}{body}{bad}")),
            Some(pause) => {
                conn.send(format!("{head}{}", &body[..40_000]));
                std::thread::sleep(pause);
                conn.send(format!("{}{bad}", &body[40_000..]));
            }
        }
        let created = conn.expect("large");
        assert_eq!(created.status, 201, "{pause:?}: {}", created.text());
        assert_refusal(&conn.expect("refusal"), 400, "/v1", "after a large body");
        conn.assert_closed("after a large body");
    }
    let (status, log) = server.stop();
    assert!(status.success(), "{log}");
}

/// A key of the bootstrap user, made over HTTP: its id.
fn make_key(server: &Served, name: &str) -> String {
    let key = server.field("key");
    let body = new_key(server, name);
    let mut conn = Conn::open(server.port);
    conn.send(format!(
        "POST /v1/user-api-keys HTTP/1.1\r\nHost: a\r\ntenant: acme\r\nx-key: {key}\r\n\
         content-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    ));
    let created = conn.expect("create");
    assert_eq!(created.status, 201, "{}", created.text());
    created.json()["id"].as_str().unwrap().to_owned()
}

/// The key `id` as `GET /v1/user-api-keys/{id}` shows it, on a connection of its own.
fn key_state(server: &Served, id: &str) -> Value {
    let mut conn = Conn::open(server.port);
    conn.send(format!(
        "GET /v1/user-api-keys/{id} HTTP/1.1\r\nHost: a\r\ntenant: acme\r\nx-key: {}\r\n\r\n",
        server.field("key")
    ));
    let reply = conn.expect("key state");
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply.json()
}

/// Requests of one dialect aimed at keys, for the connection-close tests.
struct Shapes {
    prefix: &'static str,
    auth: String,
}

impl Shapes {
    fn new(server: &Served, prefix: &'static str) -> Self {
        let auth = format!(
            "Host: a\r\ntenant: acme\r\nx-key: {}\r\n",
            server.field("key")
        );
        Self { prefix, auth }
    }

    /// A request whose handler ignores its body, answered before the body
    /// is read; the body (495 bytes) is made of other requests.
    fn early(&self, method: &str, victim: &str) -> String {
        let path = match self.prefix {
            "/v1" => "/v1/auth?scope=public_api",
            _ => "/user/api-keys",
        };
        let mut body = format!("{}{}", self.read(victim, ""), self.delete(victim));
        assert!(body.len() <= 495, "{}", body.len());
        body.push_str(&" ".repeat(495 - body.len()));
        format!(
            "{method} {path} HTTP/1.1\r\n{}content-length: 495\r\n\r\n{body}",
            self.auth
        )
    }

    /// A request that reads, with `extra` header lines.
    fn read(&self, id: &str, extra: &str) -> String {
        let path = match self.prefix {
            "/v1" => format!("/v1/user-api-keys/{id}"),
            _ => "/user/stats".to_owned(),
        };
        format!("GET {path} HTTP/1.1\r\n{}{extra}\r\n", self.auth)
    }

    /// The same read in HTTP/1.0 (which closes unless asked to keep alive).
    fn read_http10(&self, id: &str) -> String {
        self.read(id, "").replacen("HTTP/1.1", "HTTP/1.0", 1)
    }

    /// A request that revokes (deletes) the key `id`.
    fn delete(&self, id: &str) -> String {
        let path = match self.prefix {
            "/v1" => format!("/v1/user-api-keys/{id}"),
            _ => format!("/user/api-keys/{id}"),
        };
        format!("DELETE {path} HTTP/1.1\r\n{}\r\n", self.auth)
    }

    /// A head keyward refuses (400 for its malformed header).
    fn refused(&self) -> String {
        format!(
            "GET {}/x HTTP/1.1\r\nHost: a\r\nbad header\r\n\r\n",
            self.prefix
        )
    }

    /// A head keyward refuses with 414.
    fn too_long(&self) -> String {
        format!(
            "GET {}/x?q={} HTTP/1.1\r\nHost: a\r\n\r\n",
            self.prefix,
            "a".repeat(10_000)
        )
    }
}

/// Sends `requests` in one write and reads every byte the server sends until
/// it closes the connection: the answers, to a `HEAD` where `heads` says so,
/// in order, and then nothing. Returns them, checking that the connection
/// closed promptly after the last.
fn answers_then_close(
    server: &Served,
    requests: &str,
    heads: &[bool],
    what: &str,
) -> Vec<Response> {
    let mut conn = Conn::open(server.port);
    conn.send(requests);
    let mut answers = Vec::new();
    for (n, &head) in heads.iter().enumerate() {
        answers.push(
            conn.response_to(head)
                .unwrap_or_else(|| panic!("{what}: closed before answer #{n}")),
        );
    }
    let answered = Instant::now();
    conn.assert_closed(what);
    let took = answered.elapsed();
    assert!(
        took < Duration::from_millis(1500),
        "{what}: closed after {took:?}"
    );
    answers
}

/// An answer that closes the connection, and one that does not say so.
fn says_close(reply: &Response) -> bool {
    reply.header("connection") == Some("close")
}

/// RFC 9112 section 9.6: once an answer closes the connection (an answer
/// written before its request's body was read, which actix marks `close`),
/// nothing after it is served or written, and the connection closes: what was
/// pipelined behind it (a DELETE) is not executed, nor are the requests in
/// the body. With GET and HEAD, in both dialects.
#[::core::prelude::v1::test]
fn an_answer_before_the_body_is_the_last() {
    let mut server = Served::start();
    for prefix in ["/v1", "/user"] {
        let shapes = Shapes::new(&server, prefix);
        for method in ["GET", "HEAD"] {
            let what = format!("{prefix} {method} answered early");
            let (victim, target) = (make_key(&server, "victim"), make_key(&server, "target"));
            let before = (key_state(&server, &victim), key_state(&server, &target));
            let requests = format!(
                "{}{}{}",
                shapes.early(method, &victim),
                shapes.read(&target, ""),
                shapes.delete(&target)
            );
            let answers = answers_then_close(&server, &requests, &[method == "HEAD"], &what);
            let early = &answers[0];
            // (Estuary's listing answers GET only.)
            let expected = if (prefix, method) == ("/user", "HEAD") {
                405
            } else {
                200
            };
            assert_eq!(early.status, expected, "{what}: {}", early.text());
            assert!(says_close(early), "{what}: {}", early.text());
            if method == "HEAD" {
                assert!(early.body.is_empty());
            }
            let after = (key_state(&server, &victim), key_state(&server, &target));
            assert_eq!(after, before, "{what}: a request after the close ran");

            // A refused head behind it is not answered either.
            let requests = format!("{}{}", shapes.early(method, &victim), shapes.too_long());
            let answers = answers_then_close(&server, &requests, &[method == "HEAD"], &what);
            assert!(says_close(&answers[0]), "{what}: {}", answers[0].text());
        }
    }
    let (status, log) = server.stop();
    assert!(status.success(), "{log}");
    assert!(!log.contains(" unmatched 414 "), "{log}");
}

/// A request that says `Connection: close`, or an HTTP/1.0 one without
/// keep-alive, is the connection's last: its answer, and nothing after it,
/// neither a request pipelined behind it (a DELETE) nor a refusal of the head
/// behind it. Earlier answers on the connection are not marked `close`.
#[::core::prelude::v1::test]
fn a_request_that_says_close_is_the_last() {
    let mut server = Served::start();
    for prefix in ["/v1", "/user"] {
        let shapes = Shapes::new(&server, prefix);
        let (id, target) = (make_key(&server, "read"), make_key(&server, "target"));
        let before = key_state(&server, &target);
        let close = "Connection: close\r\n";
        let cases = [
            (
                "close, then a DELETE",
                format!("{}{}", shapes.read(&id, close), shapes.delete(&target)),
                1,
            ),
            (
                "close, then a refused head",
                format!("{}{}", shapes.read(&id, close), shapes.refused()),
                1,
            ),
            (
                "close among other options",
                format!(
                    "{}{}",
                    shapes.read(&id, "Connection: te, Close\r\n"),
                    shapes.delete(&target)
                ),
                1,
            ),
            (
                "HTTP/1.0, then a DELETE",
                format!("{}{}", shapes.read_http10(&id), shapes.delete(&target)),
                1,
            ),
            (
                "two, then close, then a DELETE",
                format!(
                    "{}{}{}{}",
                    shapes.read(&id, ""),
                    shapes.read(&id, ""),
                    shapes.read(&id, close),
                    shapes.delete(&target)
                ),
                3,
            ),
        ];
        for (what, requests, count) in cases {
            let what = format!("{prefix} {what}");
            let answers = answers_then_close(&server, &requests, &vec![false; count], &what);
            for (n, reply) in answers.iter().enumerate() {
                assert_eq!(reply.status, 200, "{what} #{n}: {}", reply.text());
                assert!(reply.json().is_object(), "{what} #{n}: {}", reply.text());
                let last = n + 1 == count;
                let http10 = what.contains("HTTP/1.0");
                // (An HTTP/1.0 answer closes without saying so.)
                assert_eq!(
                    says_close(reply),
                    last && !http10,
                    "{what} #{n}: {}",
                    reply.text()
                );
            }
            assert_eq!(
                key_state(&server, &target),
                before,
                "{what}: the DELETE ran"
            );
        }
    }
    let (status, log) = server.stop();
    assert!(status.success(), "{log}");
    assert!(!log.contains(" unmatched 400 "), "{log}");
}

/// Pipelined requests, `HEAD` among them, each get their own answer, framed
/// for their own method (no body for `HEAD`), and the connection stays open.
#[::core::prelude::v1::test]
fn pipelined_answers_keep_their_own_framing() {
    let mut server = Served::start();
    for prefix in ["/v1", "/user"] {
        let shapes = Shapes::new(&server, prefix);
        let id = make_key(&server, "read");
        let head = shapes.read(&id, "").replacen("GET", "HEAD", 1);
        let get = shapes.read(&id, "");
        let mut conn = Conn::open(server.port);
        conn.send(format!("{head}{get}{head}{get}{get}"));
        for (n, is_head) in [true, false, true, false, false].into_iter().enumerate() {
            let reply = conn.response_to(is_head).unwrap();
            let what = format!("{prefix} #{n}: {}", reply.text());
            assert!(!says_close(&reply), "{what}");
            if is_head {
                assert!(reply.body.is_empty(), "{what}");
            } else {
                assert_eq!(reply.status, 200, "{what}");
                assert!(reply.json().is_object(), "{what}");
            }
        }
        // Still open and serving.
        conn.send(&get);
        assert_eq!(conn.expect("after").status, 200);
    }
    let (status, log) = server.stop();
    assert!(status.success(), "{log}");
}
