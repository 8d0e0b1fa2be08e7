//! `/v1/auth`: is this key good, whose is it, may it do this? Asked by reverse
//! proxies (nginx `auth_request`, Caddy `forward_auth`, Traefik, Envoy) and by
//! services, on every request of the tenant's own APIs (API.md section 8).
//!
//! - Any of the seven usual methods, any path below `/v1/auth`; the body is
//!   never read (the 64 KiB limit does not apply, see `api::context`).
//! - Order: 401 (authentication, and 429 before it when throttled), then 400
//!   for an unknown `scope`, then 403 for a missing one. So a caller that
//!   cannot authenticate learns nothing about the scope names it sends.
//! - Every answer carries `Cache-Control: no-store`; a 401 carries
//!   `WWW-Authenticate`. The error bodies are the middleware's problem details.
//! - The hot path: a cached authentication does no database work, the answer
//!   is serialized straight from the caller, and no header value is copied twice.

use actix_web::http::header::{
    HeaderName, HeaderValue, ALLOW, CACHE_CONTROL, CONTENT_TYPE, WWW_AUTHENTICATE,
};
use actix_web::http::{Method, StatusCode};
use actix_web::{web, HttpMessage, HttpRequest, HttpResponse};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Serialize, Serializer};
use utoipa::openapi::path::Operation;
use utoipa::openapi::PathItem;
use utoipa::{Modify, ToSchema};

use crate::access::{Caller, Identity};
use crate::analytics::{CountedKey, Outcome};
use crate::api::context::{RATELIMIT, RATELIMIT_POLICY};
use crate::api::Timestamp;
use crate::auth::Verifying;
use crate::error::Error;
use crate::error::UsageRefusal;
use crate::keys::Scope;
use crate::limiter::{self, Exhausted, Spent, WindowState};
use crate::AppState;

/// The methods a proxy may forward; anything else is 405.
const METHODS: [Method; 7] = [
    Method::GET,
    Method::HEAD,
    Method::POST,
    Method::PUT,
    Method::PATCH,
    Method::DELETE,
    Method::OPTIONS,
];
const ALLOWED: &str = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS";

pub const TENANT: HeaderName = HeaderName::from_static("x-keyward-tenant");
pub const USER_ID: HeaderName = HeaderName::from_static("x-keyward-user-id");
pub const KEY_ID: HeaderName = HeaderName::from_static("x-keyward-key-id");
pub const SCOPES: HeaderName = HeaderName::from_static("x-keyward-scopes");
pub const ROLES: HeaderName = HeaderName::from_static("x-keyward-roles");

const NO_STORE: HeaderValue = HeaderValue::from_static("no-store");
const CHALLENGE: HeaderValue = HeaderValue::from_static("Bearer realm=\"keyward\"");

/// The message of a `scope` that names no scope.
pub const SCOPE_UNKNOWN: &str =
    "Each scope must be one of: public_api, user_key_management, user_management.";

/// `/v1/auth` itself.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/v1/auth"));
}

/// Any path below `/v1/auth`: a pattern, so registered after the hot paths.
pub fn configure_below(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/v1/auth/{path:.*}"));
}

fn resource(pattern: &'static str) -> actix_web::Resource {
    METHODS
        .iter()
        .fold(crate::api::resource(pattern), |resource, m| {
            resource.route(web::method(m.clone()).to(verify))
        })
        .default_service(web::to(method_not_allowed))
}

/// Whether `path` (as received, before normalization) is answered by [`verify`].
pub fn is_verification(path: &str) -> bool {
    path.strip_prefix("/v1/auth")
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// The 200 answer: who the key belongs to and what it may do.
#[derive(Serialize, ToSchema)]
#[schema(as = Verification)]
pub struct Verification<'a> {
    /// The tenant's name.
    tenant: &'a str,
    #[schema(format = Uuid)]
    user_id: &'a str,
    #[schema(format = Uuid)]
    key_id: &'a str,
    key_name: &'a str,
    /// All the key's scopes, not only the required ones.
    scopes: &'a [Scope],
    /// The user's roles.
    roles: &'a [String],
    /// When the key stops working (RFC 3339, UTC).
    #[serde(serialize_with = "rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    expires_at: DateTime<Utc>,
    /// The key's metadata (`{}` when none).
    #[schema(value_type = Object)]
    meta: &'a serde_json::Map<String, serde_json::Value>,
    /// Every rate limit of the key and of its user, after this verification.
    #[schema(value_type = Vec<RateLimitState>)]
    ratelimits: Vec<RateLimitState<'a>>,
    /// The credits left after this verification (`null`: unlimited).
    #[schema(value_type = CreditsLeft)]
    credits: CreditsLeft,
}

/// A rate limit's state after a passing verification.
#[derive(Serialize, ToSchema)]
pub struct RateLimitState<'a> {
    name: &'a str,
    /// Whose limit: the key's own, or its user's (shared by all its keys).
    #[schema(value_type = String, example = "key")]
    scope: &'static str,
    limit: u64,
    remaining: u64,
    /// The end of the current window (RFC 3339, UTC).
    #[schema(value_type = String, format = DateTime)]
    reset: Reset,
}

/// An instant in Unix ms, serialized as RFC 3339 UTC straight into the
/// answer: to the second like every instant of the API when it is whole (a
/// window of whole seconds ends on one), with its milliseconds otherwise.
pub struct Reset(i64);

impl Serialize for Reset {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let at = chrono::TimeZone::timestamp_millis_opt(&Utc, self.0)
            .single()
            .unwrap_or_default();
        if self.0.rem_euclid(1000) == 0 {
            serializer.collect_str(&Timestamp(at))
        } else {
            serializer.collect_str(&at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        }
    }
}

/// Credits left, of the key and of its user.
#[derive(Serialize, ToSchema, Default)]
pub struct CreditsLeft {
    key: Option<i64>,
    user: Option<i64>,
}

impl<'a> Verification<'a> {
    fn new(identity: &'a Identity, spent: &'a Spent) -> Self {
        let Usage {
            ratelimits,
            credits,
        } = Usage::new(spent);
        Self {
            tenant: &identity.tenant.name,
            user_id: &identity.user_id,
            key_id: &identity.key_id,
            key_name: &identity.key_name,
            scopes: &identity.scopes,
            roles: &identity.roles,
            expires_at: identity.key_expires_at,
            meta: &identity.key_meta,
            ratelimits,
            credits,
        }
    }
}

/// The members of a [`Verification`] that change with every verification:
/// its last two, in its order.
#[derive(Serialize)]
struct Usage<'a> {
    ratelimits: Vec<RateLimitState<'a>>,
    credits: CreditsLeft,
}

impl<'a> Usage<'a> {
    fn new(spent: &'a Spent) -> Self {
        Self {
            ratelimits: spent
                .ratelimits
                .iter()
                .map(|w| RateLimitState {
                    name: &w.name,
                    scope: w.scope.as_str(),
                    limit: w.limit,
                    remaining: w.remaining,
                    reset: Reset(w.reset_ms),
                })
                .collect(),
            credits: CreditsLeft {
                key: spent.key_credits,
                user: spent.user_credits,
            },
        }
    }
}

/// What every answer for one authentication shares, prepared once with it
/// ([`Caller::prepared`]): the headers that say whose key it is, the body of
/// a verification that spent nothing, and that body's start, up to the
/// members of [`Usage`].
struct Prepared {
    headers: [(HeaderName, HeaderValue); 5],
    plain: Bytes,
    /// `plain` up to and with the comma before `"ratelimits"`.
    head: Bytes,
}

impl Prepared {
    const NAME: &'static str = "v1.verification";

    fn of(identity: &Identity) -> Result<Self, Error> {
        let unspent = Spent::default();
        let plain = json(&Verification::new(identity, &unspent), 512)?;
        let usage = json(&Usage::new(&unspent), 64)?;
        // `{"ratelimits":...}` without its `{` ends `plain`: what comes before is the head.
        let members = usage.get(1..).unwrap_or_default();
        let head = match plain.strip_suffix(members) {
            Some(head) => Bytes::copy_from_slice(head),
            None => {
                return Err(Error::Internal(
                    "verification answer: usage not last".into(),
                ))
            }
        };
        Ok(Self {
            headers: [
                (TENANT, header_value(&identity.tenant.name)?),
                (USER_ID, header_value(&identity.user_id)?),
                (KEY_ID, header_value(&identity.key_id)?),
                (SCOPES, joined(identity.scopes.iter().map(|s| s.as_str()))?),
                (ROLES, joined(identity.roles.iter().map(String::as_str))?),
            ],
            plain: Bytes::from(plain),
            head,
        })
    }

    /// The body of a verification that spent `spent`: the shared bytes
    /// when it spent from no limit, else the head and its usage.
    fn body(&self, spent: &Spent) -> Result<Bytes, Error> {
        if spent.ratelimits.is_empty()
            && spent.key_credits.is_none()
            && spent.user_credits.is_none()
        {
            return Ok(self.plain.clone());
        }
        let usage = json(&Usage::new(spent), 256)?;
        let mut body = Vec::with_capacity(self.head.len() + usage.len());
        body.extend_from_slice(&self.head);
        body.extend_from_slice(usage.get(1..).unwrap_or_default());
        Ok(Bytes::from(body))
    }
}

fn json(value: &impl Serialize, capacity: usize) -> Result<Vec<u8>, Error> {
    let mut out = Vec::with_capacity(capacity);
    serde_json::to_writer(&mut out, value)
        .map_err(|e| Error::Internal(format!("verification answer: {e}")))?;
    Ok(out)
}

/// Checks the key against the `scope` query (default `public_api`).
///
/// Also answers `HEAD`, `POST`, `PUT`, `PATCH`, `DELETE` and `OPTIONS` (without
/// a body for `HEAD`), and any path below `/v1/auth` (`/v1/auth/orders/42`), for
/// proxies that forward the original method or path. A request body is ignored.
#[utoipa::path(
    get,
    path = "/v1/auth",
    operation_id = "verifyKey",
    tag = "verification",
    params(
        ("scope" = Option<Vec<Scope>>, Query, style = Form, explode,
            description = "Scopes the key must all hold: repeated (`scope=a&scope=b`) or \
                comma-separated (`scope=a,b`). Default `public_api`."),
        ("cost" = Option<u32>, Query, minimum = 0, maximum = 1000,
            description = "What this verification spends from every rate limit and credit \
                balance of the key and its user (API.md section 9). Default 1."),
    ),
    responses(
        (status = 200, description = "The key authenticates and holds every required scope.",
            body = Verification,
            headers(
                ("X-Keyward-Tenant" = String, description = "The tenant's name."),
                ("X-Keyward-User-Id" = String, description = "The key's user."),
                ("X-Keyward-Key-Id" = String, description = "The key."),
                ("X-Keyward-Scopes" = String, description = "The key's scopes, comma-separated."),
                ("X-Keyward-Roles" = String, description = "The user's roles, comma-separated."),
                ("Cache-Control" = String, description = "`no-store`, on every answer."),
                ("RateLimit-Policy" = String, description = "`\"name\";q=LIMIT;w=SECONDS` of \
                    the rate limit with the fewest remaining, when the key or its user has one."),
                ("RateLimit" = String, description = "`\"name\";r=REMAINING;t=SECONDS` of \
                    that rate limit."),
            )),
        (status = 400, description = "`scope` names an unknown scope, or `cost` is not an \
            integer from 0 to 1000."),
        (status = 401, description = "As every endpoint's 401, with `WWW-Authenticate: Bearer \
            realm=\"keyward\"`.",
            headers(("WWW-Authenticate" = String, description = "`Bearer realm=\"keyward\"`."))),
        (status = 403, description = "The key lacks a required scope (`title` names it), or \
            is used from an address not in its `allowed_ips` (`title`: `Key not allowed from \
            this address`)."),
        (status = 429, description = "Too many failed authentications from this address, or \
            a rate limit or the credits of the key or its user ran out: `title` names which \
            (`Rate limit <name> exceeded`, `Usage credits exhausted`); `Retry-After` says when \
            it comes back (absent for credits that never refill); a rate limit's answer also \
            carries `RateLimit-Policy` and `RateLimit`.",
            headers(
                ("Retry-After" = u64, description = "Whole seconds, at least 1."),
                ("RateLimit-Policy" = String, description = "For a rate limit."),
                ("RateLimit" = String, description = "For a rate limit."),
            )),
        (status = 503),
    ),
)]
pub async fn verify(req: HttpRequest, caller: Result<Verifying, Error>) -> HttpResponse {
    let caller = match caller {
        Ok(Verifying(caller)) => caller,
        Err(error) => {
            // A key found in the tenant but revoked, expired or of an inactive user.
            let found = req.extensions().get::<CountedKey>().cloned();
            if let Some(key) = found.filter(|_| error.status() == StatusCode::UNAUTHORIZED) {
                count(&req, &key.tenant_id, &key.key_id, Outcome::Invalid);
            }
            return refusal(error);
        }
    };
    let cost = match authorize(&req, &caller) {
        Ok(cost) => cost,
        Err(error) => {
            if error.status() == StatusCode::FORBIDDEN {
                count(&req, &caller.tenant.id, &caller.key_id, Outcome::Forbidden);
            }
            return refusal(error);
        }
    };
    let spent = match spend(&req, &caller, cost).await {
        Ok(spent) => spent,
        Err((error, outcome)) => {
            if let Some(outcome) = outcome {
                count(&req, &caller.tenant.id, &caller.key_id, outcome);
            }
            return refusal(error);
        }
    };
    match answer(&req, &caller, &spent) {
        Ok(response) => {
            count(&req, &caller.tenant.id, &caller.key_id, Outcome::Valid);
            response
        }
        Err(error) => refusal(error),
    }
}

/// Spends `cost` from the key's and its user's limits (nothing when they
/// have none): a refusal comes with the outcome it counts as.
async fn spend(
    req: &HttpRequest,
    caller: &Caller,
    cost: i64,
) -> Result<Spent, (Error, Option<Outcome>)> {
    if caller.usage.is_empty() {
        return Ok(Spent::default());
    }
    let Some(state) = req.app_data::<web::Data<AppState>>() else {
        return Err((Error::Internal("application state missing".into()), None));
    };
    match state.spend(&caller.usage, cost).await {
        Ok(Ok(spent)) => Ok(spent),
        Ok(Err(exhausted)) => {
            let now_ms = state.clock.now().timestamp_millis();
            let outcome = match exhausted {
                Exhausted::Window(_) => Outcome::RateLimited,
                Exhausted::Credits { .. } => Outcome::UsageExceeded,
            };
            Err((usage_refusal(&exhausted, now_ms), Some(outcome)))
        }
        Err(error) => Err((error, None)),
    }
}

/// The 429 of a counter that ran out.
fn usage_refusal(exhausted: &Exhausted, now_ms: i64) -> Error {
    Error::UsageExceeded(Box::new(match exhausted {
        Exhausted::Window(window) => UsageRefusal {
            title: format!("Rate limit {} exceeded", window.name),
            retry_after_secs: Some(limiter::seconds_until(window.reset_ms, now_ms)),
            ratelimit: Some(ratelimit_fields(window, now_ms)),
        },
        Exhausted::Credits { retry_after_secs } => UsageRefusal {
            title: "Usage credits exhausted".into(),
            retry_after_secs: *retry_after_secs,
            ratelimit: None,
        },
    }))
}

/// `RateLimit-Policy` and `RateLimit` of `window`, as
/// draft-ietf-httpapi-ratelimit-headers writes them; seconds rounded up.
fn ratelimit_fields(window: &WindowState, now_ms: i64) -> (String, String) {
    let up = |ms: i64| (ms.max(0) + 999) / 1000;
    (
        format!(
            "\"{}\";q={};w={}",
            window.name,
            window.limit,
            up(window.duration_ms as i64)
        ),
        format!(
            "\"{}\";r={};t={}",
            window.name,
            window.remaining,
            up(window.reset_ms - now_ms)
        ),
    )
}

/// Counts the answer for the key (usage analytics, and `/metrics`): in
/// memory only, see `analytics`.
fn count(req: &HttpRequest, tenant_id: &str, key_id: &str, outcome: Outcome) {
    if let Some(state) = req.app_data::<web::Data<AppState>>() {
        state.metrics.verification(outcome);
        state
            .tally
            .record(tenant_id, key_id, outcome, state.clock.now());
    }
}

/// 400 for an unknown scope or a bad `cost`, then 403 naming the first
/// missing scope, then 403 for an address the key may not be used from.
/// Returns the cost.
fn authorize(req: &HttpRequest, caller: &Caller) -> Result<i64, Error> {
    let (scopes, cost) = asked(req.query_string())?;
    for scope in scopes {
        caller.require_scope(scope)?;
    }
    caller.check_address(caller.origin.client)?;
    Ok(cost)
}

/// The message of a bad `cost`.
pub const COST_INVALID: &str = "cost must be an integer from 0 to 1000.";

/// What the query asks, read in one pass (parameter names case-insensitive,
/// as every query parameter's): the scopes `scope` names, in [`Scope::ALL`]'s
/// order, `public_api` when there is no `scope`; and `cost`, at most once,
/// digits from 0 to 1000, 1 when absent. Each value of `scope`, and each item
/// of a comma-separated one, must be a scope's exact name: an empty or padded
/// one is 400, as the document's enum says; a bad scope is named before a bad
/// cost.
fn asked(query: &str) -> Result<(impl Iterator<Item = Scope>, i64), Error> {
    let mut required = [false; Scope::ALL.len()];
    let (mut cost, mut bad_scope, mut bad_cost) = (None, false, false);
    for (name, value) in form_urlencoded::parse(query.as_bytes()) {
        if name.eq_ignore_ascii_case("scope") {
            for item in value.split(',') {
                match Scope::parse(item) {
                    Some(scope) => required[scope as usize] = true,
                    None => bad_scope = true,
                }
            }
        } else if name.eq_ignore_ascii_case("cost") {
            let parsed = value
                .bytes()
                .all(|b| b.is_ascii_digit())
                .then(|| value.parse::<i64>().ok())
                .flatten()
                .filter(|n| (0..=1000).contains(n));
            match (cost, parsed) {
                (None, Some(n)) => cost = Some(n),
                _ => bad_cost = true,
            }
        }
    }
    if bad_scope {
        return Err(Error::invalid("scope", SCOPE_UNKNOWN));
    }
    if bad_cost {
        return Err(Error::invalid("cost", COST_INVALID));
    }
    if !required.contains(&true) {
        required[Scope::PublicApi as usize] = true;
    }
    let scopes = Scope::ALL
        .into_iter()
        .filter(move |s| required[*s as usize]);
    Ok((scopes, cost.unwrap_or(1)))
}

fn answer(req: &HttpRequest, caller: &Caller, spent: &Spent) -> Result<HttpResponse, Error> {
    let prepared = caller.prepared(Prepared::NAME, Prepared::of)?;
    let mut response = match *req.method() {
        Method::HEAD => HttpResponse::new(StatusCode::OK),
        _ => HttpResponse::with_body(StatusCode::OK, prepared.body(spent)?).map_into_boxed_body(),
    };
    // Straight into the head's map: a builder would check and convert each pair.
    let headers = response.headers_mut();
    if let Some(window) = spent.tightest() {
        let now_ms = req
            .app_data::<web::Data<AppState>>()
            .map_or(0, |s| s.clock.now().timestamp_millis());
        let (policy, state) = ratelimit_fields(window, now_ms);
        headers.insert(RATELIMIT_POLICY, header_value(&policy)?);
        headers.insert(RATELIMIT, header_value(&state)?);
    }
    headers.insert(CACHE_CONTROL, NO_STORE);
    for (name, value) in &prepared.headers {
        headers.insert(name.clone(), value.clone());
    }
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(response)
}

fn header_value(value: &str) -> Result<HeaderValue, Error> {
    HeaderValue::from_str(value).map_err(|_| Error::Internal("not a header value".into()))
}

/// `a,b,c` as one header value, built in the buffer the value then owns.
fn joined<'a>(items: impl Iterator<Item = &'a str>) -> Result<HeaderValue, Error> {
    let mut out = String::with_capacity(64);
    for (i, item) in items.enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(item);
    }
    HeaderValue::try_from(out).map_err(|_| Error::Internal("not a header value".into()))
}

/// An error answer: the middleware renders the body; these headers stay.
fn refusal(error: Error) -> HttpResponse {
    let unauthorized = error.status() == StatusCode::UNAUTHORIZED;
    let mut response = HttpResponse::from_error(error);
    let headers = response.headers_mut();
    headers.insert(CACHE_CONTROL, NO_STORE);
    if unauthorized {
        headers.insert(WWW_AUTHENTICATE, CHALLENGE);
    }
    response
}

async fn method_not_allowed() -> HttpResponse {
    let mut response = refusal(Error::MethodNotAllowed);
    response
        .headers_mut()
        .insert(ALLOW, HeaderValue::from_static(ALLOWED));
    response
}

/// `2026-07-15T00:00:00Z`, written straight into the JSON (no `String`), to the
/// second like every instant of the API (see `api::timestamp`).
fn rfc3339<S: Serializer>(t: &DateTime<Utc>, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_str(&Timestamp(*t))
}

/// The document shows [`verify`] under every method it answers, each with its
/// own operation id; `HEAD`'s 200 without a body.
pub struct EveryMethod;

impl Modify for EveryMethod {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let Some(item) = openapi.paths.paths.get_mut("/v1/auth") else {
            return;
        };
        let Some(get) = item.get.clone() else {
            return;
        };
        let copy = |suffix: &str| {
            let mut operation = get.clone();
            operation.operation_id = Some(format!("verifyKey{suffix}"));
            operation
        };
        let mut head: Operation = copy("Head");
        if let Some(utoipa::openapi::RefOr::T(ok)) = head.responses.responses.get_mut("200") {
            ok.content.clear();
        }
        let PathItem {
            head: h,
            post,
            put,
            patch,
            delete,
            options,
            ..
        } = item;
        *h = Some(head);
        *post = Some(copy("Post"));
        *put = Some(copy("Put"));
        *patch = Some(copy("Patch"));
        *delete = Some(copy("Delete"));
        *options = Some(copy("Options"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cost_is_one_integer_from_0_to_1000_and_a_bad_scope_is_named_first() {
        let cost = |query: &str| asked(query).map(|(_, cost)| cost);
        assert_eq!(cost("").unwrap(), 1);
        assert_eq!(cost("scope=public_api&COST=0").unwrap(), 0);
        assert_eq!(cost("cost=1000").unwrap(), 1000);
        for bad in [
            "cost=1001",
            "cost=-1",
            "cost=+1",
            "cost=",
            "cost=1&cost=1",
            "cost=1e2",
        ] {
            assert!(
                matches!(cost(bad), Err(Error::Invalid(ref e)) if e.contains_key("cost")),
                "{bad}"
            );
        }
        assert!(matches!(
            cost("cost=x&scope=nope"),
            Err(Error::Invalid(ref e)) if e.contains_key("scope")
        ));
    }

    #[test]
    fn a_prepared_answer_is_the_verification_serialized() {
        let identity = Identity {
            tenant: crate::tenants::Tenant {
                id: "t".into(),
                name: "acme".into(),
                max_key_lifetime_days: 365,
            },
            user_id: "u\"1".into(),
            roles: vec!["Administrators".into()],
            key_id: "k".into(),
            key_name: "na\u{e9}me \\ \"quoted\"".into(),
            key_expires_at: chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap(),
            key_meta: std::sync::Arc::new(
                serde_json::json!({"plan": "gold", "n": [1, 2]})
                    .as_object()
                    .unwrap()
                    .clone(),
            ),
            scopes: vec![Scope::PublicApi, Scope::UserManagement],
            allowed_ips: Default::default(),
            usage: Default::default(),
        };
        let window = |name: &str, remaining| WindowState {
            name: name.into(),
            scope: crate::limiter::Scope::Key,
            limit: 100,
            remaining,
            reset_ms: 1_800_000_000_500,
            duration_ms: 1000,
        };
        let prepared = Prepared::of(&identity).unwrap();
        for spent in [
            Spent::default(),
            Spent {
                ratelimits: vec![window("second", 99), window("minute", 3)],
                key_credits: Some(7),
                user_credits: None,
            },
            Spent {
                ratelimits: vec![],
                key_credits: None,
                user_credits: Some(0),
            },
        ] {
            let whole = serde_json::to_vec(&Verification::new(&identity, &spent)).unwrap();
            assert_eq!(prepared.body(&spent).unwrap(), whole);
        }
    }

    fn required(query: &str) -> Result<Vec<Scope>, Error> {
        asked(query).map(|(scopes, _)| scopes.collect())
    }

    #[test]
    fn scopes_are_repeated_or_comma_separated_and_default_to_public_api() {
        use Scope::*;
        assert_eq!(required("").unwrap(), [PublicApi]);
        assert_eq!(required("other=1").unwrap(), [PublicApi]);
        assert_eq!(required("scope=user_management").unwrap(), [UserManagement]);
        let both = [UserKeyManagement, UserManagement];
        assert_eq!(
            required("scope=user_management,user_key_management").unwrap(),
            both
        );
        assert_eq!(
            required("scope=user_management&Scope=user_key_management").unwrap(),
            both
        );
        assert_eq!(
            required("scope=public_api&scope=public_api").unwrap(),
            [PublicApi]
        );
        for bad in [
            "scope=admin",
            "scope=public_api,nope",
            "scope=PUBLIC_API",
            "scope=public_api&scope=x",
            "scope=",
            "scope=public_api,",
            "scope=public_api%2C+user_management",
            "scope=+public_api",
        ] {
            assert!(matches!(required(bad), Err(Error::Invalid(_))), "{bad}");
        }
    }

    #[test]
    fn only_auth_and_what_is_below_it_is_verification() {
        for path in ["/v1/auth", "/v1/auth/", "/v1/auth/orders/42"] {
            assert!(is_verification(path), "{path}");
        }
        for path in ["/v1/authx", "/v1/aut", "/v1/user-api-keys", "/auth"] {
            assert!(!is_verification(path), "{path}");
        }
    }

    #[test]
    fn expiry_is_rfc3339_utc_to_the_second() {
        use chrono::TimeZone;
        #[derive(Serialize)]
        struct T(#[serde(serialize_with = "rfc3339")] DateTime<Utc>);
        let t = Utc.with_ymd_and_hms(2026, 7, 15, 0, 0, 0).unwrap()
            + chrono::TimeDelta::microseconds(1500);
        assert_eq!(
            serde_json::to_string(&T(t)).unwrap(),
            "\"2026-07-15T00:00:00Z\""
        );
    }
}
