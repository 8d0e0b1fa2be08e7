//! Prometheus metrics, served at `GET /metrics`.
//!
//! Labels are bounded and carry no tenant names or key material: requests are
//! labelled by route template (`/v1/user-api-keys/{id}`, never the path),
//! method and status; authentication failures by reason.

use std::cell::RefCell;
use std::time::Duration;

use thread_local::ThreadLocal;

use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    Opts, Registry, TextEncoder,
};

use actix_web::http::StatusCode;

use crate::analytics::Outcome;
use crate::error::Error;

pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    latency: HistogramVec,
    auth_failures: IntCounterVec,
    /// `keyward_verifications_total` by outcome, resolved once: the hot path only increments.
    verifications: [IntCounter; 5],
    pool_wait: Histogram,
    pool_timeouts: IntCounter,
    /// Statements that reserved from the usage counters (`limiter`).
    usage_reservations: IntCounter,
    pool_connections: IntGauge,
    pool_idle: IntGauge,
    change_signal_age: Gauge,
    /// Each thread's request metrics by the labels it has seen, so that a
    /// request costs an increment, not a lookup of its labels under a lock
    /// shared by every worker.
    handles: ThreadLocal<RefCell<Vec<RequestHandles>>>,
}

/// A route template, method and status, and their request metrics.
struct RequestHandles {
    route: &'static str,
    method: String,
    status: u16,
    requests: IntCounter,
    latency: Histogram,
}

/// Label combinations a thread keeps handles for; requests beyond are
/// counted through the lookup.
const HANDLES_PER_THREAD: usize = 64;

const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

impl Metrics {
    #[expect(
        clippy::expect_used,
        reason = "metric definitions are constants: a failure is a bug caught by any test"
    )]
    pub fn new() -> Self {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "keyward_http_requests_total",
                "HTTP requests by route template, method and status.",
            ),
            &["route", "method", "status"],
        )
        .expect("valid metric");
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "keyward_http_request_duration_seconds",
                "HTTP request latency.",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["route", "method"],
        )
        .expect("valid metric");
        let auth_failures = IntCounterVec::new(
            Opts::new(
                "keyward_auth_failures_total",
                "Failed authentications by reason.",
            ),
            &["reason"],
        )
        .expect("valid metric");
        let verifications = IntCounterVec::new(
            Opts::new(
                "keyward_verifications_total",
                "Verifications (/v1/auth) of keys identified in their tenant, by outcome.",
            ),
            &["outcome"],
        )
        .expect("valid metric");
        let by_outcome = Outcome::ALL.map(|o| verifications.with_label_values(&[o.as_str()]));
        let pool_wait = Histogram::with_opts(
            HistogramOpts::new(
                "keyward_db_pool_wait_seconds",
                "Time spent waiting for a database connection.",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
        )
        .expect("valid metric");
        let pool_timeouts = IntCounter::new(
            "keyward_db_pool_timeouts_total",
            "Requests that found no database connection in time.",
        )
        .expect("valid metric");
        let usage_reservations = IntCounter::new(
            "keyward_usage_reservations_total",
            "Reservations of rate-limit windows and credit balances made in the database \
             (each one statement); verifications between them are served from leases.",
        )
        .expect("valid metric");
        let pool_connections = IntGauge::new(
            "keyward_db_pool_connections",
            "Database connections held by the pool.",
        )
        .expect("valid metric");
        let pool_idle = IntGauge::new(
            "keyward_db_pool_idle_connections",
            "Idle database connections.",
        )
        .expect("valid metric");
        let change_signal_age = Gauge::new(
            "keyward_change_signal_age_seconds",
            "How long ago the last applied read of the change signal began \
             (about 0.02 while the watch is alive; growing while it is dead).",
        )
        .expect("valid metric");
        for metric in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(latency.clone()),
            Box::new(auth_failures.clone()),
            Box::new(verifications.clone()),
            Box::new(pool_wait.clone()),
            Box::new(pool_timeouts.clone()),
            Box::new(usage_reservations.clone()),
            Box::new(pool_connections.clone()),
            Box::new(pool_idle.clone()),
            Box::new(change_signal_age.clone()),
        ] {
            registry.register(metric).expect("metric names are unique");
        }
        Self {
            registry,
            requests,
            latency,
            auth_failures,
            verifications: by_outcome,
            pool_wait,
            pool_timeouts,
            usage_reservations,
            pool_connections,
            pool_idle,
            change_signal_age,
            handles: ThreadLocal::new(),
        }
    }

    /// Counts `n` reservations made in the database.
    pub fn usage_reserved(&self, n: usize) {
        self.usage_reservations.inc_by(n as u64);
    }

    pub fn observe_request(
        &self,
        route: &'static str,
        method: &str,
        status: StatusCode,
        elapsed: Duration,
    ) {
        let seconds = elapsed.as_secs_f64();
        let mut handles = self.handles.get_or_default().borrow_mut();
        let known = handles.iter().find(|h| {
            std::ptr::eq(h.route, route) && h.status == status.as_u16() && h.method == method
        });
        if let Some(known) = known {
            known.requests.inc();
            known.latency.observe(seconds);
            return;
        }
        let requests = self
            .requests
            .with_label_values(&[route, method, status.as_str()]);
        let latency = self.latency.with_label_values(&[route, method]);
        requests.inc();
        latency.observe(seconds);
        if handles.len() < HANDLES_PER_THREAD {
            handles.push(RequestHandles {
                route,
                method: method.to_owned(),
                status: status.as_u16(),
                requests,
                latency,
            });
        }
    }

    /// Counts a failed authentication under a reason derived from its error.
    pub fn auth_failure(&self, error: &Error) {
        let reason = match error {
            Error::TenantMissing => "tenant_missing",
            Error::TenantUnknown => "tenant_unknown",
            Error::KeyMissing => "key_missing",
            Error::AuthHeaderMalformed => "header_malformed",
            Error::KeyInvalid => "key_invalid",
            Error::KeyExpired => "key_expired",
            Error::RateLimited { .. } => "throttled",
            _ => return,
        };
        self.auth_failures.with_label_values(&[reason]).inc();
    }

    /// Counts a verification's outcome (no tenant or key label).
    pub fn verification(&self, outcome: Outcome) {
        self.verifications[outcome as usize].inc();
    }

    pub fn observe_pool_wait(&self, waited: Duration, got_one: bool) {
        self.pool_wait.observe(waited.as_secs_f64());
        if !got_one {
            self.pool_timeouts.inc();
        }
    }

    /// The Prometheus text exposition, with the pool's current state and the
    /// age of the change watch's last applied poll.
    pub fn render(
        &self,
        pool: diesel::r2d2::State,
        change_signal_age: Duration,
    ) -> Result<String, Error> {
        self.change_signal_age.set(change_signal_age.as_secs_f64());
        self.pool_connections.set(i64::from(pool.connections));
        self.pool_idle.set(i64::from(pool.idle_connections));
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .map_err(|e| Error::Internal(e.to_string()))?;
        String::from_utf8(out).map_err(|e| Error::Internal(e.to_string()))
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
