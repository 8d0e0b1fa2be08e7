//! keyward: self-hosted, multi-tenant management of users' API keys.
//!
//! One core (`tenants`, `users`, `keys`, `auth`) over one storage layer (`db`),
//! spoken over HTTP in two dialects (`api::v1` for BlueDolphin's public API,
//! `api::estuary` for Estuary's user API) and from the command line (`main.rs`).

pub mod api;
pub mod audit;
pub mod auth;
pub mod clock;
pub mod config;
pub mod db;
pub mod error;
pub mod keys;
pub mod metrics;
pub mod schema;
pub mod tenants;
pub mod throttle;
pub mod usage;
pub mod users;

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
    pub throttle: throttle::AuthThrottle,
    /// Recent successful authentications; see `auth::cache` for the rules.
    pub auth_cache: auth::cache::AuthCache,
    pub metrics: Arc<metrics::Metrics>,
}

impl AppState {
    pub fn new(pool: DbPool, settings: Settings, clock: Arc<dyn Clock>) -> Self {
        let settings_limit = settings.auth_failures_per_minute;
        Self {
            pool,
            settings: Arc::new(settings),
            clock,
            usage: usage::UsageRecorder::default(),
            throttle: throttle::AuthThrottle::new(settings_limit),
            auth_cache: auth::cache::AuthCache::default(),
            metrics: Arc::new(metrics::Metrics::new()),
        }
    }

    /// Writes the queued last-used times.
    pub async fn flush_usage(self: &Arc<Self>) -> Result<usize, Error> {
        let state = Arc::clone(self);
        let now = self.clock.now();
        self.db(move |conn| state.usage.flush(conn, now)).await
    }

    /// Runs `f` with a pooled connection on the blocking thread pool, off the
    /// async executor.
    pub async fn db<T, F>(&self, f: F) -> Result<T, Error>
    where
        F: FnOnce(&mut DbConnection) -> Result<T, Error> + Send + 'static,
        T: Send + 'static,
    {
        let pool = self.pool.clone();
        let metrics = Arc::clone(&self.metrics);
        web::block(move || {
            let started = std::time::Instant::now();
            let conn = pool.get();
            metrics.observe_pool_wait(started.elapsed(), conn.is_ok());
            let mut conn = conn?;
            f(&mut conn)
        })
        .await?
    }
}

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
    App::new()
        .app_data(state)
        .app_data(web::PayloadConfig::new(MAX_BODY_BYTES))
        .configure(api::configure)
        .default_service(web::to(api::not_found))
        .wrap(middleware::NormalizePath::trim())
        .wrap(middleware::from_fn(api::context::middleware))
        // Outermost: a preflight is answered before anything else runs.
        .wrap(middleware::from_fn(api::cors::middleware))
}
