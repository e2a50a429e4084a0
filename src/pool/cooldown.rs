//! Reading a failed CLI run as a rate limit, an auth failure or something else, and the cooldown
//! that follows a rate limit.
//!
//! Owns the failure classifier (codex error messages and stderr) and the backoff policy of SPEC §5:
//! the reported reset when there is one, else 1 min doubling to 30 min. Unlike the original, a
//! cooldown is a point in time that ends by itself. Must not read the clock: `now_ms` is passed in.

/// How a failed run reflects on the account that ran it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Rate limited or out of quota; `resets_at_ms` when the message said when it ends.
    RateLimit {
        /// Epoch ms of the reported reset, if the message had one.
        resets_at_ms: Option<i64>,
    },
    /// The provider refused the credential: the account needs re-authentication.
    Auth,
    /// Anything else; says nothing about the account.
    Other,
}

/// The first backoff step: one minute.
pub const BACKOFF_BASE_MS: i64 = 60_000;
/// The longest backoff: thirty minutes.
pub const BACKOFF_CAP_MS: i64 = 30 * 60_000;
/// A reported reset is believed up to this far ahead (a weekly window plus a day of slack).
pub const MAX_REPORTED_RESET_MS: i64 = 8 * 86_400_000;

/// Phrases that mean the credential itself was refused (checked first, lower-cased).
const AUTH_PHRASES: &[&str] = &[
    "unauthorized",
    "invalid_grant",
    "refresh token",
    "refresh_token",
    "log in again",
    "login again",
    "sign in again",
    "signing in again",
    "log out and sign in",
    "token expired",
    "token is expired",
    "token has expired",
    "token_expired",
    "invalid_token",
];

/// Phrases that mean a rate limit or an exhausted quota (lower-cased).
const RATE_PHRASES: &[&str] = &[
    "usage limit",
    "usage_limit",
    "rate limit",
    "rate_limit",
    "ratelimit",
    "too many requests",
    "quota",
];

/// Classifies the error text of a failed run (the CLI's error message and/or stderr).
///
/// Auth phrases win over rate-limit phrases, which win over a bare `401` status (so a message like
/// "try again in 401 minutes" stays a rate limit). Reset times are read from "try again in 2 hours
/// 3 minutes" (days, hours, minutes, seconds, ms, Go-style `6m0s`, "less than a minute"), from
/// "Try again at 3:45 PM" or "at Nov 24th, 2026 3:45 PM", and from JSON `resets_in_seconds` /
/// `resets_at` (epoch s). Clock times are read as UTC: codex prints them in its local time zone,
/// so the CLI must run with `TZ=UTC` for them to be right; a wrong or past value only falls back
/// to backoff in [`next_cooldown_until`].
pub fn classify(text: &str, now_ms: i64) -> Failure {
    let lower = text.to_ascii_lowercase();
    if AUTH_PHRASES.iter().any(|p| lower.contains(p)) {
        return Failure::Auth;
    }
    if RATE_PHRASES.iter().any(|p| lower.contains(p)) || has_status(&lower, "429") {
        return Failure::RateLimit {
            resets_at_ms: reported_reset(&lower, now_ms),
        };
    }
    if has_status(&lower, "401") {
        return Failure::Auth;
    }
    Failure::Other
}

/// When a rate-limited account may be tried again.
///
/// The reported reset when it is known and in the future (believed up to
/// [`MAX_REPORTED_RESET_MS`] ahead); otherwise exponential backoff, where `consecutive_failures`
/// counts this failure too: 1 → 1 min, 2 → 2, 3 → 4, 4 → 8, 5 → 16, then 30 min (0 counts as 1).
pub fn next_cooldown_until(
    resets_at_ms: Option<i64>,
    consecutive_failures: u32,
    now_ms: i64,
) -> i64 {
    if let Some(reset) = resets_at_ms.filter(|&r| r > now_ms) {
        return reset.min(now_ms.saturating_add(MAX_REPORTED_RESET_MS));
    }
    let doublings = consecutive_failures.saturating_sub(1).min(5);
    let backoff = (BACKOFF_BASE_MS << doublings).min(BACKOFF_CAP_MS);
    now_ms.saturating_add(backoff)
}

/// True when `code` occurs in `text` not as part of a longer number.
fn has_status(text: &str, code: &str) -> bool {
    let bytes = text.as_bytes();
    text.match_indices(code).any(|(at, _)| {
        let before = at.checked_sub(1).and_then(|i| bytes.get(i));
        let after = bytes.get(at + code.len());
        !before.is_some_and(u8::is_ascii_digit) && !after.is_some_and(u8::is_ascii_digit)
    })
}

/// The reset time a (lower-cased) message reports, if any.
fn reported_reset(lower: &str, now_ms: i64) -> Option<i64> {
    const RELATIVE: &[&str] = &[
        "again in ",
        "retry in ",
        "retry after ",
        "resets in ",
        "reset in ",
        "reset after ",
    ];
    for marker in RELATIVE {
        for (at, _) in lower.match_indices(marker) {
            if let Some(ms) = parse_duration_ms(&lower[at + marker.len()..]) {
                return Some(now_ms.saturating_add(ms));
            }
        }
    }
    for (at, _) in lower.match_indices("again at ") {
        if let Some(ms) = parse_clock(&lower[at + "again at ".len()..], now_ms) {
            return Some(ms);
        }
    }
    if let Some(secs) = json_number(lower, "\"resets_in_seconds\"") {
        return Some(now_ms.saturating_add((secs * 1000.0) as i64));
    }
    json_number(lower, "\"resets_at\"").map(|secs| (secs * 1000.0) as i64)
}

/// Reads a duration such as `2 hours 3 minutes`, `1 day, 4 hours and 5 minutes`, `1.5s`, `6m0s`,
/// `an hour` or `less than a minute` at the start of `text`, in milliseconds.
fn parse_duration_ms(text: &str) -> Option<i64> {
    if text.starts_with("less than a minute") {
        return Some(60_000);
    }
    let mut rest = text;
    let mut total = 0.0f64;
    let mut any = false;
    loop {
        let trimmed = rest.trim_start_matches([' ', ',']);
        let trimmed = trimmed.strip_prefix("and ").unwrap_or(trimmed);
        let (amount, after_number) = if let Some(r) = trimmed.strip_prefix("an ") {
            (1.0, r)
        } else if let Some(r) = trimmed.strip_prefix("a ") {
            (1.0, r)
        } else {
            let end = trimmed
                .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                .unwrap_or(trimmed.len());
            let Ok(amount) = trimmed[..end].parse::<f64>() else {
                break;
            };
            (amount, &trimmed[end..])
        };
        let after_number = after_number.trim_start();
        let unit_end = after_number
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(after_number.len());
        let unit_ms = match &after_number[..unit_end] {
            "ms" | "millisecond" | "milliseconds" => 1.0,
            "s" | "sec" | "secs" | "second" | "seconds" => 1_000.0,
            "m" | "min" | "mins" | "minute" | "minutes" => 60_000.0,
            "h" | "hr" | "hrs" | "hour" | "hours" => 3_600_000.0,
            "d" | "day" | "days" => 86_400_000.0,
            "w" | "week" | "weeks" => 604_800_000.0,
            _ => break,
        };
        total += amount * unit_ms;
        any = true;
        rest = &after_number[unit_end..];
    }
    (any && total.is_finite()).then(|| total.ceil().min(i64::MAX as f64) as i64)
}

/// Reads `3:45 pm`, `15:45`, `nov 24th, 2026 3:45 pm` or an RFC 3339 time at the start of `text`
/// (lower-cased) as UTC epoch ms; a time without a date is on the UTC date of `now_ms`.
fn parse_clock(text: &str, now_ms: i64) -> Option<i64> {
    let first = text.split_whitespace().next()?;
    if let Some(ms) = crate::clock::parse_rfc3339(first.trim_end_matches(['.', ','])) {
        if first.contains('t') {
            return Some(ms);
        }
    }
    const MONTHS: [&str; 12] = [
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ];
    let mut words = text.split_whitespace().peekable();
    let today = crate::clock::civil(now_ms);
    let (mut year, mut month, mut day) = (today.year, today.month, today.day);
    let head = words.peek()?;
    if let Some(index) = MONTHS.iter().position(|m| head.starts_with(m)) {
        words.next();
        month = index as u32 + 1;
        let day_word = words.next()?;
        let digits: String = day_word.chars().take_while(char::is_ascii_digit).collect();
        day = digits.parse().ok()?;
        let year_word = words.next()?.trim_end_matches(',');
        year = year_word.parse().ok()?;
    }
    let time = words.next()?.trim_end_matches(['.', ',']);
    let (h, m) = time.split_once(':')?;
    let m = m.get(..2)?;
    let mut hour: u32 = h.parse().ok()?;
    let minute: u32 = m.parse().ok()?;
    let meridiem = time
        .get(h.len() + 3..)
        .filter(|s| !s.is_empty())
        .or_else(|| words.next())
        .map(|w| w.trim_end_matches(['.', ',']));
    match meridiem {
        Some("am") if (1..=12).contains(&hour) => hour %= 12,
        Some("pm") if (1..=12).contains(&hour) => hour = hour % 12 + 12,
        Some("am" | "pm") => return None,
        _ => {}
    }
    crate::clock::parse_rfc3339(&format!(
        "{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:00Z"
    ))
}

/// The number after a JSON `"key":` in `text`, if there is one.
fn json_number(text: &str, key: &str) -> Option<f64> {
    let at = text.find(key)? + key.len();
    let rest = text[at..].trim_start().strip_prefix(':')?.trim_start();
    let end = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(rest.len());
    rest[..end].parse().ok().filter(|n: &f64| n.is_finite())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2027-01-15T10:00:00Z.
    const NOW: i64 = 1_800_007_200_000;
    const SEC: i64 = 1_000;
    const MIN: i64 = 60 * SEC;
    const HOUR: i64 = 60 * MIN;

    fn check(input: &str, expected: Failure) {
        assert_eq!(classify(input, NOW), expected, "input: {input}");
    }

    fn limited(after_ms: i64) -> Failure {
        Failure::RateLimit {
            resets_at_ms: Some(NOW + after_ms),
        }
    }

    const UNKNOWN: Failure = Failure::RateLimit { resets_at_ms: None };

    #[test]
    fn now_is_what_the_tests_assume() {
        assert_eq!(crate::clock::rfc3339(NOW), "2027-01-15T10:00:00.000Z");
    }

    #[test]
    fn classifies_rate_limits() {
        check(
            "You've hit your usage limit. Try again in 2 hours 3 minutes.",
            limited(2 * HOUR + 3 * MIN),
        );
        check(
            "You've hit your usage limit. Upgrade to Pro (https://openai.com/chatgpt/pricing) or try again in 1 day 4 hours 5 minutes.",
            limited(28 * HOUR + 5 * MIN),
        );
        check(
            "You've hit your usage limit. Try again in 45 seconds.",
            limited(45 * SEC),
        );
        check(
            "You've hit your usage limit. Try again in 3 days.",
            limited(72 * HOUR),
        );
        check(
            "You've hit your usage limit. Try again in less than a minute.",
            limited(MIN),
        );
        check("You've hit your usage limit. Try again later.", UNKNOWN);
        check(
            "You've hit your usage limit. Try again at 3:45 PM.",
            limited(5 * HOUR + 45 * MIN),
        );
        check(
            "You've hit your usage limit. Try again at 10:30 AM.",
            limited(30 * MIN),
        );
        check(
            "You've hit your usage limit. Try again at 12:05 PM.",
            limited(2 * HOUR + 5 * MIN),
        );
        check(
            "You've hit your usage limit. Try again at Jan 17th, 2027 12:15 AM.",
            limited(38 * HOUR + 15 * MIN),
        );
        check(
            "You've hit your usage limit. Try again at 2027-01-15T11:00:00Z.",
            limited(HOUR),
        );
        check(
            "stream error: Rate limit reached for gpt-5 in organization org-x on tokens per min. Please try again in 1.5s.",
            limited(1_500),
        );
        check("Rate limit reached. Please try again in 20ms.", limited(20));
        check(
            "rate_limit_exceeded: please retry in 6m0s",
            limited(6 * MIN),
        );
        check(
            "exceeded retry limit, last status: 429 Too Many Requests",
            UNKNOWN,
        );
        check("unexpected status 429: {\"detail\":\"slow down\"}", UNKNOWN);
        check("HTTP 429", UNKNOWN);
        check(
            "You exceeded your current quota, please check your plan and billing details.",
            UNKNOWN,
        );
        check(
            "{\"error\":{\"type\":\"usage_limit_reached\",\"message\":\"The usage limit has been reached\",\"resets_in_seconds\":600}}",
            limited(10 * MIN),
        );
        check(
            "{\"error\":{\"type\":\"usage_limit_reached\",\"resets_at\":1800000000}}",
            Failure::RateLimit {
                resets_at_ms: Some(1_800_000_000_000),
            },
        );
        check(
            "You've hit your usage limit. Try again in 401 minutes.",
            limited(401 * MIN),
        );
    }

    #[test]
    fn classifies_auth_failures() {
        check(
            "unexpected status 401 Unauthorized: Missing bearer or basic authentication in header",
            Failure::Auth,
        );
        check("HTTP 401", Failure::Auth);
        check(
            "Your access token could not be refreshed because your refresh token was already used. Please log out and sign in again.",
            Failure::Auth,
        );
        check(
            "Provided authentication token is expired. Please try signing in again.",
            Failure::Auth,
        );
        check(
            "token refresh refused: invalid_grant (refresh token expired)",
            Failure::Auth,
        );
        check("Your session has ended, please log in again", Failure::Auth);
        check("error: token expired", Failure::Auth);
    }

    #[test]
    fn everything_else_is_other() {
        check(
            "unexpected status 400 Bad Request: model not supported",
            Failure::Other,
        );
        check(
            "{\"error\": {\"message\": \"scripted failure\", \"code\": \"400\"}}",
            Failure::Other,
        );
        check(
            "stream disconnected before completion: connection reset",
            Failure::Other,
        );
        check("request id 14290 failed", Failure::Other);
        check("wrote 4011 bytes", Failure::Other);
        check("", Failure::Other);
    }

    #[test]
    fn backoff_sequence_doubles_to_thirty_minutes() {
        let minutes: Vec<i64> = (1..=7)
            .map(|n| (next_cooldown_until(None, n, NOW) - NOW) / MIN)
            .collect();
        assert_eq!(minutes, [1, 2, 4, 8, 16, 30, 30]);
        assert_eq!(next_cooldown_until(None, 0, NOW), NOW + MIN);
        assert_eq!(next_cooldown_until(None, u32::MAX, NOW), NOW + 30 * MIN);
    }

    #[test]
    fn reported_reset_wins_when_in_the_future() {
        assert_eq!(
            next_cooldown_until(Some(NOW + 3 * HOUR), 1, NOW),
            NOW + 3 * HOUR
        );
        assert_eq!(
            next_cooldown_until(Some(NOW + 3 * HOUR), 9, NOW),
            NOW + 3 * HOUR
        );
        // A past or present reset falls back to backoff.
        assert_eq!(next_cooldown_until(Some(NOW - HOUR), 3, NOW), NOW + 4 * MIN);
        assert_eq!(next_cooldown_until(Some(NOW), 1, NOW), NOW + MIN);
        // An absurd reset is capped.
        assert_eq!(
            next_cooldown_until(Some(NOW + 400 * 86_400_000), 1, NOW),
            NOW + MAX_REPORTED_RESET_MS
        );
    }
}
