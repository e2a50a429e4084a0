//! The Agent Client Protocol (v1) as gemini `--acp` (0.61.0) and `opencode acp` (1.18.33)
//! speak it: the handshake, sessions (`session/new`, `session/load` for gemini,
//! `session/resume` for opencode), `session/prompt` and `session/cancel`, and the pure fold of
//! a turn's messages into [`TurnEvent`]s.
//!
//! | message | events |
//! |---|---|
//! | `session/update` `agent_message_chunk` (text) | `Text` |
//! | `tool_call` / `tool_call_update` reaching `completed` or `failed` | by `kind`: `edit`/`delete`/`move` → `FileChange` (failed: `Warning`), `execute` → `Command`, else `Tool` |
//! | reply to `session/prompt` | `Usage` (gemini `_meta.quota`, opencode `usage`), then `Completed`; `cancelled` reports nothing; an error → `Error` |
//! | `session/request_permission` | answered: the first "allow" option |
//!
//! gemini 0.61's `session/load` in the same UTC minute as the session's chat file was written
//! erases the session (upstream #28693): [`load_is_safe`] says when a load would do that.
//! Must not touch processes or the store.

use super::peer::{Incoming, Peer, RpcError};
use super::{Open, Opened, Step, TurnInput};
use crate::providers::{Action, Provider, TurnEvent, Usage};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

/// How long a handshake or a session request may take (opencode's first session in a
/// directory boots an instance: seconds).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(90);

/// `initialize`: no file system or terminal capability is offered, so the agent uses its own
/// tools inside its confinement.
pub fn handshake(peer: &Peer) -> Result<Value, RpcError> {
    peer.request(
        "initialize",
        json!({
            "protocolVersion": 1,
            "clientCapabilities": {"fs": {"readTextFile": false, "writeTextFile": false}, "terminal": false},
            "clientInfo": {"name": "codara", "version": env!("CARGO_PKG_VERSION")},
        }),
        REQUEST_TIMEOUT,
    )
}

/// A new session, or an existing one brought into this process: opencode `session/resume`
/// (no replay), gemini `session/load` (the caller has checked [`load_is_safe`]). Then the
/// model, when the session is not on it already.
pub fn open(peer: &Peer, provider: Provider, open: &Open<'_>) -> Result<Opened, RpcError> {
    let base = json!({"cwd": open.cwd, "mcpServers": []});
    let (opened, current) = match open.resume {
        None => {
            let result = peer.request("session/new", base, REQUEST_TIMEOUT)?;
            let id = result
                .get("sessionId")
                .and_then(Value::as_str)
                .ok_or_else(|| super::peer::local_error("session/new answered without an id"))?;
            (Opened::Fresh(id.to_string()), current_model(&result))
        }
        Some(id) => {
            let method = match provider {
                Provider::Opencode => "session/resume",
                _ => "session/load",
            };
            let mut params = base;
            params["sessionId"] = json!(id);
            match peer.request(method, params, REQUEST_TIMEOUT) {
                Ok(result) => (Opened::Resumed(id.to_string()), current_model(&result)),
                Err(error) if missing(&error) => return Ok(Opened::Missing(error.message)),
                Err(error) => return Err(error),
            }
        }
    };
    if let Opened::Fresh(id) | Opened::Resumed(id) = &opened {
        if current.as_deref() != Some(open.model) {
            set_model(peer, provider, id, open.model);
        }
    }
    Ok(opened)
}

/// The model a session reports it is on (gemini `models.currentModelId`, opencode's `model`
/// config option).
fn current_model(result: &Value) -> Option<String> {
    let gemini = result
        .pointer("/models/currentModelId")
        .and_then(Value::as_str);
    let opencode = result
        .get("configOptions")
        .and_then(Value::as_array)
        .and_then(|options| options.iter().find(|o| o["id"] == "model"))
        .and_then(|o| o.get("currentValue"))
        .and_then(Value::as_str);
    gemini.or(opencode).map(str::to_string)
}

/// Switches a session's model (gemini `session/set_model`, opencode's `model` option; opencode
/// models are `provider/model`, as `opencode run -m` wants them). Best effort: a refusal is
/// logged and the session keeps its model.
pub fn set_model(peer: &Peer, provider: Provider, session: &str, model: &str) {
    let request = match provider {
        _ if model.is_empty() => None,
        Provider::Gemini => Some((
            "session/set_model",
            json!({"sessionId": session, "modelId": model}),
        )),
        Provider::Opencode if model.contains('/') => Some((
            "session/set_config_option",
            json!({"sessionId": session, "configId": "model", "value": model}),
        )),
        _ => None,
    };
    if let Some((method, params)) = request {
        if let Err(error) = peer.request(method, params, REQUEST_TIMEOUT) {
            log::warn!("{provider}: {method} to {model} failed: {error}");
        }
    }
}

/// Whether a load/resume error says the session does not exist.
fn missing(error: &RpcError) -> bool {
    let text = error.message.to_lowercase();
    [
        "not found",
        "no previous session",
        "no session",
        "does not exist",
        "unknown session",
    ]
    .iter()
    .any(|needle| text.contains(needle))
}

/// Sends `session/prompt`: the text, then each image inline (ACP `image` blocks); the reply,
/// which ends the turn, goes to `to`. Returns the request id.
pub fn start_turn(
    peer: &Peer,
    session: &str,
    turn: &TurnInput<'_>,
    to: std::sync::mpsc::Sender<Incoming>,
) -> Result<u64, RpcError> {
    let mut prompt = vec![json!({"type": "text", "text": turn.prompt})];
    for path in turn.images {
        let bytes = std::fs::read(path)
            .map_err(|e| super::peer::local_error(&format!("reading {}: {e}", path.display())))?;
        prompt.push(json!({
            "type": "image",
            "mimeType": crate::images::sniff(&bytes).unwrap_or("image/png"),
            "data": crate::crypto::base64_encode(&bytes, crate::crypto::Base64::Standard),
        }));
    }
    peer.request_to(
        "session/prompt",
        json!({"sessionId": session, "prompt": prompt}),
        to,
    )
}

/// Asks the agent to stop the session's running prompt (it then answers `cancelled`).
pub fn cancel(peer: &Peer, session: &str) {
    let _ = peer.notify("session/cancel", json!({"sessionId": session}));
}

/// Lets opencode drop a session no later turn will use (gemini has no `session/close`).
pub fn release(peer: &Peer, provider: Provider, session: &str) {
    if provider == Provider::Opencode {
        let _ = peer.request_to(
            "session/close",
            json!({"sessionId": session}),
            std::sync::mpsc::channel().0,
        );
    }
}

/// The answer to an agent request: a permission gets its first "allow" option (approvals are
/// off by policy; the confinement is Landlock's); nothing else is offered.
pub fn answer(method: &str, params: &Value) -> Result<Value, RpcError> {
    if method != "session/request_permission" {
        return Err(RpcError {
            code: -32601,
            message: format!("codara does not offer {method}"),
        });
    }
    let options = params
        .get("options")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    fn kind(option: &Value) -> &str {
        option
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or_default()
    }
    let chosen = options
        .iter()
        .find(|o| kind(o) == "allow_once")
        .or_else(|| options.iter().find(|o| kind(o).starts_with("allow")));
    Ok(match chosen.and_then(|o| o.get("optionId")) {
        Some(id) => json!({"outcome": {"outcome": "selected", "optionId": id}}),
        None => json!({"outcome": {"outcome": "cancelled"}}),
    })
}

/// Whether gemini may `session/load` `session_id` now: not when one of its chat files
/// (`<home>/.gemini/tmp/<project>/chats/session-<YYYY-MM-DDTHH-MM>-<id8>.jsonl`) carries the
/// current UTC minute, which the load would overwrite with an empty session.
pub fn load_is_safe(home: &Path, session_id: &str, now_ms: i64) -> bool {
    let id8: String = session_id.chars().take(8).collect();
    let minute = crate::clock::rfc3339(now_ms);
    // `2026-11-30T19:13:…` → `2026-11-30T19-13`.
    let stamp = minute.get(..16).unwrap_or_default().replace(':', "-");
    let name = format!("session-{stamp}-{id8}.jsonl");
    let Ok(projects) = std::fs::read_dir(home.join(".gemini").join("tmp")) else {
        return true;
    };
    !projects
        .flatten()
        .any(|project| project.path().join("chats").join(&name).exists())
}

/// A tool call as its updates describe it.
#[derive(Debug, Default, Clone)]
struct Tool {
    name: String,
    kind: String,
    title: String,
    paths: Vec<String>,
    command: Option<String>,
    exit_code: Option<i32>,
    reported: bool,
}

/// The state of one running prompt, folded from its messages.
#[derive(Debug, Default)]
pub struct Turn {
    /// The id of our `session/prompt` request.
    pub prompt_id: u64,
    tools: HashMap<String, Tool>,
}

impl Turn {
    /// A turn started by request `prompt_id`.
    pub fn new(prompt_id: u64) -> Turn {
        Turn {
            prompt_id,
            ..Turn::default()
        }
    }

    /// Folds one message of the turn (pure).
    pub fn fold(&mut self, incoming: &Incoming) -> Step {
        let mut step = Step::default();
        match incoming {
            Incoming::Reply { id, outcome } if *id == self.prompt_id => {
                step.done = true;
                match outcome {
                    Ok(result) => step.events.extend(ended(result)),
                    Err(error) => step.events.push(TurnEvent::Error(error.message.clone())),
                }
            }
            Incoming::Reply { .. } => {}
            Incoming::Request { method, params, .. } => step.answer = Some(answer(method, params)),
            Incoming::Notification { method, params } if method == "session/update" => {
                if let Some(update) = params.get("update") {
                    step.events.extend(self.update(update));
                }
            }
            Incoming::Notification { .. } => {}
        }
        step
    }

    fn update(&mut self, update: &Value) -> Vec<TurnEvent> {
        let text = |key: &str| update.get(key).and_then(Value::as_str);
        match text("sessionUpdate").unwrap_or_default() {
            "agent_message_chunk" => {
                match update.pointer("/content/text").and_then(Value::as_str) {
                    Some(t) if !t.is_empty() => vec![TurnEvent::Text(t.to_string())],
                    _ => Vec::new(),
                }
            }
            "tool_call" | "tool_call_update" => {
                let Some(id) = text("toolCallId") else {
                    return Vec::new();
                };
                let tool = self.tools.entry(id.to_string()).or_default();
                absorb(tool, id, update);
                match text("status") {
                    Some(status @ ("completed" | "failed")) if !tool.reported => {
                        tool.reported = true;
                        report(tool, status == "completed")
                    }
                    _ => Vec::new(),
                }
            }
            _ => Vec::new(),
        }
    }
}

/// Merges one `tool_call`/`tool_call_update` into what is known of the call.
fn absorb(tool: &mut Tool, id: &str, update: &Value) {
    let text = |pointer: &str| update.pointer(pointer).and_then(Value::as_str);
    if tool.name.is_empty() {
        // gemini ids are `<tool>__<tool>_<n>`; opencode's first title is the tool's name.
        tool.name = match id.split_once("__") {
            Some((name, _)) => name.to_string(),
            None => text("/title").unwrap_or("tool").to_string(),
        };
    }
    if let Some(kind) = text("/kind") {
        tool.kind = kind.to_string();
    }
    if let Some(title) = text("/title") {
        tool.title = title.to_string();
    }
    if let Some(command) = text("/rawInput/command") {
        tool.command = Some(command.to_string());
    }
    if let Some(exit) = update
        .pointer("/rawOutput/metadata/exit")
        .and_then(Value::as_i64)
    {
        tool.exit_code = i32::try_from(exit).ok();
    }
    // The most precise path wins: a diff's, the tool's own absolute path, its input, a location.
    let diffs: Vec<String> = update
        .get("content")
        .and_then(Value::as_array)
        .map(|c| {
            c.iter()
                .filter(|c| c["type"] == "diff")
                .filter_map(|c| c.get("path").and_then(Value::as_str))
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    let single = text("/rawOutput/metadata/filepath")
        .or(text("/rawInput/filePath"))
        .or(text("/locations/0/path"));
    if !diffs.is_empty() {
        tool.paths = diffs;
    } else if let (Some(path), true) = (
        single,
        tool.paths.is_empty() || path_is_better(&tool.paths, single),
    ) {
        tool.paths = vec![path.to_string()];
    }
    if let Some(kind) = update
        .pointer("/content/0/_meta/kind")
        .and_then(Value::as_str)
    {
        tool.kind = match kind {
            "add" | "update" | "delete" => format!("edit:{kind}"),
            _ => tool.kind.clone(),
        };
    }
}

/// An absolute path replaces a relative one for the same call.
fn path_is_better(known: &[String], candidate: Option<&str>) -> bool {
    candidate.is_some_and(|c| c.starts_with('/')) && known.iter().all(|k| !k.starts_with('/'))
}

/// The action of a finished tool call.
fn report(tool: &Tool, ok: bool) -> Vec<TurnEvent> {
    let (kind, change) = match tool.kind.split_once(':') {
        Some((kind, change)) => (kind, change),
        None => (tool.kind.as_str(), "write"),
    };
    match kind {
        "edit" | "delete" | "move" if !tool.paths.is_empty() => {
            if !ok {
                return vec![TurnEvent::Warning(format!(
                    "{} could not change {}",
                    tool.name,
                    tool.paths.join(", ")
                ))];
            }
            let change = if kind == "delete" { "delete" } else { change };
            tool.paths
                .iter()
                .map(|path| {
                    TurnEvent::Action(Action::FileChange {
                        path: path.clone(),
                        kind: change.to_string(),
                    })
                })
                .collect()
        }
        "execute" => vec![TurnEvent::Action(Action::Command {
            command: tool.command.clone().unwrap_or_else(|| tool.title.clone()),
            exit_code: tool.exit_code,
            ok: ok && tool.exit_code.is_none_or(|c| c == 0),
        })],
        _ => vec![TurnEvent::Action(Action::Tool {
            name: tool.name.clone(),
            ok,
        })],
    }
}

/// The events of a `session/prompt` result: usage, then the end (or nothing when cancelled).
fn ended(result: &Value) -> Vec<TurnEvent> {
    let count = |pointers: &[&str]| {
        pointers
            .iter()
            .find_map(|p| result.pointer(p).and_then(Value::as_u64))
            .unwrap_or(0)
    };
    let mut events = vec![TurnEvent::Usage(Usage {
        prompt_tokens: count(&[
            "/usage/inputTokens",
            "/_meta/quota/token_count/input_tokens",
        ]),
        completion_tokens: count(&[
            "/usage/outputTokens",
            "/_meta/quota/token_count/output_tokens",
        ]),
        cached_tokens: count(&["/usage/cachedReadTokens"]),
    })];
    match result.get("stopReason").and_then(Value::as_str) {
        Some("cancelled") => return Vec::new(),
        Some("max_tokens") => events.push(TurnEvent::Warning(
            "the reply was cut at the model's token limit".to_string(),
        )),
        Some("max_turn_requests") => events.push(TurnEvent::Warning(
            "the agent stopped at its limit of model requests for one turn".to_string(),
        )),
        _ => {}
    }
    events.push(TurnEvent::Completed);
    events
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replay(sample: &str, prompt_ids: &[u64]) -> Vec<Vec<TurnEvent>> {
        let mut turns = Vec::new();
        let mut ids = prompt_ids.iter();
        let mut turn = Turn::new(*ids.next().unwrap());
        let mut events = Vec::new();
        for line in sample.lines() {
            let m: Value = serde_json::from_str(line).unwrap();
            let incoming = match m.get("method").and_then(Value::as_str) {
                Some(method) => Incoming::Notification {
                    method: method.into(),
                    params: m["params"].clone(),
                },
                None => Incoming::Reply {
                    id: m["id"].as_u64().unwrap(),
                    outcome: Ok(m["result"].clone()),
                },
            };
            let step = turn.fold(&incoming);
            events.extend(step.events);
            if step.done {
                turns.push(std::mem::take(&mut events));
                if let Some(id) = ids.next() {
                    turn = Turn::new(*id);
                }
            }
        }
        turns
    }

    fn done(text: &str, usage: (u64, u64)) -> Vec<TurnEvent> {
        let mut events: Vec<TurnEvent> = ["MOCK_DONE ", "after 1 to", "ol call(s)"]
            .iter()
            .map(|t| TurnEvent::Text(t.to_string()))
            .collect();
        assert_eq!(text, "MOCK_DONE after 1 tool call(s)");
        events.push(TurnEvent::Usage(Usage {
            prompt_tokens: usage.0,
            completion_tokens: usage.1,
            cached_tokens: 0,
        }));
        events.push(TurnEvent::Completed);
        events
    }

    #[test]
    fn gemini_shell_and_write_turns() {
        let turns = replay(
            include_str!("../../tests/fixtures/cli-samples/warm/gemini-acp-tools.jsonl"),
            &[3, 4],
        );
        let mut shell = vec![TurnEvent::Action(Action::Command {
            command: "echo hi > acp.txt".into(),
            exit_code: None,
            ok: true,
        })];
        shell.extend(done("MOCK_DONE after 1 tool call(s)", (24527, 17)));
        assert_eq!(turns[0], shell);
        let mut write = vec![TurnEvent::Action(Action::FileChange {
            path: "/w/ws/w.txt".into(),
            kind: "add".into(),
        })];
        write.extend(done("MOCK_DONE after 1 tool call(s)", (24802, 17)));
        assert_eq!(turns[1], write);
    }

    #[test]
    fn opencode_shell_and_write_turns() {
        let turns = replay(
            include_str!("../../tests/fixtures/cli-samples/warm/opencode-acp-tools.jsonl"),
            &[3, 4],
        );
        let mut shell = vec![TurnEvent::Action(Action::Command {
            command: "echo hi > acp.txt".into(),
            exit_code: Some(0),
            ok: true,
        })];
        shell.extend(done("MOCK_DONE after 1 tool call(s)", (7748, 7)));
        assert_eq!(turns[0], shell);
        let mut write = vec![TurnEvent::Action(Action::FileChange {
            path: "/w/ws/w.txt".into(),
            kind: "write".into(),
        })];
        write.extend(done("MOCK_DONE after 1 tool call(s)", (7851, 7)));
        assert_eq!(turns[1], write);
    }

    #[test]
    fn errors_cancels_and_permissions() {
        let mut turn = Turn::new(9);
        let step = turn.fold(&Incoming::Reply {
            id: 9,
            outcome: Err(RpcError {
                code: 429,
                message: "Rate limit exceeded".into(),
            }),
        });
        assert!(step.done);
        assert_eq!(
            step.events,
            [TurnEvent::Error("Rate limit exceeded".into())]
        );
        let mut turn = Turn::new(2);
        let step = turn.fold(&Incoming::Reply {
            id: 2,
            outcome: Ok(json!({"stopReason": "cancelled"})),
        });
        assert!(step.done && step.events.is_empty());
        let options = json!({"options": [
            {"optionId": "proceed_always", "kind": "allow_always"},
            {"optionId": "proceed_once", "kind": "allow_once"},
            {"optionId": "cancel", "kind": "reject_once"}]});
        assert_eq!(
            answer("session/request_permission", &options).unwrap(),
            json!({"outcome": {"outcome": "selected", "optionId": "proceed_once"}})
        );
        assert_eq!(
            answer("fs/read_text_file", &json!({})).unwrap_err().code,
            -32601
        );
    }

    #[test]
    fn a_load_in_the_minute_of_a_chat_file_is_unsafe() {
        let home = std::env::temp_dir().join(crate::crypto::random_id("codara-acp-"));
        let chats = home.join(".gemini/tmp/ws/chats");
        std::fs::create_dir_all(&chats).unwrap();
        // 2026-11-30T19:13:30Z
        let now = 1_796_066_010_000;
        assert!(load_is_safe(&home, "b8ada36e-6628", now));
        std::fs::write(chats.join("session-2026-11-30T19-12-b8ada36e.jsonl"), "{}").unwrap();
        assert!(load_is_safe(&home, "b8ada36e-6628", now));
        std::fs::write(chats.join("session-2026-11-30T19-13-b8ada36e.jsonl"), "{}").unwrap();
        assert!(!load_is_safe(&home, "b8ada36e-6628", now));
        assert!(load_is_safe(&home, "b8ada36e-6628", now + 60_000));
        std::fs::remove_dir_all(&home).unwrap();
    }
}
