//! Agent turns through the real binary, the real CLIs (pinned in scripts/clis) and the mock model:
//! first and resumed turns, file and shell edits with per-turn diffs, errors, stalls, streaming,
//! diverged histories, concurrency on one session, revert — for each provider.

use crate::support::mock_model::{clis_bin, directive, MockModel};
use crate::support::{self, Server};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

struct Rig {
    mock: MockModel,
    server: Server,
    token: String,
}

fn rig(extra_toml: &str) -> Rig {
    rig_in(Mode::Warm, extra_toml)
}

/// How the providers run their turns (`[providers.<p>].mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Warm,
    Exec,
}

/// The mock's provider blocks in `mode`, each with `settings` (`key = value` lines) added.
fn provider_toml(mock: &MockModel, mode: Mode, settings: &str) -> String {
    let mode = match mode {
        Mode::Warm => "warm",
        Mode::Exec => "exec",
    };
    let mut toml = mock.codara_toml(&clis_bin());
    for provider in ["codex", "gemini", "opencode"] {
        toml = toml.replace(
            &format!("[providers.{provider}]\n"),
            &format!("[providers.{provider}]\nmode = \"{mode}\"\n{settings}\n"),
        );
    }
    toml
}

fn rig_in(mode: Mode, extra_toml: &str) -> Rig {
    let mock = MockModel::start();
    let toml = format!(
        "{}\n[workspace]\nlock_timeout_seconds = 30\n{extra_toml}",
        provider_toml(&mock, mode, "")
    );
    let server = support::server().toml(&toml).start();
    let token = server.login();
    Rig {
        mock,
        server,
        token,
    }
}

fn user(text: &str) -> Value {
    json!({"role": "user", "content": text})
}

fn assistant(text: &str) -> Value {
    json!({"role": "assistant", "content": text})
}

impl Rig {
    fn chat(
        &self,
        provider: &str,
        session: Option<&str>,
        messages: &[Value],
        extra: Value,
    ) -> support::HttpResponse {
        let mut body = json!({"model": format!("uag-{provider}"), "messages": messages});
        if let Some(session) = session {
            body["client_session_id"] = json!(session);
        }
        if let Some(fields) = extra.as_object() {
            for (k, v) in fields {
                body[k] = v.clone();
            }
        }
        self.server
            .post_json("/v1/chat/completions", Some(&self.token), &body.to_string())
    }

    fn ok(&self, provider: &str, session: Option<&str>, messages: &[Value]) -> Value {
        let response = self.chat(provider, session, messages, json!({}));
        assert_eq!(response.status, 200, "{provider}: {}", response.text());
        response.json()
    }

    fn session(&self, id: &str) -> Value {
        let response = self
            .server
            .get(&format!("/management/v1/sessions/{id}"), Some(&self.token));
        assert_eq!(response.status, 200, "{}", response.text());
        response.json()["data"].clone()
    }

    fn model_requests(&self) -> Vec<String> {
        self.mock
            .requests()
            .iter()
            .filter(|r| !r.path.contains("countTokens") && !r.path.ends_with("/models"))
            .map(|r| r.body_text())
            .collect()
    }
}

fn reply(response: &Value) -> String {
    response["choices"][0]["message"]["content"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn first_and_resume(provider: &str, mode: Mode) {
    let rig = rig_in(mode, "");
    let first = rig.ok(provider, Some("conv-1"), &[user("first question alpha")]);
    let first_reply = reply(&first);
    assert!(first_reply.contains("MOCK_REPLY"), "{provider}: {first}");
    let session_id = first["session_id"]
        .as_str()
        .expect("session_id")
        .to_string();
    assert_eq!(first["extensions"]["session_id"], first["session_id"]);
    assert_eq!(first["resumed"], false);
    assert!(
        first["usage"]["prompt_tokens"].as_u64().unwrap() > 0,
        "{first}"
    );

    let before = rig.model_requests().len();
    let second = rig.ok(
        provider,
        Some("conv-1"),
        &[
            user("first question alpha"),
            assistant(&first_reply),
            user("second question beta"),
        ],
    );
    assert_eq!(second["session_id"].as_str(), Some(session_id.as_str()));
    assert_eq!(second["resumed"], true, "{second}");
    // The model saw the earlier turn (the CLI keeps the history) ...
    let later: Vec<String> = rig.model_requests().into_iter().skip(before).collect();
    assert!(
        later
            .iter()
            .any(|b| b.contains("first question alpha") && b.contains("second question beta")),
        "{provider}: the resumed request lacks the history"
    );
    // ... while the gateway sent the CLI only the new message.
    let session = rig.session(&session_id);
    assert_eq!(
        session["turns"][1]["prompt"], "second question beta",
        "{session}"
    );
    assert_eq!(session["turns"][1]["resumed"], true);
    // The first question reached the CLI exactly once: each model request holds it as one
    // message (an exact JSON string), never twice (the original duplicated history every turn).
    for body in &later {
        let n = body.matches("\"first question alpha\"").count();
        assert_eq!(
            n, 1,
            "{provider}: the first question appears {n} times in a resumed request"
        );
    }
}

fn file_write_diff_and_revert(provider: &str, mode: Mode) {
    let rig = rig_in(mode, "");
    let prompt =
        directive(json!({"write": {"path": "hello.txt", "content": "hello from the agent\n"}}));
    let response = rig.ok(provider, Some("w"), &[user(&prompt)]);
    assert_eq!(
        response["modified_files"],
        json!(["hello.txt"]),
        "{response}"
    );
    assert!(
        response["diff"]
            .as_str()
            .unwrap()
            .contains("+hello from the agent"),
        "{response}"
    );
    assert!(
        response["actions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["type"] == "file_change"),
        "{response}"
    );
    assert_eq!(response["dirty"], false);
    let session_id = response["session_id"].as_str().unwrap().to_string();
    let workspace = rig.session(&session_id)["workspace_path"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(std::path::Path::new(&workspace).join("hello.txt").exists());

    let diff = rig.server.get(
        &format!("/management/v1/sessions/{session_id}/turns/1/diff"),
        Some(&rig.token),
    );
    assert_eq!(diff.status, 200, "{}", diff.text());
    assert_eq!(diff.json()["data"]["modified_files"], json!(["hello.txt"]));

    let revert = rig.server.post_json(
        &format!("/management/v1/sessions/{session_id}/turns/1/revert"),
        Some(&rig.token),
        "{}",
    );
    assert_eq!(revert.status, 200, "{}", revert.text());
    assert!(
        !std::path::Path::new(&workspace).join("hello.txt").exists(),
        "revert removed the file"
    );
}

fn shell_edit(provider: &str) {
    let rig = rig("");
    let prompt = directive(json!({"shell": "echo changed-by-shell > notes.txt"}));
    let response = rig.ok(provider, Some("s"), &[user(&prompt)]);
    assert_eq!(
        response["modified_files"],
        json!(["notes.txt"]),
        "{response}"
    );
    assert!(
        response["actions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["type"] == "command"),
        "{response}"
    );
    assert!(response["diff"]
        .as_str()
        .unwrap()
        .contains("+changed-by-shell"));
}

fn api_error_is_502(provider: &str) {
    let rig = rig("");
    let prompt = directive(json!({"http_error": 400, "message": "mock says the request is bad"}));
    let response = rig.chat(provider, Some("e"), &[user(&prompt)], json!({}));
    assert_eq!(response.status, 502, "{provider}: {}", response.text());
    let body = response.json();
    assert_eq!(body["error"]["code"], "provider_error");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains(provider),
        "{body}"
    );
}

/// A silent model: the turn is a 504 after the stall timeout. Exec: the CLI's whole process
/// group is gone. Warm: the turn was interrupted, no process is left in the workspace, and the
/// process goes on serving the session.
fn stall_is_504_without_leftovers(provider: &str, mode: Mode) {
    let mock = MockModel::start();
    let toml = provider_toml(&mock, mode, "stall_timeout_seconds = 3");
    let server = support::server().toml(&toml).start();
    let token = server.login();
    let rig = Rig {
        mock,
        server,
        token,
    };
    let started = Instant::now();
    let prompt = directive(json!({"delay": 60}));
    let response = rig.chat(provider, Some("stall"), &[user(&prompt)], json!({}));
    assert_eq!(response.status, 504, "{provider}: {}", response.text());
    assert_eq!(response.json()["error"]["code"], "cli_stalled");
    assert!(
        started.elapsed() < Duration::from_secs(40),
        "{:?}",
        started.elapsed()
    );
    // No process is left with its working directory in this server's workspaces (warm: but the
    // agent itself, whose directory is the owner's tree).
    let root = rig.server.dir.join("workspaces");
    let root = root.canonicalize().unwrap_or(root);
    let agent_dir = root.join("operator");
    let leftovers: Vec<String> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| {
            std::fs::read_link(e.path().join("cwd"))
                .ok()
                .map(|cwd| (e.file_name(), cwd))
        })
        .filter(|(_, cwd)| cwd.starts_with(&root))
        .filter(|(_, cwd)| mode == Mode::Exec || cwd != &agent_dir)
        .map(|(pid, cwd)| format!("{pid:?} in {}", cwd.display()))
        .collect();
    assert!(leftovers.is_empty(), "leftover processes: {leftovers:?}");
    if mode == Mode::Warm {
        // The interrupted process goes on serving: the next turn runs there.
        let next = rig.chat(
            provider,
            Some("after-stall"),
            &[user("still there?")],
            json!({}),
        );
        assert_eq!(next.status, 200, "{provider}: {}", next.text());
        let overview = rig
            .server
            .get("/management/v1/overview", Some(&rig.token))
            .json();
        let processes = overview["data"]["warm"]["processes"]
            .as_array()
            .unwrap()
            .clone();
        assert_eq!(processes.len(), 1, "{processes:?}");
        assert_eq!(processes[0]["turns"], 2, "{processes:?}");
    }
}

/// Reads an SSE response, returning each `data:` payload with the time it arrived.
fn read_sse(rig: &Rig, provider: &str, prompt: &str) -> (Vec<(Instant, String)>, String) {
    let body = json!({
        "model": format!("uag-{provider}"),
        "messages": [user(prompt)],
        "stream": true,
        "stream_options": {"include_usage": true},
        "client_session_id": "stream",
    })
    .to_string();
    let mut stream = TcpStream::connect(rig.server.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    write!(
        stream,
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        rig.token,
        body.len()
    )
    .unwrap();
    let mut raw = Vec::new();
    let mut frames = Vec::new();
    let mut buf = [0u8; 4096];
    let mut scanned = 0;
    loop {
        let n = stream.read(&mut buf).unwrap_or(0);
        if n == 0 {
            break;
        }
        raw.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&raw).into_owned();
        while let Some(start) = text[scanned..].find("data: ") {
            let begin = scanned + start + 6;
            let Some(end) = text[begin..].find('\n') else {
                break;
            };
            frames.push((Instant::now(), text[begin..begin + end].trim().to_string()));
            scanned = begin + end;
        }
    }
    (frames, String::from_utf8_lossy(&raw).into_owned())
}

fn streaming_is_incremental(provider: &str, mode: Mode) {
    let rig = rig_in(mode, "");
    // The mock waits 2 s before answering, then streams the reply in 3 deltas 700 ms apart.
    let prompt = directive(
        json!({"reply": "one two three four five six", "delay": 2, "chunk_delay_ms": 700, "chunks": 3}),
    );
    let started = Instant::now();
    let (frames, raw) = read_sse(&rig, provider, &prompt);
    assert!(raw.starts_with("HTTP/1.1 200"), "{raw}");
    assert!(raw.contains("text/event-stream"), "{raw}");
    assert_eq!(frames.last().map(|f| f.1.as_str()), Some("[DONE]"), "{raw}");
    let contents: Vec<&(Instant, String)> = frames
        .iter()
        .filter(|(_, f)| f.contains("\"content\":\"") && !f.contains("\"content\":\"\""))
        .collect();
    let text: String = contents
        .iter()
        .map(|(_, f)| {
            serde_json::from_str::<Value>(f).unwrap()["choices"][0]["delta"]["content"]
                .as_str()
                .unwrap_or("")
                .to_string()
        })
        .collect();
    assert_eq!(text, "one two three four five six", "{raw}");
    let last: Value = serde_json::from_str(&frames[frames.len() - 2].1).unwrap();
    assert!(last["usage"]["prompt_tokens"].as_u64().is_some(), "{last}");
    assert!(last["session_id"].as_str().is_some(), "{last}");
    // The role frame went out at once, long before the model answered.
    let first_frame = frames[0].0.duration_since(started);
    let first_content = contents[0].0.duration_since(started);
    assert!(
        first_content >= first_frame + Duration::from_millis(1500),
        "{provider}: first frame {first_frame:?}, content {first_content:?}"
    );
    if provider == "gemini" || mode == Mode::Warm {
        // Exec: only gemini reports text deltas; codex and opencode emit whole messages.
        assert!(contents.len() >= 2, "{provider}: {raw}");
        let spread = contents.last().unwrap().0.duration_since(contents[0].0);
        assert!(
            spread >= Duration::from_millis(1000),
            "{provider}: deltas arrived together ({spread:?})"
        );
    }
}

fn diverged_history_starts_fresh(provider: &str) {
    let rig = rig("");
    let first = rig.ok(provider, Some("d"), &[user("original question gamma")]);
    let session_id = first["session_id"].as_str().unwrap().to_string();
    let edited = rig.ok(
        provider,
        Some("d"),
        &[
            user("edited question delta"),
            assistant(&reply(&first)),
            user("follow up epsilon"),
        ],
    );
    assert_eq!(edited["resumed"], false, "{edited}");
    let session = rig.session(&session_id);
    let prompt = session["turns"][1]["prompt"].as_str().unwrap();
    assert!(
        prompt.contains("edited question delta") && prompt.contains("follow up epsilon"),
        "{prompt}"
    );
    assert_ne!(
        session["turns"][0]["cli_session_id"],
        session["turns"][1]["cli_session_id"]
    );
}

fn concurrent_turns_on_one_session(provider: &str) {
    let mock = MockModel::start();
    let toml = format!(
        "{}\n[workspace]\nlock_timeout_seconds = 1\n",
        mock.codara_toml(&clis_bin())
    );
    let server = support::server().toml(&toml).start();
    let token = server.login();
    let rig = std::sync::Arc::new(Rig {
        mock,
        server,
        token,
    });
    let slow = {
        let rig = std::sync::Arc::clone(&rig);
        let provider = provider.to_string();
        std::thread::spawn(move || {
            rig.chat(
                &provider,
                Some("c"),
                &[user(&directive(json!({"reply": "slow", "delay": 4})))],
                json!({}),
            )
        })
    };
    rig.mock.wait_for_requests(1, Duration::from_secs(30));
    let second = rig.chat(provider, Some("c"), &[user("in parallel")], json!({}));
    assert_eq!(second.status, 409, "{}", second.text());
    assert!(second.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("still running"));
    assert_eq!(slow.join().unwrap().status, 200);
}

#[test]
fn codex_first_and_resume() {
    first_and_resume("codex", Mode::Warm);
}

#[test]
fn codex_exec_first_and_resume() {
    first_and_resume("codex", Mode::Exec);
}
#[test]
fn codex_file_write_diff_and_revert() {
    file_write_diff_and_revert("codex", Mode::Warm);
}

#[test]
fn codex_exec_file_write_diff_and_revert() {
    file_write_diff_and_revert("codex", Mode::Exec);
}
#[test]
fn codex_shell_edit() {
    shell_edit("codex");
}
#[test]
fn codex_api_error_is_502() {
    api_error_is_502("codex");
}
#[test]
fn codex_stall_is_504() {
    stall_is_504_without_leftovers("codex", Mode::Warm);
}

#[test]
fn codex_exec_stall_is_504() {
    stall_is_504_without_leftovers("codex", Mode::Exec);
}
#[test]
fn codex_streaming_is_incremental() {
    streaming_is_incremental("codex", Mode::Warm);
}

#[test]
fn codex_exec_streaming_is_incremental() {
    streaming_is_incremental("codex", Mode::Exec);
}
#[test]
fn codex_diverged_history_starts_fresh() {
    diverged_history_starts_fresh("codex");
}
#[test]
fn codex_concurrent_turns_on_one_session() {
    concurrent_turns_on_one_session("codex");
}
#[test]
fn gemini_first_and_resume() {
    first_and_resume("gemini", Mode::Warm);
}

#[test]
fn gemini_exec_first_and_resume() {
    first_and_resume("gemini", Mode::Exec);
}
#[test]
fn gemini_file_write_diff_and_revert() {
    file_write_diff_and_revert("gemini", Mode::Warm);
}

#[test]
fn gemini_exec_file_write_diff_and_revert() {
    file_write_diff_and_revert("gemini", Mode::Exec);
}
#[test]
fn gemini_shell_edit() {
    shell_edit("gemini");
}
#[test]
fn gemini_api_error_is_502() {
    api_error_is_502("gemini");
}
#[test]
fn gemini_stall_is_504() {
    stall_is_504_without_leftovers("gemini", Mode::Warm);
}

#[test]
fn gemini_exec_stall_is_504() {
    stall_is_504_without_leftovers("gemini", Mode::Exec);
}
#[test]
fn gemini_streaming_is_incremental() {
    streaming_is_incremental("gemini", Mode::Warm);
}

#[test]
fn gemini_exec_streaming_is_incremental() {
    streaming_is_incremental("gemini", Mode::Exec);
}
#[test]
fn gemini_diverged_history_starts_fresh() {
    diverged_history_starts_fresh("gemini");
}
#[test]
fn gemini_concurrent_turns_on_one_session() {
    concurrent_turns_on_one_session("gemini");
}
#[test]
fn opencode_first_and_resume() {
    first_and_resume("opencode", Mode::Warm);
}

#[test]
fn opencode_exec_first_and_resume() {
    first_and_resume("opencode", Mode::Exec);
}
#[test]
fn opencode_file_write_diff_and_revert() {
    file_write_diff_and_revert("opencode", Mode::Warm);
}

#[test]
fn opencode_exec_file_write_diff_and_revert() {
    file_write_diff_and_revert("opencode", Mode::Exec);
}
#[test]
fn opencode_shell_edit() {
    shell_edit("opencode");
}
#[test]
fn opencode_api_error_is_502() {
    api_error_is_502("opencode");
}
#[test]
fn opencode_stall_is_504() {
    stall_is_504_without_leftovers("opencode", Mode::Warm);
}

#[test]
fn opencode_exec_stall_is_504() {
    stall_is_504_without_leftovers("opencode", Mode::Exec);
}
#[test]
fn opencode_streaming_is_incremental() {
    streaming_is_incremental("opencode", Mode::Warm);
}

#[test]
fn opencode_exec_streaming_is_incremental() {
    streaming_is_incremental("opencode", Mode::Exec);
}
#[test]
fn opencode_diverged_history_starts_fresh() {
    diverged_history_starts_fresh("opencode");
}
#[test]
fn opencode_concurrent_turns_on_one_session() {
    concurrent_turns_on_one_session("opencode");
}

#[test]
fn stateless_turn_keeps_no_session() {
    let rig = rig("");
    let response = rig.ok("codex", None, &[user("no session here")]);
    assert!(response["session_id"].is_null(), "{response}");
    let sessions = rig.server.get("/management/v1/sessions", Some(&rig.token));
    assert_eq!(sessions.json()["data"], json!([]));
}

#[test]
fn missing_cli_is_503_and_bad_fields_are_400() {
    let toml = "[providers.codex]\nbinary = \"/nonexistent/codex\"\n";
    let server = support::server().toml(toml).start();
    let token = server.login();
    let body = json!({"model": "uag-codex", "messages": [user("hi")]}).to_string();
    let response = server.post_json("/v1/chat/completions", Some(&token), &body);
    assert_eq!(response.status, 503, "{}", response.text());
    assert_eq!(response.json()["error"]["code"], "provider_unavailable");
    let traversal =
        json!({"model": "uag-codex", "messages": [user("hi")], "workspace_id": "../escape"})
            .to_string();
    let response = server.post_json("/v1/chat/completions", Some(&token), &traversal);
    assert_eq!(response.status, 400);
    assert_eq!(response.json()["error"]["param"], "workspace_id");
    let outside = json!({"model": "uag-codex", "messages": [user("hi")], "workspace_root": "/tmp"})
        .to_string();
    let response = server.post_json("/v1/chat/completions", Some(&token), &outside);
    assert_eq!(response.status, 400, "{}", response.text());
    assert_eq!(response.json()["error"]["param"], "workspace_root");
}

#[test]
fn a_lost_cli_session_falls_back_to_a_fresh_one_with_the_transcript() {
    lost_cli_session(Mode::Exec);
}

/// Warm: the process that held the thread was retired, and its rollout is gone: `thread/resume`
/// fails and the turn starts a fresh thread with the transcript.
#[test]
fn a_lost_warm_session_falls_back_to_a_fresh_one_with_the_transcript() {
    lost_cli_session(Mode::Warm);
}

fn lost_cli_session(mode: Mode) {
    let rig = rig_in(mode, "");
    let first = rig.ok("codex", Some("lost"), &[user("remember the word zebra")]);
    if mode == Mode::Exec {
        return lost_after(rig, first, None);
    }
    // The thread lives in the warm process; only a new process looks for it on disk.
    let Rig { mock, server, .. } = rig;
    let toml = std::fs::read_to_string(server.dir.join("codara.toml")).unwrap();
    let (dir, keep) = server.stop_keep_dir();
    let server = support::server().dir(&dir).toml(&toml).start();
    let token = server.login();
    lost_after(
        Rig {
            mock,
            server,
            token,
        },
        first,
        keep,
    );
}

fn lost_after(rig: Rig, first: Value, _keep: Option<support::TempDir>) {
    let session_id = first["session_id"].as_str().unwrap().to_string();
    // Codex keeps its sessions as rollout files in its home; lose them.
    let sessions_dir = rig
        .server
        .data_dir()
        .join("homes/codex/default/operator/sessions");
    assert!(sessions_dir.exists(), "codex wrote no rollout files");
    std::fs::remove_dir_all(&sessions_dir).unwrap();
    let second = rig.ok(
        "codex",
        Some("lost"),
        &[
            user("remember the word zebra"),
            assistant(&reply(&first)),
            user("which word?"),
        ],
    );
    assert_eq!(second["resumed"], false, "{second}");
    let session = rig.session(&session_id);
    let prompt = session["turns"][1]["prompt"].as_str().unwrap();
    assert!(
        prompt.contains("remember the word zebra") && prompt.contains("which word?"),
        "{prompt}"
    );
    assert_ne!(
        session["turns"][1]["cli_session_id"],
        session["turns"][0]["cli_session_id"]
    );
}

#[test]
fn a_client_that_disconnects_mid_stream_does_not_lose_the_turn() {
    let rig = rig("");
    let prompt = directive(json!({"reply": "finished anyway", "delay": 2}));
    let body = json!({"model": "uag-codex", "messages": [user(&prompt)], "stream": true, "client_session_id": "gone"}).to_string();
    let mut stream = TcpStream::connect(rig.server.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    write!(
        stream,
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        rig.token,
        body.len()
    )
    .unwrap();
    let mut buf = [0u8; 1024];
    let n = stream.read(&mut buf).unwrap();
    assert!(
        String::from_utf8_lossy(&buf[..n]).contains("200"),
        "the stream started"
    );
    drop(stream);
    let mut stored = Value::Null;
    support::wait_until(Duration::from_secs(60), "the turn to be stored", || {
        let list = rig
            .server
            .get("/management/v1/sessions", Some(&rig.token))
            .json();
        stored = list["data"][0].clone();
        stored["turn_count"] == 1
    });
    let session = rig.session(stored["id"].as_str().unwrap());
    assert_eq!(session["turns"][0]["status"], "ok", "{session}");
    assert_eq!(session["turns"][0]["reply"], "finished anyway");
}

#[test]
#[allow(clippy::disallowed_methods)] // Locates node for the test's PATH.
fn without_git_a_manifest_still_reports_modified_files() {
    // A PATH with node (codex's launcher needs it) but no git.
    let bin = support::TempDir::new("nogit-bin");
    let node = std::process::Command::new("sh")
        .args(["-c", "command -v node"])
        .output()
        .unwrap();
    let node = String::from_utf8_lossy(&node.stdout).trim().to_string();
    std::os::unix::fs::symlink(&node, bin.path().join("node")).unwrap();
    let mock = MockModel::start();
    let server = support::server()
        .toml(&mock.codara_toml(&clis_bin()))
        .env("PATH", Some(bin.path().to_str().unwrap()))
        .start();
    let token = server.login();
    let rig = Rig {
        mock,
        server,
        token,
    };
    let prompt = directive(json!({"write": {"path": "plain.txt", "content": "no git here\n"}}));
    let response = rig.ok("codex", Some("nogit"), &[user(&prompt)]);
    assert_eq!(
        response["modified_files"],
        json!(["plain.txt"]),
        "{response}"
    );
    assert_eq!(response["diff"], "", "no diff text without git");
    let workspace = rig.session(response["session_id"].as_str().unwrap())["workspace_path"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        !std::path::Path::new(&workspace).join(".git").exists(),
        "no repository was created"
    );
}
