//! Tenant isolation, tried as an attacker holding nothing but a user API key: each real CLI's
//! agent (driven by the mock model's `shell` directive) tries to read the gateway's secrets and
//! other tenants' files and to write outside its workspace; planted git configuration tries to
//! make the gateway's own git run a program; workspace ids try to leave the caller's tree; a
//! kill -9 mid-turn must leave no CLI behind and lose no change.

use crate::support::mock_model::{clis_bin, MockModel};
use crate::support::{self, Server, TempDir};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A canary line in the config file: agents must never see it.
const CONFIG_CANARY: &str = "config-canary-7f3a9c";
/// The content of a file in the gateway's HOME.
const HOME_CANARY: &str = "home-canary-5be21d";
/// The content of a file in the victim's workspace.
const VICTIM_CANARY: &str = "victim-canary-91ac04";
/// The content of a file in the victim's CLI home.
const TRANSCRIPT_CANARY: &str = "transcript-canary-c0ffee";

struct Tenant {
    id: String,
    key: String,
    workspace: PathBuf,
}

struct Rig {
    mock: MockModel,
    server: Server,
    _home: TempDir,
    home: PathBuf,
    token: String,
}

fn rig(extra_toml: &str) -> Rig {
    let mock = MockModel::start();
    let home = TempDir::new("gateway-home");
    std::fs::write(home.path().join("canary.txt"), HOME_CANARY).unwrap();
    let toml = format!(
        "# {CONFIG_CANARY}\n{}\n[workspace]\nlock_timeout_seconds = 30\n{extra_toml}",
        mock.codara_toml(&clis_bin())
    );
    let server = support::server()
        .toml(&toml)
        .env("HOME", Some(home.path().to_str().unwrap()))
        .env("UAG_MASTER_KEY", Some(&support::hex_key(0x42)))
        .start();
    let token = server.login();
    Rig {
        mock,
        server,
        home: home.path().to_path_buf(),
        _home: home,
        token,
    }
}

impl Rig {
    fn tenant(&self, email: &str) -> Tenant {
        let body = json!({"email": email, "display_name": email});
        let response =
            self.server
                .post_json("/management/v1/users", Some(&self.token), &body.to_string());
        assert_eq!(response.status, 201, "{}", response.text());
        let data = response.json()["data"].clone();
        Tenant {
            id: data["id"].as_str().unwrap().to_string(),
            key: data["api_key"]["key"].as_str().unwrap().to_string(),
            workspace: PathBuf::from(data["workspace_path"].as_str().unwrap()),
        }
    }

    fn chat(&self, key: &str, provider: &str, text: &str, extra: Value) -> support::HttpResponse {
        let mut body = json!({
            "model": format!("uag-{provider}"),
            "messages": [{"role": "user", "content": text}],
        });
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        self.server
            .post_json("/v1/chat/completions", Some(key), &body.to_string())
    }

    fn data_dir(&self) -> PathBuf {
        self.server.data_dir().canonicalize().unwrap()
    }
}

/// A `MOCK:` directive that makes the agent run `script` with its shell tool, then answer "done".
fn shell(script: &str) -> String {
    format!(
        "MOCK:{}",
        json!({"steps": [{"shell": script}], "final": "done"})
    )
}

/// Everything an attacker's agent tries: reads appended to `loot.txt` in its own workspace (so a
/// success would show in the turn's diff), writes into places it must not reach.
fn attack_script(targets: &[PathBuf], writes: &[PathBuf]) -> String {
    let mut script = String::new();
    for target in targets {
        script.push_str(&format!(
            "cat '{}' >> loot.txt 2>&1; echo >> loot.txt; ",
            target.display()
        ));
    }
    for write in writes {
        script.push_str(&format!(
            "echo pwned > '{}' 2>> loot.txt; ",
            write.display()
        ));
    }
    script.push_str("ls /tmp >> loot.txt 2>&1; true");
    script
}

fn read_secrets() -> Vec<(String, String)> {
    let operator_secret = support::SECRET.to_string();
    let master_key = support::hex_key(0x42);
    vec![
        ("operator secret".into(), operator_secret),
        ("master key".into(), master_key),
        ("database".into(), "SQLite format 3".into()),
        ("config".into(), CONFIG_CANARY.into()),
        ("gateway home".into(), HOME_CANARY.into()),
        ("victim workspace".into(), VICTIM_CANARY.into()),
        ("victim transcripts".into(), TRANSCRIPT_CANARY.into()),
    ]
}

fn attack_with(provider: &str) {
    let rig = rig("");
    let attacker = rig.tenant(&format!("attacker-{provider}@example.com"));
    let victim = rig.tenant(&format!("victim-{provider}@example.com"));
    let data = rig.data_dir();
    std::fs::write(victim.workspace.join("secret.txt"), VICTIM_CANARY).unwrap();
    let victim_home = data
        .join("homes")
        .join(provider)
        .join("default")
        .join(&victim.id);
    std::fs::create_dir_all(&victim_home).unwrap();
    std::fs::write(victim_home.join("transcript.jsonl"), TRANSCRIPT_CANARY).unwrap();
    let outside_marker = std::env::temp_dir().join(format!("codara-it-pwned-{}", attacker.id));
    let targets = [
        data.join("master.key"),
        data.join("operator.secret"),
        data.join("codara.db"),
        data.join("codara.db-wal"),
        rig.server.dir.join("codara.toml"),
        victim.workspace.join("secret.txt"),
        victim_home.join("transcript.jsonl"),
        PathBuf::from(format!("/proc/{}/environ", rig.server.pid())),
        rig.home.join("canary.txt"),
        data.clone(),
    ];
    let writes = [
        victim.workspace.join("pwned.txt"),
        data.join("pwned.txt"),
        outside_marker.clone(),
    ];
    // The operator secret and the master key must not even exist in the agent's environment.
    let script = format!(
        "{} env >> loot.txt; ls {} >> loot.txt 2>&1",
        attack_script(&targets, &writes),
        data.display()
    );
    let response = rig.chat(&attacker.key, provider, &shell(&script), json!({}));
    assert_eq!(response.status, 200, "{provider}: {}", response.text());
    let body = response.json();
    let loot = std::fs::read(attacker.workspace.join("loot.txt"))
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        .unwrap_or_else(|e| panic!("{provider}: the attack did not run ({e}): {body}"));
    // The attack really ran and was stopped by the kernel, not by chance.
    assert!(
        loot.matches("Permission denied").count() >= targets.len() - 1,
        "{provider}: {loot}"
    );
    for name in ["master.key", "operator.secret", "codara.db"] {
        assert!(
            !loot.lines().any(|l| l.trim() == name),
            "{provider}: the agent listed the data dir:\n{loot}"
        );
    }
    let everything = format!("{body}\n{loot}");
    for (what, secret) in read_secrets() {
        assert!(
            !everything.contains(&secret),
            "{provider}: the agent read the {what}:\n{everything}"
        );
    }
    assert!(
        !victim.workspace.join("pwned.txt").exists(),
        "{provider}: wrote into another tenant's workspace"
    );
    assert!(
        !data.join("pwned.txt").exists(),
        "{provider}: wrote into the data dir"
    );
    assert!(
        !outside_marker.exists(),
        "{provider}: wrote into the host /tmp"
    );
    // The turn itself worked: the loot file is this turn's change, reported workspace-relative.
    assert_eq!(body["modified_files"], json!(["loot.txt"]), "{body}");
    assert!(body["diff"].as_str().unwrap().contains("Permission denied"));
}

#[test]
fn codex_agents_reach_only_their_own_workspace() {
    attack_with("codex");
}

#[test]
fn gemini_agents_reach_only_their_own_workspace() {
    attack_with("gemini");
}

#[test]
fn opencode_agents_reach_only_their_own_workspace() {
    attack_with("opencode");
}

/// Git configuration that runs `touch <marker>`: filters, fsmonitor, hooks, an included file,
/// ssh and external diff, planted by the agent in a nested repository of its workspace.
fn plant_git_traps(dir: &Path, marker: &Path) -> String {
    let run = format!("touch {}", marker.display());
    let config = format!(
        "[filter \"x\"]\n\tclean = {run}\n\tsmudge = {run}\n\tprocess = {run}\n\
         [core]\n\tfsmonitor = {run}\n\tsshCommand = {run}\n\thooksPath = hooks\n\
         [diff]\n\texternal = {run}\n[diff \"x\"]\n\ttextconv = {run}\n\
         [include]\n\tpath = {}/included\n",
        dir.display()
    );
    // Everything is planted by the agent's own shell, as an attacker would.
    format!(
        "git init -q {d} && printf '%s' '{config}' >> {d}/.git/config && \
         printf '[core]\\n\\tfsmonitor = {run}\\n' > {d}/included && \
         mkdir -p {d}/hooks {d}/.git/hooks && \
         for h in pre-commit post-checkout post-index-change reference-transaction; do \
           printf '#!/bin/sh\\n{run}\\n' > {d}/hooks/$h; cp {d}/hooks/$h {d}/.git/hooks/$h; \
           chmod +x {d}/hooks/$h {d}/.git/hooks/$h; done && \
         echo '* filter=x diff=x' > {d}/.gitattributes && echo data > {d}/file.txt",
        d = dir.display()
    )
}

#[test]
fn planted_git_configuration_never_runs_in_the_gateway() {
    let rig = rig("");
    let user = rig.tenant("git-trap@example.com");
    let marker = std::env::temp_dir().join(format!("codara-it-git-pwned-{}", user.id));
    let nested = user.workspace.join("sub");
    let plant = plant_git_traps(&nested, &marker);
    let response = rig.chat(&user.key, "codex", &shell(&plant), json!({}));
    assert_eq!(response.status, 200, "{}", response.text());
    assert!(
        nested.join(".git/config").exists(),
        "the trap was not planted: {}",
        response.text()
    );
    // The next turn works in the trapped repository: its snapshots, diff and revert, and the
    // inventory's metadata, are the gateway's own git on that repository.
    let write = format!(
        "MOCK:{}",
        json!({"write": {"path": "new.txt", "content": "hello\n"}})
    );
    let response = rig.chat(
        &user.key,
        "codex",
        &write,
        json!({"workspace_id": "sub", "client_session_id": "trap"}),
    );
    assert_eq!(response.status, 200, "{}", response.text());
    let body = response.json();
    assert_eq!(body["modified_files"], json!(["new.txt"]), "{body}");
    let session = body["session_id"].as_str().unwrap().to_string();
    let token = Some(rig.token.as_str());
    let listing = rig.server.get("/management/v1/workspaces", token);
    assert_eq!(listing.status, 200, "{}", listing.text());
    assert!(listing.text().contains("sub"), "{}", listing.text());
    let path = format!("/management/v1/sessions/{session}/turns/1/diff");
    let diff = rig.server.get(&path, token);
    assert_eq!(diff.status, 200, "{}", diff.text());
    let revert = rig.server.post_json(
        &format!("/management/v1/sessions/{session}/turns/1/revert"),
        token,
        "{}",
    );
    assert_eq!(revert.status, 200, "{}", revert.text());
    assert!(!nested.join("new.txt").exists(), "the revert happened");
    assert!(
        !marker.exists(),
        "a program planted in the workspace's git config ran"
    );
}

#[test]
fn workspace_ids_cannot_leave_the_callers_tree() {
    let rig = rig("");
    let alice = rig.tenant("alice-ids@example.com");
    let bob = rig.tenant("bob-ids@example.com");
    std::fs::write(bob.workspace.join("bob.txt"), VICTIM_CANARY).unwrap();
    let bob_dir = bob
        .workspace
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    // What an agent of Alice's can make in her workspace.
    std::os::unix::fs::symlink(format!("../{bob_dir}"), alice.workspace.join("peek")).unwrap();
    std::os::unix::fs::symlink("..", alice.workspace.join("up")).unwrap();
    std::fs::create_dir_all(alice.workspace.join("a")).unwrap();
    for id in ["peek", "up", "up/x", ".git", "a/.git", ".GIT/x", "peek/new"] {
        let response = rig.chat(&alice.key, "codex", "hello", json!({"workspace_id": id}));
        assert_eq!(response.status, 400, "{id}: {}", response.text());
        assert_eq!(
            response.json()["error"]["param"],
            "workspace_id",
            "{id}: {}",
            response.text()
        );
    }
    assert!(!bob.workspace.join("new").exists());
    assert!(rig.mock.requests().is_empty(), "no CLI ran");
    // A user may not name a `workspace_root` at all; an operator may not name the root itself.
    let response = rig.chat(&alice.key, "codex", "hello", json!({"workspace_root": "."}));
    assert_eq!(response.status, 400, "{}", response.text());
    let root = alice.workspace.parent().unwrap().display().to_string();
    let response = rig.chat(
        &rig.token,
        "codex",
        "hello",
        json!({"workspace_root": root}),
    );
    assert_eq!(response.status, 400, "{}", response.text());
}

#[test]
fn huge_prompts_go_to_the_cli_on_stdin() {
    let rig = rig("");
    let user = rig.tenant("big-prompt@example.com");
    // Well past the kernel's single-argument limit (128 KiB), which made this a 500 before.
    // Distinct words: gemini stops a reply that repeats itself as a "loop".
    let words: Vec<String> = (0..40_000).map(|i| format!("w{i}")).collect();
    let text = format!("BIG {}", words.join(" "));
    assert!(text.len() > 200_000);
    for provider in ["codex", "gemini"] {
        let response = rig.chat(&user.key, provider, &text, json!({}));
        assert_eq!(response.status, 200, "{provider}: {}", response.text());
        let reply = response.json()["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(
            reply.contains(&text),
            "{provider}: the prompt arrived changed: {} chars: {}…",
            reply.len(),
            &reply[..200.min(reply.len())]
        );
    }
}

#[test]
fn pooled_credentials_exist_only_during_a_run_and_never_reach_the_shell() {
    let rig = rig("");
    let user = rig.tenant("creds@example.com");
    let add = json!({"id": "pool-1", "provider": "codex", "auth_type": "API_KEY",
                     "credential": "sk-test-never-in-the-shell"});
    let response = rig.server.post_json(
        "/management/v1/accounts",
        Some(&rig.token),
        &add.to_string(),
    );
    assert_eq!(response.status, 201, "{}", response.text());
    let response = rig.chat(&user.key, "codex", &shell("env > env.txt"), json!({}));
    assert_eq!(response.status, 200, "{}", response.text());
    let env = std::fs::read_to_string(user.workspace.join("env.txt")).unwrap();
    assert!(env.contains("CODEX_HOME="), "the shell ran: {env}");
    assert!(!env.contains("sk-test-never-in-the-shell"), "{env}");
    let home = rig.data_dir().join("homes/codex/pool-1").join(&user.id);
    assert!(
        home.is_dir(),
        "the run used the user's own home on the account"
    );
    // While the user's warm process lives, the credential is in that home only, 0600.
    let auth = home.join("auth.json");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&auth).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // Retired with the process (here: at a clean stop).
    let Rig { server, .. } = rig;
    let (_dir, _keep) = server.stop_keep_dir();
    assert!(!auth.exists(), "the credential outlived its process");
}

#[test]
fn kill_9_mid_turn_leaves_no_cli_and_loses_no_change() {
    let rig = rig("");
    let user = rig.tenant("crash@example.com");
    // A unique sleep the test can find in /proc afterwards.
    let nap = format!("sleep 61.{}", std::process::id() % 1000);
    let directive = json!({"steps": [
        {"write": {"path": "before-crash.txt", "content": "made before the crash\n"}},
        {"shell": nap},
    ], "final": "never"});
    let body = json!({"model": "uag-codex", "client_session_id": "crash",
                      "messages": [{"role": "user", "content": format!("MOCK:{directive}")}]});
    let client = support::post_json_in_background(
        rig.server.addr,
        "/v1/chat/completions",
        &user.key,
        body.to_string(),
    );
    let file = user.workspace.join("before-crash.txt");
    support::wait_until(Duration::from_secs(60), "the agent's write", || {
        file.exists()
    });
    support::wait_until(Duration::from_secs(30), "the agent's sleep", || {
        !processes_running(&nap).is_empty()
    });
    // `server` keeps its temp dir alive for the restart.
    let mut server = rig.server;
    server.signal("KILL");
    server.wait_exit(Duration::from_secs(10));
    let _ = client.join();
    let dir = server.dir.clone();
    // The restart kills what the dead gateway left and stores the interrupted turn.
    let restarted = support::server()
        .dir(&dir)
        .env("HOME", Some(rig.home.to_str().unwrap()))
        .env("UAG_MASTER_KEY", Some(&support::hex_key(0x42)))
        .start();
    support::wait_until(
        Duration::from_secs(10),
        "leftover CLIs to be killed",
        || processes_running(&nap).is_empty(),
    );
    let token = restarted.login();
    let sessions = restarted.get("/management/v1/sessions", Some(&token));
    assert_eq!(sessions.status, 200, "{}", sessions.text());
    let session = sessions.json()["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["client_session_id"] == "crash")
        .cloned()
        .unwrap_or_else(|| panic!("no session: {}", sessions.text()));
    let id = session["id"].as_str().unwrap();
    let detail = restarted.get(&format!("/management/v1/sessions/{id}"), Some(&token));
    let turn = detail.json()["data"]["turns"][0].clone();
    assert_eq!(turn["status"], "interrupted", "{}", detail.text());
    assert_eq!(turn["dirty"], true, "{turn}");
    assert_eq!(
        turn["modified_files"],
        json!(["before-crash.txt"]),
        "{turn}"
    );
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        "made before the crash\n"
    );
    drop(restarted);
    drop(server);
}

/// Pids of processes whose command line contains `needle`.
fn processes_running(needle: &str) -> Vec<u32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let text = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if text.contains(needle) {
            found.push(pid);
        }
    }
    found
}

#[test]
fn doctor_and_overview_report_the_sandbox() {
    let rig = rig("");
    let overview = rig.server.get("/management/v1/overview", Some(&rig.token));
    assert_eq!(overview.status, 200, "{}", overview.text());
    let sandbox = overview.json()["data"]["sandbox"].clone();
    assert_eq!(sandbox["mode"], "auto", "{sandbox}");
    assert_eq!(sandbox["enforced"], true, "{sandbox}");
    assert!(sandbox["landlock_abi"].as_i64().unwrap() >= 1, "{sandbox}");
    assert!(rig
        .server
        .stdout
        .iter()
        .any(|l| l.starts_with("Sandbox: landlock ABI")));
    let (code, out, err) = support::run_cli(&rig.server.dir, &["doctor"], &[]);
    assert!(code == 0 || code == 1, "{out}{err}");
    let line = out
        .lines()
        .find(|l| l.contains("sandbox"))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(line.starts_with("ok"), "{line}");
    assert!(line.contains("landlock ABI"), "{line}");
    // An operator who turns the sandbox off is told so everywhere.
    let off = support::server()
        .toml("[sandbox]\nmode = \"off\"\n")
        .start();
    assert!(
        off.stdout.iter().any(|l| l.contains("NOT confined")),
        "{:?}",
        off.stdout
    );
    let token = off.login();
    let overview = off.get("/management/v1/overview", Some(&token)).json();
    assert_eq!(overview["data"]["sandbox"]["enforced"], false);
    assert!(!overview["data"]["warnings"].as_array().unwrap().is_empty());
}
