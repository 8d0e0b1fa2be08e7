//! `/v1/user-api-keys`: list, create, read and revoke keys.

use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use utoipa::openapi::{ObjectBuilder, RefOr, Required, Schema, Type};
use utoipa::{IntoParams, Modify, PartialSchema, ToSchema};

use crate::api::input::{parse_uuid, path_id, JsonObject, OptionalJsonObject, QueryParams};
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
    .service(web::resource("/v1/user-api-keys/{id}/rotate").route(web::post().to(rotate)));
}

/// The key object of this dialect.
#[derive(Serialize, ToSchema)]
#[schema(as = Key)]
pub struct KeyView<'a> {
    #[schema(format = Uuid)]
    id: &'a str,
    #[schema(format = Uuid)]
    user_id: &'a str,
    name: &'a str,
    /// The key's last valid day (UTC); it is rejected from 00:00Z of the next day.
    expiration_date: NaiveDate,
    #[schema(format = DateTime)]
    created_on: String,
    /// `null` until the key is changed.
    #[schema(format = DateTime, required = true)]
    updated_on: Option<String>,
    scopes: &'a [Scope],
    /// The last successful authentication, accurate to about a minute; `null` if never used.
    #[schema(format = DateTime, required = true)]
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
#[derive(Serialize, ToSchema)]
#[schema(as = CreatedKey)]
pub struct CreatedKey<'a> {
    #[serde(flatten)]
    view: KeyView<'a>,
    /// The key's secret. It is not stored and is never shown again.
    key: &'a str,
}

/// The answer of a revocation or deactivation.
#[derive(Serialize, ToSchema)]
#[schema(as = ResultOk)]
pub struct ResultOk {
    #[schema(pattern = "^OK$")]
    result: &'static str,
}

pub const OK: ResultOk = ResultOk { result: "OK" };

/// The query of `GET /v1/user-api-keys`. Names are matched without regard to
/// case; the first occurrence of a repeated parameter counts.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct KeyListQuery {
    /// Only this user's keys: the caller's own, or anyone's for Administrators.
    #[param(rename = "UserId")]
    pub user_id: Option<uuid::Uuid>,
    /// Keys that are active, or expired, now.
    #[param(inline)]
    pub state: Option<KeyState>,
    /// Keys whose last valid instant is before 00:00Z of this date.
    pub expires_before: Option<NaiveDate>,
    /// Keys last used before 00:00Z of this date, or never.
    pub last_used_before: Option<NaiveDate>,
}

/// `take` and `start_with` of every paged listing of this dialect.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// At most this many items.
    #[param(minimum = 1, maximum = 1000)]
    pub take: Option<u32>,
    /// The id of the last item of the previous page (exclusive).
    pub start_with: Option<uuid::Uuid>,
}

/// The values of the `state` filter.
const STATES: [(&str, KeyState); 2] =
    [("active", KeyState::Active), ("expired", KeyState::Expired)];

fn state_filter(raw: &str) -> Option<KeyState> {
    STATES
        .iter()
        .find(|(name, _)| *name == raw)
        .map(|(_, state)| *state)
}

impl PartialSchema for KeyState {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some(STATES.map(|(name, _)| name)))
            .into()
    }
}

impl ToSchema for KeyState {}

/// The body of `POST /v1/user-api-keys`. Member names are matched without
/// regard to case or underscores (`user_id`, `UserId`); unknown members are ignored.
#[derive(ToSchema)]
#[schema(as = NewKey)]
pub struct NewKeyBody {
    #[schema(min_length = 3, max_length = 255)]
    pub name: String,
    /// An active user of the tenant: the caller itself, or anyone for Administrators.
    pub user_id: uuid::Uuid,
    /// The key's last valid day: from today to today + the tenant's maximum
    /// lifetime. An RFC 3339 date-time is also accepted (its UTC date counts).
    pub expiration_date: NaiveDate,
    /// Default `["public_api"]`; none the calling key lacks.
    #[schema(min_items = 1)]
    pub scopes: Option<Vec<Scope>>,
}

/// The body of a rotation; it may be omitted (see [`OptionalRotationBody`]).
#[derive(ToSchema)]
#[schema(as = KeyRotation)]
pub struct RotationBody {
    /// How long the old key keeps working. Default 0.
    #[schema(minimum = 0, maximum = 604800)]
    pub grace_seconds: Option<i64>,
    /// The new key's last valid day; default the old key's (capped by the
    /// tenant's maximum lifetime).
    pub expiration_date: Option<NaiveDate>,
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

/// Lists keys that are not revoked (expired ones included), oldest first.
///
/// Without `UserId`, every key of the tenant (Administrators only).
#[utoipa::path(
    get,
    path = "/v1/user-api-keys",
    operation_id = "listKeys",
    tag = "keys",
    params(KeyListQuery, PageQuery),
    responses(
        (status = 200, description = "The keys, oldest first.", body = [KeyView]),
        (status = 400, description = "A malformed filter or paging value, or a `UserId` that \
            is empty, malformed, or (for Administrators) names no user of the tenant."),
        (status = 401),
        (status = 403, description = "Not an Administrator, and no `UserId` or another user's; \
            or the calling key lacks `user_key_management`."),
        (status = 429),
        (status = 503),
    ),
)]
pub async fn list(
    caller: Caller,
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, Error> {
    let query = QueryParams::parse(req.query_string());
    let mut errors = FieldErrors::new();
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

/// Creates a key for the caller, or for anyone (Administrators).
#[utoipa::path(
    post,
    path = "/v1/user-api-keys",
    operation_id = "createKey",
    tag = "keys",
    request_body = NewKeyBody,
    responses(
        (status = 201, description = "The key, with its secret in `key`.", body = CreatedKey),
        (status = 400, description = "Every bad field, named; or `body` when it is not a \
            JSON object."),
        (status = 401),
        (status = 403, description = "The calling key lacks `user_key_management` or a \
            requested scope, or a non-Administrator acts for another user."),
        (status = 413),
        (status = 415),
        (status = 429),
        (status = 503),
    ),
)]
pub async fn create(
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

/// Reads a key.
#[utoipa::path(
    get,
    path = "/v1/user-api-keys/{id}",
    operation_id = "getKey",
    tag = "keys",
    params(("id" = String, Path, description = "The key's id.", format = Uuid)),
    responses(
        (status = 200, description = "The key.", body = KeyView),
        (status = 401),
        (status = 403, description = "The calling key lacks `user_key_management`."),
        (status = 404, description = "Unknown, revoked, of another tenant, or not visible \
            to the caller."),
        (status = 429),
        (status = 503),
    ),
)]
pub async fn get(
    caller: Caller,
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, Error> {
    let id = path_id(&req, "id");
    let now = state.clock.now();
    let key = state
        .db(move |conn| keys::get_for(conn, &caller, &id, now))
        .await?;
    Ok(HttpResponse::Ok().json(KeyView::from(&key)))
}

/// Revokes a key: it is rejected from the next request on.
#[utoipa::path(
    delete,
    path = "/v1/user-api-keys/{id}",
    operation_id = "revokeKey",
    tag = "keys",
    params(("id" = String, Path, description = "The key's id.", format = Uuid)),
    responses(
        (status = 200, description = "Revoked.", body = ResultOk),
        (status = 400, description = "`id`: the id is malformed, or names no key the \
            caller may see, or one already revoked."),
        (status = 401),
        (status = 403, description = "The calling key lacks `user_key_management`."),
        (status = 429),
        (status = 503),
    ),
)]
pub async fn revoke(
    caller: Caller,
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, Error> {
    let id = path_id(&req, "id");
    let now = state.clock.now();
    state
        .db(move |conn| keys::revoke_for(conn, &caller, &id, now))
        .await
        .map_err(|e| match e {
            Error::NotFound => Error::invalid("id", ID_INVALID),
            e => e,
        })?;
    Ok(HttpResponse::Ok().json(OK))
}

/// Marks the rotation's body as optional. utoipa makes a body optional only
/// when its type is an `Option`, which would also allow a JSON `null`, a 400.
pub struct OptionalRotationBody;

impl Modify for OptionalRotationBody {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let body = openapi
            .paths
            .paths
            .get_mut("/v1/user-api-keys/{id}/rotate")
            .and_then(|item| item.post.as_mut())
            .and_then(|operation| operation.request_body.as_mut());
        if let Some(body) = body {
            body.required = Some(Required::False);
        }
    }
}

/// Names no key: always the revocation's 400 (after authentication).
#[utoipa::path(
    delete,
    path = "/v1/user-api-keys",
    operation_id = "revokeKeyWithoutId",
    tag = "keys",
    responses(
        (status = 400, description = "`id`: no key is named."),
        (status = 401),
        (status = 403, description = "The calling key lacks `user_key_management`."),
        (status = 429),
        (status = 503),
    ),
)]
pub async fn revoke_without_id(caller: Caller) -> Result<HttpResponse, Error> {
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

/// Replaces a key by a new one with its user, name and scopes; the old key
/// keeps working for `grace_seconds`.
#[utoipa::path(
    post,
    path = "/v1/user-api-keys/{id}/rotate",
    operation_id = "rotateKey",
    tag = "keys",
    params(("id" = String, Path, description = "The id of the key to rotate.", format = Uuid)),
    request_body(content = RotationBody, description = "May be omitted."),
    responses(
        (status = 201, description = "The new key, with its secret in `key`.", body = CreatedKey),
        (status = 400, description = "A bad `grace_seconds` or `expiration_date`, or `id`: \
            malformed, unknown, revoked, or not visible to the caller."),
        (status = 401),
        (status = 403, description = "The calling key lacks `user_key_management` or one of \
            the key's scopes."),
        (status = 413),
        (status = 415),
        (status = 429),
        (status = 503),
    ),
)]
pub async fn rotate(
    caller: Caller,
    state: web::Data<AppState>,
    req: HttpRequest,
    body: OptionalJsonObject,
) -> Result<HttpResponse, Error> {
    let id = path_id(&req, "id");
    let rotation = rotation(&body.0)?;
    let now = state.clock.now();
    let settings = state.settings.clone();
    let (key, secret) = state
        .db(move |conn| keys::rotate_for(conn, &caller, &id, &rotation, &settings.key_prefix, now))
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
