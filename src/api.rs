//! The HTTP surface: operational endpoints and the two dialects over one core.
//!
//! Handlers stay thin: extract, call the core through [`AppState::db`], map the
//! result to the dialect. Errors are rendered in one place, [`context`].

pub mod access_log;
pub mod console;
pub mod context;
pub mod cors;
pub mod docs;
pub mod estuary;
pub mod front;
pub mod input;
pub mod metrics;
pub mod ops;
pub mod scim;
pub mod v1;

use actix_web::web;

use crate::error::Error;

pub fn configure(cfg: &mut web::ServiceConfig) {
    ops::configure(cfg);
    metrics::configure(cfg);
    v1::configure(cfg);
    estuary::configure(cfg);
    scim::configure(cfg);
    docs::configure(cfg);
    console::configure(cfg);
}

/// A resource whose route template the request middleware reads back from
/// its app data (for metrics and logs), instead of matching the path against
/// every route again (`match_pattern`).
pub fn resource(pattern: &'static str) -> actix_web::Resource {
    web::resource(pattern).app_data(Route(pattern))
}

/// What actix-web's `NormalizePath::trim` does, without its cost on the paths
/// that need nothing (nearly all): repeated slashes merged into one, trailing
/// ones dropped (`/` stays `/`). Before routing, so `/v1/user-api-keys/` and
/// `//v1/user-api-keys` are served as `/v1/user-api-keys`.
pub fn tidy_path(req: &mut actix_web::dev::ServiceRequest) {
    use actix_web::http::uri::{PathAndQuery, Uri};
    let Some(path) = tidied(req.path()) else {
        return;
    };
    let uri = &req.head().uri;
    let path_and_query = match uri.query() {
        Some(query) => format!("{path}?{query}"),
        None => path,
    };
    let mut parts = uri.clone().into_parts();
    let Ok(path_and_query) = PathAndQuery::from_maybe_shared(bytes::Bytes::from(path_and_query))
    else {
        return;
    };
    parts.path_and_query = Some(path_and_query);
    let Ok(uri) = Uri::from_parts(parts) else {
        return;
    };
    req.match_info_mut().get_mut().update(&uri);
    req.head_mut().uri = uri;
}

/// `path` tidied as [`tidy_path`] says; `None` when it already is.
fn tidied(path: &str) -> Option<String> {
    let trailing = path.len() > 1 && path.ends_with('/');
    // (A pair of bytes, not `contains("//")`: a substring search's set-up costs
    // more than a short path's whole scan.)
    let doubled = path.as_bytes().windows(2).any(|pair| pair == b"//");
    if path.is_empty() || (!trailing && !doubled) {
        return None;
    }
    let mut out = String::with_capacity(path.len());
    for c in path.trim_end_matches('/').chars() {
        if !(c == '/' && out.ends_with('/')) {
            out.push(c);
        }
    }
    if out.is_empty() {
        out.push('/');
    }
    (out != path).then_some(out)
}

/// The route template a request matched; see [`resource`].
#[derive(Debug, Clone, Copy)]
pub struct Route(pub &'static str);

/// ISO-8601 UTC, second precision, `Z` suffix: how both dialects show instants.
pub fn timestamp(t: chrono::DateTime<chrono::Utc>) -> String {
    Timestamp(t).to_string()
}

/// An instant as [`timestamp`] writes it; serializes as that string without
/// allocating one.
#[derive(Debug, Clone, Copy)]
pub struct Timestamp(pub chrono::DateTime<chrono::Utc>);

impl Timestamp {
    /// `YYYY-MM-DDTHH:MM:SSZ`, written digit by digit: `format()` parses its
    /// pattern on every call, and a listing writes thirty of these. Years
    /// outside 0..=9999 (never stored) fall back to chrono.
    fn write<R>(&self, f: impl FnOnce(&str) -> R) -> R {
        use chrono::{Datelike, Timelike};
        let t = self.0.naive_utc();
        let year = match u32::try_from(t.year()) {
            Ok(year) if year <= 9999 => year,
            _ => return f(&t.format("%Y-%m-%dT%H:%M:%SZ").to_string()),
        };
        let mut out = *b"0000-00-00T00:00:00Z";
        let mut put = |at: usize, width: usize, mut n: u32| {
            for i in (at..at + width).rev() {
                out[i] = b'0' + (n % 10) as u8;
                n /= 10;
            }
        };
        put(0, 4, year);
        put(5, 2, t.month());
        put(8, 2, t.day());
        put(11, 2, t.hour());
        put(14, 2, t.minute());
        put(17, 2, t.second());
        f(std::str::from_utf8(&out).unwrap_or_default())
    }
}

impl std::fmt::Display for Timestamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.write(|s| f.write_str(s))
    }
}

impl serde::Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.write(|s| serializer.serialize_str(s))
    }
}

/// `value` as JSON, written into a buffer sized for `size_hint` bytes (a
/// listing knows roughly how long it is; growing the buffer copies it).
pub fn json_bytes(value: &impl serde::Serialize, size_hint: usize) -> Result<bytes::Bytes, Error> {
    let mut body = Vec::with_capacity(size_hint);
    serde_json::to_writer(&mut body, value).map_err(|e| Error::Internal(e.to_string()))?;
    Ok(body.into())
}

/// A 200 with `body`, which is JSON.
pub fn json_ok(body: bytes::Bytes) -> actix_web::HttpResponse {
    actix_web::HttpResponse::Ok()
        .content_type(actix_web::http::header::ContentType::json())
        .body(body)
}

/// Any route that does not exist.
pub async fn not_found() -> Result<actix_web::HttpResponse, Error> {
    Err(Error::NotFound)
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    #[test]
    fn paths_are_tidied_as_normalize_path_trim_does() {
        for (path, tidied) in [
            ("/v1/user-api-keys", None),
            ("/", None),
            ("", None),
            ("/v1/user-api-keys/", Some("/v1/user-api-keys")),
            ("//v1//user-api-keys///", Some("/v1/user-api-keys")),
            ("///", Some("/")),
            ("/v1/auth//orders/", Some("/v1/auth/orders")),
        ] {
            assert_eq!(super::tidied(path).as_deref(), tidied, "{path}");
        }
    }

    #[test]
    fn timestamps_are_iso_8601_seconds_utc() {
        let t = chrono::Utc.with_ymd_and_hms(2023, 8, 8, 9, 5, 7).unwrap()
            + chrono::TimeDelta::microseconds(999_999);
        assert_eq!(super::timestamp(t), "2023-08-08T09:05:07Z");
        for t in [
            chrono::Utc.with_ymd_and_hms(987, 1, 2, 3, 4, 5).unwrap(),
            chrono::Utc
                .with_ymd_and_hms(9999, 12, 31, 23, 59, 59)
                .unwrap(),
            chrono::Utc.with_ymd_and_hms(10000, 1, 1, 0, 0, 0).unwrap(),
            chrono::Utc.with_ymd_and_hms(-1, 1, 1, 0, 0, 0).unwrap(),
        ] {
            assert_eq!(
                super::timestamp(t),
                t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
            );
            assert_eq!(
                serde_json::to_string(&super::Timestamp(t)).unwrap(),
                format!("\"{}\"", super::timestamp(t))
            );
        }
    }
}
