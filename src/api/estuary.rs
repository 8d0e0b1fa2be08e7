//! Estuary's user API: `/user/...`, with Estuary's `{"error":{...}}` envelope.
//!
//! Every call acts on the calling key's own user. Key management needs the
//! `user_key_management` scope, exactly as in `/v1`: the core enforces it.

pub mod duration;

use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use serde::Serialize;
use utoipa::{IntoParams, ToSchema};

use crate::access::Caller;
use crate::analytics;
use crate::api::input::{parse_uuid, QueryParams};
use crate::api::{json_bytes, json_ok, timestamp};
use crate::audit::Event;
use crate::error::Error;
use crate::keys::{
    self, secret, ApiKey, Expiry, KeyRef, KeyState, KeyStats, NewKey, OwnKeys, Rendering, Scope,
};
use crate::limits::{self, RateLimit};
use crate::paging::Page;
use crate::users::User;
use crate::AppState;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        crate::api::resource("/user/api-keys")
            .route(web::get().to(list))
            .route(web::post().to(create)),
    )
    .service(crate::api::resource("/user/api-keys/{key_or_hash}").route(web::delete().to(revoke)))
    .service(crate::api::resource("/user/stats").route(web::get().to(stats)))
    .service(crate::api::resource("/user/export").route(web::get().to(export)));
}

/// Estuary's error body, `{"error":{"code","reason","details"}}`.
#[derive(Serialize, ToSchema)]
#[schema(as = ErrorEnvelope)]
pub struct ErrorEnvelope {
    error: ErrorBody,
}

#[derive(Serialize, ToSchema)]
#[schema(as = EstuaryError)]
pub struct ErrorBody {
    /// The response's status code.
    #[schema(minimum = 400, maximum = 599)]
    code: u16,
    reason: Reason,
    /// What went wrong, for a person.
    details: String,
}

/// Estuary's error reasons.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[schema(as = EstuaryReason)]
pub enum Reason {
    ErrAuthMissing,
    ErrInvalidAuth,
    ErrInvalidToken,
    ErrTokenExpired,
    ErrNotAuthorized,
    ErrInvalidInput,
    ErrNotFound,
    ErrRateLimited,
    ErrInternalServer,
}

/// Renders `error` as Estuary does: `{"error":{"code","reason","details"}}`.
pub fn envelope(error: &Error) -> HttpResponse {
    let status = error.status();
    let (reason, details): (Reason, String) = match error {
        Error::TenantMissing => (
            Reason::ErrAuthMissing,
            "tenant header missing or empty".into(),
        ),
        Error::TenantUnknown => (Reason::ErrInvalidAuth, "unknown tenant specified".into()),
        Error::KeyMissing => (Reason::ErrAuthMissing, "no api key was provided".into()),
        Error::AuthHeaderMalformed => (
            Reason::ErrInvalidAuth,
            "malformed or conflicting authorization headers".into(),
        ),
        Error::KeyInvalid => (Reason::ErrInvalidToken, "api key does not exist".into()),
        Error::KeyExpired => (Reason::ErrTokenExpired, "api key expired".into()),
        Error::Forbidden(why) => (Reason::ErrNotAuthorized, (*why).into()),
        Error::Invalid(fields) => (
            Reason::ErrInvalidInput,
            fields
                .values()
                .flatten()
                .map(String::as_str)
                .collect::<Vec<_>>()
                .join(" "),
        ),
        Error::Conflict(why) => (Reason::ErrInvalidInput, (*why).into()),
        Error::PayloadTooLarge => (
            Reason::ErrInvalidInput,
            "request body larger than 64 KiB".into(),
        ),
        Error::UnsupportedMediaType => (
            Reason::ErrInvalidInput,
            "request body must be application/json".into(),
        ),
        Error::RequestTimeout => (
            Reason::ErrInvalidInput,
            "the request was not received in time".into(),
        ),
        Error::UriTooLong => (
            Reason::ErrInvalidInput,
            "request target longer than 8 KiB".into(),
        ),
        Error::HeadersTooLarge => (
            Reason::ErrInvalidInput,
            "request header fields too large".into(),
        ),
        Error::NotFound => (Reason::ErrNotFound, "not found".into()),
        Error::NotImplemented(why) => (Reason::ErrNotFound, (*why).into()),
        Error::MethodNotAllowed => (Reason::ErrNotFound, "method not allowed".into()),
        Error::RateLimited { .. } => (
            Reason::ErrRateLimited,
            "too many failed authentications".into(),
        ),
        Error::UsageExceeded(refusal) => (Reason::ErrRateLimited, refusal.title.clone()),
        Error::Unavailable(_) => (Reason::ErrInternalServer, "service unavailable".into()),
        Error::Database(_) | Error::Migration(_) | Error::Config(_) | Error::Internal(_) => {
            (Reason::ErrInternalServer, "internal server error".into())
        }
    };
    HttpResponse::build(status).json(ErrorEnvelope {
        error: ErrorBody {
            code: status.as_u16(),
            reason,
            details,
        },
    })
}

/// RFC 3339 UTC, with a fraction only when there is one (as Go marshals time).
fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// Estuary's key object.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = EstuaryKey)]
pub struct TokenView<'a> {
    /// The key's name.
    label: &'a str,
    /// The first instant at which the key no longer works (RFC 3339, UTC).
    #[schema(format = DateTime)]
    expiry: String,
    /// Base64url (no padding) of the secret's SHA-256.
    #[schema(pattern = "^[A-Za-z0-9_-]{43}$")]
    token_hash: &'a str,
    /// The secret, in the response that creates it; empty everywhere else.
    token: &'a str,
    /// Always `false`.
    is_session: bool,
    #[schema(format = Uuid)]
    id: &'a str,
    scopes: &'a [Scope],
}

/// The query of `POST /user/api-keys`.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct NewTokenQuery {
    /// A Go duration (`300h`, `1h30m`, `1.5h`, `90s`; units `ns us µs ms s m h`), or
    /// `false` for the tenant's maximum lifetime. Default 30 days (or the maximum, if
    /// shorter).
    #[param(example = "300h")]
    pub expiry: Option<String>,
    /// `all` (default): the calling key's scopes; `upload`: `public_api` only.
    #[param(inline)]
    pub perms: Option<Perms>,
    /// The key's name, 3 to 255 characters. Default `estuary key`.
    #[param(min_length = 3, max_length = 255)]
    pub label: Option<String>,
}

/// The values of `perms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum Perms {
    All,
    Upload,
}

/// The name of a key made without `label`.
const DEFAULT_LABEL: &str = "estuary key";

impl NewTokenQuery {
    /// Reads the query. `perms` must name one of its values when given.
    fn parse(query: &QueryParams) -> Result<Self, Error> {
        let perms = match query.get("perms") {
            None => None,
            Some("all") => Some(Perms::All),
            Some("upload") => Some(Perms::Upload),
            Some(_) => return Err(Error::invalid("perms", "perms must be 'all' or 'upload'.")),
        };
        Ok(Self {
            expiry: query.get("expiry").map(str::to_owned),
            perms,
            label: query.get("label").map(str::to_owned),
        })
    }
}

impl<'a> TokenView<'a> {
    /// About how long one key is as JSON (with a few scopes).
    const TYPICAL_BYTES: usize = 220;

    fn new(key: &'a ApiKey, token: &'a str) -> Self {
        Self {
            label: &key.name,
            expiry: rfc3339(key.expires_at),
            token_hash: &key.token_hash,
            token,
            is_session: false,
            id: &key.id,
            scopes: &key.scopes,
        }
    }
}

/// Lists the caller's keys that are not revoked (expired ones included), oldest first.
#[utoipa::path(
    get,
    path = "/user/api-keys",
    operation_id = "estuaryListKeys",
    tag = "estuary",
    responses(
        (status = 200, description = "The caller's keys; `token` is empty.", body = [TokenView]),
        (status = 403, description = "The calling key lacks `user_key_management`."),
    ),
)]
pub async fn list(caller: Caller, state: web::Data<AppState>) -> Result<HttpResponse, Error> {
    let now = state.clock.now();
    let rendering = Rendering {
        name: "estuary",
        render: render_tokens,
    };
    let body = state
        .own_keys(OwnKeys::of(&caller, now, rendering)?)
        .await?;
    Ok(json_ok(body))
}

/// A listing's JSON, secrets left empty.
fn render_tokens(keys: &[ApiKey]) -> Result<bytes::Bytes, Error> {
    let views: Vec<TokenView> = keys.iter().map(|k| TokenView::new(k, "")).collect();
    json_bytes(&views, views.len() * TokenView::TYPICAL_BYTES)
}

/// Keys made without `expiry` last this long (or the tenant's maximum, if shorter).
const DEFAULT_LIFETIME: TimeDelta = TimeDelta::days(30);

/// Reads `expiry`: a Go duration, `false` for the tenant's maximum, or nothing for the default.
fn expiry(raw: Option<&str>, max_days: i32, now: DateTime<Utc>) -> Result<Expiry, Error> {
    let max = TimeDelta::days(i64::from(max_days));
    // No trimming: Go's ParseDuration refuses surrounding white space too.
    let lifetime = match raw {
        None | Some("") => DEFAULT_LIFETIME.min(max),
        Some("false") => max,
        Some(raw) => {
            let nanos = duration::parse_go_duration(raw).map_err(|e| {
                Error::invalid("expiry", &format!("expiry is not a valid duration: {e}"))
            })?;
            if nanos <= 0 {
                return Err(Error::invalid(
                    "expiry",
                    "expiry must be a positive duration.",
                ));
            }
            // Instants are kept to the microsecond, as both databases store them.
            TimeDelta::microseconds(nanos / 1_000)
        }
    };
    now.checked_add_signed(lifetime)
        .map(Expiry::At)
        .ok_or_else(|| Error::invalid("expiry", "expiry is too far in the future."))
}

/// Creates a key for the caller.
#[utoipa::path(
    post,
    path = "/user/api-keys",
    operation_id = "estuaryCreateKey",
    tag = "estuary",
    params(NewTokenQuery),
    responses(
        (status = 200, description = "The key, with its secret in `token`.", body = TokenView),
        (status = 400, description = "`expiry` unparseable, zero, negative or beyond the \
            tenant's maximum; or a bad `perms` or `label`."),
        (status = 403, description = "The calling key lacks `user_key_management`."),
    ),
)]
pub async fn create(
    caller: Caller,
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, Error> {
    let query = NewTokenQuery::parse(&QueryParams::parse(req.query_string()))?;
    let now = state.clock.now();
    let expiry = expiry(
        query.expiry.as_deref(),
        caller.tenant.max_key_lifetime_days,
        now,
    )?;
    let scopes = match query.perms {
        None | Some(Perms::All) => caller.scopes.clone(),
        Some(Perms::Upload) => vec![Scope::PublicApi],
    };
    let name = query.label.unwrap_or_else(|| DEFAULT_LABEL.to_owned());
    let new = NewKey::new(caller.user_id.clone(), name, expiry, Some(scopes));
    let settings = state.settings.clone();
    let (key, secret) = state
        .db(move |conn| keys::create_for(conn, &caller, new, &settings.key_prefix, now))
        .await?;
    Ok(HttpResponse::Ok().json(TokenView::new(&key, secret.expose())))
}

/// Revokes one of the caller's own keys, named by its id, its secret, or its
/// `tokenHash`.
#[utoipa::path(
    delete,
    path = "/user/api-keys/{key_or_hash}",
    operation_id = "estuaryRevokeKey",
    tag = "estuary",
    params(("key_or_hash" = String, Path, description = "The key's id, secret or `tokenHash`.")),
    responses(
        (status = 200, description = "Revoked; no body."),
        (status = 403, description = "The calling key lacks `user_key_management`."),
        (status = 404, description = "No such key among the caller's own (even for \
            Administrators), or it is already revoked."),
    ),
)]
pub async fn revoke(
    caller: Caller,
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, Error> {
    let raw = req.match_info().query("key_or_hash");
    let key = match parse_uuid(raw) {
        Some(id) => KeyRef::Id(id),
        None if secret::well_formed(raw, &state.settings.key_prefix) => {
            KeyRef::Hash(secret::hash(raw))
        }
        None => KeyRef::Hash(raw.to_owned()),
    };
    let now = state.clock.now();
    state
        .db(move |conn| keys::revoke_own(conn, &caller, &key, now))
        .await?;
    Ok(HttpResponse::Ok().finish())
}

/// Counts of the caller's keys; each is in exactly one of active, expired and revoked.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = EstuaryStats)]
pub struct StatsView {
    total_keys: u64,
    active_keys: u64,
    expired_keys: u64,
    revoked_keys: u64,
    /// The latest last use of any of the caller's keys, or `null`.
    #[schema(format = DateTime, required = true)]
    last_key_used_at: Option<String>,
    /// Verifications (`/v1/auth`) of the caller's keys in the last 24 hours, by outcome.
    verifications_last24h: VerificationsView,
}

/// Verifications by outcome.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = EstuaryVerifications)]
pub struct VerificationsView {
    valid: i64,
    forbidden: i64,
    rate_limited: i64,
    usage_exceeded: i64,
    invalid: i64,
}

/// Counts the caller's keys.
#[utoipa::path(
    get,
    path = "/user/stats",
    operation_id = "estuaryStats",
    tag = "estuary",
    responses(
        (status = 200, description = "The counts.", body = StatsView),
    ),
)]
pub async fn stats(caller: Caller, state: web::Data<AppState>) -> Result<HttpResponse, Error> {
    let now = state.clock.now();
    let (keys, counts) = state
        .read(move |conn| {
            let (tenant_id, user_id) = (&caller.tenant.id, &caller.user_id);
            let keys = keys::all_of_user(conn, tenant_id, user_id)?;
            Ok((
                keys,
                analytics::user_last_day(conn, tenant_id, user_id, now)?,
            ))
        })
        .await?;
    let stats = KeyStats::of(&keys, now);
    Ok(HttpResponse::Ok().json(StatsView {
        total_keys: stats.total,
        active_keys: stats.active,
        expired_keys: stats.expired,
        revoked_keys: stats.revoked,
        last_key_used_at: stats.last_used_at.map(rfc3339),
        verifications_last24h: VerificationsView {
            valid: counts.valid,
            forbidden: counts.forbidden,
            rate_limited: counts.rate_limited,
            usage_exceeded: counts.usage_exceeded,
            invalid: counts.invalid,
        },
    }))
}

/// Everything keyward stores about a user.
#[derive(Serialize, ToSchema)]
#[schema(as = EstuaryExport)]
pub struct ExportView<'a> {
    #[schema(format = DateTime)]
    exported_at: String,
    tenant: ExportTenant<'a>,
    user: ExportUser<'a>,
    /// Every key ever made, revoked ones included.
    keys: Vec<ExportKey<'a>>,
    /// The events whose actor is the user, or whose target is the user or one of its keys.
    audit_events: Vec<ExportEvent<'a>>,
}

/// The user's profile.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = EstuaryExportUser)]
pub struct ExportUser<'a> {
    #[schema(format = Uuid)]
    id: &'a str,
    email: &'a str,
    name: &'a str,
    roles: &'a [String],
    active: bool,
    #[schema(format = DateTime)]
    created_on: String,
    #[schema(format = DateTime, required = true)]
    updated_on: Option<String>,
    /// Rate limits shared by all the user's keys: `{name, limit, duration_ms}` each.
    #[schema(value_type = Vec<Object>)]
    ratelimits: &'a [RateLimit],
    /// `null` (unlimited) or `{remaining, refill}`: the balance when exported.
    #[schema(value_type = Option<Object>, required = true)]
    credits: serde_json::Value,
}

impl<'a> From<&'a User> for ExportUser<'a> {
    fn from(user: &'a User) -> Self {
        Self {
            id: &user.id,
            email: &user.email,
            name: &user.name,
            roles: &user.roles,
            active: user.active,
            created_on: timestamp(user.created_at),
            updated_on: user.updated_at.map(timestamp),
            ratelimits: &user.limits.ratelimits,
            credits: limits::credits_view(user.limits.credits.as_ref(), user.credits_remaining),
        }
    }
}

/// An event that concerns the user.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = EstuaryExportEvent)]
pub struct ExportEvent<'a> {
    #[schema(format = Uuid)]
    id: &'a str,
    #[schema(format = DateTime)]
    at: String,
    /// `key.created`, `key.revoked`, `key.rotated`, `user.created`, `user.updated`
    /// or `user.deactivated`.
    action: &'a str,
    /// `null` for the CLI.
    #[schema(format = Uuid, required = true)]
    actor_user_id: Option<&'a str>,
    #[schema(format = Uuid, required = true)]
    actor_key_id: Option<&'a str>,
    #[schema(format = Uuid)]
    target_id: &'a str,
    /// On `key.rotated`: the new key.
    #[schema(format = Uuid, required = true)]
    new_key_id: Option<&'a str>,
    #[schema(required = true)]
    request_id: Option<&'a str>,
    #[schema(required = true)]
    ip: Option<&'a str>,
}

impl<'a> From<&'a Event> for ExportEvent<'a> {
    fn from(event: &'a Event) -> Self {
        Self {
            id: &event.id,
            at: timestamp(event.at),
            action: &event.action,
            actor_user_id: event.actor_user_id.as_deref(),
            actor_key_id: event.actor_key_id.as_deref(),
            target_id: &event.target_id,
            new_key_id: event.new_key_id.as_deref(),
            request_id: event.request_id.as_deref(),
            ip: event.ip.as_deref(),
        }
    }
}

#[derive(Serialize, ToSchema)]
#[schema(as = EstuaryExportTenant)]
pub struct ExportTenant<'a> {
    #[schema(format = Uuid)]
    id: &'a str,
    name: &'a str,
}

/// A key's metadata: no secret, no hash.
#[derive(Serialize, ToSchema)]
#[schema(as = EstuaryExportKey)]
pub struct ExportKey<'a> {
    #[schema(format = Uuid)]
    id: &'a str,
    name: &'a str,
    scopes: &'a [Scope],
    #[schema(inline)]
    state: ExportKeyState,
    #[schema(format = DateTime)]
    created_on: String,
    #[schema(format = DateTime, required = true)]
    updated_on: Option<String>,
    /// The first instant at which the key no longer works.
    #[schema(format = DateTime)]
    expiry: String,
    /// The key's last valid day (UTC).
    expiration_date: chrono::NaiveDate,
    #[schema(format = DateTime, required = true)]
    revoked_on: Option<String>,
    #[schema(format = DateTime, required = true)]
    last_used_on: Option<String>,
    /// What the tenant attached to the key; `{}` when nothing.
    #[schema(value_type = Object)]
    meta: &'a serde_json::Map<String, serde_json::Value>,
    /// The key's rate limits: `{name, limit, duration_ms}` each.
    #[schema(value_type = Vec<Object>)]
    ratelimits: &'a [RateLimit],
    /// `null` (unlimited) or `{remaining, refill}`: the balance when exported.
    #[schema(value_type = Option<Object>, required = true)]
    credits: serde_json::Value,
    /// Where the key may be used from (CIDRs; `[]`: anywhere).
    allowed_ips: Vec<String>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ExportKeyState {
    Active,
    Expired,
    Revoked,
}

impl<'a> ExportKey<'a> {
    fn new(key: &'a ApiKey, now: DateTime<Utc>) -> Self {
        let state = match key.state(now) {
            KeyState::Active => ExportKeyState::Active,
            KeyState::Expired => ExportKeyState::Expired,
            KeyState::Revoked => ExportKeyState::Revoked,
        };
        Self {
            id: &key.id,
            name: &key.name,
            scopes: &key.scopes,
            state,
            created_on: timestamp(key.created_at),
            updated_on: key.updated_at.map(timestamp),
            expiry: rfc3339(key.expires_at),
            expiration_date: key.expiration_date(),
            revoked_on: key.revoked_at.map(timestamp),
            last_used_on: key.last_used_at.map(timestamp),
            meta: key.meta.as_map(),
            ratelimits: &key.limits.ratelimits,
            credits: limits::credits_view(key.limits.credits.as_ref(), key.credits_remaining),
            allowed_ips: key.allowed_ips.to_strings(),
        }
    }
}

/// Everything keyward stores about the caller's user, never a secret or a hash.
#[utoipa::path(
    get,
    path = "/user/export",
    operation_id = "estuaryExport",
    tag = "estuary",
    responses(
        (status = 200, description = "The user's profile, keys and audit events.",
            body = ExportView),
    ),
)]
pub async fn export(caller: Caller, state: web::Data<AppState>) -> Result<HttpResponse, Error> {
    let now = state.clock.now();
    let tenant = caller.tenant.clone();
    let (user, keys, events) = state
        .db(move |conn| {
            let (tenant_id, user_id) = (&caller.tenant.id, &caller.user_id);
            // The caller's user exists: authentication just found it.
            let mut user = crate::users::find(conn, tenant_id, user_id)?.ok_or(Error::NotFound)?;
            crate::users::with_balances(conn, tenant_id, std::slice::from_mut(&mut user), now)?;
            let mut keys = keys::all_of_user(conn, tenant_id, user_id)?;
            keys::with_balances(conn, tenant_id, &mut keys, now)?;
            let events = crate::audit::list(conn, tenant_id, Some(user_id), &Page::default())?;
            Ok((user, keys, events))
        })
        .await?;
    Ok(HttpResponse::Ok().json(ExportView {
        exported_at: timestamp(now),
        tenant: ExportTenant {
            id: &tenant.id,
            name: &tenant.name,
        },
        user: ExportUser::from(&user),
        keys: keys.iter().map(|key| ExportKey::new(key, now)).collect(),
        audit_events: events.iter().map(ExportEvent::from).collect(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn expiry_defaults_and_bounds() {
        let now = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let at = |raw, max| match expiry(raw, max, now) {
            Ok(Expiry::At(at)) => Ok(at - now),
            Ok(other) => panic!("{other:?}"),
            Err(e) => Err(e.to_string()),
        };
        assert_eq!(at(None, 365), Ok(TimeDelta::days(30)));
        assert_eq!(at(Some(""), 365), Ok(TimeDelta::days(30)));
        assert_eq!(at(None, 7), Ok(TimeDelta::days(7)));
        assert_eq!(at(Some("false"), 365), Ok(TimeDelta::days(365)));
        assert_eq!(at(Some("300h"), 365), Ok(TimeDelta::hours(300)));
        assert_eq!(at(Some("1h30m"), 365), Ok(TimeDelta::minutes(90)));
        assert_eq!(at(Some("1.5h"), 365), Ok(TimeDelta::minutes(90)));
        assert_eq!(at(Some("1500ns"), 365), Ok(TimeDelta::microseconds(1)));
        for bad in [
            "0",
            "-5m",
            "10d",
            "abc",
            "1h 30m",
            "9223372036854775808ns",
            " 1h",
            "1h ",
            "1h\t",
            "\n1h",
        ] {
            assert!(at(Some(bad), 365).is_err(), "{bad}");
        }
    }
}
