//! `/management/v1/projects`: list, create from a template, and one project's record.
//!
//! A project is a named workspace `<root>/<name>` with `.codara/project.toml`
//! (`workspace::projects`); its record is the workspace record (git metadata, bound sessions)
//! with the project metadata filled in.

use crate::api::auth::Principal;
use crate::api::wire::{self, CreatedProjectView, WorkspaceView};
use crate::app::App;
use crate::error::{Error, Result};
use crate::http::{Request, Response};
use crate::workspace::inventory;
use crate::workspace::ops;
use crate::workspace::projects::{self, Template};
use serde::Deserialize;
use serde_json::json;
use std::path::Path;
use std::sync::Arc;

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

/// `GET /management/v1/projects`: the projects directly under the workspaces root; the
/// template names in `meta.templates`.
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
    Ok(Response::json(
        200,
        &json!({
            "ok": true,
            "data": data,
            "meta": {"request_id": request.request_id, "templates": Template::names()},
        }),
    ))
}

/// `POST /management/v1/projects` `{name, template?, provider?, force?}`: creates the project
/// (201), or with `force` initializes a directory that exists (200); an existing directory
/// without `force` is a 409 (`workspace::projects::create`).
pub fn create(app: &Arc<App>, request: &Request, principal: &Principal) -> Result<Response> {
    let body: CreateProject = request.json()?;
    let name = body
        .name
        .ok_or_else(|| Error::bad_param("name", "`name` is required"))?;
    let provider = body.provider.or(body.default_provider);
    let info = projects::create(
        &ops::Context::of(app),
        projects::NewProject {
            name: &name,
            template: body.template.as_deref(),
            provider: provider.as_deref(),
            force: body.force.unwrap_or(false),
        },
        &principal.actor(),
        Some(&request.request_id),
    )?;
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
