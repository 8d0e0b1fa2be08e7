//! `/v1/users`: user administration, for Administrators with `user_management`.

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Serialize;
use serde_json::Value;

use crate::api::input::{parse_uuid, JsonObject, QueryParams};
use crate::api::timestamp;
use crate::api::v1::keys::{page, push};
use crate::auth::Caller;
use crate::error::{Error, FieldErrors};
use crate::users::{self, NewUser, User, UserChange};
use crate::AppState;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/v1/users")
            .route(web::get().to(list))
            .route(web::post().to(create)),
    )
    .service(
        web::resource("/v1/users/{id}")
            .route(web::get().to(get))
            .route(web::patch().to(update))
            .route(web::delete().to(deactivate)),
    );
}

/// The user object of this dialect.
#[derive(Serialize)]
pub struct UserView<'a> {
    id: &'a str,
    email: &'a str,
    name: &'a str,
    roles: &'a [String],
    active: bool,
    created_on: String,
    updated_on: Option<String>,
}

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
        }
    }
}

async fn list(
    caller: Caller,
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, Error> {
    let query = QueryParams::parse(req.query_string());
    let mut errors = FieldErrors::new();
    let page = page(
        &query,
        "No user with this ID is in the listing.",
        &mut errors,
    );
    if !errors.is_empty() {
        return Err(Error::Invalid(errors));
    }
    let users = state
        .db(move |conn| users::list_for(conn, &caller, &page))
        .await?;
    let users: Vec<_> = users.iter().map(UserView::from).collect();
    Ok(HttpResponse::Ok().json(serde_json::json!({ "users": users })))
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

async fn create(
    caller: Caller,
    state: web::Data<AppState>,
    body: JsonObject,
) -> Result<HttpResponse, Error> {
    let mut errors = FieldErrors::new();
    let email = string(&body, "email", &mut errors);
    if body.get("email").is_none() {
        push(&mut errors, "email", "A valid email address is required.");
    }
    let name = string(&body, "name", &mut errors);
    let roles = match body.get("roles") {
        Some(value) => roles(value, &mut errors),
        None => Some(vec![users::DEFAULT_USERS.to_owned()]),
    };
    let (Some(email), Some(roles), true) = (email, roles, errors.is_empty()) else {
        return Err(Error::Invalid(errors));
    };
    let new = NewUser {
        name: name.unwrap_or_else(|| email.clone()),
        email,
        roles,
    };
    let now = state.clock.now();
    let user = state
        .db(move |conn| users::create_for(conn, &caller, new, now))
        .await?;
    Ok(HttpResponse::Created().json(UserView::from(&user)))
}

/// Runs `f` on the user named by the path, or answers 404 for a malformed id
/// (after the caller's own authorization, so a 403 is never hidden by a 404).
async fn with_user<T: Send + 'static>(
    caller: Caller,
    state: &web::Data<AppState>,
    req: &HttpRequest,
    f: impl FnOnce(&mut crate::db::DbConnection, &Caller, &str) -> Result<T, Error> + Send + 'static,
) -> Result<T, Error> {
    let id = parse_uuid(req.match_info().query("id"));
    state
        .db(move |conn| {
            let id = id.unwrap_or_default();
            f(conn, &caller, &id)
        })
        .await
}

async fn get(
    caller: Caller,
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, Error> {
    let user = with_user(caller, &state, &req, |conn, caller, id| {
        users::get_for(conn, caller, id)
    })
    .await?;
    Ok(HttpResponse::Ok().json(UserView::from(&user)))
}

async fn update(
    caller: Caller,
    state: web::Data<AppState>,
    req: HttpRequest,
    body: JsonObject,
) -> Result<HttpResponse, Error> {
    let mut errors = FieldErrors::new();
    let name = string(&body, "name", &mut errors);
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
    if !errors.is_empty() {
        return Err(Error::Invalid(errors));
    }
    let change = UserChange {
        name,
        roles,
        active,
    };
    let now = state.clock.now();
    let user = with_user(caller, &state, &req, move |conn, caller, id| {
        users::update_for(conn, caller, id, change, now)
    })
    .await?;
    Ok(HttpResponse::Ok().json(UserView::from(&user)))
}

async fn deactivate(
    caller: Caller,
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, Error> {
    let now = state.clock.now();
    with_user(caller, &state, &req, move |conn, caller, id| {
        users::deactivate_for(conn, caller, id, now)
    })
    .await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({"result": "OK"})))
}
