//! `/management/v1/users`: create (with the first key), list, detail, update, suspend,
//! unsuspend, delete, and key create/revoke/rotate.

use crate::api::auth::Principal;
use crate::api::params;
use crate::api::wire::{self, CreatedUserView, IssuedKeyView, KeyView, UserDetailView, UserView};
use crate::app::App;
use crate::error::{Error, Result};
use crate::http::{Request, Response};
use crate::store;
use crate::users;
use serde::Deserialize;
use serde_json::json;
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
    let data = wire::json(&CreatedUserView {
        user: UserView::from(&user),
        api_key: IssuedKeyView::from(&issued),
    })?;
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
    let data = wire::json(&rows.iter().map(UserView::from).collect::<Vec<_>>())?;
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
    let data = wire::json(&UserDetailView {
        user: UserView::from(&user),
        keys: keys.iter().map(KeyView::from).collect(),
        sessions: sessions.iter().map(wire::SessionView::from).collect(),
        usage: wire::UsageView::of(&usage),
        recent_activity: activity.iter().map(wire::AuditEntryView::from).collect(),
    })?;
    Ok(Response::envelope(&request.request_id, data))
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
        wire::json(&UserView::from(&user))?,
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
        wire::json(&UserView::from(&user))?,
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
        wire::json(&UserView::from(&user))?,
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
        wire::json(&keys.iter().map(KeyView::from).collect::<Vec<_>>())?,
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
    Ok(Response::envelope(
        &request.request_id,
        wire::json(&IssuedKeyView::from(&issued))?,
    )
    .with_status(201))
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
        wire::json(&KeyView::from(&key))?,
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
        wire::json(&IssuedKeyView::from(&issued))?,
    ))
}

#[cfg(test)]
mod tests {
    use crate::api::testing::{self, TestApp};

    /// The fields `POST /management/v1/users` needs, and what `PATCH` does with `null`.
    #[test]
    fn create_and_update() {
        let test = TestApp::new();
        for (body, expected) in [
            (r#"{"display_name":"A"}"#, "400 email: `email` is required"),
            (
                r#"{"email":"a@example.com"}"#,
                "400 display_name: `display_name` is required",
            ),
            (
                r#"{"email":"nope","display_name":"A"}"#,
                "400 email: `email` must be a valid address like name@example.com",
            ),
            (
                r#"{"email":"a@example.com","display_name":"A","key_expires_at":"soon"}"#,
                "400 key_expires_at: `key_expires_at` must be an RFC 3339 time, got `soon`",
            ),
            (
                r#"{"email":"a@example.com","display_name":"A","role":"admin"}"#,
                "400 role: invalid JSON body: unknown field `role`, expected one of `email`, \
                 `display_name`, `max_concurrency`, `daily_token_budget`, `key_label`, \
                 `key_expires_at` at line 1 column 50",
            ),
        ] {
            let got = testing::error(test.operator("POST", "/management/v1/users", Some(body)));
            assert_eq!(got, expected, "{body}");
        }
        let created = test
            .operator(
                "POST",
                "/management/v1/users",
                Some(r#"{"email":"A@Example.com","display_name":"A","daily_token_budget":500}"#),
            )
            .unwrap();
        let (status, body) = testing::json(created);
        assert_eq!(status, 201);
        let data = &body["data"];
        assert_eq!(data["email"], "a@example.com");
        assert_eq!(data["daily_token_budget"], 500);
        assert!(data["api_key"]["key"]
            .as_str()
            .unwrap()
            .starts_with("uagk_live_"));
        assert_eq!(data["api_key"]["status"], "active");
        let url = format!("/management/v1/users/{}", data["id"].as_str().unwrap());
        // An absent field stays; `null` clears the budget.
        let (_, body) = testing::json(
            test.operator("PATCH", &url, Some(r#"{"display_name":"B"}"#))
                .unwrap(),
        );
        assert_eq!(
            (
                body["data"]["display_name"].as_str(),
                body["data"]["daily_token_budget"].as_i64()
            ),
            (Some("B"), Some(500))
        );
        let (_, body) = testing::json(
            test.operator("PATCH", &url, Some(r#"{"daily_token_budget":null}"#))
                .unwrap(),
        );
        assert!(body["data"]["daily_token_budget"].is_null());
        assert_eq!(
            testing::error(test.operator("GET", "/management/v1/users/uag_usr_nope", None)),
            "404 -: no user uag_usr_nope"
        );
    }
}
