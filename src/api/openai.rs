//! The OpenAI-compatible plane: `GET /v1/models` and `POST /v1/chat/completions`.
//!
//! Owns the wire types of these routes, their validation, and the SSE chunk format; the turn
//! itself is `turns::engine`.

use crate::api::auth::Principal;
use crate::app::App;
use crate::error::{Error, Result};
use crate::http::request::Admission;
use crate::http::{Body, Request, Response};
use crate::store::users::User;
use crate::turns::engine::{self, TurnRequest};
use crate::turns::locks::Slot;
use crate::turns::prompt::Message;
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

/// `GET /v1/models`: every enabled provider's models plus the `uag-<provider>` aliases.
pub fn models(app: &Arc<App>, _request: &Request, _principal: &Principal) -> Result<Response> {
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

/// `GET /v1/user/providers/models`: per provider, its models, default, and whether its CLI is installed.
pub fn provider_models(
    app: &Arc<App>,
    request: &Request,
    _principal: &Principal,
) -> Result<Response> {
    let data: Vec<Value> = app
        .config
        .providers
        .iter()
        .into_iter()
        .map(|(name, provider)| {
            let binary = crate::providers::find_binary(&provider.binary, &app.config.host.path);
            json!({
                "provider": name,
                "enabled": provider.is_enabled(),
                "default_model": provider.default_model,
                "alias": format!("uag-{name}"),
                "models": provider.models,
                "runtime_available": binary.is_some(),
                "binary": binary.map(|p| p.display().to_string()).unwrap_or_else(|| provider.binary.clone()),
            })
        })
        .collect();
    let body = json!({"object": "list", "data": data});
    if request.path.starts_with("/management/") {
        return Ok(Response::envelope(
            &request.request_id,
            body["data"].clone(),
        ));
    }
    Ok(Response::json(200, &body))
}

#[derive(Deserialize)]
struct ChatRequest {
    model: Option<String>,
    messages: Option<Vec<Value>>,
    provider: Option<String>,
    stream: Option<bool>,
    stream_options: Option<StreamOptions>,
    workspace_id: Option<String>,
    workspace_root: Option<String>,
    client_session_id: Option<String>,
    #[allow(dead_code)] // Accepted for compatibility; runs are non-interactive either way.
    manual_mode: Option<bool>,
}

#[derive(Deserialize)]
struct StreamOptions {
    include_usage: Option<bool>,
}

/// Admission of `POST /v1/chat/completions`, before its body is read: a user key gets
/// [`admit_user`]; operators have no per-user limits.
pub fn admit(app: &Arc<App>, principal: &Principal) -> Result<Admission> {
    engine::refuse_unconfined(app, principal.is_user_key())?;
    match principal {
        Principal::User { user, .. } => admit_user(app, user).map(Admission::holding),
        Principal::Operator(_) | Principal::Anonymous => Ok(Admission::default()),
    }
}

/// A turn slot for `user`, or 429 when their daily token budget is spent or `max_concurrency`
/// turns are running. Checked before the body is read, so a user at a limit is refused without
/// uploading anything; the slot is held until the turn ends.
pub fn admit_user(app: &App, user: &User) -> Result<Slot> {
    if let Some(budget) = user.daily_token_budget {
        let today = crate::clock::ymd(crate::clock::now_ms());
        let spent = app
            .store
            .read(|conn| crate::store::usage::tokens_on(conn, &user.id, &today))?;
        if spent >= budget {
            return Err(Error::TooManyRequests {
                message: format!(
                    "the daily token budget of {budget} is used up ({spent} spent today, UTC)"
                ),
                retry_after_secs: 3600,
            });
        }
    }
    let max = user.max_concurrency.max(1) as usize;
    app.user_slots
        .try_acquire(&user.id, max)
        .ok_or_else(|| Error::TooManyRequests {
            message: format!(
                "this user already runs {max} turn(s) at once (max_concurrency); retry when one finishes"
            ),
            retry_after_secs: 5,
        })
}

/// `POST /v1/chat/completions`: runs one agent turn, as JSON or as Server-Sent Events.
///
/// The user's turn slot comes from admission ([`admit`]) in `request.admission`.
pub fn chat_completions(
    app: &Arc<App>,
    request: &Request,
    principal: &Principal,
) -> Result<Response> {
    let body: ChatRequest = request.json()?;
    let raw_messages = body
        .messages
        .ok_or_else(|| Error::bad_param("messages", "`messages` is required"))?;
    let messages = parse_messages(&raw_messages)?;
    if !messages.iter().any(|m| m.role == "user") {
        return Err(Error::bad_param(
            "messages",
            "`messages` must contain at least one user message",
        ));
    }
    let provider = resolve_provider(app, body.provider.as_deref(), body.model.as_deref())?;
    let default_model = app
        .config
        .providers
        .iter()
        .into_iter()
        .find(|(n, _)| *n == provider)
        .map(|(_, c)| c.default_model.clone())
        .unwrap_or_default();
    let model = match body.model.as_deref() {
        None | Some("") => default_model,
        Some(alias) if alias.starts_with("uag-") => default_model,
        Some(model) => model.to_string(),
    };
    if let Some(label) = &body.client_session_id {
        if label.is_empty() || label.len() > 256 || label.chars().any(char::is_control) {
            return Err(Error::bad_param(
                "client_session_id",
                "`client_session_id` must be 1-256 printable characters",
            ));
        }
    }
    let root = &app.config.workspace.root;
    let (user_id, user) = match principal {
        Principal::Operator(_) => ("operator".to_string(), None),
        Principal::User { user, .. } => (user.id.clone(), Some(user.as_ref())),
        Principal::Anonymous => return Err(Error::Unauthorized("missing credential".to_string())),
    };
    let (workspace_id, workspace) = match (user, &body.workspace_root, &body.workspace_id) {
        (Some(_), Some(_), _) => {
            return Err(Error::bad_param(
                "workspace_root",
                "`workspace_root` is for operators; users pick a `workspace_id`",
            ))
        }
        (None, Some(requested), _) => {
            let dir = crate::workspace::zone::operator_workspace(root, requested)?;
            let canonical_root = root.canonicalize().map_err(|e| Error::io(root, e))?;
            let id = dir
                .strip_prefix(&canonical_root)
                .map(|p| p.display().to_string())
                .unwrap_or_default();
            (if id.is_empty() { ".".to_string() } else { id }, dir)
        }
        // A user without `workspace_id` works in their base workspace.
        (Some(user), None, None) => {
            let dir = std::path::PathBuf::from(&user.workspace_path);
            crate::datadir::ensure_private_dir(&dir)?;
            (
                ".".to_string(),
                dir.canonicalize().map_err(|e| Error::io(&dir, e))?,
            )
        }
        (_, None, id) => {
            let id = id.clone().unwrap_or_else(|| "default".to_string());
            let dir = crate::workspace::zone::owned_workspace(root, &user_id, &id)?;
            (id, dir)
        }
    };
    // Taken here so that the non-streaming path frees it before the response goes out (a client
    // that starts its next turn on reading the answer must find the slot free).
    let slot = request.admission.take_slot();
    let turn = TurnRequest {
        user_id,
        provider,
        model: model.clone(),
        messages,
        workspace_id: workspace_id.clone(),
        workspace,
        client_session_id: body.client_session_id.clone(),
        via_user_key: principal.is_user_key(),
    };
    engine::preflight(app, &turn)?;
    let completion_id = format!("chatcmpl-{}", crate::crypto::random_id(""));
    let created = crate::clock::now_ms() / 1000;
    if !body.stream.unwrap_or(false) {
        let outcome = engine::run(app, &turn, &mut |_: &str| {})?;
        drop(slot);
        if let Some(error) = outcome.error {
            return Err(error);
        }
        let extensions = extensions(&outcome, &workspace_id);
        let mut response = json!({
            "id": completion_id,
            "object": "chat.completion",
            "created": created,
            "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": outcome.reply}, "finish_reason": "stop"}],
            "usage": usage_json(&outcome),
        });
        merge_extensions(&mut response, extensions);
        return Ok(Response::json(200, &response));
    }

    let include_usage = body
        .stream_options
        .and_then(|o| o.include_usage)
        .unwrap_or(false);
    let (sender, mut stream) = crate::http::sse::channel_pair(KEEPALIVE);
    let app = Arc::clone(app);
    let producer = std::thread::Builder::new()
        .name("turn-stream".into())
        .spawn(move || {
            let _slot = slot;
            let chunk = |delta: Value, finish: Value| {
                json!({
                    "id": completion_id, "object": "chat.completion.chunk", "created": created,
                    "model": model, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
                })
            };
            sender.json(&chunk(json!({"role": "assistant", "content": ""}), Value::Null));
            let result = engine::run(&app, &turn, &mut |text: &str| {
                sender.json(&chunk(json!({"content": text}), Value::Null));
            });
            match result {
                Ok(outcome) if outcome.error.is_none() => {
                    let extensions = extensions(&outcome, &workspace_id);
                    let mut last = chunk(json!({}), json!("stop"));
                    last["usage"] = usage_json(&outcome);
                    merge_extensions(&mut last, extensions.clone());
                    sender.json(&last);
                    if include_usage {
                        let mut usage = json!({
                            "id": completion_id, "object": "chat.completion.chunk", "created": created,
                            "model": model, "choices": [], "usage": usage_json(&outcome),
                        });
                        merge_extensions(&mut usage, extensions);
                        sender.json(&usage);
                    }
                }
                Ok(mut outcome) => {
                    let error = outcome.error.take().unwrap_or_else(|| Error::Internal("turn failed".into()));
                    let mut frame = stream_error(&error);
                    merge_extensions(&mut frame, extensions(&outcome, &workspace_id));
                    sender.json(&frame);
                }
                Err(error) => {
                    sender.json(&stream_error(&error));
                }
            }
            sender.done();
        })
        .map_err(|e| Error::io("thread spawn", e))?;
    stream.attach(producer);
    Ok(Response {
        status: 200,
        headers: vec![
            ("Content-Type".into(), "text/event-stream".into()),
            ("Cache-Control".into(), "no-cache".into()),
            ("X-Accel-Buffering".into(), "no".into()),
        ],
        body: Body::Stream(Box::new(stream)),
    })
}

/// Silence longer than this gets a `: keep-alive` comment on streams.
const KEEPALIVE: Duration = Duration::from_secs(15);

fn parse_messages(raw: &[Value]) -> Result<Vec<Message>> {
    if raw.is_empty() {
        return Err(Error::bad_param(
            "messages",
            "`messages` must contain at least one message",
        ));
    }
    let mut messages = Vec::with_capacity(raw.len());
    for (i, message) in raw.iter().enumerate() {
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
        let text = match message.get("content") {
            Some(Value::String(text)) => text.clone(),
            Some(Value::Null) | None if role == "assistant" => String::new(),
            Some(Value::Array(parts)) => {
                let mut texts = Vec::new();
                for (j, part) in parts.iter().enumerate() {
                    match part.get("type").and_then(Value::as_str) {
                        Some("text") | Some("input_text") => texts.push(
                            part.get("text")
                                .and_then(Value::as_str)
                                .unwrap_or("")
                                .to_string(),
                        ),
                        Some(other) => {
                            return Err(Error::bad_param(
                                &format!("{param}.content[{j}]"),
                                format!(
                                "content part type `{other}` is not supported yet; send text parts"
                            ),
                            ))
                        }
                        None => {
                            return Err(Error::bad_param(
                                &format!("{param}.content[{j}]"),
                                "each content part needs a `type`",
                            ))
                        }
                    }
                }
                texts.join("\n")
            }
            _ => {
                return Err(Error::bad_param(
                    &format!("{param}.content"),
                    "`content` must be a string or an array of content parts",
                ))
            }
        };
        messages.push(Message::new(role, &text));
    }
    Ok(messages)
}

fn extensions(outcome: &engine::TurnOutcome, workspace_id: &str) -> Value {
    json!({
        "modified_files": outcome.modified_files,
        "diff": outcome.diff,
        "actions": engine::actions_to_json(&outcome.actions),
        "dirty": outcome.dirty,
        "session_id": outcome.session_id,
        "workspace_id": workspace_id,
        "turn_id": outcome.turn_id,
        "resumed": outcome.resumed,
    })
}

/// Puts the extension fields at top level and again under `extensions` (for the original's clients).
fn merge_extensions(target: &mut Value, extensions: Value) {
    if let (Some(object), Some(fields)) = (target.as_object_mut(), extensions.as_object()) {
        for (key, value) in fields {
            object.insert(key.clone(), value.clone());
        }
        object.insert("extensions".into(), extensions);
    }
}

fn usage_json(outcome: &engine::TurnOutcome) -> Value {
    let usage = outcome.usage;
    json!({
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.prompt_tokens + usage.completion_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cached_tokens},
    })
}

fn stream_error(error: &Error) -> Value {
    json!({"error": {"message": error.public_message(), "type": error.openai_type(), "param": error.param(), "code": error.code()}})
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
