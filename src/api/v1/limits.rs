//! The usage-control members of the key and user objects (API.md section
//! 9), as this dialect reads and answers them; the rules are `limits`'.

use utoipa::ToSchema;

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
