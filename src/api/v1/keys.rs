//! `/v1/user-api-keys`: list, create, read and revoke keys.

use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use serde::Serialize;
use serde_json::Value;

use crate::api::input::{parse_uuid, JsonObject, OptionalJsonObject, QueryParams};
use crate::api::timestamp;
use crate::auth::Caller;
use crate::error::{Error, FieldErrors};
use crate::keys::{
    self, ApiKey, Expiry, KeyFilter, KeyState, NewKey, Page, Rotation, Scope, SCOPES_INVALID,
    TAKE_RANGE, USER_ID_INVALID,
};
use crate::AppState;

/// The fixed message of a DELETE whose id names no key the caller may see.
const ID_INVALID: &str = "ID is either missing, incorrect, or does not exist in the database.";

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/v1/user-api-keys")
            .route(web::get().to(list))
            .route(web::post().to(create))
            .route(web::delete().to(revoke_without_id)),
    )
    .service(
        web::resource("/v1/user-api-keys/{id}")
            .route(web::get().to(get))
            .route(web::delete().to(revoke)),
    )
    .route("/v1/user-api-keys/{id}/rotate", web::post().to(rotate));
}

/// The key object of this dialect.
#[derive(Serialize)]
pub struct KeyView<'a> {
    id: &'a str,
    user_id: &'a str,
    name: &'a str,
    expiration_date: NaiveDate,
    created_on: String,
    updated_on: Option<String>,
    scopes: &'a [Scope],
    last_used_on: Option<String>,
}

impl<'a> From<&'a ApiKey> for KeyView<'a> {
    fn from(key: &'a ApiKey) -> Self {
        Self {
            id: &key.id,
            user_id: &key.user_id,
            name: &key.name,
            expiration_date: key.expiration_date(),
            created_on: timestamp(key.created_at),
            updated_on: key.updated_at.map(timestamp),
            scopes: &key.scopes,
            last_used_on: key.last_used_at.map(timestamp),
        }
    }
}

/// A created key: the key object plus its secret, shown this once.
#[derive(Serialize)]
struct CreatedKey<'a> {
    #[serde(flatten)]
    view: KeyView<'a>,
    key: &'a str,
}

pub fn push(errors: &mut FieldErrors, field: &str, message: &str) {
    errors
        .entry(field.to_owned())
        .or_default()
        .push(message.to_owned());
}

/// Reads the optional query parameter `name` with `parse`; a value that does
/// not parse is recorded in `errors` under `name` with `message`.
pub fn param<T>(
    query: &QueryParams,
    name: &str,
    parse: impl FnOnce(&str) -> Option<T>,
    message: &str,
    errors: &mut FieldErrors,
) -> Option<T> {
    let raw = query.get(name)?;
    let value = parse(raw.trim());
    if value.is_none() {
        push(errors, name, message);
    }
    value
}

/// `take` and `start_with`, shared by every paged listing of this dialect.
pub fn page(query: &QueryParams, missing_cursor: &str, errors: &mut FieldErrors) -> Page {
    let take = |raw: &str| raw.parse::<u32>().ok().filter(|n| TAKE_RANGE.contains(n));
    Page {
        take: param(
            query,
            "take",
            take,
            "take must be an integer from 1 to 1000.",
            errors,
        ),
        start_with: param(query, "start_with", parse_uuid, missing_cursor, errors),
    }
}

fn date_param(raw: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(raw, "%Y-%m-%d")
        .ok()
        .filter(|_| raw.len() == 10)
}

async fn list(
    caller: Caller,
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, Error> {
    let query = QueryParams::parse(req.query_string());
    let mut errors = FieldErrors::new();
    let state_filter = |raw: &str| match raw {
        "active" => Some(KeyState::Active),
        "expired" => Some(KeyState::Expired),
        _ => None,
    };
    let filter = KeyFilter {
        user_id: param(&query, "UserId", parse_uuid, USER_ID_INVALID, &mut errors),
        state: param(
            &query,
            "state",
            state_filter,
            "state must be 'active' or 'expired'.",
            &mut errors,
        ),
        expires_before: param(
            &query,
            "expires_before",
            date_param,
            "expires_before must be a date in the format YYYY-MM-DD.",
            &mut errors,
        ),
        last_used_before: param(
            &query,
            "last_used_before",
            date_param,
            "last_used_before must be a date in the format YYYY-MM-DD.",
            &mut errors,
        ),
    };
    let page = page(
        &query,
        "No key with this ID is in the listing.",
        &mut errors,
    );
    if !errors.is_empty() {
        return Err(Error::Invalid(errors));
    }
    let now = state.clock.now();
    let keys = state
        .db(move |conn| keys::list_for(conn, &caller, &filter, &page, now))
        .await
        .map_err(|e| match e {
            Error::Invalid(mut errors) => {
                if let Some(messages) = errors.remove("user_id") {
                    errors.insert("UserId".to_owned(), messages);
                }
                Error::Invalid(errors)
            }
            e => e,
        })?;
    Ok(HttpResponse::Ok().json(keys.iter().map(KeyView::from).collect::<Vec<_>>()))
}

/// Reads `expiration_date`: `YYYY-MM-DD`, or an RFC 3339 / ISO date-time whose UTC date counts.
fn parse_expiration_date(raw: &str) -> Option<NaiveDate> {
    let raw = raw.trim();
    if raw.len() == 10 {
        return NaiveDate::parse_from_str(raw, "%Y-%m-%d").ok();
    }
    DateTime::parse_from_rfc3339(raw)
        .map(|t| t.with_timezone(&Utc).date_naive())
        .or_else(|_| NaiveDateTime::parse_from_str(raw, "%Y-%m-%dT%H:%M:%S%.f").map(|t| t.date()))
        .ok()
}

/// Reads the POST body into a [`NewKey`], naming every field that is wrong.
fn new_key(body: &JsonObject) -> Result<NewKey, Error> {
    let mut errors = FieldErrors::new();
    let name = match body.get("name") {
        Some(Value::String(name)) => {
            if let Err(message) = keys::check_name(name) {
                push(&mut errors, "name", message);
            }
            Some(name.clone())
        }
        Some(_) => {
            push(&mut errors, "name", "Name must be a string.");
            None
        }
        None => {
            push(&mut errors, "name", "Name is required.");
            None
        }
    };
    let user_id = body
        .get("user_id")
        .and_then(Value::as_str)
        .and_then(parse_uuid);
    if user_id.is_none() {
        push(&mut errors, "user_id", USER_ID_INVALID);
    }
    let expiration_date = match body.get("expiration_date") {
        Some(Value::String(raw)) => {
            let date = parse_expiration_date(raw);
            if date.is_none() {
                push(
                    &mut errors,
                    "expiration_date",
                    "Expiration date must be a date in the format YYYY-MM-DD.",
                );
            }
            date
        }
        Some(_) => {
            push(
                &mut errors,
                "expiration_date",
                "Expiration date must be a date in the format YYYY-MM-DD.",
            );
            None
        }
        None => {
            push(
                &mut errors,
                "expiration_date",
                "Expiration date is required.",
            );
            None
        }
    };
    let scopes = match body.get("scopes") {
        None => Some(vec![Scope::PublicApi]),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| item.as_str().and_then(Scope::parse))
            .collect::<Option<Vec<_>>>()
            .filter(|scopes| !scopes.is_empty()),
        Some(_) => None,
    };
    if scopes.is_none() {
        push(&mut errors, "scopes", SCOPES_INVALID);
    }
    match (name, user_id, expiration_date, scopes) {
        (Some(name), Some(user_id), Some(date), Some(scopes)) if errors.is_empty() => Ok(NewKey {
            user_id,
            name,
            expiry: Expiry::EndOfDay(date),
            scopes,
        }),
        _ => Err(Error::Invalid(errors)),
    }
}

async fn create(
    caller: Caller,
    state: web::Data<AppState>,
    body: JsonObject,
) -> Result<HttpResponse, Error> {
    let new = new_key(&body)?;
    let now = state.clock.now();
    let settings = state.settings.clone();
    let (key, secret) = state
        .db(move |conn| keys::create_for(conn, &caller, new, &settings.key_prefix, now))
        .await?;
    Ok(HttpResponse::Created().json(CreatedKey {
        view: KeyView::from(&key),
        key: secret.expose(),
    }))
}

async fn get(
    caller: Caller,
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, Error> {
    let id = parse_uuid(req.match_info().query("id"));
    let now = state.clock.now();
    let key = state
        .db(move |conn| match id {
            Some(id) => keys::get_for(conn, &caller, &id, now),
            // A malformed id names no key, but the scope check still comes first.
            None => caller
                .require_scope(Scope::UserKeyManagement)
                .and(Err(Error::NotFound)),
        })
        .await?;
    Ok(HttpResponse::Ok().json(KeyView::from(&key)))
}

async fn revoke(
    caller: Caller,
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, Error> {
    let id = parse_uuid(req.match_info().query("id"));
    let now = state.clock.now();
    state
        .db(move |conn| match id {
            Some(id) => keys::revoke_for(conn, &caller, &id, now),
            None => caller
                .require_scope(Scope::UserKeyManagement)
                .and(Err(Error::NotFound)),
        })
        .await
        .map_err(|e| match e {
            Error::NotFound => Error::invalid("id", ID_INVALID),
            e => e,
        })?;
    Ok(HttpResponse::Ok().json(serde_json::json!({"result": "OK"})))
}

/// `DELETE /v1/user-api-keys` names no key.
async fn revoke_without_id(caller: Caller) -> Result<HttpResponse, Error> {
    caller.require_scope(Scope::UserKeyManagement)?;
    Err(Error::invalid("id", ID_INVALID))
}

/// Reads the rotation body: `grace_seconds` (default 0) and an optional `expiration_date`.
fn rotation(body: &JsonObject) -> Result<Rotation, Error> {
    let mut errors = FieldErrors::new();
    let grace_seconds = match body.get("grace_seconds") {
        None => Some(0),
        Some(value) => value
            .as_i64()
            .filter(|n| (0..=keys::MAX_GRACE_SECONDS).contains(n)),
    };
    if grace_seconds.is_none() {
        push(
            &mut errors,
            "grace_seconds",
            "grace_seconds must be an integer from 0 to 604800.",
        );
    }
    let expiration_date = match body.get("expiration_date") {
        None => Some(None),
        Some(value) => value.as_str().and_then(parse_expiration_date).map(Some),
    };
    if expiration_date.is_none() {
        push(
            &mut errors,
            "expiration_date",
            "Expiration date must be a date in the format YYYY-MM-DD.",
        );
    }
    match (grace_seconds, expiration_date) {
        (Some(grace_seconds), Some(expiration_date)) => Ok(Rotation {
            grace_seconds,
            expiration_date,
        }),
        _ => Err(Error::Invalid(errors)),
    }
}

async fn rotate(
    caller: Caller,
    state: web::Data<AppState>,
    req: HttpRequest,
    body: OptionalJsonObject,
) -> Result<HttpResponse, Error> {
    let id = parse_uuid(req.match_info().query("id"));
    let rotation = rotation(&body.0)?;
    let now = state.clock.now();
    let settings = state.settings.clone();
    let (key, secret) = state
        .db(move |conn| match id {
            Some(id) => keys::rotate_for(conn, &caller, &id, &rotation, &settings.key_prefix, now),
            None => caller
                .require_scope(Scope::UserKeyManagement)
                .and(Err(Error::NotFound)),
        })
        .await
        .map_err(|e| match e {
            Error::NotFound => Error::invalid("id", ID_INVALID),
            e => e,
        })?;
    Ok(HttpResponse::Created().json(CreatedKey {
        view: KeyView::from(&key),
        key: secret.expose(),
    }))
}
