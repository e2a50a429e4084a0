//! `POST /management/v1/auth/token` and `POST /management/v1/auth/logout`.

use crate::api::auth::Principal;
use crate::app::App;
use crate::error::Result;
use crate::http::{Request, Response};
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;

#[derive(Deserialize, Default)]
struct TokenRequest {
    operator_secret: Option<String>,
    // Names the original gateway accepted, kept for drop-in clients.
    operator_passkey: Option<String>,
    api_token: Option<String>,
}

/// Exchanges the operator secret for an 8-hour access token.
pub fn token(app: &Arc<App>, request: &Request, _principal: &Principal) -> Result<Response> {
    let body: TokenRequest = request.json_opt()?.unwrap_or_default();
    let presented = body
        .operator_secret
        .or(body.operator_passkey)
        .or(body.api_token);
    let client = request.client_ip();
    let result = crate::operator::login(
        &app.store,
        &app.login_throttle,
        crate::operator::Secret {
            value: &app.operator_secret,
            generated: app.operator_secret_source != crate::datadir::SecretSource::Configured,
        },
        presented.as_deref(),
        &client,
    );
    let (action, after) = match &result {
        Ok(issued) => (
            "operator.login",
            json!({"client": client, "token_id": issued.id}),
        ),
        Err(error) => (
            "operator.login_failed",
            json!({"client": client, "reason": error.code()}),
        ),
    };
    app.store.write(|tx| {
        crate::audit::record(
            tx,
            crate::audit::Record {
                actor: &crate::audit::Actor::Operator,
                action,
                target_type: "operator",
                target_id: &client,
                before: None,
                after: Some(after),
                request_id: Some(&request.request_id),
            },
        )
    })?;
    let issued = result?;
    Ok(Response::envelope(
        &request.request_id,
        json!({
            "access_token": issued.token,
            "token_type": "bearer",
            "token_id": issued.id,
            "expires_in": crate::operator::TOKEN_TTL_MS / 1000,
            "expires_at": crate::clock::rfc3339(issued.expires_at),
        }),
    ))
}

/// Revokes the access token the request carries.
pub fn logout(app: &Arc<App>, request: &Request, principal: &Principal) -> Result<Response> {
    let revoked = match principal {
        Principal::Operator(credential) => crate::operator::logout(&app.store, credential)?,
        Principal::Anonymous | Principal::User { .. } => false,
    };
    Ok(Response::envelope(
        &request.request_id,
        json!({ "revoked": revoked }),
    ))
}
