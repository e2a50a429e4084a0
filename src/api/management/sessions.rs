//! `/management/v1/sessions`: list, detail with turns, a turn's diff, and reverting a turn.

use crate::api::auth::Principal;
use crate::api::params;
use crate::api::wire::{self, SessionDetailView, SessionView};
use crate::app::App;
use crate::error::{Error, Result};
use crate::http::{Request, Response};
use crate::store;
use serde_json::json;
use std::path::Path;
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
    app.store.write(|tx| {
        let session = store::sessions::get(tx, id)?
            .ok_or_else(|| Error::NotFound(format!("no session {id}")))?;
        store::sessions::delete(tx, id)?;
        crate::audit::record(
            tx,
            crate::audit::Record {
                actor: &principal.actor(),
                action: "session.wiped",
                target_type: "session",
                target_id: id,
                before: Some(crate::audit::state(&crate::audit::SessionState::from(
                    &session,
                ))?),
                after: None,
                request_id: Some(&request.request_id),
            },
        )
    })?;
    Ok(Response::envelope(
        &request.request_id,
        json!({"id": id, "wiped": true}),
    ))
}

/// `GET /management/v1/sessions/{id}/turns/{n}/diff`: the files and unified diff of one turn.
pub fn turn_diff(app: &Arc<App>, request: &Request, _principal: &Principal) -> Result<Response> {
    let turn = load_turn(app, request)?;
    let (before, after) = trees(&turn)?;
    let snapshots = crate::workspace::Snapshots::of(
        &app.config.storage.data_dir,
        Path::new(&turn.workspace_path),
    );
    let (changes, diff) = snapshots.diff(&app.config.host, &before, &after)?;
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
/// turn (with the workspace's own index in the gateway's snapshot store) and records
/// `turn.reverted` with the tree it replaced, so a revert can itself be undone.
pub fn turn_revert(app: &Arc<App>, request: &Request, principal: &Principal) -> Result<Response> {
    let turn = load_turn(app, request)?;
    let (before, _) = trees(&turn)?;
    let workspace = Path::new(&turn.workspace_path);
    let timeout = std::time::Duration::from_secs(app.config.workspace.lock_timeout_seconds);
    let _guard = app
        .turn_locks
        .workspace(workspace, timeout)
        .ok_or_else(|| {
            Error::Conflict("a turn is running in this workspace; retry when it finishes".into())
        })?;
    let snapshots = crate::workspace::Snapshots::of(&app.config.storage.data_dir, workspace);
    let replaced = snapshots.restore(&app.config.host, &before)?;
    app.store.write(|tx| {
        crate::audit::record(
            tx,
            crate::audit::Record {
                actor: &principal.actor(),
                action: "turn.reverted",
                target_type: "turn",
                target_id: &turn.id,
                before: Some(json!({"tree": replaced.tree})),
                after: Some(json!({"tree": before.tree, "workspace_path": turn.workspace_path})),
                request_id: Some(&request.request_id),
            },
        )
    })?;
    log::info!(
        "reverted workspace {} to before turn {}",
        workspace.display(),
        turn.id
    );
    Ok(Response::envelope(
        &request.request_id,
        json!({"reverted": true, "turn_id": turn.id, "workspace": turn.workspace_path}),
    ))
}

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

fn trees(
    turn: &store::turns::Turn,
) -> Result<(crate::workspace::Snapshot, crate::workspace::Snapshot)> {
    match (&turn.before_tree, &turn.after_tree) {
        (Some(before), Some(after)) => Ok((
            crate::workspace::Snapshot::from_tree(before),
            crate::workspace::Snapshot::from_tree(after),
        )),
        _ => Err(Error::Conflict(
            "this turn has no workspace snapshots".into(),
        )),
    }
}
