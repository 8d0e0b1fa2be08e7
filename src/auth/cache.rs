//! A short-lived cache of successful authentications, so the hot path does not
//! look up the tenant and the key on every request.
//!
//! Correctness rules, each tested:
//! - An entry lives at most [`TTL`], so a change made by another process (the
//!   CLI, another instance) is honoured within a second.
//! - Expiry and a scheduled revocation (a rotation's grace window) are
//!   re-checked against the clock on every hit.
//! - Every successful write request handled by this instance clears the cache
//!   (`api::context`), so its own revocations and deactivations take effect on
//!   the very next request.
//! - Failures are never cached: a key the CLI has just made works at once.

use std::collections::HashMap;
use std::sync::RwLock;

use chrono::{DateTime, TimeDelta, Utc};

use super::Caller;
use crate::error::Error;

/// How long an authentication is trusted without asking the database again.
pub const TTL: TimeDelta = TimeDelta::seconds(1);
/// Past this many entries, expired ones are swept before inserting.
const SWEEP_ABOVE: usize = 50_000;

/// A successful authentication and what must be re-checked on each use (the
/// caller's `key_expires_at`, and `revoked_at`).
#[derive(Debug, Clone)]
pub struct Authenticated {
    pub caller: Caller,
    pub revoked_at: Option<DateTime<Utc>>,
}

impl Authenticated {
    /// The caller, if the key is still valid at `now`.
    pub fn at(&self, now: DateTime<Utc>) -> Result<Caller, Error> {
        if self.revoked_at.is_some_and(|at| at <= now) {
            return Err(Error::KeyInvalid);
        }
        if now >= self.caller.key_expires_at {
            return Err(Error::KeyExpired);
        }
        Ok(self.caller.clone())
    }
}

#[derive(Debug)]
struct Entry {
    checked_at: DateTime<Utc>,
    authenticated: Authenticated,
}

/// Tenant name -> secret hash (never the secret) -> entry.
#[derive(Debug, Default)]
pub struct AuthCache {
    entries: RwLock<Entries>,
}

#[derive(Debug, Default)]
struct Entries {
    by_tenant: HashMap<String, HashMap<String, Entry>>,
    /// Bumped by every clear. A lookup that began before a clear must not
    /// insert what it read: it may predate the write that caused the clear.
    generation: u64,
}

impl AuthCache {
    /// The cached authentication of `hash` in `tenant`, if fresh at `now`.
    pub fn get(&self, tenant: &str, hash: &str, now: DateTime<Utc>) -> Option<Authenticated> {
        let entries = self.entries.read().unwrap_or_else(|e| e.into_inner());
        let entry = entries.by_tenant.get(tenant)?.get(hash)?;
        fresh(entry.checked_at, now).then(|| entry.authenticated.clone())
    }

    /// Take this before reading the database; pass it to [`AuthCache::insert`].
    pub fn generation(&self) -> u64 {
        self.entries
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .generation
    }

    /// Caches what was read since `generation`, unless the cache was cleared meanwhile.
    pub fn insert(
        &self,
        tenant: &str,
        hash: &str,
        authenticated: Authenticated,
        now: DateTime<Utc>,
        generation: u64,
    ) {
        let mut entries = self.entries.write().unwrap_or_else(|e| e.into_inner());
        if entries.generation != generation {
            return;
        }
        if entries.by_tenant.values().map(HashMap::len).sum::<usize>() > SWEEP_ABOVE {
            for keys in entries.by_tenant.values_mut() {
                keys.retain(|_, entry| fresh(entry.checked_at, now));
            }
            entries.by_tenant.retain(|_, keys| !keys.is_empty());
        }
        let entry = Entry {
            checked_at: now,
            authenticated,
        };
        entries
            .by_tenant
            .entry(tenant.to_owned())
            .or_default()
            .insert(hash.to_owned(), entry);
    }

    /// Forgets every entry; called after each successful write.
    pub fn clear(&self) {
        let mut entries = self.entries.write().unwrap_or_else(|e| e.into_inner());
        entries.by_tenant.clear();
        entries.generation = entries.generation.wrapping_add(1);
    }
}

fn fresh(checked_at: DateTime<Utc>, now: DateTime<Utc>) -> bool {
    now >= checked_at && now - checked_at < TTL
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Origin;
    use crate::tenants::Tenant;
    use chrono::TimeZone;

    fn authenticated(
        expires_at: DateTime<Utc>,
        revoked_at: Option<DateTime<Utc>>,
    ) -> Authenticated {
        let tenant = Tenant {
            id: "t".into(),
            name: "acme".into(),
            max_key_lifetime_days: 365,
        };
        let caller = Caller {
            tenant,
            user_id: "u".into(),
            roles: vec![],
            key_id: "k".into(),
            key_name: "key".into(),
            key_expires_at: expires_at,
            key_meta: Default::default(),
            scopes: vec![],
            origin: Origin::default(),
        };
        Authenticated { caller, revoked_at }
    }

    #[test]
    fn entries_live_one_second_and_recheck_the_key() {
        let t0 = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let cache = AuthCache::default();
        let grace_ends = t0 + TimeDelta::milliseconds(500);
        cache.insert(
            "acme",
            "h",
            authenticated(t0 + TimeDelta::days(1), Some(grace_ends)),
            t0,
            cache.generation(),
        );
        assert!(cache.get("acme", "h", t0).is_some_and(|a| a.at(t0).is_ok()));
        assert!(cache.get("beta", "h", t0).is_none());
        let hit = cache.get("acme", "h", grace_ends).unwrap();
        assert!(matches!(hit.at(grace_ends), Err(Error::KeyInvalid)));
        assert!(cache.get("acme", "h", t0 + TTL).is_none());
        assert!(cache.get("acme", "h", t0 - TimeDelta::seconds(1)).is_none());
    }

    #[test]
    fn a_lookup_that_straddles_a_clear_is_not_cached() {
        let t0 = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let cache = AuthCache::default();
        let before = cache.generation();
        cache.clear();
        cache.insert(
            "acme",
            "h",
            authenticated(t0 + TimeDelta::days(1), None),
            t0,
            before,
        );
        assert!(cache.get("acme", "h", t0).is_none());
        cache.insert(
            "acme",
            "h",
            authenticated(t0 + TimeDelta::days(1), None),
            t0,
            cache.generation(),
        );
        assert!(cache.get("acme", "h", t0).is_some());
    }
}
