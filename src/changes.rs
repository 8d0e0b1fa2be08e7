//! Knowing when data changed, instead of guessing.
//!
//! Every committed write to a tenant, its users or its keys leaves a mark
//! naming the tenant in the change signal (migration 000005: database
//! triggers, so writes that bypass keyward count too, and keyward's own
//! writes in the same transaction, which is all there is on Citus; last-used
//! times do not count). Each running instance reads it every [`POLL_EVERY`]
//! on a connection of its own ([`ChangeWatch::poll`], through
//! [`db::read_changes`], whose cost follows what changed, not how many
//! tenants there are) and drops what it cached for the tenants named.
//!
//! What is cached may be served only while the watch [`ChangeWatch::vouches_for`]
//! it: the last poll whose changes were applied began less than [`TRUST_FOR`]
//! ago, or (once a watch runs) the cached answer was itself read less than
//! `TRUST_FOR` ago. A poll, like a read, sees every write committed before it
//! began, so nothing served from a cache is older than `TRUST_FOR`: inside the
//! contract's 100 ms. When polls fail (the database restarts, the connection
//! drops) or lag (a saturated machine can delay one by tens of milliseconds),
//! each cached answer is read again at most once per `TRUST_FOR`, rather than
//! every request going to the database at once; the first poll after a gap
//! drops everything. [`ChangeWatch::age`] says how old the last applied poll
//! is (`/metrics`), so a dead watch is seen.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::db::{self, DbConnection, SignalCursor};
use crate::error::Error;

pub use crate::db::Changed;

/// How often an instance asks whether anything changed.
pub const POLL_EVERY: Duration = Duration::from_millis(20);
/// How long after a poll began its picture of the data may be trusted.
pub const TRUST_FOR: Duration = Duration::from_millis(80);
/// A watch whose last applied poll is older than this reads the signal
/// afresh (and drops everything): what it had not read may have been pruned.
pub const GAP: Duration = Duration::from_secs(30);

/// One instance's view of the change signal.
#[derive(Debug)]
pub struct ChangeWatch {
    epoch: Instant,
    /// When (µs after `epoch`) the last applied poll began; 0 while stale.
    trusted_from: AtomicU64,
    /// When (µs after `epoch`) the last applied poll began, kept through
    /// failures; 0 before the first.
    last_applied: AtomicU64,
    /// Set by the first applied poll: a watch runs, so a write by another
    /// process drops what was read before it, or it ages out.
    watched: AtomicBool,
    /// How far the signal has been read; reset after a gap.
    cursor: Mutex<SignalCursor>,
}

impl Default for ChangeWatch {
    fn default() -> Self {
        Self {
            epoch: Instant::now(),
            trusted_from: AtomicU64::new(0),
            last_applied: AtomicU64::new(0),
            watched: AtomicBool::new(false),
            cursor: Mutex::new(SignalCursor::default()),
        }
    }
}

impl ChangeWatch {
    /// Now, in µs after the watch was made (never 0).
    pub fn mark(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_micros())
            .unwrap_or(u64::MAX)
            .max(1)
    }

    /// Whether caches may answer: a poll that began less than [`TRUST_FOR`]
    /// ago has been applied.
    pub fn fresh(&self) -> bool {
        self.vouches_for(0)
    }

    /// Whether an answer read from the database at `read_mark` (a [`mark`]
    /// taken before the read began) may still be served: the watch is
    /// [`fresh`], or a watch runs and the read itself began less than
    /// [`TRUST_FOR`] ago. Without a running watch only a fresh one vouches.
    ///
    /// [`mark`]: ChangeWatch::mark
    /// [`fresh`]: ChangeWatch::fresh
    pub fn vouches_for(&self, read_mark: u64) -> bool {
        let polled = self.trusted_from.load(Ordering::Acquire);
        let from = match self.watched.load(Ordering::Relaxed) {
            true => polled.max(read_mark),
            false => polled,
        };
        from != 0 && self.mark().saturating_sub(from) < TRUST_FOR.as_micros() as u64
    }

    /// Reads the signal and says what changed since the last poll. Apply the
    /// answer, then call [`ChangeWatch::applied`] with the poll's `mark`.
    pub fn poll(&self, conn: &mut DbConnection) -> Result<Changed, Error> {
        let mut cursor = self.cursor.lock().unwrap_or_else(|e| e.into_inner());
        let last = self.last_applied.load(Ordering::Acquire);
        if last != 0 && self.mark().saturating_sub(last) > GAP.as_micros() as u64 {
            cursor.reset();
        }
        db::read_changes(conn, &mut cursor)
    }

    /// On PostgreSQL, the horizon of the last poll; see [`db::prune_changes`].
    pub fn horizon(&self) -> Option<i64> {
        self.cursor
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .horizon()
    }

    /// How long ago the last applied poll began (since the watch was made,
    /// if none has been): about [`POLL_EVERY`] while the watch is alive.
    pub fn age(&self) -> Duration {
        let last = self.last_applied.load(Ordering::Acquire);
        Duration::from_micros(self.mark().saturating_sub(last))
    }

    /// The changes of the poll that began at `mark` are applied: caches may answer.
    pub fn applied(&self, mark: u64) {
        self.watched.store(true, Ordering::Relaxed);
        self.last_applied.store(mark, Ordering::Release);
        self.trusted_from.store(mark, Ordering::Release);
    }

    /// Polls cannot be made: nothing cached may answer until one succeeds,
    /// and that one drops everything.
    pub fn lost(&self) {
        self.trusted_from.store(0, Ordering::Release);
        self.cursor
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .reset();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_watch_is_fresh_only_just_after_an_applied_poll() {
        let watch = ChangeWatch::default();
        assert!(!watch.fresh());
        watch.applied(watch.mark());
        assert!(watch.fresh());
        std::thread::sleep(TRUST_FOR);
        assert!(!watch.fresh(), "a watch whose polls stopped goes stale");
        watch.applied(watch.mark());
        watch.lost();
        assert!(!watch.fresh());
    }

    #[test]
    fn a_read_vouches_for_itself_only_while_a_watch_runs_and_for_trust_for() {
        let watch = ChangeWatch::default();
        let read = watch.mark();
        assert!(
            !watch.vouches_for(read),
            "no watch has run: only polls vouch"
        );
        watch.applied(watch.mark());
        watch.lost();
        let read = watch.mark();
        assert!(!watch.fresh());
        assert!(watch.vouches_for(read), "read just now, while polls fail");
        assert!(!watch.vouches_for(0));
        std::thread::sleep(TRUST_FOR);
        assert!(!watch.vouches_for(read), "a read ages out like a poll");
        watch.applied(watch.mark());
        assert!(
            watch.vouches_for(read),
            "an applied poll vouches for older reads"
        );
    }
}
