//! The access log: one line per request on stderr, in env_logger's format,
//! under the target `keyward::access` (so `RUST_LOG` filters it as before).
//!
//! It sits on every request's path, so a line costs no system call and takes
//! no shared lock: each thread appends its lines to a buffer of its own (a
//! mutex only that thread and the flusher ever take), and one background
//! thread writes every buffer to stderr each [`FLUSH_EVERY`], whole lines at a
//! time. A line therefore reaches stderr at most `FLUSH_EVERY` after its
//! request (warnings and errors go through env_logger at once, so they may come
//! first), and [`flush`] writes what is left at shutdown. A buffer that grows
//! past [`FLUSH_AT`] between two flushes is written by its own thread.
//!
//! Only the route template is ever logged, never the path or the query string,
//! which could hold a key.

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actix_web::http::header::HeaderValue;

/// How long a line may wait in its thread's buffer.
pub const FLUSH_EVERY: Duration = Duration::from_millis(50);
/// A thread's buffer is written at once when it reaches this size.
const FLUSH_AT: usize = 1 << 20;
/// The log target the lines are filtered under.
const TARGET: &str = "keyward::access";

type Buffer = Arc<Mutex<Vec<u8>>>;

/// Every thread's buffer; the flusher's thread is started with the first.
fn buffers() -> &'static Mutex<Vec<Buffer>> {
    static BUFFERS: OnceLock<Mutex<Vec<Buffer>>> = OnceLock::new();
    BUFFERS.get_or_init(|| {
        let spawned = std::thread::Builder::new()
            .name("keyward-access-log".into())
            .spawn(|| loop {
                std::thread::sleep(FLUSH_EVERY);
                flush();
            });
        if let Err(e) = spawned {
            // Lines then wait for FLUSH_AT or for the flush at shutdown.
            log::warn!("cannot start the access log's flusher: {e}");
        }
        Mutex::default()
    })
}

thread_local! {
    static BUFFER: Buffer = {
        let buffer = Buffer::default();
        lock(buffers()).push(Arc::clone(&buffer));
        buffer
    };
    /// The current second, and how the line's prefix writes it.
    static STAMP: std::cell::Cell<(u64, [u8; 20])> = const { std::cell::Cell::new((0, [0; 20])) };
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// One request's line, if the log filter lets `keyward::access` through.
/// The `tenant` header is logged only when it is a valid tenant name, else `-`.
pub fn line(
    request_id: &str,
    tenant: Option<&HeaderValue>,
    method: &str,
    route: &str,
    status: u16,
    elapsed: Duration,
) {
    if !log::log_enabled!(target: TARGET, log::Level::Info) {
        return;
    }
    let tenant = tenant
        .and_then(|v| v.to_str().ok())
        .filter(|t| crate::tenants::valid_name(t))
        .unwrap_or("-");
    let stamp = now_stamp();
    let micros = elapsed.as_micros();
    BUFFER.with(|buffer| {
        let mut out = lock(buffer);
        out.push(b'[');
        out.extend_from_slice(&stamp);
        out.extend_from_slice(b" INFO  ");
        out.extend_from_slice(TARGET.as_bytes());
        out.extend_from_slice(b"] ");
        // `{request_id} tenant={tenant} {method} {route} {status} {ms}.{:03}ms`,
        // without the formatter.
        let mut digits = itoa::Buffer::new();
        for part in [request_id, " tenant=", tenant, " ", method, " ", route, " "] {
            out.extend_from_slice(part.as_bytes());
        }
        out.extend_from_slice(digits.format(status).as_bytes());
        out.push(b' ');
        out.extend_from_slice(digits.format(micros / 1000).as_bytes());
        let fraction = (micros % 1000) as u16;
        out.extend_from_slice(&[
            b'.',
            b'0' + (fraction / 100) as u8,
            b'0' + (fraction / 10 % 10) as u8,
            b'0' + (fraction % 10) as u8,
        ]);
        out.extend_from_slice(b"ms\n");
        if out.len() >= FLUSH_AT {
            write_out(&mut out);
        }
    });
}

/// Writes every thread's buffered lines to stderr; run by the flusher, and at
/// shutdown. Buffers of threads that have ended are dropped once written.
pub fn flush() {
    let mut spare = Vec::new();
    let mut all = lock(buffers());
    all.retain(|buffer| {
        {
            let mut lines = lock(buffer);
            if lines.is_empty() {
                return Arc::strong_count(buffer) > 1;
            }
            // The thread keeps a buffer as large as the one it filled.
            spare.reserve(lines.capacity());
            std::mem::swap(&mut *lines, &mut spare);
        }
        write_out(&mut spare);
        Arc::strong_count(buffer) > 1
    });
}

fn write_out(lines: &mut Vec<u8>) {
    // Nowhere to report a failing stderr; the lines are dropped.
    let _ = std::io::stderr().lock().write_all(lines);
    lines.clear();
}

/// `YYYY-MM-DDTHH:MM:SSZ` of now, formatted once a second per thread.
fn now_stamp() -> [u8; 20] {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    STAMP.with(|cell| {
        let (at, stamp) = cell.get();
        if at == secs && at != 0 {
            return stamp;
        }
        let mut fresh = [0; 20];
        let when = i64::try_from(secs)
            .ok()
            .and_then(|s| chrono::DateTime::from_timestamp(s, 0))
            .unwrap_or_default();
        let text = super::timestamp(when);
        let len = text.len().min(fresh.len());
        fresh[..len].copy_from_slice(&text.as_bytes()[..len]);
        cell.set((secs, fresh));
        fresh
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_is_buffered_per_thread_and_flushed_whole() {
        // No logger is installed in unit tests, so drive the buffer directly.
        let stamp = now_stamp();
        assert_eq!(stamp.len(), 20);
        assert_eq!(stamp[19], b'Z');
        assert_eq!(now_stamp(), stamp, "the same second is formatted once");
        BUFFER.with(|buffer| lock(buffer).extend_from_slice(b"x\n"));
        assert!(lock(buffers()).iter().any(|b| !lock(b).is_empty()));
        flush();
        BUFFER.with(|buffer| assert!(lock(buffer).is_empty()));
    }
}
