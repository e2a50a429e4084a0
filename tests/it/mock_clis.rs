//! The real Codex, Gemini and OpenCode CLIs (pinned in `scripts/clis/`, installed by
//! `scripts/install-clis.sh`) run directly against the loopback mock model: first turn, resume,
//! the CLI's own file and shell tools, and a scripted HTTP 400. Each run gets its own temp home
//! and workspace, a clean environment, and a deadline after which its process group is killed.
//!
//! These pin down the flags, environment and config that `support::mock_model` hands to codara
//! (see `shared/reference/real-clis.md`). Codara itself is not involved here.

// Spawning the CLIs under test with a controlled environment needs `Command::new` and reading
// the host `PATH`, which clippy.toml reserves for src/config.rs and providers/runner.rs.
#![allow(clippy::disallowed_methods)]

use crate::support::mock_model::{self, directive, MockModel, GEMINI_MODEL};
use crate::support::{self, TempDir};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The bound on one CLI run (a turn takes 0.3-4 s when the machine is idle).
const RUN_TIMEOUT: Duration = Duration::from_secs(120);

// -------------------------------------------------------------------------------------------
// Running a CLI

/// The outcome of one CLI run.
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    /// The stdout lines that are JSON objects, with when each line arrived.
    events: Vec<(Duration, Value)>,
}

impl Run {
    fn values(&self) -> impl Iterator<Item = &Value> {
        self.events.iter().map(|(_, v)| v)
    }

    fn of_type(&self, kind: &str) -> Vec<&Value> {
        self.values().filter(|v| v["type"] == kind).collect()
    }

    fn describe(&self) -> String {
        format!(
            "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
            self.code,
            self.stdout,
            tail(&self.stderr, 4000)
        )
    }
}

fn tail(text: &str, max: usize) -> &str {
    let mut start = text.len().saturating_sub(max);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}

/// One isolated place to run a CLI: a home directory and a workspace.
struct Sandbox {
    _dir: TempDir,
    home: PathBuf,
    ws: PathBuf,
}

impl Sandbox {
    fn new(label: &str) -> Sandbox {
        let dir = TempDir::new(label);
        let home = dir.path().join("home");
        let ws = dir.path().join("ws");
        std::fs::create_dir_all(&home).unwrap();
        std::fs::create_dir_all(&ws).unwrap();
        Sandbox {
            _dir: dir,
            home,
            ws,
        }
    }

    /// Runs `program args` in the workspace with exactly `env` (plus `PATH` and `HOME`), stdin
    /// closed or fed `stdin`, killing its whole process group after [`RUN_TIMEOUT`].
    fn run(
        &self,
        program: &Path,
        args: &[String],
        env: &[(String, String)],
        stdin: Option<&str>,
    ) -> Run {
        let mut command = Command::new(program);
        command
            .args(args)
            .current_dir(&self.ws)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", &self.home)
            .env("LANG", "C.UTF-8")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        let started = Instant::now();
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {}: {e}", program.display()));
        let group = child.id() as libc::pid_t;
        if let Some(text) = stdin {
            let mut pipe = child.stdin.take().unwrap();
            pipe.write_all(text.as_bytes()).unwrap();
        }
        let (tx, rx) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        let out_reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send((started.elapsed(), line));
            }
        });
        let mut stderr = child.stderr.take().unwrap();
        let err_reader = std::thread::spawn(move || {
            let mut text = Vec::new();
            let _ = stderr.read_to_end(&mut text);
            String::from_utf8_lossy(&text).into_owned()
        });
        let deadline = started + RUN_TIMEOUT;
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break Some(status);
            }
            if Instant::now() > deadline {
                break None;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        // Also reaps helpers the CLI left behind, so the pipes close and the readers finish.
        // SAFETY: signalling the process group this test created.
        unsafe { libc::kill(-group, libc::SIGKILL) };
        let _ = child.wait();
        let _ = out_reader.join();
        let stderr = err_reader.join().unwrap_or_default();
        let lines: Vec<(Duration, String)> = rx.try_iter().collect();
        let run = Run {
            code: status.and_then(|s| s.code()),
            stdout: lines
                .iter()
                .map(|(_, l)| l.as_str())
                .collect::<Vec<_>>()
                .join("\n"),
            stderr,
            events: lines
                .iter()
                .filter_map(|(at, l)| {
                    serde_json::from_str::<Value>(l)
                        .ok()
                        .filter(Value::is_object)
                        .map(|v| (*at, v))
                })
                .collect(),
        };
        assert!(
            status.is_some(),
            "{} {args:?} did not finish within {RUN_TIMEOUT:?} (killed)\n{}",
            program.display(),
            run.describe()
        );
        run
    }
}

/// The text of every model request the mock logged, for `contains` checks.
fn logged_bodies(mock: &MockModel) -> Vec<String> {
    mock.requests().iter().map(|r| r.body_text()).collect()
}

fn strings(words: &[&str]) -> Vec<String> {
    words.iter().map(|w| w.to_string()).collect()
}

// -------------------------------------------------------------------------------------------
// Codex: `codex exec --json`

struct Codex {
    mock: MockModel,
    sandbox: Sandbox,
    bin: PathBuf,
}

impl Codex {
    fn new(label: &str) -> Codex {
        let sandbox = Sandbox::new(label);
        std::fs::create_dir_all(sandbox.home.join(".codex")).unwrap();
        Codex {
            mock: MockModel::start(),
            sandbox,
            bin: mock_model::clis_bin().join("codex"),
        }
    }

    /// `codex exec --json … <overrides> [resume ID] -- PROMPT`, laid out the way codara's
    /// `providers::codex::command` does (the mock's overrides are its `extra_args`).
    fn turn(&self, resume: Option<&str>, prompt: &str) -> Run {
        let mut args = strings(&[
            "exec",
            "--json",
            "--skip-git-repo-check",
            "-c",
            "approval_policy=\"never\"",
            "-c",
            "sandbox_mode=\"workspace-write\"",
            "-m",
            mock_model::CODEX_MODEL,
        ]);
        args.extend(self.mock.codex_args());
        if let Some(id) = resume {
            args.extend(strings(&["resume", id]));
        }
        args.extend(strings(&["--", prompt]));
        let mut env = self.mock.codex_env();
        env.push((
            "CODEX_HOME".into(),
            self.sandbox.home.join(".codex").display().to_string(),
        ));
        self.sandbox.run(&self.bin, &args, &env, None)
    }
}

fn codex_thread_id(run: &Run) -> String {
    let started = run.of_type("thread.started");
    assert_eq!(started.len(), 1, "one thread.started\n{}", run.describe());
    started[0]["thread_id"].as_str().unwrap().to_string()
}

fn codex_messages(run: &Run) -> Vec<String> {
    run.of_type("item.completed")
        .iter()
        .filter(|v| v["item"]["type"] == "agent_message")
        .map(|v| v["item"]["text"].as_str().unwrap_or("").to_string())
        .collect()
}

#[test]
fn codex_first_turn_then_resume_resends_history() {
    let codex = Codex::new("codex-resume");
    let first = codex.turn(None, "Say hello (turn one)");
    assert_eq!(first.code, Some(0), "{}", first.describe());
    let thread = codex_thread_id(&first);
    assert_eq!(
        codex_messages(&first),
        ["MOCK_REPLY n=1: Say hello (turn one)"],
        "{}",
        first.describe()
    );
    assert_eq!(first.of_type("turn.completed").len(), 1);
    let requests = codex.mock.requests_to("/v1/responses");
    assert_eq!(requests.len(), 1, "{:?}", codex.mock.requests());
    assert_eq!(requests[0].body["stream"], true);
    assert_eq!(requests[0].body["prompt_cache_key"], thread.as_str());
    assert_eq!(requests[0].header("authorization"), Some("Bearer dummy"));

    codex.mock.reset();
    let second = codex.turn(Some(&thread), "Second turn");
    assert_eq!(second.code, Some(0), "{}", second.describe());
    assert_eq!(codex_thread_id(&second), thread, "same thread on resume");
    assert_eq!(
        codex_messages(&second),
        ["MOCK_REPLY n=2: Second turn"],
        "{}",
        second.describe()
    );
    let bodies = logged_bodies(&codex.mock);
    assert_eq!(bodies.len(), 1);
    assert!(bodies[0].contains("Say hello (turn one)"), "history resent");
    assert!(bodies[0].contains("MOCK_REPLY n=1: Say hello (turn one)"));
}

#[test]
fn codex_write_directive_uses_apply_patch() {
    let codex = Codex::new("codex-write");
    let prompt =
        directive(json!({"write": {"path": "hello.txt", "content": "hello from codex\n"}}));
    let run = codex.turn(None, &prompt);
    assert_eq!(run.code, Some(0), "{}", run.describe());
    let written = std::fs::read_to_string(codex.sandbox.ws.join("hello.txt"))
        .unwrap_or_else(|e| panic!("hello.txt not written ({e})\n{}", run.describe()));
    assert_eq!(written, "hello from codex\n");
    let changes: Vec<&Value> = run
        .of_type("item.completed")
        .into_iter()
        .filter(|v| v["item"]["type"] == "file_change")
        .collect();
    assert_eq!(changes.len(), 1, "{}", run.describe());
    assert_eq!(changes[0]["item"]["status"], "completed");
    assert_eq!(
        codex_messages(&run),
        ["MOCK_DONE after 1 tool call(s)"],
        "{}",
        run.describe()
    );
    let requests = codex.mock.requests_to("/v1/responses");
    assert_eq!(requests.len(), 2, "tool call, then the result");
    let second = requests[1].body_text();
    assert!(second.contains("custom_tool_call_output"), "{second:.2000}");
}

#[test]
fn codex_shell_directive_runs_exec_command() {
    let codex = Codex::new("codex-shell");
    let prompt = directive(json!({"shell": "printf 'shell ran\\n' > shell.txt"}));
    let run = codex.turn(None, &prompt);
    assert_eq!(run.code, Some(0), "{}", run.describe());
    assert_eq!(
        std::fs::read_to_string(codex.sandbox.ws.join("shell.txt"))
            .ok()
            .as_deref(),
        Some("shell ran\n"),
        "{}",
        run.describe()
    );
    let commands: Vec<&Value> = run
        .of_type("item.completed")
        .into_iter()
        .filter(|v| v["item"]["type"] == "command_execution")
        .collect();
    assert_eq!(commands.len(), 1, "{}", run.describe());
    assert_eq!(commands[0]["item"]["exit_code"], 0);
    assert_eq!(codex_messages(&run), ["MOCK_DONE after 1 tool call(s)"]);
}

#[test]
fn codex_http_400_fails_the_turn() {
    let codex = Codex::new("codex-400");
    let prompt = directive(json!({"http_error": 400, "message": "scripted failure"}));
    let run = codex.turn(None, &prompt);
    assert_eq!(run.code, Some(1), "{}", run.describe());
    let failed = run.of_type("turn.failed");
    assert_eq!(failed.len(), 1, "{}", run.describe());
    let message = failed[0]["error"]["message"].as_str().unwrap_or("");
    assert!(message.contains("scripted failure"), "{}", run.describe());
    assert_eq!(codex.mock.requests_to("/v1/responses").len(), 1, "no retry");
}

// -------------------------------------------------------------------------------------------
// Gemini: `gemini --output-format stream-json --yolo -m MODEL --prompt=PROMPT`

struct Gemini {
    mock: MockModel,
    sandbox: Sandbox,
    bin: PathBuf,
}

impl Gemini {
    fn new(label: &str) -> Gemini {
        let sandbox = Sandbox::new(label);
        mock_model::write_gemini_settings(&sandbox.home);
        Gemini {
            mock: MockModel::start(),
            sandbox,
            bin: mock_model::clis_bin().join("gemini"),
        }
    }

    /// `gemini --output-format stream-json --yolo -m MODEL [--resume ID] --prompt=PROMPT`, the
    /// layout of codara's `providers::gemini::command`.
    fn turn(&self, resume: Option<&str>, prompt: &str) -> Run {
        let mut args = strings(&[
            "--output-format",
            "stream-json",
            "--yolo",
            "-m",
            GEMINI_MODEL,
        ]);
        if let Some(id) = resume {
            args.extend(strings(&["--resume", id]));
        }
        args.push(format!("--prompt={prompt}"));
        let mut env = self.mock.gemini_env();
        env.push((
            "GEMINI_CLI_HOME".into(),
            self.sandbox.home.display().to_string(),
        ));
        self.sandbox.run(&self.bin, &args, &env, None)
    }
}

fn gemini_session_id(run: &Run) -> String {
    let init = run.of_type("init");
    assert_eq!(init.len(), 1, "one init event\n{}", run.describe());
    init[0]["session_id"].as_str().unwrap().to_string()
}

/// The assistant text: the concatenated `delta` message events.
fn gemini_reply(run: &Run) -> String {
    run.values()
        .filter(|v| v["type"] == "message" && v["role"] == "assistant")
        .map(|v| v["content"].as_str().unwrap_or(""))
        .collect()
}

fn gemini_result(run: &Run) -> Value {
    let results = run.of_type("result");
    assert_eq!(results.len(), 1, "one result event\n{}", run.describe());
    results[0].clone()
}

#[test]
fn gemini_first_turn_then_resume_resends_history() {
    let gemini = Gemini::new("gemini-resume");
    let first = gemini.turn(None, "Say hello (turn one)");
    assert_eq!(first.code, Some(0), "{}", first.describe());
    let session = gemini_session_id(&first);
    assert_eq!(gemini_reply(&first), "MOCK_REPLY n=1: Say hello (turn one)");
    assert_eq!(gemini_result(&first)["status"], "success");
    let requests = gemini.mock.requests_to(":streamGenerateContent");
    assert_eq!(requests.len(), 1, "{:?}", gemini.mock.requests());
    assert!(requests[0].path.starts_with(&format!(
        "/v1beta/models/{GEMINI_MODEL}:streamGenerateContent"
    )));
    assert_eq!(requests[0].header("x-goog-api-key"), Some("dummy"));

    gemini.mock.reset();
    let second = gemini.turn(Some(&session), "Second turn");
    assert_eq!(second.code, Some(0), "{}", second.describe());
    assert_eq!(
        gemini_session_id(&second),
        session,
        "same session on resume"
    );
    assert_eq!(gemini_reply(&second), "MOCK_REPLY n=2: Second turn");
    let requests = gemini.mock.requests_to(":streamGenerateContent");
    assert_eq!(requests.len(), 1, "{:?}", gemini.mock.requests());
    let body = requests[0].body_text();
    assert!(body.contains("Say hello (turn one)"), "history resent");
    assert!(body.contains("MOCK_REPLY n=1: Say hello (turn one)"));
}

#[test]
fn gemini_write_directive_uses_write_file() {
    let gemini = Gemini::new("gemini-write");
    let prompt =
        directive(json!({"write": {"path": "hello.txt", "content": "hello from gemini\n"}}));
    let run = gemini.turn(None, &prompt);
    assert_eq!(run.code, Some(0), "{}", run.describe());
    assert_eq!(
        std::fs::read_to_string(gemini.sandbox.ws.join("hello.txt"))
            .ok()
            .as_deref(),
        Some("hello from gemini\n"),
        "{}",
        run.describe()
    );
    let uses = run.of_type("tool_use");
    assert_eq!(uses.len(), 1, "{}", run.describe());
    assert_eq!(uses[0]["tool_name"], "write_file");
    assert_eq!(run.of_type("tool_result")[0]["status"], "success");
    assert_eq!(gemini_reply(&run), "MOCK_DONE after 1 tool call(s)");
}

#[test]
fn gemini_shell_directive_runs_shell_command() {
    let gemini = Gemini::new("gemini-shell");
    let prompt = directive(json!({"shell": "printf 'shell ran\\n' > shell.txt"}));
    let run = gemini.turn(None, &prompt);
    assert_eq!(run.code, Some(0), "{}", run.describe());
    assert_eq!(
        std::fs::read_to_string(gemini.sandbox.ws.join("shell.txt"))
            .ok()
            .as_deref(),
        Some("shell ran\n"),
        "{}",
        run.describe()
    );
    let uses = run.of_type("tool_use");
    assert_eq!(uses.len(), 1, "{}", run.describe());
    assert_eq!(uses[0]["tool_name"], "run_shell_command");
    assert_eq!(run.of_type("tool_result")[0]["status"], "success");
    assert_eq!(gemini_reply(&run), "MOCK_DONE after 1 tool call(s)");
}

#[test]
fn gemini_http_400_is_an_error_result() {
    let gemini = Gemini::new("gemini-400");
    let prompt = directive(json!({"http_error": 400, "message": "scripted failure"}));
    let run = gemini.turn(None, &prompt);
    assert_ne!(run.code, Some(0), "{}", run.describe());
    let result = gemini_result(&run);
    assert_eq!(result["status"], "error", "{}", run.describe());
    let message = result["error"]["message"].as_str().unwrap_or("");
    assert!(message.contains("scripted failure"), "{}", run.describe());
}

#[test]
fn gemini_streams_the_reply_in_deltas() {
    let gemini = Gemini::new("gemini-deltas");
    let prompt = directive(json!({"reply": "one two three four", "chunks": 4,
                                  "chunk_delay_ms": 400}));
    let run = gemini.turn(None, &prompt);
    assert_eq!(run.code, Some(0), "{}", run.describe());
    let deltas: Vec<&(Duration, Value)> = run
        .events
        .iter()
        .filter(|(_, v)| v["type"] == "message" && v["role"] == "assistant")
        .collect();
    assert_eq!(deltas.len(), 4, "{}", run.describe());
    assert_eq!(gemini_reply(&run), "one two three four");
    let spread = deltas[3].0 - deltas[0].0;
    assert!(
        spread >= Duration::from_millis(900),
        "deltas reached stdout as they were streamed (spread {spread:?})\n{}",
        run.describe()
    );
}

// -------------------------------------------------------------------------------------------
// OpenCode: `opencode run --format json`, prompt on stdin

struct Opencode {
    mock: MockModel,
    sandbox: Sandbox,
    bin: PathBuf,
}

impl Opencode {
    fn new(label: &str) -> Opencode {
        Opencode {
            mock: MockModel::start(),
            sandbox: Sandbox::new(label),
            bin: mock_model::clis_bin().join("opencode"),
        }
    }

    /// `opencode run --format json -m MODEL [--session ID]` with the prompt on stdin, the layout
    /// of codara's `providers::opencode::command`.
    fn turn(&self, resume: Option<&str>, prompt: &str) -> Run {
        let mut args = strings(&["run", "--format", "json", "-m", mock_model::OPENCODE_MODEL]);
        if let Some(id) = resume {
            args.extend(strings(&["--session", id]));
        }
        let xdg = self.sandbox.home.join("xdg");
        let mut env = self.mock.opencode_env();
        for (name, sub) in [
            ("XDG_CONFIG_HOME", "config"),
            ("XDG_DATA_HOME", "data"),
            ("XDG_CACHE_HOME", "cache"),
            ("XDG_STATE_HOME", "state"),
        ] {
            env.push((name.into(), xdg.join(sub).display().to_string()));
        }
        // opencode takes its project directory from $PWD, not getcwd().
        env.push(("PWD".into(), self.sandbox.ws.display().to_string()));
        self.sandbox.run(&self.bin, &args, &env, Some(prompt))
    }

    /// The main-loop requests (not the title request).
    fn turn_requests(&self) -> Vec<mock_model::RecordedRequest> {
        let mut requests = self.mock.requests_to("/v1/chat/completions");
        requests.retain(|r| !r.body_text().contains("title generator"));
        requests
    }
}

fn opencode_session_id(run: &Run) -> String {
    let ids: Vec<&str> = run
        .values()
        .filter_map(|v| v["sessionID"].as_str())
        .collect();
    assert!(!ids.is_empty(), "no sessionID\n{}", run.describe());
    assert!(ids.iter().all(|id| *id == ids[0]), "{}", run.describe());
    ids[0].to_string()
}

fn opencode_texts(run: &Run) -> Vec<String> {
    run.of_type("text")
        .iter()
        .map(|v| v["part"]["text"].as_str().unwrap_or("").to_string())
        .collect()
}

fn opencode_last_finish(run: &Run) -> Value {
    let finishes = run.of_type("step_finish");
    assert!(!finishes.is_empty(), "{}", run.describe());
    finishes[finishes.len() - 1]["part"]["reason"].clone()
}

#[test]
fn opencode_first_turn_then_resume_resends_history() {
    let opencode = Opencode::new("opencode-resume");
    let first = opencode.turn(None, "Say hello (turn one)");
    assert_eq!(first.code, Some(0), "{}", first.describe());
    let session = opencode_session_id(&first);
    assert!(session.starts_with("ses_"), "{session}");
    assert_eq!(
        opencode_texts(&first),
        ["MOCK_REPLY n=1: Say hello (turn one)"],
        "{}",
        first.describe()
    );
    assert_eq!(opencode_last_finish(&first), "stop");
    let requests = opencode.turn_requests();
    assert_eq!(requests.len(), 1, "{:?}", opencode.mock.requests());
    assert_eq!(requests[0].body["stream"], true);
    assert_eq!(requests[0].header("x-session-id"), Some(session.as_str()));

    opencode.mock.reset();
    let second = opencode.turn(Some(&session), "Second turn");
    assert_eq!(second.code, Some(0), "{}", second.describe());
    assert_eq!(opencode_session_id(&second), session, "same session");
    assert_eq!(opencode_texts(&second), ["MOCK_REPLY n=2: Second turn"]);
    let requests = opencode.turn_requests();
    assert_eq!(requests.len(), 1, "{:?}", opencode.mock.requests());
    let body = requests[0].body_text();
    assert!(body.contains("Say hello (turn one)"), "history resent");
    assert!(body.contains("MOCK_REPLY n=1: Say hello (turn one)"));
}

#[test]
fn opencode_write_directive_uses_write() {
    let opencode = Opencode::new("opencode-write");
    let prompt =
        directive(json!({"write": {"path": "hello.txt", "content": "hello from opencode\n"}}));
    let run = opencode.turn(None, &prompt);
    assert_eq!(run.code, Some(0), "{}", run.describe());
    assert_eq!(
        std::fs::read_to_string(opencode.sandbox.ws.join("hello.txt"))
            .ok()
            .as_deref(),
        Some("hello from opencode\n"),
        "{}",
        run.describe()
    );
    let tools = run.of_type("tool_use");
    assert_eq!(tools.len(), 1, "{}", run.describe());
    assert_eq!(tools[0]["part"]["tool"], "write");
    assert_eq!(tools[0]["part"]["state"]["status"], "completed");
    assert_eq!(opencode_texts(&run), ["MOCK_DONE after 1 tool call(s)"]);
    assert_eq!(opencode_last_finish(&run), "stop");
}

#[test]
fn opencode_shell_directive_runs_bash() {
    let opencode = Opencode::new("opencode-shell");
    let prompt = directive(json!({"shell": "printf 'shell ran\\n' > shell.txt"}));
    let run = opencode.turn(None, &prompt);
    assert_eq!(run.code, Some(0), "{}", run.describe());
    assert_eq!(
        std::fs::read_to_string(opencode.sandbox.ws.join("shell.txt"))
            .ok()
            .as_deref(),
        Some("shell ran\n"),
        "{}",
        run.describe()
    );
    let tools = run.of_type("tool_use");
    assert_eq!(tools.len(), 1, "{}", run.describe());
    assert_eq!(tools[0]["part"]["tool"], "bash");
    assert_eq!(tools[0]["part"]["state"]["status"], "completed");
    assert_eq!(opencode_texts(&run), ["MOCK_DONE after 1 tool call(s)"]);
}

#[test]
fn opencode_http_400_is_an_error_event() {
    let opencode = Opencode::new("opencode-400");
    let prompt = directive(json!({"http_error": 400, "message": "scripted failure"}));
    let run = opencode.turn(None, &prompt);
    assert_ne!(run.code, Some(0), "{}", run.describe());
    let errors = run.of_type("error");
    assert_eq!(errors.len(), 1, "{}", run.describe());
    assert_eq!(errors[0]["error"]["data"]["statusCode"], 400);
    let message = errors[0]["error"]["data"]["message"].as_str().unwrap_or("");
    assert!(message.contains("scripted failure"), "{}", run.describe());
}

// -------------------------------------------------------------------------------------------
// The mock on its own (raw HTTP, no CLI)

fn post(mock: &MockModel, path: &str, body: &Value) -> support::HttpResponse {
    support::http(
        mock_addr(mock),
        "POST",
        path,
        &[("Content-Type", "application/json")],
        Some(body.to_string().as_bytes()),
    )
}

fn mock_addr(mock: &MockModel) -> std::net::SocketAddr {
    mock.base_url()
        .trim_start_matches("http://")
        .parse()
        .unwrap()
}

/// The `data:` payloads of an SSE body.
fn sse_data(text: &str) -> Vec<Value> {
    text.lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str(d).unwrap())
        .collect()
}

#[test]
fn mock_steps_then_final_over_responses_and_chat() {
    let mock = MockModel::start();
    let prompt = directive(
        json!({"steps": [{"shell": "echo a"}, {"write": {"path": "b.txt",
        "content": "b"}}], "final": "all done"}),
    );
    let user = json!({"type": "message", "role": "user",
                      "content": [{"type": "input_text", "text": prompt}]});
    let env = json!({"type": "message", "role": "user",
                     "content": [{"type": "input_text", "text": "<environment_context>x"}]});
    let output = json!({"type": "function_call_output", "call_id": "c", "output": "ok"});
    let tools = json!([{"type": "function", "name": "exec_command"},
                       {"type": "custom", "name": "apply_patch"}]);
    let turn = |input: Value| {
        let response = post(
            &mock,
            "/v1/responses",
            &json!({"model": "m", "stream": true, "input": input, "tools": tools}),
        );
        assert_eq!(response.status, 200);
        let events = sse_data(&response.text());
        assert_eq!(events[0]["type"], "response.created");
        let done = events.last().unwrap();
        assert_eq!(done["type"], "response.completed");
        done["response"]["output"][0].clone()
    };
    let step0 = turn(json!([env, user]));
    assert_eq!(step0["type"], "function_call");
    assert_eq!(step0["name"], "exec_command");
    assert_eq!(step0["arguments"], json!({"cmd": "echo a"}).to_string());
    let step1 = turn(json!([env, user, output]));
    assert_eq!(step1["type"], "custom_tool_call");
    assert_eq!(
        step1["input"],
        "*** Begin Patch\n*** Add File: b.txt\n+b\n*** End Patch\n"
    );
    let last = turn(json!([env, user, output, output]));
    assert_eq!(last["type"], "message");
    assert_eq!(last["content"][0]["text"], "all done");

    // Without `apply_patch` (codex with a model slug it has no metadata for) a write becomes a
    // heredoc through `exec_command`; the non-streaming form carries the same item.
    let write = directive(json!({"write": {"path": "it's.txt", "content": "x\ny\n"}}));
    let fallback = post(
        &mock,
        "/v1/responses",
        &json!({"model": "m", "input": [{"type": "message", "role": "user",
                 "content": [{"type": "input_text", "text": write}]}],
                "tools": [{"type": "function", "name": "exec_command"}]}),
    );
    let item = &fallback.json()["output"][0];
    assert_eq!(item["name"], "exec_command");
    assert_eq!(
        item["arguments"],
        json!({"cmd": "cat > 'it'\\''s.txt' <<'MOCK_EOF'\nx\ny\nMOCK_EOF"}).to_string()
    );
    assert_eq!(mock.requests().len(), 4);
    mock.reset();

    let chat = post(
        &mock,
        "/v1/chat/completions",
        &json!({"model": "m", "stream": true, "stream_options": {"include_usage": true},
                "messages": [{"role": "user", "content": prompt}],
                "tools": [{"type": "function", "function": {"name": "bash"}}]}),
    );
    let text = chat.text();
    assert!(text.trim_end().ends_with("data: [DONE]"), "{text}");
    let chunks = sse_data(&text);
    let call = &chunks[0]["choices"][0]["delta"]["tool_calls"][0];
    assert_eq!(call["function"]["name"], "bash");
    assert_eq!(chunks[1]["choices"][0]["finish_reason"], "tool_calls");
    assert!(
        chunks.last().unwrap()["usage"]["total_tokens"]
            .as_u64()
            .unwrap()
            > 0
    );

    let logged = support::http(mock_addr(&mock), "GET", "/__mock/requests", &[], None).json();
    assert_eq!(logged.as_array().unwrap().len(), 1, "{logged}");
    assert_eq!(logged[0]["path"], "/v1/chat/completions");
    assert_eq!(logged[0]["body"]["messages"][0]["content"], prompt.as_str());
    assert!(logged[0]["unix_ms"].as_u64().unwrap() > 0);
    let reset = support::http(mock_addr(&mock), "POST", "/__mock/reset", &[], None);
    assert_eq!(reset.status, 200);
    assert!(mock.requests().is_empty());
}

#[test]
fn mock_delay_sends_nothing_then_streams_chunks_apart() {
    let mock = MockModel::start();
    let body = json!({"contents": [{"role": "user", "parts": [
        {"text": "<session_context>ignored"},
        {"text": directive(json!({"delay": 1.0, "reply": "abcdef", "chunks": 3,
                                  "chunk_delay_ms": 300}))}]}]})
    .to_string();
    let mut stream = support::connect(mock_addr(&mock));
    let head = format!(
        "POST /v1beta/models/{GEMINI_MODEL}:streamGenerateContent?alt=sse HTTP/1.1\r\n\
         Host: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body.as_bytes()).unwrap();
    let started = Instant::now();
    // Each complete `data:` line with the time its last byte arrived.
    let mut lines: Vec<(Duration, String)> = Vec::new();
    let mut pending = String::new();
    let mut buf = [0u8; 4096];
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut first_byte = None;
    let mut done = false;
    while !done {
        let n = stream
            .read(&mut buf)
            .expect("the streamed body within 10 s");
        if n == 0 {
            break;
        }
        first_byte.get_or_insert(started.elapsed());
        pending.push_str(&String::from_utf8_lossy(&buf[..n]));
        while let Some(end) = pending.find('\n') {
            let line: String = pending.drain(..=end).collect();
            if line.starts_with("data: ") {
                lines.push((started.elapsed(), line.trim_end().to_string()));
            }
            // The last chunk of the chunked body.
            done |= line == "0\r\n";
        }
    }
    let first = first_byte.expect("a response");
    assert!(
        first >= Duration::from_millis(950),
        "nothing before the delay: {first:?}"
    );
    let texts: Vec<(Duration, String)> = lines
        .iter()
        .flat_map(|(at, line)| sse_data(line).into_iter().map(move |v| (*at, v)))
        .map(|(at, v)| {
            let text = v["candidates"][0]["content"]["parts"][0]["text"]
                .as_str()
                .unwrap_or("");
            (at, text.to_string())
        })
        .collect();
    let joined: String = texts.iter().map(|(_, t)| t.as_str()).collect();
    assert_eq!(joined, "abcdef");
    assert_eq!(texts.len(), 3);
    assert!(
        texts[2].0 - texts[0].0 >= Duration::from_millis(500),
        "{texts:?}"
    );
}

#[test]
fn mock_gemini_side_calls_and_errors() {
    let mock = MockModel::start();
    let schema = json!({"contents": [{"role": "user", "parts": [{"text": "route me"}]}],
        "generationConfig": {"responseMimeType": "application/json", "responseJsonSchema": {
            "type": "OBJECT", "properties": {
                "complexity_reasoning": {"type": "STRING"},
                "complexity_score": {"type": "INTEGER"}}}}});
    let routed = post(&mock, "/v1beta/models/m:generateContent", &schema);
    assert_eq!(routed.status, 200);
    let text = routed.json()["candidates"][0]["content"]["parts"][0]["text"]
        .as_str()
        .unwrap()
        .to_string();
    let object: Value = serde_json::from_str(&text).unwrap();
    assert!(object["complexity_score"].is_number(), "{object}");

    let count = post(&mock, "/v1beta/models/m:countTokens", &schema);
    assert!(count.json()["totalTokens"].as_u64().unwrap() > 0);

    let failing = json!({"contents": [{"role": "user", "parts": [{"text":
        directive(json!({"http_error": 429, "message": "slow down"}))}]}]});
    let error = post(
        &mock,
        "/v1beta/models/m:streamGenerateContent?alt=sse",
        &failing,
    );
    assert_eq!(error.status, 429);
    assert_eq!(error.json()["error"]["status"], "RESOURCE_EXHAUSTED");
    assert_eq!(error.json()["error"]["message"], "slow down");

    let models = support::http(mock_addr(&mock), "GET", "/v1/models", &[], None);
    assert_eq!(models.json()["data"][0]["id"], "mock-model");
}

#[test]
fn codara_toml_blocks_load_as_codara_config() {
    let mock = MockModel::start();
    let bin = PathBuf::from("/opt/clis/bin");
    let dir = TempDir::new("mock-toml");
    let path = dir.path().join("codara.toml");
    std::fs::write(&path, mock.codara_toml(&bin)).unwrap();
    let overrides = codara::testing::Overrides {
        config_path: Some(path.clone()),
        ..Default::default()
    };
    let config = codara::testing::Config::load_from(&overrides, &Default::default(), dir.path())
        .unwrap_or_else(|e| panic!("{e}\n{}", mock.codara_toml(&bin)));
    let providers = &config.providers;
    assert_eq!(providers.codex.binary, "/opt/clis/bin/codex");
    assert_eq!(providers.codex.default_model, mock_model::CODEX_MODEL);
    assert_eq!(providers.codex.extra_args, mock.codex_args());
    assert_eq!(providers.codex.env["MOCK_API_KEY"], "dummy");
    assert_eq!(providers.gemini.default_model, GEMINI_MODEL);
    assert_eq!(
        providers.gemini.env["GOOGLE_GEMINI_BASE_URL"],
        mock.base_url()
    );
    assert_eq!(providers.opencode.default_model, mock_model::OPENCODE_MODEL);
    let opencode_config = &providers.opencode.env["OPENCODE_CONFIG"];
    let written: Value =
        serde_json::from_str(&std::fs::read_to_string(opencode_config).unwrap()).unwrap();
    assert_eq!(
        written["provider"]["mock"]["options"]["baseURL"],
        format!("{}/v1", mock.base_url())
    );
}
