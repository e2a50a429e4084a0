//! Workspaces and projects end to end: projects from every template through the API and the
//! CLI (beside a running server), name validation, workspace ids that try to leave the root,
//! the inventory with git metadata and bound sessions, reset, confirmed delete, and the audit
//! row every mutation leaves.

use crate::support::{self, HttpResponse, Server};
use rusqlite::Connection;
use serde_json::Value;
use std::path::{Path, PathBuf};

const TEMPLATES: [&str; 4] = ["default", "python", "docs", "empty"];

/// base64url without padding, written independently of the server's encoder.
fn b64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut bits = 0u32;
    let mut count = 0;
    let mut out = String::new();
    for byte in bytes {
        bits = (bits << 8) | u32::from(*byte);
        count += 8;
        while count >= 6 {
            count -= 6;
            out.push(ALPHABET[((bits >> count) & 63) as usize] as char);
        }
    }
    if count > 0 {
        out.push(ALPHABET[((bits << (6 - count)) & 63) as usize] as char);
    }
    out
}

fn id(relative: &str) -> String {
    b64url(relative.as_bytes())
}

fn root(server: &Server) -> PathBuf {
    server.dir.join("workspaces").canonicalize().unwrap()
}

fn send(
    server: &Server,
    token: &str,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> HttpResponse {
    let auth = format!("Bearer {token}");
    let mut headers = vec![("Authorization", auth.as_str())];
    if body.is_some() {
        headers.push(("Content-Type", "application/json"));
    }
    server.request(method, path, &headers, body.map(str::as_bytes))
}

fn create_project(server: &Server, token: &str, body: &str) -> HttpResponse {
    send(server, token, "POST", "/management/v1/projects", Some(body))
}

fn assert_bad(response: &HttpResponse, status: u16, fragment: &str) {
    assert_eq!(response.status, status, "{}", response.text());
    let body = response.json();
    assert_eq!(body["ok"], false, "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains(fragment), "{message:?} lacks {fragment:?}");
}

/// Audit rows with `action`: (actor, target_type, target_id, after, request_id).
fn audit_rows(
    server: &Server,
    action: &str,
) -> Vec<(String, String, String, Value, Option<String>)> {
    let conn = Connection::open(server.data_dir().join("codara.db")).unwrap();
    let mut stmt = conn
        .prepare(
            "SELECT actor, target_type, target_id, after, request_id FROM audit_log \
             WHERE action = ?1 ORDER BY at, id",
        )
        .unwrap();
    stmt.query_map([action], |row| {
        let after: Option<String> = row.get(3)?;
        Ok((
            row.get(0)?,
            row.get(1)?,
            row.get(2)?,
            after
                .map(|a| serde_json::from_str(&a).unwrap())
                .unwrap_or(Value::Null),
            row.get(4)?,
        ))
    })
    .unwrap()
    .collect::<Result<_, _>>()
    .unwrap()
}

/// Inserts a session bound to `workspace` and one turn of it, as the turn engine would.
fn insert_session(server: &Server, session_id: &str, workspace: &Path) {
    let conn = Connection::open(server.data_dir().join("codara.db")).unwrap();
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .unwrap();
    let path = workspace.display().to_string();
    conn.execute(
        "INSERT INTO sessions (id, session_key, user_id, workspace_id, workspace_path, \
         client_session_id, provider, model, transcript_hash, request_hash, message_count, \
         created_at, updated_at) VALUES (?1, ?2, 'operator', 'ws', ?3, 'c', 'codex', 'm', '', '', 1, 0, 0)",
        rusqlite::params![session_id, format!("operator::{session_id}::c"), path],
    )
    .unwrap();
    conn.execute(
        "INSERT INTO turns (id, session_id, turn_index, provider, model, resumed, \
         request_messages, prompt, reply, actions, modified_files, prompt_tokens, \
         completion_tokens, cached_tokens, duration_ms, status, dirty, workspace_path, created_at) \
         VALUES (?1, ?2, 0, 'codex', 'm', 0, '[]', 'p', 'r', '[]', '[]', 0, 0, 0, 0, 'ok', 0, ?3, 0)",
        rusqlite::params![format!("trn_{session_id}"), session_id, path],
    )
    .unwrap();
}

/// `git init -q` in `dir` (created), as a user would make a repository by hand.
#[allow(clippy::disallowed_methods)]
fn git_init(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let status = std::process::Command::new("git")
        .args(["init", "-q"])
        .current_dir(dir)
        .status()
        .unwrap();
    assert!(status.success());
}

fn count(server: &Server, table: &str) -> i64 {
    let conn = Connection::open(server.data_dir().join("codara.db")).unwrap();
    conn.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |row| {
        row.get(0)
    })
    .unwrap()
}

/// The files a template lays out (relative paths; directories end with `/`).
fn expected_layout(template: &str, name: &str) -> Vec<String> {
    let package = name.replace(['-', '.'], "_");
    let list: Vec<String> = match template {
        "default" => vec!["README.md", "docs/", "src/", "scripts/", "tests/"]
            .into_iter()
            .map(String::from)
            .collect(),
        "python" => {
            let mut files: Vec<String> = vec!["README.md", "docs/", "src/", "scripts/", "tests/"]
                .into_iter()
                .map(String::from)
                .collect();
            files.push(format!("src/{package}/__init__.py"));
            files.push(format!("tests/test_{package}.py"));
            files
        }
        "docs" => vec!["README.md", "docs/index.md", "notes/", "assets/"]
            .into_iter()
            .map(String::from)
            .collect(),
        _ => Vec::new(),
    };
    let mut list = list;
    list.push(".codara/project.toml".into());
    list.push(".git/".into());
    list
}

fn assert_layout(dir: &Path, template: &str, name: &str) {
    for entry in expected_layout(template, name) {
        let path = dir.join(entry.trim_end_matches('/'));
        if entry.ends_with('/') {
            assert!(
                path.is_dir(),
                "{template}: {} is not a directory",
                path.display()
            );
        } else {
            assert!(
                path.is_file(),
                "{template}: {} is not a file",
                path.display()
            );
        }
    }
    let top: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let allowed: Vec<String> = expected_layout(template, name)
        .iter()
        .map(|e| e.split('/').next().unwrap().to_string())
        .collect();
    for entry in &top {
        assert!(allowed.contains(entry), "{template}: unexpected {entry}");
    }
    let toml = std::fs::read_to_string(dir.join(".codara/project.toml")).unwrap();
    assert!(toml.contains(&format!("name = \"{name}\"")), "{toml}");
    assert!(
        toml.contains(&format!("template = \"{template}\"")),
        "{toml}"
    );
    assert!(toml.contains("created_at = \""), "{toml}");
    assert!(toml.contains("created_by = \""), "{toml}");
}

#[test]
fn projects_from_each_template_via_the_api() {
    let server = support::server().start();
    let token = server.login();
    for template in TEMPLATES {
        let name = format!("api-{template}");
        let response = create_project(
            &server,
            &token,
            &format!(r#"{{"name":"{name}","template":"{template}","provider":"codex"}}"#),
        );
        assert_eq!(response.status, 201, "{}", response.text());
        let body = response.json();
        let data = &body["data"];
        assert_eq!(data["name"], name.as_str());
        assert_eq!(data["relative_path"], name.as_str());
        assert_eq!(data["workspace_id"], id(&name).as_str());
        assert_eq!(data["created"], true);
        assert_eq!(data["project"]["template"], template);
        assert_eq!(data["project"]["provider"], "codex");
        assert_eq!(data["project"]["default_provider"], "codex");
        assert_eq!(data["project"]["created_by"], "operator");
        assert_eq!(data["git"]["is_git_repo"], true);
        assert_eq!(data["git"]["head_summary"], "Initialize Codara project");
        assert_eq!(body["meta"]["templates"][3], "empty");
        let dir = root(&server).join(&name);
        assert_eq!(data["path"], dir.display().to_string().as_str());
        assert_layout(&dir, template, &name);
    }
    let readme = std::fs::read_to_string(root(&server).join("api-default/README.md")).unwrap();
    assert!(readme.starts_with("# api-default\n"), "{readme}");

    // The default template comes from the config; `default_provider` is accepted too.
    let response = create_project(
        &server,
        &token,
        r#"{"name":"plain","default_provider":"gemini"}"#,
    );
    assert_eq!(response.status, 201, "{}", response.text());
    assert_eq!(response.json()["data"]["project"]["template"], "default");
    assert_eq!(response.json()["data"]["project"]["provider"], "gemini");

    let list = send(&server, &token, "GET", "/management/v1/projects", None);
    assert_eq!(list.status, 200, "{}", list.text());
    let names: Vec<String> = list.json()["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        names,
        [
            "api-default",
            "api-docs",
            "api-empty",
            "api-python",
            "plain"
        ]
    );

    let info = send(
        &server,
        &token,
        "GET",
        "/management/v1/projects/api-docs",
        None,
    );
    assert_eq!(info.status, 200, "{}", info.text());
    assert_eq!(
        info.json()["data"]["path"],
        root(&server)
            .join("api-docs")
            .display()
            .to_string()
            .as_str()
    );
    // The original gateway's clients address a project by its workspace id.
    let by_id = send(
        &server,
        &token,
        "GET",
        &format!("/management/v1/projects/{}", id("api-docs")),
        None,
    );
    assert_eq!(by_id.status, 200, "{}", by_id.text());
    assert_eq!(by_id.json()["data"]["name"], "api-docs");
    assert_bad(
        &send(
            &server,
            &token,
            "GET",
            "/management/v1/projects/missing",
            None,
        ),
        404,
        "missing",
    );

    // Bad template and provider name the field.
    let response = create_project(&server, &token, r#"{"name":"x1","template":"rust"}"#);
    assert_bad(&response, 400, "template");
    assert_eq!(
        response.json()["error"]["param"],
        "template",
        "{}",
        response.text()
    );
    let response = create_project(&server, &token, r#"{"name":"x2","provider":"gpt"}"#);
    assert_bad(&response, 400, "provider");
    assert_bad(
        &create_project(&server, &token, r#"{"template":"docs"}"#),
        400,
        "name",
    );
    assert_bad(
        &create_project(&server, &token, r#"{"name":"x3","colour":"red"}"#),
        400,
        "colour",
    );
    assert!(!root(&server).join("x1").exists() && !root(&server).join("x2").exists());

    // An existing directory without metadata needs force; its files stay.
    std::fs::create_dir_all(root(&server).join("mine")).unwrap();
    std::fs::write(root(&server).join("mine/README.md"), "my own\n").unwrap();
    assert_bad(
        &create_project(&server, &token, r#"{"name":"mine"}"#),
        409,
        "force",
    );
    let response = create_project(&server, &token, r#"{"name":"mine","force":true}"#);
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(response.json()["data"]["created"], false);
    let readme = std::fs::read_to_string(root(&server).join("mine/README.md")).unwrap();
    assert_eq!(readme, "my own\n");

    let created = audit_rows(&server, "project.created");
    assert_eq!(created.len(), 5);
    let (actor, target_type, target_id, after, request_id) = &created[0];
    assert_eq!(
        (actor.as_str(), target_type.as_str(), target_id.as_str()),
        ("operator", "project", "api-default")
    );
    assert_eq!(after["template"], "default");
    assert_eq!(after["created"], true);
    assert!(request_id.as_deref().is_some_and(|r| !r.is_empty()));
    let initialized = audit_rows(&server, "project.initialized");
    assert_eq!(initialized.len(), 1);
    assert_eq!(initialized[0].2, "mine");
}

#[test]
fn bad_project_names_are_refused_by_the_api_and_the_cli() {
    let server = support::server().start();
    let token = server.login();
    let long = "a".repeat(81);
    let names = [
        "../x",
        "a/b",
        ".hidden",
        long.as_str(),
        "..",
        "a\\\\b",
        "-x",
        "sp ace",
        "",
    ];
    for name in names {
        let response = create_project(&server, &token, &format!(r#"{{"name":"{name}"}}"#));
        assert_eq!(response.status, 400, "{name}: {}", response.text());
        assert_eq!(response.json()["error"]["param"], "name", "{name}");
    }
    for name in ["../x", "a/b", ".hidden", long.as_str(), ".."] {
        let (code, out, err) = support::run_cli(&server.dir, &["project", "create", name], &[]);
        assert_eq!(code, 2, "{name}: {out}{err}");
        assert!(err.contains("error: `name`"), "{name}: {err}");
        let (code, _, err) = support::run_cli(&server.dir, &["project", "info", name], &[]);
        assert_eq!(code, 2, "{name}: {err}");
    }
    // Nothing was created anywhere near the root (beside the Dashboard Admin's workspace).
    let entries: Vec<String> = std::fs::read_dir(server.dir.join("workspaces"))
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|n| !n.starts_with("uag_usr_"))
                .collect()
        })
        .unwrap_or_default();
    assert!(entries.is_empty(), "{entries:?}");
    assert!(!server.dir.join("x").exists() && !server.dir.join("a").exists());
    assert!(audit_rows(&server, "project.created").is_empty());
    // An 80-character name is fine.
    let ok = "b".repeat(80);
    let response = create_project(
        &server,
        &token,
        &format!(r#"{{"name":"{ok}","template":"empty"}}"#),
    );
    assert_eq!(response.status, 201, "{}", response.text());
}

#[test]
fn the_cli_creates_lists_and_inspects_projects_while_the_server_runs() {
    let server = support::server().start();
    let token = server.login();
    for args in [
        &["project", "--help"][..],
        &["project", "create", "--help"],
        &["project", "list", "--help"],
        &["project", "info", "--help"],
    ] {
        let (code, out, err) = support::run_cli(&server.dir, args, &[]);
        assert_eq!(code, 0, "{args:?}: {err}");
        assert!(out.contains("Usage:"), "{args:?}: {out}");
    }
    let (code, out, _) = support::run_cli(&server.dir, &["--help"], &[]);
    assert_eq!(code, 0);
    assert!(out.contains("project"), "{out}");

    let (code, out, err) = support::run_cli(&server.dir, &["project", "list"], &[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), "No Codara projects found.");

    for template in TEMPLATES {
        let name = format!("cli-{template}");
        let (code, out, err) = support::run_cli(
            &server.dir,
            &[
                "project",
                "create",
                &name,
                "--template",
                template,
                "--provider",
                "gemini",
            ],
            &[],
        );
        assert_eq!(code, 0, "{template}: {out}{err}");
        let dir = root(&server).join(&name);
        assert!(out.contains(&format!("Created project: {name}\n")), "{out}");
        assert!(out.contains(&format!("Path: {}\n", dir.display())), "{out}");
        assert!(out.contains(&format!("Template: {template}\n")), "{out}");
        assert!(out.contains("Metadata: "), "{out}");
        assert_layout(&dir, template, &name);
        let toml = std::fs::read_to_string(dir.join(".codara/project.toml")).unwrap();
        assert!(toml.contains("created_by = \"cli\""), "{toml}");
        assert!(toml.contains("provider = \"gemini\""), "{toml}");
    }

    // The server sees what the CLI made.
    let list = send(&server, &token, "GET", "/management/v1/projects", None);
    assert_eq!(list.status, 200, "{}", list.text());
    assert_eq!(list.json()["data"].as_array().unwrap().len(), 4);

    let (code, out, err) = support::run_cli(&server.dir, &["project", "list"], &[]);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with("Name") && lines[0].contains("Template"),
        "{out}"
    );
    assert_eq!(lines[1], "-".repeat(70));
    assert_eq!(lines.len(), 6, "{out}");
    assert!(
        lines[2].starts_with("cli-default") && lines[2].contains("default"),
        "{out}"
    );

    insert_session(&server, "ses_cli1", &root(&server).join("cli-docs"));
    let (code, out, err) = support::run_cli(&server.dir, &["project", "info", "cli-docs"], &[]);
    assert_eq!(code, 0, "{err}");
    for line in [
        "Name: cli-docs",
        "Template: docs",
        "Default provider: gemini",
        "Git repo: yes",
        "Bound sessions: 1",
    ] {
        assert!(out.contains(line), "{line:?} missing from\n{out}");
    }

    let (code, _, err) = support::run_cli(&server.dir, &["project", "info", "nope"], &[]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("project not found: nope"), "{err}");
    let (code, _, err) = support::run_cli(
        &server.dir,
        &["project", "create", "x", "--template", "rust"],
        &[],
    );
    assert_eq!(code, 2, "{err}");
    let (code, _, err) = support::run_cli(&server.dir, &["project", "create"], &[]);
    assert_eq!(code, 2, "{err}");
    let (code, _, err) = support::run_cli(&server.dir, &["project", "frobnicate"], &[]);
    assert_eq!(code, 2, "{err}");

    std::fs::create_dir_all(root(&server).join("theirs")).unwrap();
    let (code, _, err) = support::run_cli(&server.dir, &["project", "create", "theirs"], &[]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("--force"), "{err}");
    let (code, out, err) = support::run_cli(
        &server.dir,
        &["project", "create", "theirs", "--force"],
        &[],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("Initialized project: theirs\n"), "{out}");

    let created = audit_rows(&server, "project.created");
    assert_eq!(created.len(), 4);
    assert!(
        created.iter().all(|(actor, ..)| actor == "cli"),
        "{created:?}"
    );
    assert!(created.iter().all(|(.., request_id)| request_id.is_none()));
    assert_eq!(audit_rows(&server, "project.initialized").len(), 1);

    // The server is still healthy and answering.
    assert_eq!(server.get("/healthz", None).status, 200);
}

#[test]
fn workspace_ids_cannot_leave_the_root() {
    let server = support::server().start();
    let token = server.login();
    assert_eq!(
        create_project(&server, &token, r#"{"name":"inside"}"#).status,
        201
    );
    let outside = server.dir.join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("keep.txt"), "keep").unwrap();
    std::os::unix::fs::symlink(&outside, root(&server).join("escape")).unwrap();
    let absolute = outside.canonicalize().unwrap().display().to_string();
    let root_text = root(&server).display().to_string();
    let cases: Vec<(String, u16)> = vec![
        (id(".."), 400),
        (id("../outside"), 400),
        (id("inside/../../outside"), 400),
        (id(&absolute), 400),
        (id(&root_text), 400),
        (id("/"), 400),
        (id("."), 400),
        (id("escape"), 400),
        (id("inside/\0x"), 400),
        ("%2e%2e".to_string(), 400),
        ("not*base64".to_string(), 400),
        ("A".to_string(), 400),
        ("Zm9v=".to_string(), 400),
        (id("missing"), 404),
        (id("inside/README.md"), 404),
    ];
    for (workspace, status) in &cases {
        let detail = send(
            &server,
            &token,
            "GET",
            &format!("/management/v1/workspaces/{workspace}"),
            None,
        );
        assert_eq!(detail.status, *status, "GET {workspace}: {}", detail.text());
        let reset = send(
            &server,
            &token,
            "POST",
            &format!("/management/v1/workspaces/{workspace}/reset"),
            None,
        );
        assert_eq!(reset.status, *status, "reset {workspace}: {}", reset.text());
        let delete = send(
            &server,
            &token,
            "DELETE",
            &format!("/management/v1/workspaces/{workspace}"),
            Some(r#"{"confirm":"../outside"}"#),
        );
        assert_eq!(
            delete.status,
            *status,
            "DELETE {workspace}: {}",
            delete.text()
        );
    }
    assert_eq!(
        std::fs::read_to_string(outside.join("keep.txt")).unwrap(),
        "keep"
    );
    assert!(root(&server).join("inside/README.md").is_file());
    assert!(audit_rows(&server, "workspace.deleted").is_empty());
    assert!(audit_rows(&server, "workspace.reset").is_empty());
    // Without a token nothing is reachable.
    let anonymous = server.get(&format!("/management/v1/workspaces/{}", id("inside")), None);
    assert_eq!(anonymous.status, 401);
}

#[test]
fn inventory_reset_and_confirmed_delete() {
    let server = support::server().start();
    let token = server.login();
    assert_eq!(
        create_project(
            &server,
            &token,
            r#"{"name":"news-pulse","template":"python"}"#
        )
        .status,
        201
    );
    let dir = root(&server).join("news-pulse");
    // A nested repository (a user workspace with a sub-workspace) and a plain directory.
    let nested = root(&server).join("team/app");
    git_init(&nested);
    let (code, _, err) = support::run_cli(
        &server.dir,
        &[
            "project",
            "create",
            "team",
            "--force",
            "--template",
            "empty",
        ],
        &[],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        create_project(&server, &token, r#"{"name":"other","template":"empty"}"#).status,
        201
    );
    std::fs::create_dir_all(root(&server).join("not-a-repo")).unwrap();
    insert_session(&server, "ses_a", &dir);
    insert_session(&server, "ses_b", &dir.join("src"));
    insert_session(&server, "ses_c", &root(&server).join("other"));
    // A sibling whose name extends this one's is not "below" it.
    insert_session(&server, "ses_d", &root(&server).join("news-pulse-2"));

    let list = send(&server, &token, "GET", "/management/v1/workspaces", None);
    assert_eq!(list.status, 200, "{}", list.text());
    // Users' workspaces (the Dashboard Admin's) are listed too; this test looks at its own.
    let data: Vec<Value> = list.json()["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|w| !w["relative_path"].as_str().unwrap().starts_with("uag_usr_"))
        .cloned()
        .collect();
    let paths: Vec<&str> = data
        .iter()
        .map(|w| w["relative_path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, ["news-pulse", "other", "team", "team/app"]);
    let app = &data[3];
    assert_eq!(app["git"]["is_git_repo"], true);
    assert_eq!(app["git"]["head_commit"], Value::Null);
    assert_eq!(app["project"], Value::Null);
    let record = &data[0];
    assert_eq!(record["workspace_id"], id("news-pulse").as_str());
    assert_eq!(record["name"], "news-pulse");
    assert_eq!(record["path"], dir.display().to_string().as_str());
    assert_eq!(record["bound_sessions_count"], 2);
    assert_eq!(record["project"]["template"], "python");
    let git = &record["git"];
    assert_eq!(git["is_git_repo"], true);
    assert_eq!(git["head_commit"].as_str().unwrap().len(), 40);
    assert!(git["head_commit"]
        .as_str()
        .unwrap()
        .starts_with(git["short_commit"].as_str().unwrap()));
    assert_eq!(git["head_summary"], "Initialize Codara project");
    assert!(git["head_committed_at"].as_str().unwrap().ends_with('Z'));
    assert!(git["branch"].is_string());
    assert_eq!(git["dirty"], false);
    assert_eq!(git["remote_url"], Value::Null);

    let detail_path = format!("/management/v1/workspaces/{}", id("news-pulse"));
    let detail = send(&server, &token, "GET", &detail_path, None);
    assert_eq!(detail.status, 200, "{}", detail.text());
    let sessions = detail.json()["data"]["sessions"].clone();
    let mut ids: Vec<&str> = sessions
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    ids.sort();
    assert_eq!(ids, ["ses_a", "ses_b"]);
    // A directory that is not a repository still has a record.
    let plain = send(
        &server,
        &token,
        "GET",
        &format!("/management/v1/workspaces/{}", id("not-a-repo")),
        None,
    );
    assert_eq!(plain.status, 200, "{}", plain.text());
    assert_eq!(plain.json()["data"]["git"]["is_git_repo"], false);

    // Dirty after an edit.
    std::fs::write(dir.join("notes.txt"), "hello\n").unwrap();
    let detail = send(&server, &token, "GET", &detail_path, None);
    assert_eq!(detail.json()["data"]["git"]["dirty"], true);

    // Reset wipes the sessions (and their turns) of the path and below, keeps every file.
    let turns_before = count(&server, "turns");
    let reset_path = format!("{detail_path}/reset");
    let reset = send(&server, &token, "POST", &reset_path, None);
    assert_eq!(reset.status, 200, "{}", reset.text());
    let body = reset.json();
    assert_eq!(body["data"]["sessions_wiped"], 2);
    assert_eq!(body["data"]["files_preserved"], true);
    assert_eq!(count(&server, "turns"), turns_before - 2);
    assert_eq!(count(&server, "sessions"), 2);
    assert_eq!(
        std::fs::read_to_string(dir.join("notes.txt")).unwrap(),
        "hello\n"
    );
    assert!(dir.join("src/news_pulse/__init__.py").is_file() && dir.join(".git").is_dir());
    let detail = send(&server, &token, "GET", &detail_path, None);
    assert_eq!(detail.json()["data"]["bound_sessions_count"], 0);
    let rows = audit_rows(&server, "workspace.reset");
    assert_eq!(rows.len(), 1);
    assert_eq!(
        (rows[0].0.as_str(), rows[0].1.as_str(), rows[0].2.as_str()),
        ("operator", "workspace", "news-pulse")
    );
    assert_eq!(rows[0].3["sessions_wiped"], 2);
    assert_eq!(rows[0].4.as_deref(), body["meta"]["request_id"].as_str());

    // Delete needs the relative path as confirmation.
    insert_session(&server, "ses_e", &dir);
    assert_bad(
        &send(&server, &token, "DELETE", &detail_path, None),
        400,
        "confirm",
    );
    let response = send(&server, &token, "DELETE", &detail_path, Some("{}"));
    assert_bad(&response, 400, "confirm");
    assert_eq!(response.json()["error"]["param"], "confirm");
    assert_bad(
        &send(
            &server,
            &token,
            "DELETE",
            &detail_path,
            Some(r#"{"confirm":"other"}"#),
        ),
        400,
        "does not match",
    );
    assert_bad(
        &send(
            &server,
            &token,
            "DELETE",
            &detail_path,
            Some(r#"{"confirm":true}"#),
        ),
        400,
        "",
    );
    assert!(dir.is_dir());
    assert!(audit_rows(&server, "workspace.deleted").is_empty());

    let deleted = send(
        &server,
        &token,
        "DELETE",
        &detail_path,
        Some(r#"{"confirm":"news-pulse"}"#),
    );
    assert_eq!(deleted.status, 200, "{}", deleted.text());
    assert_eq!(deleted.json()["data"]["workspace_deleted"], true);
    assert_eq!(deleted.json()["data"]["sessions_wiped"], 1);
    assert!(!dir.exists());
    assert_eq!(send(&server, &token, "GET", &detail_path, None).status, 404);
    assert_eq!(count(&server, "sessions"), 2, "other sessions stay");
    let rows = audit_rows(&server, "workspace.deleted");
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].2, "news-pulse");
    assert_eq!(rows[0].3["workspace_deleted"], true);

    // A nested workspace can be deleted by its own relative path; the parent stays.
    let nested_path = format!("/management/v1/workspaces/{}", id("team/app"));
    let response = send(
        &server,
        &token,
        "DELETE",
        &nested_path,
        Some(r#"{"confirm":"team/app"}"#),
    );
    assert_eq!(response.status, 200, "{}", response.text());
    assert!(!nested.exists() && root(&server).join("team/.codara/project.toml").is_file());

    let list = send(&server, &token, "GET", "/management/v1/workspaces", None);
    let paths: Vec<String> = list.json()["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["relative_path"].as_str().unwrap().to_string())
        .filter(|p| !p.starts_with("uag_usr_"))
        .collect();
    assert_eq!(paths, ["other", "team"]);
}
