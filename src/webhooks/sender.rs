//! The sender's steps, each a short piece of database work or one attempt:
//! find endpoints with due deliveries (one indexed query across tenants),
//! claim one (a lease on the endpoint row, so that with several instances
//! on one database each attempt is made by exactly one, and an endpoint's
//! events go out one at a time, in order), make the attempt, record it and
//! schedule the next, release the endpoint. The loop that drives them runs
//! the database steps on the blocking pool (`run_webhooks` in lib.rs).

use chrono::{DateTime, NaiveDateTime, TimeDelta, Utc};
use diesel::prelude::*;
use rand::Rng;
use uuid::Uuid;

use super::client::{Outcome, Request};
use super::{Hub, Policy, SigningSecret, DELIVERED, FAILED, PENDING};
use crate::db::DbConnection;
use crate::error::Error;
use crate::schema::{webhook_attempts, webhook_deliveries, webhook_endpoints, webhook_events};

/// How long a claim holds an endpoint: one attempt (10 s at most) and its
/// recording. Renewed before each further attempt of the same round.
pub const LEASE: TimeDelta = TimeDelta::seconds(15);

/// Deliveries sent to one endpoint in one round, at most.
pub const ROUND: i64 = 10;

/// Endpoints with deliveries due at `now`, most overdue first, at most
/// `limit` of them: `(tenant_id, endpoint_id)`.
pub fn due_endpoints(
    conn: &mut DbConnection,
    now: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<(String, String)>, Error> {
    let rows: Vec<(String, String)> = webhook_deliveries::table
        .filter(webhook_deliveries::next_attempt_at.le(now.naive_utc()))
        .order(webhook_deliveries::next_attempt_at.asc())
        .select((
            webhook_deliveries::tenant_id,
            webhook_deliveries::endpoint_id,
        ))
        .limit(limit * 4)
        .load(conn)?;
    let mut endpoints: Vec<(String, String)> = Vec::new();
    for row in rows {
        if !endpoints.contains(&row) {
            endpoints.push(row);
        }
    }
    endpoints.truncate(usize::try_from(limit).unwrap_or(0));
    Ok(endpoints)
}

/// A due delivery, ready to sign.
#[derive(Debug, Clone)]
pub struct Due {
    pub delivery_id: String,
    pub event_id: String,
    pub kind: String,
    pub body: String,
    /// Attempts made before this one.
    pub attempts: i32,
}

/// An endpoint this instance holds until `lease_until`, with what is due.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub tenant_id: String,
    pub endpoint_id: String,
    pub url: String,
    pub lease_until: NaiveDateTime,
    /// The secrets that sign, or why they cannot be read (each attempt then
    /// fails with that reason, recorded in the log).
    secrets: Result<Vec<SigningSecret>, String>,
    pub due: Vec<Due>,
}

impl Claimed {
    /// The request of one attempt at `now`: signed by the current secret,
    /// and by the previous one during the overlap after a rotation.
    pub fn request(&self, due: &Due, now: DateTime<Utc>) -> Result<Request, String> {
        let timestamp = now.timestamp();
        let signature = self
            .secrets
            .as_ref()?
            .iter()
            .map(|s| s.sign(&due.event_id, timestamp, &due.body))
            .collect::<Vec<_>>()
            .join(" ");
        Ok(Request {
            url: self.url.clone(),
            body: due.body.clone(),
            id: due.event_id.clone(),
            timestamp,
            signature,
        })
    }
}

/// Claims the endpoint if no instance holds it, with up to [`ROUND`] of its
/// due deliveries, oldest change first. A disabled or deleted endpoint gets
/// nothing more: its pending deliveries are cancelled. `None`: nothing to do
/// here (held elsewhere, gone, or nothing due any more).
pub fn claim(
    conn: &mut DbConnection,
    hub: &Hub,
    tenant_id: &str,
    endpoint_id: &str,
    now: DateTime<Utc>,
) -> Result<Option<Claimed>, Error> {
    let lease_until = (now + LEASE).naive_utc();
    let endpoint = webhook_endpoints::table
        .filter(webhook_endpoints::tenant_id.eq(tenant_id))
        .filter(webhook_endpoints::id.eq(endpoint_id));
    // One statement: of two instances, the second finds the lease taken
    // (PostgreSQL re-checks the condition after the first one's commit;
    // SQLite has one writer at a time).
    let taken = diesel::update(
        endpoint.filter(
            webhook_endpoints::lease_until
                .is_null()
                .or(webhook_endpoints::lease_until.le(now.naive_utc())),
        ),
    )
    .filter(webhook_endpoints::enabled.eq(true))
    .set(webhook_endpoints::lease_until.eq(Some(lease_until)))
    .execute(conn)?;
    if taken == 0 {
        let enabled: Option<bool> = endpoint
            .select(webhook_endpoints::enabled)
            .first(conn)
            .optional()?;
        if enabled != Some(true) {
            super::cancel_pending(conn, tenant_id, endpoint_id)?;
        }
        return Ok(None);
    }
    let (url, secret, previous, previous_until): (
        String,
        String,
        Option<String>,
        Option<NaiveDateTime>,
    ) = endpoint
        .select((
            webhook_endpoints::url,
            webhook_endpoints::secret,
            webhook_endpoints::previous_secret,
            webhook_endpoints::previous_until,
        ))
        .first(conn)?;
    let mut stored = vec![secret];
    if let (Some(previous), Some(until)) = (previous, previous_until) {
        if until > now.naive_utc() {
            stored.push(previous);
        }
    }
    let secrets = stored
        .iter()
        .map(|s| hub.sealer.open(tenant_id, endpoint_id, s))
        .collect::<Result<Vec<_>, Error>>()
        .map_err(|e| match e {
            Error::Internal(why) => why,
            other => other.to_string(),
        });
    let due = webhook_deliveries::table
        .inner_join(
            webhook_events::table.on(webhook_events::tenant_id
                .eq(webhook_deliveries::tenant_id)
                .and(webhook_events::id.eq(webhook_deliveries::event_id))),
        )
        .filter(webhook_deliveries::tenant_id.eq(tenant_id))
        .filter(webhook_deliveries::endpoint_id.eq(endpoint_id))
        .filter(webhook_deliveries::next_attempt_at.le(now.naive_utc()))
        .order((
            webhook_deliveries::created_at.asc(),
            webhook_deliveries::id.asc(),
        ))
        .select((
            webhook_deliveries::id,
            webhook_deliveries::event_id,
            webhook_events::kind,
            webhook_events::body,
            webhook_deliveries::attempts,
        ))
        .limit(ROUND)
        .load::<(String, String, String, String, i32)>(conn)?
        .into_iter()
        .map(|(delivery_id, event_id, kind, body, attempts)| Due {
            delivery_id,
            event_id,
            kind,
            body,
            attempts,
        })
        .collect();
    Ok(Some(Claimed {
        tenant_id: tenant_id.to_owned(),
        endpoint_id: endpoint_id.to_owned(),
        url,
        lease_until,
        secrets,
        due,
    }))
}

/// Extends the claim before a further attempt; `false` when the lease ran
/// out and another instance took the endpoint (then this one stops).
pub fn renew(
    conn: &mut DbConnection,
    claimed: &mut Claimed,
    now: DateTime<Utc>,
) -> Result<bool, Error> {
    let until = (now + LEASE).naive_utc();
    let renewed = diesel::update(
        webhook_endpoints::table
            .filter(webhook_endpoints::tenant_id.eq(&claimed.tenant_id))
            .filter(webhook_endpoints::id.eq(&claimed.endpoint_id))
            .filter(webhook_endpoints::lease_until.eq(claimed.lease_until))
            .filter(webhook_endpoints::enabled.eq(true)),
    )
    .set(webhook_endpoints::lease_until.eq(Some(until)))
    .execute(conn)?;
    claimed.lease_until = until;
    Ok(renewed == 1)
}

/// Lets the endpoint go, if this instance still holds it.
pub fn release(conn: &mut DbConnection, claimed: &Claimed) -> Result<(), Error> {
    diesel::update(
        webhook_endpoints::table
            .filter(webhook_endpoints::tenant_id.eq(&claimed.tenant_id))
            .filter(webhook_endpoints::id.eq(&claimed.endpoint_id))
            .filter(webhook_endpoints::lease_until.eq(claimed.lease_until)),
    )
    .set(webhook_endpoints::lease_until.eq(None::<NaiveDateTime>))
    .execute(conn)?;
    Ok(())
}

/// When the attempt after `attempts` failed ones is due, with ±10 % jitter;
/// `None` once the schedule is used up (the delivery is given up).
pub fn next_attempt(policy: &Policy, attempts: i32, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let index = usize::try_from(attempts).ok()?.checked_sub(1)?;
    let seconds = *policy.retry_schedule.get(index)?;
    let millis = i64::try_from(seconds.saturating_mul(1000)).unwrap_or(i64::MAX / 2);
    let jitter = rand::thread_rng().gen_range(-(millis / 10)..=millis / 10);
    Some(at + TimeDelta::milliseconds(millis + jitter))
}

/// Whether an outcome counts as delivered: a 2xx answer.
pub fn delivered(outcome: &Outcome) -> bool {
    matches!(outcome, Outcome::Answered(code) if (200..300).contains(code))
}

/// Records one attempt and what follows: delivered, retried at the next step
/// of the schedule, or given up; an endpoint that has failed every attempt
/// for `policy.disable_after` is disabled. Returns whether it was delivered.
pub fn record(
    conn: &mut DbConnection,
    policy: &Policy,
    claimed: &Claimed,
    due: &Due,
    outcome: &Outcome,
    at: DateTime<Utc>,
) -> Result<bool, Error> {
    let ok = delivered(outcome);
    let attempt = due.attempts + 1;
    let next = if ok {
        None
    } else {
        next_attempt(policy, attempt, at)
    };
    let (status_code, error) = match outcome {
        Outcome::Answered(code) => (
            Some(i32::from(*code)),
            (!ok).then(|| format!("answered HTTP {code}")),
        ),
        Outcome::Failed(why) => (None, Some(why.clone())),
    };
    let (tenant_id, endpoint_id) = (&claimed.tenant_id, &claimed.endpoint_id);
    crate::db::write_transaction(conn, |conn| {
        diesel::insert_into(webhook_attempts::table)
            .values((
                webhook_attempts::tenant_id.eq(tenant_id),
                webhook_attempts::id.eq(Uuid::now_v7().to_string()),
                webhook_attempts::endpoint_id.eq(endpoint_id),
                webhook_attempts::delivery_id.eq(&due.delivery_id),
                webhook_attempts::event_id.eq(&due.event_id),
                webhook_attempts::kind.eq(&due.kind),
                webhook_attempts::attempt.eq(attempt),
                webhook_attempts::status_code.eq(status_code),
                webhook_attempts::error.eq(&error),
                webhook_attempts::at.eq(at.naive_utc()),
                webhook_attempts::next_attempt_at.eq(next.map(|t| t.naive_utc())),
            ))
            .execute(conn)?;
        let state = match (ok, next) {
            (true, _) => DELIVERED,
            (false, Some(_)) => PENDING,
            (false, None) => FAILED,
        };
        diesel::update(
            webhook_deliveries::table
                .filter(webhook_deliveries::tenant_id.eq(tenant_id))
                .filter(webhook_deliveries::id.eq(&due.delivery_id))
                .filter(webhook_deliveries::state.eq(PENDING)),
        )
        .set((
            webhook_deliveries::attempts.eq(attempt),
            webhook_deliveries::state.eq(state),
            webhook_deliveries::next_attempt_at.eq(next.map(|t| t.naive_utc())),
        ))
        .execute(conn)?;
        let endpoint = webhook_endpoints::table
            .filter(webhook_endpoints::tenant_id.eq(tenant_id))
            .filter(webhook_endpoints::id.eq(endpoint_id));
        if ok {
            diesel::update(endpoint)
                .set(webhook_endpoints::failing_since.eq(None::<NaiveDateTime>))
                .execute(conn)?;
            return Ok(true);
        }
        let since: Option<Option<NaiveDateTime>> = endpoint
            .select(webhook_endpoints::failing_since)
            .first(conn)
            .optional()?;
        let Some(since) = since else {
            return Ok(false); // deleted meanwhile
        };
        let since = since.unwrap_or(at.naive_utc());
        let disable_after = TimeDelta::from_std(policy.disable_after).unwrap_or(TimeDelta::MAX);
        if at.naive_utc() - since >= disable_after {
            log::warn!(
                "webhook endpoint {endpoint_id} of tenant {tenant_id} failed every attempt since {since}: disabled"
            );
            diesel::update(endpoint)
                .set((
                    webhook_endpoints::enabled.eq(false),
                    webhook_endpoints::updated_at.eq(Some(at.naive_utc())),
                ))
                .execute(conn)?;
            super::cancel_pending(conn, tenant_id, endpoint_id)?;
        } else {
            diesel::update(endpoint)
                .set(webhook_endpoints::failing_since.eq(Some(since)))
                .execute(conn)?;
        }
        Ok(false)
    })
}
