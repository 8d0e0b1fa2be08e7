//! Retention of the delivery log: settled deliveries (delivered, given up or
//! cancelled), attempts and events older than the operator's retention
//! (`KEYWARD_WEBHOOK_RETENTION_DAYS`, 90 days as Svix keeps payloads) are
//! deleted. Each instance's sender runs [`prune`] once an hour; one instance
//! at a time does the work (a job lock, `db::try_job_lock`), the others skip.
//!
//! What is still to be sent is never touched: a pending delivery stays
//! however old it is, and so does its event, which the sender reads.
//! Deliveries are written with their event, at the same instant, so an event
//! older than the retention has no settled delivery newer than it.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use diesel::dsl::{exists, not};
use diesel::prelude::*;

use crate::db::DbConnection;
use crate::error::Error;
use crate::schema::{webhook_attempts, webhook_deliveries, webhook_events};

/// The job lock of the prune ("kw-prune" as a number).
const PRUNE_JOB: i32 = 0x6b77_7072; // "kwpr"

/// How many rows one prune deleted, table by table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    pub attempts: usize,
    pub deliveries: usize,
    pub events: usize,
}

impl Pruned {
    pub fn total(&self) -> usize {
        self.attempts + self.deliveries + self.events
    }
}

/// Deletes what is older than `retention` at `now`. `None`: another
/// instance is pruning at this moment (it does the same work).
pub fn prune(
    conn: &mut DbConnection,
    now: DateTime<Utc>,
    retention: Duration,
) -> Result<Option<Pruned>, Error> {
    let Some(cutoff) = TimeDelta::from_std(retention)
        .ok()
        .and_then(|r| now.checked_sub_signed(r))
    else {
        return Ok(Some(Pruned::default())); // nothing is that old
    };
    let cutoff = cutoff.naive_utc();
    crate::db::write_transaction(conn, |conn| {
        if !crate::db::try_job_lock(conn, PRUNE_JOB)? {
            return Ok(None);
        }
        let attempts =
            diesel::delete(webhook_attempts::table.filter(webhook_attempts::at.lt(cutoff)))
                .execute(conn)?;
        let deliveries = diesel::delete(
            webhook_deliveries::table
                .filter(webhook_deliveries::next_attempt_at.is_null())
                .filter(webhook_deliveries::created_at.lt(cutoff)),
        )
        .execute(conn)?;
        let pending = webhook_deliveries::table
            .filter(webhook_deliveries::tenant_id.eq(webhook_events::tenant_id))
            .filter(webhook_deliveries::event_id.eq(webhook_events::id))
            .filter(webhook_deliveries::next_attempt_at.is_not_null());
        let events = diesel::delete(
            webhook_events::table
                .filter(webhook_events::created_at.lt(cutoff))
                .filter(not(exists(pending))),
        )
        .execute(conn)?;
        Ok(Some(Pruned {
            attempts,
            deliveries,
            events,
        }))
    })
}
