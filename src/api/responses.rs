//! The OpenAI Responses API on the turn engine: `POST /v1/responses` (a response object, or the
//! `response.*` event stream), `GET /v1/responses/{id}` and `DELETE /v1/responses/{id}`.
//!
//! Owns the Responses wire format (input items, `instructions`, `text.format`, the response
//! object, the stream's events) and how a `previous_response_id` chain continues one CLI session:
//! every response turn runs under a session label (the client's `client_session_id`, else the
//! chain's first response id), and the conversation handed to the engine is the previous turn's
//! stored messages plus its reply plus the new input, so the engine's plan resumes the CLI session
//! and sends it only the new messages. What chat shares lives in `api::turn_input`; the turn
//! itself in `turns::engine`. Must not run SQL (`store::responses`, `store::turns` do).

use crate::api::auth::Principal;
use crate::api::turn_input::{self, Prepared, TurnInput};
use crate::app::App;
use crate::error::{Error, Result};
use crate::http::sse::SseSender;
use crate::http::{Request, Response};
use crate::store;
use crate::store::responses::ResponseRecord;
use crate::turns::prompt::Message;
use crate::turns::{self, OutputFormat, TurnOutcome, TurnRequest};
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

/// `POST /v1/responses`: runs one agent turn; answers with the response object, or with the
/// Responses event stream when `stream` is true. `previous_response_id` continues that
/// response's CLI session.
///
/// The user's turn slot comes from admission (`api::openai::admit`, as for chat).
pub fn create(app: &Arc<App>, request: &Request, principal: &Principal) -> Result<Response> {
    let body: CreateRequest = request.json()?;
    refuse_unsupported(&body)?;
    let owner = turn_input::owner(principal)?.id().to_string();
    let previous = match &body.previous_response_id {
        Some(id) => Some(load_previous(app, id, &owner)?),
        None => None,
    };
    let new_input = parse_input(body.input.as_ref(), app.config.server.image_fetch_private)?;
    let instructions = parse_instructions(body.instructions.as_ref())?;
    let (output, text_format) = parse_text(body.text.as_ref())?;
    let metadata = parse_metadata(body.metadata.as_ref())?;
    let tool_choice = match &body.tool_choice {
        Some(Value::String(choice)) => choice.clone(),
        _ => "auto".to_string(),
    };
    let store = body.store.unwrap_or(true);
    let id = crate::crypto::random_id("resp_");

    // Only this request's `instructions` apply (OpenAI does not carry them along a chain), placed
    // first; the history holds the chain's input items and replies without earlier instructions.
    let mut messages = Vec::new();
    if let Some(instructions) = &instructions {
        messages.push(Message::new("system", instructions));
    }
    if let Some(previous) = &previous {
        messages.extend(previous.history()?);
    }
    messages.extend(new_input);
    if !messages.iter().any(|m| m.role == "user") {
        return Err(Error::bad_param(
            "input",
            "the conversation must contain at least one user message",
        ));
    }

    // A chained request inherits the session, provider, model and workspace of the response it
    // continues unless it names its own.
    let session_label = body
        .client_session_id
        .clone()
        .or_else(|| {
            previous
                .as_ref()
                .and_then(|p| p.record.session_label.clone())
        })
        .or_else(|| store.then(|| id.clone()));
    let (provider, model) = match (&previous, &body.provider, &body.model) {
        (Some(previous), None, None) => (
            Some(previous.record.provider.clone()),
            Some(previous.record.model.clone()),
        ),
        _ => (body.provider.clone(), body.model.clone()),
    };
    let (workspace_id, workspace_root) = match (&previous, &body.workspace_id, &body.workspace_root)
    {
        (Some(previous), None, None) => workspace_selectors(&previous.record),
        _ => (body.workspace_id.clone(), body.workspace_root.clone()),
    };
    let input = TurnInput {
        provider,
        model,
        messages,
        workspace_id,
        workspace_root: workspace_root.clone(),
        client_session_id: session_label.clone(),
        output,
    };
    // Taken here so that the non-streaming path frees it before the response goes out.
    let slot = request.admission.take_slot();
    let Prepared {
        turn,
        model,
        workspace_id,
    } = turn_input::prepare(app, principal, input)?;
    let creation = Creation {
        id,
        created_at_ms: crate::clock::now_ms(),
        owner,
        provider: turn.provider.to_string(),
        model,
        workspace_id,
        workspace_root,
        session_label,
        previous_response_id: body.previous_response_id.clone(),
        instructions,
        metadata,
        text_format,
        tool_choice,
        store,
    };

    if !body.stream.unwrap_or(false) {
        let outcome = turns::run(app, &turn, &mut |_: &str| {})?;
        creation.record(app, &outcome);
        drop(slot);
        if let Some(error) = outcome.error {
            return Err(error);
        }
        return Ok(Response::json(200, &creation.completed(&outcome)));
    }

    let (sender, mut stream) = crate::http::sse::channel_pair(KEEPALIVE);
    let app = Arc::clone(app);
    // The turn's spans and log lines belong to this request's trace.
    let context = crate::telemetry::current();
    let producer = std::thread::Builder::new()
        .name("turn-stream".into())
        .spawn(move || {
            let _slot = slot;
            context.enter(|| stream_turn(&app, &turn, &creation, sender));
        })
        .map_err(|e| Error::io("thread spawn", e))?;
    stream.attach(producer);
    Ok(Response::sse(stream))
}

/// `GET /v1/responses/{id}`: the caller's own stored response (404 for an unknown id, another
/// caller's, or one created with `store: false`).
pub fn retrieve(app: &Arc<App>, request: &Request, principal: &Principal) -> Result<Response> {
    if request.query_param("stream") == Some("true") {
        return Err(Error::bad_param(
            "stream",
            "a stored response cannot be streamed again; retrieve it without `stream`",
        ));
    }
    let id = request.param("id")?;
    let owner = turn_input::owner(principal)?.id().to_string();
    let (record, turn) = app
        .store
        .read(|conn| {
            let Some(record) = store::responses::get_owned(conn, id, &owner)?.filter(|r| r.stored)
            else {
                return Ok(None);
            };
            Ok(store::turns::get_by_id(conn, &record.turn_id)?.map(|turn| (record, turn)))
        })?
        .ok_or_else(|| Error::NotFound(format!("response with id '{id}' not found")))?;
    let creation = Creation::of(&record);
    let completed = record.status == "completed";
    let message = (completed || !turn.reply.is_empty()).then(|| {
        message_item(
            &creation.message_id(),
            &turn.reply,
            if completed { "completed" } else { "incomplete" },
        )
    });
    let error = record
        .error_code
        .as_ref()
        .map(|code| json!({"code": code, "message": record.error_message}));
    let mut object = creation.object(
        &record.status,
        message,
        Some(usage_json(
            turn.prompt_tokens,
            turn.completion_tokens,
            turn.cached_tokens,
        )),
        error,
        completed.then_some(turn.created_at / 1000),
    );
    let diff = stored_diff(app, &turn);
    turn_input::merge_extensions(
        &mut object,
        turn_input::stored_extensions(&turn, &record.workspace_id, &diff),
    );
    Ok(Response::json(200, &object))
}

/// `DELETE /v1/responses/{id}`: forgets the caller's stored response, so it can no longer be
/// retrieved or continued. The turn stays on record (it is the gateway's history of the
/// workspace), and so does the CLI session other responses of the chain may still continue.
pub fn delete(app: &Arc<App>, request: &Request, principal: &Principal) -> Result<Response> {
    let id = request.param("id")?;
    let owner = turn_input::owner(principal)?.id().to_string();
    let deleted = app.store.write(|tx| {
        let deleted = store::responses::delete_owned(tx, id, &owner)?;
        if deleted {
            crate::audit::record(
                tx,
                crate::audit::Record {
                    actor: &principal.actor(),
                    action: "response.deleted",
                    target_type: "response",
                    target_id: id,
                    before: None,
                    after: None,
                    request_id: Some(&request.request_id),
                },
            )?;
        }
        Ok(deleted)
    })?;
    if !deleted {
        return Err(Error::NotFound(format!(
            "response with id '{id}' not found"
        )));
    }
    Ok(Response::json(
        200,
        &json!({"id": id, "object": "response", "deleted": true}),
    ))
}

/// Silence longer than this gets a `: keep-alive` comment on streams.
const KEEPALIVE: Duration = Duration::from_secs(15);

#[derive(Deserialize)]
struct CreateRequest {
    model: Option<String>,
    input: Option<Value>,
    instructions: Option<Value>,
    provider: Option<String>,
    workspace_id: Option<String>,
    workspace_root: Option<String>,
    client_session_id: Option<String>,
    stream: Option<bool>,
    store: Option<bool>,
    text: Option<Value>,
    previous_response_id: Option<String>,
    metadata: Option<Value>,
    tools: Option<Value>,
    tool_choice: Option<Value>,
    conversation: Option<Value>,
    background: Option<Value>,
    prompt: Option<Value>,
}

/// Refuses, naming each, the request fields an agent turn cannot honour: client tools (the agent
/// runs its own tools in its workspace; client-defined tools are not passed through), a
/// `tool_choice` that forces a tool, server-side conversations, background runs and stored
/// prompt templates. `tool_choice` `auto` and `none` pass: with no client tools both mean "answer
/// with a message", which is what a turn does. Sampling fields (`temperature`, `top_p`,
/// `max_output_tokens`, `reasoning`, `truncation`, `parallel_tool_calls`, `user`, ...) are
/// accepted and have no effect.
fn refuse_unsupported(body: &CreateRequest) -> Result<()> {
    let given = |value: &Option<Value>| value.as_ref().is_some_and(|v| !v.is_null());
    let refuse = |field: &str, why: &str| -> Result<()> {
        Err(Error::bad_param(
            field,
            format!("`{field}` is not supported: {why}"),
        ))
    };
    if given(&body.tools)
        && body
            .tools
            .as_ref()
            .and_then(Value::as_array)
            .is_none_or(|a| !a.is_empty())
    {
        return refuse(
            "tools",
            "the agent uses its own tools (files, shell) in its workspace; client-defined tools \
             are not passed through",
        );
    }
    match &body.tool_choice {
        None | Some(Value::Null) => {}
        Some(Value::String(choice)) if choice == "auto" || choice == "none" => {}
        Some(_) => {
            return refuse(
                "tool_choice",
                "no client tools can be called; only `auto` and `none` are accepted",
            )
        }
    }
    if given(&body.conversation) {
        return refuse(
            "conversation",
            "continue a conversation with `previous_response_id` (or `client_session_id`)",
        );
    }
    if body.background.as_ref().and_then(Value::as_bool) == Some(true) {
        return refuse(
            "background",
            "turns run while the request is open; use `stream` for long turns",
        );
    }
    if given(&body.prompt) {
        return refuse("prompt", "stored prompt templates are not available here");
    }
    Ok(())
}

/// `input`: a string (one user message) or a list of message items, `{"role", "content"}` with
/// or without `"type": "message"`; content is a string or parts (`turn_input::content`).
fn parse_input(input: Option<&Value>, image_fetch_private: bool) -> Result<Vec<Message>> {
    let mut images = crate::images::Loader::new(image_fetch_private);
    let items = match input {
        Some(Value::String(text)) => return Ok(vec![Message::new("user", text)]),
        Some(Value::Array(items)) if !items.is_empty() => items,
        Some(Value::Array(_)) => {
            return Err(Error::bad_param(
                "input",
                "`input` must contain at least one item",
            ))
        }
        None | Some(Value::Null) => return Err(Error::bad_param("input", "`input` is required")),
        Some(_) => {
            return Err(Error::bad_param(
                "input",
                "`input` must be a string or a list of message items",
            ))
        }
    };
    let mut messages = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let param = format!("input[{i}]");
        match item.get("type").and_then(Value::as_str) {
            None | Some("message") => {}
            Some(other) => {
                return Err(Error::bad_param(
                    &format!("{param}.type"),
                    format!(
                        "input item type `{other}` is not supported; send message items (the \
                         agent's own tool calls stay inside its session)"
                    ),
                ))
            }
        }
        let role = item.get("role").and_then(Value::as_str).ok_or_else(|| {
            Error::bad_param(
                &format!("{param}.role"),
                "each message item needs a string `role`",
            )
        })?;
        if !matches!(role, "user" | "assistant" | "system" | "developer") {
            return Err(Error::bad_param(
                &format!("{param}.role"),
                format!("unknown role `{role}`; expected user, assistant, system or developer"),
            ));
        }
        let (text, loaded) = turn_input::content(
            item.get("content"),
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

/// `instructions`: a string, or nothing (empty counts as nothing).
fn parse_instructions(value: Option<&Value>) -> Result<Option<String>> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) if text.trim().is_empty() => Ok(None),
        Some(Value::String(text)) => Ok(Some(text.clone())),
        Some(_) => Err(Error::bad_param(
            "instructions",
            "`instructions` must be a string",
        )),
    }
}

/// `text.format` (the Responses form of `response_format`): `text`, `json_object`, or
/// `json_schema` with `name`, `schema` and `strict` beside `type`. Returns the engine's format
/// and the format to echo.
fn parse_text(text: Option<&Value>) -> Result<(OutputFormat, Value)> {
    let text = match text {
        None | Some(Value::Null) => return Ok((OutputFormat::Text, json!({"type": "text"}))),
        Some(text) if text.is_object() => text,
        Some(_) => return Err(Error::bad_param("text", "`text` must be an object")),
    };
    let Some(format) = text.get("format").filter(|f| !f.is_null()) else {
        return Ok((OutputFormat::Text, json!({"type": "text"})));
    };
    let output = match format.get("type").and_then(Value::as_str) {
        Some("text") => OutputFormat::Text,
        Some("json_object") => OutputFormat::JsonObject,
        Some("json_schema") => OutputFormat::JsonSchema {
            name: format
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or("response")
                .to_string(),
            schema: format
                .get("schema")
                .filter(|s| s.is_object())
                .cloned()
                .ok_or_else(|| {
                    Error::bad_param(
                        "text.format.schema",
                        "`schema` must be a JSON Schema object",
                    )
                })?,
        },
        Some(other) => {
            return Err(Error::bad_param(
                "text.format.type",
                format!("unknown text format `{other}`; expected text, json_object or json_schema"),
            ))
        }
        None => return Err(Error::bad_param("text.format.type", "`type` is required")),
    };
    Ok((output, format.clone()))
}

/// `metadata`: up to 16 string values under keys of at most 64 characters (values at most 512),
/// as OpenAI limits it; echoed back and stored with the response.
fn parse_metadata(value: Option<&Value>) -> Result<Option<Value>> {
    let map = match value {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Object(map)) => map,
        Some(_) => return Err(Error::bad_param("metadata", "`metadata` must be an object")),
    };
    if map.len() > 16 {
        return Err(Error::bad_param(
            "metadata",
            "`metadata` holds at most 16 keys",
        ));
    }
    for (key, value) in map {
        let fits =
            key.chars().count() <= 64 && value.as_str().is_some_and(|v| v.chars().count() <= 512);
        if !fits {
            return Err(Error::bad_param(
                "metadata",
                format!(
                    "metadata `{key}`: keys are at most 64 characters, values strings of at most 512"
                ),
            ));
        }
    }
    Ok(Some(Value::Object(map.clone())))
}

/// A response a new request continues, with the turn that produced it.
struct Previous {
    record: ResponseRecord,
    turn: store::turns::Turn,
}

/// The caller's stored response `id`, or the 404 OpenAI gives for a `previous_response_id` it
/// cannot find (also for another caller's response and for one created with `store: false`).
fn load_previous(app: &App, id: &str, owner: &str) -> Result<Previous> {
    let found = app.store.read(|conn| {
        let Some(record) = store::responses::get_owned(conn, id, owner)?.filter(|r| r.stored)
        else {
            return Ok(None);
        };
        Ok(store::turns::get_by_id(conn, &record.turn_id)?.map(|turn| Previous { record, turn }))
    })?;
    found.ok_or_else(|| Error::UnknownReference {
        param: "previous_response_id",
        code: "previous_response_not_found",
        message: format!("previous response with id '{id}' not found"),
    })
}

impl Previous {
    /// The conversation up to and including this response: its turn's messages without the
    /// instructions it was given (they applied to that request only), then its reply when it
    /// completed. This is exactly the transcript the engine stored for the session (apart from
    /// the instructions), so the next turn extends it and resumes the CLI session.
    fn history(&self) -> Result<Vec<Message>> {
        let stored: Vec<Value> = serde_json::from_str(&self.turn.request_messages)
            .map_err(|e| Error::Internal(format!("turn {}: stored messages: {e}", self.turn.id)))?;
        let mut messages: Vec<Message> = stored
            .iter()
            .map(|m| {
                Message::new(
                    m["role"].as_str().unwrap_or("user"),
                    m["content"].as_str().unwrap_or_default(),
                )
            })
            .collect();
        if let (Some(instructions), Some(first)) = (&self.record.instructions, messages.first()) {
            if first.role == "system" && first.text == *instructions {
                messages.remove(0);
            }
        }
        if self.record.status == "completed" {
            messages.push(Message::new("assistant", &self.turn.reply));
        }
        Ok(messages)
    }
}

/// The `workspace_id`/`workspace_root` a chained request repeats to land in the workspace of
/// `record` (a user's base workspace is reported as `.` and requested as nothing).
fn workspace_selectors(record: &ResponseRecord) -> (Option<String>, Option<String>) {
    match &record.workspace_root {
        Some(root) => (None, Some(root.clone())),
        None if record.workspace_id == "." => (None, None),
        None => (Some(record.workspace_id.clone()), None),
    }
}

/// What a response is, apart from its turn's outcome: rendered into every response object of
/// one request (the stream's and the stored one) and stored as its record.
struct Creation {
    id: String,
    created_at_ms: i64,
    owner: String,
    provider: String,
    model: String,
    workspace_id: String,
    workspace_root: Option<String>,
    session_label: Option<String>,
    previous_response_id: Option<String>,
    instructions: Option<String>,
    metadata: Option<Value>,
    text_format: Value,
    tool_choice: String,
    store: bool,
}

impl Creation {
    /// The creation a stored record describes.
    fn of(record: &ResponseRecord) -> Creation {
        let parse = |text: &str| serde_json::from_str::<Value>(text).ok();
        Creation {
            id: record.id.clone(),
            created_at_ms: record.created_at,
            owner: record.user_id.clone(),
            provider: record.provider.clone(),
            model: record.model.clone(),
            workspace_id: record.workspace_id.clone(),
            workspace_root: record.workspace_root.clone(),
            session_label: record.session_label.clone(),
            previous_response_id: record.previous_response_id.clone(),
            instructions: record.instructions.clone(),
            metadata: record.metadata.as_deref().and_then(parse),
            text_format: parse(&record.text_format).unwrap_or_else(|| json!({"type": "text"})),
            tool_choice: record.tool_choice.clone(),
            store: record.stored,
        }
    }

    /// The id of the response's one message item (derived, so a retrieved response repeats it).
    fn message_id(&self) -> String {
        format!("msg_{}", self.id.trim_start_matches("resp_"))
    }

    /// The response object. Sampling fields Codara ignores are reported as `null`; `tools` is
    /// always empty.
    fn object(
        &self,
        status: &str,
        message: Option<Value>,
        usage: Option<Value>,
        error: Option<Value>,
        completed_at: Option<i64>,
    ) -> Value {
        json!({
            "id": self.id,
            "object": "response",
            "created_at": self.created_at_ms / 1000,
            "completed_at": completed_at,
            "status": status,
            "error": error,
            "incomplete_details": null,
            "instructions": self.instructions,
            "max_output_tokens": null,
            "model": self.model,
            "output": message.into_iter().collect::<Vec<_>>(),
            "parallel_tool_calls": true,
            "previous_response_id": self.previous_response_id,
            "reasoning": null,
            "store": self.store,
            "temperature": null,
            "text": {"format": self.text_format},
            "tool_choice": self.tool_choice,
            "tools": [],
            "top_p": null,
            "truncation": "disabled",
            "usage": usage,
            "user": null,
            "metadata": self.metadata.clone().unwrap_or_else(|| json!({})),
        })
    }

    /// The object of a completed turn, with usage and the extension fields.
    fn completed(&self, outcome: &TurnOutcome) -> Value {
        let message = message_item(&self.message_id(), &outcome.reply, "completed");
        let mut object = self.object(
            "completed",
            Some(message),
            Some(outcome_usage(outcome)),
            None,
            Some(crate::clock::now_ms() / 1000),
        );
        turn_input::merge_extensions(
            &mut object,
            turn_input::extensions(outcome, &self.workspace_id),
        );
        object
    }

    /// The object of a turn that failed (`outcome` when it ran and was stored).
    fn failed(&self, error: &Error, outcome: Option<&TurnOutcome>) -> Value {
        let message = outcome
            .filter(|o| !o.reply.is_empty())
            .map(|o| message_item(&self.message_id(), &o.reply, "incomplete"));
        let mut object = self.object(
            "failed",
            message,
            outcome.map(outcome_usage),
            Some(error_json(error)),
            None,
        );
        if let Some(outcome) = outcome {
            turn_input::merge_extensions(
                &mut object,
                turn_input::extensions(outcome, &self.workspace_id),
            );
        }
        object
    }

    /// Stores the response record of a turn the engine stored. A failure is logged: the turn
    /// ran and its answer still goes out, it just cannot be retrieved or continued.
    fn record(&self, app: &App, outcome: &TurnOutcome) {
        let record = ResponseRecord {
            id: self.id.clone(),
            user_id: self.owner.clone(),
            turn_id: outcome.turn_id.clone(),
            session_id: outcome.session_id.clone(),
            session_label: self.session_label.clone(),
            previous_response_id: self.previous_response_id.clone(),
            provider: self.provider.clone(),
            model: self.model.clone(),
            workspace_id: self.workspace_id.clone(),
            workspace_root: self.workspace_root.clone(),
            instructions: self.instructions.clone(),
            metadata: self.metadata.as_ref().map(Value::to_string),
            text_format: self.text_format.to_string(),
            tool_choice: self.tool_choice.clone(),
            stored: self.store,
            status: if outcome.error.is_some() {
                "failed"
            } else {
                "completed"
            }
            .to_string(),
            error_code: outcome.error.as_ref().map(|e| e.code().to_string()),
            error_message: outcome.error.as_ref().map(Error::public_message),
            created_at: self.created_at_ms,
        };
        if let Err(error) = app.store.write(|tx| store::responses::insert(tx, &record)) {
            log::error!("storing response {}: {error}", self.id);
        }
    }
}

/// The Responses event stream of one turn, each event with the next `sequence_number`:
/// `response.created`, `response.in_progress`, then once text begins `response.output_item.added`
/// and `response.content_part.added`, a `response.output_text.delta` per piece of text, and at the
/// end `response.output_text.done`, `response.content_part.done`, `response.output_item.done`,
/// `response.completed` (usage and extension fields) — or, when the turn fails,
/// `response.failed` with the error. The response is recorded before its last event, so a client
/// that chains on `response.completed` finds it.
fn stream_turn(app: &App, turn: &TurnRequest, creation: &Creation, sender: SseSender) {
    let mut events = Events {
        sender,
        sequence: 0,
    };
    let started = creation.object("in_progress", None, None, None, None);
    events.emit("response.created", json!({"response": started}));
    events.emit("response.in_progress", json!({"response": started}));
    let item_id = creation.message_id();
    let mut opened = false;
    let result = turns::run(app, turn, &mut |text: &str| {
        if !opened {
            events.open_message(&item_id);
            opened = true;
        }
        events.emit(
            "response.output_text.delta",
            json!({"item_id": item_id, "output_index": 0, "content_index": 0, "delta": text,
                   "logprobs": []}),
        );
    });
    let outcome = match result {
        Ok(outcome) => outcome,
        Err(error) => {
            events.emit(
                "response.failed",
                json!({"response": creation.failed(&error, None)}),
            );
            return;
        }
    };
    creation.record(app, &outcome);
    if let Some(error) = &outcome.error {
        events.emit(
            "response.failed",
            json!({"response": creation.failed(error, Some(&outcome))}),
        );
        return;
    }
    if !opened {
        events.open_message(&item_id);
    }
    let part = output_text_part(&outcome.reply);
    events.emit(
        "response.output_text.done",
        json!({"item_id": item_id, "output_index": 0, "content_index": 0, "text": outcome.reply,
               "logprobs": []}),
    );
    events.emit(
        "response.content_part.done",
        json!({"item_id": item_id, "output_index": 0, "content_index": 0, "part": part}),
    );
    events.emit(
        "response.output_item.done",
        json!({"output_index": 0, "item": message_item(&item_id, &outcome.reply, "completed")}),
    );
    events.emit(
        "response.completed",
        json!({"response": creation.completed(&outcome)}),
    );
}

/// The sending side of a Responses stream: names each event and numbers it.
struct Events {
    sender: SseSender,
    sequence: u64,
}

impl Events {
    fn emit(&mut self, kind: &str, mut payload: Value) {
        payload["type"] = json!(kind);
        payload["sequence_number"] = json!(self.sequence);
        self.sequence += 1;
        self.sender.event(kind, &payload);
    }

    /// Announces the message item and its text part, before the first delta.
    fn open_message(&mut self, item_id: &str) {
        self.emit(
            "response.output_item.added",
            json!({"output_index": 0, "item": {"id": item_id, "type": "message",
                   "status": "in_progress", "role": "assistant", "content": []}}),
        );
        self.emit(
            "response.content_part.added",
            json!({"item_id": item_id, "output_index": 0, "content_index": 0,
                   "part": output_text_part("")}),
        );
    }
}

fn message_item(id: &str, text: &str, status: &str) -> Value {
    json!({"id": id, "type": "message", "status": status, "role": "assistant",
           "content": [output_text_part(text)]})
}

fn output_text_part(text: &str) -> Value {
    json!({"type": "output_text", "text": text, "annotations": [], "logprobs": []})
}

fn outcome_usage(outcome: &TurnOutcome) -> Value {
    let usage = outcome.usage;
    usage_json(
        usage.prompt_tokens as i64,
        usage.completion_tokens as i64,
        usage.cached_tokens as i64,
    )
}

/// Usage in the Responses shape (the CLIs report no reasoning tokens separately).
fn usage_json(input: i64, output: i64, cached: i64) -> Value {
    json!({
        "input_tokens": input,
        "input_tokens_details": {"cached_tokens": cached},
        "output_tokens": output,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": input + output,
    })
}

/// The `error` of a failed response object: Codara's code (as in the `/v1` error objects) and
/// the public message.
fn error_json(error: &Error) -> Value {
    json!({"code": error.code(), "message": error.public_message()})
}

/// The unified diff of a stored turn, recomputed from its snapshots (the `turns` row keeps the
/// trees, not the text); empty when the turn changed nothing or the snapshots are gone.
fn stored_diff(app: &App, turn: &store::turns::Turn) -> String {
    let (Some(before), Some(after)) = (&turn.before_tree, &turn.after_tree) else {
        return String::new();
    };
    if before == after || before.starts_with("manifest:") || after.starts_with("manifest:") {
        return String::new();
    }
    let snapshots = crate::workspace::Snapshots::of(
        &app.config.storage.data_dir,
        std::path::Path::new(&turn.workspace_path),
    );
    match snapshots.diff(
        &app.config.host,
        &crate::workspace::Snapshot::from_tree(before),
        &crate::workspace::Snapshot::from_tree(after),
    ) {
        Ok((_, diff)) => diff,
        Err(error) => {
            log::warn!("the diff of turn {} is unavailable: {error}", turn.id);
            String::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_forms() {
        let messages = parse_input(Some(&json!("hello")), false).unwrap();
        assert_eq!(messages, vec![Message::new("user", "hello")]);
        let messages = parse_input(Some(&json!([
            {"role": "developer", "content": "be brief"},
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "a"}]},
            {"type": "message", "role": "assistant",
             "content": [{"type": "output_text", "text": "b", "annotations": []}]},
        ])), false)
        .unwrap();
        let roles: Vec<(&str, &str)> = messages
            .iter()
            .map(|m| (m.role.as_str(), m.text.as_str()))
            .collect();
        assert_eq!(
            roles,
            [("developer", "be brief"), ("user", "a"), ("assistant", "b")]
        );
        for (input, param) in [
            (json!([]), "input"),
            (json!(7), "input"),
            (
                json!([{"type": "function_call_output", "call_id": "c", "output": "x"}]),
                "input[0].type",
            ),
            (json!([{"role": "tool", "content": "x"}]), "input[0].role"),
            (json!([{"content": "x"}]), "input[0].role"),
        ] {
            let error = parse_input(Some(&input), false).unwrap_err();
            assert_eq!(error.param(), Some(param), "{input}");
        }
        assert_eq!(parse_input(None, false).unwrap_err().param(), Some("input"));
    }

    #[test]
    fn text_formats() {
        assert_eq!(parse_text(None).unwrap().0, OutputFormat::Text);
        assert_eq!(
            parse_text(Some(&json!({"format": {"type": "json_object"}})))
                .unwrap()
                .0,
            OutputFormat::JsonObject
        );
        let schema = json!({"type": "object", "properties": {"n": {"type": "integer"}}});
        let format =
            json!({"type": "json_schema", "name": "count", "schema": schema, "strict": true});
        let (output, echoed) = parse_text(Some(&json!({"format": format}))).unwrap();
        assert_eq!(
            output,
            OutputFormat::JsonSchema {
                name: "count".to_string(),
                schema
            }
        );
        assert_eq!(echoed, format);
        for (text, param) in [
            (json!({"format": {"type": "xml"}}), "text.format.type"),
            (
                json!({"format": {"type": "json_schema", "name": "x"}}),
                "text.format.schema",
            ),
            (json!("json"), "text"),
        ] {
            assert_eq!(
                parse_text(Some(&text)).unwrap_err().param(),
                Some(param),
                "{text}"
            );
        }
    }

    #[test]
    fn metadata_limits() {
        assert_eq!(parse_metadata(None).unwrap(), None);
        assert!(parse_metadata(Some(&json!({"k": "v"}))).unwrap().is_some());
        assert!(parse_metadata(Some(&json!({"k": 1}))).is_err());
        assert!(parse_metadata(Some(&json!({"k": "v".repeat(513)}))).is_err());
        let many: serde_json::Map<String, Value> =
            (0..17).map(|i| (format!("k{i}"), json!("v"))).collect();
        assert!(parse_metadata(Some(&Value::Object(many))).is_err());
    }

    fn previous(instructions: Option<&str>, status: &str) -> Previous {
        let mut messages = Vec::new();
        if let Some(instructions) = instructions {
            messages.push(json!({"role": "system", "content": instructions}));
        }
        messages.push(json!({"role": "user", "content": "q1"}));
        Previous {
            record: ResponseRecord {
                instructions: instructions.map(str::to_string),
                status: status.to_string(),
                ..ResponseRecord::default()
            },
            turn: store::turns::Turn {
                request_messages: Value::Array(messages).to_string(),
                reply: "a1".to_string(),
                ..store::turns::Turn::default()
            },
        }
    }

    #[test]
    fn history_drops_earlier_instructions_and_keeps_replies_of_completed_turns() {
        let texts = |p: &Previous| -> Vec<String> {
            p.history()
                .unwrap()
                .iter()
                .map(|m| format!("{}:{}", m.role, m.text))
                .collect()
        };
        assert_eq!(
            texts(&previous(Some("be brief"), "completed")),
            ["user:q1", "assistant:a1"]
        );
        assert_eq!(
            texts(&previous(None, "completed")),
            ["user:q1", "assistant:a1"]
        );
        assert_eq!(texts(&previous(None, "failed")), ["user:q1"]);
    }

    #[test]
    fn refusals_name_the_field() {
        let body = |extra: Value| -> CreateRequest {
            let mut value = json!({"input": "x"});
            for (k, v) in extra.as_object().unwrap() {
                value[k] = v.clone();
            }
            serde_json::from_value(value).unwrap()
        };
        for (extra, param) in [
            (
                json!({"tools": [{"type": "function", "name": "f"}]}),
                "tools",
            ),
            (json!({"tool_choice": "required"}), "tool_choice"),
            (
                json!({"tool_choice": {"type": "function", "name": "f"}}),
                "tool_choice",
            ),
            (json!({"conversation": "conv_1"}), "conversation"),
            (json!({"background": true}), "background"),
            (json!({"prompt": {"id": "pmpt_1"}}), "prompt"),
        ] {
            let error = refuse_unsupported(&body(extra.clone())).unwrap_err();
            assert_eq!(error.param(), Some(param), "{extra}");
        }
        for extra in [
            json!({"tools": []}),
            json!({"tool_choice": "auto"}),
            json!({"tool_choice": "none"}),
            json!({"background": false}),
        ] {
            assert!(refuse_unsupported(&body(extra.clone())).is_ok(), "{extra}");
        }
    }
}
