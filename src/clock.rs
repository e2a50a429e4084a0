//! Wall-clock time as UTC milliseconds and its RFC 3339 rendering.
//!
//! Owns every conversion between epoch milliseconds and calendar dates so that no other module
//! needs a date library. Must not read time zones: everything is UTC.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch, UTC; the unit every table stores.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() as i64)
        .unwrap_or(0)
}

/// A civil UTC date and time broken out of epoch milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Civil {
    pub year: i64,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
    pub millis: u32,
}

/// Breaks epoch milliseconds into a UTC calendar date (Howard Hinnant's `civil_from_days`).
pub fn civil(ms: i64) -> Civil {
    let days = ms.div_euclid(86_400_000);
    let ms_of_day = ms.rem_euclid(86_400_000);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    Civil {
        year,
        month,
        day,
        hour: (ms_of_day / 3_600_000) as u32,
        minute: (ms_of_day / 60_000 % 60) as u32,
        second: (ms_of_day / 1000 % 60) as u32,
        millis: (ms_of_day % 1000) as u32,
    }
}

/// Renders epoch milliseconds as RFC 3339 UTC with millisecond precision, e.g. `2026-11-24T13:05:00.123Z`.
pub fn rfc3339(ms: i64) -> String {
    let c = civil(ms);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        c.year, c.month, c.day, c.hour, c.minute, c.second, c.millis
    )
}

/// The UTC date of `ms` as `YYYY-MM-DD`, used to name daily log files.
pub fn ymd(ms: i64) -> String {
    let c = civil(ms);
    format!("{:04}-{:02}-{:02}", c.year, c.month, c.day)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(ms: i64, expected: &str) {
        assert_eq!(rfc3339(ms), expected);
    }

    #[test]
    fn renders_known_instants() {
        check(0, "1970-01-01T00:00:00.000Z");
        check(951_782_400_000, "2000-02-29T00:00:00.000Z");
        check(1_795_525_200_123, "2026-11-24T13:00:00.123Z");
        check(-1, "1969-12-31T23:59:59.999Z");
        assert_eq!(ymd(1_795_525_200_123), "2026-11-24");
    }
}
