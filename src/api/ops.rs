//! Liveness and readiness probes; unauthenticated.

use std::time::Duration;

use actix_web::{web, HttpResponse};

use crate::error::Error;
use crate::AppState;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/liveness", web::get().to(liveness))
        .route("/readiness", web::get().to(readiness));
}

async fn liveness() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; charset=utf-8")
        .body("Healthy")
}

/// 200 when the database answers within a second, 503 otherwise.
async fn readiness(state: web::Data<AppState>) -> Result<HttpResponse, Error> {
    let pool = state.pool.clone();
    web::block(move || {
        let mut conn = pool.get_timeout(Duration::from_secs(1))?;
        crate::db::ping(&mut conn)
    })
    .await?
    .map_err(|e| Error::Unavailable(e.to_string()))?;
    Ok(HttpResponse::Ok()
        .content_type("text/plain; charset=utf-8")
        .body("Healthy"))
}
