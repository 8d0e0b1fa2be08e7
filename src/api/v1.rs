//! BlueDolphin's public API: `/v1/...`, with RFC 9457 problem-details errors.

pub mod audit;
pub mod keys;
pub mod limits;
pub mod usage;
pub mod users;
pub mod verify;
pub mod webhooks;

use std::borrow::Cow;

use actix_web::{web, HttpResponse};
use serde::Serialize;
use utoipa::{IntoParams, ToSchema};

use crate::api::input::QueryParams;
use crate::error::{Error, FieldErrors};
use crate::paging::{Page, TAKE_RANGE};

pub fn configure(cfg: &mut web::ServiceConfig) {
    // Routes are tried in order, and each pattern with a parameter tried
    // before a request's route costs it a regular expression: the two hot
    // paths (`/v1/auth`, then the listing) come before any.
    verify::configure(cfg);
    keys::configure(cfg);
    users::configure(cfg);
    audit::configure(cfg);
    verify::configure_below(cfg);
    usage::configure(cfg);
    webhooks::configure(cfg);
}

/// The answer of a revocation or deactivation.
#[derive(Serialize, ToSchema)]
#[schema(as = ResultOk)]
pub struct ResultOk {
    #[schema(pattern = "^OK$")]
    result: &'static str,
}

pub const OK: ResultOk = ResultOk { result: "OK" };

/// Records `message` against `field`.
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

impl PageQuery {
    /// Reads `take` and `start_with`; `missing_cursor` is the message for a
    /// `start_with` that is not an id.
    pub fn parse(query: &QueryParams, missing_cursor: &str, errors: &mut FieldErrors) -> Self {
        let take = |raw: &str| raw.parse::<u32>().ok().filter(|n| TAKE_RANGE.contains(n));
        Self {
            take: param(
                query,
                "take",
                take,
                "take must be an integer from 1 to 1000.",
                errors,
            ),
            start_with: param(query, "start_with", uuid_param, missing_cursor, errors),
        }
    }
}

impl From<PageQuery> for Page {
    fn from(query: PageQuery) -> Self {
        Page {
            take: query.take,
            start_with: query.start_with.map(|id| id.to_string()),
        }
    }
}

/// A UUID query parameter.
pub fn uuid_param(raw: &str) -> Option<uuid::Uuid> {
    uuid::Uuid::try_parse(raw).ok()
}

/// Renames the core's field names in a 400 to this dialect's (`expiry` is
/// `expiration_date` here, say); other errors pass through.
pub fn fields_named(error: Error, names: &[(&str, &str)]) -> Error {
    match error {
        Error::Invalid(errors) => Error::Invalid(
            errors
                .into_iter()
                .map(|(field, messages)| {
                    let field = names
                        .iter()
                        .find(|(core, _)| *core == field)
                        .map_or(field, |(_, ours)| (*ours).to_owned());
                    (field, messages)
                })
                .collect(),
        ),
        e => e,
    }
}

/// Titles and `type` links clients see; 400 and 401 share ASP.NET's validation title.
const VALIDATION_TITLE: &str = "One or more validation errors occurred";

#[derive(Serialize)]
struct Problem<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    title: &'a str,
    status: u16,
    #[serde(rename = "traceId")]
    trace_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    errors: Option<Cow<'a, FieldErrors>>,
}

fn one(field: &str, message: &str) -> Cow<'static, FieldErrors> {
    Cow::Owned(FieldErrors::from([(
        field.to_owned(),
        vec![message.to_owned()],
    )]))
}

/// Renders `error` as problem details with `traceId` = the request id.
pub fn problem(error: &Error, request_id: &str) -> HttpResponse {
    let status = error.status();
    let (kind, title, errors): (&str, &str, Option<Cow<FieldErrors>>) = match error {
        Error::TenantMissing => (
            RFC7235_401,
            VALIDATION_TITLE,
            Some(one("tenant", "Tenant header missing or empty")),
        ),
        Error::TenantUnknown => (
            RFC7235_401,
            VALIDATION_TITLE,
            Some(one("tenant", "Unknown tenant specified")),
        ),
        Error::KeyMissing => (
            RFC7235_401,
            VALIDATION_TITLE,
            Some(one("x-key", "API key missing")),
        ),
        Error::AuthHeaderMalformed | Error::KeyInvalid => (
            RFC7235_401,
            VALIDATION_TITLE,
            Some(one("x-key", "Invalid API key")),
        ),
        Error::KeyExpired => (
            RFC7235_401,
            VALIDATION_TITLE,
            Some(one("x-key", "API key expired")),
        ),
        Error::Invalid(errors) => (RFC9110_400, VALIDATION_TITLE, Some(Cow::Borrowed(errors))),
        Error::Forbidden(why) => (
            "https://tools.ietf.org/html/rfc9110#section-15.5.4",
            *why,
            None,
        ),
        Error::NotFound => (
            "https://tools.ietf.org/html/rfc9110#section-15.5.5",
            "Not Found",
            None,
        ),
        Error::MethodNotAllowed => (
            "https://tools.ietf.org/html/rfc9110#section-15.5.6",
            "Method Not Allowed",
            None,
        ),
        Error::Conflict(why) => (
            "https://tools.ietf.org/html/rfc9110#section-15.5.10",
            *why,
            None,
        ),
        Error::NotImplemented(why) => (
            "https://tools.ietf.org/html/rfc9110#section-15.6.2",
            *why,
            None,
        ),
        Error::PayloadTooLarge => (
            "https://tools.ietf.org/html/rfc9110#section-15.5.14",
            "Request body larger than 64 KiB",
            None,
        ),
        Error::UnsupportedMediaType => (
            "https://tools.ietf.org/html/rfc9110#section-15.5.16",
            "Request body must be application/json",
            None,
        ),
        Error::RequestTimeout => (
            "https://tools.ietf.org/html/rfc9110#section-15.5.9",
            "Request Timeout",
            None,
        ),
        Error::UriTooLong => (
            "https://tools.ietf.org/html/rfc9110#section-15.5.15",
            "Request target longer than 8 KiB",
            None,
        ),
        Error::HeadersTooLarge => (
            "https://tools.ietf.org/html/rfc6585#section-5",
            "Request header fields too large",
            None,
        ),
        Error::RateLimited { .. } => (
            "https://tools.ietf.org/html/rfc6585#section-4",
            "Too many failed authentications",
            None,
        ),
        Error::UsageExceeded(refusal) => (
            "https://tools.ietf.org/html/rfc6585#section-4",
            refusal.title.as_str(),
            None,
        ),
        Error::Unavailable(_) => (
            "https://tools.ietf.org/html/rfc9110#section-15.6.4",
            "Service Unavailable",
            None,
        ),
        Error::Database(_) | Error::Migration(_) | Error::Config(_) | Error::Internal(_) => (
            "https://tools.ietf.org/html/rfc9110#section-15.6.1",
            "An error occurred while processing your request.",
            None,
        ),
    };
    let mut response = HttpResponse::build(status);
    response.content_type("application/problem+json");
    response.json(Problem {
        kind,
        title,
        status: status.as_u16(),
        trace_id: request_id,
        errors,
    })
}

const RFC7235_401: &str = "https://tools.ietf.org/html/rfc7235#section-3.1";
const RFC9110_400: &str = "https://tools.ietf.org/html/rfc9110#section-15.5.1";
