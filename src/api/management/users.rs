//! `/management/v1/users`: create (with the first key), list, detail, update, suspend,
//! unsuspend, delete, and key create/revoke/rotate.

use crate::api::auth::Principal;
use crate::api::params;
use crate::app::App;
use crate::error::{Error, Result};
use crate::http::{Request, Response};
use crate::store;
use crate::users;
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateUser {
    email: Option<String>,
    display_name: Option<String>,
    max_concurrency: Option<i64>,
    daily_token_budget: Option<i64>,
    key_label: Option<String>,
    key_expires_at: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateUser {
    display_name: Option<String>,
    max_concurrency: Option<i64>,
    #[serde(default, deserialize_with = "some_or_null")]
    daily_token_budget: Option<Option<i64>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct CreateKey {
    label: Option<String>,
    expires_at: Option<String>,
}

fn some_or_null<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<Option<i64>>, D::Error> {
    Option::<i64>::deserialize(d).map(Some)
}

/// `key` plus the raw key, shown once.
pub fn issued_json(issued: &users::IssuedKey) -> Value {
    let mut value = users::key_json(&issued.key);
    value["key"] = json!(issued.raw);
    value
}

/// `POST /management/v1/users`.
pub fn create(app: &Arc<App>, request: &Request, principal: &Principal) -> Result<Response> {
    let body: CreateUser = request.json()?;
    let input = users::NewUser {
        email: body
            .email
            .ok_or_else(|| Error::bad_param("email", "`email` is required"))?,
        display_name: body
            .display_name
            .ok_or_else(|| Error::bad_param("display_name", "`display_name` is required"))?,
        max_concurrency: body.max_concurrency,
        daily_token_budget: body.daily_token_budget,
        key_label: body.key_label,
        key_expires_at: params::time("key_expires_at", body.key_expires_at.as_deref())?,
    };
    let (user, issued) = users::create(
        &app.store,
        &app.config,
        input,
        &principal.actor(),
        Some(&request.request_id),
    )?;
    let mut data = users::user_json(&user);
    data["api_key"] = issued_json(&issued);
    Ok(Response::envelope(&request.request_id, data).with_status(201))
}

/// `GET /management/v1/users?limit=&cursor=`.
pub fn list(app: &Arc<App>, request: &Request, _principal: &Principal) -> Result<Response> {
    let limit = params::limit(request, 200)?;
    let cursor = params::cursor(request)?;
    let rows = app
        .store
        .read(|conn| store::users::list(conn, limit + 1, cursor))?;
    let has_more = rows.len() as i64 > limit;
    let rows: Vec<_> = rows.into_iter().take(limit as usize).collect();
    let next = has_more
        .then(|| rows.last().map(|u| format!("{}:{}", u.created_at, u.id)))
        .flatten();
    let data: Vec<Value> = rows.iter().map(users::user_json).collect();
    let mut response =
        json!({"ok": true, "data": data, "meta": {"request_id": request.request_id}});
    response["meta"]["page"] = json!({"next_cursor": next, "has_more": has_more, "limit": limit});
    Ok(Response::json(200, &response))
}

/// `GET /management/v1/users/{id}`: the user with keys, sessions, usage and recent audit.
pub fn detail(app: &Arc<App>, request: &Request, _principal: &Principal) -> Result<Response> {
    let id = request.param("id")?;
    let user = users::get(&app.store, id)?;
    let (keys, sessions, usage, activity) = app.store.read(|conn| {
        let keys = store::api_keys::list_for_user(conn, id)?;
        let sessions = store::sessions::list(conn, Some(id), 50)?;
        let usage = store::usage::list_for_user(conn, id)?;
        let filter = store::audit::Filter {
            target_id: Some(id.to_string()),
            ..Default::default()
        };
        let activity = store::audit::search(conn, &filter, 20)?;
        Ok((keys, sessions, usage, activity))
    })?;
    let mut data = users::user_json(&user);
    data["keys"] = json!(keys.iter().map(users::key_json).collect::<Vec<_>>());
    data["sessions"] = json!(sessions
        .iter()
        .map(|s| json!({"id": s.id, "client_session_id": s.client_session_id, "workspace_id": s.workspace_id,
                        "provider": s.provider, "turn_count": s.turn_count, "updated_at": crate::clock::rfc3339(s.updated_at)}))
        .collect::<Vec<_>>());
    data["usage"] = usage_json(&usage);
    data["recent_activity"] = json!(activity
        .iter()
        .map(super::audit::entry_json)
        .collect::<Vec<_>>());
    Ok(Response::envelope(&request.request_id, data))
}

/// Usage rows plus totals.
pub fn usage_json(rows: &[store::usage::UsageRow]) -> Value {
    let sum = |f: fn(&store::usage::UsageRow) -> i64| rows.iter().map(f).sum::<i64>();
    json!({
        "totals": {
            "prompt_tokens": sum(|r| r.prompt_tokens),
            "completion_tokens": sum(|r| r.completion_tokens),
            "cached_tokens": sum(|r| r.cached_tokens),
            "requests": sum(|r| r.requests),
        },
        "by_day": rows.iter().map(|r| json!({
            "day": r.day, "provider": r.provider, "prompt_tokens": r.prompt_tokens,
            "completion_tokens": r.completion_tokens, "cached_tokens": r.cached_tokens, "requests": r.requests,
        })).collect::<Vec<_>>(),
    })
}

/// `PATCH /management/v1/users/{id}`.
pub fn update(app: &Arc<App>, request: &Request, principal: &Principal) -> Result<Response> {
    let id = request.param("id")?;
    let body: UpdateUser = request.json()?;
    let patch = users::Patch {
        display_name: body.display_name,
        max_concurrency: body.max_concurrency,
        daily_token_budget: body.daily_token_budget,
    };
    let user = users::update(
        &app.store,
        id,
        patch,
        &principal.actor(),
        Some(&request.request_id),
    )?;
    Ok(Response::envelope(
        &request.request_id,
        users::user_json(&user),
    ))
}

/// `POST /management/v1/users/{id}/suspend`.
pub fn suspend(app: &Arc<App>, request: &Request, principal: &Principal) -> Result<Response> {
    set_suspended(app, request, principal, true)
}

/// `POST /management/v1/users/{id}/unsuspend`.
pub fn unsuspend(app: &Arc<App>, request: &Request, principal: &Principal) -> Result<Response> {
    set_suspended(app, request, principal, false)
}

fn set_suspended(
    app: &Arc<App>,
    request: &Request,
    principal: &Principal,
    suspended: bool,
) -> Result<Response> {
    let id = request.param("id")?;
    let actor = principal.actor();
    let user = users::set_suspended(&app.store, id, suspended, &actor, Some(&request.request_id))?;
    Ok(Response::envelope(
        &request.request_id,
        users::user_json(&user),
    ))
}

/// `DELETE /management/v1/users/{id}`.
pub fn delete(app: &Arc<App>, request: &Request, principal: &Principal) -> Result<Response> {
    let id = request.param("id")?;
    let user = users::delete(
        &app.store,
        id,
        &principal.actor(),
        Some(&request.request_id),
    )?;
    Ok(Response::envelope(
        &request.request_id,
        users::user_json(&user),
    ))
}

/// `GET /management/v1/users/{id}/keys`.
pub fn keys(app: &Arc<App>, request: &Request, _principal: &Principal) -> Result<Response> {
    let id = request.param("id")?;
    users::get(&app.store, id)?;
    let keys = app
        .store
        .read(|conn| store::api_keys::list_for_user(conn, id))?;
    Ok(Response::envelope(
        &request.request_id,
        json!(keys.iter().map(users::key_json).collect::<Vec<_>>()),
    ))
}

/// `POST /management/v1/users/{id}/keys`: an additional key, shown once.
pub fn create_key(app: &Arc<App>, request: &Request, principal: &Principal) -> Result<Response> {
    let id = request.param("id")?;
    let body: CreateKey = request.json_opt()?.unwrap_or_default();
    let expires = params::time("expires_at", body.expires_at.as_deref())?;
    let issued = users::create_key(
        &app.store,
        id,
        body.label.as_deref(),
        expires,
        &principal.actor(),
        Some(&request.request_id),
    )?;
    Ok(Response::envelope(&request.request_id, issued_json(&issued)).with_status(201))
}

/// `DELETE /management/v1/users/{id}/keys/{key_id}`.
pub fn revoke_key(app: &Arc<App>, request: &Request, principal: &Principal) -> Result<Response> {
    let (id, key_id) = (request.param("id")?, request.param("key_id")?);
    let key = users::revoke_key(
        &app.store,
        id,
        key_id,
        &principal.actor(),
        Some(&request.request_id),
    )?;
    Ok(Response::envelope(
        &request.request_id,
        users::key_json(&key),
    ))
}

/// `POST /management/v1/users/{id}/keys/{key_id}/rotate`: revoke and reissue, shown once.
pub fn rotate_key(app: &Arc<App>, request: &Request, principal: &Principal) -> Result<Response> {
    let (id, key_id) = (request.param("id")?, request.param("key_id")?);
    let issued = users::rotate_key(
        &app.store,
        id,
        key_id,
        &principal.actor(),
        Some(&request.request_id),
    )?;
    Ok(Response::envelope(
        &request.request_id,
        issued_json(&issued),
    ))
}
