//! `GET /management/v1/audit`: text search, actor/action/target filters, time range, cursor pages.

use crate::api::auth::Principal;
use crate::api::params;
use crate::api::wire::{self, AuditEntryView};
use crate::app::App;
use crate::error::{Error, Result};
use crate::http::{Request, Response};
use crate::store;
use serde_json::json;
use std::sync::Arc;

/// Searches the audit log, newest first.
pub fn search(app: &Arc<App>, request: &Request, _principal: &Principal) -> Result<Response> {
    let limit = params::limit(request, 200)?;
    let param = |name: &str| {
        request
            .query_param(name)
            .filter(|v| !v.is_empty())
            .map(str::to_string)
    };
    let time = |name: &str| -> Result<Option<i64>> {
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
    };
    let before_cursor = params::cursor(request)?;
    let filter = store::audit::Filter {
        text: param("q").or_else(|| param("search")),
        actor: param("actor"),
        action: param("action"),
        target_type: param("target_type"),
        target_id: param("target_id"),
        since: time("since")?,
        until: time("until")?,
        before_cursor,
    };
    let rows = app
        .store
        .read(|conn| store::audit::search(conn, &filter, limit + 1))?;
    let has_more = rows.len() as i64 > limit;
    let rows: Vec<_> = rows.into_iter().take(limit as usize).collect();
    let next = has_more
        .then(|| rows.last().map(|e| format!("{}:{}", e.at, e.id)))
        .flatten();
    let data = wire::json(&rows.iter().map(AuditEntryView::from).collect::<Vec<_>>())?;
    Ok(Response::json(
        200,
        &json!({"ok": true, "data": data, "meta": {"request_id": request.request_id,
                "page": {"next_cursor": next, "has_more": has_more, "limit": limit}}}),
    ))
}
