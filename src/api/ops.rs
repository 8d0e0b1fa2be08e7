//! Liveness and readiness probes; unauthenticated.

use std::time::Duration;

use actix_web::{web, HttpResponse};

use crate::error::Error;
use crate::AppState;

pub fn configure(cfg: &mut web::ServiceConfig) {
    // HEAD too: load balancers often probe with it (actix sends no body for HEAD).
    cfg.service(
        crate::api::resource("/liveness")
            .route(web::get().to(liveness))
            .route(web::head().to(liveness)),
    )
    .service(
        crate::api::resource("/readiness")
            .route(web::get().to(readiness))
            .route(web::head().to(readiness)),
    );
}

/// 200 while the process serves requests.
#[utoipa::path(
    get,
    path = "/liveness",
    operation_id = "liveness",
    tag = "operations",
    responses(
        (status = 200, description = "Alive.", body = String, content_type = "text/plain",
            example = "Healthy"),
    ),
)]
pub async fn liveness() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; charset=utf-8")
        .body("Healthy")
}

/// 200 when the database answers within a second, 503 otherwise.
#[utoipa::path(
    get,
    path = "/readiness",
    operation_id = "readiness",
    tag = "operations",
    responses(
        (status = 200, description = "The database answers.", body = String,
            content_type = "text/plain", example = "Healthy"),
        (status = 503, description = "The database does not answer."),
    ),
)]
pub async fn readiness(state: web::Data<AppState>) -> Result<HttpResponse, Error> {
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
