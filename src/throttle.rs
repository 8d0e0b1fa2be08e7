//! Failed-authentication throttling, per client address.
//!
//! After `limit` failed authentications from one address within a minute,
//! further attempts from that address are refused (429, with `Retry-After`)
//! before any database work, until the minute is over. Other addresses are not
//! affected, so a successful caller is never throttled by someone else's failures.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Mutex;

use chrono::{DateTime, TimeDelta, Utc};

const WINDOW: TimeDelta = TimeDelta::minutes(1);
/// Past this many tracked addresses, expired windows are swept on the next failure.
const SWEEP_ABOVE: usize = 10_000;

#[derive(Debug, Clone, Copy)]
struct Window {
    started: DateTime<Utc>,
    failures: u32,
}

#[derive(Debug)]
pub struct AuthThrottle {
    /// Failures allowed per address per minute; 0 disables throttling.
    limit: u32,
    windows: Mutex<HashMap<IpAddr, Window>>,
    /// The end (Unix ms) of the latest window that reached the limit: until
    /// then some address may be refused; after it none is, and
    /// [`AuthThrottle::check`] answers without taking the lock.
    refusing_until: AtomicI64,
}

impl AuthThrottle {
    pub fn new(limit: u32) -> Self {
        Self {
            limit,
            windows: Mutex::new(HashMap::new()),
            refusing_until: AtomicI64::new(i64::MIN),
        }
    }

    /// `Err(seconds)` to wait if `ip` has used up its failures for this minute.
    pub fn check(&self, ip: Option<IpAddr>, now: DateTime<Utc>) -> Result<(), u64> {
        let (Some(ip), true) = (ip, self.limit > 0) else {
            return Ok(());
        };
        if now.timestamp_millis() >= self.refusing_until.load(Ordering::Acquire) {
            return Ok(());
        }
        let windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        match windows.get(&ip) {
            Some(w) if w.failures >= self.limit && now < w.started + WINDOW => {
                let left = (w.started + WINDOW - now).num_milliseconds();
                Err(u64::try_from((left + 999) / 1000).unwrap_or(1).max(1))
            }
            _ => Ok(()),
        }
    }

    /// Counts a failed authentication from `ip`.
    pub fn fail(&self, ip: Option<IpAddr>, now: DateTime<Utc>) {
        let (Some(ip), true) = (ip, self.limit > 0) else {
            return;
        };
        let mut windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        if windows.len() > SWEEP_ABOVE {
            windows.retain(|_, w| now < w.started + WINDOW);
        }
        let window = windows.entry(ip).or_insert(Window {
            started: now,
            failures: 0,
        });
        if now >= window.started + WINDOW {
            *window = Window {
                started: now,
                failures: 0,
            };
        }
        window.failures = window.failures.saturating_add(1);
        if window.failures >= self.limit {
            let end = (window.started + WINDOW).timestamp_millis();
            self.refusing_until.fetch_max(end, Ordering::AcqRel);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn an_address_is_refused_for_the_rest_of_its_minute() {
        let t0 = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let throttle = AuthThrottle::new(3);
        for _ in 0..3 {
            assert_eq!(throttle.check(Some(a), t0), Ok(()));
            throttle.fail(Some(a), t0);
        }
        assert_eq!(
            throttle.check(Some(a), t0 + TimeDelta::seconds(20)),
            Err(40)
        );
        assert_eq!(throttle.check(Some(b), t0), Ok(()));
        assert_eq!(throttle.check(Some(a), t0 + TimeDelta::seconds(60)), Ok(()));
        throttle.fail(Some(a), t0 + TimeDelta::seconds(60));
        assert_eq!(throttle.check(Some(a), t0 + TimeDelta::seconds(61)), Ok(()));
    }

    #[test]
    fn zero_disables_it() {
        let t0 = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let throttle = AuthThrottle::new(0);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        for _ in 0..100 {
            throttle.fail(Some(a), t0);
        }
        assert_eq!(throttle.check(Some(a), t0), Ok(()));
    }
}
