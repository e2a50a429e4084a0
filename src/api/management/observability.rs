//! The Observability explorer's routes: `GET /management/v1/traces` (trace roots),
//! `GET /management/v1/traces/{id}` (one trace's timeline with its log lines),
//! `GET /management/v1/logs` and `GET /management/v1/observability/search` (roots and log lines
//! together), all newest first with `limit`/`cursor` pages and `since`/`until`/`range`.
//!
//! Reading is `telemetry::query`'s; this file parses parameters and renders the views.

use crate::api::auth::Principal;
use crate::api::params;
use crate::api::wire::{self, FoundView, LogLineView, TraceDetailView, TraceRowView};
use crate::app::App;
use crate::error::{Error, Result};
use crate::http::{Request, Response};
use crate::telemetry::query::{self, LogFilter, Page, TraceFilter};
use serde_json::{json, Value};
use std::sync::Arc;

/// A non-empty query parameter.
fn text(request: &Request, name: &str) -> Option<String> {
    request
        .query_param(name)
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_string)
}

/// The list envelope with its page.
fn page_response<T>(request: &Request, page: &Page<T>, data: Value, limit: i64) -> Response {
    Response::json(
        200,
        &json!({"ok": true, "data": data, "meta": {"request_id": request.request_id,
                "page": {"next_cursor": page.next_cursor, "has_more": page.has_more,
                         "limit": limit}}}),
    )
}

/// `GET /management/v1/traces?q=&status=&provider=&user=&route=&min_ms=&since=&until=&range=`.
pub fn traces(app: &Arc<App>, request: &Request, _principal: &Principal) -> Result<Response> {
    let limit = params::limit(request, 200)?;
    let status = text(request, "status");
    if let Some(status) = &status {
        if status != "ok" && status != "error" {
            return Err(Error::bad_param("status", "`status` must be ok or error"));
        }
    }
    let min_ms = match text(request, "min_ms") {
        None => None,
        Some(value) => Some(
            value
                .parse::<f64>()
                .ok()
                .filter(|ms| ms.is_finite() && *ms >= 0.0)
                .ok_or_else(|| {
                    Error::bad_param("min_ms", "`min_ms` must be a number of milliseconds")
                })?,
        ),
    };
    let filter = TraceFilter {
        text: text(request, "q"),
        status,
        provider: text(request, "provider"),
        user: text(request, "user"),
        route: text(request, "route"),
        min_ms,
        window: params::window(request, crate::clock::now_ms())?,
    };
    let cursor = text(request, "cursor");
    let page = query::traces(
        &app.config.trace_root(),
        &filter,
        limit as usize,
        cursor.as_deref(),
    )?;
    let data = wire::json(
        &page
            .items
            .iter()
            .map(TraceRowView::from)
            .collect::<Vec<_>>(),
    )?;
    Ok(page_response(request, &page, data, limit))
}

/// `GET /management/v1/traces/{id}`: the spans in order and the trace's log lines; 404 for an
/// id no shard holds.
pub fn trace(app: &Arc<App>, request: &Request, _principal: &Principal) -> Result<Response> {
    // Ids are written in lower case (W3C); one pasted in upper case is the same trace.
    let id = request.param("id")?.to_ascii_lowercase();
    let id = id.as_str();
    let detail = query::trace(
        &app.config.trace_root(),
        &app.config.log_root(),
        id,
        crate::clock::now_ms(),
    )?
    .ok_or_else(|| {
        Error::NotFound(format!(
            "no trace `{}` (traces are kept {} days)",
            id.chars().take(64).collect::<String>(),
            app.config.telemetry.trace_retention_days
        ))
    })?;
    Ok(Response::envelope(
        &request.request_id,
        wire::json(&TraceDetailView::from(&detail))?,
    ))
}

/// `GET /management/v1/logs?q=&level=&target=&since=&until=&range=`: `level` keeps that level
/// and the more severe ones.
pub fn logs(app: &Arc<App>, request: &Request, _principal: &Principal) -> Result<Response> {
    let limit = params::limit(request, 200)?;
    let level = match text(request, "level") {
        None => None,
        Some(level) => Some(level.parse::<log::Level>().map_err(|_| {
            Error::bad_param(
                "level",
                "`level` must be one of error, warn, info, debug, trace",
            )
        })?),
    };
    let filter = LogFilter {
        text: text(request, "q"),
        level,
        target: text(request, "target"),
        window: params::window(request, crate::clock::now_ms())?,
    };
    let cursor = text(request, "cursor");
    let page = query::logs(
        &app.config.log_root(),
        &filter,
        limit as usize,
        cursor.as_deref(),
    )?;
    let data = wire::json(&page.items.iter().map(LogLineView::from).collect::<Vec<_>>())?;
    Ok(page_response(request, &page, data, limit))
}

/// `GET /management/v1/observability/search?q=&since=&until=&range=`: trace roots and log lines
/// together, newest first, each with `kind` and `ts`.
pub fn search(app: &Arc<App>, request: &Request, _principal: &Principal) -> Result<Response> {
    let limit = params::limit(request, 200)?;
    let window = params::window(request, crate::clock::now_ms())?;
    let cursor = text(request, "cursor");
    let q = text(request, "q");
    let page = query::search(
        &app.config.trace_root(),
        &app.config.log_root(),
        q.as_deref(),
        window,
        limit as usize,
        cursor.as_deref(),
    )?;
    let data = wire::json(&page.items.iter().map(FoundView::from).collect::<Vec<_>>())?;
    Ok(page_response(request, &page, data, limit))
}

#[cfg(test)]
mod tests {
    use crate::api::testing::{self, TestApp};

    /// Query parameters → the status, or the 400 naming the parameter.
    #[test]
    fn parameters() {
        let test = TestApp::new();
        let check = |url: &str, expected: &str| {
            let got = match test.operator("GET", url, None) {
                Ok(response) => {
                    let (status, body) = testing::json(response);
                    format!("{status} {}", body["data"].as_array().map_or(0, Vec::len))
                }
                Err(e) => format!("{} {}: {e}", e.status(), e.param().unwrap_or("-")),
            };
            assert_eq!(got, expected, "{url}");
        };
        check("/management/v1/traces", "200 0");
        check(
            "/management/v1/traces?range=15m&status=error&min_ms=3",
            "200 0",
        );
        check(
            "/management/v1/traces?status=bad",
            "400 status: `status` must be ok or error",
        );
        check(
            "/management/v1/traces?min_ms=-1",
            "400 min_ms: `min_ms` must be a number of milliseconds",
        );
        check(
            "/management/v1/traces?range=5x",
            "400 range: `range` must be like 15m, 1h, 24h or 7d, got `5x`",
        );
        check(
            "/management/v1/traces?range=1h&since=0",
            "400 range: `range` is a range ending now: use it or `since`/`until`, not both",
        );
        check(
            "/management/v1/traces?cursor=x",
            "400 cursor: invalid cursor; pass meta.page.next_cursor back",
        );
        check("/management/v1/logs?level=warn&since=2026-01-01", "200 0");
        check(
            "/management/v1/logs?level=loud",
            "400 level: `level` must be one of error, warn, info, debug, trace",
        );
        check(
            "/management/v1/logs?until=tomorrow",
            "400 until: `until` must be epoch ms or RFC 3339",
        );
        check("/management/v1/observability/search?q=x&range=7d", "200 0");
        check(
            "/management/v1/observability/search?cursor=1.2",
            "400 cursor: invalid cursor; pass meta.page.next_cursor back",
        );
        check(
            "/management/v1/traces/0123456789abcdef0123456789abcdef",
            "404 -: no trace `0123456789abcdef0123456789abcdef` (traces are kept 30 days)",
        );
    }
}
