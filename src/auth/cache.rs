//! A cache of successful authentications, so the hot path does not look up
//! the tenant and the key on every request.
//!
//! Correctness rules, each tested:
//! - It answers only while the change signal vouches for the entry
//!   (`crate::changes`): a change made by another process (the CLI, another
//!   instance, SQL) drops the tenant's entries within the signal's bound, and
//!   while polls lag or fail an entry answers only for as long as a poll's
//!   answer would; [`TTL`] is only a backstop.
//! - Expiry and a scheduled revocation (a rotation's grace window) are
//!   re-checked by the core on every hit.
//! - Every successful write request handled by this instance clears the cache
//!   (`api::context`), so its own revocations and deactivations take effect on
//!   the very next request.
//! - Failures are never cached: a key the CLI has just made works at once.
//! - A refusal read from the database is final for what was read before it:
//!   it drops the key's entry, and an acceptance read before the refusal (a
//!   slower read in flight) is neither cached nor served ([`AuthCache::refuse`],
//!   [`AuthCache::refused_since`]). An instance that refused a key never
//!   accepts it again on an older reading.
//! - At most [`CAPACITY`] entries: past it, expired ones are swept, and if
//!   that is not enough, new ones are not cached.

use std::sync::{Arc, Mutex, RwLock};

use chrono::{DateTime, TimeDelta, Utc};
use foldhash::HashMap;

use crate::access::Caller;
use crate::error::Error;
use crate::keys::secret::SecretDigest;
use crate::keys::Credential;

/// The longest an entry lives even if the change signal never mentions it.
pub const TTL: TimeDelta = TimeDelta::minutes(10);
/// The most entries the cache holds (a few hundred bytes each).
pub const CAPACITY: usize = 100_000;

/// A successful authentication: the core's answer, and the caller it made.
#[derive(Debug, Clone)]
pub struct Authenticated {
    pub caller: Caller,
    pub credential: Credential,
}

impl Authenticated {
    /// The caller, if the key still authenticates at `now` (expiry and a
    /// scheduled revocation are the core's to judge, on every use).
    pub fn at(&self, now: DateTime<Utc>) -> Result<Caller, Error> {
        self.credential.check(now)?;
        Ok(self.caller.clone())
    }
}

#[derive(Debug)]
struct Entry {
    checked_at: DateTime<Utc>,
    /// The change watch's mark taken before the read (`ChangeWatch::mark`).
    read_mark: u64,
    /// Shared: a hit costs a reference count, not a copy of the key.
    authenticated: Arc<Authenticated>,
}

/// Tenant name -> the secret's digest (never the secret) -> entry.
#[derive(Debug)]
pub struct AuthCache {
    entries: RwLock<Entries>,
    capacity: usize,
    /// (tenant, digest) -> the read mark of the newest refusal read for it;
    /// see [`AuthCache::refuse`].
    refusals: Mutex<HashMap<(String, SecretDigest), u64>>,
}

/// How long a refusal is remembered against reads in flight: longer than
/// any request may take.
const REFUSAL_MEMORY_MICROS: u64 = 60_000_000;

impl Default for AuthCache {
    fn default() -> Self {
        Self::with_capacity(CAPACITY)
    }
}

#[derive(Debug, Default)]
struct Entries {
    by_tenant: HashMap<String, HashMap<SecretDigest, Entry>>,
    /// Bumped by every clear. A lookup that began before a clear must not
    /// insert what it read: it may predate the write that caused the clear.
    generation: u64,
}

impl AuthCache {
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            entries: RwLock::default(),
            capacity,
            refusals: Mutex::default(),
        }
    }

    /// The database refused `digest` in `tenant` on a read that began at
    /// `read_mark`: forgets its entry (and, like a clear, keeps reads that
    /// began earlier from caching theirs), and remembers the refusal so that
    /// such a read is not served either ([`AuthCache::refused_since`]).
    pub fn refuse(&self, tenant: &str, digest: &SecretDigest, read_mark: u64) {
        {
            let mut entries = self.entries.write().unwrap_or_else(|e| e.into_inner());
            if let Some(keys) = entries.by_tenant.get_mut(tenant) {
                keys.remove(digest);
            }
            entries.generation = entries.generation.wrapping_add(1);
        }
        let mut refusals = self.refusals.lock().unwrap_or_else(|e| e.into_inner());
        if refusals.len() >= self.capacity {
            refusals.retain(|_, mark| read_mark.saturating_sub(*mark) < REFUSAL_MEMORY_MICROS);
        }
        let newest = refusals.entry((tenant.to_owned(), *digest)).or_default();
        *newest = (*newest).max(read_mark);
    }

    /// Whether a refusal of `digest` in `tenant` was read after `read_mark`:
    /// an acceptance read at `read_mark` is then older than an answer this
    /// instance already gave, and must be read again.
    pub fn refused_since(&self, tenant: &str, digest: &SecretDigest, read_mark: u64) -> bool {
        let refusals = self.refusals.lock().unwrap_or_else(|e| e.into_inner());
        !refusals.is_empty()
            && refusals
                .get(&(tenant.to_owned(), *digest))
                .is_some_and(|&refused| refused > read_mark)
    }

    /// How many entries are held.
    pub fn len(&self) -> usize {
        self.entries.read().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The cached authentication of `digest` in `tenant`, if fresh at `now`
    /// and `vouched` for: given the entry's read mark, whether the change
    /// signal still trusts it (`ChangeWatch::vouches_for`).
    pub fn get(
        &self,
        tenant: &str,
        digest: &SecretDigest,
        now: DateTime<Utc>,
        vouched: impl FnOnce(u64) -> bool,
    ) -> Option<Arc<Authenticated>> {
        let entries = self.entries.read().unwrap_or_else(|e| e.into_inner());
        let entry = entries.by_tenant.get(tenant)?.get(digest)?;
        (fresh(entry.checked_at, now) && vouched(entry.read_mark))
            .then(|| Arc::clone(&entry.authenticated))
    }

    /// Take this before reading the database; pass it to [`AuthCache::insert`].
    pub fn generation(&self) -> u64 {
        self.entries
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .generation
    }

    /// Caches what was read since `generation`, unless the cache was cleared
    /// meanwhile. `read_mark` is the change watch's mark (`ChangeWatch::mark`);
    /// both are taken before the read.
    pub fn insert(
        &self,
        tenant: &str,
        digest: &SecretDigest,
        authenticated: Authenticated,
        now: DateTime<Utc>,
        generation: u64,
        read_mark: u64,
    ) {
        let mut entries = self.entries.write().unwrap_or_else(|e| e.into_inner());
        if entries.generation != generation {
            return;
        }
        if entries.len() >= self.capacity {
            for keys in entries.by_tenant.values_mut() {
                keys.retain(|_, entry| fresh(entry.checked_at, now));
            }
            entries.by_tenant.retain(|_, keys| !keys.is_empty());
            if entries.len() >= self.capacity {
                return;
            }
        }
        let entry = Entry {
            checked_at: now,
            read_mark,
            authenticated: Arc::new(authenticated),
        };
        entries
            .by_tenant
            .entry(tenant.to_owned())
            .or_default()
            .insert(*digest, entry);
    }

    /// Forgets every entry; called after each successful write.
    pub fn clear(&self) {
        let mut entries = self.entries.write().unwrap_or_else(|e| e.into_inner());
        entries.by_tenant.clear();
        entries.generation = entries.generation.wrapping_add(1);
    }

    /// Forgets the entries of the tenant `tenant_id`; the change signal says its data changed.
    pub fn forget_tenant(&self, tenant_id: &str) {
        let mut entries = self.entries.write().unwrap_or_else(|e| e.into_inner());
        entries.by_tenant.retain(|_, keys| {
            keys.values()
                .next()
                .is_none_or(|entry| entry.authenticated.caller.tenant.id != tenant_id)
        });
        entries.generation = entries.generation.wrapping_add(1);
    }
}

impl Entries {
    fn len(&self) -> usize {
        self.by_tenant.values().map(HashMap::len).sum()
    }
}

fn fresh(checked_at: DateTime<Utc>, now: DateTime<Utc>) -> bool {
    now >= checked_at && now - checked_at < TTL
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::{Identity, Origin};
    use crate::keys::ApiKey;
    use crate::tenants::Tenant;
    use chrono::TimeZone;

    fn digest(secret: &str) -> SecretDigest {
        SecretDigest::of(secret)
    }

    fn authenticated(
        expires_at: DateTime<Utc>,
        revoked_at: Option<DateTime<Utc>>,
    ) -> Authenticated {
        authenticated_in("t", expires_at, revoked_at)
    }

    fn authenticated_in(
        tenant_id: &str,
        expires_at: DateTime<Utc>,
        revoked_at: Option<DateTime<Utc>>,
    ) -> Authenticated {
        let tenant = Tenant {
            id: tenant_id.into(),
            name: "acme".into(),
            max_key_lifetime_days: 365,
        };
        let caller = Caller::new(
            Identity {
                tenant,
                user_id: "u".into(),
                roles: vec![],
                key_id: "k".into(),
                key_name: "key".into(),
                key_expires_at: expires_at,
                key_meta: Default::default(),
                scopes: vec![],
                allowed_ips: Default::default(),
                usage: Default::default(),
            },
            Origin::default(),
        );
        let key = ApiKey {
            id: "k".into(),
            user_id: "u".into(),
            name: "key".into(),
            token_hash: "h".into(),
            scopes: vec![],
            expires_at,
            created_at: expires_at - TimeDelta::days(30),
            updated_at: None,
            revoked_at,
            last_used_at: None,
            meta: Default::default(),
            limits: Default::default(),
            allowed_ips: Default::default(),
            usage_id: "k".into(),
            credits_remaining: None,
        };
        let credential = Credential {
            key,
            roles: vec![],
            user_active: true,
            user_limits: Default::default(),
        };
        Authenticated { caller, credential }
    }

    #[test]
    fn memory_is_bounded_and_a_tenant_can_be_forgotten() {
        let t0 = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let cache = AuthCache::with_capacity(100);
        for i in 0..250 {
            let tenant = if i % 2 == 0 { "acme" } else { "beta" };
            let entry = authenticated_in(tenant, t0 + TimeDelta::days(1), None);
            cache.insert(
                tenant,
                &digest(&format!("h{i}")),
                entry,
                t0,
                cache.generation(),
                1,
            );
        }
        assert_eq!(cache.len(), 100);
        // Expired entries make room.
        let later = t0 + TTL;
        cache.insert(
            "acme",
            &digest("new"),
            authenticated(t0 + TimeDelta::days(1), None),
            later,
            cache.generation(),
            1,
        );
        assert_eq!(cache.len(), 1);
        cache.insert(
            "beta",
            &digest("b"),
            authenticated(t0 + TimeDelta::days(1), None),
            later,
            cache.generation(),
            1,
        );
        cache.forget_tenant("t");
        assert!(cache.is_empty());
    }

    #[test]
    fn entries_live_one_ttl_and_recheck_the_key() {
        let t0 = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let cache = AuthCache::default();
        let grace_ends = t0 + TimeDelta::milliseconds(500);
        cache.insert(
            "acme",
            &digest("h"),
            authenticated(t0 + TimeDelta::days(1), Some(grace_ends)),
            t0,
            cache.generation(),
            1,
        );
        assert!(cache
            .get("acme", &digest("h"), t0, |_| true)
            .is_some_and(|a| a.at(t0).is_ok()));
        assert!(cache.get("beta", &digest("h"), t0, |_| true).is_none());
        let hit = cache
            .get("acme", &digest("h"), grace_ends, |_| true)
            .unwrap();
        assert!(matches!(hit.at(grace_ends), Err(Error::KeyInvalid)));
        assert!(cache
            .get("acme", &digest("h"), t0 + TTL, |_| true)
            .is_none());
        assert!(cache
            .get("acme", &digest("h"), t0 - TimeDelta::seconds(1), |_| true)
            .is_none());
    }

    #[test]
    fn a_lookup_that_straddles_a_clear_is_not_cached() {
        let t0 = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let cache = AuthCache::default();
        let before = cache.generation();
        cache.clear();
        cache.insert(
            "acme",
            &digest("h"),
            authenticated(t0 + TimeDelta::days(1), None),
            t0,
            before,
            1,
        );
        assert!(cache.get("acme", &digest("h"), t0, |_| true).is_none());
        cache.insert(
            "acme",
            &digest("h"),
            authenticated(t0 + TimeDelta::days(1), None),
            t0,
            cache.generation(),
            1,
        );
        assert!(cache.get("acme", &digest("h"), t0, |_| true).is_some());
    }

    #[test]
    fn a_refusal_drops_the_entry_and_outranks_older_reads() {
        let t0 = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let cache = AuthCache::default();
        let entry = || authenticated(t0 + TimeDelta::days(1), None);
        cache.insert("acme", &digest("h"), entry(), t0, cache.generation(), 5);
        let in_flight = cache.generation();
        assert!(!cache.refused_since("acme", &digest("h"), 5));
        cache.refuse("acme", &digest("h"), 10);
        assert!(cache.get("acme", &digest("h"), t0, |_| true).is_none());
        assert!(
            cache.refused_since("acme", &digest("h"), 9),
            "a read older than the refusal"
        );
        assert!(
            !cache.refused_since("acme", &digest("h"), 11),
            "a read newer than the refusal"
        );
        assert!(!cache.refused_since("beta", &digest("h"), 9));
        cache.insert("acme", &digest("h"), entry(), t0, in_flight, 9);
        assert!(
            cache.get("acme", &digest("h"), t0, |_| true).is_none(),
            "a read that began before the refusal is not cached"
        );
        cache.insert("acme", &digest("h"), entry(), t0, cache.generation(), 11);
        assert!(cache.get("acme", &digest("h"), t0, |_| true).is_some());
    }

    #[test]
    fn an_entry_answers_only_while_its_read_is_vouched_for() {
        let t0 = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let cache = AuthCache::default();
        let entry = authenticated(t0 + TimeDelta::days(1), None);
        cache.insert("acme", &digest("h"), entry, t0, cache.generation(), 7);
        assert!(cache
            .get("acme", &digest("h"), t0, |read| read == 7)
            .is_some());
        assert!(cache.get("acme", &digest("h"), t0, |_| false).is_none());
    }
}
