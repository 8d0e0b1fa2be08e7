//! The usage-control members of the key and user objects (API.md section
//! 9), as this dialect reads and answers them; the rules are `limits`'.

use utoipa::ToSchema;

use crate::api::input::JsonObject;
use crate::error::{Error, FieldErrors};
use crate::limits::ControlChange;

/// A body's `ratelimits`, `credits` and (`with_ips`: keys) `allowed_ips`,
/// adding their errors to `errors` (nothing is set when one is wrong).
pub fn control(body: &JsonObject, with_ips: bool, errors: &mut FieldErrors) -> ControlChange {
    match ControlChange::from_json(|name| body.get_or_null(name), with_ips) {
        Ok(change) => change,
        Err(error) => {
            if let Error::Invalid(mut fields) = error {
                errors.append(&mut fields);
            }
            ControlChange::default()
        }
    }
}

/// A rate limit: at most `limit` verifications in each window of
/// `duration_ms` (windows aligned to the Unix epoch).
#[derive(ToSchema)]
#[schema(as = RateLimit)]
pub struct RateLimitSchema {
    #[schema(pattern = "^[a-z0-9_-]{1,32}$")]
    pub name: String,
    #[schema(minimum = 1, maximum = 1000000000)]
    pub limit: u64,
    #[schema(minimum = 1000, maximum = 2592000000u64)]
    pub duration_ms: u64,
}

/// A refill: `remaining` is set to `amount` at 00:00:00Z every day, or on
/// `day` of every month.
#[derive(ToSchema)]
#[schema(as = Refill)]
pub struct RefillSchema {
    #[schema(value_type = String, example = "monthly")]
    pub interval: String,
    #[schema(minimum = 1, maximum = 1000000000000u64)]
    pub amount: u64,
    /// For `monthly` only; default 1.
    #[schema(minimum = 1, maximum = 28)]
    pub day: Option<u32>,
}

/// Usage credits: a balance each verification spends `cost` from.
#[derive(ToSchema)]
#[schema(as = Credits)]
pub struct CreditsSchema {
    #[schema(minimum = 0, maximum = 1000000000000u64)]
    pub remaining: u64,
    #[schema(value_type = Option<RefillSchema>, required = true)]
    pub refill: Option<RefillSchema>,
}
