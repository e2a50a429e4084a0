//! A loopback stand-in for the Telegram Bot API: real HTTP on `127.0.0.1` (tiny_http, one
//! thread per request so a delayed answer blocks nobody), several bots by token, every call
//! recorded, and scriptable failures.
//!
//! It answers `/bot<token>/<method>` with Telegram's envelope (`{"ok":true,"result":…}` or
//! `{"ok":false,"error_code","description","parameters":{"retry_after"}}`) for `getMe`,
//! `getUpdates` (long poll: updates with `update_id >= offset`, waiting up to `timeout`
//! seconds, at most 3, for one to be pushed), `sendMessage`, `editMessageText` (400 "message
//! is not modified" for the same text, "message to edit not found" for an unknown id),
//! `deleteMessage`, `sendChatAction`, `setMyCommands`, `setWebhook`, `deleteWebhook`. An unknown
//! token gets 401, an unknown method 404. Updates are kept after they are served (stricter
//! than Telegram, which forgets confirmed ones), so a client that lost its offset would see
//! them again.

use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// One recorded call.
#[derive(Debug, Clone)]
pub struct Call {
    /// The bot token in the URL.
    pub token: String,
    /// The method (`sendMessage`).
    pub method: String,
    /// Its parameters (JSON body, or the query string as strings).
    pub params: Value,
    /// When it arrived.
    pub at: Instant,
    /// The HTTP status it was answered with (0 while a delayed answer is pending).
    pub status: u16,
}

/// A scripted failure.
#[derive(Debug, Clone)]
pub enum Failure {
    /// Answer with this HTTP status and description (and `retry_after` for a 429).
    Status {
        /// The status.
        code: u16,
        /// Telegram's `description`.
        description: String,
        /// `parameters.retry_after`.
        retry_after: Option<u64>,
    },
    /// Answer normally, but only after this long (past the client's timeout).
    Delay(Duration),
}

struct Script {
    token: String,
    method: String,
    remaining: usize,
    failure: Failure,
}

#[derive(Default)]
struct Inner {
    /// token → username.
    bots: BTreeMap<String, String>,
    /// token → every update pushed.
    updates: BTreeMap<String, Vec<Value>>,
    calls: Vec<Call>,
    scripts: Vec<Script>,
    next_update_id: i64,
    next_message_id: i64,
    /// (token, chat, message id) → current text.
    messages: BTreeMap<(String, i64, i64), String>,
}

struct State {
    inner: Mutex<Inner>,
    pushed: Condvar,
}

/// A running fake.
pub struct FakeTelegram {
    /// `http://127.0.0.1:PORT` for `[channels.telegram].api_base`.
    pub base_url: String,
    state: Arc<State>,
    server: Arc<tiny_http::Server>,
}

impl FakeTelegram {
    /// Starts the fake with no bots.
    pub fn start() -> FakeTelegram {
        let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").unwrap());
        let addr = server.server_addr().to_ip().unwrap();
        let state = Arc::new(State {
            inner: Mutex::new(Inner {
                next_update_id: 1000,
                next_message_id: 1,
                ..Inner::default()
            }),
            pushed: Condvar::new(),
        });
        {
            let server = Arc::clone(&server);
            let state = Arc::clone(&state);
            std::thread::spawn(move || {
                while let Ok(request) = server.recv() {
                    let state = Arc::clone(&state);
                    std::thread::spawn(move || handle(request, &state));
                }
            });
        }
        FakeTelegram {
            base_url: format!("http://{addr}"),
            state,
            server,
        }
    }

    /// Adds a bot with this token and @username.
    pub fn bot(&self, token: &str, username: &str) {
        let mut inner = self.state.inner.lock().unwrap();
        inner.bots.insert(token.to_string(), username.to_string());
        inner.updates.entry(token.to_string()).or_default();
    }

    /// Queues an update for `token` (its `update_id` is assigned); returns the id.
    pub fn push(&self, token: &str, mut update: Value) -> i64 {
        let mut inner = self.state.inner.lock().unwrap();
        inner.next_update_id += 1;
        let id = inner.next_update_id;
        update["update_id"] = json!(id);
        inner
            .updates
            .entry(token.to_string())
            .or_default()
            .push(update);
        self.state.pushed.notify_all();
        id
    }

    /// Queues a text message from Telegram user `from` in private chat `from`.
    pub fn say(&self, token: &str, from: i64, text: &str) -> i64 {
        self.push(token, message(from, from, text))
    }

    /// The next update id [`FakeTelegram::push`] will assign.
    pub fn next_update_id(&self) -> i64 {
        self.state.inner.lock().unwrap().next_update_id + 1
    }

    /// Fails the next `times` calls of `method` by `token` with `failure`.
    pub fn fail(&self, token: &str, method: &str, times: usize, failure: Failure) {
        self.state.inner.lock().unwrap().scripts.push(Script {
            token: token.to_string(),
            method: method.to_string(),
            remaining: times,
            failure,
        });
    }

    /// Every call so far.
    pub fn calls(&self) -> Vec<Call> {
        self.state.inner.lock().unwrap().calls.clone()
    }

    /// The calls of `method` by `token`.
    pub fn calls_of(&self, token: &str, method: &str) -> Vec<Call> {
        let mut calls = self.calls();
        calls.retain(|c| c.token == token && c.method == method);
        calls
    }

    /// The texts of the `sendMessage` calls to `chat` that succeeded, in order.
    pub fn sent(&self, token: &str, chat: i64) -> Vec<String> {
        self.calls_of(token, "sendMessage")
            .into_iter()
            .filter(|c| c.status == 200 && c.params["chat_id"] == chat)
            .map(|c| c.params["text"].as_str().unwrap_or_default().to_string())
            .collect()
    }

    /// What `chat` shows now: each live message's current text, oldest first.
    pub fn chat(&self, token: &str, chat: i64) -> Vec<String> {
        let inner = self.state.inner.lock().unwrap();
        inner
            .messages
            .iter()
            .filter(|((t, c, _), _)| t == token && *c == chat)
            .map(|(_, text)| text.clone())
            .collect()
    }

    /// Waits (bounded) until `chat` shows a message containing `needle`; returns what it shows.
    pub fn wait_for_text(
        &self,
        token: &str,
        chat: i64,
        needle: &str,
        timeout: Duration,
    ) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let shown = self.chat(token, chat);
            if shown.iter().any(|t| t.contains(needle)) {
                return shown;
            }
            assert!(
                Instant::now() < deadline,
                "chat {chat} never showed {needle:?} within {timeout:?}; it shows {shown:#?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits (bounded) until at least `count` calls of `method` by `token` were answered.
    pub fn wait_for_calls(
        &self,
        token: &str,
        method: &str,
        count: usize,
        timeout: Duration,
    ) -> Vec<Call> {
        let deadline = Instant::now() + timeout;
        loop {
            let calls: Vec<Call> = self
                .calls_of(token, method)
                .into_iter()
                .filter(|c| c.status != 0)
                .collect();
            if calls.len() >= count {
                return calls;
            }
            assert!(
                Instant::now() < deadline,
                "{count} {method} call(s) did not come within {timeout:?}; got {}",
                calls.len()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for FakeTelegram {
    fn drop(&mut self) {
        self.server.unblock();
    }
}

/// A text message update (without `update_id`) from user `from` in chat `chat`.
pub fn message(from: i64, chat: i64, text: &str) -> Value {
    json!({"message": {
        "message_id": 1,
        "date": 0,
        "chat": {"id": chat, "type": if from == chat { "private" } else { "group" }},
        "from": {"id": from, "is_bot": false, "first_name": "Tester", "username": format!("user{from}")},
        "text": text,
    }})
}

fn handle(mut request: tiny_http::Request, state: &State) {
    let url = request.url().to_string();
    let (path, query) = url.split_once('?').unwrap_or((&url, ""));
    let mut body = String::new();
    let _ = request.as_reader().read_to_string(&mut body);
    let params = if body.trim().is_empty() {
        let fields: serde_json::Map<String, Value> = query
            .split('&')
            .filter_map(|pair| pair.split_once('='))
            .map(|(k, v)| (k.to_string(), Value::String(v.to_string())))
            .collect();
        Value::Object(fields)
    } else {
        serde_json::from_str(&body).unwrap_or(Value::String(body))
    };
    let rest = path.trim_start_matches('/');
    let (token, method) = match rest.strip_prefix("bot").and_then(|r| r.split_once('/')) {
        Some((token, method)) => (token.to_string(), method.to_string()),
        None => (String::new(), rest.to_string()),
    };
    let index = {
        let mut inner = state.inner.lock().unwrap();
        inner.calls.push(Call {
            token: token.clone(),
            method: method.clone(),
            params: params.clone(),
            at: Instant::now(),
            status: 0,
        });
        inner.calls.len() - 1
    };
    let (status, answer) = answer(state, &token, &method, &params);
    state.inner.lock().unwrap().calls[index].status = status;
    let response = tiny_http::Response::from_string(answer.to_string())
        .with_status_code(status)
        .with_header(
            "Content-Type: application/json"
                .parse::<tiny_http::Header>()
                .unwrap(),
        );
    let _ = request.respond(response);
}

fn error(code: u16, description: &str, retry_after: Option<u64>) -> (u16, Value) {
    let mut body = json!({"ok": false, "error_code": code, "description": description});
    if let Some(seconds) = retry_after {
        body["parameters"] = json!({ "retry_after": seconds });
    }
    (code, body)
}

fn ok(result: Value) -> (u16, Value) {
    (200, json!({"ok": true, "result": result}))
}

fn answer(state: &State, token: &str, method: &str, params: &Value) -> (u16, Value) {
    let scripted = {
        let mut inner = state.inner.lock().unwrap();
        if !inner.bots.contains_key(token) {
            return error(401, "Unauthorized", None);
        }
        let script = inner
            .scripts
            .iter_mut()
            .find(|s| s.token == token && s.method == method && s.remaining > 0);
        script.map(|s| {
            s.remaining -= 1;
            s.failure.clone()
        })
    };
    match scripted {
        Some(Failure::Status {
            code,
            description,
            retry_after,
        }) => return error(code, &description, retry_after),
        Some(Failure::Delay(delay)) => std::thread::sleep(delay),
        None => {}
    }
    let int = |name: &str| {
        params[name]
            .as_i64()
            .or_else(|| params[name].as_str().and_then(|s| s.parse().ok()))
    };
    let mut inner = state.inner.lock().unwrap();
    match method {
        "getMe" => {
            let username = inner.bots[token].clone();
            ok(json!({"id": 1, "is_bot": true, "first_name": "Codara", "username": username}))
        }
        "getUpdates" => {
            let offset = int("offset").unwrap_or(0);
            let wait = Duration::from_secs(int("timeout").unwrap_or(0).clamp(0, 3) as u64);
            let deadline = Instant::now() + wait;
            loop {
                let ready: Vec<Value> = inner.updates[token]
                    .iter()
                    .filter(|u| u["update_id"].as_i64().unwrap_or(0) >= offset)
                    .take(100)
                    .cloned()
                    .collect();
                let left = deadline.saturating_duration_since(Instant::now());
                if !ready.is_empty() || left.is_zero() {
                    return ok(Value::Array(ready));
                }
                inner = state.pushed.wait_timeout(inner, left).unwrap().0;
            }
        }
        "sendMessage" => {
            let (Some(chat), Some(text)) = (int("chat_id"), params["text"].as_str()) else {
                return error(400, "Bad Request: chat_id and text are required", None);
            };
            if text.trim().is_empty() {
                return error(400, "Bad Request: message text is empty", None);
            }
            if text.encode_utf16().count() > 4096 {
                return error(400, "Bad Request: message is too long", None);
            }
            let id = inner.next_message_id;
            inner.next_message_id += 1;
            inner
                .messages
                .insert((token.to_string(), chat, id), text.to_string());
            ok(json!({"message_id": id, "date": 0, "chat": {"id": chat}, "text": text}))
        }
        "editMessageText" => {
            let (Some(chat), Some(id), Some(text)) =
                (int("chat_id"), int("message_id"), params["text"].as_str())
            else {
                return error(
                    400,
                    "Bad Request: chat_id, message_id and text are required",
                    None,
                );
            };
            if text.encode_utf16().count() > 4096 {
                return error(400, "Bad Request: message is too long", None);
            }
            match inner.messages.get_mut(&(token.to_string(), chat, id)) {
                None => error(400, "Bad Request: message to edit not found", None),
                Some(current) if current.trim() == text.trim() => error(
                    400,
                    "Bad Request: message is not modified: specified new message content and \
                     reply markup are exactly the same as a current content and reply markup \
                     of the message",
                    None,
                ),
                Some(current) => {
                    *current = text.to_string();
                    ok(json!({"message_id": id, "date": 0, "chat": {"id": chat}, "text": text}))
                }
            }
        }
        "deleteMessage" => {
            let key = (
                token.to_string(),
                int("chat_id").unwrap_or(0),
                int("message_id").unwrap_or(0),
            );
            match inner.messages.remove(&key) {
                Some(_) => ok(json!(true)),
                None => error(400, "Bad Request: message to delete not found", None),
            }
        }
        "sendChatAction" | "setMyCommands" | "setWebhook" | "deleteWebhook" => ok(json!(true)),
        _ => error(404, "Not Found", None),
    }
}
