//! The OpenAI-compatible plane: `GET /v1/models` and `POST /v1/chat/completions`.
//!
//! Owns the wire types of these routes and their validation. Agent turns themselves are not
//! in this build yet: a valid chat request is answered 501 `not_implemented`.

use crate::api::auth::Principal;
use crate::app::App;
use crate::error::{Error, Result};
use crate::http::{Request, Response};
use serde::Deserialize;
use serde_json::{json, Value};

/// `GET /v1/models`: every enabled provider's models plus the `uag-<provider>` aliases.
pub fn models(app: &App, _request: &Request, _principal: &Principal) -> Result<Response> {
    let created = app.started_at_ms / 1000;
    let mut data = Vec::new();
    for (name, provider) in app.config.providers.iter() {
        if !provider.is_enabled() {
            continue;
        }
        data.push(json!({"id": format!("uag-{name}"), "object": "model", "created": created, "owned_by": name}));
        for model in &provider.models {
            data.push(
                json!({"id": model, "object": "model", "created": created, "owned_by": name}),
            );
        }
    }
    Ok(Response::json(
        200,
        &json!({"object": "list", "data": data}),
    ))
}

#[derive(Deserialize)]
struct ChatRequest {
    model: Option<String>,
    messages: Option<Vec<Value>>,
    provider: Option<String>,
    stream: Option<bool>,
    workspace_id: Option<String>,
    workspace_root: Option<String>,
    client_session_id: Option<String>,
}

/// `POST /v1/chat/completions`: validates the request; running the turn comes with agent turns.
pub fn chat_completions(app: &App, request: &Request, _principal: &Principal) -> Result<Response> {
    let body: ChatRequest = request.json()?;
    let messages = body
        .messages
        .ok_or_else(|| Error::bad_param("messages", "`messages` is required"))?;
    if messages.is_empty() {
        return Err(Error::bad_param(
            "messages",
            "`messages` must contain at least one message",
        ));
    }
    for (i, message) in messages.iter().enumerate() {
        let param = format!("messages[{i}]");
        let role = message.get("role").and_then(Value::as_str).ok_or_else(|| {
            Error::bad_param(
                &format!("{param}.role"),
                "each message needs a string `role`",
            )
        })?;
        if !matches!(role, "system" | "developer" | "user" | "assistant" | "tool") {
            return Err(Error::bad_param(
                &format!("{param}.role"),
                format!(
                    "unknown role `{role}`; expected system, developer, user, assistant or tool"
                ),
            ));
        }
        match message.get("content") {
            Some(Value::String(_)) | Some(Value::Array(_)) | Some(Value::Null) => {}
            None if role == "assistant" => {}
            _ => {
                return Err(Error::bad_param(
                    &format!("{param}.content"),
                    "`content` must be a string or an array of content parts",
                ))
            }
        }
    }
    let provider = resolve_provider(app, body.provider.as_deref(), body.model.as_deref())?;
    for (name, value) in [
        ("workspace_id", &body.workspace_id),
        ("workspace_root", &body.workspace_root),
        ("client_session_id", &body.client_session_id),
    ] {
        if value.as_deref().is_some_and(|v| v.len() > 512) {
            return Err(Error::bad_param(
                name,
                format!("`{name}` is longer than 512 characters"),
            ));
        }
    }
    let _ = body.stream;
    Err(Error::NotImplemented(format!(
        "agent turns ({provider}) are not available in this build of codara yet"
    )))
}

/// Picks the provider from `provider` or from the model id/alias, with 400s naming the field.
fn resolve_provider(
    app: &App,
    provider: Option<&str>,
    model: Option<&str>,
) -> Result<&'static str> {
    let providers = app.config.providers.iter();
    if let Some(wanted) = provider {
        let Some((name, config)) = providers.iter().find(|(name, _)| *name == wanted) else {
            return Err(Error::bad_param(
                "provider",
                format!("unknown provider `{wanted}`; expected codex, gemini or opencode"),
            ));
        };
        if !config.is_enabled() {
            return Err(Error::bad_param(
                "provider",
                format!("provider `{wanted}` is disabled"),
            ));
        }
        return Ok(name);
    }
    let Some(model) = model.filter(|m| !m.is_empty()) else {
        return Err(Error::bad_param(
            "model",
            "`model` or `provider` is required",
        ));
    };
    if let Some(alias) = model.strip_prefix("uag-") {
        if let Some((name, _)) = providers
            .iter()
            .find(|(name, c)| *name == alias && c.is_enabled())
        {
            return Ok(name);
        }
    }
    let owners: Vec<&'static str> = providers
        .iter()
        .filter(|(_, c)| c.is_enabled() && c.models.iter().any(|m| m == model))
        .map(|(name, _)| *name)
        .collect();
    match owners.as_slice() {
        [one] => Ok(one),
        [] => Err(Error::bad_param(
            "model",
            format!("unknown model `{model}`; GET /v1/models lists them"),
        )),
        _ => Err(Error::bad_param(
            "provider",
            format!("model `{model}` is offered by several providers; set `provider`"),
        )),
    }
}
