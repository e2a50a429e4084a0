//! User self-service under `/v1/user/*` (user API keys only): profile, keys, usage, sessions,
//! workspace reset. A user only ever reaches their own records; anything else is a 404.

use crate::api::auth::Principal;
use crate::api::params::time as parse_time;
use crate::api::wire::{self, IssuedKeyView, KeyView, SessionDetailView, SessionView, UsageView};
use crate::app::App;
use crate::error::{Error, Result};
use crate::http::{Request, Response};
use crate::store::{self, users::User};
use crate::users;
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;

fn me_of(principal: &Principal) -> Result<&User> {
    match principal {
        Principal::User { user, .. } => Ok(user),
        _ => Err(Error::Forbidden("this route needs a user API key".into())),
    }
}

/// `GET /v1/user/me`.
pub fn me(_app: &Arc<App>, request: &Request, principal: &Principal) -> Result<Response> {
    Ok(Response::envelope(
        &request.request_id,
        wire::json(&wire::UserView::from(me_of(principal)?))?,
    ))
}

/// `GET /v1/user/keys`: the caller's keys (never hashes).
pub fn keys(app: &Arc<App>, request: &Request, principal: &Principal) -> Result<Response> {
    let user = me_of(principal)?;
    let keys = app
        .store
        .read(|conn| store::api_keys::list_for_user(conn, &user.id))?;
    Ok(Response::envelope(
        &request.request_id,
        wire::json(&keys.iter().map(KeyView::from).collect::<Vec<_>>())?,
    ))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct CreateKey {
    label: Option<String>,
    expires_at: Option<String>,
}

/// `POST /v1/user/keys`: an additional key, shown once.
pub fn create_key(app: &Arc<App>, request: &Request, principal: &Principal) -> Result<Response> {
    let user = me_of(principal)?;
    let body: CreateKey = request.json_opt()?.unwrap_or_default();
    let expires = parse_time("expires_at", body.expires_at.as_deref())?;
    let issued = users::create_key(
        &app.store,
        &user.id,
        body.label.as_deref(),
        expires,
        &principal.actor(),
        Some(&request.request_id),
    )?;
    Ok(Response::envelope(
        &request.request_id,
        wire::json(&IssuedKeyView::from(&issued))?,
    )
    .with_status(201))
}

/// `DELETE /v1/user/keys/{id}`.
pub fn revoke_key(app: &Arc<App>, request: &Request, principal: &Principal) -> Result<Response> {
    let user = me_of(principal)?;
    let key_id = request.param("id")?;
    let key = users::revoke_key(
        &app.store,
        &user.id,
        key_id,
        &principal.actor(),
        Some(&request.request_id),
    )?;
    Ok(Response::envelope(
        &request.request_id,
        wire::json(&KeyView::from(&key))?,
    ))
}

/// `POST /v1/user/keys/{id}/rotate`.
pub fn rotate_key(app: &Arc<App>, request: &Request, principal: &Principal) -> Result<Response> {
    let user = me_of(principal)?;
    let key_id = request.param("id")?;
    let issued = users::rotate_key(
        &app.store,
        &user.id,
        key_id,
        &principal.actor(),
        Some(&request.request_id),
    )?;
    Ok(Response::envelope(
        &request.request_id,
        wire::json(&IssuedKeyView::from(&issued))?,
    ))
}

/// `GET /v1/user/usage`.
pub fn usage(app: &Arc<App>, request: &Request, principal: &Principal) -> Result<Response> {
    let user = me_of(principal)?;
    let rows = app
        .store
        .read(|conn| store::usage::list_for_user(conn, &user.id))?;
    Ok(Response::envelope(
        &request.request_id,
        wire::json(&UsageView::of(&rows))?,
    ))
}

/// `GET /v1/user/sessions`.
pub fn sessions(app: &Arc<App>, request: &Request, principal: &Principal) -> Result<Response> {
    let user = me_of(principal)?;
    let rows = app
        .store
        .read(|conn| store::sessions::list(conn, Some(&user.id), 200))?;
    let data = wire::json(&rows.iter().map(SessionView::from).collect::<Vec<_>>())?;
    Ok(Response::envelope(&request.request_id, data))
}

/// `GET /v1/user/sessions/{id}`: 404 unless the session is the caller's.
pub fn session(app: &Arc<App>, request: &Request, principal: &Principal) -> Result<Response> {
    let user = me_of(principal)?;
    let id = request.param("id")?;
    let (session, turns) = app.store.read(|conn| {
        let session = store::sessions::get(conn, id)?
            .filter(|s| s.user_id == user.id)
            .ok_or_else(|| Error::NotFound(format!("no session {id}")))?;
        Ok((session, store::turns::list_for_session(conn, id)?))
    })?;
    let data = wire::json(&SessionDetailView::of(&session, &turns))?;
    Ok(Response::envelope(&request.request_id, data))
}

/// `POST /v1/user/workspace/reset`: ends every session of the caller; files are kept.
pub fn reset_workspace(
    app: &Arc<App>,
    request: &Request,
    principal: &Principal,
) -> Result<Response> {
    let user = me_of(principal)?;
    let wiped = crate::workspace::ops::reset_user_sessions(
        &app.store,
        user,
        &principal.actor(),
        Some(&request.request_id),
    )?;
    Ok(Response::envelope(
        &request.request_id,
        json!({"sessions_wiped": wiped, "files_preserved": true, "workspace_path": user.workspace_path}),
    ))
}
