//! Knowing when data changed, instead of guessing.
//!
//! Every committed write to a tenant, its users or its keys bumps the tenant's
//! row in `tenant_changes` (database triggers, so writes that bypass keyward
//! count too; last-used times do not). Each running instance polls that table
//! every [`POLL_EVERY`] on a connection of its own ([`ChangeWatch::poll`]) and
//! drops what it cached for the tenants whose version moved.
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
//! drops everything.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use diesel::prelude::*;

use crate::db::DbConnection;
use crate::error::Error;
use crate::schema::tenant_changes;

/// How often an instance asks whether anything changed.
pub const POLL_EVERY: Duration = Duration::from_millis(20);
/// How long after a poll began its picture of the data may be trusted.
pub const TRUST_FOR: Duration = Duration::from_millis(80);

/// What a poll found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Changed {
    /// These tenants' data changed (by tenant id).
    Tenants(Vec<String>),
    /// Anything may have changed: the first poll, or the first after a gap.
    Everything,
}

/// One instance's view of the change signal.
#[derive(Debug)]
pub struct ChangeWatch {
    epoch: Instant,
    /// When (µs after `epoch`) the last applied poll began; 0 while stale.
    trusted_from: AtomicU64,
    /// Set by the first applied poll: a watch runs, so a write by another
    /// process drops what was read before it, or it ages out.
    watched: AtomicBool,
    /// Tenant id -> the version the last poll saw; empty after a gap.
    versions: Mutex<HashMap<String, i64>>,
}

impl Default for ChangeWatch {
    fn default() -> Self {
        Self {
            epoch: Instant::now(),
            trusted_from: AtomicU64::new(0),
            watched: AtomicBool::new(false),
            versions: Mutex::new(HashMap::new()),
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

    /// Reads the versions and says what changed since the last poll. Apply
    /// the answer, then call [`ChangeWatch::applied`] with the poll's `mark`.
    pub fn poll(&self, conn: &mut DbConnection) -> Result<Changed, Error> {
        let now: HashMap<String, i64> = tenant_changes::table
            .select((tenant_changes::tenant_id, tenant_changes::version))
            .load::<(String, i64)>(conn)?
            .into_iter()
            .collect();
        let mut seen = self.versions.lock().unwrap_or_else(|e| e.into_inner());
        let changed = if seen.is_empty() {
            Changed::Everything
        } else {
            Changed::Tenants(
                now.iter()
                    .filter(|(tenant, version)| seen.get(*tenant) != Some(version))
                    .map(|(tenant, _)| tenant.clone())
                    .collect(),
            )
        };
        *seen = now;
        Ok(changed)
    }

    /// The changes of the poll that began at `mark` are applied: caches may answer.
    pub fn applied(&self, mark: u64) {
        self.watched.store(true, Ordering::Relaxed);
        self.trusted_from.store(mark, Ordering::Release);
    }

    /// Polls cannot be made: nothing cached may answer until one succeeds,
    /// and that one drops everything.
    pub fn lost(&self) {
        self.trusted_from.store(0, Ordering::Release);
        self.versions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
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
