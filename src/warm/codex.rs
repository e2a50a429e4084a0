//! The codex `app-server` protocol (pinned 0.169.0; `codex app-server generate-json-schema`
//! prints it): the handshake, threads (`thread/start|resume`), turns (`turn/start`,
//! `turn/interrupt`) and the pure fold of its notifications into [`TurnEvent`]s.
//!
//! | message | events |
//! |---|---|
//! | reply to `turn/start` | the turn id; an error fails the turn |
//! | `item/agentMessage/delta` | `Text(delta)` |
//! | `item/completed` `agentMessage` | `Text` of whatever the deltas did not carry |
//! | `item/completed` `fileChange` (completed) | one `FileChange` per change; failed: `Warning` |
//! | `item/completed` `commandExecution` (completed/failed/declined) | `Command` |
//! | `item/completed` `mcpToolCall`, `dynamicToolCall`, `collabAgentToolCall`, `webSearch` | `Tool` |
//! | `thread/tokenUsage/updated` | `Usage` of `last` (one per model response) |
//! | `error` | `Warning` (`turn/completed` carries a fatal one) |
//! | `turn/completed` | `Completed`, or `Error(turn.error.message)` when failed |
//!
//! Must not touch processes or the store: [`super::Agent`] runs the requests built here.

use super::peer::{Incoming, Peer, RpcError};
use super::{Open, Opened, Step, TurnInput};
use crate::providers::{codex, Action, TurnEvent, Usage};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::Duration;

/// How long a handshake or a thread request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// `initialize` + `initialized`. The client name becomes codex's upstream `originator`.
pub fn handshake(peer: &Peer) -> Result<(), RpcError> {
    peer.request(
        "initialize",
        json!({
            "clientInfo": {"name": "codara", "title": "Codara", "version": env!("CARGO_PKG_VERSION")},
            "capabilities": {"experimentalApi": false, "requestAttestation": false},
        }),
        REQUEST_TIMEOUT,
    )?;
    peer.notify("initialized", json!({}))
}

/// A new thread (`thread/start`) or an existing one loaded into this process (`thread/resume`).
/// Approvals are off (no human can answer); `sandbox` is codex's own (`danger-full-access`
/// under Landlock, whose allow-list is the stricter).
pub fn open(peer: &Peer, open: &Open<'_>) -> Result<Opened, RpcError> {
    let mut params = json!({
        "cwd": open.cwd,
        "approvalPolicy": "never",
        "sandbox": open.sandbox,
    });
    if !open.model.is_empty() {
        params["model"] = json!(open.model);
    }
    match open.resume {
        None => {
            let result = peer.request("thread/start", params, REQUEST_TIMEOUT)?;
            thread_id(&result).map(Opened::Fresh)
        }
        Some(id) => {
            params["threadId"] = json!(id);
            match peer.request("thread/resume", params, REQUEST_TIMEOUT) {
                Ok(result) => thread_id(&result).map(Opened::Resumed),
                Err(error) if missing(&error) => Ok(Opened::Missing(error.message)),
                Err(error) => Err(error),
            }
        }
    }
}

fn thread_id(result: &Value) -> Result<String, RpcError> {
    result
        .pointer("/thread/id")
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| super::peer::local_error("codex answered without a thread id"))
}

/// Whether a `thread/resume` error says the thread does not exist (no rollout in this home).
fn missing(error: &RpcError) -> bool {
    let text = error.message.to_lowercase();
    [
        "not found",
        "no rollout",
        "no such",
        "does not exist",
        "unknown thread",
    ]
    .iter()
    .any(|needle| text.contains(needle))
}

/// Sends `turn/start`; its reply and the turn's messages go to `to`. Returns the request id.
pub fn start_turn(
    peer: &Peer,
    thread: &str,
    turn: &TurnInput<'_>,
    to: std::sync::mpsc::Sender<Incoming>,
) -> Result<u64, RpcError> {
    let mut input = vec![json!({"type": "text", "text": turn.prompt, "text_elements": []})];
    input.extend(
        turn.images
            .iter()
            .map(|path| json!({"type": "localImage", "path": path})),
    );
    let mut params = json!({"threadId": thread, "input": input});
    if !turn.model.is_empty() {
        params["model"] = json!(turn.model);
    }
    if let Some(schema) = turn.output_schema {
        params["outputSchema"] = schema.clone();
    }
    peer.request_to("turn/start", params, to)
}

/// Asks codex to stop the running turn (it answers with `turn/completed` `interrupted`).
pub fn interrupt(peer: &Peer, thread: &str, turn: &Turn) {
    if let Some(turn_id) = &turn.turn_id {
        let _ = peer.request_to(
            "turn/interrupt",
            json!({"threadId": thread, "turnId": turn_id}),
            std::sync::mpsc::channel().0,
        );
    }
}

/// Lets codex unload a thread no later turn will use (a stateless turn's).
pub fn release(peer: &Peer, thread: &str) {
    let _ = peer.request_to(
        "thread/unsubscribe",
        json!({"threadId": thread}),
        std::sync::mpsc::channel().0,
    );
}

/// The answer to a server request: approvals are granted (approvals are off by policy, the
/// confinement is Landlock's), questions for a human are declined.
pub fn answer(method: &str, params: &Value) -> Result<Value, RpcError> {
    match method {
        "item/commandExecution/requestApproval" | "item/fileChange/requestApproval" => {
            Ok(json!({"decision": "accept"}))
        }
        "applyPatchApproval" | "execCommandApproval" => Ok(json!({"decision": "approved"})),
        "item/permissions/requestApproval" => Ok(json!({
            "permissions": params.get("permissions").cloned().unwrap_or(json!({})),
            "scope": "turn",
        })),
        "mcpServer/elicitation/request" => Ok(json!({"action": "decline"})),
        _ => Err(RpcError {
            code: -32601,
            message: format!("codara cannot answer {method}: no human is attached"),
        }),
    }
}

/// The state of one running turn, folded from its messages.
#[derive(Debug, Default)]
pub struct Turn {
    /// The id of our `turn/start` request.
    pub start_id: u64,
    /// codex's turn id, once known (for `turn/interrupt`).
    pub turn_id: Option<String>,
    /// Text streamed so far per agent message item.
    streamed: HashMap<String, String>,
}

impl Turn {
    /// A turn started by request `start_id`.
    pub fn new(start_id: u64) -> Turn {
        Turn {
            start_id,
            ..Turn::default()
        }
    }

    /// Folds one message of the turn (pure).
    pub fn fold(&mut self, incoming: &Incoming) -> Step {
        let mut step = Step::default();
        match incoming {
            Incoming::Reply { id, outcome } if *id == self.start_id => match outcome {
                Ok(result) => {
                    if let Some(id) = result.pointer("/turn/id").and_then(Value::as_str) {
                        self.turn_id = Some(id.to_string());
                    }
                }
                Err(error) => {
                    step.events.push(TurnEvent::Error(error.message.clone()));
                    step.done = true;
                }
            },
            Incoming::Reply { .. } => {}
            Incoming::Request { method, params, .. } => step.answer = Some(answer(method, params)),
            Incoming::Notification { method, params } => {
                self.notification(method, params, &mut step)
            }
        }
        step
    }

    fn notification(&mut self, method: &str, params: &Value, step: &mut Step) {
        let text = |pointer: &str| params.pointer(pointer).and_then(Value::as_str);
        match method {
            "turn/started" => {
                if let Some(id) = text("/turn/id") {
                    self.turn_id = Some(id.to_string());
                }
            }
            "item/agentMessage/delta" => {
                if let Some(delta) = text("/delta").filter(|d| !d.is_empty()) {
                    let item = text("/itemId").unwrap_or_default().to_string();
                    self.streamed.entry(item).or_default().push_str(delta);
                    step.events.push(TurnEvent::Text(delta.to_string()));
                }
            }
            "item/completed" => {
                if let Some(item) = params.get("item") {
                    step.events.extend(self.completed_item(item));
                }
            }
            "thread/tokenUsage/updated" => {
                let count = |key: &str| {
                    params
                        .pointer(&format!("/tokenUsage/last/{key}"))
                        .and_then(Value::as_u64)
                        .unwrap_or(0)
                };
                step.events.push(TurnEvent::Usage(Usage {
                    prompt_tokens: count("inputTokens"),
                    completion_tokens: count("outputTokens"),
                    cached_tokens: count("cachedInputTokens"),
                }));
            }
            "error" => step.events.push(TurnEvent::Warning(
                text("/error/message")
                    .unwrap_or("codex reported an error")
                    .to_string(),
            )),
            "turn/completed" => {
                step.done = true;
                match text("/turn/status").unwrap_or_default() {
                    "completed" => step.events.push(TurnEvent::Completed),
                    "failed" => step.events.push(TurnEvent::Error(
                        text("/turn/error/message")
                            .unwrap_or("the codex turn failed")
                            .to_string(),
                    )),
                    // Interrupted: by us, on a stall or an overrun; the caller knows which.
                    _ => {}
                }
            }
            _ => {}
        }
    }

    fn completed_item(&mut self, item: &Value) -> Vec<TurnEvent> {
        let text = |key: &str| item.get(key).and_then(Value::as_str);
        let status = text("status").unwrap_or_default();
        let tool = |name: String, ok: bool| vec![TurnEvent::Action(Action::Tool { name, ok })];
        match text("type").unwrap_or_default() {
            "agentMessage" => {
                let whole = text("text").unwrap_or_default();
                let id = text("id").unwrap_or_default();
                let streamed = self.streamed.remove(id).unwrap_or_default();
                match whole.strip_prefix(streamed.as_str()) {
                    Some(rest) if !rest.is_empty() => vec![TurnEvent::Text(rest.to_string())],
                    _ => Vec::new(),
                }
            }
            "fileChange" => {
                let changes = item
                    .get("changes")
                    .and_then(Value::as_array)
                    .map(Vec::as_slice)
                    .unwrap_or_default();
                let paths = changes.iter().filter_map(|c| {
                    let kind = c.pointer("/kind/type").and_then(Value::as_str);
                    Some((c.get("path")?.as_str()?, kind.unwrap_or("write")))
                });
                codex::file_change_events(status, paths)
            }
            "commandExecution" if matches!(status, "completed" | "failed" | "declined") => {
                vec![codex::command_event(
                    status,
                    text("command"),
                    item.get("exitCode"),
                )]
            }
            "mcpToolCall" => tool(
                codex::mcp_tool_name(text("server"), text("tool")),
                status == "completed",
            ),
            "dynamicToolCall" | "collabAgentToolCall" => tool(
                text("tool").unwrap_or("tool_call").to_string(),
                status == "completed",
            ),
            "webSearch" => tool("web_search".to_string(), true),
            _ => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn note(method: &str, params: Value) -> Incoming {
        Incoming::Notification {
            method: method.into(),
            params,
        }
    }

    fn fold_all(turn: &mut Turn, messages: &[Incoming]) -> (Vec<TurnEvent>, bool) {
        let mut events = Vec::new();
        let mut done = false;
        for message in messages {
            let step = turn.fold(message);
            events.extend(step.events);
            done |= step.done;
        }
        (events, done)
    }

    /// The recorded app-server transcript (`cli-samples/warm/codex-appserver-stdio.log`, turn 1).
    #[test]
    fn the_recorded_turn_streams_each_delta_once() {
        let sample =
            include_str!("../../tests/fixtures/cli-samples/warm/codex-appserver-turn.jsonl");
        let mut turn = Turn::new(3);
        let messages: Vec<Incoming> = sample
            .lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .map(|m| match m.get("method").and_then(Value::as_str) {
                Some(method) => note(method, m["params"].clone()),
                None => Incoming::Reply {
                    id: m["id"].as_u64().unwrap(),
                    outcome: Ok(m["result"].clone()),
                },
            })
            .collect();
        let (events, done) = fold_all(&mut turn, &messages);
        assert!(done);
        assert_eq!(
            turn.turn_id.as_deref(),
            Some("01a22d4a-d1ec-7411-92be-9bd245993d1c")
        );
        assert_eq!(
            events,
            [
                TurnEvent::Text("MOCK_REPLY n=".into()),
                TurnEvent::Text("1: Say hello ".into()),
                TurnEvent::Text("(warm turn 1)".into()),
                TurnEvent::Usage(Usage {
                    prompt_tokens: 9625,
                    completion_tokens: 10,
                    cached_tokens: 0
                }),
                TurnEvent::Completed,
            ]
        );
    }

    #[test]
    fn tools_failures_and_unstreamed_text() {
        let mut turn = Turn::new(1);
        let messages = [
            note(
                "item/completed",
                json!({"threadId": "t", "item": {"type": "commandExecution", "id": "c", "command": "false", "cwd": "/w", "commandActions": [], "exitCode": 1, "status": "failed"}}),
            ),
            note(
                "item/completed",
                json!({"threadId": "t", "item": {"type": "fileChange", "id": "f", "status": "completed", "changes": [{"path": "/w/a.txt", "kind": {"type": "add"}, "diff": ""}, {"path": "/w/b.txt", "kind": {"type": "update", "move_path": null}, "diff": ""}]}}),
            ),
            note(
                "item/completed",
                json!({"threadId": "t", "item": {"type": "mcpToolCall", "id": "m", "server": "docs", "tool": "search", "status": "failed"}}),
            ),
            note(
                "item/completed",
                json!({"threadId": "t", "item": {"type": "agentMessage", "id": "a", "text": "whole, never streamed"}}),
            ),
            note(
                "error",
                json!({"threadId": "t", "turnId": "u", "willRetry": true, "error": {"message": "Reconnecting... 1/5"}}),
            ),
            note(
                "turn/completed",
                json!({"threadId": "t", "turn": {"id": "u", "status": "failed", "error": {"message": "quota exceeded"}}}),
            ),
        ];
        let (events, done) = fold_all(&mut turn, &messages);
        assert!(done);
        assert_eq!(
            events,
            [
                TurnEvent::Action(Action::Command {
                    command: "false".into(),
                    exit_code: Some(1),
                    ok: false
                }),
                TurnEvent::Action(Action::FileChange {
                    path: "/w/a.txt".into(),
                    kind: "add".into()
                }),
                TurnEvent::Action(Action::FileChange {
                    path: "/w/b.txt".into(),
                    kind: "update".into()
                }),
                TurnEvent::Action(Action::Tool {
                    name: "docs.search".into(),
                    ok: false
                }),
                TurnEvent::Text("whole, never streamed".into()),
                TurnEvent::Warning("Reconnecting... 1/5".into()),
                TurnEvent::Error("quota exceeded".into()),
            ]
        );
    }

    #[test]
    fn a_refused_turn_start_ends_the_turn_and_an_interrupt_reports_nothing() {
        let mut turn = Turn::new(4);
        let step = turn.fold(&Incoming::Reply {
            id: 4,
            outcome: Err(RpcError {
                code: -32001,
                message: "Server overloaded; retry later.".into(),
            }),
        });
        assert!(step.done);
        assert_eq!(
            step.events,
            [TurnEvent::Error("Server overloaded; retry later.".into())]
        );
        let mut turn = Turn::new(5);
        let step = turn.fold(&note(
            "turn/completed",
            json!({"threadId": "t", "turn": {"id": "u", "status": "interrupted"}}),
        ));
        assert!(step.done && step.events.is_empty());
    }

    #[test]
    fn approvals_are_granted_and_questions_declined() {
        assert_eq!(
            answer("item/commandExecution/requestApproval", &json!({})).unwrap(),
            json!({"decision": "accept"})
        );
        assert_eq!(
            answer("execCommandApproval", &json!({})).unwrap(),
            json!({"decision": "approved"})
        );
        assert_eq!(
            answer("mcpServer/elicitation/request", &json!({})).unwrap(),
            json!({"action": "decline"})
        );
        assert_eq!(
            answer("item/tool/requestUserInput", &json!({}))
                .unwrap_err()
                .code,
            -32601
        );
    }
}
