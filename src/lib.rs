//! keyward: self-hosted, multi-tenant management of users' API keys.
//!
//! One core (`access`, `tenants`, `users`, `keys`, `audit`, `paging`, `usage`)
//! over one storage layer (`db`), reached over HTTP through `auth` (who is
//! calling) in two dialects (`api::v1` for BlueDolphin's public API,
//! `api::estuary` for Estuary's user API), and from the command line (`main.rs`).
//! `webhooks` tells the tenants' systems about changes, from a background
//! sender each instance runs ([`AppState::run_webhooks`]).
//! Arrows point one way: `api` -> `auth` -> core -> `db`.

pub mod access;
pub mod analytics;
pub mod api;
pub mod audit;
pub mod auth;
pub mod batch;
pub mod changes;
pub mod clock;
pub mod config;
pub mod db;
pub mod error;
pub mod ground;
pub mod keys;
pub mod limiter;
pub mod limits;
pub mod memo;
pub mod metrics;
pub mod paging;
pub mod roles;
pub mod schema;
pub mod scopes;
pub mod tenants;
pub mod throttle;
pub mod usage;
pub mod users;
pub mod webhooks;

use std::sync::Arc;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::{middleware, web, App};

use crate::clock::Clock;
use crate::config::Settings;
use crate::db::{DbConnection, DbPool};
use crate::error::Error;

/// Largest request body accepted; larger ones get 413.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// What every request handler shares.
pub struct AppState {
    pub pool: DbPool,
    pub settings: Arc<Settings>,
    pub clock: Arc<dyn Clock>,
    /// Last-used times waiting to be written.
    pub usage: usage::UsageRecorder,
    /// Verifications counted, waiting to be written; see [`AppState::count_usage`].
    pub tally: analytics::Tally,
    pub throttle: throttle::AuthThrottle,
    /// Recent successful authentications; see `auth::cache` for the rules.
    pub auth_cache: auth::cache::AuthCache,
    /// Whether caches may answer; kept fresh by [`AppState::watch_changes`].
    pub changes: changes::ChangeWatch,
    pub metrics: Arc<metrics::Metrics>,
    /// This instance's leases of rate limits and credits; see [`AppState::spend`].
    pub limiter: limiter::Limiter,
    /// Webhooks' rules, sealing key, and the sender's wake-up bell.
    pub webhooks: webhooks::Hub,
    /// Per-thread read connections, on a SQLite file; see [`AppState::read`].
    readers: Option<db::Readers>,
    /// The hot path of a listing, batched on PostgreSQL; see [`AppState::own_keys`].
    own_keys: batch::Batcher<keys::OwnKeys, bytes::Bytes>,
    /// The hot path of a listing, remembered on SQLite; see [`AppState::own_keys`].
    own_keys_memo: memo::Memo<keys::OwnListing>,
}

impl AppState {
    pub fn new(pool: DbPool, settings: Settings, clock: Arc<dyn Clock>) -> Self {
        let settings_limit = settings.auth_failures_per_minute;
        let counting = settings.usage_counting;
        let readers = config::DatabaseUrl::parse(&settings.database_url)
            .ok()
            .and_then(|url| db::Readers::new(&url));
        let webhooks = webhooks::Hub::from_settings(&settings);
        Self {
            pool,
            settings: Arc::new(settings),
            clock,
            usage: usage::UsageRecorder::default(),
            tally: analytics::Tally::new(counting),
            throttle: throttle::AuthThrottle::new(settings_limit),
            auth_cache: auth::cache::AuthCache::default(),
            changes: changes::ChangeWatch::default(),
            metrics: Arc::new(metrics::Metrics::new()),
            limiter: limiter::Limiter::default(),
            webhooks,
            readers,
            own_keys: batch::Batcher::new(keys::own_listings_of),
            own_keys_memo: memo::Memo::default(),
        }
    }

    /// Watches the change signal on a connection of its own, in a thread that
    /// ends when the state is dropped: forgets the cached authentications of
    /// each tenant whose data changed, and keeps [`AppState::changes`] fresh.
    /// Without it (or with `sqlite::memory:`, which no other connection can
    /// see) nothing is answered from the cache.
    pub fn watch_changes(self: &Arc<Self>) -> Result<(), Error> {
        let url = config::DatabaseUrl::parse(&self.settings.database_url)?;
        if url == config::DatabaseUrl::SqliteMemory {
            return Ok(());
        }
        let state = Arc::downgrade(self);
        std::thread::Builder::new()
            .name("keyward-changes".into())
            .spawn(move || changes_loop(&state, &url))
            .map(|_| ())
            .map_err(|e| Error::Internal(format!("cannot start the change watch: {e}")))
    }

    /// Writes the counted verifications and, every [`analytics::ROLLUP_EVERY`],
    /// rolls them up and prunes them, in a thread that ends when the state is
    /// dropped (`serve` writes what is left at shutdown: [`AppState::flush_counts`]). Counts reach the database at
    /// most [`analytics::FLUSH_EVERY`] after the verification (plus the
    /// statement's time), in one statement per flush.
    pub fn count_usage(self: &Arc<Self>) -> Result<(), Error> {
        let state = Arc::downgrade(self);
        std::thread::Builder::new()
            .name("keyward-usage-counts".into())
            .spawn(move || analytics_loop(&state))
            .map(|_| ())
            .map_err(|e| Error::Internal(format!("cannot start the usage counter: {e}")))
    }

    /// Gives back the leases held unused for [`limiter::IDLE_MS`], and
    /// prunes windows that ended, in a thread that ends when the state is
    /// dropped (`serve` gives back the rest at shutdown: [`AppState::give_back_leases`]).
    pub fn keep_leases(self: &Arc<Self>) -> Result<(), Error> {
        let state = Arc::downgrade(self);
        std::thread::Builder::new()
            .name("keyward-leases".into())
            .spawn(move || leases_loop(&state))
            .map(|_| ())
            .map_err(|e| Error::Internal(format!("cannot start the lease keeper: {e}")))
    }

    /// Gives back what has been held unused for `idle_ms` (all of it, with
    /// 0); returns how many leases.
    pub async fn give_back_leases(self: &Arc<Self>, idle_ms: i64) -> Result<usize, Error> {
        let unused = self
            .limiter
            .give_back(self.clock.now().timestamp_millis(), idle_ms);
        let n = unused.len();
        if n > 0 {
            self.db(move |conn| limiter::restore(conn, &unused)).await?;
        }
        Ok(n)
    }

    /// Spends `cost` from every counter of `plan` (API.md section 9): from
    /// this instance's leases, reserving from the database when they run
    /// short, one reservation per counter at a time. All or nothing:
    /// `Ok(Err(_))` names what ran out, and nothing was spent.
    pub async fn spend(
        &self,
        plan: &limiter::Plan,
        cost: i64,
    ) -> Result<Result<limiter::Spent, limiter::Exhausted>, Error> {
        // A round fails without a refusal only when another request spent a
        // counter between the check and the grant; it cannot go on forever
        // without some counter running out, but is bounded all the same.
        for _ in 0..16 {
            let now_ms = self.clock.now().timestamp_millis();
            let lacking = match self.limiter.try_spend(plan, cost, now_ms) {
                Ok(spent) => return Ok(Ok(spent)),
                Err(lacking) => lacking,
            };
            let mut held = Vec::new();
            for (index, gate) in self.limiter.gates(plan, &lacking) {
                let guard = match Arc::clone(&gate).try_lock_owned() {
                    Ok(guard) => guard,
                    Err(_) => {
                        self.limiter.queued(plan, index, now_ms);
                        gate.lock_owned().await
                    }
                };
                held.push(guard);
            }
            // Someone else may have reserved while this one waited.
            let now_ms = self.clock.now().timestamp_millis();
            let lacking = match self.limiter.try_spend(plan, cost, now_ms) {
                Ok(spent) => return Ok(Ok(spent)),
                Err(lacking) => lacking,
            };
            let needs = self.limiter.needs(plan, &lacking, cost, now_ms);
            let asked = needs.clone();
            self.metrics.usage_reserved(needs.len());
            let grants = self.db(move |conn| limiter::reserve(conn, &asked)).await?;
            match self.limiter.add_and_spend(plan, cost, &needs, &grants) {
                Ok(spent) => return Ok(Ok(spent)),
                Err(Some(index)) => {
                    let unused = self.limiter.take_back(&needs, &grants);
                    if !unused.is_empty() {
                        let restored = self.db(move |conn| limiter::restore(conn, &unused)).await;
                        if let Err(e) = restored {
                            // Lost, not spent: it was reserved, never spent twice.
                            log::warn!(
                                "could not give back a refused verification's reservations: {e}"
                            );
                        }
                    }
                    return Ok(Err(self.limiter.exhausted(plan, index, now_ms)));
                }
                Err(None) => continue,
            }
        }
        Err(Error::Unavailable("usage counters too contended".into()))
    }

    /// Writes the counted verifications now (at shutdown); returns the rows written.
    pub async fn flush_counts(self: &Arc<Self>) -> Result<usize, Error> {
        let state = Arc::clone(self);
        self.db(move |conn| state.tally.flush(conn)).await
    }

    /// Writes the queued last-used times.
    pub async fn flush_usage(self: &Arc<Self>) -> Result<usize, Error> {
        let state = Arc::clone(self);
        let now = self.clock.now();
        self.db(move |conn| state.usage.flush(conn, now)).await
    }

    /// Runs a short read: inline, on this thread's own read connection, on a
    /// SQLite file (a lookup by key takes microseconds, less than the hand-off
    /// to the blocking pool and back; see BENCHMARKS.md); else like
    /// [`AppState::db`]. For reads whose size is bounded by the request (one
    /// row, one user's keys): a listing of a whole tenant goes through `db`.
    pub async fn read<T, F>(&self, f: F) -> Result<T, Error>
    where
        F: FnOnce(&mut DbConnection) -> Result<T, Error> + Send + 'static,
        T: Send + 'static,
    {
        match &self.readers {
            Some(readers) => readers.read(f),
            None => self.db(f).await,
        }
    }

    /// A caller's own keys (the hot path of a listing), rendered as `ask`
    /// says. On a SQLite file: a [`memo`]ized listing while the database has
    /// not changed (with the renderings already made of it), else one short
    /// read. On PostgreSQL: a question in a [`batch`] with those of the
    /// requests that arrive meanwhile, one query for them all, rendered on the
    /// blocking thread that read it.
    pub async fn own_keys(self: &Arc<Self>, ask: keys::OwnKeys) -> Result<bytes::Bytes, Error> {
        if let Some(readers) = &self.readers {
            return readers.read(|conn| {
                // Asked before the read: a commit in between leaves the
                // answer kept under the older version, and read again.
                let version = db::data_version(conn)?.unwrap_or_default();
                let (tenant_id, user_id) = ask.user();
                // (Not `format!`: on every listing, the formatter costs more than the copy.)
                let mut memo_key = String::with_capacity(tenant_id.len() + 1 + user_id.len());
                memo_key.push_str(tenant_id);
                memo_key.push('/');
                memo_key.push_str(user_id);
                let listing = match self.own_keys_memo.get(&memo_key, version) {
                    Some(listing) => listing,
                    None => {
                        let keys = keys::own_keys(conn, &ask)?;
                        // A balance that refills changes with the clock, not
                        // with the data: such a listing is not remembered.
                        let refills = keys
                            .iter()
                            .any(|k| k.limits.credits.is_some_and(|c| c.refill.is_some()));
                        let listing = Arc::new(memo::Rendered::new(keys));
                        if !refills {
                            self.own_keys_memo
                                .put(memo_key, version, Arc::clone(&listing));
                        }
                        listing
                    }
                };
                ask.answer_from(&listing)
            });
        }
        let state = Arc::clone(self);
        self.own_keys
            .ask(ask, move || {
                actix_web::rt::spawn(async move {
                    loop {
                        let drain = Arc::clone(&state);
                        match state.db(move |conn| Ok(drain.own_keys.drain(conn))).await {
                            Ok(true) => continue,
                            Ok(false) => break,
                            Err(error) => {
                                state.own_keys.fail(&error);
                                break;
                            }
                        }
                    }
                });
            })
            .await
    }

    /// Runs `f` with a pooled connection on the blocking thread pool, off the
    /// async executor. Every write goes this way; one that wrote webhook
    /// deliveries wakes this instance's sender once it is done (committed).
    pub async fn db<T, F>(&self, f: F) -> Result<T, Error>
    where
        F: FnOnce(&mut DbConnection) -> Result<T, Error> + Send + 'static,
        T: Send + 'static,
    {
        let pool = self.pool.clone();
        let metrics = Arc::clone(&self.metrics);
        let wake = Arc::clone(&self.webhooks.wake);
        web::block(move || {
            let started = std::time::Instant::now();
            let conn = pool.get();
            metrics.observe_pool_wait(started.elapsed(), conn.is_ok());
            let mut conn = conn?;
            let done = f(&mut conn);
            if webhooks::outbox::take_enqueued() {
                wake.notify_one();
            }
            done
        })
        .await?
    }

    /// The webhook sender of this instance: sends what is due, then waits
    /// for a local change or [`WEBHOOK_POLL`] (one indexed query when idle,
    /// whatever the number of tenants); sweeps for expiry notices every
    /// [`EXPIRY_SWEEP`] and prunes the delivery log every [`WEBHOOK_PRUNE`]
    /// (first at start). A round that fails (the database refusing its poll,
    /// say) is warned of once, until one works again. Runs until aborted.
    pub async fn run_webhooks(self: Arc<Self>, client: webhooks::client::Client) {
        let mut swept: Option<std::time::Instant> = None;
        let mut pruned: Option<std::time::Instant> = None;
        let mut sending = Streak::default();
        loop {
            if pruned.is_none_or(|at| at.elapsed() >= WEBHOOK_PRUNE) {
                pruned = Some(std::time::Instant::now());
                match self.prune_webhooks().await {
                    Ok(Some(done)) if done.total() > 0 => log::info!(
                        "webhooks: pruned {} attempts, {} deliveries and {} events past the retention",
                        done.attempts,
                        done.deliveries,
                        done.events
                    ),
                    Ok(_) => {}
                    Err(e) => log::warn!("webhooks: pruning the delivery log failed: {e}"),
                }
            }
            if swept.is_none_or(|at| at.elapsed() >= EXPIRY_SWEEP) {
                swept = Some(std::time::Instant::now());
                if let Err(e) = self.sweep_expiry().await {
                    log::warn!("webhooks: expiry sweep failed: {e}");
                }
            }
            let sent = self.send_webhooks(&client).await;
            sending.note(
                &sent,
                "webhooks: sending failed (trying again at each poll)",
                "webhooks: sending works again",
            );
            if matches!(sent, Ok(n) if n > 0) {
                continue;
            }
            let _ = actix_web::rt::time::timeout(WEBHOOK_POLL, self.webhooks.wake.notified()).await;
        }
    }

    /// Deletes the delivery log older than the retention
    /// ([`webhooks::retention::prune`]); `None` when another instance is at it.
    pub async fn prune_webhooks(
        self: &Arc<Self>,
    ) -> Result<Option<webhooks::retention::Pruned>, Error> {
        let now = self.clock.now();
        let retention = self.webhooks.policy.retention;
        self.db(move |conn| webhooks::retention::prune(conn, now, retention))
            .await
    }

    /// Records the `key.expiring` and `key.expired` events due now.
    pub async fn sweep_expiry(self: &Arc<Self>) -> Result<usize, Error> {
        let now = self.clock.now();
        let days = self.webhooks.policy.expiry_notice_days.clone();
        self.db(move |conn| webhooks::expiry::sweep(conn, now, &days))
            .await
    }

    /// One round of the sender: every endpoint with a due delivery that no
    /// other instance holds gets its due deliveries, in order, endpoints in
    /// parallel. Returns the number of attempts made.
    pub async fn send_webhooks(
        self: &Arc<Self>,
        client: &webhooks::client::Client,
    ) -> Result<usize, Error> {
        let now = self.clock.now();
        let due = self
            .db(move |conn| webhooks::sender::due_endpoints(conn, now, 32))
            .await?;
        let rounds = due
            .into_iter()
            .map(|(tenant_id, endpoint_id)| self.send_to_endpoint(client, tenant_id, endpoint_id));
        let mut attempts = 0;
        for result in futures_util::future::join_all(rounds).await {
            match result {
                Ok(n) => attempts += n,
                Err(e) => log::warn!("webhooks: {e}"),
            }
        }
        Ok(attempts)
    }

    async fn send_to_endpoint(
        self: &Arc<Self>,
        client: &webhooks::client::Client,
        tenant_id: String,
        endpoint_id: String,
    ) -> Result<usize, Error> {
        use webhooks::sender;
        let state = Arc::clone(self);
        let now = self.clock.now();
        let claimed = self
            .db(move |conn| sender::claim(conn, &state.webhooks, &tenant_id, &endpoint_id, now))
            .await?;
        let Some(mut claimed) = claimed else {
            return Ok(0);
        };
        let mut attempts = 0;
        for (i, due) in claimed.due.clone().into_iter().enumerate() {
            if i > 0 {
                let now = self.clock.now();
                let (renewed, back) = self
                    .db(move |conn| {
                        let renewed = sender::renew(conn, &mut claimed, now)?;
                        Ok((renewed, claimed))
                    })
                    .await?;
                claimed = back;
                if !renewed {
                    return Ok(attempts);
                }
            }
            let outcome = match claimed.request(&due, self.clock.now()) {
                Ok(request) => client.send(request).await,
                Err(why) => webhooks::client::Outcome::Failed(why),
            };
            let (state, at, held) = (Arc::clone(self), self.clock.now(), claimed.clone());
            let delivered = self
                .db(move |conn| {
                    sender::record(conn, &state.webhooks.policy, &held, &due, &outcome, at)
                })
                .await?;
            attempts += 1;
            if !delivered {
                break;
            }
        }
        self.db(move |conn| sender::release(conn, &claimed)).await?;
        Ok(attempts)
    }
}

/// How long an idle webhook sender waits before it looks for due deliveries.
pub const WEBHOOK_POLL: std::time::Duration = std::time::Duration::from_secs(1);

/// How often each instance prunes the webhook delivery log past its retention.
pub const WEBHOOK_PRUNE: std::time::Duration = std::time::Duration::from_secs(3600);

/// How often each instance sweeps for `key.expiring` / `key.expired`.
pub const EXPIRY_SWEEP: std::time::Duration = std::time::Duration::from_secs(60);

/// The whole HTTP application; `serve` runs it and the tests drive it.
pub fn app(
    state: web::Data<AppState>,
) -> App<
    impl ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<impl MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    let cors = !state.settings.cors_origins.is_empty();
    App::new()
        .app_data(state)
        .app_data(web::PayloadConfig::new(MAX_BODY_BYTES))
        .configure(api::configure)
        .default_service(web::to(api::not_found))
        .wrap(middleware::from_fn(api::context::middleware))
        // Outermost: a preflight is answered before anything else runs.
        // Without allowed origins there is nothing for it to do: not even a
        // layer on every request's path.
        .wrap(middleware::Condition::new(
            cors,
            middleware::from_fn(api::cors::middleware),
        ))
}

/// A background job's failures, told once per streak: the first failure as
/// a warning (`failed: error`), the first success after it as news.
#[derive(Debug, Default)]
struct Streak {
    failing: bool,
}

impl Streak {
    fn note<T, E: std::fmt::Display>(&mut self, result: &Result<T, E>, failed: &str, works: &str) {
        match result {
            Ok(_) => self.worked(works),
            Err(e) => self.failed(failed, e),
        }
    }

    fn failed(&mut self, failed: &str, error: impl std::fmt::Display) {
        if !std::mem::replace(&mut self.failing, true) {
            log::warn!("{failed}: {error}");
        }
    }

    fn worked(&mut self, works: &str) {
        if std::mem::replace(&mut self.failing, false) {
            log::info!("{works}");
        }
    }
}

/// The usage counter's thread: flush the tally every
/// [`analytics::FLUSH_EVERY`], try the roll-up every [`analytics::ROLLUP_EVERY`].
/// Runs on a pooled connection, off the async executor. Ends when the state is gone.
fn analytics_loop(state: &std::sync::Weak<AppState>) {
    let mut last_rollup: Option<std::time::Instant> = None;
    // Each warns once until it works again: the flush (whose counts wait in
    // memory) and the roll-up (which the next run redoes) fail apart.
    let mut flush = Streak::default();
    let mut rollup = Streak::default();
    const FLUSH_FAILED: &str = "could not write usage counts (kept for the next try)";
    loop {
        std::thread::sleep(analytics::FLUSH_EVERY);
        let Some(state) = state.upgrade() else {
            return;
        };
        let rollup_due = last_rollup.is_none_or(|at| at.elapsed() >= analytics::ROLLUP_EVERY);
        let mut conn = match state.pool.get() {
            Ok(conn) => conn,
            Err(e) => {
                flush.failed(FLUSH_FAILED, e);
                continue;
            }
        };
        let flushed = state.tally.flush(&mut conn);
        flush.note(&flushed, FLUSH_FAILED, "usage counts written again");
        if !rollup_due {
            continue;
        }
        last_rollup = Some(std::time::Instant::now());
        rollup.note(
            &analytics::roll_up(&mut conn, state.clock.now()),
            "could not roll up or prune usage counts (the next run redoes it; \
             readers sum the minutes meanwhile)",
            "usage roll-up done again",
        );
    }
}

/// The lease keeper's thread: see [`AppState::keep_leases`].
fn leases_loop(state: &std::sync::Weak<AppState>) {
    let mut pruned = std::time::Instant::now();
    loop {
        std::thread::sleep(std::time::Duration::from_millis(250));
        let Some(state) = state.upgrade() else {
            return;
        };
        let now_ms = state.clock.now().timestamp_millis();
        let unused = state.limiter.give_back(now_ms, limiter::IDLE_MS);
        let prune = pruned.elapsed() >= std::time::Duration::from_secs(60);
        if unused.is_empty() && !prune {
            continue;
        }
        let mut conn = match state.pool.get() {
            Ok(conn) => conn,
            Err(e) => {
                if !unused.is_empty() {
                    log::warn!(
                        "could not give back unused leases (they are lost, never spent twice): {e}"
                    );
                }
                continue;
            }
        };
        if let Err(e) = limiter::restore(&mut conn, &unused) {
            log::warn!("could not give back unused leases (they are lost, never spent twice): {e}");
        }
        if prune {
            pruned = std::time::Instant::now();
            // A window is kept a minute past its end: an instance whose
            // clock lags may still reserve from it.
            if let Err(e) = limiter::store::prune_windows(&mut conn, now_ms - 60_000) {
                log::warn!(
                    "could not prune ended rate-limit windows (tried again in a minute): {e}"
                );
            }
        }
    }
}

/// The change watch's thread: connect, poll, apply; on any failure go stale,
/// wait a little and connect again. Ends when the state is gone. Now and then
/// it also prunes the change signal ([`db::prune_changes`]).
fn changes_loop(state: &std::sync::Weak<AppState>, url: &config::DatabaseUrl) {
    let mut conn: Option<DbConnection> = None;
    let mut signal = Streak::default();
    // (when, the horizon then): pruning goes below a horizon a minute old.
    let mut pruned = (std::time::Instant::now(), None::<i64>);
    while let Some(state) = state.upgrade() {
        let connected = match conn.as_mut() {
            Some(conn) => Ok(conn),
            None => db::establish(url).map(|c| conn.insert(c)),
        };
        let mark = state.changes.mark();
        let polled = connected.and_then(|c| state.changes.poll(c).map(|changed| (c, changed)));
        match polled {
            Ok((c, changed)) => {
                match changed {
                    changes::Changed::Everything => state.auth_cache.clear(),
                    changes::Changed::Tenants(tenants) => {
                        for tenant in tenants {
                            state.auth_cache.forget_tenant(&tenant);
                        }
                    }
                }
                state.changes.applied(mark);
                signal.worked("change signal restored");
                if pruned.0.elapsed() >= PRUNE_EVERY {
                    if let Some(horizon) = pruned.1 {
                        let before =
                            (state.clock.now() - chrono::TimeDelta::minutes(10)).naive_utc();
                        if let Err(e) = db::prune_changes(c, horizon, before) {
                            log::warn!("could not prune the change signal: {e}");
                        }
                    }
                    pruned = (std::time::Instant::now(), state.changes.horizon());
                }
            }
            Err(e) => {
                state.changes.lost();
                conn = None;
                signal.failed(
                    "change signal lost, reading the database on every request",
                    e,
                );
            }
        }
        drop(state);
        std::thread::sleep(if conn.is_some() {
            changes::POLL_EVERY
        } else {
            changes::POLL_EVERY * 10
        });
    }
}

/// How often the change watch prunes the signal (rows ten minutes old go).
const PRUNE_EVERY: std::time::Duration = std::time::Duration::from_secs(60);
