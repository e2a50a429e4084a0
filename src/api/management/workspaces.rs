//! `/management/v1/workspaces`: the inventory with git metadata, one workspace with its bound
//! sessions, reset (wipe the sessions, keep the files) and delete from disk.
//!
//! `{id}` is the base64url (unpadded) path relative to the workspaces root
//! (`workspace::inventory`). Reset and delete are `workspace::ops` (the turn lock, the audit
//! entry in the transaction that wipes the sessions); this file parses and renders.

use crate::api::auth::Principal;
use crate::api::wire::{self, SessionView, WorkspaceDetailView, WorkspaceView};
use crate::app::App;
use crate::error::{Error, Result};
use crate::http::{Request, Response};
use crate::store;
use crate::workspace::inventory::{self, Resolved};
use crate::workspace::ops;
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;

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
/// to the workspace or below it; the files stay (`workspace::ops::reset`).
pub fn reset(app: &Arc<App>, request: &Request, principal: &Principal) -> Result<Response> {
    let resolved = resolve(app, request)?;
    let wiped = ops::reset(
        &ops::Context::of(app),
        &resolved,
        &principal.actor(),
        Some(&request.request_id),
    )?;
    Ok(Response::envelope(
        &request.request_id,
        json!({
            "workspace_id": inventory::encode_id(&resolved.relative),
            "workspace_path": wiped.workspace_path,
            "relative_path": wiped.relative_path,
            "sessions_wiped": wiped.sessions_wiped,
            "files_preserved": true,
        }),
    ))
}

/// `DELETE /management/v1/workspaces/{id}` with `{"confirm": "<relative path>"}`: deletes the
/// bound sessions, the directory and its snapshots (`workspace::ops::delete`).
pub fn delete(app: &Arc<App>, request: &Request, principal: &Principal) -> Result<Response> {
    let resolved = resolve(app, request)?;
    check_confirmation(request, &resolved.relative.display().to_string())?;
    let wiped = ops::delete(
        &ops::Context::of(app),
        &resolved,
        &principal.actor(),
        Some(&request.request_id),
    )?;
    Ok(Response::envelope(
        &request.request_id,
        json!({
            "workspace_id": inventory::encode_id(&resolved.relative),
            "workspace_path": wiped.workspace_path,
            "relative_path": wiped.relative_path,
            "sessions_wiped": wiped.sessions_wiped,
            "workspace_deleted": true,
        }),
    ))
}

/// A delete must name the workspace's relative path in `confirm`: a 400 naming `confirm`
/// otherwise.
fn check_confirmation(request: &Request, relative: &str) -> Result<()> {
    let body: Option<DeleteBody> = request.json_opt()?;
    match body.and_then(|b| b.confirm) {
        None => Err(Error::bad_param(
            "confirm",
            format!(
                "`confirm` is required: send {{\"confirm\": \"{relative}\"}} (the workspace's \
                 relative path) to delete it from disk"
            ),
        )),
        Some(confirm) if confirm != relative => Err(Error::bad_param(
            "confirm",
            format!("`confirm` does not match the workspace's relative path `{relative}`"),
        )),
        Some(_) => Ok(()),
    }
}

/// The workspace named by the path's `{id}`.
fn resolve(app: &App, request: &Request) -> Result<Resolved> {
    inventory::resolve(&app.config.workspace.root, request.param("id")?)
}

#[cfg(test)]
mod tests {
    use crate::api::testing::{self, TestApp};
    use crate::workspace::inventory::encode_id;
    use std::path::Path;

    /// A delete names the workspace's relative path in `confirm`, and nothing happens until it
    /// does.
    #[test]
    fn delete_needs_the_relative_path_as_confirmation() {
        let test = TestApp::new();
        let dir = test.app.config.workspace.root.join("team/app");
        std::fs::create_dir_all(&dir).unwrap();
        let url = format!(
            "/management/v1/workspaces/{}",
            encode_id(Path::new("team/app"))
        );
        for (body, expected) in [
            (
                None,
                "400 confirm: `confirm` is required: send {\"confirm\": \"team/app\"} (the \
                 workspace's relative path) to delete it from disk",
            ),
            (
                Some("{}"),
                "400 confirm: `confirm` is required: send {\"confirm\": \"team/app\"} (the \
                 workspace's relative path) to delete it from disk",
            ),
            (
                Some(r#"{"confirm":"team"}"#),
                "400 confirm: `confirm` does not match the workspace's relative path `team/app`",
            ),
            (
                Some(r#"{"confirm":"team/app","force":true}"#),
                "400 force: invalid JSON body: \
                unknown field `force`, expected `confirm` at line 1 column 29",
            ),
        ] {
            assert_eq!(
                testing::error(test.operator("DELETE", &url, body)),
                expected
            );
            assert!(dir.is_dir());
        }
        let (status, body) = testing::json(
            test.operator("DELETE", &url, Some(r#"{"confirm":"team/app"}"#))
                .unwrap(),
        );
        assert_eq!(status, 200);
        assert_eq!(body["data"]["workspace_deleted"], true);
        assert_eq!(body["data"]["relative_path"], "team/app");
        assert!(!dir.exists());
        assert_eq!(
            testing::error(test.operator("DELETE", &url, Some(r#"{"confirm":"team/app"}"#))),
            "404 -: workspace not found: team/app"
        );
    }
}
