//! The HTTP surface: operational endpoints and the two dialects over one core.
//!
//! Handlers stay thin: extract, call the core through [`AppState::db`], map the
//! result to the dialect. Errors are rendered in one place, [`context`].

pub mod context;
pub mod input;
pub mod ops;
pub mod v1;

use actix_web::web;

use crate::error::Error;

pub fn configure(cfg: &mut web::ServiceConfig) {
    ops::configure(cfg);
    v1::configure(cfg);
}

/// Any route that does not exist.
pub async fn not_found() -> Result<actix_web::HttpResponse, Error> {
    Err(Error::NotFound)
}
