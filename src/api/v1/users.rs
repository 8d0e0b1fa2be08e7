//! `/v1/users`: user administration, for Administrators with `user_management`.

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Serialize;
use serde_json::Value;
use utoipa::openapi::{ArrayBuilder, ObjectBuilder, RefOr, Schema, Type};
use utoipa::ToSchema;

use super::limits::{control, CreditsSchema, RateLimitSchema};
use super::{push, PageQuery, ResultOk, OK};
use crate::access::Caller;
use crate::api::input::{path_id, Body, JsonObject, QueryParams};
use crate::api::timestamp;
use crate::error::{Error, FieldErrors};
use crate::limits::{self, ControlChange, CreditsSetting, RateLimit};
use crate::paging::Page;
use crate::users::{self, NewUser, User, UserChange};
use crate::AppState;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        crate::api::resource("/v1/users")
            .route(web::get().to(list))
            .route(web::post().to(create)),
    )
    .service(
        crate::api::resource("/v1/users/{id}")
            .route(web::get().to(get))
            .route(web::patch().to(update))
            .route(web::delete().to(deactivate)),
    );
}

/// The user object of this dialect.
#[derive(Serialize, ToSchema)]
#[schema(as = User)]
pub struct UserView<'a> {
    #[schema(format = Uuid)]
    id: &'a str,
    /// Lower-cased; unique in the tenant.
    email: &'a str,
    name: &'a str,
    #[schema(schema_with = roles_schema)]
    roles: &'a [String],
    active: bool,
    #[schema(format = DateTime)]
    created_on: String,
    /// `null` until the user is changed.
    #[schema(format = DateTime, required = true)]
    updated_on: Option<String>,
    /// The identity provider's id for a user it provisions over SCIM
    /// (`externalId`); `null` for a user no provider manages.
    #[schema(required = true)]
    external_id: Option<&'a str>,
    /// Rate limits shared by all the user's keys (API.md section 9); `[]` when none.
    #[schema(value_type = Vec<RateLimitSchema>)]
    ratelimits: &'a [RateLimit],
    /// `null`: unlimited; else the balance now (shared by all the user's keys), and its refill.
    #[schema(value_type = Option<CreditsSchema>, required = true)]
    credits: Value,
}

/// A page of users.
#[derive(Serialize, ToSchema)]
#[schema(as = UserList)]
pub struct UserList<'a> {
    users: Vec<UserView<'a>>,
}

/// Role names: the tenant's default roles, [`users::ROLES`].
fn roles_schema() -> impl Into<RefOr<Schema>> {
    roles_array().build()
}

/// [`roles_schema`], or `null`: an optional member that is `null` counts as
/// absent, as everywhere in a body (`api::input::JsonObject::get`).
fn roles_or_null_schema() -> impl Into<RefOr<Schema>> {
    roles_array()
        .schema_type(utoipa::openapi::schema::SchemaType::from_iter([
            Type::Array,
            Type::Null,
        ]))
        .build()
}

/// An array of role names: the tenant's default roles, [`users::ROLES`].
fn roles_array() -> ArrayBuilder {
    let role = ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(users::ROLES));
    ArrayBuilder::new().items(role)
}

/// The body of `POST /v1/users`. Unknown members are ignored.
#[derive(ToSchema)]
#[schema(as = NewUser)]
pub struct NewUserBody {
    #[schema(format = Email)]
    pub email: String,
    /// Default: the email. 1 to 255 characters, no control characters.
    #[schema(min_length = 1, max_length = 255)]
    pub name: Option<String>,
    /// Default `["Default users"]`; `null` is the default too.
    #[schema(schema_with = roles_or_null_schema)]
    pub roles: Option<Vec<String>>,
    /// Shared by all the user's keys; default `[]`.
    #[schema(value_type = Option<Vec<RateLimitSchema>>, max_items = 5)]
    pub ratelimits: Option<Vec<RateLimit>>,
    /// Shared by all the user's keys; default `null` (unlimited).
    #[schema(value_type = Option<CreditsSchema>)]
    pub credits: Option<Option<CreditsSetting>>,
}

/// The body of `PATCH /v1/users/{id}`: any of its members.
#[derive(ToSchema)]
#[schema(as = UserChange)]
pub struct UserChangeBody {
    #[schema(min_length = 1, max_length = 255)]
    pub name: Option<String>,
    /// Replaces the user's roles; `null` leaves them as they are.
    #[schema(schema_with = roles_or_null_schema)]
    pub roles: Option<Vec<String>>,
    /// `false` deactivates the user (its keys are rejected); `true` reactivates it.
    pub active: Option<bool>,
    /// Replaces the user's rate limits.
    #[schema(value_type = Option<Vec<RateLimitSchema>>, max_items = 5)]
    pub ratelimits: Option<Vec<RateLimit>>,
    /// Sets the user's credits anew, or `null` for unlimited.
    #[schema(value_type = Option<CreditsSchema>)]
    pub credits: Option<Option<CreditsSetting>>,
}

impl NewUserBody {
    /// Reads the body, naming every field that is wrong.
    fn parse(body: &JsonObject) -> Result<Self, Error> {
        let mut errors = FieldErrors::new();
        let email = string(body, "email", &mut errors);
        if body.get("email").is_none() {
            push(&mut errors, "email", "A valid email address is required.");
        }
        let name = string(body, "name", &mut errors);
        let roles = body
            .get("roles")
            .and_then(|value| roles(value, &mut errors));
        let control = control(body, false, &mut errors);
        match email {
            Some(email) if errors.is_empty() => Ok(Self {
                email,
                name,
                roles,
                ratelimits: control.ratelimits,
                credits: control.credits,
            }),
            _ => Err(Error::Invalid(errors)),
        }
    }
}

impl From<NewUserBody> for NewUser {
    fn from(body: NewUserBody) -> Self {
        NewUser {
            control: ControlChange {
                ratelimits: body.ratelimits,
                credits: body.credits,
                allowed_ips: None,
            },
            ..NewUser::new(body.email, body.name, body.roles)
        }
    }
}

impl UserChangeBody {
    /// Reads the body, naming every field that is wrong.
    fn parse(body: &JsonObject) -> Result<Self, Error> {
        let mut errors = FieldErrors::new();
        let name = string(body, "name", &mut errors);
        let roles = body
            .get("roles")
            .and_then(|value| roles(value, &mut errors));
        let active = body.get("active").and_then(|value| {
            let active = value.as_bool();
            if active.is_none() {
                push(&mut errors, "active", "active must be true or false.");
            }
            active
        });
        let control = control(body, false, &mut errors);
        if !errors.is_empty() {
            return Err(Error::Invalid(errors));
        }
        Ok(Self {
            name,
            roles,
            active,
            ratelimits: control.ratelimits,
            credits: control.credits,
        })
    }
}

impl From<UserChangeBody> for UserChange {
    fn from(body: UserChangeBody) -> Self {
        UserChange {
            name: body.name,
            roles: body.roles,
            active: body.active,
            control: ControlChange {
                ratelimits: body.ratelimits,
                credits: body.credits,
                allowed_ips: None,
            },
            ..UserChange::default()
        }
    }
}

/// What every call here needs, beyond a valid key.
const FORBIDDEN: &str = "The caller is not an Administrator, or the calling key lacks \
    `user_management`.";

impl<'a> From<&'a User> for UserView<'a> {
    fn from(user: &'a User) -> Self {
        Self {
            id: &user.id,
            email: &user.email,
            name: &user.name,
            roles: &user.roles,
            active: user.active,
            created_on: timestamp(user.created_at),
            updated_on: user.updated_at.map(timestamp),
            external_id: user.external_id.as_deref(),
            ratelimits: &user.limits.ratelimits,
            credits: limits::credits_view(user.limits.credits.as_ref(), user.credits_remaining),
        }
    }
}

/// Lists the tenant's users, oldest first, deactivated ones included.
#[utoipa::path(
    get,
    path = "/v1/users",
    operation_id = "listUsers",
    tag = "users",
    params(PageQuery),
    responses(
        (status = 200, description = "A page of users (100 unless `take` says otherwise).",
            body = UserList),
        (status = 400, description = "A bad `take` or `start_with`."),
        (status = 403, description = FORBIDDEN),
    ),
)]
pub async fn list(
    caller: Caller,
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, Error> {
    let query = QueryParams::parse(req.query_string());
    let mut errors = FieldErrors::new();
    let page = PageQuery::parse(
        &query,
        "No user with this ID is in the listing.",
        &mut errors,
    );
    if !errors.is_empty() {
        return Err(Error::Invalid(errors));
    }
    let page = Page::from(page);
    let now = state.clock.now();
    let users = state
        .db(move |conn| users::list_for(conn, &caller, &page, now))
        .await?;
    let users = users.iter().map(UserView::from).collect();
    Ok(HttpResponse::Ok().json(UserList { users }))
}

/// Reads `roles`: an array of role names.
fn roles(value: &Value, errors: &mut FieldErrors) -> Option<Vec<String>> {
    let roles = value.as_array().and_then(|items| {
        items
            .iter()
            .map(|r| r.as_str().map(str::to_owned))
            .collect::<Option<Vec<_>>>()
    });
    if roles.is_none() {
        push(errors, "roles", "Roles must be an array of role names.");
    }
    roles
}

fn string(body: &JsonObject, field: &str, errors: &mut FieldErrors) -> Option<String> {
    let value = body.get(field)?;
    let string = value.as_str().map(str::to_owned);
    if string.is_none() {
        push(errors, field, &format!("{field} must be a string."));
    }
    string
}

/// Creates a user.
#[utoipa::path(
    post,
    path = "/v1/users",
    operation_id = "createUser",
    tag = "users",
    request_body = NewUserBody,
    responses(
        (status = 201, description = "The user.", body = UserView),
        (status = 400, description = "Every bad field, named; or `body`."),
        (status = 403, description = FORBIDDEN),
        (status = 409, description = "A user with this email exists in the tenant."),
        (status = 413),
        (status = 415),
    ),
)]
pub async fn create(
    caller: Caller,
    state: web::Data<AppState>,
    body: Body,
) -> Result<HttpResponse, Error> {
    let new = NewUser::from(NewUserBody::parse(&body.object().await?)?);
    let now = state.clock.now();
    let user = state
        .db(move |conn| users::create_for(conn, &caller, new, now))
        .await?;
    Ok(HttpResponse::Created().json(UserView::from(&user)))
}

/// Reads a user.
#[utoipa::path(
    get,
    path = "/v1/users/{id}",
    operation_id = "getUser",
    tag = "users",
    params(("id" = String, Path, description = "The user's id.", format = Uuid)),
    responses(
        (status = 200, description = "The user.", body = UserView),
        (status = 403, description = FORBIDDEN),
        (status = 404, description = "Unknown, malformed, or of another tenant."),
    ),
)]
pub async fn get(
    caller: Caller,
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, Error> {
    let id = path_id(&req, "id");
    let now = state.clock.now();
    let user = state
        .read(move |conn| users::get_for(conn, &caller, &id, now))
        .await?;
    Ok(HttpResponse::Ok().json(UserView::from(&user)))
}

/// Changes a user's name, roles or activity.
#[utoipa::path(
    patch,
    path = "/v1/users/{id}",
    operation_id = "updateUser",
    tag = "users",
    params(("id" = String, Path, description = "The user's id.", format = Uuid)),
    request_body = UserChangeBody,
    responses(
        (status = 200, description = "The user, changed.", body = UserView),
        (status = 400, description = "Every bad field, named; or `body`."),
        (status = 403, description = FORBIDDEN),
        (status = 404, description = "Unknown, malformed, or of another tenant."),
        (status = 409, description = "It would demote or deactivate the tenant's last active \
            Administrator."),
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
    let change = UserChange::from(UserChangeBody::parse(&body.object().await?)?);
    let now = state.clock.now();
    let id = path_id(&req, "id");
    let user = state
        .db(move |conn| users::update_for(conn, &caller, &id, change, now))
        .await?;
    Ok(HttpResponse::Ok().json(UserView::from(&user)))
}

/// Deactivates a user: its keys are rejected from the next request on; the
/// user is kept.
#[utoipa::path(
    delete,
    path = "/v1/users/{id}",
    operation_id = "deactivateUser",
    tag = "users",
    params(("id" = String, Path, description = "The user's id.", format = Uuid)),
    responses(
        (status = 200, description = "Deactivated.", body = ResultOk),
        (status = 403, description = FORBIDDEN),
        (status = 404, description = "Unknown, malformed, or of another tenant."),
        (status = 409, description = "The user is the tenant's last active Administrator."),
    ),
)]
pub async fn deactivate(
    caller: Caller,
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, Error> {
    let now = state.clock.now();
    let id = path_id(&req, "id");
    state
        .db(move |conn| users::deactivate_for(conn, &caller, &id, now))
        .await?;
    Ok(HttpResponse::Ok().json(OK))
}
