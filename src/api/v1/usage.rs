//! `/v1/usage`: how often keys were verified, per minute, hour or day, by
//! outcome (API.md section 10). The counting and the rules are `analytics`'.

use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::{IntoParams, ToSchema};

use super::{param, uuid_param};
use crate::access::Caller;
use crate::analytics::{self, Counts, Granularity, UsageQuery};
use crate::api::input::QueryParams;
use crate::api::Timestamp;
use crate::error::{Error, FieldErrors};
use crate::AppState;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(crate::api::resource("/v1/usage").route(web::get().to(usage)));
}

/// The query of `GET /v1/usage`.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UsageParams {
    /// The first bucket (RFC 3339), rounded down to the granularity. Default:
    /// 24 hours before `to`.
    #[param(value_type = Option<String>, format = DateTime)]
    pub from: Option<String>,
    /// The end (exclusive, RFC 3339), rounded down to the granularity; may lie
    /// in the future. Default: the end of the current bucket.
    #[param(value_type = Option<String>, format = DateTime)]
    pub to: Option<String>,
    /// `minute` (span at most 48 hours), `hour` (90 days, the default) or
    /// `day` (730 days).
    #[param(value_type = Option<String>, pattern = "^(minute|hour|day)$")]
    pub granularity: Option<String>,
    /// Only this key (the caller's own, unless an Administrator).
    pub key_id: Option<uuid::Uuid>,
    /// Only this user's keys (the caller itself, unless an Administrator).
    pub user_id: Option<uuid::Uuid>,
}

fn instant(raw: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(raw)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

impl UsageParams {
    fn parse(query: &QueryParams, errors: &mut FieldErrors) -> UsageQuery {
        let from = param(
            query,
            "from",
            instant,
            "from must be an RFC 3339 instant.",
            errors,
        );
        let to = param(
            query,
            "to",
            instant,
            "to must be an RFC 3339 instant.",
            errors,
        );
        let granularity = param(
            query,
            "granularity",
            Granularity::parse,
            "granularity must be one of: minute, hour, day.",
            errors,
        );
        let key_id = param(
            query,
            "key_id",
            uuid_param,
            "key_id must be a key ID.",
            errors,
        );
        let user_id = param(
            query,
            "user_id",
            uuid_param,
            "user_id must be a user ID.",
            errors,
        );
        UsageQuery {
            granularity,
            from,
            to,
            key_id: key_id.map(|id| id.to_string()),
            user_id: user_id.map(|id| id.to_string()),
        }
    }
}

/// Verifications by outcome.
#[derive(Serialize, ToSchema)]
#[schema(as = UsageCounts)]
pub struct CountsView {
    /// 200: the key authenticated and held every required scope.
    valid: i64,
    /// 403: a required scope was missing.
    forbidden: i64,
    /// 429: a rate limit ran out.
    rate_limited: i64,
    /// 429: the credits ran out.
    usage_exceeded: i64,
    /// 401: the key exists in the tenant but is revoked, expired or of an inactive user.
    invalid: i64,
}

impl From<&Counts> for CountsView {
    fn from(c: &Counts) -> Self {
        Self {
            valid: c.valid,
            forbidden: c.forbidden,
            rate_limited: c.rate_limited,
            usage_exceeded: c.usage_exceeded,
            invalid: c.invalid,
        }
    }
}

/// One bucket.
#[derive(Serialize, ToSchema)]
#[schema(as = UsageBucket)]
pub struct BucketView {
    /// The bucket's first instant.
    #[schema(value_type = String, format = DateTime)]
    start: Timestamp,
    #[serde(flatten)]
    #[schema(inline)]
    counts: CountsView,
}

/// A usage series.
#[derive(Serialize, ToSchema)]
#[schema(as = Usage)]
pub struct UsageView {
    #[schema(pattern = "^(minute|hour|day)$")]
    granularity: &'static str,
    /// The first bucket's start.
    #[schema(value_type = String, format = DateTime)]
    from: Timestamp,
    /// The end of the last bucket (exclusive).
    #[schema(value_type = String, format = DateTime)]
    to: Timestamp,
    /// Every bucket of the span, oldest first; zero when nothing was counted.
    series: Vec<BucketView>,
    /// The sums of the series.
    totals: CountsView,
}

/// How often keys were verified (`/v1/auth`), by outcome.
///
/// Without `key_id` or `user_id`: the whole tenant for Administrators, the
/// caller's own keys for anyone else. Counts are complete within 10 seconds.
#[utoipa::path(
    get,
    path = "/v1/usage",
    operation_id = "getUsage",
    tag = "usage",
    params(UsageParams),
    responses(
        (status = 200, description = "One entry per bucket, oldest first.", body = UsageView),
        (status = 400, description = "A bad `from`, `to`, `granularity`, `key_id` or \
            `user_id`; a span over the granularity's maximum or `from` not before `to` \
            (under `from`); a key or user unknown in this tenant."),
        (status = 403, description = "The calling key lacks `user_key_management`, or a \
            non-Administrator names another user or another user's key."),
    ),
)]
pub async fn usage(
    caller: Caller,
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, Error> {
    let query = QueryParams::parse(req.query_string());
    let mut errors = FieldErrors::new();
    let asked = UsageParams::parse(&query, &mut errors);
    if !errors.is_empty() {
        return Err(Error::Invalid(errors));
    }
    let now = state.clock.now();
    let usage = state
        .db(move |conn| analytics::usage_for(conn, &caller, &asked, now))
        .await?;
    Ok(HttpResponse::Ok().json(UsageView {
        granularity: usage.granularity.as_str(),
        from: Timestamp(usage.from),
        to: Timestamp(usage.to),
        series: usage
            .series
            .iter()
            .map(|b| BucketView {
                start: Timestamp(b.start),
                counts: CountsView::from(&b.counts),
            })
            .collect(),
        totals: CountsView::from(&usage.totals),
    }))
}
