//! Reading common query parameters (`limit`, `cursor`, times), with 4xx errors naming the
//! parameter. Path parameters are bound by the router (`Request::param`).
//!
//! Shared by every handler that pages a list; must not know about any particular resource.

use crate::error::{Error, Result};
use crate::http::Request;

/// `limit` between 1 and `max` (default 50).
pub fn limit(request: &Request, max: i64) -> Result<i64> {
    match request.query_param("limit") {
        None | Some("") => Ok(50),
        Some(text) => text
            .parse::<i64>()
            .ok()
            .filter(|n| (1..=max).contains(n))
            .ok_or_else(|| Error::bad_param("limit", format!("`limit` must be 1-{max}"))),
    }
}

/// The `cursor` query parameter, `<epoch ms>:<id>` as the previous page's `next_cursor`.
pub fn cursor(request: &Request) -> Result<Option<(i64, String)>> {
    let Some(text) = request.query_param("cursor").filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    let invalid = || Error::bad_param("cursor", "invalid cursor; pass meta.page.next_cursor back");
    let (at, id) = text.split_once(':').ok_or_else(invalid)?;
    Ok(Some((at.parse().map_err(|_| invalid())?, id.to_string())))
}

/// Parses an optional RFC 3339 time field into epoch ms.
pub fn time(param: &str, value: Option<&str>) -> Result<Option<i64>> {
    value
        .map(|text| {
            crate::clock::parse_rfc3339(text).ok_or_else(|| {
                Error::bad_param(
                    param,
                    format!("`{param}` must be an RFC 3339 time, got `{text}`"),
                )
            })
        })
        .transpose()
}

/// An optional instant parameter: epoch ms or RFC 3339.
pub fn instant(request: &Request, name: &str) -> Result<Option<i64>> {
    match request.query_param(name).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(text) => text
            .parse::<i64>()
            .ok()
            .or_else(|| crate::clock::parse_rfc3339(text))
            .map(Some)
            .ok_or_else(|| {
                Error::bad_param(name, format!("`{name}` must be epoch ms or RFC 3339"))
            }),
    }
}

/// The time range of `since`/`until` (epoch ms or RFC 3339), or of `range` — a quick range
/// ending now: `15m`, `1h`, `24h`, `7d` (any `<n>m`, `<n>h`, `<n>d` up to 400 days).
pub fn window(request: &Request, now_ms: i64) -> Result<crate::telemetry::query::Window> {
    let since = instant(request, "since")?;
    let until = instant(request, "until")?;
    let Some(range) = request.query_param("range").filter(|v| !v.is_empty()) else {
        return Ok(crate::telemetry::query::Window { since, until });
    };
    if since.is_some() || until.is_some() {
        return Err(Error::bad_param(
            "range",
            "`range` is a range ending now: use it or `since`/`until`, not both",
        ));
    }
    let bad = || {
        Error::bad_param(
            "range",
            format!("`range` must be like 15m, 1h, 24h or 7d, got `{range}`"),
        )
    };
    let (number, unit) =
        range.split_at(range.len() - range.chars().last().map_or(0, char::len_utf8));
    let n: i64 = number.parse().ok().filter(|n| *n > 0).ok_or_else(bad)?;
    let unit_ms = match unit {
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(bad()),
    };
    let span = n
        .checked_mul(unit_ms)
        .filter(|ms| *ms <= 400 * 86_400_000)
        .ok_or_else(bad)?;
    Ok(crate::telemetry::query::Window {
        since: Some(now_ms - span),
        until: None,
    })
}
