//! Time-driven events: `key.expiring` (the configured days before a key's
//! expiry instant) and `key.expired` (once, when a key expires unrevoked).
//!
//! A sweep, run every minute by each instance, finds the keys that need a
//! notice, for tenants with an enabled endpoint only (an idle tenant costs
//! nothing). Each notice is claimed by inserting its `key_notices` row with
//! `ON CONFLICT DO NOTHING` in the transaction that writes the event, so it
//! is recorded exactly once across instances and restarts.

use chrono::{DateTime, TimeDelta, Utc};
use diesel::dsl::{exists, not};
use diesel::prelude::*;
use diesel::sql_types::{Text, Timestamp};
use serde_json::{Map, Value};
use uuid::Uuid;

use super::{outbox, payload, EventType};
use crate::db::DbConnection;
use crate::error::Error;
use crate::keys::{self, KeyRef};
use crate::schema::{api_keys, key_notices, webhook_endpoints};

/// A key that expired longer ago than this when first swept gets no
/// `key.expired` (a tenant's first endpoint does not replay old expiries).
pub const EXPIRED_LOOKBACK: TimeDelta = TimeDelta::days(7);

/// Keys looked at per sweep and kind of notice; the next sweep takes the rest.
const BATCH: i64 = 500;

fn expiring_notice(days: u32) -> String {
    format!("expiring:{days}")
}

const EXPIRED_NOTICE: &str = "expired";

/// Records the notices due at `now`; returns how many events were recorded.
/// `notice_days`: the days before expiry, in any order.
pub fn sweep(
    conn: &mut DbConnection,
    now: DateTime<Utc>,
    notice_days: &[u32],
) -> Result<usize, Error> {
    let mut days: Vec<u32> = notice_days.to_vec();
    days.sort_unstable_by(|a, b| b.cmp(a));
    days.dedup();
    let mut recorded = 0;
    // Keys lacking some notice whose window they are in.
    let mut expiring: Vec<(String, String)> = Vec::new();
    for &d in &days {
        for key in lacking(conn, now, Some(d))? {
            if !expiring.contains(&key) {
                expiring.push(key);
            }
        }
    }
    for (tenant_id, key_id) in expiring {
        recorded += crate::db::write_transaction(conn, |conn| {
            expiring_one(conn, &tenant_id, &key_id, now, &days)
        })?;
    }
    for (tenant_id, key_id) in lacking(conn, now, None)? {
        recorded +=
            crate::db::write_transaction(conn, |conn| expired_one(conn, &tenant_id, &key_id, now))?;
    }
    Ok(recorded)
}

/// Keys of tenants with an enabled endpoint that lack notice `days` and are
/// within it (`Some`), or that expired unrevoked and lack `expired` (`None`).
fn lacking(
    conn: &mut DbConnection,
    now: DateTime<Utc>,
    days: Option<u32>,
) -> Result<Vec<(String, String)>, Error> {
    let notice = days.map_or_else(|| EXPIRED_NOTICE.to_owned(), expiring_notice);
    let now_naive = now.naive_utc();
    let listened = webhook_endpoints::table
        .filter(webhook_endpoints::enabled.eq(true))
        .select(webhook_endpoints::tenant_id);
    let noticed = key_notices::table
        .filter(key_notices::tenant_id.eq(api_keys::tenant_id))
        .filter(key_notices::key_id.eq(api_keys::id))
        .filter(key_notices::notice.eq(notice));
    let base = api_keys::table
        .filter(api_keys::tenant_id.eq_any(listened))
        .filter(not(exists(noticed)))
        .select((api_keys::tenant_id, api_keys::id))
        .order(api_keys::expires_at.asc())
        .limit(BATCH)
        .into_boxed::<crate::db::MultiBackend>();
    let query = match days {
        Some(d) => base
            .filter(api_keys::revoked_at.is_null())
            .filter(api_keys::expires_at.gt(now_naive))
            .filter(api_keys::expires_at.le(now_naive + TimeDelta::days(i64::from(d)))),
        None => base
            .filter(api_keys::expires_at.le(now_naive))
            .filter(api_keys::expires_at.gt(now_naive - EXPIRED_LOOKBACK))
            .filter(
                api_keys::revoked_at
                    .is_null()
                    .or(api_keys::revoked_at.gt(api_keys::expires_at.nullable())),
            ),
    };
    Ok(query.load(conn)?)
}

/// Claims notice `notice` for the key; `true` if this call claimed it.
fn claim(
    conn: &mut DbConnection,
    tenant_id: &str,
    key_id: &str,
    notice: &str,
    now: DateTime<Utc>,
) -> Result<bool, Error> {
    let inserted = diesel::sql_query(
        "INSERT INTO key_notices (tenant_id, key_id, notice, at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT DO NOTHING",
    )
    .bind::<Text, _>(tenant_id)
    .bind::<Text, _>(key_id)
    .bind::<Text, _>(notice)
    .bind::<Timestamp, _>(now.naive_utc())
    .execute(conn)?;
    Ok(inserted == 1)
}

/// A key inside one or more notice windows gets one `key.expiring`, for the
/// nearest window (a key that enters the windows already inside the nearer
/// one gets that one notice), and every window it is in is marked done.
fn expiring_one(
    conn: &mut DbConnection,
    tenant_id: &str,
    key_id: &str,
    now: DateTime<Utc>,
    days: &[u32],
) -> Result<usize, Error> {
    let Some(key) = keys::find(conn, tenant_id, &KeyRef::Id(key_id.to_owned()))? else {
        return Ok(0);
    };
    if key.revoked_at.is_some() || key.expires_at <= now {
        return Ok(0);
    }
    let left = key.expires_at - now;
    let within: Vec<u32> = days
        .iter()
        .copied()
        .filter(|d| left <= TimeDelta::days(i64::from(*d)))
        .collect();
    let Some(nearest) = within.iter().copied().min() else {
        return Ok(0);
    };
    let mut claimed_nearest = false;
    for d in &within {
        let claimed = claim(conn, tenant_id, key_id, &expiring_notice(*d), now)?;
        if *d == nearest {
            claimed_nearest = claimed;
        }
    }
    if !claimed_nearest {
        return Ok(0);
    }
    let mut data = Map::new();
    data.insert("action".into(), EventType::KeyExpiring.as_str().into());
    data.insert("target_id".into(), key.id.clone().into());
    data.insert("days".into(), nearest.into());
    data.insert("expires_at".into(), payload::instant(key.expires_at).into());
    data.insert("key".into(), payload::key(&key));
    outbox::enqueue(
        conn,
        tenant_id,
        &Uuid::now_v7().to_string(),
        EventType::KeyExpiring,
        now,
        outbox::Recipients::Subscribed,
        |_| Ok(Value::Object(data)),
    )?;
    Ok(1)
}

fn expired_one(
    conn: &mut DbConnection,
    tenant_id: &str,
    key_id: &str,
    now: DateTime<Utc>,
) -> Result<usize, Error> {
    let Some(key) = keys::find(conn, tenant_id, &KeyRef::Id(key_id.to_owned()))? else {
        return Ok(0);
    };
    let unrevoked = key.revoked_at.is_none_or(|at| at > key.expires_at);
    if key.expires_at > now || !unrevoked {
        return Ok(0);
    }
    if !claim(conn, tenant_id, key_id, EXPIRED_NOTICE, now)? {
        return Ok(0);
    }
    let mut data = Map::new();
    data.insert("action".into(), EventType::KeyExpired.as_str().into());
    data.insert("target_id".into(), key.id.clone().into());
    data.insert("expires_at".into(), payload::instant(key.expires_at).into());
    data.insert("key".into(), payload::key(&key));
    outbox::enqueue(
        conn,
        tenant_id,
        &Uuid::now_v7().to_string(),
        EventType::KeyExpired,
        now,
        outbox::Recipients::Subscribed,
        |_| Ok(Value::Object(data)),
    )?;
    Ok(1)
}
