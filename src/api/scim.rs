//! SCIM 2.0 (RFC 7643, RFC 7644): identity providers provision a tenant's
//! users at `/scim/v2/{tenant}` (and `/scim/v2` on a pinned deployment).
//!
//! A third dialect over the same core as `/v1/users`: resources are mapped to
//! `users::` calls here, and every rule (last administrator, deactivation,
//! audit) stays in the core. Authentication is section 2's with the tenant
//! taken from the path and the key from `Authorization: Bearer`; it runs
//! before any body is read. Errors use SCIM's error schema, rendered here for
//! every `/scim` path by `api::context`.

mod discovery;
pub mod filter;
mod groups;
mod patch;
mod users;

use actix_web::http::header::{HeaderValue, WWW_AUTHENTICATE};
use actix_web::http::StatusCode;
use actix_web::{web, FromRequest, HttpRequest, HttpResponse};
use futures_util::future::LocalBoxFuture;
use serde_json::{json, Map, Value};

use crate::access::Caller;
use crate::api::input::QueryParams;
use crate::auth::{self, Credentials};
use crate::error::Error;
use crate::users as core_users;

pub const ERROR_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:Error";
pub const LIST_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
pub const PATCH_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
pub const CONTENT_TYPE: &str = "application/scim+json";
/// The most resources one listing returns (`/ServiceProviderConfig` says so).
pub const MAX_RESULTS: i64 = 200;

/// The routes of one base path: a macro, as route patterns are `'static`.
macro_rules! routes {
    ($cfg:expr, $base:literal) => {
        $cfg.service(
            crate::api::resource(concat!($base, "/Users"))
                .route(web::get().to(users::list))
                .route(web::post().to(users::create)),
        )
        .service(
            crate::api::resource(concat!($base, "/Users/.search")).route(web::post().to(search)),
        )
        .service(
            crate::api::resource(concat!($base, "/Users/{id}"))
                .route(web::get().to(users::get_user))
                .route(web::put().to(users::replace))
                .route(web::patch().to(users::patch))
                .route(web::delete().to(users::delete)),
        )
        .service(
            crate::api::resource(concat!($base, "/Groups"))
                .route(web::get().to(groups::list))
                .route(web::post().to(groups::create)),
        )
        .service(
            crate::api::resource(concat!($base, "/Groups/.search")).route(web::post().to(search)),
        )
        .service(
            crate::api::resource(concat!($base, "/Groups/{id}"))
                .route(web::get().to(groups::get))
                .route(web::put().to(groups::replace))
                .route(web::patch().to(groups::patch))
                .route(web::delete().to(groups::delete)),
        )
        .service(crate::api::resource(concat!($base, "/.search")).route(web::post().to(search)))
        .service(crate::api::resource(concat!($base, "/Bulk")).route(web::post().to(bulk)))
        .service(
            crate::api::resource(concat!($base, "/ServiceProviderConfig"))
                .route(web::get().to(discovery::service_provider_config)),
        )
        .service(
            crate::api::resource(concat!($base, "/ResourceTypes"))
                .route(web::get().to(discovery::resource_types)),
        )
        .service(
            crate::api::resource(concat!($base, "/ResourceTypes/{id}"))
                .route(web::get().to(discovery::resource_type)),
        )
        .service(
            crate::api::resource(concat!($base, "/Schemas"))
                .route(web::get().to(discovery::schemas)),
        )
        .service(
            crate::api::resource(concat!($base, "/Schemas/{id}"))
                .route(web::get().to(discovery::schema)),
        )
    };
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    // The pinned tenant's paths first: a tenant name is lower-case, so
    // `/scim/v2/Users` never names a tenant called `Users`.
    routes!(cfg, "/scim/v2");
    routes!(cfg, "/scim/v2/{tenant}");
}

/// An authenticated SCIM client: section 2's caller, with the tenant from
/// the path and the key from `Authorization: Bearer`, and the base URL its
/// resources' `location`s start with.
pub struct ScimCaller {
    pub caller: Caller,
    pub base: String,
}

impl FromRequest for ScimCaller {
    type Error = Error;
    type Future = LocalBoxFuture<'static, Result<Self, Error>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        let path_tenant = req.match_info().get("tenant").map(str::to_owned);
        let base = {
            let info = req.connection_info();
            match &path_tenant {
                Some(tenant) => format!("{}://{}/scim/v2/{tenant}", info.scheme(), info.host()),
                None => format!("{}://{}/scim/v2", info.scheme(), info.host()),
            }
        };
        let authenticated = auth::authenticate_with(req, auth::Address::Check, |state| {
            Credentials::from_bearer(
                req.headers(),
                path_tenant.as_deref(),
                state.settings.pinned_tenant(),
            )
        });
        Box::pin(async move {
            let caller = authenticated.await?;
            // Every SCIM call administers users: refuse the others before anything else.
            core_users::require_user_admin(&caller)?;
            Ok(ScimCaller { caller, base })
        })
    }
}

/// Renders `error` in SCIM's error schema (RFC 7644 3.12).
pub fn error_response(error: &Error) -> HttpResponse {
    let status = error.status();
    let (scim_type, detail): (Option<&str>, String) = match error {
        Error::TenantMissing => (
            None,
            "The path names no tenant, and the deployment is not pinned to one.".into(),
        ),
        Error::KeyMissing => (None, "Send the key as Authorization: Bearer <key>.".into()),
        // An unknown tenant answers as an unknown key: no tenant's existence leaks.
        Error::TenantUnknown | Error::AuthHeaderMalformed | Error::KeyInvalid => {
            (None, "Invalid API key.".into())
        }
        Error::KeyExpired => (None, "API key expired.".into()),
        Error::Forbidden(why) => (None, sentence(why)),
        Error::Invalid(fields) => {
            let detail = fields
                .values()
                .flatten()
                .map(String::as_str)
                .collect::<Vec<_>>()
                .join(" ");
            (Some(scim_type_of(fields.keys())), detail)
        }
        Error::Conflict(why) if *why == core_users::LAST_ADMIN => {
            (Some("mutability"), sentence(why))
        }
        Error::Conflict(why) => (Some("uniqueness"), sentence(why)),
        Error::NotFound => (None, "Resource not found.".into()),
        Error::MethodNotAllowed => (None, "Method not allowed.".into()),
        Error::NotImplemented(why) => (None, (*why).to_owned()),
        Error::PayloadTooLarge => (None, "Request body larger than 64 KiB.".into()),
        Error::UnsupportedMediaType => (
            None,
            "Request body must be application/scim+json or application/json.".into(),
        ),
        Error::RequestTimeout => (None, "The request was not received in time.".into()),
        Error::UriTooLong => (None, "Request target longer than 8 KiB.".into()),
        Error::HeadersTooLarge => (None, "Request header fields too large.".into()),
        Error::RateLimited { .. } => (None, "Too many failed authentications.".into()),
        Error::UsageExceeded(refusal) => (None, refusal.title.clone()),
        Error::Unavailable(_) => (None, "Service unavailable.".into()),
        Error::Database(_) | Error::Migration(_) | Error::Config(_) | Error::Internal(_) => (
            None,
            "An error occurred while processing your request.".into(),
        ),
    };
    let mut body = json!({
        "schemas": [ERROR_SCHEMA],
        "status": status.as_str(),
        "detail": detail,
    });
    if let Some(scim_type) = scim_type {
        body["scimType"] = json!(scim_type);
    }
    let mut response = HttpResponse::build(status);
    response.content_type(CONTENT_TYPE);
    if status == StatusCode::UNAUTHORIZED {
        response.insert_header((
            WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"keyward\""),
        ));
    }
    response.body(body.to_string())
}

/// `text` ending with one full stop.
fn sentence(text: &str) -> String {
    format!("{}.", text.trim_end_matches('.'))
}

/// The `scimType` of a 400, from the fields it names: this dialect names its
/// own errors `filter`, `path`, `body`, `noTarget`, `mutability`; a field of
/// the core (`email`, `name`, `roles`, ...) is an invalid value.
fn scim_type_of<'a>(mut fields: impl Iterator<Item = &'a String>) -> &'static str {
    match fields.next().map(String::as_str) {
        Some("filter") => "invalidFilter",
        Some("path") => "invalidPath",
        Some("body") | Some("request") => "invalidSyntax",
        Some("noTarget") => "noTarget",
        Some("mutability") => "mutability",
        _ => "invalidValue",
    }
}

/// A SCIM answer with a JSON body.
pub fn respond(status: StatusCode, body: &Value) -> HttpResponse {
    HttpResponse::build(status)
        .content_type(CONTENT_TYPE)
        .body(body.to_string())
}

/// `startIndex` (1-based; below 1 reads as 1) and `count` (0..=200; more
/// reads as 200, less than 0 as 0), as RFC 7644 3.4.2.4 says.
pub struct Paging {
    pub start_index: i64,
    pub count: i64,
}

impl Paging {
    pub fn parse(query: &QueryParams) -> Result<Self, Error> {
        let number = |name: &str, default: i64| match query.get(name) {
            None => Ok(default),
            Some(raw) => raw
                .trim()
                .parse::<i64>()
                .map_err(|_| Error::invalid(name, &format!("{name} must be an integer."))),
        };
        Ok(Self {
            start_index: number("startIndex", 1)?.max(1),
            count: number("count", MAX_RESULTS)?.clamp(0, MAX_RESULTS),
        })
    }
}

/// A ListResponse of `resources` (already one page).
pub fn list_response(total: i64, start_index: i64, resources: Vec<Value>) -> Value {
    json!({
        "schemas": [LIST_SCHEMA],
        "totalResults": total,
        "startIndex": start_index,
        "itemsPerPage": resources.len(),
        "Resources": resources,
    })
}

/// `attributes` and `excludedAttributes` (RFC 7644 3.4.2.5), as given in a query.
pub struct Projection {
    attributes: Vec<filter::AttrPath>,
    excluded: Vec<filter::AttrPath>,
}

impl Projection {
    pub fn parse(query: &QueryParams) -> Result<Self, Error> {
        let paths = |name: &str| -> Result<Vec<filter::AttrPath>, Error> {
            query
                .get(name)
                .unwrap_or_default()
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| {
                    filter::parse_path(s)
                        .ok()
                        .filter(|p| p.filter.is_none())
                        .map(|p| p.attr)
                        .ok_or_else(|| {
                            Error::invalid("path", &format!("{name}: {s} is not an attribute."))
                        })
                })
                .collect()
        };
        Ok(Self {
            attributes: paths("attributes")?,
            excluded: paths("excludedAttributes")?,
        })
    }

    /// Whether the projection leaves `name` out entirely.
    pub fn omits(&self, name: &str) -> bool {
        let named = |paths: &[filter::AttrPath]| {
            paths
                .iter()
                .any(|p| p.name.eq_ignore_ascii_case(name) && p.sub.is_none())
        };
        if !self.attributes.is_empty() {
            return !self
                .attributes
                .iter()
                .any(|p| p.name.eq_ignore_ascii_case(name));
        }
        named(&self.excluded)
    }

    /// `resource` with only what was asked for; `id` and `schemas` are always returned.
    pub fn apply(&self, resource: Value) -> Value {
        let Value::Object(map) = resource else {
            return resource;
        };
        let always = |k: &str| k == "id" || k == "schemas";
        let mut out = Map::new();
        for (key, value) in map {
            if always(&key) {
                out.insert(key, value);
                continue;
            }
            let value = if self.attributes.is_empty() {
                Some(value)
            } else {
                self.select(&key, value)
            };
            let value = value.and_then(|v| self.exclude(&key, v));
            if let Some(value) = value {
                out.insert(key, value);
            }
        }
        Value::Object(out)
    }

    fn select(&self, key: &str, value: Value) -> Option<Value> {
        let asked: Vec<&filter::AttrPath> = self
            .attributes
            .iter()
            .filter(|p| p.name.eq_ignore_ascii_case(key))
            .collect();
        if asked.is_empty() {
            return None;
        }
        if asked.iter().any(|p| p.sub.is_none()) {
            return Some(value);
        }
        let keep = |v: &Value| -> Value {
            match v {
                Value::Object(m) => Value::Object(
                    m.iter()
                        .filter(|(k, _)| {
                            asked.iter().any(|p| {
                                p.sub.as_deref().is_some_and(|s| s.eq_ignore_ascii_case(k))
                            })
                        })
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect(),
                ),
                other => other.clone(),
            }
        };
        Some(match &value {
            Value::Array(items) => Value::Array(items.iter().map(keep).collect()),
            other => keep(other),
        })
    }

    fn exclude(&self, key: &str, value: Value) -> Option<Value> {
        let named: Vec<&filter::AttrPath> = self
            .excluded
            .iter()
            .filter(|p| p.name.eq_ignore_ascii_case(key))
            .collect();
        if named.iter().any(|p| p.sub.is_none()) {
            return None;
        }
        let drop = |v: Value| -> Value {
            match v {
                Value::Object(m) => Value::Object(
                    m.into_iter()
                        .filter(|(k, _)| {
                            !named.iter().any(|p| {
                                p.sub.as_deref().is_some_and(|s| s.eq_ignore_ascii_case(k))
                            })
                        })
                        .collect(),
                ),
                other => other,
            }
        };
        Some(match value {
            Value::Array(items) => Value::Array(items.into_iter().map(drop).collect()),
            other => drop(other),
        })
    }
}

/// A boolean as identity providers send it: `true`, or the strings `"True"`/`"true"`.
pub fn boolean(value: &Value) -> Option<bool> {
    match value {
        Value::Bool(b) => Some(*b),
        Value::String(s) if s.eq_ignore_ascii_case("true") => Some(true),
        Value::String(s) if s.eq_ignore_ascii_case("false") => Some(false),
        _ => None,
    }
}

/// `POST /.search`: not offered (`GET` with `filter` is).
async fn search(_: ScimCaller) -> Result<HttpResponse, Error> {
    Err(Error::NotImplemented(
        "POST /.search is not supported; use GET with filter.",
    ))
}

/// `POST /Bulk`: not offered (`/ServiceProviderConfig` says `bulk.supported: false`).
async fn bulk(_: ScimCaller) -> Result<HttpResponse, Error> {
    Err(Error::NotImplemented("Bulk operations are not supported."))
}
