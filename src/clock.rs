//! The current instant, injectable so tests can stand at an expiry boundary.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, Timelike, Utc};

/// A source of "now". Instants are truncated to microseconds, the precision both
/// databases store, so a value read back equals the value written.
pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
}

fn to_micros(t: DateTime<Utc>) -> DateTime<Utc> {
    // As `duration_trunc(microseconds(1))`, without its general arithmetic
    // (it is on every request's path); a leap second's nanoseconds stay in it.
    t.with_nanosecond(t.nanosecond() / 1_000 * 1_000)
        .unwrap_or(t)
}

/// The wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        to_micros(Utc::now())
    }
}

/// A clock that stands still until told to move; for tests.
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<Mutex<DateTime<Utc>>>);

impl ManualClock {
    pub fn new(at: DateTime<Utc>) -> Self {
        Self(Arc::new(Mutex::new(to_micros(at))))
    }

    pub fn set(&self, at: DateTime<Utc>) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = to_micros(at);
    }

    pub fn advance(&self, by: Duration) {
        let mut now = self.0.lock().unwrap_or_else(|e| e.into_inner());
        *now += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use chrono::{DurationRound, TimeZone};

    use super::*;

    #[test]
    fn instants_are_cut_to_the_microsecond_as_duration_trunc_cuts_them() {
        let second = Utc.with_ymd_and_hms(2026, 12, 7, 23, 59, 59).unwrap();
        for nanos in [0, 1, 999, 1_000, 123_456_789, 999_999_999] {
            let t = second + Duration::nanoseconds(nanos);
            let expected = t.duration_trunc(Duration::microseconds(1)).unwrap();
            assert_eq!(to_micros(t), expected, "{nanos} ns");
        }
        let now = SystemClock.now();
        assert_eq!(now.nanosecond() % 1_000, 0);
    }
}
