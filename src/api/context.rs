//! The one middleware every request passes: it gives the request an id, turns
//! every error response into the dialect's error body (stamped with that id),
//! logs 5xx details server-side, and writes the access log line.

use std::time::Instant;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue, CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER};
use actix_web::http::Method;
use actix_web::middleware::Next;
use actix_web::{web, HttpMessage, HttpResponse};

use crate::error::Error;
use crate::{AppState, MAX_BODY_BYTES};

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The request's id, as echoed in `x-request-id` and in `/v1` errors' `traceId`.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// Which error shape a path speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// RFC 9457 problem details (`/v1`, and everything that is not `/user`).
    ProblemDetails,
    /// `{"error":{"code","reason","details"}}` (`/user`).
    Estuary,
}

impl Dialect {
    pub fn of(path: &str) -> Self {
        if path == "/user" || path.starts_with("/user/") {
            Dialect::Estuary
        } else {
            Dialect::ProblemDetails
        }
    }

    fn render(self, error: &Error, request_id: &str) -> HttpResponse {
        match self {
            Dialect::ProblemDetails => super::v1::problem(error, request_id),
            Dialect::Estuary => super::estuary::envelope(error),
        }
    }
}

/// A fresh request id: 32 hex characters, a random per-process prefix and a
/// counter. Unique, not secret, and without a system call per request.
fn new_request_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::OnceLock;
    static PREFIX: OnceLock<u64> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let prefix = PREFIX.get_or_init(|| uuid::Uuid::new_v4().as_u64_pair().0);
    format!(
        "{prefix:016x}{:016x}",
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// An incoming id is kept if it is a short token that is safe to log and echo.
fn sane_request_id(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
}

pub async fn middleware(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let started = Instant::now();
    let request_id = req
        .headers()
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|id| sane_request_id(id))
        .map_or_else(new_request_id, str::to_owned);
    req.extensions_mut().insert(RequestId(request_id.clone()));
    let dialect = Dialect::of(req.path());
    // Verification never reads the body, so its size is no reason to refuse it;
    // nor is it a write, whatever its method.
    let verification = super::v1::verify::is_verification(req.path());

    let declared_length = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let too_large = declared_length.is_some_and(|n| n > MAX_BODY_BYTES as u64);
    let mut res = if too_large && !verification {
        req.error_response(Error::PayloadTooLarge)
    } else {
        next.call(req).await?.map_into_boxed_body()
    };

    let status = res.status();
    if status.is_client_error() || status.is_server_error() {
        let response = res.response();
        let ours = response.error().and_then(|e| e.as_error::<Error>());
        let fallback;
        let error = match ours {
            Some(error) => error,
            None => {
                if let Some(other) = response.error() {
                    log::debug!("[{request_id}] framework error: {other}");
                }
                fallback = Error::from_status(status);
                &fallback
            }
        };
        if error.status().is_server_error() {
            // The route template, never the path: `/user/api-keys/{key_or_hash}`
            // may carry a secret.
            log::error!(
                "[{request_id}] {} {}: {error}",
                res.request().method(),
                res.request()
                    .match_pattern()
                    .as_deref()
                    .unwrap_or("unmatched")
            );
        }
        // Only the body is the dialect's: headers the handler or actix set
        // (405's `Allow`, `WWW-Authenticate`, `Cache-Control`) are kept.
        let kept: Vec<_> = res
            .headers()
            .iter()
            .filter(|(name, _)| **name != CONTENT_TYPE && **name != CONTENT_LENGTH)
            .map(|(name, value)| (name.clone(), value.clone()))
            .collect();
        let mut rendered = dialect.render(error, &request_id);
        if let Error::RateLimited { retry_after_secs } = error {
            rendered
                .headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(*retry_after_secs));
        }
        res = res.into_response(rendered);
        for (name, value) in kept {
            res.headers_mut().append(name, value);
        }
    }

    if let Ok(value) = HeaderValue::from_str(&request_id) {
        res.headers_mut().insert(REQUEST_ID, value);
    }
    let elapsed = started.elapsed();
    if let Some(state) = res.request().app_data::<web::Data<AppState>>() {
        // A successful write may revoke a key or deactivate a user: the next
        // request must not be answered from a cached authentication.
        let read_only = verification
            || matches!(
                *res.request().method(),
                Method::GET | Method::HEAD | Method::OPTIONS
            );
        if !read_only && res.status().is_success() {
            state.auth_cache.clear();
        }
    }
    let route = res.request().match_pattern();
    let route = route.as_deref().unwrap_or("unmatched");
    if let Some(state) = res.request().app_data::<web::Data<AppState>>() {
        state.metrics.observe_request(
            route,
            res.request().method().as_str(),
            res.status(),
            elapsed,
        );
    }
    access_log(&res, &request_id, route, elapsed);
    Ok(res)
}

/// One line per request. Only the route template is logged, never the path or
/// query string, which could hold a key.
fn access_log(
    res: &ServiceResponse<BoxBody>,
    request_id: &str,
    route: &str,
    elapsed: std::time::Duration,
) {
    if !log::log_enabled!(target: "keyward::access", log::Level::Info) {
        return;
    }
    let req = res.request();
    let tenant = req
        .headers()
        .get("tenant")
        .and_then(|v| v.to_str().ok())
        .filter(|t| crate::tenants::valid_name(t))
        .unwrap_or("-");
    log::info!(
        target: "keyward::access",
        "{request_id} tenant={tenant} {} {} {} {:.3}ms",
        req.method(),
        route,
        res.status().as_u16(),
        elapsed.as_secs_f64() * 1000.0,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dialect_is_chosen_by_path() {
        assert_eq!(Dialect::of("/user/api-keys"), Dialect::Estuary);
        assert_eq!(Dialect::of("/user"), Dialect::Estuary);
        assert_eq!(Dialect::of("/users"), Dialect::ProblemDetails);
        assert_eq!(Dialect::of("/v1/user-api-keys"), Dialect::ProblemDetails);
    }

    #[test]
    fn fresh_request_ids_are_distinct_hex() {
        let (a, b) = (new_request_id(), new_request_id());
        assert_ne!(a, b);
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()) && sane_request_id(&a));
    }

    #[test]
    fn request_ids() {
        assert!(sane_request_id("6f1c2a-abc_1.2:3"));
        assert!(!sane_request_id(""));
        assert!(!sane_request_id("a b"));
        assert!(!sane_request_id("a\nb"));
        assert!(!sane_request_id(&"a".repeat(129)));
    }
}
