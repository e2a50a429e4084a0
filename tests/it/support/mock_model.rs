//! A loopback mock model server speaking the OpenAI Responses, Chat Completions and Gemini wire formats.
//!
//! The real Codex, Gemini and OpenCode CLIs are pointed at it (see `shared/reference/real-clis.md`).
//! It keeps no conversation state: every answer is derived from the request, which always carries
//! the whole history. The last real user message may hold a directive `MOCK:{json}`:
//!
//! - `{"reply":"text"}`: answer with this text.
//! - `{"write":{"path":"p","content":"c"}}`: call the CLI's own file tool (codex `apply_patch` when
//!   declared, else `exec_command` with a heredoc; gemini `write_file`; opencode `write`).
//! - `{"shell":"cmd"}`: call the CLI's shell tool (codex `exec_command`, gemini
//!   `run_shell_command`, opencode `bash`).
//! - `{"read":"path"}`: call the CLI's file reader (gemini `read_file`, opencode `read`, codex
//!   `view_image`), as a model does that was told to look at a file.
//! - `{"steps":[{"write":…}|{"shell":…}|{"read":…},…],"final":"text"}`: several tool calls in a row; step k is
//!   answered when k tool results follow the last user message, `final` after the last one.
//! - `{"delay":seconds}`: wait this long before answering, sending nothing at all meanwhile.
//! - `{"http_error":400,"message":"text"}`: fail with that status and the API's error body.
//! - `{"chunk_delay_ms":n,"chunks":k}`: stream the reply text in k deltas (default 3), n ms apart.
//!
//! Without a directive the answer is `MOCK_REPLY n=<user messages seen>: <prompt>`, and after tool
//! results `MOCK_DONE after k tool call(s)` (or `final`). Gemini's JSON-schema side calls get an
//! object built from the schema and opencode's title call gets "Mock title". A Responses request
//! whose `text.format` is a `json_schema` (codex `--output-schema`) is answered with a value built
//! from that schema when the prompt holds no directive.
//!
//! Control endpoints: `GET /__mock/requests`, `POST /__mock/reset`, `GET /__mock/health`, and
//! `POST /__mock/reject` `{"bearer":"KEY","status":429,"message":"text"}`: from then on every
//! request whose `Authorization: Bearer` is `KEY` is answered with that status and an OpenAI error
//! body carrying `message`; other fields of the control (`type`, `resets_in_seconds`, …) go into
//! the error object as given. Status 0 or null lifts the rejection; see [`MockModel::reject`].

use super::TempDir;
use serde_json::{json, Value};
use std::collections::{HashMap, VecDeque};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The model slug codex is configured with (one it has metadata for, so `apply_patch` is declared).
pub const CODEX_MODEL: &str = "gpt-5.5";
/// The model gemini is run with (`-m`; skips the `auto` router's extra classifier call).
pub const GEMINI_MODEL: &str = "gemini-2.5-flash";
/// The opencode model of the mock provider written into its config.
pub const OPENCODE_MODEL: &str = "mock/mock-model";

/// The directory holding the pinned CLIs installed by `scripts/install-clis.sh`.
pub fn clis_bin() -> PathBuf {
    let bin = Path::new(env!("CARGO_MANIFEST_DIR")).join(".clis/node_modules/.bin");
    for name in ["codex", "gemini", "opencode"] {
        assert!(
            bin.join(name).exists(),
            "{} is missing: run scripts/install-clis.sh",
            bin.join(name).display()
        );
    }
    bin
}

/// The gemini user settings the mock needs: API-key auth selected, usage statistics off.
///
/// With `GOOGLE_GEMINI_BASE_URL` set and no auth type in the settings, gemini 0.61 picks its
/// `gateway` auth type and then rejects it in headless mode ("Invalid auth method selected.",
/// exit 41). No environment variable or flag selects the type, and the system settings files
/// (`GEMINI_CLI_SYSTEM_SETTINGS_PATH`) are skipped unless they and every parent directory are
/// owned by root and not group/world-writable, so it must be the user settings of the home.
pub fn gemini_settings() -> Value {
    json!({
        "security": {"auth": {"selectedType": "gemini-api-key"}},
        "privacy": {"usageStatisticsEnabled": false}
    })
}

/// Writes [`gemini_settings`] to `<gemini_cli_home>/.gemini/settings.json`.
pub fn write_gemini_settings(gemini_cli_home: &Path) {
    let dir = gemini_cli_home.join(".gemini");
    std::fs::create_dir_all(&dir).unwrap();
    let text = serde_json::to_string_pretty(&gemini_settings()).unwrap();
    std::fs::write(dir.join("settings.json"), text).unwrap();
}

/// Formats a directive for a prompt: `MOCK:{json}`.
pub fn directive(value: Value) -> String {
    format!("MOCK:{value}")
}

/// One request the mock received (control endpoints are not recorded).
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    /// HTTP method.
    pub method: String,
    /// Path and query, as sent.
    pub path: String,
    /// Headers, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// The body as JSON (`Null` when empty, a string when it is not JSON).
    pub body: Value,
    /// When it arrived.
    pub at: Instant,
}

impl RecordedRequest {
    /// A header value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as compact JSON text (for `contains` checks on the whole conversation).
    pub fn body_text(&self) -> String {
        self.body.to_string()
    }
}

struct State {
    started: Instant,
    started_unix_ms: u128,
    requests: Mutex<Vec<RecordedRequest>>,
    shutdown: AtomicBool,
    ids: AtomicU64,
    /// Bearer token → (status, OpenAI error object) to answer model requests with.
    rejections: Mutex<HashMap<String, (u16, Value)>>,
}

impl State {
    fn next_id(&self) -> u64 {
        self.ids.fetch_add(1, Ordering::Relaxed)
    }

    /// Sleeps `duration` in small steps; returns early once the mock is shutting down.
    fn sleep(&self, duration: Duration) {
        let deadline = Instant::now() + duration;
        while !self.shutdown.load(Ordering::Relaxed) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            std::thread::sleep(left.min(Duration::from_millis(25)));
        }
    }
}

/// A running mock model on `127.0.0.1:<ephemeral>`; stops on drop.
pub struct MockModel {
    base_url: String,
    server: Arc<tiny_http::Server>,
    state: Arc<State>,
    dir: TempDir,
}

impl MockModel {
    /// Starts the server (one thread per request, so a delayed answer blocks nobody) and writes
    /// the opencode config that points at it.
    pub fn start() -> MockModel {
        let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").unwrap());
        let addr = server.server_addr().to_ip().unwrap();
        let state = Arc::new(State {
            started: Instant::now(),
            started_unix_ms: unix_ms(),
            requests: Mutex::new(Vec::new()),
            shutdown: AtomicBool::new(false),
            ids: AtomicU64::new(1),
            rejections: Mutex::new(HashMap::new()),
        });
        {
            let server = Arc::clone(&server);
            let state = Arc::clone(&state);
            std::thread::spawn(move || {
                while let Ok(request) = server.recv() {
                    let state = Arc::clone(&state);
                    std::thread::spawn(move || handle(request, state));
                }
            });
        }
        let mock = MockModel {
            base_url: format!("http://{addr}"),
            server,
            state,
            dir: TempDir::new("mock-model"),
        };
        std::fs::write(
            mock.opencode_config_path(),
            serde_json::to_string_pretty(&mock.opencode_config()).unwrap(),
        )
        .unwrap();
        mock
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// Every model request received so far, in arrival order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.state.requests.lock().unwrap().clone()
    }

    /// The recorded requests whose path contains `fragment`.
    pub fn requests_to(&self, fragment: &str) -> Vec<RecordedRequest> {
        let mut requests = self.requests();
        requests.retain(|r| r.path.contains(fragment));
        requests
    }

    /// Answers every later model request whose bearer token is `bearer` with `status` and an
    /// OpenAI error body carrying `message`, through `POST /__mock/reject`; status 0 lifts it.
    pub fn reject(&self, bearer: &str, status: u16, message: &str) {
        self.reject_with(json!({"bearer": bearer, "status": status, "message": message}));
    }

    /// Sends this `/__mock/reject` control as is (to set the error's `type` or extra fields).
    pub fn reject_with(&self, control: Value) {
        let addr = self.base_url.trim_start_matches("http://").parse().unwrap();
        let body = control.to_string();
        let response = super::http(
            addr,
            "POST",
            "/__mock/reject",
            &[("Content-Type", "application/json")],
            Some(body.as_bytes()),
        );
        assert_eq!(response.status, 200, "{}", response.text());
    }

    /// Forgets the recorded requests.
    pub fn reset(&self) {
        self.state.requests.lock().unwrap().clear();
    }

    /// The `-c` overrides (separate argv words) that point `codex` at the mock.
    pub fn codex_args(&self) -> Vec<String> {
        let provider = format!(
            "model_providers.mock={{name=\"Mock LLM\",base_url=\"{}/v1\",env_key=\"MOCK_API_KEY\",\
             wire_api=\"responses\",request_max_retries=0,stream_max_retries=0}}",
            self.base_url
        );
        [
            "-c",
            "model_provider=\"mock\"",
            "-c",
            &provider,
            "-c",
            "check_for_update_on_startup=false",
            "-c",
            "analytics.enabled=false",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }

    /// The environment `codex` needs beside [`MockModel::codex_args`].
    pub fn codex_env(&self) -> Vec<(String, String)> {
        vec![("MOCK_API_KEY".into(), "dummy".into())]
    }

    /// The environment that points `gemini` at the mock. It is not enough on its own: the
    /// gemini home must also select API-key auth, see [`gemini_settings`].
    pub fn gemini_env(&self) -> Vec<(String, String)> {
        [
            ("GEMINI_API_KEY", "dummy".to_string()),
            ("GOOGLE_GEMINI_BASE_URL", self.base_url.clone()),
            ("GEMINI_CLI_TRUST_WORKSPACE", "true".to_string()),
            ("GEMINI_CLI_NO_RELAUNCH", "true".to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    /// Where the opencode config with the mock provider lives (`OPENCODE_CONFIG`).
    pub fn opencode_config_path(&self) -> PathBuf {
        self.dir.path().join("opencode.json")
    }

    /// The opencode config: an `@ai-sdk/openai-compatible` provider `mock` at the mock.
    pub fn opencode_config(&self) -> Value {
        json!({
            "$schema": "https://opencode.ai/config.json",
            "provider": {"mock": {
                "npm": "@ai-sdk/openai-compatible",
                "name": "Mock LLM",
                "options": {"baseURL": format!("{}/v1", self.base_url), "apiKey": "dummy"},
                // `modalities` lets opencode send image attachments to this model.
                "models": {"mock-model": {"name": "Mock Model", "tool_call": true,
                    "modalities": {"input": ["text", "image"], "output": ["text"]}}}
            }},
            "model": OPENCODE_MODEL,
            "small_model": OPENCODE_MODEL,
            "autoupdate": false,
            "share": "disabled",
            "permission": {"edit": "allow", "bash": "allow", "webfetch": "allow"}
        })
    }

    /// The environment that points `opencode` at the mock.
    pub fn opencode_env(&self) -> Vec<(String, String)> {
        [
            (
                "OPENCODE_CONFIG",
                self.opencode_config_path().display().to_string(),
            ),
            ("OPENCODE_DISABLE_MODELS_FETCH", "1".to_string()),
            ("OPENCODE_DISABLE_AUTOUPDATE", "1".to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    /// `codara.toml` provider blocks that run the pinned CLIs in `clis_bin` against the mock:
    /// codex through `-c` overrides in `extra_args`, gemini and opencode through `env`. Gemini
    /// also needs [`gemini_settings`] in its home, which codara's `providers::gemini` writes.
    pub fn codara_toml(&self, clis_bin: &Path) -> String {
        let mut out = String::new();
        let blocks = [
            ("codex", CODEX_MODEL, self.codex_args(), self.codex_env()),
            ("gemini", GEMINI_MODEL, Vec::new(), self.gemini_env()),
            ("opencode", OPENCODE_MODEL, Vec::new(), self.opencode_env()),
        ];
        for (name, model, args, env) in blocks {
            let binary = clis_bin.join(name).display().to_string();
            let args: Vec<String> = args.iter().map(|a| quote(a)).collect();
            out.push_str(&format!(
                "[providers.{name}]\nbinary = {}\ndefault_model = {}\nmodels = [{}]\nextra_args = [{}]\n\n[providers.{name}.env]\n",
                quote(&binary),
                quote(model),
                quote(model),
                args.join(", ")
            ));
            for (key, value) in env {
                out.push_str(&format!("{key} = {}\n", quote(&value)));
            }
            out.push('\n');
        }
        out
    }

    /// Waits (bounded) until at least `count` requests were recorded; returns them.
    pub fn wait_for_requests(&self, count: usize, timeout: Duration) -> Vec<RecordedRequest> {
        super::wait_until(timeout, &format!("{count} mock model request(s)"), || {
            self.requests().len() >= count
        });
        self.requests()
    }
}

impl Drop for MockModel {
    fn drop(&mut self) {
        self.state.shutdown.store(true, Ordering::Relaxed);
        self.server.unblock();
    }
}

/// A TOML basic string (JSON string escapes are valid TOML escapes).
fn quote(text: &str) -> String {
    serde_json::to_string(text).unwrap()
}

fn unix_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
}

// ---------------------------------------------------------------------------------------------
// Request handling

fn handle(mut request: tiny_http::Request, state: Arc<State>) {
    let mut raw = Vec::new();
    let _ = request.as_reader().read_to_end(&mut raw);
    let method = request.method().as_str().to_ascii_uppercase();
    let url = request.url().to_string();
    let path = url.split('?').next().unwrap_or("").to_string();

    match (method.as_str(), path.as_str()) {
        ("GET", "/__mock/health") => return respond_json(request, 200, &json!({"status": "ok"})),
        ("GET", "/__mock/requests") => {
            let list: Vec<Value> = state
                .requests
                .lock()
                .unwrap()
                .iter()
                .map(|r| {
                    let since = r.at.duration_since(state.started);
                    json!({
                        "method": r.method,
                        "path": r.path,
                        "body": r.body,
                        "elapsed_ms": since.as_secs_f64() * 1000.0,
                        "unix_ms": state.started_unix_ms + since.as_millis(),
                    })
                })
                .collect();
            return respond_json(request, 200, &Value::Array(list));
        }
        ("POST", "/__mock/reset") => {
            state.requests.lock().unwrap().clear();
            return respond_json(request, 200, &json!({"status": "reset"}));
        }
        ("POST", "/__mock/reject") => {
            let control: Value = serde_json::from_slice(&raw).unwrap_or(Value::Null);
            let Some(bearer) = control["bearer"].as_str() else {
                return respond_json(request, 400, &json!({"error": "`bearer` is required"}));
            };
            let status = control["status"].as_u64().unwrap_or(0) as u16;
            let mut rejections = state.rejections.lock().unwrap();
            if status == 0 {
                rejections.remove(bearer);
            } else {
                rejections.insert(
                    bearer.to_string(),
                    (status, rejection_error(status, &control)),
                );
            }
            return respond_json(request, 200, &json!({"status": "ok"}));
        }
        _ => {}
    }

    let body: Value = if raw.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&raw)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&raw).into_owned()))
    };
    state.requests.lock().unwrap().push(RecordedRequest {
        method: method.clone(),
        path: url.clone(),
        headers: request
            .headers()
            .iter()
            .map(|h| {
                (
                    h.field.as_str().as_str().to_ascii_lowercase(),
                    h.value.as_str().to_string(),
                )
            })
            .collect(),
        body: body.clone(),
        at: Instant::now(),
    });

    let bearer = request
        .headers()
        .iter()
        .find(|h| h.field.equiv("Authorization"))
        .and_then(|h| h.value.as_str().strip_prefix("Bearer "))
        .map(|token| token.trim().to_string());
    let rejection = bearer.and_then(|token| state.rejections.lock().unwrap().get(&token).cloned());
    if let Some((status, error)) = rejection {
        return respond_json(request, status, &json!({ "error": error }));
    }

    let protocol = if method == "POST" && path.ends_with("/responses") {
        Protocol::Responses
    } else if method == "POST" && path.ends_with("/chat/completions") {
        Protocol::Chat
    } else if method == "POST" && path.contains(":streamGenerateContent") {
        Protocol::Gemini { stream: true }
    } else if method == "POST" && path.contains(":generateContent") {
        Protocol::Gemini { stream: false }
    } else if method == "POST" && path.contains(":countTokens") {
        let tokens = body.to_string().len() / 4;
        return respond_json(request, 200, &json!({"totalTokens": tokens}));
    } else if method == "GET" && path.ends_with("/models") {
        return respond_json(request, 200, &models_list(&path));
    } else {
        let error = json!({"error": {"message": format!("mock: no route for {method} {path}"),
            "type": "not_found", "param": null, "code": "404"}});
        return respond_json(request, 404, &error);
    };

    let conversation = Conversation::read(protocol, &body);
    let plan = decide(&conversation, protocol);
    if let Some(delay) = plan.delay {
        state.sleep(delay);
    }
    let model = match protocol {
        Protocol::Gemini { .. } => path
            .rsplit('/')
            .next()
            .and_then(|m| m.split(':').next())
            .unwrap_or("gemini")
            .to_string(),
        _ => body["model"].as_str().unwrap_or("mock-model").to_string(),
    };
    let ctx = Emit {
        state: &state,
        protocol,
        stream: match protocol {
            Protocol::Gemini { stream } => stream,
            _ => body["stream"].as_bool().unwrap_or(false),
        },
        include_usage: body["stream_options"]["include_usage"]
            .as_bool()
            .unwrap_or(false),
        model,
        input_tokens: (raw.len() / 4) as u64,
    };
    ctx.send(request, plan);
}

/// The OpenAI error object of a `/__mock/reject` control: `message`, a `type` and `code` fitting
/// the status unless given, and every other field of the control (say `resets_in_seconds`) as is.
fn rejection_error(status: u16, control: &Value) -> Value {
    let (kind, code) = match status {
        401 => ("invalid_request_error", "invalid_api_key"),
        429 => ("requests", "rate_limit_exceeded"),
        _ => ("mock_error", "mock_rejected"),
    };
    let mut error = json!({
        "message": control["message"].as_str().unwrap_or("rejected by the mock"),
        "type": kind,
        "param": null,
        "code": code,
    });
    for (key, value) in control.as_object().into_iter().flatten() {
        if !["bearer", "status", "message"].contains(&key.as_str()) {
            error[key] = value.clone();
        }
    }
    error
}

fn models_list(path: &str) -> Value {
    if path.starts_with("/v1beta") {
        json!({"models": [
            {"name": "models/gemini-2.5-flash", "displayName": "Gemini 2.5 Flash",
             "supportedGenerationMethods": ["generateContent", "countTokens"]},
            {"name": "models/gemini-2.5-pro", "displayName": "Gemini 2.5 Pro",
             "supportedGenerationMethods": ["generateContent", "countTokens"]}
        ]})
    } else {
        json!({"object": "list", "data": [
            {"id": "mock-model", "object": "model", "created": 0, "owned_by": "mock"},
            {"id": CODEX_MODEL, "object": "model", "created": 0, "owned_by": "mock"}
        ]})
    }
}

fn respond_json(request: tiny_http::Request, status: u16, value: &Value) {
    let response = tiny_http::Response::from_string(value.to_string())
        .with_status_code(status)
        .with_header(header("Content-Type", "application/json"));
    let _ = request.respond(response);
}

fn header(name: &str, value: &str) -> tiny_http::Header {
    tiny_http::Header::from_bytes(name.as_bytes(), value.as_bytes()).unwrap()
}

// ---------------------------------------------------------------------------------------------
// Reading the conversation

#[derive(Debug, Clone, Copy, PartialEq)]
enum Protocol {
    Responses,
    Chat,
    Gemini { stream: bool },
}

/// Text parts that look like user messages but are injected by the CLIs.
const INJECTED_PREFIXES: &[&str] = &[
    "<environment_context>",
    "<session_context>",
    "<user_instructions>",
    "# AGENTS.md instructions",
    "<system-reminder>",
];

fn is_injected(text: &str) -> bool {
    let text = text.trim_start();
    INJECTED_PREFIXES.iter().any(|p| text.starts_with(p))
}

/// What the mock needs to know about a request.
#[derive(Debug, Default)]
struct Conversation {
    /// The real user messages, in order.
    user_texts: Vec<String>,
    /// Tool results after the last real user message.
    tool_results: usize,
    /// Declared tools: name and whether it is a freeform (`custom`) tool.
    tools: Vec<(String, bool)>,
    /// opencode's title request.
    is_title: bool,
    /// Gemini's JSON-mode side calls: the response schema.
    json_schema: Option<Value>,
    /// A Responses request's `text.format` schema (codex `--output-schema`).
    output_schema: Option<Value>,
}

impl Conversation {
    fn read(protocol: Protocol, body: &Value) -> Conversation {
        let mut conv = Conversation::default();
        match protocol {
            Protocol::Responses => conv.read_responses(body),
            Protocol::Chat => conv.read_chat(body),
            Protocol::Gemini { .. } => conv.read_gemini(body),
        }
        conv
    }

    fn user_message(&mut self, texts: Vec<String>) {
        let texts: Vec<String> = texts.into_iter().filter(|t| !is_injected(t)).collect();
        if !texts.is_empty() {
            self.user_texts.push(texts.join("\n"));
            self.tool_results = 0;
        }
    }

    fn read_responses(&mut self, body: &Value) {
        if let Some(text) = body["input"].as_str() {
            self.user_message(vec![text.to_string()]);
        }
        for item in body["input"].as_array().into_iter().flatten() {
            let kind = item["type"].as_str().unwrap_or("message");
            if kind == "message" && item["role"] == "user" {
                self.user_message(content_texts(&item["content"]));
            } else if kind.ends_with("_output") {
                self.tool_results += 1;
            }
        }
        if body["text"]["format"]["type"] == "json_schema" {
            self.output_schema = Some(body["text"]["format"]["schema"].clone());
        }
        for tool in body["tools"].as_array().into_iter().flatten() {
            let name = tool["name"]
                .as_str()
                .or_else(|| tool["function"]["name"].as_str());
            if let Some(name) = name {
                self.tools
                    .push((name.to_string(), tool["type"] == "custom"));
            }
        }
    }

    fn read_chat(&mut self, body: &Value) {
        for message in body["messages"].as_array().into_iter().flatten() {
            match message["role"].as_str() {
                Some("user") => self.user_message(content_texts(&message["content"])),
                Some("tool") => self.tool_results += 1,
                Some("system") => {
                    let system = content_texts(&message["content"]).join("\n");
                    if system.contains("title generator") {
                        self.is_title = true;
                    }
                }
                _ => {}
            }
        }
        for tool in body["tools"].as_array().into_iter().flatten() {
            if let Some(name) = tool["function"]["name"].as_str() {
                self.tools.push((name.to_string(), false));
            }
        }
    }

    fn read_gemini(&mut self, body: &Value) {
        for content in body["contents"].as_array().into_iter().flatten() {
            if content["role"] != "user" {
                continue;
            }
            let parts = content["parts"].as_array().cloned().unwrap_or_default();
            let texts: Vec<String> = parts
                .iter()
                .filter_map(|p| p["text"].as_str().map(str::to_string))
                .collect();
            self.user_message(texts);
            self.tool_results += parts
                .iter()
                .filter(|p| p.get("functionResponse").is_some())
                .count();
        }
        for group in body["tools"].as_array().into_iter().flatten() {
            for decl in group["functionDeclarations"]
                .as_array()
                .into_iter()
                .flatten()
            {
                if let Some(name) = decl["name"].as_str() {
                    self.tools.push((name.to_string(), false));
                }
            }
        }
        let config = &body["generationConfig"];
        if config["responseMimeType"] == "application/json" {
            let schema = config
                .get("responseJsonSchema")
                .or_else(|| config.get("responseSchema"))
                .cloned()
                .unwrap_or_else(|| json!({"type": "object"}));
            self.json_schema = Some(schema);
        }
    }

    fn has_tool(&self, name: &str) -> bool {
        self.tools.iter().any(|(n, _)| n == name)
    }

    fn prompt(&self) -> &str {
        self.user_texts.last().map(String::as_str).unwrap_or("")
    }
}

/// The texts of a message `content`: a string, or parts with a `text`.
fn content_texts(content: &Value) -> Vec<String> {
    match content {
        Value::String(text) => vec![text.clone()],
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p["text"].as_str().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    }
}

/// The first `MOCK:{json}` object in `text` (also when its quotes arrived backslash-escaped).
fn parse_directive(text: &str) -> Option<Value> {
    let start = text.find("MOCK:")? + "MOCK:".len();
    let rest = &text[start..];
    let first = |s: &str| {
        serde_json::Deserializer::from_str(s)
            .into_iter::<Value>()
            .next()
            .and_then(Result::ok)
            .filter(Value::is_object)
    };
    first(rest).or_else(|| first(&rest.replace("\\\"", "\"")))
}

// ---------------------------------------------------------------------------------------------
// Deciding the answer

/// One tool call to emit.
#[derive(Debug, Clone)]
struct ToolCall {
    name: String,
    /// Freeform input for a `custom` tool (codex `apply_patch`).
    custom_input: Option<String>,
    /// JSON arguments for a function tool.
    arguments: Value,
}

#[derive(Debug, Clone)]
enum Answer {
    Text(String),
    Call(ToolCall),
    Error { status: u16, message: String },
}

#[derive(Debug, Clone)]
struct Plan {
    delay: Option<Duration>,
    chunk_delay: Duration,
    chunks: usize,
    answer: Answer,
}

fn decide(conv: &Conversation, protocol: Protocol) -> Plan {
    let mut plan = Plan {
        delay: None,
        chunk_delay: Duration::ZERO,
        chunks: 3,
        answer: Answer::Text(String::new()),
    };
    if let Some(schema) = &conv.json_schema {
        plan.answer = Answer::Text(from_schema(schema).to_string());
        return plan;
    }
    if conv.is_title {
        plan.answer = Answer::Text("Mock title".into());
        return plan;
    }
    let Some(directive) = parse_directive(conv.prompt()) else {
        if let (Some(schema), 0) = (&conv.output_schema, conv.tool_results) {
            plan.answer = Answer::Text(from_schema(schema).to_string());
            return plan;
        }
        return decide_with(plan, &json!({}), conv, protocol);
    };
    decide_with(plan, &directive, conv, protocol)
}

/// The answer `directive` asks for (an empty directive: the default answers).
fn decide_with(mut plan: Plan, directive: &Value, conv: &Conversation, protocol: Protocol) -> Plan {
    plan.delay = directive["delay"]
        .as_f64()
        .filter(|s| *s > 0.0)
        .map(Duration::from_secs_f64);
    plan.chunk_delay = Duration::from_millis(directive["chunk_delay_ms"].as_u64().unwrap_or(0));
    plan.chunks = directive["chunks"].as_u64().unwrap_or(3).clamp(1, 1000) as usize;
    if let Some(status) = directive["http_error"].as_u64() {
        let message = directive["message"]
            .as_str()
            .unwrap_or("scripted failure")
            .to_string();
        plan.answer = Answer::Error {
            status: status as u16,
            message,
        };
        return plan;
    }
    let mut steps: Vec<Value> = directive["steps"].as_array().cloned().unwrap_or_default();
    for key in ["write", "shell", "read"] {
        if let Some(step) = directive.get(key) {
            steps.push(json!({ key: step }));
        }
    }
    let done = conv.tool_results;
    plan.answer = if let Some(step) = steps.get(done) {
        Answer::Call(tool_call(step, conv, protocol))
    } else if done > 0 {
        Answer::Text(
            directive["final"]
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| format!("MOCK_DONE after {done} tool call(s)")),
        )
    } else if let Some(reply) = directive["reply"].as_str().or(directive["final"].as_str()) {
        Answer::Text(reply.to_string())
    } else {
        Answer::Text(format!(
            "MOCK_REPLY n={}: {}",
            conv.user_texts.len(),
            conv.prompt()
        ))
    };
    plan
}

/// The tool call for one step, in the vocabulary of the tools the CLI declared.
fn tool_call(step: &Value, conv: &Conversation, protocol: Protocol) -> ToolCall {
    let function = |name: &str, arguments: Value| ToolCall {
        name: name.to_string(),
        custom_input: None,
        arguments,
    };
    if let Some(write) = step.get("write") {
        let path = write["path"].as_str().unwrap_or("mock.txt");
        let content = write["content"].as_str().unwrap_or("");
        if conv.has_tool("write_file") {
            return function("write_file", json!({"file_path": path, "content": content}));
        }
        if conv.has_tool("write") {
            return function("write", json!({"filePath": path, "content": content}));
        }
        if let Some((_, custom)) = conv.tools.iter().find(|(n, _)| n == "apply_patch") {
            let mut patch = format!("*** Begin Patch\n*** Add File: {path}\n");
            for line in content.strip_suffix('\n').unwrap_or(content).split('\n') {
                patch.push('+');
                patch.push_str(line);
                patch.push('\n');
            }
            patch.push_str("*** End Patch\n");
            return if *custom {
                ToolCall {
                    name: "apply_patch".into(),
                    custom_input: Some(patch),
                    arguments: Value::Null,
                }
            } else {
                function("apply_patch", json!({ "input": patch }))
            };
        }
        let body = content.strip_suffix('\n').unwrap_or(content);
        let command = format!(
            "cat > '{}' <<'MOCK_EOF'\n{body}\nMOCK_EOF",
            path.replace('\'', "'\\''")
        );
        return shell_call(&command, conv, protocol);
    }
    if let Some(path) = step.get("read").and_then(Value::as_str) {
        if conv.has_tool("read_file") {
            return function("read_file", json!({ "file_path": path }));
        }
        if conv.has_tool("read") {
            return function("read", json!({ "filePath": path }));
        }
        if conv.has_tool("view_image") {
            return function("view_image", json!({ "path": path }));
        }
        return shell_call(&format!("cat '{path}'"), conv, protocol);
    }
    let command = step["shell"].as_str().unwrap_or("true");
    shell_call(command, conv, protocol)
}

fn shell_call(command: &str, conv: &Conversation, protocol: Protocol) -> ToolCall {
    let (name, arguments) = if conv.has_tool("run_shell_command") {
        (
            "run_shell_command",
            json!({"command": command, "description": "mock shell step"}),
        )
    } else if conv.has_tool("bash") {
        (
            "bash",
            json!({"command": command, "description": "mock shell step"}),
        )
    } else if conv.has_tool("exec_command") {
        ("exec_command", json!({ "cmd": command }))
    } else if conv.has_tool("shell_command") {
        ("shell_command", json!({ "command": command }))
    } else if conv.has_tool("shell") {
        ("shell", json!({"command": ["bash", "-lc", command]}))
    } else {
        match protocol {
            Protocol::Gemini { .. } => (
                "run_shell_command",
                json!({"command": command, "description": "mock shell step"}),
            ),
            Protocol::Chat => (
                "bash",
                json!({"command": command, "description": "mock shell step"}),
            ),
            Protocol::Responses => ("exec_command", json!({ "cmd": command })),
        }
    };
    ToolCall {
        name: name.to_string(),
        custom_input: None,
        arguments,
    }
}

/// A value that satisfies `schema` (first enum value, minimum numbers, empty arrays).
fn from_schema(schema: &Value) -> Value {
    if let Some(first) = schema["enum"].as_array().and_then(|e| e.first()) {
        return first.clone();
    }
    let kind = schema["type"].as_str().unwrap_or("").to_ascii_lowercase();
    match kind.as_str() {
        "string" => json!("mock"),
        "integer" | "number" => schema.get("minimum").cloned().unwrap_or_else(|| json!(1)),
        "boolean" => json!(false),
        "array" => {
            let min = schema["minItems"].as_u64().unwrap_or(0) as usize;
            Value::Array(vec![from_schema(&schema["items"]); min])
        }
        "null" => Value::Null,
        _ => {
            let mut object = serde_json::Map::new();
            if let Some(properties) = schema["properties"].as_object() {
                for (name, sub) in properties {
                    object.insert(name.clone(), from_schema(sub));
                }
            }
            Value::Object(object)
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Emitting the answer

struct Emit<'a> {
    state: &'a Arc<State>,
    protocol: Protocol,
    stream: bool,
    include_usage: bool,
    model: String,
    input_tokens: u64,
}

/// A streamed body: each part is one read (so one flushed chunk), after its pause.
struct Paced {
    parts: VecDeque<(Duration, Vec<u8>)>,
    current: Vec<u8>,
    pos: usize,
    state: Arc<State>,
}

impl Read for Paced {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.pos >= self.current.len() {
            let Some((pause, bytes)) = self.parts.pop_front() else {
                return Ok(0);
            };
            self.state.sleep(pause);
            self.current = bytes;
            self.pos = 0;
        }
        let n = buf.len().min(self.current.len() - self.pos);
        buf[..n].copy_from_slice(&self.current[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Splits `text` into at most `count` non-empty pieces on character boundaries.
fn split_text(text: &str, count: usize) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    if chars.is_empty() {
        return vec![String::new()];
    }
    let size = chars.len().div_ceil(count.max(1));
    chars.chunks(size).map(|c| c.iter().collect()).collect()
}

impl Emit<'_> {
    fn send(&self, request: tiny_http::Request, plan: Plan) {
        if let Answer::Error { status, message } = &plan.answer {
            let body = match self.protocol {
                Protocol::Gemini { .. } => json!({"error": {
                    "code": status, "message": message, "status": google_status(*status)}}),
                _ => json!({"error": {
                    "message": message, "type": "mock_error", "param": null,
                    "code": status.to_string()}}),
            };
            return respond_json(request, *status, &body);
        }
        let output_tokens = match &plan.answer {
            Answer::Text(text) => (text.len() as u64 / 4).max(1),
            _ => 10,
        };
        let usage = (self.input_tokens, output_tokens);
        if !self.stream {
            let body = match self.protocol {
                Protocol::Responses => self.responses_object(&plan.answer, usage, "completed"),
                Protocol::Chat => self.chat_object(&plan.answer, usage),
                Protocol::Gemini { .. } => self.gemini_chunk(&plan.answer, usage),
            };
            return respond_json(request, 200, &body);
        }
        let events: Vec<(Duration, String)> = match self.protocol {
            Protocol::Responses => self.responses_events(&plan, usage),
            Protocol::Chat => self.chat_events(&plan, usage),
            Protocol::Gemini { .. } => self.gemini_events(&plan, usage),
        };
        let body = Paced {
            parts: events
                .into_iter()
                .map(|(pause, text)| (pause, text.into_bytes()))
                .collect(),
            current: Vec::new(),
            pos: 0,
            state: Arc::clone(self.state),
        };
        let response = tiny_http::Response::new(
            tiny_http::StatusCode(200),
            vec![
                header("Content-Type", "text/event-stream"),
                header("Cache-Control", "no-cache"),
            ],
            body,
            None,
            None,
        );
        let _ = request.respond(response);
    }

    fn id(&self, prefix: &str) -> String {
        format!("{prefix}_mock{:06}", self.state.next_id())
    }

    // --- OpenAI Responses ---

    fn responses_usage(&self, (input, output): (u64, u64)) -> Value {
        json!({
            "input_tokens": input,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": output,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": input + output
        })
    }

    fn responses_item(&self, answer: &Answer, id: &str) -> Value {
        match answer {
            Answer::Text(text) => json!({
                "type": "message", "id": id, "status": "completed", "role": "assistant",
                "content": [{"type": "output_text", "text": text, "annotations": []}]
            }),
            Answer::Call(call) => match &call.custom_input {
                Some(input) => json!({
                    "type": "custom_tool_call", "id": id, "status": "completed",
                    "call_id": self.id("call"), "name": call.name, "input": input
                }),
                None => json!({
                    "type": "function_call", "id": id, "status": "completed",
                    "call_id": self.id("call"), "name": call.name,
                    "arguments": call.arguments.to_string()
                }),
            },
            Answer::Error { .. } => Value::Null,
        }
    }

    fn responses_object(&self, answer: &Answer, usage: (u64, u64), status: &str) -> Value {
        let item = self.responses_item(answer, &self.id("item"));
        json!({
            "id": self.id("resp"), "object": "response", "created_at": unix_ms() / 1000,
            "status": status, "model": self.model, "output": [item],
            "usage": self.responses_usage(usage)
        })
    }

    fn responses_events(&self, plan: &Plan, usage: (u64, u64)) -> Vec<(Duration, String)> {
        let mut events = Vec::new();
        let mut seq = 0u64;
        let mut push = |pause: Duration, kind: &str, mut data: Value| {
            data["type"] = json!(kind);
            data["sequence_number"] = json!(seq);
            seq += 1;
            events.push((pause, format!("event: {kind}\ndata: {data}\n\n")));
        };
        let response_id = self.id("resp");
        let created_at = unix_ms() / 1000;
        let envelope = |status: &str, output: Value, usage: Option<Value>| {
            let mut response = json!({
                "id": response_id, "object": "response", "created_at": created_at,
                "status": status, "model": self.model, "output": output
            });
            if let Some(usage) = usage {
                response["usage"] = usage;
            }
            response
        };
        push(
            Duration::ZERO,
            "response.created",
            json!({"response": envelope("in_progress", json!([]), None)}),
        );
        let item_id = self.id(match &plan.answer {
            Answer::Text(_) => "msg",
            _ => "fc",
        });
        let item = self.responses_item(&plan.answer, &item_id);
        match &plan.answer {
            Answer::Text(text) => {
                let started = json!({
                    "type": "message", "id": item_id, "status": "in_progress",
                    "role": "assistant", "content": []
                });
                push(
                    Duration::ZERO,
                    "response.output_item.added",
                    json!({"output_index": 0, "item": started}),
                );
                for (i, piece) in split_text(text, plan.chunks).into_iter().enumerate() {
                    let pause = if i == 0 {
                        Duration::ZERO
                    } else {
                        plan.chunk_delay
                    };
                    push(
                        pause,
                        "response.output_text.delta",
                        json!({"item_id": item_id, "output_index": 0, "content_index": 0,
                               "delta": piece}),
                    );
                }
                push(
                    Duration::ZERO,
                    "response.output_text.done",
                    json!({"item_id": item_id, "output_index": 0, "content_index": 0,
                           "text": text}),
                );
            }
            _ => push(
                Duration::ZERO,
                "response.output_item.added",
                json!({"output_index": 0, "item": item}),
            ),
        }
        push(
            Duration::ZERO,
            "response.output_item.done",
            json!({"output_index": 0, "item": item}),
        );
        push(
            Duration::ZERO,
            "response.completed",
            json!({"response": envelope("completed", json!([item]),
                                        Some(self.responses_usage(usage)))}),
        );
        events
    }

    // --- OpenAI Chat Completions ---

    fn chat_usage(&self, (input, output): (u64, u64)) -> Value {
        json!({"prompt_tokens": input, "completion_tokens": output,
               "total_tokens": input + output})
    }

    fn chat_tool_call(&self, call: &ToolCall) -> Value {
        let arguments = match &call.custom_input {
            Some(input) => json!({ "input": input }).to_string(),
            None => call.arguments.to_string(),
        };
        json!({"id": self.id("call"), "type": "function",
               "function": {"name": call.name, "arguments": arguments}})
    }

    fn chat_object(&self, answer: &Answer, usage: (u64, u64)) -> Value {
        let (message, finish) = match answer {
            Answer::Text(text) => (json!({"role": "assistant", "content": text}), "stop"),
            Answer::Call(call) => (
                json!({"role": "assistant", "content": null,
                       "tool_calls": [self.chat_tool_call(call)]}),
                "tool_calls",
            ),
            Answer::Error { .. } => (Value::Null, "stop"),
        };
        json!({
            "id": self.id("chatcmpl"), "object": "chat.completion", "created": unix_ms() / 1000,
            "model": self.model,
            "choices": [{"index": 0, "message": message, "finish_reason": finish}],
            "usage": self.chat_usage(usage)
        })
    }

    fn chat_events(&self, plan: &Plan, usage: (u64, u64)) -> Vec<(Duration, String)> {
        let id = self.id("chatcmpl");
        let created = unix_ms() / 1000;
        let chunk = |choices: Value| {
            json!({"id": id, "object": "chat.completion.chunk", "created": created,
                   "model": self.model, "choices": choices})
        };
        let mut events = Vec::new();
        let mut push = |pause: Duration, data: Value| {
            events.push((pause, format!("data: {data}\n\n")));
        };
        let finish = match &plan.answer {
            Answer::Text(text) => {
                push(
                    Duration::ZERO,
                    chunk(
                        json!([{"index": 0, "delta": {"role": "assistant", "content": ""},
                                  "finish_reason": null}]),
                    ),
                );
                for (i, piece) in split_text(text, plan.chunks).into_iter().enumerate() {
                    let pause = if i == 0 {
                        Duration::ZERO
                    } else {
                        plan.chunk_delay
                    };
                    push(
                        pause,
                        chunk(json!([{"index": 0, "delta": {"content": piece},
                                      "finish_reason": null}])),
                    );
                }
                "stop"
            }
            Answer::Call(call) => {
                let mut tool_call = self.chat_tool_call(call);
                tool_call["index"] = json!(0);
                push(
                    Duration::ZERO,
                    chunk(
                        json!([{"index": 0, "delta": {"role": "assistant", "content": null,
                                                       "tool_calls": [tool_call]},
                                  "finish_reason": null}]),
                    ),
                );
                "tool_calls"
            }
            Answer::Error { .. } => "stop",
        };
        push(
            Duration::ZERO,
            chunk(json!([{"index": 0, "delta": {}, "finish_reason": finish}])),
        );
        if self.include_usage {
            let mut last = chunk(json!([]));
            last["usage"] = self.chat_usage(usage);
            push(Duration::ZERO, last);
        }
        events.push((Duration::ZERO, "data: [DONE]\n\n".to_string()));
        events
    }

    // --- Gemini ---

    fn gemini_usage(&self, (input, output): (u64, u64)) -> Value {
        json!({"promptTokenCount": input, "candidatesTokenCount": output,
               "totalTokenCount": input + output})
    }

    fn gemini_part(answer: &Answer, text: &str) -> Value {
        match answer {
            Answer::Call(call) => {
                json!({"functionCall": {"name": call.name, "args": call.arguments}})
            }
            _ => json!({ "text": text }),
        }
    }

    /// One `GenerateContentResponse`; `usage` marks the last one (finish reason and counts).
    fn gemini_response(&self, part: Value, usage: Option<Value>) -> Value {
        let mut candidate = json!({"content": {"role": "model", "parts": [part]}, "index": 0});
        let mut response = json!({"candidates": [], "modelVersion": self.model});
        if let Some(usage) = usage {
            candidate["finishReason"] = json!("STOP");
            response["usageMetadata"] = usage;
        }
        response["candidates"] = json!([candidate]);
        response
    }

    fn gemini_chunk(&self, answer: &Answer, usage: (u64, u64)) -> Value {
        let text = match answer {
            Answer::Text(text) => text.as_str(),
            _ => "",
        };
        self.gemini_response(
            Self::gemini_part(answer, text),
            Some(self.gemini_usage(usage)),
        )
    }

    fn gemini_events(&self, plan: &Plan, usage: (u64, u64)) -> Vec<(Duration, String)> {
        let sse = |data: Value| format!("data: {data}\r\n\r\n");
        match &plan.answer {
            Answer::Text(text) => {
                let pieces = split_text(text, plan.chunks);
                let last = pieces.len() - 1;
                pieces
                    .into_iter()
                    .enumerate()
                    .map(|(i, piece)| {
                        let pause = if i == 0 {
                            Duration::ZERO
                        } else {
                            plan.chunk_delay
                        };
                        let usage = (i == last).then(|| self.gemini_usage(usage));
                        (
                            pause,
                            sse(self.gemini_response(json!({ "text": piece }), usage)),
                        )
                    })
                    .collect()
            }
            answer => vec![(Duration::ZERO, sse(self.gemini_chunk(answer, usage)))],
        }
    }
}

fn google_status(status: u16) -> &'static str {
    match status {
        400 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        429 => "RESOURCE_EXHAUSTED",
        500 => "INTERNAL",
        503 => "UNAVAILABLE",
        504 => "DEADLINE_EXCEEDED",
        _ => "UNKNOWN",
    }
}
