//! BlueDolphin's public API: `/v1/...`, with RFC 9457 problem-details errors.

pub mod audit;
pub mod keys;
pub mod users;

use std::borrow::Cow;

use actix_web::http::header::RETRY_AFTER;
use actix_web::{web, HttpResponse};
use serde::Serialize;

use crate::error::{Error, FieldErrors};

pub fn configure(cfg: &mut web::ServiceConfig) {
    keys::configure(cfg);
    users::configure(cfg);
    audit::configure(cfg);
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
    if let Error::RateLimited { retry_after_secs } = error {
        response.insert_header((RETRY_AFTER, retry_after_secs.to_string()));
    }
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
