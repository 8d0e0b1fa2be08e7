//! The HTTP surface: operational endpoints and the two dialects over one core.
//!
//! Handlers stay thin: extract, call the core through [`AppState::db`], map the
//! result to the dialect. Errors are rendered in one place, [`context`].

pub mod context;
pub mod docs;
pub mod estuary;
pub mod input;
pub mod metrics;
pub mod ops;
pub mod v1;

use actix_web::web;

use crate::error::Error;

pub fn configure(cfg: &mut web::ServiceConfig) {
    ops::configure(cfg);
    metrics::configure(cfg);
    v1::configure(cfg);
    estuary::configure(cfg);
    docs::configure(cfg);
}

/// ISO-8601 UTC, second precision, `Z` suffix: how both dialects show instants.
pub fn timestamp(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Any route that does not exist.
pub async fn not_found() -> Result<actix_web::HttpResponse, Error> {
    Err(Error::NotFound)
}
