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
