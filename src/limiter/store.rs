//! The counters' truth, in the database keyward already uses: rate-limit
//! windows and credit balances. Every reservation is one statement that
//! reads and changes its row under the row's lock (an upsert on PostgreSQL
//! and Citus, where the row lives in the tenant's shard; SQLite has one
//! writer), so what instances hand out can never exceed a limit or a balance.
//!
//! A reservation hands out `needed` or more, up to `want`, and at most a
//! fraction of what is left ([`WINDOW_SHARE`], [`CREDIT_SHARE`]): leases
//! shrink as a limit runs out. It hands out nothing when less than `needed`
//! is left: a refused verification takes nothing.

use std::collections::HashMap;

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};

use crate::db::{DbConnection, MultiBackend};
use crate::error::Error;
use crate::limits::{Credits, RateLimit};
use crate::schema::credit_balances;

/// A window's reservation takes at most a quarter of what is left of it.
pub const WINDOW_SHARE: i64 = 4;
/// A balance's reservation takes at most a twentieth of what is left of it:
/// what an instance killed while holding it loses (see the README).
pub const CREDIT_SHARE: i64 = 20;

/// A balance as stored: `remaining` as of `refilled_at` (Unix ms).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Balance {
    pub remaining: i64,
    pub refilled_at: i64,
}

/// What a reservation handed out, and what its row says after it:
/// `level` is a window's `used` or a balance's `remaining`; `period` the
/// balance's `refilled_at` (a window's start for windows).
#[derive(Debug, Clone, Copy, PartialEq, Eq, QueryableByName)]
pub struct Grant {
    #[diesel(sql_type = BigInt)]
    pub granted: i64,
    #[diesel(sql_type = BigInt)]
    pub level: i64,
    #[diesel(sql_type = BigInt)]
    pub period: i64,
}

/// What [`grant`] computes in SQL, for a row that does not exist yet.
fn grant(available: i64, needed: i64, want: i64, share: i64) -> i64 {
    let want = want.max(needed);
    if available < needed {
        0
    } else {
        (available / share).clamp(needed, want)
    }
}

/// [`grant`] in SQL, over `available` (an expression), with `needed` and
/// `want` the markers given.
fn grant_sql(available: &str, needed: &str, want: &str, share: i64) -> String {
    format!(
        "CASE WHEN {available} < {needed} THEN 0 \
         WHEN ({available}) / {share} <= {needed} THEN {needed} \
         WHEN ({available}) / {share} < {want} THEN ({available}) / {share} \
         ELSE {want} END"
    )
}

/// Reserves from `limit`'s window `[start, end)` of `owner`.
pub fn reserve_window(
    conn: &mut DbConnection,
    tenant_id: &str,
    owner: &str,
    limit: &RateLimit,
    (start, end): (i64, i64),
    needed: i64,
    want: i64,
) -> Result<Grant, Error> {
    let limit_n = limit.limit as i64;
    let first = grant(limit_n, needed, want, WINDOW_SHARE);
    // Markers appear in the text in their order: SQLite numbers `$n` by
    // first appearance.
    let g = grant_sql("$8 - rate_windows.used", "$9", "$10", WINDOW_SHARE);
    let sql = format!(
        "INSERT INTO rate_windows \
         (tenant_id, owner_id, name, duration_ms, window_start, window_end, used, granted) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $7) \
         ON CONFLICT (tenant_id, owner_id, name, duration_ms, window_start) DO UPDATE SET \
         granted = {g}, used = rate_windows.used + {g} \
         RETURNING granted, used AS level, window_start AS period"
    );
    Ok(diesel::sql_query(sql)
        .into_boxed::<MultiBackend>()
        .bind::<Text, _>(tenant_id)
        .bind::<Text, _>(owner)
        .bind::<Text, _>(&limit.name)
        .bind::<BigInt, _>(limit.duration_ms as i64)
        .bind::<BigInt, _>(start)
        .bind::<BigInt, _>(end)
        .bind::<BigInt, _>(first)
        .bind::<BigInt, _>(limit_n)
        .bind::<BigInt, _>(needed)
        .bind::<BigInt, _>(want.max(needed))
        .get_result(conn)?)
}

/// Reserves from `owner`'s balance, refilling it first when a refill is due
/// at `now_ms`. A balance that does not exist hands out nothing.
pub fn reserve_credits(
    conn: &mut DbConnection,
    tenant_id: &str,
    owner: &str,
    credits: &Credits,
    now_ms: i64,
    needed: i64,
    want: i64,
) -> Result<CreditGrant, Error> {
    let amount = credits.refill.map_or(0, |r| r.amount as i64);
    let balance = "(CASE WHEN refilled_at < $1 THEN $2 ELSE remaining END)";
    let g = grant_sql(balance, "$3", "$4", CREDIT_SHARE);
    let sql = format!(
        "UPDATE credit_balances SET granted = {g}, remaining = {balance} - {g}, \
         base = CASE WHEN refilled_at < $1 THEN $2 ELSE base END, \
         refilled_at = CASE WHEN refilled_at < $1 THEN $1 ELSE refilled_at END \
         WHERE tenant_id = $5 AND owner_id = $6 \
         RETURNING granted, remaining AS level, refilled_at AS period, base, \
         CASE WHEN low_noted = refilled_at THEN 1 ELSE 0 END AS noted"
    );
    let grant: Option<CreditGrant> = diesel::sql_query(sql)
        .into_boxed::<MultiBackend>()
        .bind::<BigInt, _>(credits.period(now_ms))
        .bind::<BigInt, _>(amount)
        .bind::<BigInt, _>(needed)
        .bind::<BigInt, _>(want.max(needed))
        .bind::<Text, _>(tenant_id)
        .bind::<Text, _>(owner)
        .get_result(conn)
        .optional()?;
    Ok(grant.unwrap_or(CreditGrant {
        grant: Grant {
            granted: 0,
            level: 0,
            period: credits.period(now_ms),
        },
        base: 0,
        noted: 1,
    }))
}

/// A credit reservation: the [`Grant`], what the balance was last set or
/// refilled to, and whether this period's low-credits notice went out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, QueryableByName)]
pub struct CreditGrant {
    #[diesel(embed)]
    pub grant: Grant,
    #[diesel(sql_type = BigInt)]
    pub base: i64,
    #[diesel(sql_type = diesel::sql_types::Integer)]
    pub noted: i32,
}

impl CreditGrant {
    /// Whether the balance has fallen to a tenth of its base or less, with
    /// no notice sent yet for this period (API.md section 11's `key.credits_low`).
    pub fn low(&self) -> bool {
        self.noted == 0 && self.base > 0 && self.grant.level.saturating_mul(10) <= self.base
    }
}

/// Claims the low-credits notice of `owner`'s period `refilled_at`: true for
/// the one caller (of every instance) that claims it.
pub fn claim_low_notice(
    conn: &mut DbConnection,
    tenant_id: &str,
    owner: &str,
    refilled_at: i64,
) -> Result<bool, Error> {
    let claimed = diesel::sql_query(
        "UPDATE credit_balances SET low_noted = refilled_at \
         WHERE tenant_id = $1 AND owner_id = $2 AND refilled_at = $3 \
         AND (low_noted IS NULL OR low_noted <> refilled_at)",
    )
    .into_boxed::<MultiBackend>()
    .bind::<Text, _>(tenant_id)
    .bind::<Text, _>(owner)
    .bind::<BigInt, _>(refilled_at)
    .execute(conn)?;
    Ok(claimed == 1)
}

/// Gives back what an instance held of a window and did not use (if the
/// window still exists).
pub fn give_back_window(
    conn: &mut DbConnection,
    tenant_id: &str,
    owner: &str,
    limit: &RateLimit,
    window_start: i64,
    held: i64,
) -> Result<(), Error> {
    diesel::sql_query(
        "UPDATE rate_windows SET used = used - $1 \
         WHERE tenant_id = $2 AND owner_id = $3 AND name = $4 AND duration_ms = $5 \
         AND window_start = $6 AND used >= $1",
    )
    .into_boxed::<MultiBackend>()
    .bind::<BigInt, _>(held)
    .bind::<Text, _>(tenant_id)
    .bind::<Text, _>(owner)
    .bind::<Text, _>(&limit.name)
    .bind::<BigInt, _>(limit.duration_ms as i64)
    .bind::<BigInt, _>(window_start)
    .execute(conn)?;
    Ok(())
}

/// Gives back what an instance held of a balance and did not use, unless
/// the balance was refilled or set anew since (`refilled_at` moved).
pub fn give_back_credits(
    conn: &mut DbConnection,
    tenant_id: &str,
    owner: &str,
    refilled_at: i64,
    held: i64,
) -> Result<(), Error> {
    diesel::sql_query(
        "UPDATE credit_balances SET remaining = remaining + $1 \
         WHERE tenant_id = $2 AND owner_id = $3 AND refilled_at = $4",
    )
    .into_boxed::<MultiBackend>()
    .bind::<BigInt, _>(held)
    .bind::<Text, _>(tenant_id)
    .bind::<Text, _>(owner)
    .bind::<BigInt, _>(refilled_at)
    .execute(conn)?;
    Ok(())
}

/// Sets `owner`'s balance to `remaining` as of `now_ms` (credits set anew).
pub fn set_balance(
    conn: &mut DbConnection,
    tenant_id: &str,
    owner: &str,
    remaining: u64,
    now_ms: i64,
) -> Result<(), Error> {
    diesel::sql_query(
        "INSERT INTO credit_balances \
         (tenant_id, owner_id, remaining, refilled_at, granted, base, low_noted) \
         VALUES ($1, $2, $3, $4, 0, $3, NULL) \
         ON CONFLICT (tenant_id, owner_id) DO UPDATE SET \
         remaining = excluded.remaining, refilled_at = excluded.refilled_at, granted = 0, \
         base = excluded.base, low_noted = NULL",
    )
    .into_boxed::<MultiBackend>()
    .bind::<Text, _>(tenant_id)
    .bind::<Text, _>(owner)
    .bind::<BigInt, _>(remaining as i64)
    .bind::<BigInt, _>(now_ms)
    .execute(conn)?;
    Ok(())
}

/// The stored balances of `owners` (of one tenant).
pub fn balances(
    conn: &mut DbConnection,
    tenant_id: &str,
    owners: &[&str],
) -> Result<HashMap<String, Balance>, Error> {
    let rows: Vec<(String, i64, i64)> = credit_balances::table
        .filter(credit_balances::tenant_id.eq(tenant_id))
        .filter(credit_balances::owner_id.eq_any(owners))
        .select((
            credit_balances::owner_id,
            credit_balances::remaining,
            credit_balances::refilled_at,
        ))
        .load(conn)?;
    Ok(rows
        .into_iter()
        .map(|(owner, remaining, refilled_at)| {
            (
                owner,
                Balance {
                    remaining,
                    refilled_at,
                },
            )
        })
        .collect())
}

/// Fills in the balance as of `now_ms` (refills applied) of each of `items`
/// that has credits (`credits_of`: its balance's owner and configuration),
/// with `set`: one query, none when no item has credits.
pub fn fill_balances<T>(
    conn: &mut DbConnection,
    tenant_id: &str,
    items: &mut [T],
    now_ms: i64,
    credits_of: impl Fn(&T) -> Option<(&str, Credits)>,
    set: impl Fn(&mut T, i64),
) -> Result<(), Error> {
    let owners: Vec<String> = items
        .iter()
        .filter_map(|item| credits_of(item).map(|(owner, _)| owner.to_owned()))
        .collect();
    if owners.is_empty() {
        return Ok(());
    }
    let owners: Vec<&str> = owners.iter().map(String::as_str).collect();
    let stored = balances(conn, tenant_id, &owners)?;
    for item in items.iter_mut() {
        let Some(balance) = credits_of(item).map(|(owner, credits)| {
            stored
                .get(owner)
                .map_or(0, |b| credits.balance(b.remaining, b.refilled_at, now_ms))
        }) else {
            continue;
        };
        set(item, balance);
    }
    Ok(())
}

/// Deletes windows that ended before `before_ms`; returns how many.
pub fn prune_windows(conn: &mut DbConnection, before_ms: i64) -> Result<usize, Error> {
    use crate::schema::rate_windows;
    Ok(
        diesel::delete(rate_windows::table.filter(rate_windows::window_end.lt(before_ms)))
            .execute(conn)?,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_grant_shrinks_with_what_is_left() {
        assert_eq!(grant(1000, 1, 100, 4), 100);
        assert_eq!(grant(100, 1, 100, 4), 25);
        assert_eq!(grant(3, 1, 100, 4), 1);
        assert_eq!(grant(3, 3, 100, 4), 3);
        assert_eq!(grant(2, 3, 100, 4), 0);
        assert_eq!(grant(0, 0, 0, 4), 0);
        assert_eq!(grant(1000, 5, 1, 4), 5);
    }
}
