//! The one middleware every request passes: it gives the request an id, turns
//! every error response into the dialect's error body (stamped with that id),
//! logs 5xx details server-side, and writes the access log line.

use std::sync::Arc;
use std::time::Instant;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue, CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER};
use actix_web::http::Method;
use actix_web::middleware::Next;
use actix_web::{web, HttpMessage, HttpResponse};

use crate::error::Error;

/// draft-ietf-httpapi-ratelimit-headers' two fields (API.md section 9).
pub const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
pub const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");
use crate::{AppState, MAX_BODY_BYTES};

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Only for an app built without state (never in practice): the compiled-in default.
const DEFAULT_KEY_PREFIX: &str = "kw";

pub use crate::ground::RequestId;

/// Which error shape a path speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// RFC 9457 problem details (`/v1`, and everything that is not `/user`).
    ProblemDetails,
    /// `{"error":{"code","reason","details"}}` (`/user`).
    Estuary,
    /// SCIM's error schema, `application/scim+json` (`/scim`).
    Scim,
}

impl Dialect {
    pub fn of(path: &str) -> Self {
        if path == "/user" || path.starts_with("/user/") {
            Dialect::Estuary
        } else if path == "/scim" || path.starts_with("/scim/") {
            Dialect::Scim
        } else {
            Dialect::ProblemDetails
        }
    }

    pub(crate) fn render(self, error: &Error, request_id: &str) -> HttpResponse {
        match self {
            Dialect::ProblemDetails => super::v1::problem(error, request_id),
            Dialect::Estuary => super::estuary::envelope(error),
            Dialect::Scim => super::scim::error_response(error),
        }
    }
}

/// A fresh request id: 128 bits from a CSPRNG (the thread's, seeded from the
/// operating system, so no system call per request), as 32 hex characters in
/// one allocation. Unguessable, and it says nothing about how many requests
/// came before.
pub(crate) fn new_request_id() -> Arc<str> {
    use rand::Rng;
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let n = rand::thread_rng().gen::<u128>();
    // 32 lower-case hex digits, as `{:032x}` writes them, without the formatter.
    let mut digits = [0u8; 32];
    for (i, digit) in digits.iter_mut().enumerate() {
        *digit = HEX[(n >> (124 - 4 * i)) as usize & 15];
    }
    std::str::from_utf8(&digits).map_or_else(|_| Arc::from("-"), Arc::from)
}

/// An incoming id is kept if it is a short token that is safe to log and echo:
/// never one that holds something shaped like a secret of this deployment.
fn sane_request_id(id: &str, key_prefix: &str) -> bool {
    (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
        && !crate::keys::secret::resembles_secret(id, key_prefix)
}

pub async fn middleware(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let started = Instant::now();
    let key_prefix = req
        .app_data::<web::Data<AppState>>()
        .map_or(DEFAULT_KEY_PREFIX, |state| {
            state.settings.key_prefix.as_str()
        });
    let request_id = req
        .headers()
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|id| sane_request_id(id, key_prefix))
        .map_or_else(new_request_id, Arc::from);
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
    super::tidy_path(&mut req);
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
        // 501 is an answer (a feature not offered), not a failure to log.
        if error.status().is_server_error() && !matches!(error, Error::NotImplemented(_)) {
            // The route template, never the path: `/user/api-keys/{key_or_hash}`
            // may carry a secret.
            log::error!(
                "[{request_id}] {} {}: {error}",
                res.request().method(),
                route_of(res.request())
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
        if let Error::UsageExceeded(refusal) = error {
            let headers = rendered.headers_mut();
            if let Some(secs) = refusal.retry_after_secs {
                headers.insert(RETRY_AFTER, HeaderValue::from(secs));
            }
            if let Some((policy, state)) = &refusal.ratelimit {
                for (name, value) in [(RATELIMIT_POLICY, policy), (RATELIMIT, state)] {
                    if let Ok(value) = HeaderValue::from_str(value) {
                        headers.insert(name, value);
                    }
                }
            }
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
    let route = route_of(res.request());
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

/// The route template `req` matched, or `unmatched`.
fn route_of(req: &actix_web::HttpRequest) -> &'static str {
    req.app_data::<super::Route>()
        .map_or("unmatched", |route| route.0)
}

/// The request's access line (see [`super::access_log`]).
fn access_log(
    res: &ServiceResponse<BoxBody>,
    request_id: &str,
    route: &str,
    elapsed: std::time::Duration,
) {
    let req = res.request();
    super::access_log::line(
        request_id,
        req.headers().get(crate::auth::TENANT_HEADER),
        req.method().as_str(),
        route,
        res.status().as_u16(),
        elapsed,
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
        assert_eq!(Dialect::of("/scim/v2/acme/Users"), Dialect::Scim);
        assert_eq!(Dialect::of("/scimitar"), Dialect::ProblemDetails);
    }

    #[test]
    fn fresh_request_ids_are_distinct_hex() {
        let (a, b) = (new_request_id(), new_request_id());
        assert_ne!(a, b);
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()) && sane_request_id(&a, "kw"));
        // No shared prefix as with a per-process prefix and a counter: over a
        // thousand ids, every leading byte value shows up several times.
        let firsts: std::collections::HashSet<String> = (0..1000)
            .map(|_| new_request_id()[..2].to_owned())
            .collect();
        assert!(firsts.len() > 200, "{}", firsts.len());
    }

    #[test]
    fn request_ids() {
        assert!(sane_request_id("6f1c2a-abc_1.2:3", "kw"));
        assert!(!sane_request_id("", "kw"));
        assert!(!sane_request_id("a b", "kw"));
        assert!(!sane_request_id("a\nb", "kw"));
        assert!(!sane_request_id(&"a".repeat(129), "kw"));
    }

    #[test]
    fn request_ids_shaped_like_secrets_are_refused() {
        let secret = crate::keys::secret::Secret::generate("kw");
        let secret = secret.expose();
        assert!(!sane_request_id(secret, "kw"));
        assert!(!sane_request_id(&format!("req-{secret}-1"), "kw"));
        // A mistyped checksum is still most of a secret.
        let mut typo = secret.to_owned();
        typo.pop();
        typo.push('_');
        assert!(!sane_request_id(&typo, "kw"));
        assert!(!sane_request_id(&secret.to_ascii_uppercase(), "kw"));
        // Another deployment's prefix is this deployment's business.
        let other = crate::keys::secret::Secret::generate("acme");
        assert!(!sane_request_id(other.expose(), "acme"));
        assert!(sane_request_id(other.expose(), "kw"));
        assert!(sane_request_id("kw_short-id", "kw"));
    }
}
