//! Usage analytics: how often each key is verified (`/v1/auth`), per minute,
//! by outcome (API.md section 10). (`usage` is the room of last-used times.)
//!
//! - **Counting** costs the verification an increment in memory: a [`Tally`]
//!   keeps one map per worker thread (a mutex only that thread and the
//!   flusher ever take), keyed by tenant, key and minute.
//! - **Flushing**: one background thread per instance drains every map each
//!   [`FLUSH_EVERY`] into ONE multi-row upsert into `usage_minutes` that *adds*
//!   (`valid = valid + excluded.valid`), chunked only past [`CHUNK_ROWS`] rows.
//!   Adding makes several instances sum up exactly; a failed statement puts
//!   its counts back for the next flush. Shutdown flushes what is left.
//! - **Rolling up**: every [`ROLLUP_EVERY`] each instance tries to claim the
//!   job (a row of `usage_rollups`, claimed for [`CLAIM_SECS`]); the one that
//!   gets it recomputes the hour buckets of closed hours from their minutes,
//!   and the day buckets of closed days from their hours, with upserts that
//!   SET (so doing it twice changes nothing), moves the watermark
//!   `done_until`, and prunes what is past its retention and rolled up.
//!   Each run recomputes the last rolled hour (and day) again, so counts that
//!   reach the database up to an hour late still land in the roll-ups.
//! - **Reading** never waits for the roll-up: buckets before a watermark come
//!   from the coarser table, the rest from the finer ones, summed here.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

use chrono::{DateTime, TimeDelta, Utc};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};
use foldhash::HashMap;
use serde::Serialize;
use thread_local::ThreadLocal;

use crate::access::Caller;
use crate::db::{DbConnection, MultiBackend};
use crate::error::Error;
use crate::keys::Scope;
use crate::schema::{api_keys, usage_rollups, users};

/// How often each instance writes its counts (the contract allows 10 s).
pub const FLUSH_EVERY: std::time::Duration = std::time::Duration::from_secs(2);
/// How often each instance tries to run the roll-up and pruning job.
pub const ROLLUP_EVERY: std::time::Duration = std::time::Duration::from_secs(60);
/// How long a claim on the roll-up job holds if its instance dies meanwhile.
pub const CLAIM_SECS: i64 = 300;
/// A minute is rolled up into its hour this long after the hour ends, so
/// that every instance's flush of it has landed.
pub const SETTLE_SECS: i64 = 120;
/// Rows per upsert statement; a flush writes more only after a long outage.
pub const CHUNK_ROWS: usize = 2000;

const MINUTE: i64 = 60;
const HOUR: i64 = 3600;
const DAY: i64 = 86_400;
/// How long each resolution is kept.
const KEEP_MINUTES: i64 = 48 * HOUR;
const KEEP_HOURS: i64 = 90 * DAY;
const KEEP_DAYS: i64 = 730 * DAY;

/// What a verification answered, as counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// 200.
    Valid,
    /// 403: a missing scope (later also a refused address).
    Forbidden,
    /// 429: a rate limit of usage control (nothing produces it yet).
    RateLimited,
    /// 429: credits exhausted (nothing produces it yet).
    UsageExceeded,
    /// 401 for a key that exists in the tenant: revoked, expired, or of an inactive user.
    Invalid,
}

impl Outcome {
    pub const ALL: [Outcome; 5] = [
        Outcome::Valid,
        Outcome::Forbidden,
        Outcome::RateLimited,
        Outcome::UsageExceeded,
        Outcome::Invalid,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Valid => "valid",
            Outcome::Forbidden => "forbidden",
            Outcome::RateLimited => "rate_limited",
            Outcome::UsageExceeded => "usage_exceeded",
            Outcome::Invalid => "invalid",
        }
    }
}

/// Verifications by outcome.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, QueryableByName)]
pub struct Counts {
    #[diesel(sql_type = BigInt)]
    pub valid: i64,
    #[diesel(sql_type = BigInt)]
    pub forbidden: i64,
    #[diesel(sql_type = BigInt)]
    pub rate_limited: i64,
    #[diesel(sql_type = BigInt)]
    pub usage_exceeded: i64,
    #[diesel(sql_type = BigInt)]
    pub invalid: i64,
}

impl Counts {
    fn one(outcome: Outcome) -> Self {
        let mut counts = Self::default();
        counts.count(outcome);
        counts
    }

    fn count(&mut self, outcome: Outcome) {
        let slot = match outcome {
            Outcome::Valid => &mut self.valid,
            Outcome::Forbidden => &mut self.forbidden,
            Outcome::RateLimited => &mut self.rate_limited,
            Outcome::UsageExceeded => &mut self.usage_exceeded,
            Outcome::Invalid => &mut self.invalid,
        };
        *slot += 1;
    }

    fn add(&mut self, other: &Counts) {
        self.valid += other.valid;
        self.forbidden += other.forbidden;
        self.rate_limited += other.rate_limited;
        self.usage_exceeded += other.usage_exceeded;
        self.invalid += other.invalid;
    }

    pub fn total(&self) -> i64 {
        self.valid + self.forbidden + self.rate_limited + self.usage_exceeded + self.invalid
    }
}

/// A key a verification could identify in its tenant, even when it refused it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CountedKey {
    pub tenant_id: String,
    pub key_id: String,
}

/// One thread's counts: tenant id -> key id -> (minute, counts), minutes in
/// the order they were first counted.
type Shard = HashMap<String, HashMap<String, Vec<(i64, Counts)>>>;
/// Counts to write: (tenant id, key id, minute) -> counts, in the order the
/// rows are written (one order for every instance: their upserts cannot deadlock).
type Rows = BTreeMap<(String, String, i64), Counts>;

/// Verifications counted in memory, not yet written.
#[derive(Debug)]
pub struct Tally {
    enabled: bool,
    shards: ThreadLocal<Mutex<Shard>>,
    /// Counts a failed flush could not write, for the next one.
    unwritten: Mutex<Rows>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl Tally {
    /// A tally; a disabled one counts nothing (`usage_counting = false`).
    pub fn new(enabled: bool) -> Self {
        Self {
            enabled,
            shards: ThreadLocal::new(),
            unwritten: Mutex::default(),
        }
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Counts one verification of `key_id` of `tenant_id` at `now`. Allocates
    /// only the first time this thread sees the key since the last flush.
    pub fn record(&self, tenant_id: &str, key_id: &str, outcome: Outcome, now: DateTime<Utc>) {
        if !self.enabled {
            return;
        }
        let minute = now.timestamp().div_euclid(MINUTE) * MINUTE;
        let mut shard = lock(self.shards.get_or(Mutex::default));
        let count = |minutes: &mut Vec<(i64, Counts)>| match minutes.last_mut() {
            Some((at, counts)) if *at == minute => counts.count(outcome),
            _ => minutes.push((minute, Counts::one(outcome))),
        };
        if let Some(minutes) = shard
            .get_mut(tenant_id)
            .and_then(|keys| keys.get_mut(key_id))
        {
            return count(minutes);
        }
        let minutes = shard
            .entry(tenant_id.to_owned())
            .or_default()
            .entry(key_id.to_owned())
            .or_insert_with(|| Vec::with_capacity(2));
        count(minutes);
    }

    /// Takes every count held, merged by (tenant, key, minute).
    fn drain(&self) -> Rows {
        let mut rows = std::mem::take(&mut *lock(&self.unwritten));
        for shard in self.shards.iter() {
            let taken = std::mem::take(&mut *lock(shard));
            for (tenant_id, keys) in taken {
                for (key_id, minutes) in keys {
                    for (minute, counts) in minutes {
                        rows.entry((tenant_id.clone(), key_id.clone(), minute))
                            .or_default()
                            .add(&counts);
                    }
                }
            }
        }
        rows
    }

    /// Writes every count held: one statement (per [`CHUNK_ROWS`] rows).
    /// Returns how many (key, minute) rows were written. On failure the
    /// counts not written are kept for the next flush.
    pub fn flush(&self, conn: &mut DbConnection) -> Result<usize, Error> {
        let rows = self.drain();
        if rows.is_empty() {
            return Ok(0);
        }
        let rows: Vec<_> = rows.into_iter().collect();
        let mut written = 0;
        for (i, chunk) in rows.chunks(CHUNK_ROWS).enumerate() {
            if let Err(error) = add_minutes(conn, chunk) {
                let mut unwritten = lock(&self.unwritten);
                for (row, counts) in rows.into_iter().skip(i * CHUNK_ROWS) {
                    unwritten.entry(row).or_default().add(&counts);
                }
                return Err(error);
            }
            written += chunk.len();
        }
        Ok(written)
    }
}

/// One upsert that adds `rows` to their minute buckets.
fn add_minutes(
    conn: &mut DbConnection,
    rows: &[((String, String, i64), Counts)],
) -> Result<(), Error> {
    let mut sql = String::from(
        "INSERT INTO usage_minutes \
         (tenant_id, key_id, bucket, valid, forbidden, rate_limited, usage_exceeded, invalid) VALUES ",
    );
    for i in 0..rows.len() {
        if i > 0 {
            sql.push_str(", ");
        }
        sql.push('(');
        sql.push_str(&crate::db::bind_markers(conn, i * 8 + 1, 8));
        sql.push(')');
    }
    sql.push_str(
        " ON CONFLICT (tenant_id, key_id, bucket) DO UPDATE SET \
         valid = usage_minutes.valid + excluded.valid, \
         forbidden = usage_minutes.forbidden + excluded.forbidden, \
         rate_limited = usage_minutes.rate_limited + excluded.rate_limited, \
         usage_exceeded = usage_minutes.usage_exceeded + excluded.usage_exceeded, \
         invalid = usage_minutes.invalid + excluded.invalid",
    );
    let mut query = diesel::sql_query(sql).into_boxed::<MultiBackend>();
    for ((tenant_id, key_id, minute), c) in rows {
        query = query
            .bind::<Text, _>(tenant_id.clone())
            .bind::<Text, _>(key_id.clone())
            .bind::<BigInt, _>(*minute)
            .bind::<BigInt, _>(c.valid)
            .bind::<BigInt, _>(c.forbidden)
            .bind::<BigInt, _>(c.rate_limited)
            .bind::<BigInt, _>(c.usage_exceeded)
            .bind::<BigInt, _>(c.invalid);
    }
    query.execute(conn)?;
    Ok(())
}

/// The resolution of a usage series.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Granularity {
    Minute,
    Hour,
    Day,
}

impl Granularity {
    pub const ALL: [Granularity; 3] = [Granularity::Minute, Granularity::Hour, Granularity::Day];

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|g| g.as_str() == s)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Granularity::Minute => "minute",
            Granularity::Hour => "hour",
            Granularity::Day => "day",
        }
    }

    /// A bucket's length in seconds.
    pub fn seconds(self) -> i64 {
        match self {
            Granularity::Minute => MINUTE,
            Granularity::Hour => HOUR,
            Granularity::Day => DAY,
        }
    }

    /// The longest span one question may cover.
    pub fn max_span(self) -> TimeDelta {
        match self {
            Granularity::Minute => TimeDelta::hours(48),
            Granularity::Hour => TimeDelta::days(90),
            Granularity::Day => TimeDelta::days(730),
        }
    }

    fn floor(self, t: i64) -> i64 {
        t.div_euclid(self.seconds()) * self.seconds()
    }

    fn floor_time(self, t: DateTime<Utc>) -> DateTime<Utc> {
        DateTime::from_timestamp(self.floor(t.timestamp()), 0).unwrap_or(t)
    }
}

/// What `GET /v1/usage` asks, already parsed.
#[derive(Debug, Clone, Default)]
pub struct UsageQuery {
    pub granularity: Option<Granularity>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    pub key_id: Option<String>,
    pub user_id: Option<String>,
}

pub const SPAN_INVALID: &str =
    "from must be before to, at most 48 hours before it for granularity minute, 90 days for hour, 730 days for day.";
pub const KEY_UNKNOWN: &str = "No key of this tenant has this ID.";
pub const USER_UNKNOWN: &str = "No user of this tenant has this ID.";

impl UsageQuery {
    /// The buckets asked for: `from` and `to` rounded down to the
    /// granularity; by default `to` is the end of the current bucket and
    /// `from` 24 hours before it.
    pub fn span(
        &self,
        now: DateTime<Utc>,
    ) -> Result<(Granularity, DateTime<Utc>, DateTime<Utc>), Error> {
        let g = self.granularity.unwrap_or(Granularity::Hour);
        let to = match self.to {
            Some(to) => g.floor_time(to),
            None => g.floor_time(now) + TimeDelta::seconds(g.seconds()),
        };
        let from = match self.from {
            Some(from) => g.floor_time(from),
            None => g.floor_time(to - TimeDelta::hours(24)),
        };
        if from >= to || to - from > g.max_span() {
            return Err(Error::invalid("from", SPAN_INVALID));
        }
        Ok((g, from, to))
    }
}

/// One bucket of a series.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bucket {
    pub start: DateTime<Utc>,
    pub counts: Counts,
}

/// A usage series: every bucket of the span, oldest first, zero-filled.
#[derive(Debug, Clone)]
pub struct Usage {
    pub granularity: Granularity,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub series: Vec<Bucket>,
    pub totals: Counts,
}

/// The usage `caller` asks for (`GET /v1/usage`): Administrators may read
/// any key or user of the tenant, anyone else only their own.
pub fn usage_for(
    conn: &mut DbConnection,
    caller: &Caller,
    query: &UsageQuery,
    now: DateTime<Utc>,
) -> Result<Usage, Error> {
    caller.require_scope(Scope::UserKeyManagement)?;
    let tenant_id = caller.tenant.id.as_str();
    let (granularity, from, to) = query.span(now)?;
    if let Some(key_id) = &query.key_id {
        let owner: String = api_keys::table
            .filter(api_keys::tenant_id.eq(tenant_id))
            .filter(api_keys::id.eq(key_id))
            .select(api_keys::user_id)
            .first(conn)
            .optional()?
            .ok_or_else(|| Error::invalid("key_id", KEY_UNKNOWN))?;
        if !caller.may_act_for(&owner) {
            return Err(Error::Forbidden(
                "Only Administrators may read the usage of another user's key",
            ));
        }
    }
    if let Some(user_id) = &query.user_id {
        let found = users::table
            .filter(users::tenant_id.eq(tenant_id))
            .filter(users::id.eq(user_id))
            .select(users::id)
            .first::<String>(conn)
            .optional()?;
        if found.is_none() {
            return Err(Error::invalid("user_id", USER_UNKNOWN));
        }
        if !caller.may_act_for(user_id) {
            return Err(Error::Forbidden(
                "Only Administrators may read the usage of another user",
            ));
        }
    }
    let user_id = match (&query.user_id, &query.key_id) {
        (Some(user_id), _) => Some(user_id.as_str()),
        (None, None) if !caller.is_admin() => Some(caller.user_id.as_str()),
        (None, _) => None,
    };
    let filter = Filter {
        tenant_id,
        key_id: query.key_id.as_deref(),
        user_id,
    };
    series(conn, &filter, granularity, from, to)
}

/// The verifications of `user_id`'s keys in the 24 hours before `now`
/// (Estuary's `/user/stats`).
pub fn user_last_day(
    conn: &mut DbConnection,
    tenant_id: &str,
    user_id: &str,
    now: DateTime<Utc>,
) -> Result<Counts, Error> {
    let to = Granularity::Minute.floor_time(now) + TimeDelta::minutes(1);
    let filter = Filter {
        tenant_id,
        key_id: None,
        user_id: Some(user_id),
    };
    let usage = series(
        conn,
        &filter,
        Granularity::Minute,
        to - TimeDelta::hours(24),
        to,
    )?;
    Ok(usage.totals)
}

/// Which keys a series counts.
struct Filter<'a> {
    tenant_id: &'a str,
    key_id: Option<&'a str>,
    user_id: Option<&'a str>,
}

#[derive(QueryableByName)]
struct SourceRow {
    #[diesel(sql_type = BigInt)]
    start: i64,
    #[diesel(embed)]
    counts: Counts,
}

/// The watermarks of the roll-up: every hour (day) bucket before it is done.
fn watermarks(conn: &mut DbConnection) -> Result<(i64, i64), Error> {
    let rows: Vec<(String, i64)> = usage_rollups::table
        .select((usage_rollups::period, usage_rollups::done_until))
        .load(conn)?;
    let of = |period: &str| {
        rows.iter()
            .find(|(p, _)| p == period)
            .map_or(0, |(_, done)| *done)
    };
    Ok((of("hour"), of("day")))
}

fn series(
    conn: &mut DbConnection,
    filter: &Filter<'_>,
    granularity: Granularity,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Usage, Error> {
    let (lo, hi) = (from.timestamp(), to.timestamp());
    let (hours_done, days_done) = watermarks(conn)?;
    let clamp = |t: i64| t.clamp(lo, hi);
    // [lo, day_edge) from days, [day_edge, hour_edge) from hours, the rest from minutes.
    let day_edge = match granularity {
        Granularity::Day => clamp(days_done),
        _ => lo,
    };
    let hour_edge = match granularity {
        Granularity::Minute => lo,
        _ => clamp(hours_done.max(day_edge)),
    };
    let g = granularity.seconds();
    let mut sums: BTreeMap<i64, Counts> = BTreeMap::new();
    for (table, start, end) in [
        ("usage_days", lo, day_edge),
        ("usage_hours", day_edge, hour_edge),
        ("usage_minutes", hour_edge, hi),
    ] {
        if start >= end {
            continue;
        }
        for row in sum_by_bucket(conn, table, g, filter, start, end)? {
            sums.entry(granularity.floor(row.start))
                .or_default()
                .add(&row.counts);
        }
    }
    let mut totals = Counts::default();
    let series = (0..(hi - lo) / g)
        .map(|i| {
            let start = lo + i * g;
            let counts = sums.get(&start).copied().unwrap_or_default();
            totals.add(&counts);
            Bucket {
                start: DateTime::from_timestamp(start, 0).unwrap_or(from),
                counts,
            }
        })
        .collect();
    Ok(Usage {
        granularity,
        from,
        to,
        series,
        totals,
    })
}

/// The sums of `table`'s rows in `[start, end)` by bucket of `g` seconds.
fn sum_by_bucket(
    conn: &mut DbConnection,
    table: &'static str,
    g: i64,
    filter: &Filter<'_>,
    start: i64,
    end: i64,
) -> Result<Vec<SourceRow>, Error> {
    let mut sql = format!(
        "SELECT bucket - (bucket % {g}) AS start, \
         CAST(SUM(valid) AS BIGINT) AS valid, \
         CAST(SUM(forbidden) AS BIGINT) AS forbidden, \
         CAST(SUM(rate_limited) AS BIGINT) AS rate_limited, \
         CAST(SUM(usage_exceeded) AS BIGINT) AS usage_exceeded, \
         CAST(SUM(invalid) AS BIGINT) AS invalid \
         FROM {table} WHERE tenant_id = $1 AND bucket >= $2 AND bucket < $3"
    );
    let mut next = 4;
    if filter.key_id.is_some() {
        sql.push_str(&format!(" AND key_id = ${next}"));
        next += 1;
    }
    if filter.user_id.is_some() {
        sql.push_str(&format!(
            " AND key_id IN (SELECT id FROM api_keys WHERE tenant_id = ${} AND user_id = ${})",
            next,
            next + 1
        ));
    }
    sql.push_str(&format!(" GROUP BY bucket - (bucket % {g})"));
    let mut query = diesel::sql_query(sql)
        .into_boxed::<MultiBackend>()
        .bind::<Text, _>(filter.tenant_id.to_owned())
        .bind::<BigInt, _>(start)
        .bind::<BigInt, _>(end);
    if let Some(key_id) = filter.key_id {
        query = query.bind::<Text, _>(key_id.to_owned());
    }
    if let Some(user_id) = filter.user_id {
        query = query
            .bind::<Text, _>(filter.tenant_id.to_owned())
            .bind::<Text, _>(user_id.to_owned());
    }
    Ok(query.load(conn)?)
}

/// What one run of [`roll_up`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RollupReport {
    /// Whether this instance got the job (another one may hold it).
    pub claimed: bool,
    /// Hour and day buckets written.
    pub rolled: usize,
    /// Buckets deleted past their retention.
    pub pruned: usize,
}

/// Rolls minutes up into hours and hours into days, and prunes each table
/// past its retention, as of `now`. Safe to run from several instances at
/// once: one claims the job, and what it writes is recomputed, not added.
pub fn roll_up(conn: &mut DbConnection, now: DateTime<Utc>) -> Result<RollupReport, Error> {
    let now_s = now.timestamp();
    let claimed = diesel::update(
        usage_rollups::table
            .filter(usage_rollups::period.eq("hour"))
            .filter(usage_rollups::claimed_until.le(now_s)),
    )
    .set(usage_rollups::claimed_until.eq(now_s + CLAIM_SECS))
    .execute(conn)?;
    if claimed == 0 {
        return Ok(RollupReport::default());
    }
    let done = roll_up_claimed(conn, now_s);
    let released = diesel::update(usage_rollups::table.filter(usage_rollups::period.eq("hour")))
        .set(usage_rollups::claimed_until.eq(0i64))
        .execute(conn);
    let report = done?;
    released?;
    Ok(report)
}

fn roll_up_claimed(conn: &mut DbConnection, now_s: i64) -> Result<RollupReport, Error> {
    let mut report = RollupReport {
        claimed: true,
        ..RollupReport::default()
    };
    let (hours_done, days_done) = watermarks(conn)?;
    let hours_upto = (now_s - SETTLE_SECS).div_euclid(HOUR) * HOUR;
    report.rolled += recompute(
        conn,
        "usage_minutes",
        "usage_hours",
        HOUR,
        (hours_done - HOUR).max(0),
        hours_upto,
        "hour",
    )?;
    let hours_done = hours_done.max(hours_upto);
    let days_upto = hours_done.div_euclid(DAY) * DAY;
    report.rolled += recompute(
        conn,
        "usage_hours",
        "usage_days",
        DAY,
        (days_done - DAY).max(0),
        days_upto,
        "day",
    )?;
    let days_done = days_done.max(days_upto);
    let minute_now = now_s.div_euclid(MINUTE) * MINUTE;
    report.pruned += prune(
        conn,
        "usage_minutes",
        hours_done.min(minute_now - KEEP_MINUTES),
    )?;
    let hour_now = now_s.div_euclid(HOUR) * HOUR;
    report.pruned += prune(conn, "usage_hours", days_done.min(hour_now - KEEP_HOURS))?;
    let day_now = now_s.div_euclid(DAY) * DAY;
    report.pruned += prune(conn, "usage_days", day_now - KEEP_DAYS)?;
    Ok(report)
}

/// Sets the `target` buckets (of `size` seconds) in `[start, end)` to the
/// sums of their `source` rows, and moves `period`'s watermark to `end`.
fn recompute(
    conn: &mut DbConnection,
    source: &'static str,
    target: &'static str,
    size: i64,
    start: i64,
    end: i64,
    period: &'static str,
) -> Result<usize, Error> {
    if start >= end {
        return Ok(0);
    }
    let sql = format!(
        "INSERT INTO {target} \
         (tenant_id, key_id, bucket, valid, forbidden, rate_limited, usage_exceeded, invalid) \
         SELECT tenant_id, key_id, bucket - (bucket % {size}), \
         CAST(SUM(valid) AS BIGINT), CAST(SUM(forbidden) AS BIGINT), \
         CAST(SUM(rate_limited) AS BIGINT), CAST(SUM(usage_exceeded) AS BIGINT), \
         CAST(SUM(invalid) AS BIGINT) \
         FROM {source} WHERE bucket >= $1 AND bucket < $2 \
         GROUP BY tenant_id, key_id, bucket - (bucket % {size}) \
         ON CONFLICT (tenant_id, key_id, bucket) DO UPDATE SET \
         valid = excluded.valid, forbidden = excluded.forbidden, \
         rate_limited = excluded.rate_limited, usage_exceeded = excluded.usage_exceeded, \
         invalid = excluded.invalid"
    );
    crate::db::write_transaction(conn, |conn| {
        let rows = diesel::sql_query(sql)
            .into_boxed::<MultiBackend>()
            .bind::<BigInt, _>(start)
            .bind::<BigInt, _>(end)
            .execute(conn)?;
        diesel::update(
            usage_rollups::table
                .filter(usage_rollups::period.eq(period))
                .filter(usage_rollups::done_until.lt(end)),
        )
        .set(usage_rollups::done_until.eq(end))
        .execute(conn)?;
        Ok(rows)
    })
}

/// Deletes `table`'s buckets before `before`.
fn prune(conn: &mut DbConnection, table: &'static str, before: i64) -> Result<usize, Error> {
    let sql = format!("DELETE FROM {table} WHERE bucket < $1");
    Ok(diesel::sql_query(sql)
        .into_boxed::<MultiBackend>()
        .bind::<BigInt, _>(before)
        .execute(conn)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn a_tally_merges_threads_and_minutes() {
        let t0 = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 30).unwrap();
        let tally = Tally::new(true);
        tally.record("t", "k", Outcome::Valid, t0);
        tally.record("t", "k", Outcome::Valid, t0 + TimeDelta::seconds(10));
        tally.record("t", "k", Outcome::Invalid, t0 + TimeDelta::seconds(40));
        std::thread::scope(|s| {
            s.spawn(|| tally.record("t", "k", Outcome::Forbidden, t0));
        });
        let rows = tally.drain();
        let minute = t0.timestamp() - 30;
        let first = rows[&("t".to_owned(), "k".to_owned(), minute)];
        assert_eq!((first.valid, first.forbidden), (2, 1));
        let second = rows[&("t".to_owned(), "k".to_owned(), minute + 60)];
        assert_eq!(second.invalid, 1);
        assert!(tally.drain().is_empty());
        let off = Tally::new(false);
        off.record("t", "k", Outcome::Valid, t0);
        assert!(off.drain().is_empty());
    }

    #[test]
    fn a_span_is_rounded_down_and_bounded() {
        let now = Utc.with_ymd_and_hms(2026, 1, 2, 10, 30, 0).unwrap();
        let (g, from, to) = UsageQuery::default().span(now).unwrap();
        assert_eq!(g, Granularity::Hour);
        assert_eq!(to, Utc.with_ymd_and_hms(2026, 1, 2, 11, 0, 0).unwrap());
        assert_eq!(from, Utc.with_ymd_and_hms(2026, 1, 1, 11, 0, 0).unwrap());
        let query = UsageQuery {
            granularity: Some(Granularity::Minute),
            from: Some(now - TimeDelta::hours(48)),
            to: Some(now),
            ..Default::default()
        };
        assert!(query.span(now).is_ok());
        let query = UsageQuery {
            from: Some(now - TimeDelta::hours(49)),
            ..query
        };
        assert!(matches!(query.span(now), Err(Error::Invalid(_))));
        let query = UsageQuery {
            from: Some(now + TimeDelta::seconds(10)),
            to: Some(now + TimeDelta::seconds(50)),
            ..Default::default()
        };
        assert!(matches!(query.span(now), Err(Error::Invalid(_))));
    }
}
