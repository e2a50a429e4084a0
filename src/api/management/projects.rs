//! `/management/v1/projects`: list, create from a template, and one project's record.
//!
//! A project is a named workspace `<root>/<name>` with `.codara/project.toml`
//! (`workspace::projects`); its record is the workspace record (git metadata, bound sessions)
//! with the project metadata filled in.

use crate::api::auth::Principal;
use crate::api::wire::{self, CreatedProjectView, WorkspaceView};
use crate::app::App;
use crate::audit::{self, Actor};
use crate::error::{Error, Result};
use crate::http::{Request, Response};
use crate::workspace::inventory;
use crate::workspace::projects::{self, Template};
use serde::Deserialize;
use serde_json::json;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// How long a create waits for a running turn in an existing directory before a 409.
const LOCK_WAIT: Duration = Duration::from_secs(2);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateProject {
    name: Option<String>,
    template: Option<String>,
    provider: Option<String>,
    /// The original gateway's name for `provider`.
    default_provider: Option<String>,
    force: Option<bool>,
}

/// `GET /management/v1/projects`: the projects directly under the workspaces root.
pub fn list(app: &Arc<App>, request: &Request, _principal: &Principal) -> Result<Response> {
    let root = &app.config.workspace.root;
    let found = projects::list(root)?;
    let mut records: Vec<inventory::Workspace> = match root.canonicalize() {
        Ok(root) => found
            .iter()
            .map(|p| {
                inventory::record(
                    &root,
                    Path::new(&p.relative_path),
                    &app.config.host,
                    &app.sandbox,
                )
            })
            .collect(),
        Err(_) => Vec::new(),
    };
    app.store
        .read(|conn| inventory::count_sessions(conn, &mut records))?;
    let data = wire::json(&records.iter().map(WorkspaceView::from).collect::<Vec<_>>())?;
    Ok(Response::envelope(&request.request_id, data))
}

/// `POST /management/v1/projects` `{name, template?, provider?, force?}`: creates the project
/// (201), or initializes an existing directory (200; with `force` when it has no metadata).
/// Audited as `project.created` or `project.initialized`.
pub fn create(app: &Arc<App>, request: &Request, _principal: &Principal) -> Result<Response> {
    let body: CreateProject = request.json()?;
    let name = body
        .name
        .ok_or_else(|| Error::bad_param("name", "`name` is required"))?;
    projects::validate_name(&name)?;
    let template = body
        .template
        .unwrap_or_else(|| app.config.workspace.default_template.clone());
    let provider = body.provider.or(body.default_provider);
    let root = &app.config.workspace.root;
    crate::datadir::ensure_private_dir(root)?;
    let dir = root
        .canonicalize()
        .map_err(|e| Error::io(root, e))?
        .join(&name);
    let _guard = app.turn_locks.workspace(&dir, LOCK_WAIT).ok_or_else(|| {
        Error::Conflict(format!(
            "a turn is running in {name}; retry when it finishes"
        ))
    })?;
    let info = projects::create(
        root,
        &app.config.host,
        &app.sandbox,
        &name,
        &template,
        provider.as_deref(),
        "operator",
        body.force.unwrap_or(false),
    )?;
    let action = if info.created {
        "project.created"
    } else {
        "project.initialized"
    };
    app.store.write(|tx| {
        audit::record(
            tx,
            audit::Record {
                actor: &Actor::Operator,
                action,
                target_type: "project",
                target_id: &info.meta.name,
                before: None,
                after: Some(json!({
                    "name": info.meta.name,
                    "path": info.path.display().to_string(),
                    "relative_path": info.relative_path,
                    "template": info.meta.template,
                    "provider": info.meta.provider,
                    "created": info.created,
                    "metadata_path": info.meta.metadata_path.display().to_string(),
                })),
                request_id: Some(&request.request_id),
            },
        )
    })?;
    log::info!("{action}: {} ({})", info.meta.name, info.path.display());
    let record = project_record(app, &info)?;
    let data = wire::json(&CreatedProjectView {
        workspace: WorkspaceView::from(&record),
        created: info.created,
    })?;
    let response = json!({
        "ok": true,
        "data": data,
        "meta": {"request_id": request.request_id, "templates": Template::names()},
    });
    Ok(Response::json(
        if info.created { 201 } else { 200 },
        &response,
    ))
}

/// `GET /management/v1/projects/{name}`: the project's record. For clients of the original
/// gateway, a workspace id of a project directory is accepted too.
pub fn info(app: &Arc<App>, request: &Request, _principal: &Principal) -> Result<Response> {
    let key = request.param("name")?;
    let root = &app.config.workspace.root;
    let by_name = projects::info(root, key);
    let info = match by_name {
        Ok(info) => info,
        Err(error) if matches!(error.status(), 400 | 404) => {
            by_workspace_id(root, key).ok_or(error)?
        }
        Err(error) => return Err(error),
    };
    let record = project_record(app, &info)?;
    Ok(Response::envelope(
        &request.request_id,
        wire::json(&WorkspaceView::from(&record))?,
    ))
}

/// The project at the directory a workspace id names, when it is a project.
fn by_workspace_id(root: &Path, id: &str) -> Option<projects::ProjectInfo> {
    let resolved = inventory::resolve(root, id).ok()?;
    let meta = projects::read_metadata(&resolved.path)?;
    Some(projects::ProjectInfo {
        meta,
        path: resolved.path,
        relative_path: resolved.relative.display().to_string(),
        created: false,
    })
}

/// The workspace record of a project, with its bound-session count.
fn project_record(app: &App, info: &projects::ProjectInfo) -> Result<inventory::Workspace> {
    let root = app
        .config
        .workspace
        .root
        .canonicalize()
        .map_err(|e| Error::io(&app.config.workspace.root, e))?;
    let mut record = inventory::record(
        &root,
        Path::new(&info.relative_path),
        &app.config.host,
        &app.sandbox,
    );
    app.store
        .read(|conn| inventory::count_sessions(conn, std::slice::from_mut(&mut record)))?;
    Ok(record)
}
