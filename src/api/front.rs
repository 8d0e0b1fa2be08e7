//! The front door: the HTTP server, and a look at every request head on a
//! connection before actix's HTTP/1 codec sees it.
//!
//! actix-http answers some requests itself, before any service (and so before
//! [`super::context`]) runs, with a bare status and an empty body: a head over
//! its fixed 128 KiB buffer (431), a request target over `http`'s 65534-byte
//! URI limit, more than 96 headers, a head it cannot parse or whose framing it
//! refuses (two Content-Lengths, Content-Length with Transfer-Encoding, a
//! transfer coding other than chunked, a missing or repeated Host: 400), and a
//! first head that does not arrive within `client_request_timeout` (408; a
//! later head that stalls is waited for forever). None of those limits can be
//! changed and no hook sees those answers (`h1::Dispatcher` writes them from
//! its read loop).
//!
//! So every connection is read through [`Guarded`], which follows the
//! connection's HTTP/1.1 framing ([`framing`]): it finds each request head,
//! judges it under lower limits and the request timeout, and finds the end of
//! its body (by Content-Length or chunked coding) to find the next head. Bytes
//! reach actix unchanged, and a head only once it is judged fine. A head that
//! would be refused is answered here in the dialect of its path, with an
//! `x-request-id`, an access-log line and metrics: actix is told the
//! connection ended before that head, answers the requests before it (with its
//! read side closed it still finishes and writes what it has, in order), and
//! then shuts the connection down, which is when [`Guarded`] writes the
//! refusal, reads what the client still sends for a moment (closing with
//! unread bytes would reset the connection and could lose the answer), and
//! closes.
//!
//! The request timeout bounds the first head from the connection's start and
//! every later head from its first byte; between requests, an idle connection
//! is actix's keep-alive's to close. `Upgrade: websocket` and `CONNECT` (which
//! keyward does not serve) make actix read the rest of the connection as that
//! request's body, so nothing after them is judged. A chunked body that actix's
//! decoder would refuse is cut before the offending byte: the request then
//! ends early, and its handler answers (in the dialect) for a body it could not read.
//!
//! One request at a time (RFC 9112 section 9.6). actix's codec goes on
//! decoding what is pipelined behind an answer that closes the connection
//! (one written before its request's body was read, which actix marks
//! `Connection: close`, or one to a request that asked to close), and serves
//! it; and it marks every answer it writes with the connection option of the
//! last request it decoded, so a later `Connection: close` would mark earlier
//! answers too. So [`Guarded`] follows the write side as well
//! ([`framing::Answers`]: where each answer ends, whether it closes), and
//! hands actix the next request only once the one before is answered (what
//! the client pipelines meanwhile is read ahead, up to [`AHEAD`], and waits).
//! Once an answer closes the connection (it says `connection: close`, or its
//! request said `Connection: close` or was HTTP/1.0 without keep-alive),
//! actix reads the end of its input, nothing more it writes is sent, and the
//! connection is shut down after that answer: nothing pipelined behind it is
//! served, and a refused head behind it is not answered. A request that is
//! not pipelined costs nothing more than following its answer's head.
//!
//! Known limit. actix drops request body bytes it has not yet decoded when
//! its read side ends: a chunked body cut short as above loses what actix had
//! not decoded of it (its handler then answers for a body it could not read).

mod framing;

use std::future::Future;
use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use actix_http::{HttpService, Protocol};
use actix_service::{fn_factory, fn_service, map_config, Service, ServiceFactory};
use actix_web::body::MessageBody;
use actix_web::dev::AppConfig;
use actix_web::rt::net::TcpStream;
use actix_web::rt::time::{sleep_until, Instant, Sleep};
use actix_web::web;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use self::framing::{Answers, Framing, Request, Then};
pub use self::framing::{MAX_HEADERS, MAX_HEAD_BYTES, MAX_TARGET_BYTES};
use super::context::{new_request_id, Dialect};
use crate::error::Error;
use crate::AppState;

/// How long a refused connection is kept to write the answer and read what
/// the client still sends.
const LINGER: Duration = Duration::from_secs(1);

/// How much is read ahead while the next request waits for the answer to
/// the one before; beyond, the client waits (its bytes stay in the socket).
const AHEAD: usize = 64 * 1024;

/// The HTTP server for `state`, listening on `bind`; run it with `.await`.
/// Like `actix_web::HttpServer` (signals, graceful shutdown), but every
/// connection is read through [`Guarded`].
pub fn server(state: web::Data<AppState>, bind: &str) -> io::Result<actix_server::Server> {
    // A blocking thread beyond the pool's size could only wait for a
    // connection, and each one keeps an allocator heap: a burst of database
    // work queues for the threads instead (a finishing thread takes the next
    // closure at once).
    let blocking_threads = usize::try_from(state.settings.pool_size)
        .unwrap_or(1)
        .max(1);
    Ok(actix_server::Server::build()
        .worker_max_blocking_threads(blocking_threads)
        .shutdown_timeout(30)
        .bind("keyward", bind, move || {
            let state = state.clone();
            let http = HttpService::build()
                // Heads are timed by `Guarded`, all of them; actix's own timer
                // (first head only, bare 408) would race it.
                .client_request_timeout(Duration::ZERO)
                // `Guarded` ends the read side before a refused head and relies
                // on actix answering the requests before it; this is the default.
                .h1_allow_half_closed(true)
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
                        let _ = io.set_nodelay(true);
                        let peer = io.peer_addr().ok();
                        let io = Guarded::new(io, state.clone());
                        let http = Rc::clone(&http);
                        async move { http.call((io, Protocol::Http1, peer)).await }
                    }))
                }
            })
        })?
        .run())
}

/// A connection as actix's HTTP/1 dispatcher reads it: the socket's bytes,
/// unchanged, each request head only once it is judged fine, and nothing from
/// a refused head on. See the module docs.
///
/// Bytes are read straight into actix's buffer and judged where they lie; a
/// head that is not whole at the end of a read is copied aside until it is,
/// except its first byte, which goes to actix at once: actix's keep-alive
/// timer runs until actix has read a byte, and a head that has begun to
/// arrive is not idle. A lone first byte of a head ([`framing::harmless`]) is
/// nothing actix could act on.
pub struct Guarded {
    io: TcpStream,
    state: web::Data<AppState>,
    framing: Framing,
    /// The head being read, from its first byte, once it spans reads.
    head: Vec<u8>,
    /// How many of `head`'s bytes actix already has (0 or 1).
    head_given: usize,
    /// Judged bytes not yet in actix's buffer (after a head that spanned reads).
    judged: Vec<u8>,
    judged_at: usize,
    /// While a head is due: by when it must be whole, and since when it is
    /// awaited (the first head from the connection's start, a later one from
    /// its first byte).
    due: Option<(Instant, Instant)>,
    timer: Option<Pin<Box<Sleep>>>,
    /// Once nothing more goes to actix: what to do when it shuts down.
    end: Option<End>,
    /// Bytes read but not judged yet: what follows a request that is not
    /// answered yet (the next request waits for it), from `pending_at`.
    pending: Vec<u8>,
    pending_at: usize,
    /// The client is done sending (seen while the next request waited).
    peer_done: bool,
    /// Requests let through, and final answers actix wrote.
    requests: u64,
    answered: u64,
    /// The last request let through (the one being answered).
    request: Request,
    /// The answers written, followed to find where each ends.
    answers: Answers,
    /// An answer closed the connection: nothing more is written.
    closed: bool,
}

/// The end of a connection that keyward cut short.
struct End {
    /// The refusal to write after actix's own answers (empty: none).
    answer: Vec<u8>,
    written: usize,
    shut: bool,
    /// When to stop writing and reading and close.
    linger: Option<Instant>,
}

impl Guarded {
    pub fn new(io: TcpStream, state: web::Data<AppState>) -> Self {
        let now = Instant::now();
        let due = Some((now + state.settings.request_timeout(), now));
        Self {
            io,
            state,
            framing: Framing::default(),
            head: Vec::new(),
            head_given: 0,
            judged: Vec::new(),
            judged_at: 0,
            due,
            timer: None,
            end: None,
            pending: Vec::new(),
            pending_at: 0,
            peer_done: false,
            requests: 0,
            answered: 0,
            request: Request::default(),
            answers: Answers::default(),
            closed: false,
        }
    }

    /// Whether the next request must wait: the bytes judged so far end a
    /// request that actix has not answered yet.
    fn waiting(&self) -> bool {
        self.answered < self.requests && self.head.is_empty() && self.framing.between_requests()
    }

    /// A head was accepted: its answer is now awaited.
    fn passed(&mut self, request: Request) {
        self.head_passed();
        self.requests += 1;
        self.request = request;
    }

    /// Follows the bytes actix just wrote; at the end of an answer that
    /// closes the connection, nothing more goes to actix or to the client.
    fn wrote(&mut self, mut data: &[u8], cx: &Context<'_>) {
        while !data.is_empty() {
            let (took, ended) = self.answers.follow(data, self.request);
            data = &data[took..];
            let Some(close) = ended else { continue };
            // (An answer actix adds of its own, after a body it could not
            // decode, answers no further request.)
            self.answered = (self.answered + 1).min(self.requests);
            if close || self.request.close {
                self.closed = true;
                match &mut self.end {
                    // Nothing after an answer that closed the connection.
                    Some(end) => end.answer.clear(),
                    None => self.cut(Vec::new()),
                }
                // actix reads the end of its input, and shuts down.
                cx.waker().wake_by_ref();
                return;
            }
            if !self.waiting() && (self.pending_at < self.pending.len() || self.peer_done) {
                // The next request may go: actix reads it on its next turn.
                cx.waker().wake_by_ref();
            }
        }
    }

    /// A head has begun and is not whole yet: from now on it is timed (the
    /// first head is timed from the start).
    fn head_begun(&mut self) {
        if self.due.is_none() {
            let now = Instant::now();
            self.due = Some((now + self.state.settings.request_timeout(), now));
        }
    }

    /// A head was let through: no head is due. (A timer left set would wake
    /// the idle connection later, and each wake-up restarts actix's keep-alive.)
    fn head_passed(&mut self) {
        if self.due.take().is_some() {
            self.timer = None;
        }
    }

    /// Judges the head at the start of `head` refused: nothing more goes to
    /// actix; `error` is answered after actix's answers.
    fn refuse(&mut self, error: Error, head: &[u8]) {
        let since = self.due.map_or_else(Instant::now, |(_, since)| since);
        let answer = answer(&self.state, error, head, since);
        self.cut(answer);
    }

    /// Nothing more goes to actix.
    fn cut(&mut self, answer: Vec<u8>) {
        self.end = Some(End {
            answer,
            written: 0,
            shut: false,
            linger: None,
        });
        self.due = None;
        self.head = Vec::new();
    }

    /// Judges the bytes just put into `buf` after its first `before`, when
    /// no head is held: keeps those actix may have in `buf`, holds back an
    /// unfinished head. Returns how many bytes actix gets, and how many were
    /// dealt with (the rest start the next request, which waits).
    /// (`from_pending`: those bytes are `pending`'s first; else they were just
    /// read, and the rest is put in `pending`.)
    fn judge_in_place(
        &mut self,
        buf: &mut ReadBuf<'_>,
        before: usize,
        from_pending: bool,
    ) -> (usize, usize) {
        let new = &buf.filled()[before..];
        let step = self.framing.frame(new);
        if let Some(request) = step.passed {
            self.passed(request);
        }
        let (keep, used) = match step.then {
            Then::All => (new.len(), new.len()),
            Then::Next => {
                if !from_pending {
                    self.pending.extend_from_slice(&new[step.take..]);
                }
                (step.take, step.take)
            }
            Then::Partial => {
                let head = &new[step.take..];
                self.head.extend_from_slice(head);
                self.head_given = usize::from(framing::harmless(head[0]));
                self.head_begun();
                (step.take + self.head_given, new.len())
            }
            Then::Refuse(error) => {
                self.refuse(error, &new[step.take..]);
                (step.take, new.len())
            }
            Then::Broken => {
                self.cut(Vec::new());
                (step.take, new.len())
            }
        };
        buf.set_filled(before + keep);
        (keep, used)
    }

    /// Judges the held head with the bytes just read after it; what is judged
    /// goes to `judged`, for actix, and what follows a request to `pending`.
    fn judge_held(&mut self) {
        let step = self.framing.frame(&self.head);
        if let Some(request) = step.passed {
            self.passed(request);
        }
        if step.take > self.head_given {
            self.judged
                .extend_from_slice(&self.head[self.head_given..step.take]);
        }
        match step.then {
            Then::Partial if step.take == 0 => return,
            Then::Partial => {
                self.head.drain(..step.take);
                self.head_given = usize::from(framing::harmless(self.head[0]));
                self.judged.extend_from_slice(&self.head[..self.head_given]);
                self.head_begun();
                return;
            }
            Then::All => {}
            // Before what `pending` still holds (the socket is read only once it is empty).
            Then::Next => {
                let at = self.pending_at;
                self.pending
                    .splice(at..at, self.head[step.take..].iter().copied());
            }
            Then::Refuse(error) => {
                let head = std::mem::take(&mut self.head);
                self.refuse(error, &head[step.take..]);
            }
            Then::Broken => self.cut(Vec::new()),
        }
        // No head held any more; do not keep a large buffer for the connection's life.
        if self.head.capacity() > 16 * 1024 {
            self.head = Vec::new();
        }
        self.head.clear();
        self.head_given = 0;
    }

    /// While the next request waits: reads what the client sends into
    /// `pending` (up to a bound), so that its end is seen and the socket wakes
    /// the connection. Ready with an error only.
    fn read_ahead(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.peer_done && self.pending.len() - self.pending_at < AHEAD {
            let mut chunk = [MaybeUninit::<u8>::uninit(); 4096];
            let mut chunk = ReadBuf::uninit(&mut chunk);
            match Pin::new(&mut self.io).poll_read(cx, &mut chunk) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Ready(Ok(())) if chunk.filled().is_empty() => self.peer_done = true,
                Poll::Ready(Ok(())) => self.pending.extend_from_slice(chunk.filled()),
            }
        }
        Poll::Pending
    }

    /// Consumes `n` bytes of `pending`.
    fn take_pending(&mut self, n: usize) {
        self.pending_at += n;
        if self.pending_at == self.pending.len() {
            if self.pending.capacity() > 16 * 1024 {
                self.pending = Vec::new();
            }
            self.pending.clear();
            self.pending_at = 0;
        }
    }
}

impl AsyncRead for Guarded {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.judged_at < this.judged.len() {
                let n = (this.judged.len() - this.judged_at).min(buf.remaining());
                buf.put_slice(&this.judged[this.judged_at..this.judged_at + n]);
                this.judged_at += n;
                if this.judged_at == this.judged.len() {
                    this.judged.clear();
                    this.judged_at = 0;
                }
                return Poll::Ready(Ok(()));
            }
            if this.end.is_some() {
                // The end of the stream, as far as actix knows.
                return Poll::Ready(Ok(()));
            }
            if this.waiting() {
                // [`Guarded::wrote`] wakes the connection once the answer is written.
                return this.read_ahead(cx);
            }
            if buf.remaining() == 0 {
                return Poll::Ready(Ok(()));
            }
            let before = buf.filled().len();
            let from_pending = this.pending_at < this.pending.len();
            if from_pending {
                let n = (this.pending.len() - this.pending_at).min(buf.remaining());
                buf.put_slice(&this.pending[this.pending_at..this.pending_at + n]);
            } else if this.peer_done {
                return Poll::Ready(Ok(()));
            } else {
                match Pin::new(&mut this.io).poll_read(cx, buf) {
                    Poll::Pending => {
                        let Some((due, _)) = this.due else {
                            return Poll::Pending;
                        };
                        if poll_until(&mut this.timer, due, cx).is_pending() {
                            return Poll::Pending;
                        }
                        let head = std::mem::take(&mut this.head);
                        this.refuse(Error::RequestTimeout, &head);
                        continue;
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Ready(Ok(())) => {}
                }
                if buf.filled().len() == before {
                    // The client is done sending (a head it left unfinished is dropped).
                    return Poll::Ready(Ok(()));
                }
            }
            let new = buf.filled().len() - before;
            if this.head.is_empty() {
                let (keep, used) = this.judge_in_place(buf, before, from_pending);
                if from_pending {
                    this.take_pending(used);
                }
                if keep > 0 || this.end.is_some() {
                    return Poll::Ready(Ok(()));
                }
            } else {
                this.head.extend_from_slice(&buf.filled()[before..]);
                buf.set_filled(before);
                if from_pending {
                    this.take_pending(new);
                }
                this.judge_held();
            }
        }
    }
}

impl AsyncWrite for Guarded {
    /// Writes actix's answers, following them: after one that closes the
    /// connection, nothing more is written (nor, should actix write more,
    /// sent) and actix reads the end of its input.
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.closed {
            return Poll::Ready(Ok(buf.len()));
        }
        let n = ready!(Pin::new(&mut this.io).poll_write(cx, buf))?;
        this.wrote(&buf[..n], cx);
        Poll::Ready(Ok(n))
    }

    // actix-http writes with `poll_write` only; the default `poll_write_vectored`
    // (the first non-empty slice) goes through it too.

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    /// actix calls this once it has written its answers and is closing. After
    /// a refusal: write it, shut down, read what the client still sends until
    /// it closes or [`LINGER`] is over.
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let Self { io, end, timer, .. } = self.get_mut();
        let Some(end) = end else {
            return Pin::new(io).poll_shutdown(cx);
        };
        let linger = *end.linger.get_or_insert_with(|| Instant::now() + LINGER);
        loop {
            let progress = if end.written < end.answer.len() {
                match Pin::new(&mut *io).poll_write(cx, &end.answer[end.written..]) {
                    Poll::Ready(Ok(n)) if n > 0 => {
                        end.written += n;
                        Poll::Ready(())
                    }
                    Poll::Ready(_) => return Poll::Ready(Ok(())),
                    Poll::Pending => Poll::Pending,
                }
            } else if !end.shut {
                Pin::new(&mut *io)
                    .poll_shutdown(cx)
                    .map(|_| end.shut = true)
            } else {
                let mut sink = [0u8; 4096];
                let mut sink = ReadBuf::new(&mut sink);
                match Pin::new(&mut *io).poll_read(cx, &mut sink) {
                    Poll::Ready(Ok(())) if !sink.filled().is_empty() => Poll::Ready(()),
                    Poll::Ready(_) => return Poll::Ready(Ok(())),
                    Poll::Pending => Poll::Pending,
                }
            };
            if progress.is_pending() {
                return match poll_until(timer, linger, cx) {
                    Poll::Ready(()) => Poll::Ready(Ok(())),
                    Poll::Pending => Poll::Pending,
                };
            }
        }
    }
}

/// Polls `timer`, set to `deadline` (made on first use: most connections never need one).
fn poll_until(
    timer: &mut Option<Pin<Box<Sleep>>>,
    deadline: Instant,
    cx: &mut Context<'_>,
) -> Poll<()> {
    let timer = match timer {
        Some(timer) => {
            if timer.deadline() != deadline {
                timer.as_mut().reset(deadline);
            }
            timer
        }
        None => timer.insert(Box::pin(sleep_until(deadline))),
    };
    timer.as_mut().poll(cx)
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

/// The whole response refusing the request whose (possibly partial) head is
/// `head` with `error`, in the dialect of its path, closing the connection;
/// logged and counted like any request.
fn answer(state: &AppState, error: Error, head: &[u8], since: Instant) -> Vec<u8> {
    let request_id = new_request_id();
    let response = dialect_of(head).render(&error, &request_id);
    let status = response.status();
    let mut answer = format!(
        "HTTP/1.1 {} {}\r\nx-request-id: {request_id}\r\nconnection: close\r\n",
        status.as_str(),
        status.canonical_reason().unwrap_or_default()
    );
    for (name, value) in response.headers() {
        if let Ok(value) = value.to_str() {
            answer.push_str(&format!("{name}: {value}\r\n"));
        }
    }
    // Rendered errors have their whole body at hand.
    let body = response.into_body().try_into_bytes().unwrap_or_default();
    answer.push_str(&format!("content-length: {}\r\n\r\n", body.len()));

    // The method only if it is a plain token: it becomes a metrics label.
    let method = head
        .split(|&b| b == b' ')
        .next()
        .filter(|m| (1..=16).contains(&m.len()) && m.iter().all(u8::is_ascii_uppercase))
        .map_or("-", |m| std::str::from_utf8(m).unwrap_or("-"));
    let elapsed = since.elapsed();
    state
        .metrics
        .observe_request("unmatched", method, status, elapsed);
    super::access_log::line(
        &request_id,
        None,
        method,
        "unmatched",
        status.as_u16(),
        elapsed,
    );
    [answer.as_bytes(), &body].concat()
}

#[cfg(test)]
mod tests {
    use super::*;

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
