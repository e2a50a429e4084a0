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

/// Parses `YYYY-MM-DD`, or `YYYY-MM-DDTHH:MM[:SS[.fff]]` with `Z` or a `±HH:MM` offset, to epoch ms.
pub fn parse_rfc3339(text: &str) -> Option<i64> {
    let text = text.trim();
    let num = |s: &str| -> Option<i64> {
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    let (date, rest) = text.split_at(text.len().min(10));
    let mut parts = date.split('-');
    let (year, month, day) = (
        num(parts.next()?)?,
        num(parts.next()?)?,
        num(parts.next()?)?,
    );
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || date.len() != 10 {
        return None;
    }
    let days = days_from_civil(year, month as u32, day as u32);
    if rest.is_empty() {
        return Some(days * 86_400_000);
    }
    let rest = rest.strip_prefix(['T', 't', ' '])?;
    let (clock_part, offset_ms) = if let Some(stripped) = rest.strip_suffix(['Z', 'z']) {
        (stripped, 0)
    } else {
        let at = rest.rfind(['+', '-'])?;
        let (clock_part, offset) = rest.split_at(at);
        let sign = if offset.starts_with('-') { -1 } else { 1 };
        let (h, m) = offset[1..].split_once(':')?;
        (clock_part, sign * (num(h)? * 3_600_000 + num(m)? * 60_000))
    };
    let (hms, fraction) = clock_part.split_once('.').unwrap_or((clock_part, ""));
    let mut fields = hms.split(':');
    let hour = num(fields.next()?)?;
    let minute = num(fields.next()?)?;
    let second = fields.next().map(num).unwrap_or(Some(0))?;
    if hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let millis = if fraction.is_empty() {
        0
    } else {
        num(&format!("{:0<3}", &fraction[..fraction.len().min(3)]))?
    };
    Some(
        days * 86_400_000 + hour * 3_600_000 + minute * 60_000 + second * 1000 + millis - offset_ms,
    )
}

fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let yoe = year - era * 400;
    let month = i64::from(month);
    let doy = (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
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

    #[test]
    fn parses_what_it_renders() {
        for ms in [0, 951_782_400_000, 1_795_525_200_123] {
            assert_eq!(parse_rfc3339(&rfc3339(ms)), Some(ms));
        }
        assert_eq!(
            parse_rfc3339("2026-11-24T15:00:00+02:00"),
            Some(1_795_525_200_000)
        );
        assert_eq!(parse_rfc3339("2026-11-24"), Some(1_795_478_400_000));
        for bad in [
            "",
            "2026-13-01",
            "yesterday",
            "2026-11-24T25:00:00Z",
            "2026-11-24X",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }
}
