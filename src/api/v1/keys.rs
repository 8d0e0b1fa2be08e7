//! `/v1/user-api-keys`: list, create, read, rotate and revoke keys.
//!
//! The request types below are both what the handlers parse a request into
//! and what the OpenAPI document describes: a field added to one is added to
//! the other, or the parser does not compile.

use actix_web::{web, HttpRequest, HttpResponse};
use chrono::NaiveDate;
use serde::Serialize;
use serde_json::Value;
use utoipa::openapi::{ObjectBuilder, RefOr, Required, Schema, Type};
use utoipa::{IntoParams, Modify, PartialSchema, ToSchema};

use super::limits::{control, CreditsSchema, RateLimitSchema};
use super::{fields_named, param, push, uuid_param, PageQuery, ResultOk, OK};
use crate::access::Caller;
use crate::api::input::{path_id, Body, JsonObject, QueryParams};
use crate::api::{json_bytes, json_ok, Timestamp};
use crate::error::{Error, FieldErrors};
use crate::keys::{
    self, ApiKey, Expiry, KeyChange, KeyFilter, KeyState, Meta, NewKey, OwnKeys, Rendering,
    Rotation, Scope, SCOPES_INVALID, USER_ID_INVALID,
};
use crate::limits::{self, AllowedIps, ControlChange, CreditsSetting, RateLimit};
use crate::paging::Page;
use crate::AppState;

/// The fixed message of a DELETE whose id names no key the caller may see.
const ID_INVALID: &str = "ID is either missing, incorrect, or does not exist in the database.";

/// The core's field names that this dialect names otherwise.
const FIELDS: [(&str, &str); 1] = [("expiry", "expiration_date")];

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        crate::api::resource("/v1/user-api-keys")
            .route(web::get().to(list))
            .route(web::post().to(create))
            .route(web::delete().to(revoke_without_id)),
    )
    .service(
        crate::api::resource("/v1/user-api-keys/{id}")
            .route(web::get().to(get))
            .route(web::patch().to(update))
            .route(web::delete().to(revoke)),
    )
    .service(crate::api::resource("/v1/user-api-keys/{id}/rotate").route(web::post().to(rotate)));
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
    #[schema(value_type = String, format = DateTime)]
    created_on: Timestamp,
    /// `null` until the key is changed.
    #[schema(value_type = Option<String>, format = DateTime, required = true)]
    updated_on: Option<Timestamp>,
    scopes: &'a [Scope],
    /// The last successful authentication, accurate to about a minute; `null` if never used.
    #[schema(value_type = Option<String>, format = DateTime, required = true)]
    last_used_on: Option<Timestamp>,
    /// What the tenant attached to the key; `{}` when nothing.
    #[schema(value_type = Object)]
    meta: &'a serde_json::Map<String, Value>,
    /// The key's own rate limits (API.md section 9); `[]` when none.
    #[schema(value_type = Vec<RateLimitSchema>)]
    ratelimits: &'a [RateLimit],
    /// `null`: unlimited; else the balance now, and its refill.
    #[schema(value_type = Option<CreditsSchema>, required = true)]
    credits: Value,
    /// Where the key may be used from, as canonical CIDRs; `[]`: anywhere.
    allowed_ips: Vec<String>,
}

impl KeyView<'_> {
    /// About how long one key is as JSON (with a few scopes and no metadata).
    const TYPICAL_BYTES: usize = 320;
}

impl<'a> From<&'a ApiKey> for KeyView<'a> {
    fn from(key: &'a ApiKey) -> Self {
        Self {
            id: &key.id,
            user_id: &key.user_id,
            name: &key.name,
            expiration_date: key.expiration_date(),
            created_on: Timestamp(key.created_at),
            updated_on: key.updated_at.map(Timestamp),
            scopes: &key.scopes,
            last_used_on: key.last_used_at.map(Timestamp),
            meta: key.meta.as_map(),
            ratelimits: &key.limits.ratelimits,
            credits: limits::credits_view(key.limits.credits.as_ref(), key.credits_remaining),
            allowed_ips: key.allowed_ips.to_strings(),
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

/// The values of the `state` filter: revoked keys are never listed.
const STATES: [(&str, KeyState); 2] =
    [("active", KeyState::Active), ("expired", KeyState::Expired)];

impl PartialSchema for KeyState {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some(STATES.map(|(name, _)| name)))
            .into()
    }
}

impl ToSchema for KeyState {}

/// `YYYY-MM-DD`, exactly.
fn date_param(raw: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(raw, "%Y-%m-%d")
        .ok()
        .filter(|_| raw.len() == 10)
}

impl KeyListQuery {
    fn parse(query: &QueryParams, errors: &mut FieldErrors) -> Self {
        let state = |raw: &str| {
            STATES
                .iter()
                .find(|(name, _)| *name == raw)
                .map(|(_, state)| *state)
        };
        Self {
            user_id: param(query, "UserId", uuid_param, USER_ID_INVALID, errors),
            state: param(
                query,
                "state",
                state,
                "state must be 'active' or 'expired'.",
                errors,
            ),
            expires_before: param(
                query,
                "expires_before",
                date_param,
                "expires_before must be a date in the format YYYY-MM-DD.",
                errors,
            ),
            last_used_before: param(
                query,
                "last_used_before",
                date_param,
                "last_used_before must be a date in the format YYYY-MM-DD.",
                errors,
            ),
        }
    }
}

impl From<KeyListQuery> for KeyFilter {
    fn from(query: KeyListQuery) -> Self {
        KeyFilter {
            user_id: query.user_id.map(|id| id.to_string()),
            state: query.state,
            expires_before: query.expires_before,
            last_used_before: query.last_used_before,
        }
    }
}

/// The body of `POST /v1/user-api-keys`. Member names are matched without
/// regard to case or underscores (`user_id`, `UserId`); unknown members are ignored.
#[derive(ToSchema)]
#[schema(as = NewKey)]
pub struct NewKeyBody {
    #[schema(min_length = 3, max_length = 255)]
    pub name: String,
    /// An active user of the tenant: the caller itself, or anyone for Administrators.
    pub user_id: uuid::Uuid,
    /// The key's last valid day: from today to today + the tenant's maximum lifetime.
    pub expiration_date: NaiveDate,
    /// Default `["public_api"]`; none the calling key lacks.
    #[schema(min_items = 1)]
    pub scopes: Option<Vec<Scope>>,
    /// Any JSON object of at most 4 KiB serialized; default `{}`.
    #[schema(value_type = Option<Object>)]
    pub meta: Option<Meta>,
    /// Administrators only; default `[]` (API.md section 9).
    #[schema(value_type = Option<Vec<RateLimitSchema>>, max_items = 5)]
    pub ratelimits: Option<Vec<RateLimit>>,
    /// Administrators only; default `null` (unlimited).
    #[schema(value_type = Option<CreditsSchema>)]
    pub credits: Option<Option<CreditsSetting>>,
    /// Administrators only: IPv4/IPv6 addresses or CIDRs; default `[]` (anywhere).
    #[schema(value_type = Option<Vec<String>>, max_items = 100)]
    pub allowed_ips: Option<AllowedIps>,
}

/// `meta`: an object that fits, or `None` after recording why not.
fn meta(value: &Value, errors: &mut FieldErrors) -> Option<Meta> {
    let meta = Meta::parse(value);
    if meta.is_none() {
        push(errors, "meta", Meta::INVALID);
    }
    meta
}

const DATE_FORMAT: &str = "Expiration date must be a date in the format YYYY-MM-DD.";

/// `expiration_date`: a string `YYYY-MM-DD`, or `None` after recording why not.
fn expiration_date(value: &Value, errors: &mut FieldErrors) -> Option<NaiveDate> {
    let date = value.as_str().and_then(date_param);
    if date.is_none() {
        push(errors, "expiration_date", DATE_FORMAT);
    }
    date
}

impl NewKeyBody {
    /// Reads the body, naming every field that is wrong.
    fn parse(body: &JsonObject) -> Result<Self, Error> {
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
            .and_then(uuid_param);
        if user_id.is_none() {
            push(&mut errors, "user_id", USER_ID_INVALID);
        }
        let expiration_date = match body.get("expiration_date") {
            Some(value) => expiration_date(value, &mut errors),
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
            None => Some(None),
            Some(Value::Array(items)) => items
                .iter()
                .map(|item| item.as_str().and_then(Scope::parse))
                .collect::<Option<Vec<_>>>()
                .filter(|scopes| !scopes.is_empty())
                .map(Some),
            Some(_) => None,
        };
        if scopes.is_none() {
            push(&mut errors, "scopes", SCOPES_INVALID);
        }
        let meta = match body.get("meta") {
            None => Some(None),
            Some(value) => meta(value, &mut errors).map(Some),
        };
        let control = control(body, true, &mut errors);
        match (name, user_id, expiration_date, scopes, meta) {
            (Some(name), Some(user_id), Some(expiration_date), Some(scopes), Some(meta))
                if errors.is_empty() =>
            {
                Ok(Self {
                    name,
                    user_id,
                    expiration_date,
                    scopes,
                    meta,
                    ratelimits: control.ratelimits,
                    credits: control.credits,
                    allowed_ips: control.allowed_ips,
                })
            }
            _ => Err(Error::Invalid(errors)),
        }
    }
}

impl From<NewKeyBody> for NewKey {
    fn from(body: NewKeyBody) -> Self {
        NewKey::new(
            body.user_id.to_string(),
            body.name,
            Expiry::EndOfDay(body.expiration_date),
            body.scopes,
        )
        .with_meta(body.meta.unwrap_or_default())
        .with_control(ControlChange {
            ratelimits: body.ratelimits,
            credits: body.credits,
            allowed_ips: body.allowed_ips,
        })
    }
}

/// The body of `PATCH /v1/user-api-keys/{id}`: any of its members.
#[derive(ToSchema)]
#[schema(as = KeyChange)]
pub struct KeyChangeBody {
    #[schema(min_length = 3, max_length = 255)]
    pub name: Option<String>,
    /// Replaces the key's metadata: any JSON object of at most 4 KiB serialized.
    #[schema(value_type = Option<Object>)]
    pub meta: Option<Meta>,
    /// Replaces the key's rate limits (Administrators only).
    #[schema(value_type = Option<Vec<RateLimitSchema>>, max_items = 5)]
    pub ratelimits: Option<Vec<RateLimit>>,
    /// Sets the key's credits anew, or `null` for unlimited (Administrators only).
    #[schema(value_type = Option<CreditsSchema>)]
    pub credits: Option<Option<CreditsSetting>>,
    /// Replaces the addresses the key may be used from (Administrators only).
    #[schema(value_type = Option<Vec<String>>, max_items = 100)]
    pub allowed_ips: Option<AllowedIps>,
}

impl KeyChangeBody {
    fn parse(body: &JsonObject) -> Result<Self, Error> {
        let mut errors = FieldErrors::new();
        let name = body.get("name").and_then(|value| {
            let name = value.as_str().map(str::to_owned);
            match &name {
                None => push(&mut errors, "name", "Name must be a string."),
                Some(name) => {
                    if let Err(message) = keys::check_name(name) {
                        push(&mut errors, "name", message);
                    }
                }
            }
            name
        });
        let meta = body.get("meta").and_then(|value| meta(value, &mut errors));
        let control = control(body, true, &mut errors);
        if !errors.is_empty() {
            return Err(Error::Invalid(errors));
        }
        Ok(Self {
            name,
            meta,
            ratelimits: control.ratelimits,
            credits: control.credits,
            allowed_ips: control.allowed_ips,
        })
    }
}

impl From<KeyChangeBody> for KeyChange {
    fn from(body: KeyChangeBody) -> Self {
        KeyChange {
            name: body.name,
            meta: body.meta,
            control: ControlChange {
                ratelimits: body.ratelimits,
                credits: body.credits,
                allowed_ips: body.allowed_ips,
            },
        }
    }
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

impl RotationBody {
    fn parse(body: &JsonObject) -> Result<Self, Error> {
        let mut errors = FieldErrors::new();
        let grace_seconds = match body.get("grace_seconds") {
            None => Some(None),
            Some(value) => value
                .as_i64()
                .filter(|n| Rotation::grace_in_range(*n))
                .map(Some),
        };
        if grace_seconds.is_none() {
            errors.append(&mut invalid_fields(keys::grace_seconds_invalid()));
        }
        let expiration_date = match body.get("expiration_date") {
            None => Some(None),
            Some(value) => expiration_date(value, &mut errors).map(Some),
        };
        match (grace_seconds, expiration_date) {
            (Some(grace_seconds), Some(expiration_date)) if errors.is_empty() => Ok(Self {
                grace_seconds,
                expiration_date,
            }),
            _ => Err(Error::Invalid(errors)),
        }
    }
}

/// The fields of a 400.
fn invalid_fields(error: Error) -> FieldErrors {
    match error {
        Error::Invalid(fields) => fields,
        _ => FieldErrors::new(),
    }
}

impl From<RotationBody> for Rotation {
    fn from(body: RotationBody) -> Self {
        Rotation {
            grace_seconds: body.grace_seconds.unwrap_or_default(),
            expiration_date: body.expiration_date,
        }
    }
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
        (status = 403, description = "Not an Administrator, and no `UserId` or another user's; \
            or the calling key lacks `user_key_management`."),
    ),
)]
pub async fn list(
    caller: Caller,
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, Error> {
    let query = QueryParams::parse(req.query_string());
    let mut errors = FieldErrors::new();
    let filter = KeyListQuery::parse(&query, &mut errors);
    let page = PageQuery::parse(
        &query,
        "No key with this ID is in the listing.",
        &mut errors,
    );
    if !errors.is_empty() {
        return Err(Error::Invalid(errors));
    }
    let (filter, page) = (KeyFilter::from(filter), Page::from(page));
    let now = state.clock.now();
    let body = if filter.is_own_keys(&caller) && page.is_whole() {
        let rendering = Rendering {
            name: "v1",
            render: render_keys,
        };
        state.own_keys(OwnKeys::of(&caller, now, rendering)?).await
    } else {
        // One user's keys (or a page) are few; a whole tenant's may be many.
        let bounded = filter.user_id.is_some() || page.take.is_some();
        let list = move |conn: &mut _| keys::list_for(conn, &caller, &filter, &page, now);
        match bounded {
            true => state.read(list).await,
            false => state.db(list).await,
        }
        .and_then(|keys| render_keys(&keys))
    }
    .map_err(|e| fields_named(e, &[("user_id", "UserId")]))?;
    Ok(json_ok(body))
}

/// A listing's JSON.
fn render_keys(keys: &[ApiKey]) -> Result<bytes::Bytes, Error> {
    let views: Vec<KeyView> = keys.iter().map(KeyView::from).collect();
    json_bytes(&views, views.len() * KeyView::TYPICAL_BYTES)
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
        (status = 403, description = "The calling key lacks `user_key_management` or a \
            requested scope, or a non-Administrator acts for another user."),
        (status = 413),
        (status = 415),
    ),
)]
pub async fn create(
    caller: Caller,
    state: web::Data<AppState>,
    body: Body,
) -> Result<HttpResponse, Error> {
    let new = NewKey::from(NewKeyBody::parse(&body.object().await?)?);
    let now = state.clock.now();
    let settings = state.settings.clone();
    let (key, secret) = state
        .db(move |conn| keys::create_for(conn, &caller, new, &settings.key_prefix, now))
        .await
        .map_err(|e| fields_named(e, &FIELDS))?;
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
        (status = 403, description = "The calling key lacks `user_key_management`."),
        (status = 404, description = "Unknown, revoked, of another tenant, or not visible \
            to the caller."),
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
        .read(move |conn| keys::get_for(conn, &caller, &id, now))
        .await?;
    Ok(HttpResponse::Ok().json(KeyView::from(&key)))
}

/// Renames a key or replaces its metadata.
#[utoipa::path(
    patch,
    path = "/v1/user-api-keys/{id}",
    operation_id = "updateKey",
    tag = "keys",
    params(("id" = String, Path, description = "The key's id.", format = Uuid)),
    request_body = KeyChangeBody,
    responses(
        (status = 200, description = "The key, changed.", body = KeyView),
        (status = 400, description = "A bad `name` or `meta`, or `body`."),
        (status = 403, description = "The calling key lacks `user_key_management`."),
        (status = 404, description = "Unknown, revoked, of another tenant, or not visible \
            to the caller."),
        (status = 413),
        (status = 415),
    ),
)]
pub async fn update(
    caller: Caller,
    state: web::Data<AppState>,
    req: HttpRequest,
    body: Body,
) -> Result<HttpResponse, Error> {
    let change = KeyChange::from(KeyChangeBody::parse(&body.object().await?)?);
    let id = path_id(&req, "id");
    let now = state.clock.now();
    let key = state
        .db(move |conn| keys::update_for(conn, &caller, &id, change, now))
        .await?;
    Ok(HttpResponse::Ok().json(KeyView::from(&key)))
}

/// A key this dialect cannot name to its caller is the DELETE message's 400.
fn id_invalid(error: Error) -> Error {
    match error {
        Error::NotFound => Error::invalid("id", ID_INVALID),
        e => fields_named(e, &FIELDS),
    }
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
        (status = 403, description = "The calling key lacks `user_key_management`."),
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
        .map_err(id_invalid)?;
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
        (status = 403, description = "The calling key lacks `user_key_management`."),
    ),
)]
pub async fn revoke_without_id(caller: Caller) -> Result<HttpResponse, Error> {
    caller.require_scope(Scope::UserKeyManagement)?;
    Err(Error::invalid("id", ID_INVALID))
}

/// Replaces a key by a new one with its user, name and scopes; the old key
/// keeps working for `grace_seconds`. A key is rotated once.
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
            malformed, unknown, revoked, rotated already, or not visible to the caller."),
        (status = 403, description = "The calling key lacks `user_key_management` or one of \
            the key's scopes."),
        (status = 413),
        (status = 415),
    ),
)]
pub async fn rotate(
    caller: Caller,
    state: web::Data<AppState>,
    req: HttpRequest,
    body: Body,
) -> Result<HttpResponse, Error> {
    let rotation = Rotation::from(RotationBody::parse(&body.optional_object().await?)?);
    let id = path_id(&req, "id");
    let now = state.clock.now();
    let settings = state.settings.clone();
    let (key, secret) = state
        .db(move |conn| keys::rotate_for(conn, &caller, &id, &rotation, &settings.key_prefix, now))
        .await
        .map_err(id_invalid)?;
    Ok(HttpResponse::Created().json(CreatedKey {
        view: KeyView::from(&key),
        key: secret.expose(),
    }))
}
