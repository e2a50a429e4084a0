//! `GET /management/v1/audit`: text search, actor/action/target filters, time range, cursor pages.

use crate::api::auth::Principal;
use crate::api::params;
use crate::api::wire::{self, AuditEntryView};
use crate::app::App;
use crate::error::Result;
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
    let before_cursor = params::cursor(request)?;
    let filter = store::audit::Filter {
        text: param("q").or_else(|| param("search")),
        actor: param("actor"),
        action: param("action"),
        target_type: param("target_type"),
        target_id: param("target_id"),
        since: params::instant(request, "since")?,
        until: params::instant(request, "until")?,
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

#[cfg(test)]
mod tests {
    use crate::api::testing::{self, TestApp};

    /// Query parameters → the entries found, or the 400 naming the parameter.
    #[test]
    fn search_parameters() {
        let test = TestApp::new();
        crate::users::ensure_dashboard_admin(&test.app.store, &test.app.config).unwrap();
        let check = |query: &str, expected: &str| {
            let url = format!("/management/v1/audit{query}");
            let got = match test.operator("GET", &url, None) {
                Ok(response) => {
                    let (_, body) = testing::json(response);
                    // Entries of one transaction share their time: compare them as a set.
                    let mut actions: Vec<String> = body["data"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|e| e["action"].as_str().unwrap().to_string())
                        .collect();
                    actions.sort();
                    format!(
                        "{} more={}",
                        actions.join(" "),
                        body["meta"]["page"]["has_more"]
                    )
                }
                Err(e) => format!("{} {}: {e}", e.status(), e.param().unwrap_or("-")),
            };
            assert_eq!(got, expected, "{url}");
        };
        check("", "user.created user.key.created more=false");
        check(
            "?limit=1&action=user.key.created",
            "user.key.created more=false",
        );
        check("?action=user.created", "user.created more=false");
        check("?action=user.", "user.created user.key.created more=false");
        check("?q=dashboard-admin", "user.created more=false");
        check("?since=0", "user.created user.key.created more=false");
        check("?until=1970-01-02T00:00:00Z", " more=false");
        let (_, page) = testing::json(
            test.operator("GET", "/management/v1/audit?limit=1", None)
                .unwrap(),
        );
        assert_eq!(page["data"].as_array().unwrap().len(), 1);
        assert_eq!(page["meta"]["page"]["has_more"], true);
        assert!(page["meta"]["page"]["next_cursor"].is_string());
        check("?limit=0", "400 limit: `limit` must be 1-200");
        check("?limit=201", "400 limit: `limit` must be 1-200");
        check(
            "?since=yesterday",
            "400 since: `since` must be epoch ms or RFC 3339",
        );
        check(
            "?cursor=nope",
            "400 cursor: invalid cursor; pass meta.page.next_cursor back",
        );
    }
}
