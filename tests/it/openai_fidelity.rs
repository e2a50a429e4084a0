//! Drop-in fidelity for real OpenAI clients: the official Python SDK (pinned in
//! `scripts/sdk/requirements.txt`) against Codara with the real CLIs and the mock model — retries,
//! streamed usage, refused parameters, model checks, `GET /v1/models/{id}`, action paths.

use crate::support::mock_model::{clis_bin, directive, MockModel, CODEX_MODEL};
use crate::support::{self, Server};
use serde_json::{json, Value};

struct Rig {
    mock: MockModel,
    server: Server,
    token: String,
}

fn rig(extra_toml: &str) -> Rig {
    rig_with(extra_toml, |toml| toml)
}

/// A rig whose provider blocks `edit` may change.
fn rig_with(extra_toml: &str, edit: impl FnOnce(String) -> String) -> Rig {
    let mock = MockModel::start();
    let toml = format!(
        "{}\n[workspace]\nlock_timeout_seconds = 30\n{extra_toml}",
        edit(mock.codara_toml(&clis_bin()))
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

    /// Runs `script` with the SDK as the operator; asserts it exits 0 and returns its stdout.
    fn sdk(&self, script: &str) -> String {
        let (code, out, err) = support::sdk_python(self.server.addr, &self.token, script);
        assert_eq!(code, 0, "SDK script failed:\n{err}\n{out}");
        out
    }

    fn model_requests(&self) -> usize {
        self.mock
            .requests()
            .iter()
            .filter(|r| r.path.ends_with("/responses") || r.path.contains("chat/completions"))
            .count()
    }
}

#[test]
fn a_failed_turn_is_not_retried_by_the_sdk() {
    let rig = rig("");
    let failing = directive(json!({"http_error": 400, "message": "the model refused"}));
    // openai-python retries 5xx twice by default unless the server says `x-should-retry: false`.
    let out = rig.sdk(&format!(
        r#"
import openai
client = openai.OpenAI()
try:
    client.chat.completions.create(model="uag-codex", messages=[{{"role": "user", "content": {failing:?}}}])
    print("no error")
except openai.APIStatusError as e:
    print(e.status_code, e.response.headers.get("x-should-retry"), e.response.headers.get("retry-after"))
"#
    ));
    assert_eq!(out.trim(), "502 false None", "{out}");
    assert_eq!(rig.model_requests(), 1, "the agent turn ran once");

    // A refusal before anything ran may be retried, and says when.
    let raw = rig.chat(
        json!({"model": "uag-codex", "messages": [{"role": "user", "content": "x"}], "n": 3}),
    );
    assert_eq!(raw.status, 400);
    assert_eq!(raw.header("x-should-retry"), Some("false"));
}

#[test]
fn safe_refusals_say_when_to_retry() {
    let server = support::server()
        .toml("[server]\nturn_workers = 1\n")
        .start();
    let token = server.login();
    let user = json!({"email": "retry@example.com", "display_name": "R", "max_concurrency": 1});
    let created = server.post_json("/management/v1/users", Some(&token), &user.to_string());
    let key = created.json()["data"]["api_key"]["key"]
        .as_str()
        .unwrap()
        .to_string();
    // Guessing credentials five times earns a 429 with Retry-After: safe to retry later.
    for _ in 0..5 {
        server.get(
            "/v1/models",
            Some("uagk_live_wrongwrongwrongwrongwrongwron"),
        );
    }
    let throttled = server.get("/v1/models", Some(&key));
    assert_eq!(throttled.status, 429, "{}", throttled.text());
    assert!(throttled.header("retry-after").is_some());
    assert_eq!(throttled.header("x-should-retry"), Some("true"));
}

#[test]
fn streamed_usage_appears_once_and_only_when_asked() {
    let rig = rig("");
    let out = rig.sdk(
        r#"
import json, openai
client = openai.OpenAI()
for include in (True, False):
    kwargs = {"stream_options": {"include_usage": True}} if include else {}
    stream = client.chat.completions.create(model="uag-gemini", stream=True,
        messages=[{"role": "user", "content": "count my tokens"}], **kwargs)
    with_usage = []
    total = 0
    text = ""
    for chunk in stream:
        if chunk.usage is not None:
            with_usage.append(len(chunk.choices))
            total += chunk.usage.total_tokens
        for choice in chunk.choices:
            text += choice.delta.content or ""
    print(json.dumps({"include": include, "with_usage": with_usage, "total": total, "text": text}))
"#,
    );
    let lines: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{out}");
    // With include_usage: exactly one chunk carries usage, and it is the `choices: []` one.
    assert_eq!(lines[0]["with_usage"], json!([0]), "{out}");
    assert!(lines[0]["total"].as_u64().unwrap() > 0);
    assert!(lines[0]["text"]
        .as_str()
        .unwrap()
        .contains("count my tokens"));
    // Without it: no chunk carries usage at all.
    assert_eq!(lines[1]["with_usage"], json!([]), "{out}");
    // The non-streaming total is the same figure, counted once.
    let response = rig.chat(json!({"model": "uag-gemini",
        "messages": [{"role": "user", "content": "count my tokens"}]}));
    assert_eq!(response.status, 200, "{}", response.text());
}

#[test]
fn parameters_an_agent_cannot_honour_are_refused_by_name() {
    let rig = rig("");
    let base = json!({"model": "uag-codex", "messages": [{"role": "user", "content": "hi"}]});
    for (field, value) in [
        ("n", json!(2)),
        (
            "tools",
            json!([{"type": "function", "function": {"name": "f", "parameters": {}}}]),
        ),
        ("tool_choice", json!("required")),
        ("functions", json!([{"name": "f", "parameters": {}}])),
    ] {
        let mut body = base.clone();
        body[field] = value;
        let response = rig.chat(body);
        assert_eq!(response.status, 400, "{field}: {}", response.text());
        assert_eq!(
            response.json()["error"]["param"],
            field,
            "{}",
            response.text()
        );
    }
    let mut body = base.clone();
    body["response_format"] = json!({"type": "xml"});
    let response = rig.chat(body);
    assert_eq!(response.status, 400, "{}", response.text());
    assert_eq!(response.json()["error"]["param"], "response_format.type");
    assert_eq!(rig.model_requests(), 0, "nothing ran");
    // Sampling parameters are accepted (and have no effect on an agent turn).
    let mut body = base.clone();
    for (field, value) in [
        ("temperature", json!(0.2)),
        ("top_p", json!(0.9)),
        ("max_tokens", json!(100)),
        ("max_completion_tokens", json!(100)),
        ("stop", json!(["\n\n"])),
        ("seed", json!(7)),
        ("user", json!("someone")),
        ("presence_penalty", json!(0.1)),
        ("frequency_penalty", json!(0.1)),
        ("n", json!(1)),
        ("tools", json!([])),
        ("response_format", json!({"type": "text"})),
    ] {
        body[field] = value;
    }
    let response = rig.chat(body);
    assert_eq!(response.status, 200, "{}", response.text());
}

#[test]
fn models_are_checked_against_the_providers_list() {
    let rig = rig("");
    let response = rig.chat(json!({"provider": "codex", "model": "no-such-model",
        "messages": [{"role": "user", "content": "hi"}]}));
    assert_eq!(response.status, 400, "{}", response.text());
    let error = response.json()["error"].clone();
    assert_eq!(error["param"], "model");
    assert!(
        error["message"].as_str().unwrap().contains(CODEX_MODEL),
        "lists the models: {error}"
    );
    assert_eq!(rig.model_requests(), 0);

    // `allow_any_model` lets any id through to the CLI.
    let open = rig_with("", |toml| {
        toml.replace(
            "[providers.codex]\n",
            "[providers.codex]\nallow_any_model = true\n",
        )
    });
    let response = open.chat(json!({"provider": "codex", "model": "gpt-5-codex-any",
        "messages": [{"role": "user", "content": "hi"}]}));
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(response.json()["model"], "gpt-5-codex-any");
}

#[test]
fn a_model_can_be_retrieved_by_id() {
    let rig = rig("");
    let out = rig.sdk(&format!(
        r#"
import openai
client = openai.OpenAI()
m = client.models.retrieve("{CODEX_MODEL}")
print(m.id, m.owned_by)
m = client.models.retrieve("uag-gemini")
print(m.id, m.owned_by)
try:
    client.models.retrieve("nope")
except openai.NotFoundError as e:
    print("404", e.body["code"] if isinstance(e.body, dict) else e.body)
"#
    ));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines,
        [
            format!("{CODEX_MODEL} codex").as_str(),
            "uag-gemini gemini",
            "404 not_found"
        ],
        "{out}"
    );
    // Ids with a slash work too.
    let opencode = rig
        .server
        .get("/v1/models/mock/mock-model", Some(&rig.token));
    assert_eq!(opencode.status, 200, "{}", opencode.text());
    assert_eq!(opencode.json()["owned_by"], "opencode");
}

#[test]
fn action_paths_are_workspace_relative() {
    let rig = rig("");
    let write = directive(json!({"write": {"path": "notes/hello.txt", "content": "hi\n"}}));
    for provider in ["codex", "opencode"] {
        let response = rig.chat(
            json!({"model": format!("uag-{provider}"), "workspace_id": provider,
            "messages": [{"role": "user", "content": write}]}),
        );
        assert_eq!(response.status, 200, "{provider}: {}", response.text());
        let body = response.json();
        let paths: Vec<&str> = body["actions"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["type"] == "file_change")
            .map(|a| a["path"].as_str().unwrap())
            .collect();
        assert_eq!(paths, ["notes/hello.txt"], "{provider}: {body}");
        assert_eq!(body["modified_files"], json!(["notes/hello.txt"]));
    }
}
