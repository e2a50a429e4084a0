//! `/management/v1/workspaces`: the inventory with git metadata, one workspace with its bound
//! sessions, reset (wipe the sessions, keep the files) and delete from disk.
//!
//! `{id}` is the base64url (unpadded) path relative to the workspaces root
//! (`workspace::inventory`). Reset and delete take the workspace's turn lock, so they never run
//! under a turn, and write their audit entry in the transaction that wipes the sessions.

use crate::api::auth::Principal;
use crate::api::wire::{self, SessionView, WorkspaceDetailView, WorkspaceView};
use crate::app::App;
use crate::audit::{self, Actor};
use crate::error::{Error, Result};
use crate::http::{Request, Response};
use crate::store;
use crate::workspace::inventory::{self, Resolved};
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

/// How long reset and delete wait for a running turn in the workspace before a 409.
const LOCK_WAIT: Duration = Duration::from_secs(2);

/// Most sessions listed in a workspace's detail.
const DETAIL_SESSIONS: i64 = 200;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DeleteBody {
    confirm: Option<String>,
}

/// `GET /management/v1/workspaces`: every workspace under the root.
pub fn list(app: &Arc<App>, request: &Request, _principal: &Principal) -> Result<Response> {
    let mut workspaces =
        inventory::list(&app.config.workspace.root, &app.config.host, &app.sandbox)?;
    app.store
        .read(|conn| inventory::count_sessions(conn, &mut workspaces))?;
    let data = wire::json(
        &workspaces
            .iter()
            .map(WorkspaceView::from)
            .collect::<Vec<_>>(),
    )?;
    Ok(Response::envelope(&request.request_id, data))
}

/// `GET /management/v1/workspaces/{id}`: the record and the sessions bound to it or below.
pub fn detail(app: &Arc<App>, request: &Request, _principal: &Principal) -> Result<Response> {
    let resolved = resolve(app, request)?;
    let mut workspace = inventory::record(
        &resolved.root,
        &resolved.relative,
        &app.config.host,
        &app.sandbox,
    );
    let prefix = workspace.session_path();
    let sessions = app.store.read(|conn| {
        inventory::count_sessions(conn, std::slice::from_mut(&mut workspace))?;
        store::sessions::list_under_path(conn, &prefix, DETAIL_SESSIONS)
    })?;
    let data = wire::json(&WorkspaceDetailView {
        workspace: WorkspaceView::from(&workspace),
        sessions: sessions.iter().map(SessionView::from).collect(),
    })?;
    Ok(Response::envelope(&request.request_id, data))
}

/// `POST /management/v1/workspaces/{id}/reset`: deletes the sessions (and their turns) bound
/// to the workspace or below it; the files stay. Audited as `workspace.reset`.
pub fn reset(app: &Arc<App>, request: &Request, _principal: &Principal) -> Result<Response> {
    let resolved = resolve(app, request)?;
    let relative = resolved.relative.display().to_string();
    let path = resolved.path.display().to_string();
    let _guard = lock(app, &resolved)?;
    let wiped = app.store.write(|tx| {
        let wiped = store::sessions::delete_under_path(tx, &path)?;
        audit::record(
            tx,
            audit::Record {
                actor: &Actor::Operator,
                action: "workspace.reset",
                target_type: "workspace",
                target_id: &relative,
                before: None,
                after: Some(json!({
                    "workspace_path": path,
                    "relative_path": relative,
                    "sessions_wiped": wiped,
                    "files_preserved": true,
                })),
                request_id: Some(&request.request_id),
            },
        )?;
        Ok(wiped)
    })?;
    log::info!("workspace {path} reset: {wiped} session(s) wiped");
    Ok(Response::envelope(
        &request.request_id,
        json!({
            "workspace_id": inventory::encode_id(&resolved.relative),
            "workspace_path": path,
            "relative_path": relative,
            "sessions_wiped": wiped,
            "files_preserved": true,
        }),
    ))
}

/// `DELETE /management/v1/workspaces/{id}` with `{"confirm": "<relative path>"}`: deletes the
/// bound sessions and then the directory, in one transaction with the `workspace.deleted`
/// audit entry (a failed removal rolls the sessions back). Refuses the root and any directory
/// holding Codara's data dir.
pub fn delete(app: &Arc<App>, request: &Request, _principal: &Principal) -> Result<Response> {
    let resolved = resolve(app, request)?;
    let relative = resolved.relative.display().to_string();
    let path = resolved.path.display().to_string();
    let confirm_help = format!(
        "`confirm` is required: send {{\"confirm\": \"{relative}\"}} (the workspace's relative path) to delete it from disk"
    );
    let body: Option<DeleteBody> = request.json_opt()?;
    match body.and_then(|b| b.confirm) {
        None => return Err(Error::bad_param("confirm", confirm_help)),
        Some(confirm) if confirm != relative => {
            return Err(Error::bad_param(
                "confirm",
                format!("`confirm` does not match the workspace's relative path `{relative}`"),
            ))
        }
        Some(_) => {}
    }
    let data_dir = app.config.storage.data_dir.canonicalize().ok();
    if data_dir.is_some_and(|d| d.starts_with(&resolved.path)) {
        return Err(Error::Conflict(format!(
            "{relative} holds Codara's data directory; it cannot be deleted through the API"
        )));
    }
    let _guard = lock(app, &resolved)?;
    let wiped = app.store.write(|tx| {
        let wiped = store::sessions::delete_under_path(tx, &path)?;
        std::fs::remove_dir_all(&resolved.path).map_err(|e| Error::io(&resolved.path, e))?;
        // Its snapshots go too (stores of workspaces nested below it stay until pruned).
        crate::workspace::Snapshots::of(&app.config.storage.data_dir, &resolved.path).remove()?;
        audit::record(
            tx,
            audit::Record {
                actor: &Actor::Operator,
                action: "workspace.deleted",
                target_type: "workspace",
                target_id: &relative,
                before: None,
                after: Some(json!({
                    "workspace_path": path,
                    "relative_path": relative,
                    "sessions_wiped": wiped,
                    "workspace_deleted": true,
                })),
                request_id: Some(&request.request_id),
            },
        )?;
        Ok(wiped)
    })?;
    log::info!("workspace {path} deleted: {wiped} session(s) wiped");
    Ok(Response::envelope(
        &request.request_id,
        json!({
            "workspace_id": inventory::encode_id(&resolved.relative),
            "workspace_path": path,
            "relative_path": relative,
            "sessions_wiped": wiped,
            "workspace_deleted": true,
        }),
    ))
}

/// The workspace named by the path's `{id}`.
fn resolve(app: &App, request: &Request) -> Result<Resolved> {
    inventory::resolve(&app.config.workspace.root, request.param("id")?)
}

/// Takes the turn lock of the workspace (the name the turn engine uses), or a 409.
fn lock<'a>(app: &'a App, resolved: &Resolved) -> Result<crate::turns::locks::Guard<'a>> {
    app.turn_locks
        .workspace(&resolved.path, LOCK_WAIT)
        .ok_or_else(|| {
            Error::Conflict(format!(
                "a turn is running in workspace {}; retry when it finishes",
                resolved.relative.display()
            ))
        })
}
