//! Estuary's user API: `/user/...`, with Estuary's `{"error":{...}}` envelope.
//!
//! Every call acts on the calling key's own user. Key management needs the
//! `user_key_management` scope, exactly as in `/v1`: the core enforces it.

pub mod duration;

use actix_web::http::header::RETRY_AFTER;
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use serde::Serialize;
use serde_json::json;

use crate::api::input::{parse_uuid, QueryParams};
use crate::api::timestamp;
use crate::api::v1::audit::EventView;
use crate::auth::{secret, Caller};
use crate::error::Error;
use crate::keys::{self, ApiKey, Expiry, KeyFilter, KeyRef, KeyStats, NewKey, Page, Scope};
use crate::AppState;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/user/api-keys")
            .route(web::get().to(list))
            .route(web::post().to(create)),
    )
    .route("/user/api-keys/{key_or_hash}", web::delete().to(revoke))
    .route("/user/stats", web::get().to(stats))
    .route("/user/export", web::get().to(export));
}

/// Renders `error` as Estuary does: `{"error":{"code","reason","details"}}`.
pub fn envelope(error: &Error) -> HttpResponse {
    let status = error.status();
    let (reason, details): (&str, String) = match error {
        Error::TenantMissing => ("ERR_AUTH_MISSING", "tenant header missing or empty".into()),
        Error::TenantUnknown => ("ERR_INVALID_AUTH", "unknown tenant specified".into()),
        Error::KeyMissing => ("ERR_AUTH_MISSING", "no api key was provided".into()),
        Error::AuthHeaderMalformed => (
            "ERR_INVALID_AUTH",
            "malformed or conflicting authorization headers".into(),
        ),
        Error::KeyInvalid => ("ERR_INVALID_TOKEN", "api key does not exist".into()),
        Error::KeyExpired => ("ERR_TOKEN_EXPIRED", "api key expired".into()),
        Error::Forbidden(why) => ("ERR_NOT_AUTHORIZED", (*why).into()),
        Error::Invalid(fields) => (
            "ERR_INVALID_INPUT",
            fields
                .values()
                .flatten()
                .map(String::as_str)
                .collect::<Vec<_>>()
                .join(" "),
        ),
        Error::Conflict(why) => ("ERR_INVALID_INPUT", (*why).into()),
        Error::PayloadTooLarge => (
            "ERR_INVALID_INPUT",
            "request body larger than 64 KiB".into(),
        ),
        Error::UnsupportedMediaType => (
            "ERR_INVALID_INPUT",
            "request body must be application/json".into(),
        ),
        Error::NotFound => ("ERR_NOT_FOUND", "not found".into()),
        Error::MethodNotAllowed => ("ERR_NOT_FOUND", "method not allowed".into()),
        Error::RateLimited { .. } => ("ERR_RATE_LIMITED", "too many failed authentications".into()),
        Error::Unavailable(_) => ("ERR_INTERNAL_SERVER", "service unavailable".into()),
        Error::Database(_) | Error::Migration(_) | Error::Config(_) | Error::Internal(_) => {
            ("ERR_INTERNAL_SERVER", "internal server error".into())
        }
    };
    let mut response = HttpResponse::build(status);
    if let Error::RateLimited { retry_after_secs } = error {
        response.insert_header((RETRY_AFTER, retry_after_secs.to_string()));
    }
    response
        .json(json!({ "error": { "code": status.as_u16(), "reason": reason, "details": details } }))
}

/// RFC 3339 UTC, with a fraction only when there is one (as Go marshals time).
fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// Estuary's key object.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TokenView<'a> {
    label: &'a str,
    expiry: String,
    token_hash: &'a str,
    /// The secret, in the response that creates it; empty everywhere else.
    token: &'a str,
    is_session: bool,
    id: &'a str,
    scopes: &'a [Scope],
}

impl<'a> TokenView<'a> {
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

async fn list(caller: Caller, state: web::Data<AppState>) -> Result<HttpResponse, Error> {
    let now = state.clock.now();
    let keys = state
        .db(move |conn| {
            let own = KeyFilter {
                user_id: Some(caller.user_id.clone()),
                ..KeyFilter::default()
            };
            keys::list_for(conn, &caller, &own, &Page::default(), now)
        })
        .await?;
    Ok(HttpResponse::Ok().json(
        keys.iter()
            .map(|k| TokenView::new(k, ""))
            .collect::<Vec<_>>(),
    ))
}

/// Keys made without `expiry` last this long (or the tenant's maximum, if shorter).
const DEFAULT_LIFETIME: TimeDelta = TimeDelta::days(30);

/// Reads `expiry`: a Go duration, `false` for the tenant's maximum, or nothing for the default.
fn expiry(raw: Option<&str>, max_days: i32, now: DateTime<Utc>) -> Result<Expiry, Error> {
    let max = TimeDelta::days(i64::from(max_days));
    let lifetime = match raw.map(str::trim) {
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

async fn create(
    caller: Caller,
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, Error> {
    let query = QueryParams::parse(req.query_string());
    let now = state.clock.now();
    let expiry = expiry(
        query.get("expiry"),
        caller.tenant.max_key_lifetime_days,
        now,
    )?;
    let scopes = match query.get("perms").map(str::trim) {
        None | Some("") | Some("all") => caller.scopes.clone(),
        Some("upload") => vec![Scope::PublicApi],
        Some(_) => return Err(Error::invalid("perms", "perms must be 'all' or 'upload'.")),
    };
    let name = query.get("label").unwrap_or("estuary key").to_owned();
    let new = NewKey {
        user_id: caller.user_id.clone(),
        name,
        expiry,
        scopes,
    };
    let settings = state.settings.clone();
    let (key, secret) = state
        .db(move |conn| keys::create_for(conn, &caller, new, &settings.key_prefix, now))
        .await?;
    Ok(HttpResponse::Ok().json(TokenView::new(&key, secret.expose())))
}

/// The path names a key by its id, its secret, or its `tokenHash`.
async fn revoke(
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

async fn stats(caller: Caller, state: web::Data<AppState>) -> Result<HttpResponse, Error> {
    let now = state.clock.now();
    let keys = state
        .db(move |conn| keys::all_of_user(conn, &caller.tenant.id, &caller.user_id))
        .await?;
    let stats = KeyStats::of(&keys, now);
    Ok(HttpResponse::Ok().json(json!({
        "totalKeys": stats.total,
        "activeKeys": stats.active,
        "expiredKeys": stats.expired,
        "revokedKeys": stats.revoked,
        "lastKeyUsedAt": stats.last_used_at.map(rfc3339),
    })))
}

/// Everything keyward stores about the caller's user, never a secret or a hash.
async fn export(caller: Caller, state: web::Data<AppState>) -> Result<HttpResponse, Error> {
    let now = state.clock.now();
    let tenant = caller.tenant.clone();
    let (user, keys, events) = state
        .db(move |conn| {
            let (tenant_id, user_id) = (&caller.tenant.id, &caller.user_id);
            let user = crate::users::find(conn, tenant_id, user_id)?.ok_or(Error::KeyInvalid)?;
            let keys = keys::all_of_user(conn, tenant_id, user_id)?;
            let events = crate::audit::list(conn, tenant_id, Some(user_id), &Page::default())?;
            Ok((user, keys, events))
        })
        .await?;
    let events: Vec<_> = events.iter().map(EventView::from).collect();
    let keys: Vec<_> = keys
        .iter()
        .map(|key| {
            let state = if key.is_revoked(now) {
                "revoked"
            } else if key.is_expired(now) {
                "expired"
            } else {
                "active"
            };
            json!({
                "id": key.id,
                "name": key.name,
                "scopes": key.scopes,
                "state": state,
                "created_on": timestamp(key.created_at),
                "updated_on": key.updated_at.map(timestamp),
                "expiry": rfc3339(key.expires_at),
                "expiration_date": key.expiration_date(),
                "revoked_on": key.revoked_at.map(timestamp),
                "last_used_on": key.last_used_at.map(timestamp),
            })
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({
        "exported_at": timestamp(now),
        "tenant": { "id": tenant.id, "name": tenant.name },
        "user": {
            "id": user.id,
            "email": user.email,
            "name": user.name,
            "roles": user.roles,
            "active": user.active,
            "created_on": timestamp(user.created_at),
            "updated_on": user.updated_at.map(timestamp),
        },
        "keys": keys,
        "audit_events": events,
    })))
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
        for bad in ["0", "-5m", "10d", "abc", "1h 30m", "9223372036854775808ns"] {
            assert!(at(Some(bad), 365).is_err(), "{bad}");
        }
    }
}
