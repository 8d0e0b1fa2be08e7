//! CORS for dashboards served from another origin (`cors_origins`).
//!
//! Only exact origins from the setting are answered, and nothing else changes:
//! with the setting empty no CORS header is ever written, and a request from an
//! origin not listed is served exactly as without CORS (the browser then keeps
//! the answer from the page). No credentials mode: keys travel in headers,
//! never in cookies, so `Access-Control-Allow-Credentials` is never sent.
//!
//! This wraps the whole App (outside the request-id middleware), so a preflight
//! is answered before routing, and every other answer, errors included, gets
//! its headers.

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{
    self, HeaderMap, HeaderValue, ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS,
    ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_EXPOSE_HEADERS, ACCESS_CONTROL_MAX_AGE,
    ACCESS_CONTROL_REQUEST_METHOD, ORIGIN, VARY,
};
use actix_web::http::Method;
use actix_web::middleware::Next;
use actix_web::{web, HttpResponse};

use crate::AppState;

/// The request headers keyward reads: tenant, the three key headers, the
/// body's type, and a caller's own request id.
pub const ALLOWED_HEADERS: &str =
    "tenant, x-key, x-api-key, authorization, content-type, x-request-id";
/// Every method a route answers.
pub const ALLOWED_METHODS: &str = "GET, HEAD, POST, PATCH, DELETE";
/// Response headers a page may read besides the CORS-safelisted ones.
pub const EXPOSED_HEADERS: &str = "x-request-id";
/// How long a browser may reuse a preflight's answer, in seconds.
const MAX_AGE: &str = "600";

pub async fn middleware(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let configured = req
        .app_data::<web::Data<AppState>>()
        .is_some_and(|state| !state.settings.cors_origins.is_empty());
    if !configured {
        return Ok(next.call(req).await?.map_into_boxed_body());
    }
    let allowed = allowed_origin(&req);
    if let Some(origin) = &allowed {
        let preflight = req.method() == Method::OPTIONS
            && req.headers().contains_key(ACCESS_CONTROL_REQUEST_METHOD);
        if preflight {
            let mut res = HttpResponse::NoContent().finish();
            let headers = res.headers_mut();
            headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
            headers.insert(
                ACCESS_CONTROL_ALLOW_METHODS,
                HeaderValue::from_static(ALLOWED_METHODS),
            );
            headers.insert(
                ACCESS_CONTROL_ALLOW_HEADERS,
                HeaderValue::from_static(ALLOWED_HEADERS),
            );
            headers.insert(ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static(MAX_AGE));
            vary(
                headers,
                "Origin, Access-Control-Request-Method, Access-Control-Request-Headers",
            );
            return Ok(req.into_response(res));
        }
    }
    let mut res = next.call(req).await?.map_into_boxed_body();
    let headers = res.headers_mut();
    // The answer depends on the Origin header whenever CORS is on, also for
    // origins that get no CORS header: a shared cache must not hand one
    // origin's answer to another.
    vary(headers, "Origin");
    if let Some(origin) = allowed {
        headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        headers.insert(
            ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static(EXPOSED_HEADERS),
        );
    }
    Ok(res)
}

/// The request's `Origin`, if it is exactly one of the configured origins.
fn allowed_origin(req: &ServiceRequest) -> Option<HeaderValue> {
    let origin = req.headers().get(ORIGIN)?;
    let text = origin.to_str().ok()?;
    let state = req.app_data::<web::Data<AppState>>()?;
    state
        .settings
        .cors_origins
        .iter()
        .any(|allowed| allowed == text)
        .then(|| origin.clone())
}

/// Adds `value` to `Vary`, keeping what a handler put there.
fn vary(headers: &mut HeaderMap, value: &'static str) {
    let merged = match headers.get(VARY).and_then(|v| v.to_str().ok()) {
        Some(existing) if !existing.is_empty() => {
            HeaderValue::from_str(&format!("{existing}, {value}")).ok()
        }
        _ => None,
    };
    headers.insert(
        header::VARY,
        merged.unwrap_or(HeaderValue::from_static(value)),
    );
}
