//! `/management/v1/sessions`: list, detail with turns, a turn's diff, and reverting a turn.

use crate::api::auth::Principal;
use crate::api::params;
use crate::api::wire::{self, SessionDetailView, SessionView};
use crate::app::App;
use crate::error::{Error, Result};
use crate::http::{Request, Response};
use crate::store;
use crate::workspace::ops;
use serde_json::json;
use std::sync::Arc;

/// `GET /management/v1/sessions?user_id=&provider=&q=&limit=&cursor=`: newest activity first,
/// paged by `meta.page.next_cursor`.
pub fn list(app: &Arc<App>, request: &Request, _principal: &Principal) -> Result<Response> {
    let limit = params::limit(request, 500)?;
    let param = |name: &str| {
        request
            .query_param(name)
            .filter(|v| !v.is_empty())
            .map(str::to_string)
    };
    let filter = store::sessions::Filter {
        user_id: param("user_id"),
        provider: param("provider"),
        text: param("q"),
        before_cursor: params::cursor(request)?,
    };
    let rows = app
        .store
        .read(|conn| store::sessions::search(conn, &filter, limit + 1))?;
    let has_more = rows.len() as i64 > limit;
    let rows: Vec<_> = rows.into_iter().take(limit as usize).collect();
    let next = has_more
        .then(|| rows.last().map(|s| format!("{}:{}", s.updated_at, s.id)))
        .flatten();
    let data = wire::json(&rows.iter().map(SessionView::from).collect::<Vec<_>>())?;
    Ok(Response::json(
        200,
        &json!({"ok": true, "data": data, "meta": {"request_id": request.request_id,
                "page": {"next_cursor": next, "has_more": has_more, "limit": limit}}}),
    ))
}

/// `GET /management/v1/sessions/{id}`: the session and its turns.
pub fn detail(app: &Arc<App>, request: &Request, _principal: &Principal) -> Result<Response> {
    let id = request.param("id")?;
    let (session, turns) = app.store.read(|conn| {
        let session = store::sessions::get(conn, id)?
            .ok_or_else(|| Error::NotFound(format!("no session {id}")))?;
        let turns = store::turns::list_for_session(conn, id)?;
        Ok((session, turns))
    })?;
    let data = wire::json(&SessionDetailView::of(&session, &turns))?;
    Ok(Response::envelope(&request.request_id, data))
}

/// `DELETE /management/v1/sessions/{id}`: wipes the session and its turns (files are kept).
pub fn wipe(app: &Arc<App>, request: &Request, principal: &Principal) -> Result<Response> {
    let id = request.param("id")?;
    ops::wipe_session(
        &app.store,
        id,
        &principal.actor(),
        Some(&request.request_id),
    )?;
    Ok(Response::envelope(
        &request.request_id,
        json!({"id": id, "wiped": true}),
    ))
}

/// `GET /management/v1/sessions/{id}/turns/{n}/diff`: the files and unified diff of one turn.
pub fn turn_diff(app: &Arc<App>, request: &Request, _principal: &Principal) -> Result<Response> {
    let turn = load_turn(app, request)?;
    let (changes, diff) = ops::turn_diff(&ops::Context::of(app), &turn)?;
    Ok(Response::envelope(
        &request.request_id,
        json!({
            "turn_id": turn.id,
            "turn_index": turn.turn_index,
            "modified_files": changes.iter().map(|c| c.path.clone()).collect::<Vec<_>>(),
            "diff": diff,
        }),
    ))
}

/// `POST /management/v1/sessions/{id}/turns/{n}/revert`: restores the workspace to before that
/// turn (`workspace::ops::revert`: under the workspace lock, audited as `turn.reverted`).
pub fn turn_revert(app: &Arc<App>, request: &Request, principal: &Principal) -> Result<Response> {
    let turn = load_turn(app, request)?;
    ops::revert(
        &ops::Context::of(app),
        &turn,
        &principal.actor(),
        Some(&request.request_id),
    )?;
    Ok(Response::envelope(
        &request.request_id,
        json!({"reverted": true, "turn_id": turn.id, "workspace": turn.workspace_path}),
    ))
}

/// The turn `{turn}` of session `{id}`; a 400 naming `turn` when it is not a number.
fn load_turn(app: &App, request: &Request) -> Result<store::turns::Turn> {
    let id = request.param("id")?;
    let index_text = request.param("turn")?;
    let index: i64 = index_text.parse().map_err(|_| {
        Error::bad_param("turn", format!("turn must be a number, got `{index_text}`"))
    })?;
    app.store
        .read(|conn| store::turns::get(conn, id, index))?
        .ok_or_else(|| Error::NotFound(format!("no turn {index} in session {id}")))
}

#[cfg(test)]
mod tests {
    use crate::api::testing::{self, TestApp};
    use crate::store::sessions::{self, Session};

    /// Filters and cursor pages of `GET /management/v1/sessions`: the sessions found (newest
    /// first), whether more follow, or the 400 naming the parameter.
    #[test]
    fn list_filters_and_pages() {
        let test = TestApp::new();
        test.app
            .store
            .write(|tx| {
                for (n, (user, provider, label)) in [
                    ("u1", "codex", "alpha"),
                    ("u1", "gemini", "beta"),
                    ("u2", "codex", "gamma"),
                    ("u2", "codex", "Alpha two"),
                ]
                .into_iter()
                .enumerate()
                {
                    sessions::upsert(
                        tx,
                        &Session {
                            id: format!("ses_{n}"),
                            session_key: format!("{user}::.::{label}"),
                            user_id: user.into(),
                            workspace_id: ".".into(),
                            workspace_path: format!("/w/{user}"),
                            client_session_id: label.into(),
                            provider: provider.into(),
                            model: "m".into(),
                            created_at: 1,
                            updated_at: 10 + n as i64,
                            ..Session::default()
                        },
                    )?;
                }
                Ok(())
            })
            .unwrap();
        let get = |query: &str| -> String {
            let url = format!("/management/v1/sessions{query}");
            match test.operator("GET", &url, None) {
                Ok(response) => {
                    let (_, body) = testing::json(response);
                    let labels: Vec<&str> = body["data"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|s| s["client_session_id"].as_str().unwrap())
                        .collect();
                    format!(
                        "{} more={}",
                        labels.join(","),
                        body["meta"]["page"]["has_more"]
                    )
                }
                Err(e) => format!("{} {}: {e}", e.status(), e.param().unwrap_or("-")),
            }
        };
        assert_eq!(get(""), "Alpha two,gamma,beta,alpha more=false");
        assert_eq!(get("?user_id=u1"), "beta,alpha more=false");
        assert_eq!(get("?provider=codex"), "Alpha two,gamma,alpha more=false");
        assert_eq!(get("?q=ALPHA"), "Alpha two,alpha more=false");
        assert_eq!(get("?q=/w/u2&provider=codex"), "Alpha two,gamma more=false");
        assert_eq!(get("?limit=2"), "Alpha two,gamma more=true");
        let (_, page) = testing::json(
            test.operator("GET", "/management/v1/sessions?limit=2", None)
                .unwrap(),
        );
        let cursor = page["meta"]["page"]["next_cursor"].as_str().unwrap();
        assert_eq!(cursor, "12:ses_2");
        assert_eq!(
            get(&format!("?limit=2&cursor={cursor}")),
            "beta,alpha more=false"
        );
        assert_eq!(
            get("?cursor=x"),
            "400 cursor: invalid cursor; pass meta.page.next_cursor back"
        );
        assert_eq!(get("?limit=501"), "400 limit: `limit` must be 1-500");
    }
}
