//! When each key was last used, recorded without a database write on the
//! request's path.
//!
//! A successful authentication calls [`UsageRecorder::record`], which only
//! touches memory: a key's use is queued at most once per [`WRITE_EVERY`], and
//! [`UsageRecorder::flush`] (run periodically by `serve`, and at shutdown)
//! writes the queue in one transaction. `last_used_on` is therefore accurate
//! to about a minute, as the contract allows.

use std::collections::BTreeMap;
use std::sync::Mutex;

use chrono::{DateTime, TimeDelta, Utc};
use diesel::prelude::*;
use foldhash::HashMap;

use crate::db::DbConnection;
use crate::error::Error;
use crate::schema::api_keys;

/// A key's use is written at most once in this long.
pub const WRITE_EVERY: TimeDelta = TimeDelta::seconds(60);

#[derive(Debug, Default)]
struct Ledger {
    /// (tenant id, key id) -> last use, waiting to be written. Ordered: every
    /// instance's flush updates the rows it shares with another's in the same
    /// order, so two flushes wait for each other instead of deadlocking (a
    /// hash map's order differs between processes; on Citus the deadlock
    /// spanned workers and held the keys' rows for its detection's 2 s).
    pending: BTreeMap<(String, String), DateTime<Utc>>,
    /// key id -> when its use was last queued; younger than WRITE_EVERY.
    queued_at: HashMap<String, DateTime<Utc>>,
}

#[derive(Debug, Default)]
pub struct UsageRecorder {
    ledger: Mutex<Ledger>,
}

impl UsageRecorder {
    /// Notes that `key_id` of `tenant_id` authenticated at `now`.
    pub fn record(&self, tenant_id: &str, key_id: &str, now: DateTime<Utc>) {
        let mut ledger = self.ledger.lock().unwrap_or_else(|e| e.into_inner());
        if ledger
            .queued_at
            .get(key_id)
            .is_some_and(|at| now - *at < WRITE_EVERY)
        {
            return;
        }
        ledger.queued_at.insert(key_id.to_owned(), now);
        ledger
            .pending
            .insert((tenant_id.to_owned(), key_id.to_owned()), now);
    }

    /// Writes the queued uses; returns how many keys were updated.
    pub fn flush(&self, conn: &mut DbConnection, now: DateTime<Utc>) -> Result<usize, Error> {
        let batch = {
            let mut ledger = self.ledger.lock().unwrap_or_else(|e| e.into_inner());
            ledger.queued_at.retain(|_, at| now - *at < WRITE_EVERY);
            std::mem::take(&mut ledger.pending)
        };
        if batch.is_empty() {
            return Ok(0);
        }
        let written = crate::db::write_transaction(conn, |conn| {
            for ((tenant_id, key_id), at) in &batch {
                let at = at.naive_utc();
                diesel::update(
                    api_keys::table
                        .filter(
                            api_keys::tenant_id
                                .eq(tenant_id)
                                .and(api_keys::id.eq(key_id)),
                        )
                        .filter(
                            api_keys::last_used_at
                                .is_null()
                                .or(api_keys::last_used_at.lt(at)),
                        ),
                )
                .set(api_keys::last_used_at.eq(at))
                .execute(conn)?;
            }
            Ok(batch.len())
        });
        if written.is_err() {
            // Keep the uses for the next flush rather than lose them.
            let mut ledger = self.ledger.lock().unwrap_or_else(|e| e.into_inner());
            for (key, at) in batch {
                ledger.pending.entry(key).or_insert(at);
            }
        }
        written
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn a_key_is_queued_at_most_once_a_minute() {
        let t0 = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let recorder = UsageRecorder::default();
        recorder.record("t", "k", t0);
        recorder.record("t", "k", t0 + TimeDelta::seconds(30));
        recorder.record("t", "other", t0 + TimeDelta::seconds(30));
        {
            let ledger = recorder.ledger.lock().unwrap();
            assert_eq!(ledger.pending.len(), 2);
            assert_eq!(ledger.pending[&("t".into(), "k".into())], t0);
        }
        recorder.record("t", "k", t0 + TimeDelta::seconds(61));
        let ledger = recorder.ledger.lock().unwrap();
        assert_eq!(
            ledger.pending[&("t".into(), "k".into())],
            t0 + TimeDelta::seconds(61)
        );
    }
}
