//! What the two OpenAI fronts (`/v1/chat/completions`, `/v1/responses`) share: content parts
//! into messages, provider and model resolution, the workspace a caller may use, and the
//! extension fields every turn response carries.
//!
//! A front parses its own wire format into a [`TurnInput`]; [`prepare`] turns that into a
//! runnable `TurnRequest` with 400s naming the field. Must not run the turn or render a front's
//! own response shape.

use crate::api::auth::Principal;
use crate::app::App;
use crate::config::ProvidersConfig;
use crate::error::{Error, Result};
use crate::providers::Provider;
use crate::turns::prompt::{Image, Message};
use crate::turns::{self, OutputFormat, Owner, TurnOutcome, TurnRequest};
use serde_json::{json, Value};

/// What a front parsed from its request, in the terms of a turn.
#[derive(Debug, Clone, Default)]
pub struct TurnInput {
    /// `provider` (codex | gemini | opencode), optional when `model` names one.
    pub provider: Option<String>,
    /// A provider model id or a `uag-<provider>` alias.
    pub model: Option<String>,
    /// The conversation, oldest first.
    pub messages: Vec<Message>,
    /// A sub-workspace of the caller's tree.
    pub workspace_id: Option<String>,
    /// An operator's workspace directory (users may not set it).
    pub workspace_root: Option<String>,
    /// The client's conversation label; `None` makes the turn stateless.
    pub client_session_id: Option<String>,
    /// `response_format`.
    pub output: OutputFormat,
}

/// A turn ready to run.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// The turn.
    pub turn: TurnRequest,
    /// The model id to report in the response.
    pub model: String,
    /// The workspace id to report.
    pub workspace_id: String,
}

/// Resolves `input` for `principal`: provider, model (checked against the provider's `models`
/// unless `allow_any_model`), session label, workspace, and the checks that can fail before
/// anything runs (the sandbox, the CLI installed).
pub fn prepare(app: &App, principal: &Principal, input: TurnInput) -> Result<Prepared> {
    if !input.messages.iter().any(|m| m.role == "user") {
        return Err(Error::bad_param(
            "messages",
            "the conversation must contain at least one user message",
        ));
    }
    let providers = &app.config.providers;
    let provider = resolve_provider(providers, input.provider.as_deref(), input.model.as_deref())?;
    let model = resolve_model(providers, provider, input.model.as_deref())?;
    if let Some(label) = &input.client_session_id {
        if label.is_empty() || label.len() > 256 || label.chars().any(char::is_control) {
            return Err(Error::bad_param(
                "client_session_id",
                "`client_session_id` must be 1-256 printable characters",
            ));
        }
    }
    let root = &app.config.workspace.root;
    let owner = owner(principal)?;
    let user = match principal {
        Principal::User { user, .. } => Some(user.as_ref()),
        Principal::Operator(_) | Principal::Anonymous => None,
    };
    let (workspace_id, workspace) = match (user, &input.workspace_root, &input.workspace_id) {
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
            let dir = crate::workspace::zone::owned_workspace(root, owner.id(), &id)?;
            (id, dir)
        }
    };
    let turn = TurnRequest {
        owner,
        provider,
        model: model.clone(),
        messages: input.messages,
        workspace_id: workspace_id.clone(),
        workspace,
        client_session_id: input.client_session_id,
        via_user_key: principal.is_user_key(),
        output: input.output,
    };
    turns::preflight(app, &turn)?;
    Ok(Prepared {
        turn,
        model,
        workspace_id,
    })
}

/// The user id a caller's turns, sessions and responses belong to (`operator` for operator
/// credentials), so that every lookup by a client-supplied id can be scoped to its owner.
pub fn owner(principal: &Principal) -> Result<Owner> {
    match principal {
        Principal::Operator(_) => Ok(Owner::Operator),
        Principal::User { user, .. } => Ok(Owner::User(user.id.clone())),
        Principal::Anonymous => Err(Error::Unauthorized("missing credential".to_string())),
    }
}

/// The text and images of a message's `content`: a string, or content parts (`text`,
/// `input_text`, `output_text` joined by newlines; `image_url` — `{"url": …}` or the URL
/// itself — and the Responses `input_image` loaded through `images`, in user messages only).
/// `param` names the content in errors; each part's 400 names the part (`…content[j]`).
pub fn content(
    content: Option<&Value>,
    role: &str,
    param: &str,
    images: &mut crate::images::Loader,
) -> Result<(String, Vec<Image>)> {
    match content {
        Some(Value::String(text)) => Ok((text.clone(), Vec::new())),
        Some(Value::Null) | None if role == "assistant" => Ok((String::new(), Vec::new())),
        Some(Value::Array(parts)) => {
            let mut texts = Vec::new();
            let mut loaded = Vec::new();
            for (j, part) in parts.iter().enumerate() {
                let param = format!("{param}[{j}]");
                match part.get("type").and_then(Value::as_str) {
                    Some("text" | "input_text" | "output_text") => texts.push(
                        part.get("text")
                            .and_then(Value::as_str)
                            .ok_or_else(|| {
                                Error::bad_param(&param, "a text part needs a string `text`")
                            })?
                            .to_string(),
                    ),
                    Some(kind @ ("image_url" | "input_image")) => {
                        if role != "user" {
                            return Err(Error::bad_param(
                                &param,
                                format!("image parts are accepted in user messages, not {role}"),
                            ));
                        }
                        let url = image_url(part).ok_or_else(|| {
                            Error::bad_param(
                                &param,
                                format!(
                                    "an `{kind}` part needs `image_url`: a URL string or \
                                     {{\"url\": …}} (data: or http(s)); `file_id` is not supported"
                                ),
                            )
                        })?;
                        loaded.push(images.load(url, &param)?);
                    }
                    Some(other) => {
                        return Err(Error::bad_param(
                            &param,
                            format!(
                                "content part type `{other}` is not supported; send text or \
                                 image_url parts"
                            ),
                        ))
                    }
                    None => {
                        return Err(Error::bad_param(&param, "each content part needs a `type`"))
                    }
                }
            }
            Ok((texts.join("\n"), loaded))
        }
        _ => Err(Error::bad_param(
            param,
            "`content` must be a string or an array of content parts",
        )),
    }
}

/// The URL of an image part: `image_url` as `{"url": …}` (Chat Completions) or as the URL
/// string itself (Responses `input_image`, and clients that flatten the chat form).
fn image_url(part: &Value) -> Option<&str> {
    match part.get("image_url")? {
        Value::String(url) => Some(url),
        Value::Object(object) => object.get("url")?.as_str(),
        _ => None,
    }
}

/// The extension fields of a turn's response (at top level and under `extensions`).
pub fn extensions(outcome: &TurnOutcome, workspace_id: &str) -> Value {
    json!({
        "modified_files": outcome.modified_files,
        "diff": outcome.diff,
        "actions": crate::api::wire::actions(&outcome.actions),
        "dirty": outcome.dirty,
        "session_id": outcome.session_id,
        "workspace_id": workspace_id,
        "turn_id": outcome.turn_id,
        "resumed": outcome.resumed,
    })
}

/// The extension fields of a stored turn (a retrieved response): the same keys as
/// [`extensions`], read back from the `turns` row; `diff` is recomputed by the caller.
pub fn stored_extensions(
    turn: &crate::store::turns::Turn,
    workspace_id: &str,
    diff: &str,
) -> Value {
    let parse = |text: &str| serde_json::from_str::<Value>(text).unwrap_or_else(|_| json!([]));
    json!({
        "modified_files": parse(&turn.modified_files),
        "diff": diff,
        "actions": parse(&turn.actions),
        "dirty": turn.dirty,
        "session_id": turn.session_id,
        "workspace_id": workspace_id,
        "turn_id": turn.id,
        "resumed": turn.resumed,
    })
}

/// Puts the extension fields at top level and again under `extensions` (for the original's clients).
pub fn merge_extensions(target: &mut Value, extensions: Value) {
    if let (Some(object), Some(fields)) = (target.as_object_mut(), extensions.as_object()) {
        for (key, value) in fields {
            object.insert(key.clone(), value.clone());
        }
        object.insert("extensions".into(), extensions);
    }
}

/// An error as the `error` object of a stream frame.
pub fn stream_error(error: &Error) -> Value {
    json!({"error": {"message": error.public_message(), "type": error.openai_type(), "param": error.param(), "code": error.code()}})
}

/// Picks the provider from `provider` or from the model id/alias, with 400s naming the field.
pub fn resolve_provider(
    config: &ProvidersConfig,
    provider: Option<&str>,
    model: Option<&str>,
) -> Result<Provider> {
    let providers = config.iter();
    if let Some(wanted) = provider {
        let Some(provider) = Provider::from_name(wanted) else {
            return Err(Error::bad_param(
                "provider",
                format!("unknown provider `{wanted}`; expected codex, gemini or opencode"),
            ));
        };
        if !config.get(provider).is_enabled() {
            return Err(Error::bad_param(
                "provider",
                format!("provider `{wanted}` is disabled"),
            ));
        }
        return Ok(provider);
    }
    let Some(model) = model.filter(|m| !m.is_empty()) else {
        return Err(Error::bad_param(
            "model",
            "`model` or `provider` is required",
        ));
    };
    if let Some(alias) = model.strip_prefix("uag-").and_then(Provider::from_name) {
        if config.get(alias).is_enabled() {
            return Ok(alias);
        }
    }
    let owners: Vec<Provider> = providers
        .iter()
        .filter(|(_, c)| c.is_enabled() && c.models.iter().any(|m| m == model))
        .map(|(provider, _)| *provider)
        .collect();
    match owners.as_slice() {
        [one] => Ok(*one),
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

/// The model id to run: the provider's default for no model or its `uag-` alias, else `model`
/// itself, which must be one of the provider's configured `models` unless `allow_any_model`.
pub fn resolve_model(
    providers: &ProvidersConfig,
    provider: Provider,
    model: Option<&str>,
) -> Result<String> {
    let config = providers.get(provider);
    match model {
        None | Some("") => Ok(config.default_model.clone()),
        Some(alias) if alias == format!("uag-{provider}") => Ok(config.default_model.clone()),
        Some(model) if config.allow_any_model || config.models.iter().any(|m| m == model) => {
            Ok(model.to_string())
        }
        Some(model) => Err(Error::bad_param(
            "model",
            format!(
                "model `{model}` is not offered by {provider}; use one of {} or uag-{provider}",
                config.models.join(", ")
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PNG_B64: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGP4z8AAAAMBAQDJ/pLvAAAAAElFTkSuQmCC";

    fn check(parts: Value, role: &str) -> Result<(String, Vec<Image>)> {
        content(
            Some(&parts),
            role,
            "messages[2].content",
            &mut crate::images::Loader::new(false),
        )
    }

    /// `provider`/`model` of a request → `<provider> <model>` or `400 <param>: <message>`.
    fn check_resolution(
        config: &ProvidersConfig,
        provider: Option<&str>,
        model: Option<&str>,
        expected: &str,
    ) {
        let got = resolve_provider(config, provider, model)
            .and_then(|p| Ok(format!("{p} {}", resolve_model(config, p, model)?)))
            .unwrap_or_else(|e| format!("{} {}: {e}", e.status(), e.param().unwrap_or("-")));
        assert_eq!(got, expected, "provider {provider:?}, model {model:?}");
    }

    #[test]
    fn provider_and_model_resolution() {
        let config = crate::config::Config::default().providers;
        for (provider, model, expected) in [
            (None, Some("uag-codex"), "codex gpt-5-codex"),
            (None, Some("gpt-5"), "codex gpt-5"),
            (None, Some("gemini-2.5-flash"), "gemini gemini-2.5-flash"),
            (
                None,
                Some("opencode/big-pickle"),
                "opencode opencode/big-pickle",
            ),
            (Some("gemini"), None, "gemini gemini-2.5-pro"),
            (Some("gemini"), Some(""), "gemini gemini-2.5-pro"),
            (Some("gemini"), Some("uag-gemini"), "gemini gemini-2.5-pro"),
            (
                Some("opencode"),
                Some("uag-opencode"),
                "opencode opencode/big-pickle",
            ),
            (
                Some("codex"),
                Some("gemini-2.5-pro"),
                "400 model: model `gemini-2.5-pro` is not offered by codex; use one of \
                 gpt-5-codex, gpt-5 or uag-codex",
            ),
            (
                Some("codex"),
                Some("uag-gemini"),
                "400 model: model `uag-gemini` is not offered by codex; use one of \
                 gpt-5-codex, gpt-5 or uag-codex",
            ),
            (
                Some("claude"),
                None,
                "400 provider: unknown provider `claude`; expected codex, gemini or opencode",
            ),
            (
                Some("Codex"),
                None,
                "400 provider: unknown provider `Codex`; expected codex, gemini or opencode",
            ),
            (None, None, "400 model: `model` or `provider` is required"),
            (
                None,
                Some(""),
                "400 model: `model` or `provider` is required",
            ),
            (
                None,
                Some("nope"),
                "400 model: unknown model `nope`; GET /v1/models lists them",
            ),
            (
                None,
                Some("uag-claude"),
                "400 model: unknown model `uag-claude`; GET /v1/models lists them",
            ),
        ] {
            check_resolution(&config, provider, model, expected);
        }

        // A disabled provider is refused by name and invisible by model or alias.
        let mut config = crate::config::Config::default().providers;
        config.gemini.enabled = Some(false);
        for (provider, model, expected) in [
            (
                Some("gemini"),
                None,
                "400 provider: provider `gemini` is disabled",
            ),
            (
                None,
                Some("uag-gemini"),
                "400 model: unknown model `uag-gemini`; GET /v1/models lists them",
            ),
            (
                None,
                Some("gemini-2.5-pro"),
                "400 model: unknown model `gemini-2.5-pro`; GET /v1/models lists them",
            ),
            (None, Some("uag-codex"), "codex gpt-5-codex"),
        ] {
            check_resolution(&config, provider, model, expected);
        }

        // A model two providers offer needs `provider`; `allow_any_model` takes any model by
        // name, but only once the provider is known.
        let mut config = crate::config::Config::default().providers;
        config.opencode.models.push("gpt-5".to_string());
        config.codex.allow_any_model = true;
        for (provider, model, expected) in [
            (
                None,
                Some("gpt-5"),
                "400 provider: model `gpt-5` is offered by several providers; set `provider`",
            ),
            (Some("opencode"), Some("gpt-5"), "opencode gpt-5"),
            (Some("codex"), Some("o3"), "codex o3"),
            (
                None,
                Some("o3"),
                "400 model: unknown model `o3`; GET /v1/models lists them",
            ),
        ] {
            check_resolution(&config, provider, model, expected);
        }
    }

    #[test]
    fn image_parts_in_both_shapes_are_loaded() {
        let url = format!("data:image/png;base64,{PNG_B64}");
        let (text, images) = check(
            json!([
                {"type": "text", "text": "what is"},
                {"type": "image_url", "image_url": {"url": url, "detail": "low"}},
                {"type": "image_url", "image_url": url},
                {"type": "input_image", "image_url": url},
                {"type": "input_text", "text": "in these?"},
            ]),
            "user",
        )
        .unwrap();
        assert_eq!(text, "what is\nin these?");
        assert_eq!(images.len(), 3);
        assert!(images.iter().all(|i| i.mime == "image/png"));
    }

    #[test]
    fn each_refusal_names_the_part() {
        let url = format!("data:image/png;base64,{PNG_B64}");
        for (parts, role, param, needle) in [
            (
                json!([{"type": "text", "text": "a"}, {"type": "image_url", "image_url": {"url": "file:///etc/passwd"}}]),
                "user",
                "messages[2].content[1]",
                "scheme `file`",
            ),
            (
                json!([{"type": "input_image", "file_id": "file-123"}]),
                "user",
                "messages[2].content[0]",
                "`file_id` is not supported",
            ),
            (
                json!([{"type": "image_url", "image_url": {"url": url}}]),
                "assistant",
                "messages[2].content[0]",
                "user messages",
            ),
            (
                json!([{"type": "input_audio", "input_audio": {}}]),
                "user",
                "messages[2].content[0]",
                "`input_audio` is not supported",
            ),
            (
                json!([{"type": "image_url", "image_url": {"url": "data:image/png;base64,aGVsbG8="}}]),
                "user",
                "messages[2].content[0]",
                "not a PNG",
            ),
        ] {
            let error = check(parts, role).unwrap_err();
            assert_eq!(error.param(), Some(param), "{error}");
            assert!(error.to_string().contains(needle), "{error}");
        }
    }
}
