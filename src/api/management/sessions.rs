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

/// `GET /management/v1/sessions?user_id=&limit=`.
pub fn list(app: &Arc<App>, request: &Request, _principal: &Principal) -> Result<Response> {
    let limit = params::limit(request, 500)?;
    let user = request.query_param("user_id");
    let sessions = app
        .store
        .read(|conn| store::sessions::list(conn, user, limit))?;
    let data = wire::json(&sessions.iter().map(SessionView::from).collect::<Vec<_>>())?;
    Ok(Response::envelope(&request.request_id, data))
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
