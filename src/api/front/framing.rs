//! HTTP/1.1 request framing, read the way actix-http 3's h1 decoder reads it:
//! where each request head ends, whether keyward lets it through, and how the
//! body after it is delimited, so that the next head is found.
//!
//! [`Framing::frame`] is fed a connection's bytes in order and says how many
//! of them are judged: bodies, and heads within keyward's limits that actix
//! would decode without refusing. It stops at a head that is not whole yet, or
//! at one keyward refuses. The limits and refusals mirror
//! `actix_http::h1::decoder` (`MessageType::decode`, `set_headers`) and
//! `h1::chunked`, so that actix never answers a head or a chunked body by
//! itself with a bare status.
//!
//! It parses each head once when the head arrives whole (the common case); a
//! head that comes a few bytes at a time is parsed again only once it may have
//! ended or has crossed a limit, so that slow heads cost linear time.

use std::mem::MaybeUninit;

use actix_web::http::{Method, Uri};

use crate::error::Error;

/// Longest request target (path and query) accepted; longer is 414.
pub const MAX_TARGET_BYTES: usize = 8 * 1024;
/// Largest request head accepted (request line and headers); larger is 431.
/// Below actix's own 128 KiB, so that actix never refuses a head we let through.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Most header fields accepted; more is 431. actix-http's own limit.
pub const MAX_HEADERS: usize = 96;

/// What to do with a (possibly partial) request head.
#[derive(Debug)]
pub enum Verdict {
    /// A whole head within the limits, `len` bytes long, what follows it,
    /// and what its answer needs.
    Pass {
        len: usize,
        body: Body,
        request: Request,
    },
    /// Not a whole head yet.
    More,
    /// Answer with this error and close.
    Refuse(Error),
}

/// What the write side needs to know of a request to follow its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Request {
    /// The connection ends after its answer: `Connection: close` (HTTP/1.1),
    /// or HTTP/1.0 without `Connection: keep-alive`.
    pub close: bool,
    /// A `HEAD` request: its answer has no body, whatever its framing headers say.
    pub head: bool,
}

/// How the body after a head is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    None,
    Length(u64),
    Chunked,
    /// The rest of the connection: `Upgrade: websocket` or `CONNECT`, which
    /// actix (keyward registers no upgrade handler) reads as a body to the end.
    /// No head follows, so nothing is judged after it.
    Rest,
}

/// Where the connection is in its stream of requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// At (or inside) a head.
    Head,
    /// This many body bytes to go.
    Length(u64),
    Chunked(Chunk),
    Rest,
}

/// Inside a chunked body; `h1::chunked::ChunkedState`, byte for byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    SizeFirst,
    Size(u64),
    SizeSpace(u64),
    Extension(u64),
    SizeLf(u64),
    Data(u64),
    DataCr,
    DataLf,
    Trailer,
    TrailerLf,
    EndCr,
    EndLf,
}

/// What comes after the judged bytes.
#[derive(Debug)]
pub enum Then {
    /// Nothing: every byte was judged.
    All,
    /// A head that is not whole yet. Call again with it (from its first byte)
    /// and what follows.
    Partial,
    /// A head to refuse with this error.
    Refuse(Error),
    /// A byte actix's chunked decoder refuses. Bytes from here on must not
    /// reach actix: its payload then ends early, which the handler answers.
    Broken,
    /// A request ended and more bytes follow: the next request starts here.
    /// Call again with it (from its first byte) when it may go to actix.
    Next,
}

/// The outcome of [`Framing::frame`].
#[derive(Debug)]
pub struct Step {
    /// How many of the bytes are judged; what they are followed by is `then`.
    pub take: usize,
    /// The head accepted among them (at most one: framing stops where the
    /// request after it starts).
    pub passed: Option<Request>,
    pub then: Then,
}

/// The framing state of one connection.
#[derive(Debug)]
pub struct Framing {
    state: State,
    /// Inside a head: how many of its bytes were looked at before.
    seen: usize,
}

impl Default for Framing {
    fn default() -> Self {
        Self {
            state: State::Head,
            seen: 0,
        }
    }
}

impl Framing {
    /// Judges `data`: the bytes after those judged by the last call, or, if
    /// that one ended in [`Then::Partial`], that head from its first byte and
    /// everything read since.
    pub fn frame(&mut self, data: &[u8]) -> Step {
        let mut at = 0;
        let mut passed = None;
        loop {
            let rest = &data[at..];
            let stop = |take, then| Step { take, passed, then };
            if rest.is_empty() {
                return stop(at, Then::All);
            }
            match self.state {
                State::Head if passed.is_some() => return stop(at, Then::Next),
                State::Head => match self.head(rest) {
                    Verdict::Pass { len, body, request } => {
                        at += len;
                        passed = Some(request);
                        self.seen = 0;
                        self.state = match body {
                            Body::None | Body::Length(0) => State::Head,
                            Body::Length(n) => State::Length(n),
                            Body::Chunked => State::Chunked(Chunk::SizeFirst),
                            Body::Rest => State::Rest,
                        };
                    }
                    Verdict::More => return stop(at, Then::Partial),
                    Verdict::Refuse(error) => return stop(at, Then::Refuse(error)),
                },
                State::Length(left) => {
                    let n = usize::try_from(left).unwrap_or(usize::MAX).min(rest.len());
                    at += n;
                    self.state = match left - n as u64 {
                        0 => State::Head,
                        left => State::Length(left),
                    };
                    if self.state == State::Head && at < data.len() {
                        return stop(at, Then::Next);
                    }
                }
                State::Chunked(chunk) => match chunked(chunk, rest) {
                    (n, Ok(Some(chunk))) => {
                        at += n;
                        self.state = State::Chunked(chunk);
                    }
                    (n, Ok(None)) => {
                        at += n;
                        self.state = State::Head;
                        if at < data.len() {
                            return stop(at, Then::Next);
                        }
                    }
                    (n, Err(())) => return stop(at + n, Then::Broken),
                },
                State::Rest => {
                    at = data.len();
                }
            }
        }
    }

    /// Whether the bytes judged so far end a request (or none began): the
    /// next byte starts a head.
    pub fn between_requests(&self) -> bool {
        self.state == State::Head && self.seen == 0
    }

    /// The verdict on a head that starts `head`, of which `self.seen` bytes
    /// were looked at before.
    fn head(&mut self, head: &[u8]) -> Verdict {
        let seen = std::mem::replace(&mut self.seen, head.len());
        let crossed = |limit: usize| seen <= limit && head.len() > limit;
        if seen == 0
            || may_end(head, seen)
            || crossed(MAX_TARGET_BYTES + 32)
            || crossed(MAX_HEAD_BYTES)
        {
            inspect(head)
        } else {
            Verdict::More
        }
    }
}

/// Whether an empty line (the end of a head) may start at or after `from`
/// (less two bytes, for a line break split across reads). httparse ends lines
/// with `\r\n` or a bare `\n`.
fn may_end(head: &[u8], from: usize) -> bool {
    let from = from.saturating_sub(2);
    memchr::memchr_iter(b'\n', &head[from..]).any(|i| {
        let after = &head[from + i + 1..];
        after.first() == Some(&b'\n') || after.starts_with(b"\r\n")
    })
}

/// Steps a chunked body from `chunk` through `data`: how many bytes it took,
/// and where it is after them (`None`: the body ended), or `Err` at a byte
/// actix refuses.
fn chunked(mut chunk: Chunk, data: &[u8]) -> (usize, Result<Option<Chunk>, ()>) {
    use Chunk::*;
    let hex = |b: u8| char::from(b).to_digit(16).map(u64::from);
    let mut at = 0;
    while let Some(&b) = data.get(at) {
        at += 1;
        let next = match chunk {
            Data(left) => {
                let n = usize::try_from(left)
                    .unwrap_or(usize::MAX)
                    .min(data.len() - at + 1);
                at += n - 1;
                match left - n as u64 {
                    0 => Some(DataCr),
                    left => Some(Data(left)),
                }
            }
            SizeFirst => hex(b).map(Size),
            Size(size) => match b {
                b'\t' | b' ' => Some(SizeSpace(size)),
                b';' => Some(Extension(size)),
                b'\r' => Some(SizeLf(size)),
                _ => hex(b).and_then(|d| size.checked_mul(16)?.checked_add(d).map(Size)),
            },
            SizeSpace(size) => match b {
                b'\t' | b' ' => Some(SizeSpace(size)),
                b';' => Some(Extension(size)),
                b'\r' => Some(SizeLf(size)),
                _ => None,
            },
            Extension(size) => match b {
                b'\r' => Some(SizeLf(size)),
                0x00..=0x08 | 0x0a..=0x1f | 0x7f => None,
                _ => Some(Extension(size)),
            },
            SizeLf(0) => (b == b'\n').then_some(EndCr),
            SizeLf(size) => (b == b'\n').then_some(Data(size)),
            DataCr => (b == b'\r').then_some(DataLf),
            DataLf => (b == b'\n').then_some(SizeFirst),
            Trailer if b == b'\r' => Some(TrailerLf),
            Trailer => Some(Trailer),
            TrailerLf => (b == b'\n').then_some(EndCr),
            EndCr if b == b'\r' => Some(EndLf),
            EndCr => Some(Trailer),
            EndLf if b == b'\n' => return (at, Ok(None)),
            EndLf => None,
        };
        match next {
            Some(next) => chunk = next,
            None => return (at - 1, Err(())),
        }
    }
    (at, Ok(Some(chunk)))
}

/// The verdict on `buf`, which starts with a request head (whole or not).
pub fn inspect(buf: &[u8]) -> Verdict {
    let mut headers = [const { MaybeUninit::uninit() }; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    let parsed = req.parse_with_uninit_headers(buf, &mut headers);
    let target_too_long = match req.path {
        Some(path) => path.len() > MAX_TARGET_BYTES,
        // The request line is not complete yet: it holds at least the target.
        None => buf.len() > MAX_TARGET_BYTES + 32,
    };
    match parsed {
        _ if target_too_long => Verdict::Refuse(Error::UriTooLong),
        Ok(httparse::Status::Complete(len)) if len > MAX_HEAD_BYTES => {
            Verdict::Refuse(Error::HeadersTooLarge)
        }
        Ok(httparse::Status::Complete(len)) => match judge(&req) {
            Ok((body, request)) => Verdict::Pass { len, body, request },
            Err(error) => Verdict::Refuse(error),
        },
        Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD_BYTES => {
            Verdict::Refuse(Error::HeadersTooLarge)
        }
        Ok(httparse::Status::Partial) => Verdict::More,
        Err(httparse::Error::TooManyHeaders) => Verdict::Refuse(Error::HeadersTooLarge),
        // The same parser as actix's: it would answer a bare 400.
        Err(_) => Verdict::Refuse(malformed("The request is malformed.")),
    }
}

fn malformed(message: &str) -> Error {
    Error::invalid("request", message)
}

/// What actix's decoder makes of a whole head: how its body is delimited
/// (and what its answer needs), or the error for which actix would answer a
/// bare 400. Mirrors `MessageType::decode` and `set_headers` in
/// `actix_http::h1::decoder`.
fn judge(req: &httparse::Request<'_, '_>) -> Result<(Body, Request), Error> {
    let method = req.method.unwrap_or_default();
    if Method::from_bytes(method.as_bytes()).is_err() {
        return Err(malformed("The request method is malformed."));
    }
    if !req.path.is_some_and(target_ok) {
        return Err(malformed("The request target is malformed."));
    }
    let http11 = req.version == Some(1);
    let (mut host, mut length, mut encoded, mut chunked, mut websocket) =
        (false, None, false, false, false);
    // Connection options, as tokens (RFC 9110 section 7.6.1), in every field.
    let (mut close, mut keep_alive) = (false, false);
    for header in req.headers.iter() {
        let (name, value) = (header.name.as_bytes(), header.value);
        match name.len() {
            4 if name.eq_ignore_ascii_case(b"host") => {
                if host {
                    return Err(Error::invalid("Host", "Only one Host header is allowed."));
                }
                host = true;
            }
            10 if name.eq_ignore_ascii_case(b"connection") => {
                for option in value.split(|&b| b == b',').map(trim) {
                    close |= option.eq_ignore_ascii_case(b"close");
                    keep_alive |= option.eq_ignore_ascii_case(b"keep-alive");
                }
            }
            7 if name.eq_ignore_ascii_case(b"upgrade") => {
                websocket |= visible(value) && trim(value).eq_ignore_ascii_case(b"websocket");
            }
            14 if name.eq_ignore_ascii_case(b"content-length") => {
                const FIELD: &str = "Content-Length";
                if length.is_some() {
                    return Err(Error::invalid(
                        FIELD,
                        "Only one Content-Length header is allowed.",
                    ));
                }
                length = Some(content_length(value).ok_or_else(|| {
                    Error::invalid(FIELD, "The Content-Length must be a number of bytes.")
                })?);
            }
            17 if name.eq_ignore_ascii_case(b"transfer-encoding") => {
                // actix reads the field only in HTTP/1.1 (and refuses it in 1.0 below).
                if http11 {
                    if encoded {
                        return Err(Error::invalid(
                            "Transfer-Encoding",
                            "Only one Transfer-Encoding header is allowed.",
                        ));
                    }
                    chunked = visible(value) && trim(value).eq_ignore_ascii_case(b"chunked");
                }
                encoded = true;
            }
            _ => {}
        }
    }
    if http11 && !host {
        return Err(Error::invalid("Host", "The Host header is required."));
    }
    if encoded {
        let refusal = if !http11 {
            "An HTTP/1.0 request cannot have a Transfer-Encoding."
        } else if !chunked {
            "The only transfer coding accepted is chunked."
        } else if length.is_some() {
            "A request cannot have both a Content-Length and a Transfer-Encoding."
        } else {
            ""
        };
        if !refusal.is_empty() {
            return Err(Error::invalid("Transfer-Encoding", refusal));
        }
    }
    if !http11 && method == "POST" && length.is_none() && !websocket {
        return Err(Error::invalid(
            "Content-Length",
            "An HTTP/1.0 POST request needs a Content-Length.",
        ));
    }
    let body = match length {
        _ if chunked => Body::Chunked,
        _ if websocket => Body::Rest,
        Some(n) if n > 0 => Body::Length(n),
        _ if method == "CONNECT" => Body::Rest,
        _ => Body::None,
    };
    let request = Request {
        // HTTP/1.0 closes unless asked to keep alive; a `close` always wins.
        close: close || !(http11 || keep_alive),
        head: method == "HEAD",
    };
    Ok((body, request))
}

/// Whether a header value is what `HeaderValue::to_str` accepts.
fn visible(value: &[u8]) -> bool {
    value
        .iter()
        .all(|&b| (0x20..0x7f).contains(&b) || b == b'\t')
}

/// The value of a head line that is the field `name` (lower-case, with its
/// colon), whatever the line's case. (The colon is looked at first: most
/// lines differ there, and that costs one comparison.)
fn field<'a>(line: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    let (start, value) = line.split_at_checked(name.len())?;
    (start.last() == name.last() && start.eq_ignore_ascii_case(name)).then_some(value)
}

/// `digits` as a decimal number: ASCII digits only, at least one, no sign,
/// and no more than a `u64` holds (`str::parse::<u64>` without its `+` and
/// its UTF-8 check).
fn decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &b| {
        let digit = b.checked_sub(b'0').filter(|d| *d < 10)?;
        n.checked_mul(10)?.checked_add(u64::from(digit))
    })
}

/// The value without the spaces and tabs around it.
fn trim(value: &[u8]) -> &[u8] {
    let blank = |b: &u8| *b == b' ' || *b == b'\t';
    let start = value.iter().position(|b| !blank(b)).unwrap_or(value.len());
    let end = value
        .iter()
        .rposition(|b| !blank(b))
        .map_or(start, |i| i + 1);
    &value[start..end]
}

/// A Content-Length as actix reads it: decimal digits, no sign.
fn content_length(value: &[u8]) -> Option<u64> {
    decimal(trim(value))
}

/// Whether `http::Uri` (which actix parses every request target with) accepts
/// `target`. The origin form (`/path?query`) is checked here, byte for byte
/// as `http::uri::PathAndQuery` does, without the copy `Uri::try_from` makes.
fn target_ok(target: &str) -> bool {
    let bytes = target.as_bytes();
    if bytes.len() < 2 || bytes[0] != b'/' {
        return Uri::try_from(target).is_ok();
    }
    let mut query = false;
    for &b in bytes {
        match b {
            // The fragment is dropped unchecked.
            b'#' => return true,
            b'?' if !query => query = true,
            _ if TARGET_BYTES[usize::from(query)][usize::from(b)] => {}
            _ => return false,
        }
    }
    true
}

/// The bytes `http::uri::PathAndQuery` accepts in a path (`[0]`) and in a
/// query (`[1]`), looked up rather than matched: every target passes here.
const TARGET_BYTES: [[bool; 256]; 2] = {
    let mut table = [[false; 256]; 2];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        let both = matches!(c, 0x21 | 0x24..=0x3b | 0x3d | 0x40..=0x5f | 0x61..=0x7e);
        // `"`: sent unencoded by some clients; `http` allows it in the path.
        table[0][b] = both || c == b'"';
        // `?` after the first, and `` ` ``: in the query only.
        table[1][b] = both || c == b'?' || c == b'`';
        b += 1;
    }
    table
};

/// The answers actix writes on a connection, followed to find where each
/// ends and whether it closes the connection. actix writes them the way
/// `actix_http::h1::encoder` does: a status line, header lines (the framing
/// ones lower-case; compared here regardless of case), an empty line, and a
/// body by `content-length`, by chunked coding, or none (a `HEAD` request's,
/// 1xx, 204, 304). A body framed by neither runs to the connection's end:
/// that answer never ends here.
#[derive(Debug)]
pub struct Answers {
    state: Out,
    /// The start of a head line split across writes, until it ends, and its length.
    line: [u8; LINE],
    line_len: usize,
    /// Whether the next line is a status line.
    status_line: bool,
    /// What the head written so far says.
    status: u16,
    length: Option<u64>,
    chunked: bool,
    close: bool,
}

/// How much of a head line is kept: enough for `content-length: ` and any
/// `u64`, and for the other framing fields' values keyward's answers carry.
const LINE: usize = 48;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Out {
    Head,
    Length(u64),
    Chunked(Chunk),
    /// To the end of the connection (or bytes not understood).
    Eof,
}

impl Default for Answers {
    fn default() -> Self {
        Self {
            state: Out::Head,
            line: [0; LINE],
            line_len: 0,
            status_line: true,
            status: 0,
            length: None,
            chunked: false,
            close: false,
        }
    }
}

impl Answers {
    /// Follows `data`, written after the bytes followed before, as answers to
    /// `request`. Returns how many bytes it took: all of them, or those up to
    /// the end of a final (non-1xx) answer, with whether that answer says
    /// `connection: close`.
    pub fn follow(&mut self, data: &[u8], request: Request) -> (usize, Option<bool>) {
        let mut at = 0;
        while at < data.len() {
            let rest = &data[at..];
            match self.state {
                Out::Head if self.line_len == 0 => {
                    // Whole lines read where they lie (nearly always the whole
                    // head), their ends found in one pass; a last line that is
                    // not whole yet is kept below, on the next turn.
                    let mut start = 0;
                    for end in memchr::memchr_iter(b'\n', rest) {
                        let line = &rest[start..=end];
                        start = end + 1;
                        if let Some(close) = self.head_line(line, request) {
                            return (at + start, Some(close));
                        }
                        if self.state != Out::Head {
                            break;
                        }
                    }
                    if start == 0 {
                        // Not one whole line: the start of one.
                        self.keep_line_start(rest);
                        at = data.len();
                    } else {
                        at += start;
                    }
                }
                Out::Head => {
                    // The rest of a line the write split: its start is kept until it ends.
                    let (n, line_end) = match memchr::memchr(b'\n', rest) {
                        Some(i) => (i + 1, true),
                        None => (rest.len(), false),
                    };
                    at += n;
                    self.keep_line_start(&rest[..n]);
                    if !line_end {
                        continue;
                    }
                    let (kept, len) = (self.line, std::mem::take(&mut self.line_len));
                    if let Some(close) = self.head_line(&kept[..len], request) {
                        return (at, Some(close));
                    }
                }
                Out::Length(left) => {
                    let n = usize::try_from(left).unwrap_or(usize::MAX).min(rest.len());
                    at += n;
                    if left == n as u64 {
                        return (at, Some(self.answered()));
                    }
                    self.state = Out::Length(left - n as u64);
                }
                Out::Chunked(chunk) => match chunked(chunk, rest) {
                    (n, Ok(Some(chunk))) => {
                        at += n;
                        self.state = Out::Chunked(chunk);
                    }
                    (n, Ok(None)) => return (at + n, Some(self.answered())),
                    (_, Err(())) => self.state = Out::Eof,
                },
                Out::Eof => at = data.len(),
            }
        }
        (at, None)
    }

    /// Keeps the start of a head line that the write split (up to [`LINE`] bytes).
    fn keep_line_start(&mut self, part: &[u8]) {
        let copied = part.len().min(LINE - self.line_len);
        self.line[self.line_len..self.line_len + copied].copy_from_slice(&part[..copied]);
        self.line_len += copied;
    }

    /// A head line was written (kept in `line`): notes what it says; at the
    /// end of the head, moves to the body. Returns `Some(close)` if that ends
    /// a final answer.
    fn head_line(&mut self, line: &[u8], request: Request) -> Option<bool> {
        let line = line.strip_suffix(b"\n").unwrap_or(line);
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if std::mem::take(&mut self.status_line) {
            // `HTTP/1.1 200 OK`
            self.status = line
                .get(9..12)
                .and_then(decimal)
                .map_or(0, |code| code as u16);
            return None;
        }
        // Only three fields matter here, and the first letter rules out the rest.
        if matches!(line.first(), Some(b'c' | b'C' | b't' | b'T')) {
            if let Some(value) = field(line, b"content-length:") {
                self.length = decimal(trim(value));
            } else if let Some(value) = field(line, b"transfer-encoding:") {
                let value = trim(value);
                self.chunked =
                    value.len() >= 7 && value[value.len() - 7..].eq_ignore_ascii_case(b"chunked");
            } else if let Some(value) = field(line, b"connection:") {
                self.close |= value
                    .split(|&b| b == b',')
                    .any(|option| trim(option).eq_ignore_ascii_case(b"close"));
            }
            return None;
        }
        if !line.is_empty() {
            return None;
        }
        // The end of the head.
        if (100..200).contains(&self.status) && self.status != 101 {
            // An interim answer (`100 Continue`); the final one follows.
            *self = Self::default();
            return None;
        }
        if request.head || matches!(self.status, 204 | 304) {
            return Some(self.answered());
        }
        self.state = match (self.chunked, self.length) {
            (true, _) => Out::Chunked(Chunk::SizeFirst),
            (false, Some(0)) => return Some(self.answered()),
            (false, Some(n)) => Out::Length(n),
            (false, None) => Out::Eof,
        };
        None
    }

    /// A final answer ended: whether it closes; the next one may begin.
    fn answered(&mut self) -> bool {
        let close = self.close;
        *self = Self::default();
        close
    }
}

/// Whether `b` alone is the start of a head to actix's parser, and nothing it
/// would refuse: then it may go to actix before the rest of its head.
pub fn harmless(b: u8) -> bool {
    matches!(
        httparse::Request::new(&mut []).parse(&[b]),
        Ok(httparse::Status::Partial)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdict(head: &str) -> String {
        format!("{:?}", inspect(head.as_bytes()))
    }

    #[test]
    fn heads_within_the_limits_pass() {
        assert_eq!(
            verdict("GET /v1/x HTTP/1.1\r\nHost: a\r\n\r\n"),
            "Pass { len: 31, body: None, request: Request { close: false, head: false } }"
        );
        assert_eq!(
            verdict("GET /v1/x HTTP/1.0\r\n\r\nGET"),
            "Pass { len: 22, body: None, request: Request { close: true, head: false } }"
        );
        assert!(verdict("GET /v1/x HTTP/1.1\r\n\r\n").starts_with("Refuse(Invalid"));
        assert_eq!(verdict("GET /v1/x HTTP/1.1\r\nHost: a\r\n"), "More");
        assert_eq!(verdict(""), "More");
        let long_but_fine = format!(
            "GET /v1/x?q={} HTTP/1.1\r\nHost: a\r\n\r\n",
            "a".repeat(8000)
        );
        assert!(verdict(&long_but_fine).starts_with("Pass"));
    }

    #[test]
    fn oversized_heads_are_refused() {
        let query = format!("GET /v1/x?q={} HTTP/1.1\r\n\r\n", "a".repeat(100_000));
        assert_eq!(verdict(&query), "Refuse(UriTooLong)");
        // Even before the request line is complete.
        assert_eq!(verdict(&query[..20_000]), "Refuse(UriTooLong)");
        let big = format!("GET / HTTP/1.1\r\nx-big: {}\r\n", "a".repeat(70_000));
        assert_eq!(verdict(&big), "Refuse(HeadersTooLarge)");
        // Also when it arrives whole.
        assert_eq!(
            verdict(&format!("{big}Host: a\r\n\r\n")),
            "Refuse(HeadersTooLarge)"
        );
        let many = format!("GET / HTTP/1.1\r\n{}\r\n", "a: b\r\n".repeat(97));
        assert_eq!(verdict(&many), "Refuse(HeadersTooLarge)");
        assert!(verdict("GET / HTTP/1.1\r\nbad header\r\n\r\n").starts_with("Refuse(Invalid"));
    }

    /// The body after a head, as actix-http's decoder delimits it, and the
    /// heads it refuses (with a bare 400) for their framing.
    #[test]
    fn bodies_are_delimited_and_bad_framing_refused_as_actix_does() {
        let body = |headers: &str| {
            let head = format!("POST /v1/x HTTP/1.1\r\nHost: a\r\n{headers}\r\n");
            match inspect(head.as_bytes()) {
                Verdict::Pass { len, body, .. } => {
                    assert_eq!(len, head.len());
                    format!("{body:?}")
                }
                other => format!("{other:?}"),
            }
        };
        assert_eq!(body(""), "None");
        assert_eq!(body("Content-Length: 12\r\n"), "Length(12)");
        assert_eq!(body("content-length:  007 \r\n"), "Length(7)");
        assert_eq!(body("Content-Length: 0\r\n"), "None");
        assert_eq!(body("Transfer-Encoding: chunked\r\n"), "Chunked");
        assert_eq!(body("transfer-encoding:  CHUNKED \r\n"), "Chunked");
        assert_eq!(body("Upgrade: websocket\r\nContent-Length: 5\r\n"), "Rest");
        assert_eq!(
            body("Upgrade: websocket\r\nTransfer-Encoding: chunked\r\n"),
            "Chunked"
        );
        let refused = [
            "Content-Length: 1\r\nContent-Length: 1\r\n",
            "Content-Length: 1\r\nContent-Length: 2\r\n",
            "Content-Length: +1\r\n",
            "Content-Length: -1\r\n",
            "Content-Length: 1 2\r\n",
            "Content-Length: \r\n",
            "Content-Length: 0x10\r\n",
            "Content-Length: 99999999999999999999\r\n",
            "Transfer-Encoding: gzip\r\n",
            "Transfer-Encoding: identity\r\n",
            "Transfer-Encoding: gzip, chunked\r\n",
            "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
            "Transfer-Encoding: chunked\r\nContent-Length: 3\r\n",
            "Content-Length: 3\r\nTransfer-Encoding: chunked\r\n",
            "Host: b\r\n",
        ];
        for headers in refused {
            assert!(body(headers).starts_with("Refuse(Invalid"), "{headers:?}");
        }
        let http10 = |head: &str| format!("{:?}", inspect(head.as_bytes()));
        assert!(http10("POST / HTTP/1.0\r\n\r\n").starts_with("Refuse(Invalid"));
        assert!(http10("POST / HTTP/1.0\r\nContent-Length: 2\r\n\r\n").starts_with("Pass"));
        assert!(
            http10("GET / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n")
                .starts_with("Refuse(Invalid")
        );
        assert!(http10("CONNECT a:443 HTTP/1.1\r\nHost: a\r\n\r\n")
            .starts_with("Pass { len: 35, body: Rest,"));
        // Targets httparse takes and `http::Uri` does not.
        for target in ["/a`b", "/a<b", "/a?\"", "/a?<"] {
            let head = format!("GET {target} HTTP/1.1\r\nHost: a\r\n\r\n");
            assert!(http10(&head).starts_with("Refuse(Invalid"), "{target}");
        }
    }

    /// The origin-form check agrees with `http::Uri` on every ASCII byte, in
    /// the path, the query and the fragment.
    #[test]
    fn the_target_check_agrees_with_http_uri() {
        for b in 0x21u8..0x7f {
            let c = char::from(b);
            for target in [
                format!("/a{c}b"),
                format!("/{c}"),
                format!("/a?q{c}"),
                format!("/a?{c}"),
                format!("/a#{c}"),
                format!("/a?b#{c}"),
                format!("/a?b?{c}"),
                format!("/a{c}?b"),
            ] {
                assert_eq!(
                    target_ok(&target),
                    Uri::try_from(target.as_str()).is_ok(),
                    "{target:?}"
                );
            }
        }
        for target in [
            "/",
            "*",
            "http://a/b?c",
            "a:443",
            "/é",
            "/a?é",
            "/a b",
            "//",
        ] {
            assert_eq!(
                target_ok(target),
                Uri::try_from(target).is_ok(),
                "{target:?}"
            );
        }
    }

    /// Frames `data` as it arrives in `pieces`, as the connection wrapper
    /// does: a partial head is offered again from its first byte with what
    /// follows. Returns the judged bytes and what stopped the framing.
    fn frame_in(data: &[u8], pieces: &[usize]) -> (Vec<u8>, String) {
        let mut framing = Framing::default();
        let (mut judged, mut held) = (Vec::new(), Vec::new());
        let mut at: usize = 0;
        for &len in pieces.iter().chain(std::iter::once(&usize::MAX)) {
            let end = at.saturating_add(len).min(data.len());
            held.extend_from_slice(&data[at..end]);
            at = end;
            let step = framing.frame(&held);
            judged.extend_from_slice(&held[..step.take]);
            match step.then {
                Then::All => held.clear(),
                Then::Partial | Then::Next => {
                    held.drain(..step.take);
                    // Whatever follows a request is offered again at once.
                    while !held.is_empty() {
                        let step = framing.frame(&held);
                        judged.extend_from_slice(&held[..step.take]);
                        held.drain(..step.take);
                        match step.then {
                            Then::Next => {}
                            Then::All | Then::Partial => break,
                            other => return (judged, format!("{other:?}")),
                        }
                    }
                }
                other => return (judged, format!("{other:?}")),
            }
            if at == data.len() {
                let left = if held.is_empty() { "All" } else { "Partial" };
                return (judged, left.to_owned());
            }
        }
        unreachable!()
    }

    /// Requests with every kind of body, one after the other.
    fn pipeline() -> Vec<u8> {
        [
            "GET /a HTTP/1.1\r\nHost: a\r\n\r\n",
            "\r\n",
            "POST /b HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
            "POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
            "5;name=value;q=\"x;y\"\r\nhello\r\nA \t;ext\r\n0123456789\r\n0\r\n\r\n",
            "POST /d HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
            "3\r\nabc\r\n0;last\r\nx-trailer: 1\r\nx-other: 2\r\n\r\n",
            "GET /e HTTP/1.0\n\n",
            "PUT /f HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n",
        ]
        .concat()
        .into_bytes()
    }

    #[test]
    fn pipelined_requests_are_framed_whole() {
        let data = pipeline();
        assert_eq!(frame_in(&data, &[]), (data.clone(), "All".to_owned()));
    }

    #[test]
    fn requests_split_at_every_byte_are_framed_alike() {
        let data = pipeline();
        for split in 1..data.len() {
            let got = frame_in(&data, &[split]);
            assert_eq!(got, (data.clone(), "All".to_owned()), "split at {split}");
        }
        // And a byte at a time.
        let ones = vec![1; data.len()];
        assert_eq!(frame_in(&data, &ones), (data.clone(), "All".to_owned()));
    }

    #[test]
    fn a_refused_head_stops_the_framing_after_the_bodies_before_it() {
        let mut data = pipeline();
        let good = data.len();
        data.extend_from_slice(b"GET /g HTTP/1.1\r\nHost: a\r\nbad header\r\n\r\nGET /h");
        for split in [1, 7, good - 1, good, good + 3, data.len() - 1] {
            let (judged, then) = frame_in(&data, &[split]);
            assert_eq!(judged, data[..good], "split at {split}");
            assert!(then.starts_with("Refuse(Invalid"), "{then}");
        }
        let mut data = pipeline();
        data.extend_from_slice(b"GET /g HTTP/1.1\r\nHost: a\r\n");
        assert_eq!(frame_in(&data, &[3]), (pipeline(), "Partial".to_owned()));
    }

    #[test]
    fn chunked_bodies_end_where_actix_ends_them() {
        let head = "POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n";
        let stops = |body: &str| {
            let data = format!("{head}{body}");
            let (judged, then) = frame_in(data.as_bytes(), &[]);
            (judged.len() - head.len(), then)
        };
        // Whole bodies.
        assert_eq!(stops("0\r\n\r\n"), (5, "All".to_owned()));
        assert_eq!(stops("1\r\na\r\n0\r\nt: 1\r\n\r\n"), (17, "All".to_owned()));
        // actix reads a bare LF inside a trailer as part of it.
        assert_eq!(stops("0\r\nt\n: 1\r\n\r\n"), (12, "All".to_owned()));
        // Bytes actix's chunked decoder refuses: framing stops before them.
        assert_eq!(stops("g\r\n"), (0, "Broken".to_owned()));
        assert_eq!(stops("1\n"), (1, "Broken".to_owned()));
        assert_eq!(stops("1 2\r\n"), (2, "Broken".to_owned()));
        assert_eq!(stops("1;a\nb\r\n"), (3, "Broken".to_owned()));
        assert_eq!(stops("1\r\nab\r\n"), (4, "Broken".to_owned()));
        assert_eq!(stops("0\r\nt\r\r"), (5, "Broken".to_owned()));
        assert_eq!(stops("10000000000000000\r\n"), (16, "Broken".to_owned()));
        // The largest size there is, then its data.
        let (n, then) = stops("ffffffffffffffff\r\nabc");
        assert_eq!((n, then.as_str()), (21, "All"));
    }

    #[test]
    fn upgrades_take_the_rest_of_the_connection() {
        let data = b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\nGET / junk\r\n\r\n";
        assert_eq!(frame_in(data, &[]), (data.to_vec(), "All".to_owned()));
    }

    #[test]
    fn a_slow_head_is_parsed_only_when_it_may_have_ended() {
        assert!(!may_end(b"GET / HTTP/1.1\r\nHost: a\r\n", 0));
        assert!(may_end(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", 25));
        assert!(may_end(b"GET / HTTP/1.1\nHost: a\n\n", 23));
        assert!(may_end(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", 26));
        // A line break that was looked at before is not looked at again.
        assert!(!may_end(b"\r\n\r\nGET / HTTP/1.1\r\nHost: a", 10));
    }

    #[test]
    fn only_the_start_of_a_method_or_an_empty_line_is_harmless() {
        for b in [b'G', b'P', b'\r', b'\n', b'x'] {
            assert!(harmless(b), "{b}");
        }
        for b in [b' ', 0x16, 0, b'(', 0x80] {
            assert!(!harmless(b), "{b}");
        }
    }

    /// What a request's head says about its connection and its answer.
    #[test]
    fn requests_say_whether_they_close_and_whether_they_are_head() {
        let request = |head: &str| match inspect(head.as_bytes()) {
            Verdict::Pass { request, .. } => (request.close, request.head),
            other => panic!("{other:?}"),
        };
        let get = |version: &str, fields: &str| {
            request(&format!("GET / HTTP/{version}\r\nHost: a\r\n{fields}\r\n"))
        };
        assert_eq!(get("1.1", ""), (false, false));
        assert_eq!(get("1.1", "Connection: close\r\n"), (true, false));
        assert_eq!(get("1.1", "connection: te, CLOSE \r\n"), (true, false));
        assert_eq!(
            get("1.1", "Connection: te\r\nConnection: close\r\n"),
            (true, false)
        );
        assert_eq!(get("1.1", "Connection: keep-alive\r\n"), (false, false));
        assert_eq!(get("1.1", "Connection: closed\r\n"), (false, false));
        assert_eq!(get("1.0", ""), (true, false));
        assert_eq!(get("1.0", "Connection: Keep-Alive\r\n"), (false, false));
        assert_eq!(
            get("1.0", "Connection: keep-alive, close\r\n"),
            (true, false)
        );
        assert_eq!(request("HEAD / HTTP/1.1\r\nHost: a\r\n\r\n"), (false, true));
    }

    /// Framing stops where each request ends, when more follows, and says
    /// which head passed.
    #[test]
    fn framing_stops_after_each_request() {
        let mut framing = Framing::default();
        let data = b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\nGET /b HTTP/1.1\r\n";
        let step = framing.frame(data);
        assert!(matches!(step.then, Then::Next), "{step:?}");
        assert_eq!(step.take, 46);
        assert_eq!(step.passed.map(|r| r.close), Some(true));
        assert!(framing.between_requests());
        let mut framing = Framing::default();
        let data = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabcGET";
        let step = framing.frame(&data[..49]);
        assert!(matches!(step.then, Then::All), "{step:?}");
        assert!(!framing.between_requests());
        let step = framing.frame(&data[49..]);
        assert!(matches!(step.then, Then::Next), "{step:?}");
        assert_eq!((step.take, step.passed), (1, None));
        assert!(framing.between_requests());
    }

    /// Follows `data` written in pieces of `piece` bytes: where each final
    /// answer ended (its last byte's offset) and whether it closes.
    fn answers_in(data: &[u8], piece: usize, head: bool) -> Vec<(usize, bool)> {
        let mut answers = Answers::default();
        let request = Request { close: false, head };
        let mut ends = Vec::new();
        for (n, chunk) in data.chunks(piece).enumerate() {
            let mut at = 0;
            while at < chunk.len() {
                let (took, ended) = answers.follow(&chunk[at..], request);
                at += took;
                if let Some(close) = ended {
                    ends.push((n * piece + at, close));
                }
            }
        }
        ends
    }

    #[test]
    fn decimals_read_as_parse_reads_them_without_a_sign() {
        for text in [
            "0",
            "5",
            "0012",
            "18446744073709551615",
            "18446744073709551616",
            "",
        ] {
            assert_eq!(
                decimal(text.as_bytes()),
                text.parse::<u64>().ok(),
                "{text:?}"
            );
        }
        for text in ["+5", "-5", "5 ", " 5", "5a", "0x5", "\u{0665}"] {
            assert_eq!(decimal(text.as_bytes()), None, "{text:?}");
        }
    }

    #[test]
    fn answers_end_where_their_framing_says() {
        let by_length = "HTTP/1.1 200 OK\r\ncontent-length: 5\r\nx-request-id: a\r\n\r\nhello";
        let chunked = "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n\
                       5\r\nhello\r\n0\r\n\r\n";
        let interim = "HTTP/1.1 100 Continue\r\n\r\n";
        let empty = "HTTP/1.1 204 No Content\r\nx-a: b\r\n\r\n";
        let data = format!("{by_length}{interim}{chunked}{empty}");
        let mut ends = vec![(by_length.len(), false)];
        ends.push((ends[0].0 + interim.len() + chunked.len(), true));
        ends.push((data.len(), false));
        for piece in 1..=data.len() {
            assert_eq!(answers_in(data.as_bytes(), piece, false), ends, "{piece}");
        }
        // An answer to HEAD has no body, whatever its content-length says.
        let head = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: Close\r\n\r\n";
        assert_eq!(
            answers_in(head.as_bytes(), 3, true),
            vec![(head.len(), true)]
        );
        // A body framed by nothing runs to the connection's end.
        let eof = "HTTP/1.1 200 OK\r\n\r\nabc";
        assert_eq!(answers_in(eof.as_bytes(), 100, false), vec![]);
    }
}
