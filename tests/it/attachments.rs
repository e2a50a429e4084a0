//! Image inputs and `response_format` through the real binary, the real CLIs and the mock model:
//! an image part reaches each CLI's model request and lands in `.codara/attachments/` without
//! being a change of the turn; http image URLs are fetched only when the operator allows private
//! addresses; bad images are refused before anything runs; codex enforces a JSON schema with
//! `--output-schema`, gemini and opencode are instructed and their replies checked.

use crate::support::mock_model::{clis_bin, directive, MockModel};
use crate::support::{self, Server};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::net::SocketAddr;
use std::path::PathBuf;

/// A real 1×1 PNG (one red pixel): the CLIs read and forward real image files.
const PNG: &[u8] = &[
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52,
    0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x02, 0x00, 0x00, 0x00, 0x90, 0x77, 0x53,
    0xde, 0x00, 0x00, 0x00, 0x0c, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9c, 0x63, 0xf8, 0xcf, 0xc0, 0x00,
    0x00, 0x03, 0x01, 0x01, 0x00, 0xc9, 0xfe, 0x92, 0xef, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4e,
    0x44, 0xae, 0x42, 0x60, 0x82,
];

struct Rig {
    mock: MockModel,
    server: Server,
    token: String,
}

/// A rig; `extra_toml` goes first, and a line `mode = "exec"` in it applies to every provider.
fn rig(extra_toml: &str) -> Rig {
    let mock = MockModel::start();
    let exec = "mode = \"exec\"\n";
    let mut providers = mock.codara_toml(&clis_bin());
    if extra_toml.contains(exec) {
        for p in ["codex", "gemini", "opencode"] {
            providers = providers.replace(
                &format!("[providers.{p}]\n"),
                &format!("[providers.{p}]\n{exec}"),
            );
        }
    }
    let toml = format!(
        "{}\n{providers}\n[workspace]\nlock_timeout_seconds = 30\n",
        extra_toml.replace(exec, "")
    );
    let server = support::server().toml(&toml).start();
    let token = server.login();
    Rig {
        mock,
        server,
        token,
    }
}

impl Rig {
    fn chat(&self, body: Value) -> support::HttpResponse {
        self.server
            .post_json("/v1/chat/completions", Some(&self.token), &body.to_string())
    }

    /// The bodies of the model requests (not token counts or model lists) as JSON text.
    fn model_requests(&self) -> Vec<String> {
        self.mock
            .requests()
            .iter()
            .filter(|r| !r.path.contains("countTokens") && !r.path.ends_with("/models"))
            .map(|r| r.body_text())
            .collect()
    }

    fn workspace(&self, id: &str) -> PathBuf {
        self.server.dir.join("workspaces/operator").join(id)
    }

    /// The stored turns of the session labelled `label`.
    fn stored_turns(&self, label: &str) -> Vec<Value> {
        let list = self
            .server
            .get("/management/v1/sessions", Some(&self.token));
        let session = list.json()["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["client_session_id"] == label)
            .unwrap_or_else(|| panic!("no session {label}: {}", list.text()))
            .clone();
        let detail = self.server.get(
            &format!(
                "/management/v1/sessions/{}",
                session["id"].as_str().unwrap()
            ),
            Some(&self.token),
        );
        detail.json()["data"]["turns"].as_array().unwrap().clone()
    }
}

/// Standard base64 with padding (what clients put in data URLs).
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.len();
        let acc = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, b)| acc | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            out.push(if i <= n {
                char::from(ALPHABET[((acc >> (18 - 6 * i)) & 63) as usize])
            } else {
                '='
            });
        }
    }
    out
}

fn data_url(bytes: &[u8]) -> String {
    format!("data:image/png;base64,{}", base64(bytes))
}

/// A user message with a text part and an image part pointing at `url`.
fn with_image(text: &str, url: &str) -> Value {
    json!({"role": "user", "content": [
        {"type": "text", "text": text},
        {"type": "image_url", "image_url": {"url": url}},
    ]})
}

/// Where the engine saves an image: `.codara/attachments/<sha256 prefix>.png`.
fn attachment(bytes: &[u8]) -> String {
    let hash: String = Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!(".codara/attachments/{}.png", &hash[..16])
}

fn content(response: &Value) -> String {
    response["choices"][0]["message"]["content"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// Sends an image with `text` (through a rig configured with `toml`) and checks that some model
/// request carries it in the provider's own image part (`shape`), and that it was saved.
fn image_reaches_the_model(provider: &str, toml: &str, text: &str, shape: &str) -> Rig {
    let rig = rig(toml);
    let response = rig.chat(json!({
        "model": format!("uag-{provider}"),
        "messages": [with_image(text, &data_url(PNG))],
        "client_session_id": "img",
        "workspace_id": "pics",
    }));
    assert_eq!(response.status, 200, "{provider}: {}", response.text());
    let body = response.json();

    // The model request carries the image bytes, in the provider's own image part.
    let encoded = base64(PNG);
    let requests = rig.model_requests();
    assert!(
        requests
            .iter()
            .any(|b| b.contains(&encoded) && b.contains(shape)),
        "{provider}: no model request carries the image as `{shape}`:\n{}",
        requests.join("\n")
    );
    // The image is saved in the workspace, before the turn's first snapshot: not a change of
    // this turn.
    let saved = attachment(PNG);
    assert_eq!(
        std::fs::read(rig.workspace("pics").join(&saved)).unwrap(),
        PNG,
        "{provider}"
    );
    let modified = body["modified_files"].as_array().unwrap();
    assert!(
        modified
            .iter()
            .all(|f| !f.as_str().unwrap().contains(".codara")),
        "{provider}: {body}"
    );
    assert!(
        !body["diff"].as_str().unwrap().contains(".codara"),
        "{body}"
    );
    rig
}

#[test]
fn an_image_reaches_codex_as_an_input_image() {
    image_reaches_the_model("codex", "", "what is this?", "\"type\":\"input_image\"");
}

#[test]
fn an_image_reaches_opencode_as_an_image_url_part() {
    image_reaches_the_model("opencode", "", "what is this?", "\"type\":\"image_url\"");
}

#[test]
fn an_image_reaches_warm_gemini_inline() {
    // Warm (ACP): the image goes in the prompt as an `image` block, no file reference needed.
    let rig = image_reaches_the_model("gemini", "", "what is this?", "\"inlineData\"");
    let first = rig.model_requests().into_iter().next().unwrap();
    assert!(!first.contains("Attached image(s)"), "{first}");
}

#[test]
fn an_image_reaches_confined_exec_gemini_through_its_read_file_tool() {
    // Under Landlock gemini -p cannot resolve `@` references, so the prompt names the
    // attachment and the model reads it (here the mock, told to): the tool result carries
    // `inlineData`.
    let read = directive(json!({"read": attachment(PNG), "final": "a red pixel"}));
    let rig = image_reaches_the_model("gemini", "mode = \"exec\"\n", &read, "\"inlineData\"");
    let first = rig.model_requests().into_iter().next().unwrap();
    assert!(
        first.contains(&format!(
            "Attached image(s), saved in the workspace: {}",
            attachment(PNG)
        )),
        "{first}"
    );
}

#[test]
fn an_image_reaches_unconfined_exec_gemini_as_an_at_reference() {
    // Without the sandbox, gemini -p inlines `@<path>` itself: no tool call needed.
    let rig = image_reaches_the_model(
        "gemini",
        "mode = \"exec\"\n[sandbox]\nmode = \"off\"\n",
        "what is this?",
        "\"inlineData\"",
    );
    assert!(rig.model_requests()[0].contains(&base64(PNG)));
}

/// A loopback HTTP server for image URLs: `/red.png`, `/moved` (a redirect to it), else 404.
fn image_server() -> (SocketAddr, std::sync::Arc<tiny_http::Server>) {
    let server = std::sync::Arc::new(tiny_http::Server::http("127.0.0.1:0").unwrap());
    let addr = server.server_addr().to_ip().unwrap();
    let serving = std::sync::Arc::clone(&server);
    std::thread::spawn(move || {
        while let Ok(request) = serving.recv() {
            let response = match request.url() {
                "/red.png" => tiny_http::Response::from_data(PNG.to_vec()),
                "/moved" => tiny_http::Response::from_data(Vec::new())
                    .with_status_code(302)
                    .with_header(
                        tiny_http::Header::from_bytes(&b"Location"[..], &b"/red.png"[..]).unwrap(),
                    ),
                _ => tiny_http::Response::from_data(b"no".to_vec()).with_status_code(404),
            };
            let _ = request.respond(response);
        }
    });
    (addr, server)
}

#[test]
fn http_image_urls_need_the_private_fetch_setting_for_loopback() {
    let (addr, images) = image_server();
    let chat = |rig: &Rig, url: &str| {
        rig.chat(json!({"model": "uag-codex", "messages": [with_image("look", url)]}))
    };

    // Allowed by the operator: fetched, saved and sent like a data URL.
    let open = rig("[server]\nimage_fetch_private = true\n");
    let response = chat(&open, &format!("http://{addr}/red.png"));
    assert_eq!(response.status, 200, "{}", response.text());
    assert!(open
        .model_requests()
        .iter()
        .any(|b| b.contains(&base64(PNG))));
    assert!(open.workspace("default").join(attachment(PNG)).is_file());
    // Still never a redirect (each hop would need its own check), a failure or a dead port.
    open.mock.reset();
    for (url, needle) in [
        (format!("http://{addr}/moved"), "redirects are not followed"),
        (format!("http://{addr}/missing.png"), "HTTP 404"),
        (
            "http://127.0.0.1:1/x.png".to_string(),
            "could not be fetched",
        ),
    ] {
        let response = chat(&open, &url);
        assert_eq!(response.status, 400, "{url}: {}", response.text());
        let error = &response.json()["error"];
        assert_eq!(error["param"], "messages[0].content[1]", "{url}");
        assert!(
            error["message"].as_str().unwrap().contains(needle),
            "{url}: {error}"
        );
    }
    assert!(open.model_requests().is_empty(), "nothing ran");

    // The default: loopback (by address or by name) is refused before any connection.
    let closed = rig("");
    for url in [
        format!("http://{addr}/red.png"),
        format!("http://localhost:{}/red.png", addr.port()),
    ] {
        let response = chat(&closed, &url);
        assert_eq!(response.status, 400, "{url}: {}", response.text());
        let error = &response.json()["error"];
        assert_eq!(error["param"], "messages[0].content[1]");
        assert!(
            error["message"]
                .as_str()
                .unwrap()
                .contains("not a public address"),
            "{error}"
        );
    }
    assert!(closed.model_requests().is_empty(), "nothing ran");
    images.unblock();
}

#[test]
fn bad_images_are_refused_naming_the_part_before_anything_runs() {
    // Room for an oversized image in the body, so that the image limit is what refuses it.
    let rig = rig("[server]\nmax_body_bytes = 16000000\n");
    let mut oversized = PNG.to_vec();
    oversized.resize(10 * 1024 * 1024 + 1, 0);
    let cases = [
        (
            data_url(b"just some text, not an image"),
            "not a PNG, JPEG, GIF or WebP",
        ),
        (data_url(&oversized), "larger than 10 MiB"),
        (
            "data:image/png;base64,iVBORw0K!!!!".to_string(),
            "not valid base64",
        ),
        ("file:///etc/passwd".to_string(), "scheme `file`"),
    ];
    for (url, needle) in cases {
        let response = rig.chat(json!({
            "model": "uag-gemini",
            "messages": [
                {"role": "system", "content": "be brief"},
                with_image("look", &url),
            ],
        }));
        assert_eq!(response.status, 400, "{needle}: {}", response.text());
        assert_eq!(response.header("x-should-retry"), Some("false"));
        let error = &response.json()["error"];
        assert_eq!(error["param"], "messages[1].content[1]", "{needle}");
        assert!(
            error["message"].as_str().unwrap().contains(needle),
            "{needle}: {error}"
        );
    }
    assert!(rig.mock.requests().is_empty(), "no CLI ran");
    assert!(!rig.workspace("default").join(".codara").exists());
}

#[test]
fn codex_enforces_a_json_schema_built_by_the_mock() {
    let rig = rig("");
    let schema = json!({
        "type": "object",
        "properties": {
            "title": {"type": "string"},
            "count": {"type": "integer", "minimum": 3},
            "tags": {"type": "array", "items": {"type": "string"}},
        },
        "required": ["title", "count", "tags"],
        "additionalProperties": false,
    });
    let format = json!({"type": "json_schema",
        "json_schema": {"name": "report", "strict": true, "schema": schema}});
    let response = rig.chat(json!({
        "model": "uag-codex",
        "messages": [{"role": "user", "content": "summarize the repository"}],
        "response_format": format,
    }));
    assert_eq!(response.status, 200, "{}", response.text());
    let reply: Value = serde_json::from_str(&content(&response.json())).unwrap();
    assert_eq!(reply["title"], "mock", "{reply}");
    assert_eq!(reply["count"], 3, "{reply}");
    assert!(reply["tags"].is_array(), "{reply}");
    // Codex was given the schema (`--output-schema`), not an instruction in the prompt.
    let request = rig.model_requests().pop().unwrap();
    let request: Value = serde_json::from_str(&request).unwrap();
    assert_eq!(request["text"]["format"]["type"], "json_schema");
    assert_eq!(request["text"]["format"]["schema"], schema);

    // Streamed: the checked JSON arrives whole.
    let mut streamed = json!({
        "model": "uag-codex",
        "messages": [{"role": "user", "content": "again"}],
        "response_format": format,
        "stream": true,
    });
    let raw = rig.chat(streamed.take()).text();
    let text: String = raw
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .filter_map(|c| {
            c["choices"][0]["delta"]["content"]
                .as_str()
                .map(String::from)
        })
        .collect();
    let reply: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {raw}"));
    assert_eq!(reply["count"], 3, "{raw}");
}

fn json_object_reply_passes(provider: &str) {
    let rig = rig("");
    for (reply, expected) in [
        (r#"{"a":1}"#, r#"{"a":1}"#),
        ("```json\n{\"a\":1}\n```", r#"{"a":1}"#),
    ] {
        let response = rig.chat(json!({
            "model": format!("uag-{provider}"),
            "messages": [{"role": "user", "content": directive(json!({"reply": reply}))}],
            "response_format": {"type": "json_object"},
        }));
        assert_eq!(response.status, 200, "{provider}: {}", response.text());
        assert_eq!(content(&response.json()), expected, "{provider}");
    }
}

fn text_reply_to_a_json_schema_is_502(provider: &str) {
    let rig = rig("");
    let response = rig.chat(json!({
        "model": format!("uag-{provider}"),
        "messages": [{"role": "user",
                      "content": directive(json!({"reply": "Sure, here is your answer."}))}],
        "response_format": {"type": "json_schema", "json_schema": {"name": "answer",
            "schema": {"type": "object", "properties": {"a": {"type": "integer"}},
                       "required": ["a"]}}},
        "client_session_id": "json",
    }));
    assert_eq!(response.status, 502, "{provider}: {}", response.text());
    assert_eq!(response.header("x-should-retry"), Some("false"));
    let error = &response.json()["error"];
    assert_eq!(error["code"], "provider_error");
    let message = error["message"].as_str().unwrap();
    assert!(
        message.contains(provider) && message.contains("not valid JSON"),
        "{message}"
    );
    // Stored like any failed turn; the prompt asked for the schema by name.
    let turns = rig.stored_turns("json");
    assert_eq!(turns.len(), 1);
    assert_eq!(turns[0]["status"], "error", "{}", turns[0]);
    let prompt = turns[0]["prompt"].as_str().unwrap();
    assert!(prompt.contains("JSON Schema `answer`"), "{prompt}");
}

#[test]
fn codex_json_object_reply_passes() {
    // `json_object` is instructed for codex too: strict mode cannot express "any object".
    json_object_reply_passes("codex");
}

#[test]
fn gemini_json_object_reply_passes() {
    json_object_reply_passes("gemini");
}

#[test]
fn opencode_json_object_reply_passes() {
    json_object_reply_passes("opencode");
}

#[test]
fn gemini_text_reply_to_a_json_schema_is_502() {
    text_reply_to_a_json_schema_is_502("gemini");
}

#[test]
fn opencode_text_reply_to_a_json_schema_is_502() {
    text_reply_to_a_json_schema_is_502("opencode");
}
