//! The front door: the HTTP server, and a look at each connection's first
//! request head before actix's HTTP/1 codec sees it.
//!
//! actix-http answers some requests itself, before any service (and so before
//! [`super::context`]) runs, with a bare status: a head over its fixed 128 KiB
//! buffer (431), a request target over `http`'s 65534-byte URI limit, more than
//! 96 headers or a head it cannot parse (400), and a head that does not arrive
//! within `client_request_timeout` (408). None of those limits can be changed
//! and no hook sees those answers (`h1::Dispatcher` writes them from its read
//! loop). So the first head of every connection is read here, under lower
//! limits and the request timeout, and a head that would be refused is answered
//! here in the dialect of its path, with an `x-request-id` and an access-log
//! line; a head within the limits is handed to actix with the bytes already read.
//!
//! Later requests on a kept-alive connection go straight to actix: refusing
//! them here would mean framing every body on the connection. A client that
//! sends an oversized head after a first good request still gets actix's bare answer.

use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use actix_http::{HttpService, Protocol};
use actix_service::{fn_factory, fn_service, map_config, Service, ServiceFactory};
use actix_web::dev::AppConfig;
use actix_web::rt::net::TcpStream;
use actix_web::web::{self, Bytes};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::context::{new_request_id, Dialect};
use crate::error::Error;
use crate::AppState;

/// Longest request target (path and query) accepted; longer is 414.
pub const MAX_TARGET_BYTES: usize = 8 * 1024;
/// Largest request head accepted (request line and headers); larger is 431.
/// Below actix's own 128 KiB, so that actix never refuses a head we let through.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Most header fields accepted; more is 431. actix-http's own limit.
pub const MAX_HEADERS: usize = 96;

/// The HTTP server for `state`, listening on `bind`; run it with `.await`.
/// Like `actix_web::HttpServer` (signals, graceful shutdown), but every
/// connection passes [`first_head`] first.
pub fn server(state: web::Data<AppState>, bind: &str) -> io::Result<actix_server::Server> {
    let timeout = state.settings.request_timeout();
    Ok(actix_server::Server::build()
        .shutdown_timeout(30)
        .bind("keyward", bind, move || {
            let state = state.clone();
            let http = HttpService::build()
                // Only bounds heads we have already read whole; kept as a backstop.
                .client_request_timeout(timeout)
                // actix-web's HttpServer default, kept.
                .client_disconnect_timeout(Duration::from_secs(1))
                .finish(map_config(crate::app(state.clone()), |_| {
                    AppConfig::default()
                }));
            fn_factory(move || {
                let http = http.new_service(());
                let state = state.clone();
                async move {
                    let http = Rc::new(http.await?);
                    Ok::<_, ()>(fn_service(move |io: TcpStream| {
                        let (http, state) = (Rc::clone(&http), state.clone());
                        async move {
                            let _ = io.set_nodelay(true);
                            let peer = io.peer_addr().ok();
                            match first_head(io, &state).await {
                                Some(io) => http.call((io, Protocol::Http1, peer)).await,
                                None => Ok(()),
                            }
                        }
                    }))
                }
            })
        })?
        .run())
}

/// What to do with the bytes read so far.
#[derive(Debug)]
enum Verdict {
    /// A whole head within the limits: actix takes it from here.
    Pass,
    /// Not a whole head yet.
    More,
    /// Answer with this error and close.
    Refuse(Error),
}

fn inspect(buf: &[u8]) -> Verdict {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let parsed = req.parse(buf);
    let target_too_long = match req.path {
        Some(path) => path.len() > MAX_TARGET_BYTES,
        // The request line is not complete yet: it holds at least the target.
        None => buf.len() > MAX_TARGET_BYTES + 32,
    };
    match parsed {
        _ if target_too_long => Verdict::Refuse(Error::UriTooLong),
        // actix refuses these two after parsing, also with a bare 400.
        Ok(httparse::Status::Complete(_))
            if req.version == Some(1)
                && !req
                    .headers
                    .iter()
                    .any(|h| h.name.eq_ignore_ascii_case("host")) =>
        {
            Verdict::Refuse(Error::invalid("Host", "The Host header is required."))
        }
        Ok(httparse::Status::Complete(_))
            if req
                .path
                .is_some_and(|p| actix_web::http::Uri::try_from(p).is_err()) =>
        {
            Verdict::Refuse(Error::invalid(
                "request",
                "The request target is malformed.",
            ))
        }
        Ok(httparse::Status::Complete(_)) => Verdict::Pass,
        Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD_BYTES => {
            Verdict::Refuse(Error::HeadersTooLarge)
        }
        Ok(httparse::Status::Partial) => Verdict::More,
        Err(httparse::Error::TooManyHeaders) => Verdict::Refuse(Error::HeadersTooLarge),
        // The same parser as actix's: it would answer a bare 400.
        Err(_) => Verdict::Refuse(Error::invalid("request", "The request is malformed.")),
    }
}

/// The dialect of the request whose (possibly partial) head is `buf`.
fn dialect_of(buf: &[u8]) -> Dialect {
    let line = buf.split(|&b| b == b'\n').next().unwrap_or_default();
    let target = line.split(|&b| b == b' ').nth(1).unwrap_or_default();
    // Absolute form (`http://host/user/...`): the path starts after the authority.
    let target = match target.windows(3).position(|w| w == b"://") {
        Some(at) => {
            let rest = &target[at + 3..];
            &rest[rest.iter().position(|&b| b == b'/').unwrap_or(rest.len())..]
        }
        None => target,
    };
    let path = target.split(|&b| b == b'?').next().unwrap_or_default();
    Dialect::of(&String::from_utf8_lossy(path))
}

/// Reads the connection's first head within the limits and the request
/// timeout. `Some`: the stream for actix, replaying what was read. `None`: the
/// connection is done (answered here, or gone).
pub async fn first_head(io: TcpStream, state: &AppState) -> Option<Prefixed> {
    let started = Instant::now();
    let deadline = started + state.settings.request_timeout();
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 8192];
    loop {
        let error = match inspect(&buf) {
            Verdict::Pass => {
                return Some(Prefixed {
                    prefix: Bytes::from(buf),
                    io,
                })
            }
            Verdict::Refuse(error) => error,
            Verdict::More => {
                let left = deadline.saturating_duration_since(Instant::now());
                let read = actix_web::rt::time::timeout(left, async {
                    loop {
                        io.readable().await?;
                        match io.try_read(&mut chunk) {
                            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                            other => return other,
                        }
                    }
                })
                .await;
                match read {
                    Ok(Ok(0)) | Ok(Err(_)) => return None,
                    Ok(Ok(n)) => {
                        buf.extend_from_slice(&chunk[..n]);
                        continue;
                    }
                    Err(_elapsed) => Error::RequestTimeout,
                }
            }
        };
        refuse(io, &buf, error, state, started).await;
        return None;
    }
}

/// Answers `error` in the dialect of the head in `buf`, logs it like any
/// request, and closes the connection.
async fn refuse(io: TcpStream, buf: &[u8], error: Error, state: &AppState, started: Instant) {
    let request_id = new_request_id();
    let response = dialect_of(buf).render(&error, &request_id);
    let status = response.status();
    let mut head = format!(
        "HTTP/1.1 {} {}\r\nx-request-id: {request_id}\r\nconnection: close\r\n",
        status.as_str(),
        status.canonical_reason().unwrap_or_default()
    );
    for (name, value) in response.headers() {
        if let Ok(value) = value.to_str() {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
    }
    let body = actix_web::body::to_bytes(response.into_body())
        .await
        .unwrap_or_default();
    head.push_str(&format!("content-length: {}\r\n\r\n", body.len()));

    // The method only if it is a plain token: it becomes a metrics label.
    let method = buf
        .split(|&b| b == b' ')
        .next()
        .filter(|m| (1..=16).contains(&m.len()) && m.iter().all(u8::is_ascii_uppercase))
        .map_or("-", |m| std::str::from_utf8(m).unwrap_or("-"));
    let elapsed = started.elapsed();
    state
        .metrics
        .observe_request("unmatched", method, status, elapsed);
    log::info!(
        target: "keyward::access",
        "{request_id} tenant=- {method} unmatched {} {:.3}ms",
        status.as_u16(),
        elapsed.as_secs_f64() * 1000.0,
    );

    let mut io = io;
    let answer = [head.as_bytes(), &body].concat();
    let linger = Duration::from_secs(1);
    let _ = actix_web::rt::time::timeout(linger, async {
        write_all(&io, &answer).await?;
        std::future::poll_fn(|cx| Pin::new(&mut io).poll_shutdown(cx)).await?;
        // Read what the client is still sending before closing: closing with
        // unread bytes resets the connection, and the client may lose the answer.
        let mut sink = [0u8; 8192];
        loop {
            io.readable().await?;
            match io.try_read(&mut sink) {
                Ok(0) => return Ok::<_, io::Error>(()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
    })
    .await;
}

async fn write_all(io: &TcpStream, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        io.writable().await?;
        match io.try_write(bytes) {
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// A connection whose first bytes were already read: they are read again first.
pub struct Prefixed {
    prefix: Bytes,
    io: TcpStream,
}

impl AsyncRead for Prefixed {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.prefix.is_empty() {
            return Pin::new(&mut this.io).poll_read(cx, buf);
        }
        let n = this.prefix.len().min(buf.remaining());
        buf.put_slice(&this.prefix.split_to(n));
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Prefixed {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdict(head: &str) -> String {
        format!("{:?}", inspect(head.as_bytes()))
    }

    #[test]
    fn heads_within_the_limits_pass() {
        assert_eq!(verdict("GET /v1/x HTTP/1.1\r\nHost: a\r\n\r\n"), "Pass");
        assert_eq!(verdict("GET /v1/x HTTP/1.0\r\n\r\n"), "Pass");
        assert!(verdict("GET /v1/x HTTP/1.1\r\n\r\n").starts_with("Refuse(Invalid"));
        assert_eq!(verdict("GET /v1/x HTTP/1.1\r\nHost: a\r\n"), "More");
        assert_eq!(verdict(""), "More");
        let long_but_fine = format!(
            "GET /v1/x?q={} HTTP/1.1\r\nHost: a\r\n\r\n",
            "a".repeat(8000)
        );
        assert_eq!(verdict(&long_but_fine), "Pass");
    }

    #[test]
    fn oversized_heads_are_refused() {
        let query = format!("GET /v1/x?q={} HTTP/1.1\r\n\r\n", "a".repeat(100_000));
        assert_eq!(verdict(&query), "Refuse(UriTooLong)");
        // Even before the request line is complete.
        assert_eq!(verdict(&query[..20_000]), "Refuse(UriTooLong)");
        let big = format!("GET / HTTP/1.1\r\nx-big: {}\r\n", "a".repeat(70_000));
        assert_eq!(verdict(&big), "Refuse(HeadersTooLarge)");
        let many = format!("GET / HTTP/1.1\r\n{}\r\n", "a: b\r\n".repeat(97));
        assert_eq!(verdict(&many), "Refuse(HeadersTooLarge)");
        assert!(verdict("GET / HTTP/1.1\r\nbad header\r\n\r\n").starts_with("Refuse(Invalid"));
    }

    #[test]
    fn the_dialect_follows_the_path() {
        let of = |head: &str| dialect_of(head.as_bytes());
        assert_eq!(of("GET /user/api-keys?x HTTP/1.1\r\n"), Dialect::Estuary);
        assert_eq!(of("GET /user?x"), Dialect::Estuary);
        assert_eq!(
            of("POST http://h:1/user/api-keys HTTP/1.1"),
            Dialect::Estuary
        );
        assert_eq!(
            of("GET /v1/user-api-keys HTTP/1.1"),
            Dialect::ProblemDetails
        );
        assert_eq!(of("GET /users HTTP/1.1"), Dialect::ProblemDetails);
        assert_eq!(of(""), Dialect::ProblemDetails);
    }
}
