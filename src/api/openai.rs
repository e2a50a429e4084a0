//! The OpenAI-compatible plane: `GET /v1/models`, `GET /v1/models/{id}` and
//! `POST /v1/chat/completions`.
//!
//! Owns the wire types of these routes, their validation, and the SSE chunk format; what the
//! fronts share is `api::turn_input`, the turn itself `turns::engine`.

use crate::api::auth::Principal;
use crate::api::turn_input::{self, Prepared, TurnInput};
use crate::app::App;
use crate::error::{Error, Result};
use crate::http::request::Admission;
use crate::http::{Request, Response};
use crate::turns::prompt::Message;
use crate::turns::{self, OutputFormat, TurnOutcome};
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

/// `GET /v1/models`: every enabled provider's models plus the `uag-<provider>` aliases.
pub fn models(app: &Arc<App>, _request: &Request, _principal: &Principal) -> Result<Response> {
    Ok(Response::json(
        200,
        &json!({"object": "list", "data": model_list(app)}),
    ))
}

/// `GET /v1/models/{id}`: one model object, or a 404 in the OpenAI shape.
pub fn model(app: &Arc<App>, request: &Request, _principal: &Principal) -> Result<Response> {
    // Model ids may hold `/` (`opencode/big-pickle`): the route binds the rest of the path.
    let id = request.param("id")?;
    model_list(app)
        .into_iter()
        .find(|m| m["id"] == id)
        .map(|m| Response::json(200, &m))
        .ok_or_else(|| Error::NotFound(format!("the model `{id}` does not exist")))
}

fn model_list(app: &App) -> Vec<Value> {
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
    data
}

/// `GET /v1/user/providers/models`: per provider, its models, default, and whether its CLI is
/// installed, as an OpenAI-style list.
pub fn provider_models(
    app: &Arc<App>,
    _request: &Request,
    _principal: &Principal,
) -> Result<Response> {
    Ok(Response::json(
        200,
        &json!({"object": "list", "data": provider_inventory(app)}),
    ))
}

/// Each configured provider: its models, default, alias, and whether its CLI is installed (the
/// management plane serves the same list in its envelope).
pub fn provider_inventory(app: &App) -> Vec<Value> {
    app
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
        .collect()
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
    n: Option<Value>,
    tools: Option<Value>,
    functions: Option<Value>,
    tool_choice: Option<Value>,
    function_call: Option<Value>,
    response_format: Option<Value>,
}

#[derive(Deserialize)]
struct StreamOptions {
    include_usage: Option<bool>,
}

/// Admission of the OpenAI plane's turn routes (`POST /v1/chat/completions`, `POST
/// /v1/responses`), before the body is read: a user key gets `turns::admit::user`; operators
/// have no per-user limits.
pub fn admit(app: &Arc<App>, principal: &Principal) -> Result<Admission> {
    turns::refuse_unconfined(app, principal.is_user_key())?;
    match principal {
        Principal::User { user, .. } => turns::admit::user(app, user).map(Admission::holding),
        Principal::Operator(_) | Principal::Anonymous => Ok(Admission::default()),
    }
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
    refuse_unsupported(&body)?;
    let raw_messages = body
        .messages
        .ok_or_else(|| Error::bad_param("messages", "`messages` is required"))?;
    let input = TurnInput {
        provider: body.provider,
        model: body.model,
        messages: parse_messages(&raw_messages, app.config.server.image_fetch_private)?,
        workspace_id: body.workspace_id,
        workspace_root: body.workspace_root,
        client_session_id: body.client_session_id,
        output: response_format(body.response_format.as_ref(), "response_format")?,
    };
    // Taken here so that the non-streaming path frees it before the response goes out (a client
    // that starts its next turn on reading the answer must find the slot free).
    let slot = request.admission.take_slot();
    let Prepared {
        turn,
        model,
        workspace_id,
    } = turn_input::prepare(app, principal, input)?;
    let completion_id = format!("chatcmpl-{}", crate::crypto::random_id(""));
    let created = crate::clock::now_ms() / 1000;
    if !body.stream.unwrap_or(false) {
        let outcome = turns::run(app, &turn, &mut |_: &str| {})?;
        drop(slot);
        if let Some(error) = outcome.error {
            return Err(error);
        }
        let extensions = turn_input::extensions(&outcome, &workspace_id);
        let mut response = json!({
            "id": completion_id,
            "object": "chat.completion",
            "created": created,
            "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": outcome.reply}, "finish_reason": "stop"}],
            "usage": usage_json(&outcome),
        });
        turn_input::merge_extensions(&mut response, extensions);
        return Ok(Response::json(200, &response));
    }

    let include_usage = body
        .stream_options
        .and_then(|o| o.include_usage)
        .unwrap_or(false);
    let (sender, mut stream) = crate::http::sse::channel_pair(KEEPALIVE);
    let app = Arc::clone(app);
    // The turn's spans and log lines belong to this request's trace.
    let context = crate::telemetry::current();
    let producer = std::thread::Builder::new()
        .name("turn-stream".into())
        .spawn(move || context.enter(|| {
            let _slot = slot;
            let chunk = |delta: Value, finish: Value| {
                let mut chunk = json!({
                    "id": completion_id, "object": "chat.completion.chunk", "created": created,
                    "model": model, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
                });
                if include_usage {
                    chunk["usage"] = Value::Null;
                }
                chunk
            };
            sender.json(&chunk(json!({"role": "assistant", "content": ""}), Value::Null));
            let result = turns::run(&app, &turn, &mut |text: &str| {
                sender.json(&chunk(json!({"content": text}), Value::Null));
            });
            match result {
                Ok(outcome) if outcome.error.is_none() => {
                    let extensions = turn_input::extensions(&outcome, &workspace_id);
                    // Usage only on the `choices: []` chunk, as OpenAI sends it (clients that add
                    // up usage across chunks count it once), `null` on the others; and under
                    // `extensions.usage` of the last chunk, where clients of the original read it.
                    let mut last = chunk(json!({}), json!("stop"));
                    if include_usage {
                        last["usage"] = Value::Null;
                        sender.json(&last);
                        let mut usage = json!({
                            "id": completion_id, "object": "chat.completion.chunk", "created": created,
                            "model": model, "choices": [], "usage": usage_json(&outcome),
                        });
                        turn_input::merge_extensions(&mut usage, extensions);
                        usage["extensions"]["usage"] = usage_json(&outcome);
                        sender.json(&usage);
                    } else {
                        turn_input::merge_extensions(&mut last, extensions);
                        last["extensions"]["usage"] = usage_json(&outcome);
                        sender.json(&last);
                    }
                }
                Ok(mut outcome) => {
                    let error = outcome.error.take().unwrap_or_else(|| Error::Internal("turn failed".into()));
                    let mut frame = turn_input::stream_error(&error);
                    turn_input::merge_extensions(&mut frame, turn_input::extensions(&outcome, &workspace_id));
                    sender.json(&frame);
                }
                Err(error) => {
                    sender.json(&turn_input::stream_error(&error));
                }
            }
            sender.done();
        }))
        .map_err(|e| Error::io("thread spawn", e))?;
    stream.attach(producer);
    Ok(Response::sse(stream))
}

/// Silence longer than this gets a `: keep-alive` comment on streams.
const KEEPALIVE: Duration = Duration::from_secs(15);

/// The messages of a request; image parts are loaded (decoded or fetched) here, before anything
/// runs, so a bad image is a 400 naming its part.
fn parse_messages(raw: &[Value], image_fetch_private: bool) -> Result<Vec<Message>> {
    let mut images = crate::images::Loader::new(image_fetch_private);
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
        let (text, loaded) = turn_input::content(
            message.get("content"),
            role,
            &format!("{param}.content"),
            &mut images,
        )?;
        let mut message = Message::new(role, &text);
        message.images = loaded;
        messages.push(message);
    }
    Ok(messages)
}

/// Refuses the request fields an agent turn cannot honour, naming each: more than one choice,
/// and client-side tools (the agent runs its own tools; client tools are not passed through).
fn refuse_unsupported(body: &ChatRequest) -> Result<()> {
    match &body.n {
        None | Some(Value::Null) => {}
        Some(n) if n.as_u64() == Some(1) => {}
        Some(_) => {
            return Err(Error::bad_param(
                "n",
                "`n` must be 1: an agent turn runs once and changes the workspace once",
            ))
        }
    }
    let given = |value: &Option<Value>| {
        value
            .as_ref()
            .is_some_and(|v| !v.is_null() && v.as_array().is_none_or(|a| !a.is_empty()))
    };
    for (field, value) in [
        ("tools", &body.tools),
        ("functions", &body.functions),
        ("tool_choice", &body.tool_choice),
        ("function_call", &body.function_call),
    ] {
        if given(value) {
            return Err(Error::bad_param(
                field,
                format!(
                    "`{field}` is not supported: the agent uses its own tools (files, shell) in \
                     its workspace; client-defined tools are not passed through"
                ),
            ));
        }
    }
    Ok(())
}

/// `response_format`: `text` (or absent), `json_object`, or `json_schema` with its `schema`.
pub fn response_format(value: Option<&Value>, param: &str) -> Result<OutputFormat> {
    let Some(value) = value.filter(|v| !v.is_null()) else {
        return Ok(OutputFormat::Text);
    };
    match value.get("type").and_then(Value::as_str) {
        Some("text") => Ok(OutputFormat::Text),
        Some("json_object") => Ok(OutputFormat::JsonObject),
        Some("json_schema") => {
            let spec = value.get("json_schema").ok_or_else(|| {
                Error::bad_param(
                    &format!("{param}.json_schema"),
                    "`json_schema` is required for type json_schema",
                )
            })?;
            let schema = spec
                .get("schema")
                .filter(|s| s.is_object())
                .cloned()
                .ok_or_else(|| {
                    Error::bad_param(
                        &format!("{param}.json_schema.schema"),
                        "`schema` must be a JSON Schema object",
                    )
                })?;
            Ok(OutputFormat::JsonSchema {
                name: spec
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or("response")
                    .to_string(),
                schema,
            })
        }
        Some(other) => Err(Error::bad_param(
            &format!("{param}.type"),
            format!("unknown response format `{other}`; expected text, json_object or json_schema"),
        )),
        None => Err(Error::bad_param(
            &format!("{param}.type"),
            "`type` is required",
        )),
    }
}

fn usage_json(outcome: &TurnOutcome) -> Value {
    let usage = outcome.usage;
    json!({
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.prompt_tokens + usage.completion_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cached_tokens},
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PNG: &str = "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGP4z8AAAAMBAQDJ/pLvAAAAAElFTkSuQmCC";

    /// `messages` → one `role: "text" [images]` line per message, or `<status> <param>: <message>`.
    fn check(messages: Value, expected: &str) {
        let raw = messages.as_array().expect("an array of messages");
        let got = match parse_messages(raw, false) {
            Ok(messages) => messages
                .iter()
                .map(|m| {
                    let images: Vec<&str> = m.images.iter().map(|i| i.mime.as_str()).collect();
                    if images.is_empty() {
                        format!("{}: {:?}", m.role, m.text)
                    } else {
                        format!("{}: {:?} {images:?}", m.role, m.text)
                    }
                })
                .collect::<Vec<_>>()
                .join("\n"),
            Err(e) => format!("{} {}: {e}", e.status(), e.param().unwrap_or("-")),
        };
        assert_eq!(got, expected, "{messages}");
    }

    #[test]
    fn chat_messages() {
        check(
            json!([]),
            "400 messages: `messages` must contain at least one message",
        );
        check(json!([{"role": "user", "content": "hi"}]), r#"user: "hi""#);
        check(
            json!([
                {"role": "system", "content": "be brief"},
                {"role": "developer", "content": "use tabs"},
                {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
                {"role": "assistant", "content": null},
                {"role": "assistant"},
                {"role": "tool", "content": "exit 0"},
            ]),
            "system: \"be brief\"\ndeveloper: \"use tabs\"\nuser: \"a\\nb\"\nassistant: \"\"\n\
             assistant: \"\"\ntool: \"exit 0\"",
        );
        // Responses-style text parts are read in chat messages too.
        check(
            json!([{"role": "user", "content": [{"type": "input_text", "text": "x"}, {"type": "output_text", "text": "y"}]}]),
            r#"user: "x\ny""#,
        );
        check(
            json!([{"role": "user", "content": [
                {"type": "text", "text": "look"},
                {"type": "image_url", "image_url": {"url": PNG}},
            ]}]),
            r#"user: "look" ["image/png"]"#,
        );
        check(json!([{"role": "user", "content": []}]), r#"user: """#);
    }

    #[test]
    fn chat_message_refusals_name_the_field() {
        check(
            json!([{"content": "x"}]),
            "400 messages[0].role: each message needs a string `role`",
        );
        check(
            json!([{"role": "user", "content": "ok"}, {"role": 7, "content": "x"}]),
            "400 messages[1].role: each message needs a string `role`",
        );
        check(
            json!([{"role": "robot", "content": "x"}]),
            "400 messages[0].role: unknown role `robot`; expected system, developer, user, \
             assistant or tool",
        );
        check(
            json!([{"role": "user"}]),
            "400 messages[0].content: `content` must be a string or an array of content parts",
        );
        check(
            json!([{"role": "user", "content": 5}]),
            "400 messages[0].content: `content` must be a string or an array of content parts",
        );
        check(
            json!([{"role": "user", "content": [{"text": "x"}]}]),
            "400 messages[0].content[0]: each content part needs a `type`",
        );
        check(
            json!([{"role": "user", "content": [{"type": "text", "text": 1}]}]),
            "400 messages[0].content[0]: a text part needs a string `text`",
        );
        check(
            json!([{"role": "system", "content": [{"type": "image_url", "image_url": {"url": PNG}}]}]),
            "400 messages[0].content[0]: image parts are accepted in user messages, not system",
        );
        check(
            json!([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "file:///etc/passwd"}}]}]),
            "400 messages[0].content[0]: the URL scheme `file` is not accepted; send a data: URL \
             or an http(s) URL",
        );
    }

    /// `response_format` → `text`, `json_object`, `json_schema <name>`, or the 400.
    #[test]
    fn response_formats() {
        let check = |value: Value, expected: &str| {
            let got = match response_format(Some(&value), "response_format") {
                Ok(OutputFormat::Text) => "text".to_string(),
                Ok(OutputFormat::JsonObject) => "json_object".to_string(),
                Ok(OutputFormat::JsonSchema { name, .. }) => format!("json_schema {name}"),
                Err(e) => format!("{} {}: {e}", e.status(), e.param().unwrap_or("-")),
            };
            assert_eq!(got, expected, "{value}");
        };
        check(Value::Null, "text");
        check(json!({"type": "text"}), "text");
        check(json!({"type": "json_object"}), "json_object");
        check(
            json!({"type": "json_schema", "json_schema": {"name": "pet", "schema": {"type": "object"}}}),
            "json_schema pet",
        );
        check(
            json!({"type": "json_schema", "json_schema": {"schema": {}}}),
            "json_schema response",
        );
        check(
            json!({"type": "json_schema"}),
            "400 response_format.json_schema: `json_schema` is required for type json_schema",
        );
        check(
            json!({"type": "json_schema", "json_schema": {"schema": "x"}}),
            "400 response_format.json_schema.schema: `schema` must be a JSON Schema object",
        );
        check(
            json!({"type": "yaml"}),
            "400 response_format.type: unknown response format `yaml`; expected text, \
             json_object or json_schema",
        );
        check(json!({}), "400 response_format.type: `type` is required");
    }

    /// What `POST /v1/chat/completions` refuses before anything runs, naming the field.
    #[test]
    fn chat_completions_refusals() {
        let test = crate::api::testing::TestApp::new();
        let user = r#"[{"role":"user","content":"hi"}]"#;
        for (body, expected) in [
            ("", "400 -: request body is empty; send a JSON object"),
            (
                r#"{"model":"uag-codex"}"#,
                "400 messages: `messages` is required",
            ),
            (
                &format!(r#"{{"model":"uag-codex","messages":{user},"n":2}}"#),
                "400 n: `n` must be 1: an agent turn runs once and changes the workspace once",
            ),
            (
                &format!(
                    r#"{{"model":"uag-codex","messages":{user},"tools":[{{"type":"function"}}]}}"#
                ),
                "400 tools: `tools` is not supported: the agent uses its own tools (files, shell) \
                 in its workspace; client-defined tools are not passed through",
            ),
            (
                r#"{"model":"uag-codex","messages":[{"role":"system","content":"only rules"}]}"#,
                "400 messages: the conversation must contain at least one user message",
            ),
            (
                &format!(r#"{{"model":"gpt-4o","messages":{user}}}"#),
                "400 model: unknown model `gpt-4o`; GET /v1/models lists them",
            ),
            (
                &format!(r#"{{"model":"uag-codex","messages":{user},"client_session_id":""}}"#),
                "400 client_session_id: `client_session_id` must be 1-256 printable characters",
            ),
            (
                &format!(
                    r#"{{"model":"uag-codex","messages":{user},"response_format":{{"type":"xml"}}}}"#
                ),
                "400 response_format.type: unknown response format `xml`; expected text, \
                 json_object or json_schema",
            ),
        ] {
            let got = crate::api::testing::error(test.operator(
                "POST",
                "/v1/chat/completions",
                Some(body),
            ));
            assert_eq!(got, expected, "{body}");
        }
        // `n: 1`, empty tool lists and nulls are accepted (and fail later on the missing CLI).
        let body = format!(
            r#"{{"model":"uag-codex","messages":{user},"n":1,"tools":[],"tool_choice":null}}"#
        );
        let got =
            crate::api::testing::error(test.operator("POST", "/v1/chat/completions", Some(&body)));
        assert!(got.starts_with("503"), "{got}");
    }

    /// `GET /v1/models/{*id}`: ids with a `/` are one id.
    #[test]
    fn models_by_id() {
        let test = crate::api::testing::TestApp::new();
        for (url, expected) in [
            ("/v1/models/gpt-5", "gpt-5 codex"),
            ("/v1/models/uag-gemini", "uag-gemini gemini"),
            (
                "/v1/models/opencode/big-pickle",
                "opencode/big-pickle opencode",
            ),
            (
                "/v1/models/opencode%2Fbig-pickle",
                "opencode/big-pickle opencode",
            ),
            (
                "/v1/models/gpt-4o",
                "404 -: the model `gpt-4o` does not exist",
            ),
            (
                "/v1/models/a/b/c",
                "404 -: the model `a/b/c` does not exist",
            ),
        ] {
            let got = match test.operator("GET", url, None) {
                Ok(response) => {
                    let (_, body) = crate::api::testing::json(response);
                    format!(
                        "{} {}",
                        body["id"].as_str().unwrap(),
                        body["owned_by"].as_str().unwrap()
                    )
                }
                Err(e) => format!("{} {}: {e}", e.status(), e.param().unwrap_or("-")),
            };
            assert_eq!(got, expected, "{url}");
        }
    }
}
