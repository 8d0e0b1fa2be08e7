//! The limiter: may this key spend `cost` now? (API.md section 9.)
//!
//! The truth is in the database ([`store`]); each instance holds *leases*:
//! slices of a window or of a balance it reserved there ahead of use, and
//! serves from memory while they last. So the hot path rarely writes, and no
//! instance ever admits what it has not reserved: summed over instances, a
//! window never admits more than its limit and a balance is never spent below
//! zero. A lease is sized by the rate this instance observed (about
//! [`LEASE_MS`] of it; at low rates exactly what a verification needs) and
//! the store hands out at most a share of what is left, so leases shrink as a
//! limit runs out. A lease of a window ends with its window, a lease of a
//! balance at its next refill; what an instance holds and does not use is
//! given back after [`IDLE_MS`] and at shutdown. A killed instance loses what
//! it held: never more than a share of a balance (see the README).
//!
//! One verification asks once, with every counter that applies (the key's
//! and its user's), and gets one answer: either every counter had `cost`
//! and each was spent, or nothing was spent at all.

pub mod store;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::limits::{Control, Credits, RateLimit};

/// A lease covers about this much of the observed rate.
pub const LEASE_MS: i64 = 500;
/// A counter whose verifications queued behind a reservation this recently
/// is reserved ahead; otherwise exactly what each verification needs.
pub const CONTENDED_MS: i64 = 1_000;
/// The largest lease.
pub const MAX_LEASE: i64 = 100_000;
/// What is held and unused for this long is given back.
pub const IDLE_MS: i64 = 1_000;
/// A counter unused for this long is forgotten.
const FORGET_MS: i64 = 60_000;

/// Whose counter: the key's (its usage id) or its user's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    Key,
    User,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Key => "key",
            Scope::User => "user",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum What {
    Window(RateLimit),
    Credits(Credits),
}

/// One counter: a rate limit or a balance of one owner in one tenant. A
/// change to the limit makes another counter (the old one's lease is given
/// back when idle).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CounterKey {
    tenant_id: String,
    owner: String,
    what: What,
}

#[derive(Debug, Clone)]
struct Counter {
    key: Arc<CounterKey>,
    scope: Scope,
    /// Whom a webhook about it names: the key, or the user.
    subject: Arc<Subject>,
    /// A rate limit's name, shared by every answer that shows it.
    name: Arc<str>,
}

/// The key and user a counter belongs to, as webhooks name them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject {
    pub key_id: String,
    pub user_id: String,
}

impl CounterKey {
    /// The period holding `now_ms`: a window's start, a balance's last refill.
    fn period(&self, now_ms: i64) -> i64 {
        match &self.what {
            What::Window(limit) => limit.window(now_ms).0,
            What::Credits(credits) => credits.period(now_ms),
        }
    }
}

impl Counter {
    fn period(&self, now_ms: i64) -> i64 {
        self.key.period(now_ms)
    }
}

/// Every counter one key's verification must pass, in the order refusals
/// are named: the key's rate limits, its user's, the key's credits, the user's.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    counters: Vec<Counter>,
}

impl Plan {
    pub fn new(tenant_id: &str, control: &Control) -> Self {
        let subject = Arc::new(Subject {
            key_id: control.key_id.clone(),
            user_id: control.user_owner.clone(),
        });
        let counter = |owner: &str, what: What, scope| Counter {
            name: match &what {
                What::Window(limit) => Arc::from(limit.name.as_str()),
                What::Credits(_) => Arc::from(""),
            },
            key: Arc::new(CounterKey {
                tenant_id: tenant_id.to_owned(),
                owner: owner.to_owned(),
                what,
            }),
            scope,
            subject: Arc::clone(&subject),
        };
        let mut counters = Vec::new();
        for (owner, limits, scope) in [
            (&control.key_owner, &control.key, Scope::Key),
            (&control.user_owner, &control.user, Scope::User),
        ] {
            for limit in &limits.ratelimits {
                counters.push(counter(owner, What::Window(limit.clone()), scope));
            }
        }
        for (owner, limits, scope) in [
            (&control.key_owner, &control.key, Scope::Key),
            (&control.user_owner, &control.user, Scope::User),
        ] {
            if let Some(credits) = limits.credits {
                counters.push(counter(owner, What::Credits(credits), scope));
            }
        }
        Self { counters }
    }

    pub fn is_empty(&self) -> bool {
        self.counters.is_empty()
    }
}

/// A rate limit's state after a verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowState {
    pub name: Arc<str>,
    pub scope: Scope,
    pub limit: u64,
    pub remaining: u64,
    /// The window's end, Unix ms.
    pub reset_ms: i64,
    pub duration_ms: u64,
}

/// What a passing verification leaves.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Spent {
    pub ratelimits: Vec<WindowState>,
    pub key_credits: Option<i64>,
    pub user_credits: Option<i64>,
}

impl Spent {
    /// The rate limit with the fewest remaining (the first of equals).
    pub fn tightest(&self) -> Option<&WindowState> {
        self.ratelimits
            .iter()
            .reduce(|a, b| if b.remaining < a.remaining { b } else { a })
    }
}

/// Why a verification was refused: what ran out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exhausted {
    /// A rate limit: its state (0 remaining), the seconds until its window ends.
    Window(WindowState),
    /// Credits: the seconds until the next refill, if one will come.
    Credits { retry_after_secs: Option<u64> },
}

/// What an instance holds of one counter.
#[derive(Debug)]
struct Lease {
    /// The period this lease belongs to; another period's lease is void.
    period: i64,
    /// Whether `level` has been read in this period.
    known: bool,
    held: i64,
    /// The store's `used` (windows) or `remaining` (balances) after this
    /// instance's last reservation.
    level: i64,
    /// The store's period of that reservation (a balance's `refilled_at`).
    store_period: i64,
    /// Spent since `since` (the last reservation): the observed rate.
    spent: i64,
    since_ms: i64,
    last_use_ms: i64,
    /// One reservation at a time per counter.
    gate: Arc<tokio::sync::Mutex<()>>,
    /// When a verification last found the gate taken (queued behind a
    /// reservation): demand outruns a round trip to the database.
    contended_ms: i64,
}

impl Lease {
    fn new(period: i64, now_ms: i64) -> Self {
        Self {
            period,
            known: false,
            held: 0,
            level: 0,
            store_period: period,
            spent: 0,
            since_ms: now_ms,
            last_use_ms: now_ms,
            gate: Arc::default(),
            contended_ms: i64::MIN / 2,
        }
    }

    /// What to ask the store for, beyond `needed`: just `needed` unless
    /// verifications queued behind a reservation within [`CONTENDED_MS`]
    /// (so one client at a time is counted exactly in the database); then
    /// about [`LEASE_MS`] of the rate seen since the last reservation.
    fn want(&self, needed: i64, now_ms: i64) -> i64 {
        if now_ms - self.contended_ms > CONTENDED_MS {
            return needed;
        }
        let elapsed = (now_ms - self.since_ms).max(1);
        let ahead = (self.spent.saturating_mul(LEASE_MS) / elapsed).min(MAX_LEASE);
        if ahead < 2 {
            needed
        } else {
            needed.max(ahead)
        }
    }
}

/// A reservation to make: counter `index` of a plan needs `needed` more.
#[derive(Debug, Clone)]
pub struct Need {
    index: usize,
    key: Arc<CounterKey>,
    scope: Scope,
    subject: Arc<Subject>,
    needed: i64,
    want: i64,
    now_ms: i64,
}

/// What [`Limiter::give_back`] returns to the store.
#[derive(Debug, Clone)]
pub struct Unused {
    key: Arc<CounterKey>,
    store_period: i64,
    held: i64,
}

/// The leases of this instance.
#[derive(Debug, Default)]
pub struct Limiter {
    leases: Mutex<HashMap<Arc<CounterKey>, Lease>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Limiter {
    /// Spends `cost` from every counter of `plan` if each holds it, from
    /// memory; else names the counters that must reserve first.
    pub fn try_spend(&self, plan: &Plan, cost: i64, now_ms: i64) -> Result<Spent, Vec<usize>> {
        spend_locked(&mut lock(&self.leases), plan, cost, now_ms)
    }

    /// The gates of the counters `lacking` names, in the plan's order (a
    /// key's counters come before its user's: one order for every plan).
    pub fn gates(
        &self,
        plan: &Plan,
        lacking: &[usize],
    ) -> Vec<(usize, Arc<tokio::sync::Mutex<()>>)> {
        let leases = lock(&self.leases);
        lacking
            .iter()
            .filter_map(|i| Some((*i, plan.counters.get(*i)?)))
            .filter_map(|(i, c)| leases.get(&*c.key).map(|l| (i, Arc::clone(&l.gate))))
            .collect()
    }

    /// Notes that a verification of counter `index` of `plan` queued behind
    /// a reservation at `now_ms`.
    pub fn queued(&self, plan: &Plan, index: usize, now_ms: i64) {
        let mut leases = lock(&self.leases);
        if let Some(lease) = plan
            .counters
            .get(index)
            .and_then(|c| leases.get_mut(&*c.key))
        {
            lease.contended_ms = now_ms;
        }
    }

    /// The reservations the counters `lacking` need for `cost`.
    pub fn needs(&self, plan: &Plan, lacking: &[usize], cost: i64, now_ms: i64) -> Vec<Need> {
        let leases = lock(&self.leases);
        lacking
            .iter()
            .filter_map(|i| Some((*i, plan.counters.get(*i)?)))
            .map(|(index, counter)| {
                let (held, want) = leases
                    .get(&*counter.key)
                    .filter(|l| l.period == counter.period(now_ms))
                    .map_or((0, cost), |l| {
                        (l.held, l.want((cost - l.held).max(0), now_ms))
                    });
                let needed = (cost - held).max(0);
                Need {
                    index,
                    key: Arc::clone(&counter.key),
                    scope: counter.scope,
                    subject: Arc::clone(&counter.subject),
                    needed,
                    want: want.max(needed),
                    now_ms,
                }
            })
            .collect()
    }

    /// Adds what the store granted and spends `cost` at once (nothing can
    /// take the grants in between). `Err(Some(i))`: counter `i`'s grant fell
    /// short, it ran out; `Err(None)`: another counter was spent meanwhile,
    /// ask again.
    pub fn add_and_spend(
        &self,
        plan: &Plan,
        cost: i64,
        needs: &[Need],
        grants: &[store::Grant],
    ) -> Result<Spent, Option<usize>> {
        let mut leases = lock(&self.leases);
        let mut short = None;
        for (need, grant) in needs.iter().zip(grants) {
            if let Some(lease) = leases.get_mut(&*need.key) {
                if lease.period != need.key.period(need.now_ms) {
                    continue;
                }
                lease.held += grant.granted;
                lease.level = grant.level;
                lease.store_period = grant.period;
                lease.known = true;
                lease.spent = 0;
                lease.since_ms = need.now_ms;
            }
            if grant.granted < need.needed && short.is_none() {
                short = Some(need.index);
            }
        }
        if short.is_some() {
            return Err(short);
        }
        let now_ms = needs.first().map_or(0, |n| n.now_ms);
        spend_locked(&mut leases, plan, cost, now_ms).map_err(|_| None)
    }

    /// Takes from the leases what `grants` (the reservations made for
    /// `needs`) added to them for this verification alone, to give back to
    /// the store at once: a refused verification holds nothing it reserved
    /// (all or nothing, API.md section 9), so a read right after sees every
    /// counter as it was. A lease reserved ahead because verifications queue
    /// (`want` above `needed`) is kept for them, as any lease.
    pub fn take_back(&self, needs: &[Need], grants: &[store::Grant]) -> Vec<Unused> {
        let mut leases = lock(&self.leases);
        let mut unused = Vec::new();
        for (need, grant) in needs.iter().zip(grants) {
            if need.want > need.needed {
                continue;
            }
            let Some(lease) = leases.get_mut(&*need.key) else {
                continue;
            };
            let back = grant.granted.min(lease.held);
            if lease.period != need.key.period(need.now_ms) || back <= 0 {
                continue;
            }
            lease.held -= back;
            // Its level no longer counts what went back: read it again.
            lease.known = false;
            unused.push(Unused {
                key: Arc::clone(&need.key),
                store_period: grant.period,
                held: back,
            });
        }
        unused
    }

    /// Why counter `index` of `plan` refuses at `now_ms`.
    pub fn exhausted(&self, plan: &Plan, index: usize, now_ms: i64) -> Exhausted {
        let Some(counter) = plan.counters.get(index) else {
            return Exhausted::Credits {
                retry_after_secs: None,
            };
        };
        match &counter.key.what {
            What::Window(limit) => Exhausted::Window(WindowState {
                name: Arc::clone(&counter.name),
                scope: counter.scope,
                limit: limit.limit,
                remaining: 0,
                reset_ms: limit.window(now_ms).1,
                duration_ms: limit.duration_ms,
            }),
            What::Credits(credits) => Exhausted::Credits {
                retry_after_secs: credits
                    .refill
                    .map(|r| seconds_until(r.next_after(now_ms), now_ms)),
            },
        }
    }

    /// Takes what has been held unused for `idle_ms` (everything, with 0),
    /// to give back to the store; forgets counters long unused.
    pub fn give_back(&self, now_ms: i64, idle_ms: i64) -> Vec<Unused> {
        let mut leases = lock(&self.leases);
        let mut unused = Vec::new();
        leases.retain(|key, lease| {
            let idle = now_ms - lease.last_use_ms;
            if lease.held > 0 && idle >= idle_ms {
                unused.push(Unused {
                    key: Arc::clone(key),
                    store_period: lease.store_period,
                    held: lease.held,
                });
                lease.held = 0;
                lease.known = false;
            }
            idle < FORGET_MS || Arc::strong_count(&lease.gate) > 1
        });
        unused
    }
}

/// [`Limiter::try_spend`] under the lock.
fn spend_locked(
    leases: &mut HashMap<Arc<CounterKey>, Lease>,
    plan: &Plan,
    cost: i64,
    now_ms: i64,
) -> Result<Spent, Vec<usize>> {
    let mut lacking = Vec::new();
    for (i, counter) in plan.counters.iter().enumerate() {
        let period = counter.period(now_ms);
        if !leases.contains_key(&*counter.key) {
            leases.insert(Arc::clone(&counter.key), Lease::new(period, now_ms));
        }
        let Some(lease) = leases.get_mut(&*counter.key) else {
            continue;
        };
        // A request that read the clock before a newer one reserved
        // must not throw the newer period's lease away: it asks again.
        if lease.period > period {
            lacking.push(i);
            continue;
        }
        if lease.period != period {
            *lease = Lease {
                gate: Arc::clone(&lease.gate),
                contended_ms: lease.contended_ms,
                ..Lease::new(period, now_ms)
            };
        }
        if !lease.known || lease.held < cost {
            lacking.push(i);
        }
    }
    if !lacking.is_empty() {
        return Err(lacking);
    }
    let mut spent = Spent::default();
    for counter in &plan.counters {
        let Some(lease) = leases.get_mut(&*counter.key) else {
            continue;
        };
        lease.held -= cost;
        lease.spent += cost;
        lease.last_use_ms = now_ms;
        match (&counter.key.what, counter.scope) {
            (What::Window(limit), scope) => {
                let remaining =
                    (limit.limit as i64 - lease.level + lease.held).clamp(0, limit.limit as i64);
                spent.ratelimits.push(WindowState {
                    name: Arc::clone(&counter.name),
                    scope,
                    limit: limit.limit,
                    remaining: remaining as u64,
                    reset_ms: limit.window(now_ms).1,
                    duration_ms: limit.duration_ms,
                });
            }
            (What::Credits(_), Scope::Key) => spent.key_credits = Some(lease.level + lease.held),
            (What::Credits(_), Scope::User) => spent.user_credits = Some(lease.level + lease.held),
        }
    }
    Ok(spent)
}

/// Whole seconds from `now_ms` to `at_ms`, rounded up, at least 1.
pub fn seconds_until(at_ms: i64, now_ms: i64) -> u64 {
    (((at_ms - now_ms).max(0) + 999) / 1000).max(1) as u64
}

/// Makes the reservations `needs` ask for, each a statement of its own:
/// what one grants is held, not spent, so none depends on another.
pub fn reserve(
    conn: &mut crate::db::DbConnection,
    needs: &[Need],
) -> Result<Vec<store::Grant>, crate::error::Error> {
    needs
        .iter()
        .map(|need| {
            let key = &need.key;
            match &key.what {
                What::Window(limit) => store::reserve_window(
                    conn,
                    &key.tenant_id,
                    &key.owner,
                    limit,
                    limit.window(need.now_ms),
                    need.needed,
                    need.want,
                ),
                What::Credits(credits) => {
                    let grant = store::reserve_credits(
                        conn,
                        &key.tenant_id,
                        &key.owner,
                        credits,
                        need.now_ms,
                        need.needed,
                        need.want,
                    )?;
                    if grant.low() {
                        notice_low(conn, need, &grant)?;
                    }
                    Ok(grant.grant)
                }
            }
        })
        .collect()
}

/// Sends `key.credits_low` (API.md section 11) for a balance that fell to a
/// tenth of what it was last set or refilled to: once per period, whichever
/// instance sees it first, in one transaction with the claim.
fn notice_low(
    conn: &mut crate::db::DbConnection,
    need: &Need,
    grant: &store::CreditGrant,
) -> Result<(), crate::error::Error> {
    use crate::webhooks::{outbox, EventType};
    let key = &need.key;
    let at = chrono::TimeZone::timestamp_millis_opt(&chrono::Utc, need.now_ms)
        .single()
        .unwrap_or_default();
    crate::db::write_transaction(conn, |conn| {
        if !store::claim_low_notice(conn, &key.tenant_id, &key.owner, grant.grant.period)? {
            return Ok(());
        }
        let subject = &need.subject;
        let data = serde_json::json!({
            "action": EventType::KeyCreditsLow.as_str(),
            "scope": need.scope.as_str(),
            "target_id": match need.scope {
                Scope::Key => &subject.key_id,
                Scope::User => &subject.user_id,
            },
            "key_id": subject.key_id,
            "user_id": subject.user_id,
            "remaining": grant.grant.level,
            "base": grant.base,
        });
        outbox::enqueue(
            conn,
            &key.tenant_id,
            &uuid::Uuid::now_v7().to_string(),
            EventType::KeyCreditsLow,
            at,
            outbox::Recipients::Subscribed,
            |_| Ok(data),
        )?;
        Ok(())
    })
}

/// Gives `unused` back to the store; a failure loses it (it was reserved,
/// never spent twice).
pub fn restore(
    conn: &mut crate::db::DbConnection,
    unused: &[Unused],
) -> Result<(), crate::error::Error> {
    for u in unused {
        let key = &u.key;
        match &key.what {
            What::Window(limit) => store::give_back_window(
                conn,
                &key.tenant_id,
                &key.owner,
                limit,
                u.store_period,
                u.held,
            )?,
            What::Credits(_) => {
                store::give_back_credits(conn, &key.tenant_id, &key.owner, u.store_period, u.held)?
            }
        }
    }
    Ok(())
}
