//! `/management/v1/accounts` and `/management/v1/usage/refresh`: the pool as operators see it.
//! Credentials go in (upload) and never come out.

use crate::accounts;
use crate::api::auth::Principal;
use crate::api::wire::{self, AccountView};
use crate::app::App;
use crate::error::{Error, Result};
use crate::http::{Request, Response};
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AddAccount {
    id: Option<String>,
    provider: Option<String>,
    auth_type: Option<String>,
    label: Option<String>,
    credential: Option<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateAccount {
    label: Option<String>,
    enabled: Option<bool>,
}

/// `GET /management/v1/accounts`.
pub fn list(app: &Arc<App>, request: &Request, _principal: &Principal) -> Result<Response> {
    let now = crate::clock::now_ms();
    let rows = app
        .store
        .read(|conn| crate::store::accounts::list(conn, None))?;
    let data = wire::json(
        &rows
            .iter()
            .map(|account| AccountView::new(account, now))
            .collect::<Vec<_>>(),
    )?;
    Ok(Response::envelope(&request.request_id, data))
}

/// `POST /management/v1/accounts`: `{id, provider, auth_type, label?, credential}` where
/// `credential` is the auth.json object or the API key string.
pub fn add(app: &Arc<App>, request: &Request, principal: &Principal) -> Result<Response> {
    let body: AddAccount = request.json()?;
    let credential = match body.credential {
        Some(Value::String(text)) => text,
        Some(value @ Value::Object(_)) => value.to_string(),
        Some(_) => {
            return Err(Error::bad_param(
                "credential",
                "`credential` must be the auth.json object or the API key",
            ))
        }
        None => return Err(Error::bad_param("credential", "`credential` is required")),
    };
    let input = accounts::NewAccount {
        id: body
            .id
            .unwrap_or_else(|| crate::crypto::random_id("codex-")),
        provider: body.provider.unwrap_or_else(|| "codex".to_string()),
        auth_type: body.auth_type.ok_or_else(|| {
            Error::bad_param(
                "auth_type",
                "`auth_type` is required (OAUTH_SESSION or API_KEY)",
            )
        })?,
        label: body.label,
        credential,
    };
    let account = accounts::add(
        &app.store,
        &app.vault,
        input,
        &principal.actor(),
        Some(&request.request_id),
    )?;
    Ok(Response::envelope(
        &request.request_id,
        wire::json(&AccountView::new(&account, crate::clock::now_ms()))?,
    )
    .with_status(201))
}

/// `PATCH /management/v1/accounts/{id}`: label and enabled.
pub fn update(app: &Arc<App>, request: &Request, principal: &Principal) -> Result<Response> {
    let id = request.param("id")?;
    let body: UpdateAccount = request.json()?;
    let account = accounts::update(
        &app.store,
        id,
        body.label,
        body.enabled,
        &principal.actor(),
        Some(&request.request_id),
    )?;
    Ok(Response::envelope(
        &request.request_id,
        wire::json(&AccountView::new(&account, crate::clock::now_ms()))?,
    ))
}

/// `DELETE /management/v1/accounts/{id}`.
pub fn delete(app: &Arc<App>, request: &Request, principal: &Principal) -> Result<Response> {
    let id = request.param("id")?;
    accounts::remove(
        &app.store,
        &app.config.storage.data_dir,
        id,
        &principal.actor(),
        Some(&request.request_id),
    )?;
    Ok(Response::envelope(
        &request.request_id,
        json!({"id": id, "removed": true}),
    ))
}

/// `POST /management/v1/accounts/{id}/primary`.
pub fn primary(app: &Arc<App>, request: &Request, principal: &Principal) -> Result<Response> {
    change(app, request, principal, accounts::set_primary)
}

/// `DELETE /management/v1/accounts/{id}/primary`: the account is no longer CLI-primary.
pub fn clear_primary(app: &Arc<App>, request: &Request, principal: &Principal) -> Result<Response> {
    change(app, request, principal, accounts::clear_primary)
}

/// `POST /management/v1/accounts/{id}/recover`.
pub fn recover(app: &Arc<App>, request: &Request, principal: &Principal) -> Result<Response> {
    change(app, request, principal, accounts::recover)
}

/// One of the domain's state changes of an account (`accounts::set_primary`, `clear_primary`,
/// `recover`) on the path's account; the answer is the account as it now is.
fn change(
    app: &Arc<App>,
    request: &Request,
    principal: &Principal,
    op: fn(
        &crate::store::Store,
        &str,
        &crate::audit::Actor,
        Option<&str>,
    ) -> Result<crate::store::accounts::Account>,
) -> Result<Response> {
    let id = request.param("id")?;
    let account = op(
        &app.store,
        id,
        &principal.actor(),
        Some(&request.request_id),
    )?;
    Ok(Response::envelope(
        &request.request_id,
        wire::json(&AccountView::new(&account, crate::clock::now_ms()))?,
    ))
}

/// `POST /management/v1/usage/refresh[?account_id=]`: refreshes tokens and quota windows now.
pub fn refresh(app: &Arc<App>, request: &Request, _principal: &Principal) -> Result<Response> {
    let only = request.query_param("account_id").filter(|v| !v.is_empty());
    let reports = accounts::refresh_all(&app.store, &app.vault, &app.config.accounts, only)?;
    let data: Vec<Value> = reports
        .iter()
        .map(|r| json!({"id": r.id, "ok": r.ok, "error": r.error}))
        .collect();
    Ok(Response::envelope(&request.request_id, json!(data)))
}
