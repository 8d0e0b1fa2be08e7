//! `GET /metrics`: Prometheus text exposition; unauthenticated, like the probes.

use actix_web::{web, HttpResponse};

use crate::error::Error;
use crate::AppState;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(crate::api::resource("/metrics").route(web::get().to(metrics)));
}

async fn metrics(state: web::Data<AppState>) -> Result<HttpResponse, Error> {
    let text = state
        .metrics
        .render(state.pool.state(), state.changes.age())?;
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(text))
}
