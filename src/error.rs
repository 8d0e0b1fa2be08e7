//! keyward's one error type.
//!
//! Core functions return [`Error`]; [`Error::status`] is the single place that
//! decides the HTTP status. The body is the dialect's business: the request
//! middleware (`api::context`) renders a response's error as problem details
//! for `/v1` and as Estuary's envelope for `/user`, stamping the request id.
//! Messages of 5xx errors never reach a client; they are logged instead.

use std::collections::BTreeMap;

use actix_web::{http::StatusCode, HttpResponse, ResponseError};

/// Field (or header) name -> messages, in a stable order.
pub type FieldErrors = BTreeMap<String, Vec<String>>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("tenant header missing or empty")]
    TenantMissing,
    #[error("unknown tenant")]
    TenantUnknown,
    #[error("api key missing")]
    KeyMissing,
    /// An `Authorization` header that is not `Bearer <token>`, or key headers that disagree.
    #[error("malformed authorization header")]
    AuthHeaderMalformed,
    /// Malformed, unknown, revoked, of another tenant, or of an inactive user.
    #[error("api key does not exist")]
    KeyInvalid,
    #[error("api key expired")]
    KeyExpired,
    /// Authenticated, but the role or the key's scopes do not allow this.
    #[error("forbidden: {0}")]
    Forbidden(&'static str),
    #[error("invalid input")]
    Invalid(FieldErrors),
    #[error("not found")]
    NotFound,
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("conflict: {0}")]
    Conflict(&'static str),
    /// A feature a dialect names but keyward does not offer (SCIM's bulk operations).
    #[error("not implemented: {0}")]
    NotImplemented(&'static str),
    #[error("request body too large")]
    PayloadTooLarge,
    #[error("request body is not JSON")]
    UnsupportedMediaType,
    /// A request target longer than `api::front::MAX_TARGET_BYTES`.
    #[error("request target too long")]
    UriTooLong,
    /// A request head over `api::front`'s limits.
    #[error("request header fields too large")]
    HeadersTooLarge,
    /// The request (head and body) did not arrive within `request_timeout_secs`.
    #[error("request not received in time")]
    RequestTimeout,
    #[error("too many failed authentications")]
    RateLimited { retry_after_secs: u64 },
    /// A verification refused by usage control (API.md section 9).
    #[error("usage exceeded: {}", .0.title)]
    UsageExceeded(Box<UsageRefusal>),
    #[error("database unavailable: {0}")]
    Unavailable(String),
    #[error("database error: {0}")]
    Database(diesel::result::Error),
    #[error("migration failed: {0}")]
    Migration(String),
    #[error("configuration: {0}")]
    Config(String),
    #[error("internal error: {0}")]
    Internal(String),
}

/// What a usage refusal says: `title` names what ran out; `retry_after_secs`
/// when it comes back (never, for credits that do not refill); for a rate
/// limit, the values of the `RateLimit-Policy` and `RateLimit` headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageRefusal {
    pub title: String,
    pub retry_after_secs: Option<u64>,
    pub ratelimit: Option<(String, String)>,
}

impl Error {
    /// A 400 naming one field.
    pub fn invalid(field: &str, message: &str) -> Self {
        Self::Invalid(FieldErrors::from([(
            field.to_owned(),
            vec![message.to_owned()],
        )]))
    }

    /// The HTTP status of this error; the only place that decides it.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::TenantMissing
            | Self::TenantUnknown
            | Self::KeyMissing
            | Self::AuthHeaderMalformed
            | Self::KeyInvalid
            | Self::KeyExpired => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::Invalid(_) => StatusCode::BAD_REQUEST,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::NotImplemented(_) => StatusCode::NOT_IMPLEMENTED,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            Self::UriTooLong => StatusCode::URI_TOO_LONG,
            Self::HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Self::RateLimited { .. } | Self::UsageExceeded(_) => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Database(_) | Self::Migration(_) | Self::Config(_) | Self::Internal(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        }
    }

    /// Builds the error for a bare status that actix produced without one of ours
    /// (an unmatched method, say), so it too is rendered in the dialect's shape.
    pub fn from_status(status: StatusCode) -> Self {
        match status {
            StatusCode::NOT_FOUND => Self::NotFound,
            StatusCode::METHOD_NOT_ALLOWED => Self::MethodNotAllowed,
            StatusCode::PAYLOAD_TOO_LARGE => Self::PayloadTooLarge,
            StatusCode::UNSUPPORTED_MEDIA_TYPE => Self::UnsupportedMediaType,
            StatusCode::REQUEST_TIMEOUT => Self::RequestTimeout,
            StatusCode::URI_TOO_LONG => Self::UriTooLong,
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => Self::HeadersTooLarge,
            StatusCode::BAD_REQUEST => Self::invalid("request", "The request is malformed."),
            StatusCode::SERVICE_UNAVAILABLE => Self::Unavailable(status.to_string()),
            _ => Self::Internal(format!("unexpected status {status}")),
        }
    }
}

impl From<diesel::result::Error> for Error {
    fn from(e: diesel::result::Error) -> Self {
        use diesel::result::{DatabaseErrorKind as Kind, Error as D};
        match e {
            D::NotFound => Self::NotFound,
            D::DatabaseError(Kind::ClosedConnection | Kind::UnableToSendCommand, info) => {
                Self::Unavailable(info.message().to_owned())
            }
            // A concurrent request made the same unique value first: the
            // answer the loser would have had a moment later.
            D::DatabaseError(Kind::UniqueViolation, _) => {
                Self::Conflict("A resource with this unique value already exists.")
            }
            // SQLite answers "database is locked" once busy_timeout has run out.
            D::DatabaseError(Kind::Unknown, ref info) if info.message().contains("locked") => {
                Self::Unavailable(info.message().to_owned())
            }
            e => Self::Database(e),
        }
    }
}

impl From<diesel::r2d2::PoolError> for Error {
    fn from(e: diesel::r2d2::PoolError) -> Self {
        Self::Unavailable(e.to_string())
    }
}

impl From<actix_web::error::BlockingError> for Error {
    fn from(e: actix_web::error::BlockingError) -> Self {
        Self::Internal(e.to_string())
    }
}

impl ResponseError for Error {
    fn status_code(&self) -> StatusCode {
        self.status()
    }

    /// The status alone: `api::context` replaces the body with the dialect's.
    fn error_response(&self) -> HttpResponse {
        HttpResponse::new(self.status())
    }
}
