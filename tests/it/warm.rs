//! Warm agents through the real binary and the real CLIs in their long-lived modes (codex
//! `app-server`, gemini `--acp`, opencode `acp`) against the mock model: the process outlives a
//! turn, dies with kill -9 mid-turn (502, then the session resumes in a new one), survives a
//! gateway restart by resume, is retired when idle and evicted at the cap, and a provider whose
//! warm mode cannot start runs exec.

use crate::support::mock_model::{clis_bin, directive, MockModel};
use crate::support::{self, Server};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// The mock's provider blocks with `settings` added to each (`key = value` lines).
fn toml_with(mock: &MockModel, settings: &str, extra: &str) -> String {
    let mut toml = mock.codara_toml(&clis_bin());
    for provider in ["codex", "gemini", "opencode"] {
        toml = toml.replace(
            &format!("[providers.{provider}]\n"),
            &format!("[providers.{provider}]\n{settings}\n"),
        );
    }
    format!("{toml}\n[workspace]\nlock_timeout_seconds = 30\n{extra}")
}

struct Rig {
    mock: MockModel,
    server: Server,
    token: String,
}

impl Rig {
    fn start(settings: &str, extra: &str) -> Rig {
        let mock = MockModel::start();
        let server = support::server()
            .toml(&toml_with(&mock, settings, extra))
            .start();
        let token = server.login();
        Rig {
            mock,
            server,
            token,
        }
    }

    fn chat(&self, provider: &str, session: &str, messages: &[Value]) -> support::HttpResponse {
        let body = json!({
            "model": format!("uag-{provider}"),
            "messages": messages,
            "client_session_id": session,
        });
        self.server
            .post_json("/v1/chat/completions", Some(&self.token), &body.to_string())
    }

    fn ok(&self, provider: &str, session: &str, messages: &[Value]) -> Value {
        let response = self.chat(provider, session, messages);
        assert_eq!(response.status, 200, "{provider}: {}", response.text());
        response.json()
    }

    fn overview(&self) -> Value {
        let response = self
            .server
            .get("/management/v1/overview", Some(&self.token));
        assert_eq!(response.status, 200, "{}", response.text());
        response.json()["data"].clone()
    }

    /// The live warm processes of `provider` (from the overview).
    fn processes(&self, provider: &str) -> Vec<Value> {
        self.overview()["warm"]["processes"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["provider"] == provider)
            .cloned()
            .collect()
    }

    fn fallbacks(&self, provider: &str) -> Value {
        let overview = self.overview();
        overview["providers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == provider)
            .unwrap()["exec_fallbacks"]
            .clone()
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

fn user(text: &str) -> Value {
    json!({"role": "user", "content": text})
}

fn assistant(text: &str) -> Value {
    json!({"role": "assistant", "content": text})
}

fn reply(response: &Value) -> String {
    response["choices"][0]["message"]["content"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// The model requests sent since `before` that carry `needle`, and how often each does.
fn mentions(rig: &Rig, before: usize, needle: &str) -> Vec<usize> {
    rig.model_requests()
        .iter()
        .skip(before)
        .map(|b| b.matches(&format!("\"{needle}\"")).count())
        .collect()
}

/// Waits (bounded) until the model was asked something containing `needle`.
fn wait_for_prompt(rig: &Rig, needle: &str) {
    support::wait_until(Duration::from_secs(60), needle, || {
        rig.model_requests().iter().any(|b| b.contains(needle))
    });
}

/// Two turns in one live process: the second resumes the session there, the process serves
/// both (same pid), and the model sees the first question once per request.
fn one_process_serves_the_session(provider: &str) {
    let rig = Rig::start("", "");
    let first = rig.ok(provider, "s", &[user("warm question alpha")]);
    let processes = rig.processes(provider);
    assert_eq!(processes.len(), 1, "{provider}: {processes:?}");
    let pid = processes[0]["pid"].clone();
    assert!(processes[0]["rss_bytes"].as_u64().unwrap() > 1_000_000);
    let before = rig.model_requests().len();
    let second = rig.ok(
        provider,
        "s",
        &[
            user("warm question alpha"),
            assistant(&reply(&first)),
            user("warm question beta"),
        ],
    );
    assert_eq!(second["resumed"], true, "{second}");
    assert_eq!(second["session_id"], first["session_id"]);
    let after = rig.processes(provider);
    assert_eq!(
        after[0]["pid"], pid,
        "{provider}: a new process served turn 2"
    );
    assert_eq!(after[0]["turns"], 2);
    let seen = mentions(&rig, before, "warm question alpha");
    assert!(!seen.is_empty() && seen.iter().all(|n| *n == 1), "{seen:?}");
    assert_eq!(rig.fallbacks(provider)["count"], 0);
    let (code, out, err) = support::run_cli(&rig.server.dir, &["doctor"], &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.lines().any(|l| l.starts_with("ok")
            && l.contains(&format!("{provider}-mode"))
            && l.contains("answered its handshake")),
        "{out}"
    );
}

/// kill -9 of the warm CLI mid-turn: that turn is a 502 the SDKs do not retry, it is stored,
/// and the next turn starts a new process that resumes the session with its history.
fn kill_mid_turn_then_resume(provider: &str) {
    let rig = Rig::start("", "");
    let first = rig.ok(provider, "k", &[user("killed question gamma")]);
    let pid = rig.processes(provider)[0]["pid"].as_i64().unwrap();
    let slow = directive(json!({"reply": "never", "delay": 30}));
    let history = [
        user("killed question gamma"),
        assistant(&reply(&first)),
        user(&slow),
    ];
    let pending = support::post_json_in_background(
        rig.server.addr,
        "/v1/chat/completions",
        &rig.token,
        json!({"model": format!("uag-{provider}"), "messages": history, "client_session_id": "k"})
            .to_string(),
    );
    wait_for_prompt(&rig, "never");
    // SAFETY: killing the CLI process this test's gateway started.
    assert_eq!(unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) }, 0);
    let started = Instant::now();
    let response = pending.join().unwrap();
    assert_eq!(response.status, 502, "{provider}: {}", response.text());
    assert!(started.elapsed() < Duration::from_secs(20));
    assert_eq!(response.header("x-should-retry"), Some("false"));
    let body = response.json();
    assert!(
        body["error"]["message"].as_str().unwrap().contains("warm"),
        "{body}"
    );
    let session = first["session_id"].as_str().unwrap();
    let stored = rig
        .server
        .get(
            &format!("/management/v1/sessions/{session}"),
            Some(&rig.token),
        )
        .json();
    assert_eq!(
        stored["data"]["turns"].as_array().unwrap().len(),
        2,
        "{stored}"
    );
    let before = rig.model_requests().len();
    let next = rig.ok(
        provider,
        "k",
        &[
            user("killed question gamma"),
            assistant(&reply(&first)),
            user(&slow),
            assistant(""),
            user("after the crash delta"),
        ],
    );
    assert_eq!(next["resumed"], true, "{next}");
    let later = rig.model_requests();
    assert!(
        later[before..]
            .iter()
            .any(|b| b.contains("killed question gamma") && b.contains("after the crash delta")),
        "{provider}: the resumed turn lacks the history"
    );
    let processes = rig.processes(provider);
    let fallbacks = rig.fallbacks(provider);
    if provider == "gemini" && fallbacks["count"] == 1 {
        // The session's chat file carries this minute: a `session/load` now would erase it
        // (gemini #28693), so that turn ran `gemini --resume` instead.
        assert!(
            fallbacks["last_reason"]
                .as_str()
                .unwrap()
                .contains("this minute"),
            "{fallbacks}"
        );
    } else {
        assert_eq!(fallbacks["count"], 0, "{fallbacks}");
        assert_eq!(processes.len(), 1, "{processes:?}");
        assert_ne!(processes[0]["pid"].as_i64(), Some(pid));
    }
}

/// A gateway restart: the new gateway resumes the session in a new warm process.
fn restart_then_resume(provider: &str) {
    let rig = Rig::start("", "");
    let first = rig.ok(provider, "r", &[user("before restart epsilon")]);
    let Rig {
        mock,
        server,
        token: _,
    } = rig;
    let toml = std::fs::read_to_string(server.dir.join("codara.toml")).unwrap();
    let (dir, tempdir) = server.stop_keep_dir();
    let server = support::server().dir(&dir).toml(&toml).start();
    let token = server.login();
    let rig = Rig {
        mock,
        server,
        token,
    };
    let before = rig.model_requests().len();
    let second = rig.ok(
        provider,
        "r",
        &[
            user("before restart epsilon"),
            assistant(&reply(&first)),
            user("after restart zeta"),
        ],
    );
    assert_eq!(second["resumed"], true, "{second}");
    assert_eq!(second["session_id"], first["session_id"]);
    let seen = mentions(&rig, before, "before restart epsilon");
    assert!(!seen.is_empty() && seen.iter().all(|n| *n == 1), "{seen:?}");
    drop(rig);
    drop(tempdir);
}

/// A provider whose warm mode cannot start runs its turns exec, and says so.
fn broken_warm_mode_falls_back_to_exec(provider: &str) {
    let mock = MockModel::start();
    let wrappers = support::TempDir::new("warm-wrapper");
    let real = clis_bin().join(provider);
    let wrapper = wrappers.path().join(provider);
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nfor a in \"$@\"; do case \"$a\" in app-server|--acp|acp) echo 'warm mode is broken here' >&2; exit 3;; esac; done\nexec {} \"$@\"\n",
            real.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let clis = clis_bin().parent().unwrap().parent().unwrap().to_path_buf();
    let toml = toml_with(
        &mock,
        "",
        &format!(
            "[sandbox]\nread_paths = [{:?}]\n",
            clis.display().to_string()
        ),
    )
    .replace(
        &format!("binary = {:?}", real.display().to_string()),
        &format!("binary = {:?}", wrapper.display().to_string()),
    );
    let server = support::server().toml(&toml).start();
    let token = server.login();
    let rig = Rig {
        mock,
        server,
        token,
    };
    let first = rig.ok(provider, "f", &[user("fallback question eta")]);
    assert!(reply(&first).contains("MOCK_REPLY"), "{first}");
    assert!(rig.processes(provider).is_empty());
    let fallbacks = rig.fallbacks(provider);
    assert_eq!(fallbacks["count"], 1, "{fallbacks}");
    assert!(
        fallbacks["last_reason"]
            .as_str()
            .unwrap()
            .contains("warm mode is broken here"),
        "{fallbacks}"
    );
    let warnings = rig.overview()["warnings"].to_string();
    assert!(warnings.contains("ran exec"), "{warnings}");
    // The next turn does not retry the start at once (it failed a moment ago) and resumes.
    let second = rig.ok(
        provider,
        "f",
        &[
            user("fallback question eta"),
            assistant(&reply(&first)),
            user("fallback question theta"),
        ],
    );
    assert_eq!(second["resumed"], true, "{second}");
    assert_eq!(rig.fallbacks(provider)["count"], 2);
    // `codara doctor` tells the operator before any turn does.
    let (code, out, err) = support::run_cli(&rig.server.dir, &["doctor"], &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains(&format!("{provider}-mode"))
            && out.contains("warm mode cannot start")
            && out.contains("warm mode is broken here"),
        "{out}"
    );
    drop(wrappers);
}

#[test]
fn codex_one_process_serves_the_session() {
    one_process_serves_the_session("codex");
}

#[test]
fn gemini_one_process_serves_the_session() {
    one_process_serves_the_session("gemini");
}

#[test]
fn opencode_one_process_serves_the_session() {
    one_process_serves_the_session("opencode");
}

#[test]
fn codex_kill_mid_turn_then_resume() {
    kill_mid_turn_then_resume("codex");
}

#[test]
fn gemini_kill_mid_turn_then_resume() {
    kill_mid_turn_then_resume("gemini");
}

#[test]
fn opencode_kill_mid_turn_then_resume() {
    kill_mid_turn_then_resume("opencode");
}

#[test]
fn codex_restart_then_resume() {
    restart_then_resume("codex");
}

#[test]
fn gemini_restart_then_resume() {
    restart_then_resume("gemini");
}

#[test]
fn opencode_restart_then_resume() {
    restart_then_resume("opencode");
}

#[test]
fn codex_broken_warm_mode_falls_back_to_exec() {
    broken_warm_mode_falls_back_to_exec("codex");
}

#[test]
fn gemini_broken_warm_mode_falls_back_to_exec() {
    broken_warm_mode_falls_back_to_exec("gemini");
}

#[test]
fn opencode_broken_warm_mode_falls_back_to_exec() {
    broken_warm_mode_falls_back_to_exec("opencode");
}

/// Idle processes are retired after `warm_idle_seconds`, and the next turn resumes in a new one.
#[test]
fn idle_processes_are_retired_and_sessions_resume() {
    let rig = Rig::start("warm_idle_seconds = 2", "");
    let first = rig.ok("codex", "i", &[user("idle question iota")]);
    assert_eq!(rig.processes("codex").len(), 1);
    support::wait_until(
        Duration::from_secs(20),
        "the idle process to be retired",
        || rig.processes("codex").is_empty(),
    );
    let second = rig.ok(
        "codex",
        "i",
        &[
            user("idle question iota"),
            assistant(&reply(&first)),
            user("idle question kappa"),
        ],
    );
    assert_eq!(second["resumed"], true, "{second}");
    assert_eq!(rig.processes("codex").len(), 1);
    assert_eq!(rig.fallbacks("codex")["count"], 0);
}

/// At `max_warm_processes` a new process evicts the least recently used idle one; when every
/// one is busy the turn runs exec.
#[test]
fn the_cap_evicts_idle_processes_and_busy_ones_force_exec() {
    let rig = Rig::start("", "[server]\nmax_warm_processes = 1\n");
    rig.ok("codex", "a", &[user("cap question one")]);
    assert_eq!(rig.processes("codex").len(), 1);
    rig.ok("gemini", "b", &[user("cap question two")]);
    assert!(
        rig.processes("codex").is_empty(),
        "the idle codex process was not evicted"
    );
    assert_eq!(rig.processes("gemini").len(), 1);
    let slow = support::post_json_in_background(
        rig.server.addr,
        "/v1/chat/completions",
        &rig.token,
        json!({"model": "uag-gemini", "client_session_id": "slow", "workspace_id": "other",
                "messages": [user(&directive(json!({"reply": "slow cap turn", "delay": 6})))]})
        .to_string(),
    );
    wait_for_prompt(&rig, "slow cap turn");
    let busy = rig.ok("codex", "c", &[user("cap question three")]);
    assert!(reply(&busy).contains("MOCK_REPLY"), "{busy}");
    let fallbacks = rig.fallbacks("codex");
    assert_eq!(fallbacks["count"], 1, "{fallbacks}");
    assert!(
        fallbacks["last_reason"].as_str().unwrap().contains("busy"),
        "{fallbacks}"
    );
    assert_eq!(slow.join().unwrap().status, 200);
}

/// gemini: a session written in an earlier minute is loaded into a new process with
/// `session/load` (no exec fallback), and carries its history.
#[test]
fn gemini_loads_a_session_from_an_earlier_minute_in_a_new_process() {
    let rig = Rig::start("", "");
    let first = rig.ok("gemini", "m", &[user("minute question lambda")]);
    let Rig { mock, server, .. } = rig;
    let toml = std::fs::read_to_string(server.dir.join("codara.toml")).unwrap();
    let (dir, keep) = server.stop_keep_dir();
    // Past the UTC minute the session's chat file is named after.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    std::thread::sleep(Duration::from_secs(61 - now % 60));
    let server = support::server().dir(&dir).toml(&toml).start();
    let token = server.login();
    let rig = Rig {
        mock,
        server,
        token,
    };
    let before = rig.model_requests().len();
    let second = rig.ok(
        "gemini",
        "m",
        &[
            user("minute question lambda"),
            assistant(&reply(&first)),
            user("minute question mu"),
        ],
    );
    assert_eq!(second["resumed"], true, "{second}");
    assert_eq!(rig.fallbacks("gemini")["count"], 0);
    assert_eq!(rig.processes("gemini").len(), 1);
    let seen = mentions(&rig, before, "minute question lambda");
    assert!(!seen.is_empty() && seen.iter().all(|n| *n == 1), "{seen:?}");
    drop(rig);
    drop(keep);
}
