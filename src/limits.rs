//! Usage control's settings (API.md section 9): rate limits and credits, on
//! users (shared by all their keys) and on keys; the addresses a key may be
//! used from. Their one validation, their stored form, and the calendar of
//! refills. What is spent, and how it stays exact across instances, is
//! [`crate::limiter`]'s business.

use chrono::{DateTime, Datelike, Months, NaiveDate, TimeZone, Utc};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::error::Error;

pub const MAX_RATELIMITS: usize = 5;
pub const MAX_ALLOWED_IPS: usize = 100;
const MAX_LIMIT: u64 = 1_000_000_000;
const DURATION_MS: std::ops::RangeInclusive<u64> = 1_000..=2_592_000_000;
const MAX_CREDITS: u64 = 1_000_000_000_000;

pub const RATELIMITS_INVALID: &str = "ratelimits must be an array of at most 5 objects \
    {name, limit, duration_ms}: name 1 to 32 of a-z, 0-9, _ and -, unique in the array; \
    limit an integer from 1 to 1000000000; duration_ms an integer from 1000 to 2592000000.";
pub const CREDITS_INVALID: &str = "credits must be null or {remaining, refill}: remaining \
    an integer from 0 to 1000000000000; refill null or {interval, amount, day}: interval \
    daily or monthly, amount an integer from 1 to 1000000000000, day from 1 to 28 \
    (monthly only, default 1).";
pub const ALLOWED_IPS_INVALID: &str =
    "allowed_ips must be an array of at most 100 IPv4 or IPv6 addresses or CIDRs.";
/// The title of a 403 for a key used from an address it is not allowed from.
pub const ADDRESS_NOT_ALLOWED: &str = "Key not allowed from this address";

/// At most so many verifications in each window of `duration_ms`, windows
/// aligned to the Unix epoch.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RateLimit {
    pub name: String,
    pub limit: u64,
    pub duration_ms: u64,
}

impl RateLimit {
    /// The window holding `now_ms`: `[start, end)`.
    pub fn window(&self, now_ms: i64) -> (i64, i64) {
        let duration = self.duration_ms as i64;
        let start = now_ms.div_euclid(duration) * duration;
        (start, start + duration)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Interval {
    Daily,
    Monthly,
}

/// Sets the balance to `amount` at 00:00:00Z every day, or on `day` of every month.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Refill {
    pub interval: Interval,
    pub amount: u64,
    /// 1..=28, for `Monthly`; 1 for `Daily` (unused).
    pub day: u32,
}

impl Serialize for Refill {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.interval {
            Interval::Daily => json!({"interval": "daily", "amount": self.amount}),
            Interval::Monthly => {
                json!({"interval": "monthly", "amount": self.amount, "day": self.day})
            }
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for Refill {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(d)?;
        parse_refill(&value).ok_or_else(|| serde::de::Error::custom("not a refill"))
    }
}

impl Refill {
    /// The last refill instant at or before `now` (Unix ms).
    pub fn last_at_or_before(&self, now_ms: i64) -> i64 {
        let now = utc(now_ms);
        let today = now.date_naive();
        let date = match self.interval {
            Interval::Daily => today,
            Interval::Monthly => {
                let this_month = today.with_day(self.day).unwrap_or(today);
                if this_month <= today {
                    this_month
                } else {
                    this_month
                        .checked_sub_months(Months::new(1))
                        .unwrap_or(this_month)
                }
            }
        };
        midnight_ms(date)
    }

    /// The first refill instant after `now` (Unix ms).
    pub fn next_after(&self, now_ms: i64) -> i64 {
        let last = utc(self.last_at_or_before(now_ms)).date_naive();
        let next = match self.interval {
            Interval::Daily => last.succ_opt().unwrap_or(last),
            Interval::Monthly => last.checked_add_months(Months::new(1)).unwrap_or(last),
        };
        midnight_ms(next)
    }
}

fn utc(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
}

fn midnight_ms(date: NaiveDate) -> i64 {
    date.and_hms_opt(0, 0, 0)
        .map_or(0, |t| t.and_utc().timestamp_millis())
}

/// A balance's configuration, as stored on its key or user: how it refills,
/// and when it was last set (refills count from the first instant after).
/// The balance itself lives apart, in `credit_balances` (see `limiter`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Credits {
    pub refill: Option<Refill>,
    /// Unix milliseconds.
    pub set_at: i64,
}

impl Credits {
    /// The instant the balance was last refilled or set, as of `now`: the
    /// balance held then is what counts now. A refill happens whether or not
    /// anyone looks: whoever reads the balance next applies it.
    pub fn period(&self, now_ms: i64) -> i64 {
        match self.refill {
            Some(refill) => refill.last_at_or_before(now_ms).max(self.set_at),
            None => self.set_at,
        }
    }

    /// The balance at `now`, given the one stored at `refilled_at`.
    pub fn balance(&self, remaining: i64, refilled_at: i64, now_ms: i64) -> i64 {
        match self.refill {
            Some(refill) if self.period(now_ms) > refilled_at => refill.amount as i64,
            _ => remaining,
        }
    }
}

/// What an administrator sends as `credits`: a balance and its refill.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CreditsSetting {
    pub remaining: u64,
    pub refill: Option<Refill>,
}

/// The addresses a key may be used from; empty: any.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct AllowedIps(Vec<IpNet>);

impl AllowedIps {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether a request from `ip` (`None`: unknown) may use the key.
    pub fn allows(&self, ip: Option<std::net::IpAddr>) -> bool {
        if self.0.is_empty() {
            return true;
        }
        let Some(ip) = ip.map(|ip| ip.to_canonical()) else {
            return false;
        };
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// Canonical CIDRs, as answered and stored.
    pub fn to_strings(&self) -> Vec<String> {
        self.0.iter().map(ToString::to_string).collect()
    }

    pub fn encode(&self) -> String {
        Value::from(self.to_strings()).to_string()
    }

    /// Only keyward writes the column, always canonical CIDRs.
    pub fn decode(stored: &str) -> Self {
        let list: Vec<String> = serde_json::from_str(stored).unwrap_or_default();
        Self(list.iter().filter_map(|s| s.parse().ok()).collect())
    }
}

/// A user's or a key's usage control, as stored and answered.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Limits {
    pub ratelimits: Vec<RateLimit>,
    pub credits: Option<Credits>,
}

impl Limits {
    pub fn is_empty(&self) -> bool {
        self.ratelimits.is_empty() && self.credits.is_none()
    }

    pub fn encode_ratelimits(&self) -> String {
        serde_json::to_string(&self.ratelimits).unwrap_or_else(|_| "[]".into())
    }

    pub fn encode_credits(&self) -> Option<String> {
        self.credits
            .map(|c| serde_json::to_string(&c).unwrap_or_else(|_| "null".into()))
    }

    /// Only keyward writes the columns.
    pub fn decode(ratelimits: &str, credits: Option<&str>) -> Self {
        Self {
            ratelimits: serde_json::from_str(ratelimits).unwrap_or_default(),
            credits: credits.and_then(|c| serde_json::from_str(c).ok()),
        }
    }
}

/// What a request sends of a user's or key's usage control; `None`: not
/// sent (on creation the default, on a change the current value).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ControlChange {
    pub ratelimits: Option<Vec<RateLimit>>,
    pub credits: Option<Option<CreditsSetting>>,
    pub allowed_ips: Option<AllowedIps>,
}

/// The 403 for someone other than an Administrator setting usage control.
pub const ADMINS_ONLY: &str = "Only Administrators may set ratelimits, credits or allowed_ips.";

impl ControlChange {
    pub fn is_empty(&self) -> bool {
        self.ratelimits.is_none() && self.credits.is_none() && self.allowed_ips.is_none()
    }

    /// Reads `ratelimits`, `credits` and (`with_ips`: on keys) `allowed_ips`
    /// from a request's members (`get`: the member of that name, `null`
    /// included), each 400 naming itself; every field's error is reported,
    /// not only the first. A `null` list is not sent; `credits: null` is
    /// unlimited.
    pub fn from_json<'v>(
        get: impl Fn(&str) -> Option<&'v Value>,
        with_ips: bool,
    ) -> Result<Self, Error> {
        let mut errors = crate::error::FieldErrors::new();
        let mut keep = |result: Result<(), Error>| {
            if let Err(Error::Invalid(e)) = result {
                errors.extend(e);
            }
        };
        let mut change = Self::default();
        if let Some(v) = get("ratelimits").filter(|v| !v.is_null()) {
            keep(parse_ratelimits(v).map(|r| change.ratelimits = Some(r)));
        }
        if let Some(v) = get("credits") {
            keep(parse_credits(v).map(|c| change.credits = Some(c)));
        }
        if let Some(v) = get("allowed_ips").filter(|v| with_ips && !v.is_null()) {
            keep(parse_allowed_ips(v).map(|a| change.allowed_ips = Some(a)));
        }
        match errors.is_empty() {
            true => Ok(change),
            false => Err(Error::Invalid(errors)),
        }
    }

    /// Whether this sets anything to a value other than `current`'s (whose
    /// credits hold `balance` now): what only Administrators may do.
    pub fn differs_from(&self, current: &Limits, ips: &AllowedIps, balance: Option<i64>) -> bool {
        let ratelimits = self
            .ratelimits
            .as_ref()
            .is_some_and(|r| *r != current.ratelimits);
        let credits = self.credits.as_ref().is_some_and(|sent| {
            let now = current.credits.map(|c| CreditsSetting {
                remaining: balance.unwrap_or(0).max(0) as u64,
                refill: c.refill,
            });
            *sent != now
        });
        let allowed = self.allowed_ips.as_ref().is_some_and(|a| a != ips);
        ratelimits || credits || allowed
    }

    /// `current` with this applied at `now_ms`; the credits' `set_at` moves
    /// only when credits are sent (a balance set anew).
    pub fn apply(&self, current: &Limits, now_ms: i64) -> Limits {
        Limits {
            ratelimits: self
                .ratelimits
                .clone()
                .unwrap_or_else(|| current.ratelimits.clone()),
            credits: match self.credits {
                None => current.credits,
                Some(None) => None,
                Some(Some(setting)) => Some(Credits {
                    refill: setting.refill,
                    set_at: now_ms,
                }),
            },
        }
    }

    /// The balance to write, when credits are set anew.
    pub fn new_balance(&self) -> Option<u64> {
        match self.credits {
            Some(Some(setting)) => Some(setting.remaining),
            _ => None,
        }
    }
}

/// Everything that limits one authenticated key: its own and its user's
/// limits, and where it may be used from. `*_owner` name the counters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Control {
    /// The key itself (its counters are `key_owner`'s: see `ApiKey::usage_id`).
    pub key_id: String,
    pub key_owner: String,
    pub key: Limits,
    pub user_owner: String,
    pub user: Limits,
    pub allowed_ips: AllowedIps,
}

impl Control {
    /// Whether verification has anything to count.
    pub fn counts(&self) -> bool {
        !self.key.is_empty() || !self.user.is_empty()
    }
}

/// `ratelimits` as sent: 400 naming the field unless valid.
pub fn parse_ratelimits(value: &Value) -> Result<Vec<RateLimit>, Error> {
    let bad = || Error::invalid("ratelimits", RATELIMITS_INVALID);
    let items = value.as_array().ok_or_else(bad)?;
    if items.len() > MAX_RATELIMITS {
        return Err(bad());
    }
    let mut limits: Vec<RateLimit> = Vec::with_capacity(items.len());
    for item in items {
        let object = item.as_object().ok_or_else(bad)?;
        if object
            .keys()
            .any(|k| !["name", "limit", "duration_ms"].contains(&k.as_str()))
        {
            return Err(bad());
        }
        let name = object.get("name").and_then(Value::as_str).ok_or_else(bad)?;
        let limit = object
            .get("limit")
            .and_then(Value::as_u64)
            .ok_or_else(bad)?;
        let duration_ms = object
            .get("duration_ms")
            .and_then(Value::as_u64)
            .ok_or_else(bad)?;
        let name_ok = (1..=32).contains(&name.len())
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
        if !name_ok
            || !(1..=MAX_LIMIT).contains(&limit)
            || !DURATION_MS.contains(&duration_ms)
            || limits.iter().any(|l| l.name == name)
        {
            return Err(bad());
        }
        limits.push(RateLimit {
            name: name.to_owned(),
            limit,
            duration_ms,
        });
    }
    Ok(limits)
}

/// `credits` as sent (`null`: unlimited): 400 naming the field unless valid.
pub fn parse_credits(value: &Value) -> Result<Option<CreditsSetting>, Error> {
    let bad = || Error::invalid("credits", CREDITS_INVALID);
    if value.is_null() {
        return Ok(None);
    }
    let object = value.as_object().ok_or_else(bad)?;
    if object
        .keys()
        .any(|k| !["remaining", "refill"].contains(&k.as_str()))
    {
        return Err(bad());
    }
    let remaining = object
        .get("remaining")
        .and_then(Value::as_u64)
        .filter(|n| *n <= MAX_CREDITS)
        .ok_or_else(bad)?;
    let refill = match object.get("refill") {
        None | Some(Value::Null) => None,
        Some(refill) => Some(parse_refill(refill).ok_or_else(bad)?),
    };
    Ok(Some(CreditsSetting { remaining, refill }))
}

fn parse_refill(value: &Value) -> Option<Refill> {
    let object = value.as_object()?;
    if object
        .keys()
        .any(|k| !["interval", "amount", "day"].contains(&k.as_str()))
    {
        return None;
    }
    let interval = match object.get("interval")?.as_str()? {
        "daily" => Interval::Daily,
        "monthly" => Interval::Monthly,
        _ => return None,
    };
    let amount = object
        .get("amount")?
        .as_u64()
        .filter(|n| (1..=MAX_CREDITS).contains(n))?;
    let day = match (interval, object.get("day")) {
        (_, None) => 1,
        (Interval::Monthly, Some(day)) => day.as_u64().filter(|d| (1..=28).contains(d))? as u32,
        (Interval::Daily, Some(_)) => return None,
    };
    Some(Refill {
        interval,
        amount,
        day,
    })
}

/// `allowed_ips` as sent, made canonical (`10.1.2.3/8` is `10.0.0.0/8`, an
/// address is its /32 or /128), duplicates dropped: 400 naming the field unless valid.
pub fn parse_allowed_ips(value: &Value) -> Result<AllowedIps, Error> {
    let bad = || Error::invalid("allowed_ips", ALLOWED_IPS_INVALID);
    let items = value.as_array().ok_or_else(bad)?;
    if items.len() > MAX_ALLOWED_IPS {
        return Err(bad());
    }
    let mut nets: Vec<IpNet> = Vec::with_capacity(items.len());
    for item in items {
        let net = item
            .as_str()
            .and_then(crate::ground::parse_address_range)
            .ok_or_else(bad)?;
        if !nets.contains(&net) {
            nets.push(net);
        }
    }
    Ok(AllowedIps(nets))
}

/// The `credits` member of a key or user object: `null`, or the balance at
/// `now` with its refill.
pub fn credits_view(credits: Option<&Credits>, remaining: Option<i64>) -> Value {
    match credits {
        None => Value::Null,
        Some(c) => json!({"remaining": remaining.unwrap_or(0).max(0), "refill": c.refill}),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(text: &str) -> i64 {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .timestamp_millis()
    }

    #[test]
    fn ratelimits_are_checked_whole() {
        let ok = json!([{"name": "per_second", "limit": 10, "duration_ms": 1000},
            {"name": "day-1", "limit": 1000000000, "duration_ms": 2592000000u64}]);
        assert_eq!(parse_ratelimits(&ok).unwrap().len(), 2);
        assert!(parse_ratelimits(&json!([])).unwrap().is_empty());
        for bad in [
            json!(null),
            json!({}),
            json!([{"name": "a", "limit": 0, "duration_ms": 1000}]),
            json!([{"name": "a", "limit": 1, "duration_ms": 999}]),
            json!([{"name": "A", "limit": 1, "duration_ms": 1000}]),
            json!([{"name": "", "limit": 1, "duration_ms": 1000}]),
            json!([{"name": "a", "limit": 1.5, "duration_ms": 1000}]),
            json!([{"name": "a", "limit": 1, "duration_ms": 1000, "x": 1}]),
            json!([{"name": "a", "limit": 1, "duration_ms": 1000},
                {"name": "a", "limit": 2, "duration_ms": 1000}]),
            json!([{"name": "a", "limit": 1000000001, "duration_ms": 1000}]),
            json!((0..6)
                .map(|i| json!({"name": format!("n{i}"), "limit": 1, "duration_ms": 1000}))
                .collect::<Vec<_>>()),
        ] {
            let err = parse_ratelimits(&bad).unwrap_err();
            assert!(
                matches!(err, Error::Invalid(ref f) if f.contains_key("ratelimits")),
                "{bad}"
            );
        }
    }

    #[test]
    fn credits_and_refills() {
        assert_eq!(parse_credits(&json!(null)).unwrap(), None);
        let c =
            parse_credits(&json!({"remaining": 5, "refill": {"interval": "monthly", "amount": 9}}))
                .unwrap()
                .unwrap();
        assert_eq!((c.remaining, c.refill.unwrap().day), (5, 1));
        for bad in [
            json!({}),
            json!({"remaining": -1}),
            json!({"remaining": 1000000000001u64}),
            json!({"remaining": 1, "refill": {"interval": "weekly", "amount": 1}}),
            json!({"remaining": 1, "refill": {"interval": "daily", "amount": 0}}),
            json!({"remaining": 1, "refill": {"interval": "daily", "amount": 1, "day": 1}}),
            json!({"remaining": 1, "refill": {"interval": "monthly", "amount": 1, "day": 29}}),
            json!({"remaining": 1, "extra": 1}),
        ] {
            assert!(parse_credits(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn refill_calendar() {
        let daily = Refill {
            interval: Interval::Daily,
            amount: 5,
            day: 1,
        };
        let now = ms("2026-03-15T10:00:00Z");
        assert_eq!(daily.last_at_or_before(now), ms("2026-03-15T00:00:00Z"));
        assert_eq!(daily.next_after(now), ms("2026-03-16T00:00:00Z"));
        let monthly = Refill {
            interval: Interval::Monthly,
            amount: 5,
            day: 20,
        };
        assert_eq!(monthly.last_at_or_before(now), ms("2026-02-20T00:00:00Z"));
        assert_eq!(monthly.next_after(now), ms("2026-03-20T00:00:00Z"));
        let at = ms("2026-03-20T00:00:00Z");
        assert_eq!(monthly.last_at_or_before(at), at);
        assert_eq!(monthly.next_after(at), ms("2026-04-20T00:00:00Z"));
        // Set at 10:00 the 15th: the first refill is the 16th at midnight.
        let credits = Credits {
            refill: Some(daily),
            set_at: now,
        };
        assert_eq!(credits.balance(3, now, ms("2026-03-15T23:59:59Z")), 3);
        assert_eq!(credits.balance(3, now, ms("2026-03-16T00:00:00Z")), 5);
        let never = Credits {
            refill: None,
            set_at: now,
        };
        assert_eq!(never.balance(3, now, ms("2027-01-01T00:00:00Z")), 3);
    }

    #[test]
    fn allowed_ips_are_canonical() {
        let ips = parse_allowed_ips(&json!([
            "10.1.2.3/8",
            "192.0.2.7",
            "2001:db8::1/32",
            "192.0.2.7/32"
        ]))
        .unwrap();
        assert_eq!(
            ips.to_strings(),
            ["10.0.0.0/8", "192.0.2.7/32", "2001:db8::/32"]
        );
        assert!(ips.allows(Some("10.9.9.9".parse().unwrap())));
        assert!(ips.allows(Some("::ffff:10.9.9.9".parse().unwrap())));
        assert!(!ips.allows(Some("11.0.0.1".parse().unwrap())));
        assert!(!ips.allows(None));
        assert!(AllowedIps::default().allows(None));
        assert_eq!(AllowedIps::decode(&ips.encode()), ips);
        for bad in [
            json!("10.0.0.0/8"),
            json!(["10.0.0.0/33"]),
            json!(["x"]),
            json!([1]),
        ] {
            assert!(parse_allowed_ips(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn windows_align_to_the_epoch() {
        let limit = RateLimit {
            name: "a".into(),
            limit: 1,
            duration_ms: 2000,
        };
        assert_eq!(limit.window(4999), (4000, 6000));
        assert_eq!(limit.window(6000), (6000, 8000));
    }
}
