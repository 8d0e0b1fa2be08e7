//! The HTTP surface: operational endpoints and the two dialects over one core.
//!
//! Handlers stay thin: extract, call the core through [`AppState::db`], map the
//! result to the dialect. Errors are rendered in one place, [`context`].

pub mod console;
pub mod context;
pub mod cors;
pub mod docs;
pub mod estuary;
pub mod front;
pub mod input;
pub mod metrics;
pub mod ops;
pub mod v1;

use actix_web::web;

use crate::error::Error;

pub fn configure(cfg: &mut web::ServiceConfig) {
    ops::configure(cfg);
    metrics::configure(cfg);
    v1::configure(cfg);
    estuary::configure(cfg);
    docs::configure(cfg);
    console::configure(cfg);
}

/// ISO-8601 UTC, second precision, `Z` suffix: how both dialects show instants.
pub fn timestamp(t: chrono::DateTime<chrono::Utc>) -> String {
    Timestamp(t).to_string()
}

/// An instant as [`timestamp`] writes it, for writing straight into a
/// serializer (`collect_str`) without a `String`.
pub struct Timestamp(pub chrono::DateTime<chrono::Utc>);

impl std::fmt::Display for Timestamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use chrono::{Datelike, Timelike};
        // Written out by hand: `format()` parses its pattern on every call, and
        // this runs ten times per hot-path response.
        let t = self.0;
        write!(
            f,
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
            t.year(),
            t.month(),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        )
    }
}

/// Any route that does not exist.
pub async fn not_found() -> Result<actix_web::HttpResponse, Error> {
    Err(Error::NotFound)
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    #[test]
    fn timestamps_are_iso_8601_seconds_utc() {
        let t = chrono::Utc.with_ymd_and_hms(2023, 8, 8, 9, 5, 7).unwrap()
            + chrono::TimeDelta::microseconds(999_999);
        assert_eq!(super::timestamp(t), "2023-08-08T09:05:07Z");
        let t = chrono::Utc.with_ymd_and_hms(987, 1, 2, 3, 4, 5).unwrap();
        assert_eq!(
            super::timestamp(t),
            t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
        );
    }
}
