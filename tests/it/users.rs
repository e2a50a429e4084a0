//! Users and their API keys end to end: provisioning (with rollback on a duplicate email),
//! listing, update, suspend/delete, the key lifecycle (revoke, rotate, expiry, last use), user
//! turns through the real codex CLI against the mock model (the user's workspace, traversal,
//! concurrency and budget limits, session isolation), the audit trail, the `codara user` CLI,
//! and no raw key or operator secret anywhere on disk or in the logs.

use crate::support::mock_model::{clis_bin, directive, MockModel};
use crate::support::{self, HttpResponse, Server, SECRET};
use rusqlite::Connection;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A server whose codex points at a missing binary: user-plane checks without running a CLI.
const NO_CLI: &str = "[providers.codex]\nbinary = \"/nonexistent/codex\"\n";

/// A server, the operator's access token, and every raw secret the test saw.
struct Rig {
    server: Server,
    token: String,
    /// Raw user keys issued during the test (for the final leak scan).
    keys: Vec<String>,
}

/// A user created through the management plane.
#[derive(Debug, Clone)]
struct User {
    id: String,
    email: String,
    key: String,
    key_id: String,
    workspace: PathBuf,
}

fn rig(toml: &str) -> Rig {
    let server = support::server().toml(toml).start();
    let token = server.login();
    Rig {
        server,
        token,
        keys: Vec::new(),
    }
}

fn call(
    server: &Server,
    method: &str,
    path: &str,
    bearer: Option<&str>,
    body: Option<&Value>,
) -> HttpResponse {
    let auth = bearer.map(|t| format!("Bearer {t}"));
    let text = body.map(Value::to_string);
    let mut headers: Vec<(&str, &str)> = Vec::new();
    if let Some(auth) = &auth {
        headers.push(("Authorization", auth));
    }
    if text.is_some() {
        headers.push(("Content-Type", "application/json"));
    }
    server.request(method, path, &headers, text.as_deref().map(str::as_bytes))
}

impl Rig {
    /// An operator request.
    fn op(&self, method: &str, path: &str, body: Option<Value>) -> HttpResponse {
        call(&self.server, method, path, Some(&self.token), body.as_ref())
    }

    /// An operator request that must succeed; returns `data`.
    fn op_ok(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let response = self.op(method, path, body);
        assert!(
            (200..300).contains(&response.status),
            "{method} {path}: {}",
            response.text()
        );
        response.json()["data"].clone()
    }

    fn create_user(&mut self, email: &str, extra: Value) -> User {
        let mut body = json!({"email": email, "display_name": format!("Name of {email}")});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        let response = self.op("POST", "/management/v1/users", Some(body));
        assert_eq!(response.status, 201, "{}", response.text());
        let data = response.json()["data"].clone();
        let key = data["api_key"]["key"].as_str().unwrap().to_string();
        assert!(key.starts_with("uagk_live_"), "{key}");
        assert_eq!(key.len(), "uagk_live_".len() + 32);
        self.keys.push(key.clone());
        User {
            id: data["id"].as_str().unwrap().to_string(),
            email: data["email"].as_str().unwrap().to_string(),
            key,
            key_id: data["api_key"]["id"].as_str().unwrap().to_string(),
            workspace: PathBuf::from(data["workspace_path"].as_str().unwrap()),
        }
    }

    /// Issues a key through the management plane: (key id, raw key).
    fn add_key(&mut self, user: &str, body: Value) -> (String, String) {
        let response = self.op(
            "POST",
            &format!("/management/v1/users/{user}/keys"),
            Some(body),
        );
        assert_eq!(response.status, 201, "{}", response.text());
        let data = response.json()["data"].clone();
        let raw = data["key"].as_str().unwrap().to_string();
        self.keys.push(raw.clone());
        (data["id"].as_str().unwrap().to_string(), raw)
    }

    /// A user-key request.
    fn as_user(&self, key: &str, method: &str, path: &str, body: Option<Value>) -> HttpResponse {
        call(&self.server, method, path, Some(key), body.as_ref())
    }

    /// `GET /v1/user/me` with `key`.
    fn me(&self, key: &str) -> HttpResponse {
        self.server.get("/v1/user/me", Some(key))
    }

    fn db(&self) -> Connection {
        let conn = Connection::open(self.server.data_dir().join("codara.db")).unwrap();
        conn.busy_timeout(Duration::from_secs(5)).unwrap();
        conn
    }

    fn count(&self, sql: &str, param: &str) -> i64 {
        self.db().query_row(sql, [param], |r| r.get(0)).unwrap()
    }

    /// The number of rows in `table`.
    fn rows(&self, table: &str) -> i64 {
        self.db()
            .query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))
            .unwrap()
    }

    fn workspaces_root(&self) -> PathBuf {
        self.server.dir.join("workspaces")
    }

    /// A chat turn by `key`.
    fn chat(&self, key: &str, prompt: &str, extra: Value) -> HttpResponse {
        let mut body =
            json!({"model": "uag-codex", "messages": [{"role": "user", "content": prompt}]});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        self.as_user(key, "POST", "/v1/chat/completions", Some(body))
    }
}

/// Asserts an OpenAI error object (the `/v1` plane) with `status`, `code` and a message
/// containing `fragment`.
fn assert_openai_error(response: &HttpResponse, status: u16, code: &str, fragment: &str) {
    assert_eq!(response.status, status, "{}", response.text());
    let body = response.json();
    assert_eq!(body["error"]["code"], code, "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains(fragment), "{message:?} lacks {fragment:?}");
}

/// Asserts the management error envelope with `status`, `code` and optionally `param`.
fn assert_envelope_error(response: &HttpResponse, status: u16, code: &str, param: Option<&str>) {
    assert_eq!(response.status, status, "{}", response.text());
    let body = response.json();
    assert_eq!(body["ok"], false, "{body}");
    assert_eq!(body["error"]["code"], code, "{body}");
    if let Some(param) = param {
        assert_eq!(body["error"]["param"], param, "{body}");
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Epoch ms as RFC 3339 UTC with whole seconds.
fn rfc3339(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// The names of the directories directly under `dir`, hidden ones (`.git`) left out.
fn dirs_in(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Every regular file under `dir`, recursively (symbolic links are not followed).
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() {
                stack.push(entry.path());
            } else if kind.is_file() {
                out.push(entry.path());
            }
        }
    }
    out
}

/// Asserts that no file under the server's directory (data dir with codara.db, -wal, -shm,
/// logs, CLI homes; workspaces; stderr), nor its stdout, holds any of `secrets` (the first
/// of which is a user key).
fn assert_no_secret_anywhere(server: &Server, secrets: &[String]) {
    assert!(!secrets.is_empty());
    let files = files_under(&server.dir);
    let names: Vec<String> = files
        .iter()
        .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .collect();
    for expected in ["codara.db", "stderr.log"] {
        assert!(
            names.iter().any(|n| n == expected),
            "no {expected} among {names:?}"
        );
    }
    assert!(
        names
            .iter()
            .any(|n| n.starts_with("codara-") && n.ends_with(".jsonl")),
        "no log file among {names:?}"
    );
    let contents: Vec<(&PathBuf, Vec<u8>)> = files
        .iter()
        .map(|f| (f, std::fs::read(f).unwrap_or_default()))
        .collect();
    let holds = |bytes: &[u8], needle: &[u8]| bytes.windows(needle.len()).any(|w| w == needle);
    // The scan can see what is stored: each key's public prefix is in the database (or WAL).
    let prefix = &secrets[0].as_bytes()[.."uagk_live_".len() + 4];
    assert!(
        contents.iter().any(|(_, bytes)| holds(bytes, prefix)),
        "the scan does not see the stored key prefix"
    );
    let stdout = server.stdout.join("\n");
    for secret in secrets {
        assert!(!stdout.contains(secret.as_str()), "stdout holds a secret");
        for (file, bytes) in &contents {
            assert!(
                !holds(bytes, secret.as_bytes()),
                "{} holds the secret {}…",
                file.display(),
                &secret[..secret.len().min(14)]
            );
        }
    }
    assert!(
        !server.stderr().is_empty(),
        "the server logged nothing to stderr"
    );
}

// ---------------------------------------------------------------------------------------------
// Keys

#[test]
fn key_lifecycle_create_revoke_rotate_expire_and_last_use() {
    let mut rig = rig(NO_CLI);
    let user = rig.create_user("keys@example.com", json!({"key_label": "primary"}));

    // The first key works on the user plane and names its owner.
    let me = rig.me(&user.key);
    assert_eq!(me.status, 200, "{}", me.text());
    assert_eq!(me.json()["data"]["id"], user.id.as_str());
    assert_eq!(me.json()["data"]["email"], user.email.as_str());

    // A second key (operator) and a third (the user, self-service); all three work.
    let (second_id, second) = rig.add_key(&user.id, json!({"label": "ci"}));
    let third = rig.as_user(
        &user.key,
        "POST",
        "/v1/user/keys",
        Some(json!({"label": "laptop"})),
    );
    assert_eq!(third.status, 201, "{}", third.text());
    let third_id = third.json()["data"]["id"].as_str().unwrap().to_string();
    let third = third.json()["data"]["key"].as_str().unwrap().to_string();
    rig.keys.push(third.clone());
    for key in [&user.key, &second, &third] {
        assert_eq!(rig.me(key).status, 200);
    }
    let listed = rig.as_user(&user.key, "GET", "/v1/user/keys", None);
    assert_eq!(listed.status, 200);
    let text = listed.text();
    assert_eq!(listed.json()["data"].as_array().unwrap().len(), 3, "{text}");
    for secret in [&user.key, &second, &third] {
        assert!(
            !text.contains(secret.as_str()),
            "a key listing shows a raw key"
        );
    }
    assert!(
        !text.contains("key_hash") && !text.contains("hash"),
        "{text}"
    );

    // Revoke (operator) → 401 "revoked"; the others keep working.
    let revoked = rig.op_ok(
        "DELETE",
        &format!("/management/v1/users/{}/keys/{second_id}", user.id),
        None,
    );
    assert_eq!(revoked["status"], "revoked");
    assert!(revoked["revoked_at"].is_string(), "{revoked}");
    assert_openai_error(&rig.me(&second), 401, "unauthorized", "revoked");
    assert_eq!(rig.me(&user.key).status, 200);
    // Revoke (self-service).
    let response = rig.as_user(
        &user.key,
        "DELETE",
        &format!("/v1/user/keys/{third_id}"),
        None,
    );
    assert_eq!(response.status, 200, "{}", response.text());
    assert_openai_error(&rig.me(&third), 401, "unauthorized", "revoked");

    // Rotate (operator): the old key is dead, the new one works, label kept.
    let rotated = rig.op_ok(
        "POST",
        &format!(
            "/management/v1/users/{}/keys/{}/rotate",
            user.id, user.key_id
        ),
        None,
    );
    let new_key = rotated["key"].as_str().unwrap().to_string();
    rig.keys.push(new_key.clone());
    assert_ne!(rotated["id"], user.key_id.as_str());
    assert_eq!(rotated["label"], "primary");
    assert_openai_error(&rig.me(&user.key), 401, "unauthorized", "revoked");
    assert_eq!(rig.me(&new_key).status, 200);
    // Rotate (self-service).
    let new_id = rotated["id"].as_str().unwrap().to_string();
    let response = rig.as_user(
        &new_key,
        "POST",
        &format!("/v1/user/keys/{new_id}/rotate"),
        None,
    );
    assert_eq!(response.status, 200, "{}", response.text());
    let newest = response.json()["data"]["key"].as_str().unwrap().to_string();
    rig.keys.push(newest.clone());
    assert_openai_error(&rig.me(&new_key), 401, "unauthorized", "revoked");
    assert_eq!(rig.me(&newest).status, 200);
    // Expiry given at creation: works until then, 401 "expired" afterwards.
    let (_, short) = rig.add_key(&user.id, json!({"expires_at": rfc3339(now_ms() + 3000)}));
    assert_eq!(rig.me(&short).status, 200, "a key before its expiry");
    support::wait_until(Duration::from_secs(10), "the key to expire", || {
        rig.me(&short).status == 401
    });
    assert_openai_error(&rig.me(&short), 401, "unauthorized", "expired");
    // Expiry set in the database while the server runs (WAL).
    let (db_expired_id, db_expired) = rig.add_key(&user.id, json!({}));
    assert_eq!(rig.me(&db_expired).status, 200);
    let changed = rig
        .db()
        .execute(
            "UPDATE api_keys SET expires_at = ?1 WHERE id = ?2",
            rusqlite::params![now_ms() - 1000, db_expired_id],
        )
        .unwrap();
    assert_eq!(changed, 1);
    assert_openai_error(&rig.me(&db_expired), 401, "unauthorized", "expired");
    // Expiry in the past, or not a time: 400 naming the field.
    for (bad, param) in [
        (rfc3339(now_ms() - 60_000), "expires_at"),
        ("soon".to_string(), "expires_at"),
    ] {
        let response = rig.op(
            "POST",
            &format!("/management/v1/users/{}/keys", user.id),
            Some(json!({ "expires_at": bad })),
        );
        assert_envelope_error(&response, 400, "invalid_request", Some(param));
    }

    // last_used_at: set on the keys that were used, not on the one that never was.
    let (unused_id, _) = rig.add_key(&user.id, json!({"label": "unused"}));
    let keys = rig.op_ok(
        "GET",
        &format!("/management/v1/users/{}/keys", user.id),
        None,
    );
    let keys = keys.as_array().unwrap();
    let by_id = |id: &str| keys.iter().find(|k| k["id"] == id).unwrap().clone();
    assert!(by_id(&new_id)["last_used_at"].is_string(), "{keys:?}");
    assert!(by_id(&second_id)["last_used_at"].is_string(), "{keys:?}");
    assert!(by_id(&unused_id)["last_used_at"].is_null(), "{keys:?}");
    let stored: Option<i64> = rig
        .db()
        .query_row(
            "SELECT last_used_at FROM api_keys WHERE id = ?1",
            [&new_id],
            |r| r.get(0),
        )
        .unwrap();
    assert!(
        stored.is_some_and(|at| (now_ms() - at).abs() < 120_000),
        "{stored:?}"
    );
    // The database keeps hashes only.
    let conn = rig.db();
    let hashes: Vec<String> = conn
        .prepare("SELECT key_hash FROM api_keys")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(hashes
        .iter()
        .all(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit())));
    assert_no_secret_anywhere(&rig.server, &rig.keys);
}

/// Revoking is final: rotating a revoked key must not mint a working replacement (through
/// either plane), or a revoked key comes back to life under its old label.
#[test]
fn a_revoked_key_cannot_be_rotated() {
    let mut rig = rig(NO_CLI);
    let user = rig.create_user("final@example.com", json!({}));
    let (spare_id, _) = rig.add_key(&user.id, json!({"label": "spare"}));
    rig.op_ok(
        "DELETE",
        &format!("/management/v1/users/{}/keys/{spare_id}", user.id),
        None,
    );
    let response = rig.op(
        "POST",
        &format!("/management/v1/users/{}/keys/{spare_id}/rotate", user.id),
        None,
    );
    assert_envelope_error(&response, 409, "conflict", None);
    let response = rig.as_user(
        &user.key,
        "POST",
        &format!("/v1/user/keys/{spare_id}/rotate"),
        None,
    );
    assert_openai_error(&response, 409, "conflict", "");
    let active = rig.count(
        "SELECT COUNT(*) FROM api_keys WHERE user_id = ?1 AND status = 'active'",
        &user.id,
    );
    assert_eq!(active, 1, "only the first key is active");
}

// ---------------------------------------------------------------------------------------------
// Provisioning

#[test]
fn duplicate_and_invalid_emails_leave_nothing_half_created() {
    let mut rig = rig(NO_CLI);
    let user = rig.create_user("dup@example.com", json!({}));
    // The workspace: <root>/<id>, 0700, a git repository.
    assert_eq!(
        user.workspace,
        rig.workspaces_root().canonicalize().unwrap().join(&user.id)
    );
    let mode = std::fs::metadata(&user.workspace)
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o700, "{mode:o}");
    assert!(user.workspace.join(".git").is_dir());

    let dirs_before = dirs_in(&rig.workspaces_root());
    let users_before = rig.rows("users");
    for email in ["dup@example.com", "  DUP@Example.COM "] {
        let response = rig.op(
            "POST",
            "/management/v1/users",
            Some(json!({"email": email, "display_name": "Again"})),
        );
        assert_envelope_error(&response, 409, "conflict", None);
        assert!(
            response.text().contains("already exists"),
            "{}",
            response.text()
        );
    }
    for bad in [
        "",
        "nope",
        "a@b",
        "a b@c.com",
        "@x.com",
        "a@@b.com",
        "a@b..com",
        "a@b.com.",
    ] {
        let response = rig.op(
            "POST",
            "/management/v1/users",
            Some(json!({"email": bad, "display_name": "Bad"})),
        );
        assert_envelope_error(&response, 400, "invalid_request", Some("email"));
    }
    let response = rig.op(
        "POST",
        "/management/v1/users",
        Some(json!({"display_name": "No email"})),
    );
    assert_envelope_error(&response, 400, "invalid_request", Some("email"));
    let response = rig.op(
        "POST",
        "/management/v1/users",
        Some(json!({"email": "ok@example.com", "display_name": "  "})),
    );
    assert_envelope_error(&response, 400, "invalid_request", Some("display_name"));
    let response = rig.op(
        "POST",
        "/management/v1/users",
        Some(json!({"email": "ok@example.com", "display_name": "X", "max_concurrency": 0})),
    );
    assert_envelope_error(&response, 400, "invalid_request", Some("max_concurrency"));
    assert_eq!(
        rig.count(
            "SELECT COUNT(*) FROM users WHERE email = ?1",
            "dup@example.com"
        ),
        1
    );
    assert_eq!(rig.rows("users"), users_before);
    assert_eq!(
        dirs_in(&rig.workspaces_root()),
        dirs_before,
        "a stray directory"
    );

    // A race of creates with one new email: one wins, the others get 409 and leave nothing
    // (a loser that passed the early check has provisioned a directory, then loses on the
    // unique index and must take the directory back).
    let addr = rig.server.addr;
    let token = rig.token.clone();
    let threads: Vec<_> = (0..6)
        .map(|_| {
            let token = token.clone();
            std::thread::spawn(move || {
                let body =
                    json!({"email": "race@example.com", "display_name": "Racer"}).to_string();
                let auth = format!("Bearer {token}");
                support::http(
                    addr,
                    "POST",
                    "/management/v1/users",
                    &[
                        ("Authorization", &auth),
                        ("Content-Type", "application/json"),
                    ],
                    Some(body.as_bytes()),
                )
            })
        })
        .collect();
    let responses: Vec<HttpResponse> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let statuses: Vec<u16> = responses.iter().map(|r| r.status).collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 409).count(),
        5,
        "{statuses:?}"
    );
    for response in &responses {
        if response.status == 201 {
            rig.keys.push(
                response.json()["data"]["api_key"]["key"]
                    .as_str()
                    .unwrap()
                    .to_string(),
            );
        }
    }
    assert_eq!(
        rig.count(
            "SELECT COUNT(*) FROM users WHERE email = ?1",
            "race@example.com"
        ),
        1
    );
    let winner: String = rig
        .db()
        .query_row(
            "SELECT id FROM users WHERE email = 'race@example.com'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let mut expected = dirs_before.clone();
    expected.insert(winner.clone());
    assert_eq!(
        dirs_in(&rig.workspaces_root()),
        expected,
        "stray directories after the race"
    );
    // One creation, one first key: no audit entry for the losers.
    assert_eq!(
        rig.count(
            "SELECT COUNT(*) FROM audit_log WHERE action = 'user.created' AND after LIKE ?1",
            "%race@example.com%"
        ),
        1
    );
    assert_eq!(
        rig.count("SELECT COUNT(*) FROM api_keys WHERE user_id = ?1", &winner),
        1
    );
}

#[test]
fn list_paginates_with_a_cursor_and_detail_and_update_work() {
    let mut rig = rig(NO_CLI);
    let mut created = Vec::new();
    for i in 0..5 {
        created.push(rig.create_user(&format!("page{i}@example.com"), json!({})));
    }
    let all = rig.op_ok("GET", "/management/v1/users?limit=200", None);
    let all: Vec<String> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["id"].as_str().unwrap().to_string())
        .collect();
    // The five plus the Dashboard Admin provisioned at start-up.
    assert_eq!(all.len(), 6, "{all:?}");
    for user in &created {
        assert!(all.contains(&user.id));
    }
    let mut paged = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &cursor {
            Some(c) => format!("/management/v1/users?limit=2&cursor={c}"),
            None => "/management/v1/users?limit=2".to_string(),
        };
        let response = rig.op("GET", &path, None);
        assert_eq!(response.status, 200, "{}", response.text());
        let body = response.json();
        let page = body["data"].as_array().unwrap();
        assert!(page.len() <= 2);
        paged.extend(page.iter().map(|u| u["id"].as_str().unwrap().to_string()));
        pages += 1;
        assert!(pages <= 10, "the cursor does not advance");
        assert_eq!(body["meta"]["page"]["limit"], 2);
        match body["meta"]["page"]["next_cursor"].as_str() {
            Some(next) => {
                assert_eq!(body["meta"]["page"]["has_more"], true);
                cursor = Some(next.to_string());
            }
            None => {
                assert_eq!(body["meta"]["page"]["has_more"], false);
                break;
            }
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(paged, all, "pages differ from the full list");
    for (query, param) in [
        ("limit=0", "limit"),
        ("limit=201", "limit"),
        ("limit=x", "limit"),
        ("cursor=garbage", "cursor"),
        ("cursor=x:y", "cursor"),
    ] {
        let response = rig.op("GET", &format!("/management/v1/users?{query}"), None);
        assert_envelope_error(&response, 400, "invalid_request", Some(param));
    }

    // Detail: the user with keys, sessions, usage, recent activity.
    let id = &created[0].id;
    let detail = rig.op_ok("GET", &format!("/management/v1/users/{id}"), None);
    assert_eq!(detail["email"], "page0@example.com");
    assert_eq!(detail["status"], "active");
    assert_eq!(detail["max_concurrency"], 2, "the configured default");
    assert!(detail["daily_token_budget"].is_null());
    assert_eq!(detail["keys"].as_array().unwrap().len(), 1);
    assert_eq!(detail["sessions"], json!([]));
    assert_eq!(detail["usage"]["totals"]["requests"], 0);
    assert!(detail["recent_activity"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["action"] == "user.created"));
    assert!(!detail.to_string().contains(&created[0].key), "{detail}");
    assert!(!detail.to_string().contains("key_hash"), "{detail}");
    assert_envelope_error(
        &rig.op("GET", "/management/v1/users/uag_usr_nope", None),
        404,
        "not_found",
        None,
    );

    // Update: display name, concurrency, budget; null clears the budget.
    let path = format!("/management/v1/users/{id}");
    let updated = rig.op_ok(
        "PATCH",
        &path,
        Some(json!({"display_name": "Renamed", "max_concurrency": 3, "daily_token_budget": 5000})),
    );
    assert_eq!(updated["display_name"], "Renamed");
    assert_eq!(updated["max_concurrency"], 3);
    assert_eq!(updated["daily_token_budget"], 5000);
    let updated = rig.op_ok("PATCH", &path, Some(json!({"max_concurrency": 4})));
    assert_eq!(updated["daily_token_budget"], 5000, "untouched fields stay");
    assert_eq!(updated["display_name"], "Renamed");
    let updated = rig.op_ok("PATCH", &path, Some(json!({"daily_token_budget": null})));
    assert!(updated["daily_token_budget"].is_null(), "{updated}");
    assert_eq!(updated["max_concurrency"], 4);
    for (body, param) in [
        (json!({"max_concurrency": 0}), Some("max_concurrency")),
        (json!({"max_concurrency": 65}), Some("max_concurrency")),
        (json!({"daily_token_budget": 0}), Some("daily_token_budget")),
        (json!({"display_name": ""}), Some("display_name")),
        (json!({"email": "x@example.com"}), None),
    ] {
        let response = rig.op("PATCH", &path, Some(body.clone()));
        assert_envelope_error(&response, 400, "invalid_request", param);
    }
    assert_envelope_error(
        &rig.op(
            "PATCH",
            "/management/v1/users/uag_usr_nope",
            Some(json!({"max_concurrency": 2})),
        ),
        404,
        "not_found",
        None,
    );
    let stored: (String, i64) = rig
        .db()
        .query_row(
            "SELECT display_name, max_concurrency FROM users WHERE id = ?1",
            [id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(stored, ("Renamed".to_string(), 4));
}

// ---------------------------------------------------------------------------------------------
// Status changes

/// Inserts a session of `user` as the turn engine would.
fn insert_session(conn: &Connection, id: &str, user: &User) {
    conn.execute(
        "INSERT INTO sessions (id, session_key, user_id, workspace_id, workspace_path, \
         client_session_id, provider, model, transcript_hash, request_hash, message_count, \
         created_at, updated_at) VALUES (?1, ?2, ?3, '.', ?4, 'c', 'codex', 'm', '', '', 1, 1, 1)",
        rusqlite::params![
            id,
            format!("{}::.::{id}", user.id),
            user.id,
            user.workspace.display().to_string()
        ],
    )
    .unwrap();
}

#[test]
fn suspend_unsuspend_and_delete() {
    let mut rig = rig(NO_CLI);
    let user = rig.create_user("status@example.com", json!({}));
    let (_, second) = rig.add_key(&user.id, json!({}));
    let other = rig.create_user("bystander@example.com", json!({}));

    // Suspended: 403 on the whole /v1 plane, with a reason; other users are unaffected.
    let suspended = rig.op_ok(
        "POST",
        &format!("/management/v1/users/{}/suspend", user.id),
        None,
    );
    assert_eq!(suspended["status"], "suspended");
    for path in ["/v1/models", "/v1/user/me", "/v1/user/keys"] {
        let response = rig.server.get(path, Some(&user.key));
        assert_openai_error(&response, 403, "forbidden", "suspended");
    }
    let response = rig.chat(&user.key, "hi", json!({}));
    assert_openai_error(&response, 403, "forbidden", "suspended");
    assert_eq!(rig.me(&other.key).status, 200);
    // Unsuspended: both keys work again.
    let active = rig.op_ok(
        "POST",
        &format!("/management/v1/users/{}/unsuspend", user.id),
        None,
    );
    assert_eq!(active["status"], "active");
    assert_eq!(rig.me(&user.key).status, 200);
    assert_eq!(rig.me(&second).status, 200);
    assert_eq!(rig.server.get("/v1/models", Some(&second)).status, 200);

    // Delete: every key revoked, every session ended, the record kept as `deleted`.
    let conn = rig.db();
    insert_session(&conn, "ses_status_1", &user);
    insert_session(&conn, "ses_status_2", &user);
    insert_session(&conn, "ses_bystander", &other);
    drop(conn);
    let listed = rig.as_user(&user.key, "GET", "/v1/user/sessions", None);
    assert_eq!(listed.json()["data"].as_array().unwrap().len(), 2);
    let deleted = rig.op_ok("DELETE", &format!("/management/v1/users/{}", user.id), None);
    assert_eq!(deleted["status"], "deleted");
    for key in [&user.key, &second] {
        let response = rig.me(key);
        assert!(
            response.status == 401 || response.status == 403,
            "a deleted user's key: {}",
            response.text()
        );
    }
    let keys = rig.op_ok(
        "GET",
        &format!("/management/v1/users/{}/keys", user.id),
        None,
    );
    let keys = keys.as_array().unwrap();
    assert_eq!(keys.len(), 2);
    for key in keys {
        assert_eq!(key["status"], "revoked", "{key}");
        assert!(key["revoked_at"].is_string(), "{key}");
    }
    assert_eq!(
        rig.count("SELECT COUNT(*) FROM sessions WHERE user_id = ?1", &user.id),
        0
    );
    let sessions = rig.op_ok(
        "GET",
        &format!("/management/v1/sessions?user_id={}", user.id),
        None,
    );
    assert_eq!(sessions, json!([]));
    assert_eq!(
        rig.count(
            "SELECT COUNT(*) FROM sessions WHERE user_id = ?1",
            &other.id
        ),
        1,
        "another user's session went too"
    );
    let detail = rig.op_ok("GET", &format!("/management/v1/users/{}", user.id), None);
    assert_eq!(detail["status"], "deleted");
    assert!(user.workspace.is_dir(), "files are kept");

    // A deleted user stays deleted: every further change is a 409.
    let base = format!("/management/v1/users/{}", user.id);
    for (method, path, body) in [
        ("POST", format!("{base}/unsuspend"), None),
        ("POST", format!("{base}/suspend"), None),
        ("DELETE", base.clone(), None),
        ("PATCH", base.clone(), Some(json!({"display_name": "Back"}))),
        ("POST", format!("{base}/keys"), Some(json!({}))),
        ("POST", format!("{base}/keys/{}/rotate", user.key_id), None),
    ] {
        let response = rig.op(method, &path, body);
        assert_envelope_error(&response, 409, "conflict", None);
    }
    let detail = rig.op_ok("GET", &base, None);
    assert_eq!(detail["status"], "deleted");
    assert_eq!(rig.me(&other.key).status, 200);
    // The email stays taken by the deleted record.
    let response = rig.op(
        "POST",
        "/management/v1/users",
        Some(json!({"email": "status@example.com", "display_name": "Again"})),
    );
    assert_envelope_error(&response, 409, "conflict", None);
}

/// SPEC §4: "Suspended or deleted users get 403". Deleting also revokes every key; a deleted
/// user's key must still get the 403 that says why, not a 401 about the key.
#[test]
fn a_deleted_users_key_gets_403() {
    let mut rig = rig(NO_CLI);
    let user = rig.create_user("gone@example.com", json!({}));
    rig.op_ok("DELETE", &format!("/management/v1/users/{}", user.id), None);
    for path in ["/v1/user/me", "/v1/models"] {
        let response = rig.server.get(path, Some(&user.key));
        assert_openai_error(&response, 403, "forbidden", "deleted");
    }
}

// ---------------------------------------------------------------------------------------------
// User turns

#[test]
fn user_chat_rejects_traversal_and_workspace_root() {
    let mut rig = rig(NO_CLI);
    let user = rig.create_user("zone@example.com", json!({}));
    let root = rig.workspaces_root().canonicalize().unwrap();
    for bad in [
        "../x",
        "/etc",
        "a/../../b",
        "..",
        "../..",
        "./x",
        "a//b",
        "x/",
        "a\\..\\b",
        "sp ace",
        "%2e%2e",
        "",
    ] {
        let response = rig.chat(&user.key, "hi", json!({"workspace_id": bad}));
        let body = response.json();
        assert_eq!(response.status, 400, "{bad:?}: {body}");
        assert_eq!(body["error"]["param"], "workspace_id", "{bad:?}: {body}");
        assert_eq!(body["error"]["type"], "invalid_request_error", "{body}");
    }
    for leaked in ["x", "b", "etc"] {
        assert!(
            !root.join(leaked).exists(),
            "{leaked} was created under the root"
        );
    }
    assert!(!root.parent().unwrap().join("x").exists());
    assert_eq!(
        dirs_in(&user.workspace),
        BTreeSet::new(),
        "a rejected workspace_id created a directory"
    );
    // `workspace_root` is for operators only.
    for value in [
        root.display().to_string(),
        user.workspace.display().to_string(),
        "/tmp".into(),
    ] {
        let response = rig.chat(&user.key, "hi", json!({"workspace_root": value}));
        let body = response.json();
        assert_eq!(response.status, 400, "{body}");
        assert_eq!(body["error"]["param"], "workspace_root", "{body}");
    }
    // A valid nested id passes validation (then the missing CLI answers 503) and is made
    // inside the user's own workspace.
    let response = rig.chat(&user.key, "hi", json!({"workspace_id": "team/app"}));
    assert_openai_error(&response, 503, "provider_unavailable", "codex");
    assert!(root.join(&user.id).join("team/app").is_dir());
    // The operator's workspace_id is checked the same way.
    let response = call(
        &rig.server,
        "POST",
        "/v1/chat/completions",
        Some(&rig.token),
        Some(
            &json!({"model": "uag-codex", "messages": [{"role": "user", "content": "hi"}],
                     "workspace_id": "../x"}),
        ),
    );
    assert_eq!(response.status, 400, "{}", response.text());
    assert_eq!(response.json()["error"]["param"], "workspace_id");
    // Operator credentials work on /v1: the token and the secret itself.
    for bearer in [rig.token.as_str(), SECRET] {
        let models = rig.server.get("/v1/models", Some(bearer));
        assert_eq!(models.status, 200, "{}", models.text());
        assert_eq!(models.json()["object"], "list");
    }
}

/// A link the agent planted in the user's workspace must not let a `workspace_id` reach (or
/// create anything) outside the workspaces root.
#[test]
fn a_workspace_id_through_a_symlink_creates_nothing_outside_the_root() {
    let mut rig = rig(NO_CLI);
    let user = rig.create_user("link@example.com", json!({}));
    // A symbolic link inside the user's workspace that points out of the root is refused.
    let outside = support::TempDir::new("zone-outside");
    std::os::unix::fs::symlink(outside.path(), user.workspace.join("escape")).unwrap();
    let response = rig.chat(&user.key, "hi", json!({"workspace_id": "escape"}));
    assert_eq!(response.status, 400, "{}", response.text());
    assert_eq!(response.json()["error"]["param"], "workspace_id");
    let response = rig.chat(&user.key, "hi", json!({"workspace_id": "escape/inner"}));
    assert_eq!(response.status, 400, "{}", response.text());
    assert!(
        !outside.path().join("inner").exists(),
        "a directory was created outside the root through a link"
    );
}

fn mock_rig() -> (MockModel, Rig) {
    let mock = MockModel::start();
    let toml = format!(
        "{}\n[workspace]\nlock_timeout_seconds = 30\n",
        mock.codara_toml(&clis_bin())
    );
    (mock, rig(&toml))
}

#[test]
fn a_user_turn_runs_in_the_users_workspace_and_is_theirs_alone() {
    let (_mock, mut rig) = mock_rig();
    let a = rig.create_user("turn-a@example.com", json!({}));
    let b = rig.create_user("turn-b@example.com", json!({}));

    // A sub-workspace by id: <root>/<user>/<workspace_id>.
    let prompt = directive(json!({"write": {"path": "hello.txt", "content": "from user A\n"}}));
    let response = rig.chat(
        &a.key,
        &prompt,
        json!({"workspace_id": "proj", "client_session_id": "s1"}),
    );
    assert_eq!(response.status, 200, "{}", response.text());
    let body = response.json();
    assert_eq!(body["modified_files"], json!(["hello.txt"]), "{body}");
    assert_eq!(body["workspace_id"], "proj");
    let file = a.workspace.join("proj/hello.txt");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "from user A\n");
    assert!(!b.workspace.join("proj").exists());
    let session_id = body["session_id"].as_str().unwrap().to_string();
    assert!(
        body["usage"]["prompt_tokens"].as_u64().unwrap() > 0,
        "{body}"
    );

    // Without a workspace_id: the user's base workspace.
    let prompt = directive(json!({"write": {"path": "base.txt", "content": "base\n"}}));
    let response = rig.chat(&a.key, &prompt, json!({"client_session_id": "s2"}));
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(response.json()["modified_files"], json!(["base.txt"]));
    assert!(a.workspace.join("base.txt").is_file());
    let root = rig.workspaces_root().canonicalize().unwrap();
    assert!(!root.join("operator").join("base.txt").exists());

    // Usage is the user's.
    let usage = rig.as_user(&a.key, "GET", "/v1/user/usage", None);
    assert_eq!(usage.status, 200, "{}", usage.text());
    let totals = &usage.json()["data"]["totals"];
    assert_eq!(totals["requests"], 2, "{totals}");
    assert!(totals["prompt_tokens"].as_i64().unwrap() > 0, "{totals}");
    assert!(
        totals["completion_tokens"].as_i64().unwrap() > 0,
        "{totals}"
    );
    let b_usage = rig.as_user(&b.key, "GET", "/v1/user/usage", None);
    assert_eq!(b_usage.json()["data"]["totals"]["requests"], 0);

    // Sessions: A sees its own, B sees none of them and gets 404 on A's.
    let mine = rig.as_user(&a.key, "GET", "/v1/user/sessions", None);
    let mine = mine.json()["data"].clone();
    let mine = mine.as_array().unwrap();
    assert_eq!(mine.len(), 2, "{mine:?}");
    assert!(
        mine.iter().all(|s| s["user_id"] == a.id.as_str()),
        "{mine:?}"
    );
    assert!(
        mine.iter().any(|s| s["id"] == session_id.as_str()),
        "{mine:?}"
    );
    let own = rig.as_user(
        &a.key,
        "GET",
        &format!("/v1/user/sessions/{session_id}"),
        None,
    );
    assert_eq!(own.status, 200, "{}", own.text());
    let own = own.json()["data"].clone();
    assert_eq!(own["user_id"], a.id.as_str());
    assert_eq!(
        own["turns"][0]["modified_files"],
        json!(["hello.txt"]),
        "{own}"
    );
    let foreign = rig.as_user(
        &b.key,
        "GET",
        &format!("/v1/user/sessions/{session_id}"),
        None,
    );
    assert_openai_error(&foreign, 404, "not_found", "no session");
    let theirs = rig.as_user(&b.key, "GET", "/v1/user/sessions", None);
    assert_eq!(theirs.json()["data"], json!([]));
    // B's key cannot touch A's keys either.
    let response = rig.as_user(
        &b.key,
        "DELETE",
        &format!("/v1/user/keys/{}", a.key_id),
        None,
    );
    assert_openai_error(&response, 404, "not_found", "no key");
    assert_eq!(rig.me(&a.key).status, 200);

    // The daily token budget: spent → 429 with a reason, cleared → turns run again.
    rig.op_ok(
        "PATCH",
        &format!("/management/v1/users/{}", a.id),
        Some(json!({"daily_token_budget": 1})),
    );
    let response = rig.chat(&a.key, "over budget", json!({}));
    assert_openai_error(&response, 429, "rate_limited", "budget");
    assert!(response.header("retry-after").is_some());
    rig.op_ok(
        "PATCH",
        &format!("/management/v1/users/{}", a.id),
        Some(json!({"daily_token_budget": null})),
    );
    let response = rig.chat(&a.key, &directive(json!({"reply": "back"})), json!({}));
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(response.json()["choices"][0]["message"]["content"], "back");

    // The user's workspace reset ends their sessions, keeps their files, spares B.
    let reset = rig.as_user(&a.key, "POST", "/v1/user/workspace/reset", None);
    assert_eq!(reset.status, 200, "{}", reset.text());
    assert_eq!(reset.json()["data"]["sessions_wiped"], 2);
    assert!(file.is_file());
    let gone = rig.as_user(
        &a.key,
        "GET",
        &format!("/v1/user/sessions/{session_id}"),
        None,
    );
    assert_eq!(gone.status, 404);
}

#[test]
fn max_concurrency_is_a_429_per_user() {
    let (mock, mut rig) = mock_rig();
    let a = rig.create_user("busy@example.com", json!({"max_concurrency": 1}));
    let b = rig.create_user("free@example.com", json!({"max_concurrency": 1}));
    let body = json!({"model": "uag-codex", "workspace_id": "one",
        "messages": [{"role": "user", "content": directive(json!({"reply": "slow", "delay": 4}))}]});
    let slow = support::post_json_in_background(
        rig.server.addr,
        "/v1/chat/completions",
        &a.key,
        body.to_string(),
    );
    // The slow turn is running once its CLI asked the model.
    mock.wait_for_requests(1, Duration::from_secs(60));
    let started = Instant::now();
    let second = rig.chat(&a.key, "second", json!({"workspace_id": "two"}));
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "the refusal waited"
    );
    assert_openai_error(&second, 429, "rate_limited", "max_concurrency");
    let message = second.json()["error"]["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(message.contains('1'), "{message}");
    assert!(
        second.header("retry-after").is_some(),
        "{:?}",
        second.headers
    );
    // Another user is not limited by A's turn.
    let other = rig.chat(&b.key, &directive(json!({"reply": "meanwhile"})), json!({}));
    assert_eq!(other.status, 200, "{}", other.text());
    let first = slow.join().unwrap();
    assert_eq!(first.status, 200, "{}", first.text());
    assert_eq!(first.json()["choices"][0]["message"]["content"], "slow");
    // The slot was given back.
    let third = rig.chat(
        &a.key,
        &directive(json!({"reply": "again"})),
        json!({"workspace_id": "two"}),
    );
    assert_eq!(third.status, 200, "{}", third.text());
}

// ---------------------------------------------------------------------------------------------
// Audit and secrets

/// Audit rows with `action`: (actor, target_type, target_id, before, after, request_id).
type AuditRow = (
    String,
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
);

fn audit_rows(rig: &Rig, action: &str) -> Vec<AuditRow> {
    let conn = rig.db();
    let mut stmt = conn
        .prepare(
            "SELECT actor, target_type, target_id, before, after, request_id FROM audit_log \
             WHERE action = ?1 ORDER BY at, id",
        )
        .unwrap();
    stmt.query_map([action], |r| {
        Ok((
            r.get(0)?,
            r.get(1)?,
            r.get(2)?,
            r.get(3)?,
            r.get(4)?,
            r.get(5)?,
        ))
    })
    .unwrap()
    .collect::<Result<_, _>>()
    .unwrap()
}

/// The request id a response carries.
fn request_id(response: &HttpResponse) -> String {
    response
        .header("x-request-id")
        .expect("X-Request-Id")
        .to_string()
}

fn audit_search(rig: &Rig, query: &str) -> Vec<Value> {
    let response = rig.op("GET", &format!("/management/v1/audit?{query}"), None);
    assert_eq!(response.status, 200, "{query}: {}", response.text());
    response.json()["data"].as_array().unwrap().clone()
}

/// What [`audited_history`] did: the ids and responses its tests check the audit log against.
struct AuditedHistory {
    rig: Rig,
    /// Keeps the mock model alive for the rig's codex.
    _mock: MockModel,
    secret_token: String,
    uid: String,
    create_request: String,
    first_key_id: String,
    op_key_id: String,
    self_key_id: String,
    revoke_op: HttpResponse,
    revoke_self: HttpResponse,
    update: HttpResponse,
    delete: HttpResponse,
    doomed: User,
}

/// Every kind of user mutation once — by the operator and by the user, a real turn and a
/// workspace reset, a deleted user — plus a failed duplicate and refused calls that must write
/// nothing.
fn audited_history() -> AuditedHistory {
    let (mock, mut rig) = mock_rig();

    // Operator credentials travel in requests on both planes.
    assert_eq!(rig.server.get("/v1/models", Some(SECRET)).status, 200);
    assert_eq!(
        rig.server
            .get("/management/v1/overview", Some(SECRET))
            .status,
        200
    );
    let secret_token = rig.token.clone();

    // user.created + user.key.created (operator).
    let create = rig.op(
        "POST",
        "/management/v1/users",
        Some(json!({"email": "audited@example.com", "display_name": "Audited", "key_label": "first"})),
    );
    assert_eq!(create.status, 201, "{}", create.text());
    let create_request = request_id(&create);
    let data = create.json()["data"].clone();
    let uid = data["id"].as_str().unwrap().to_string();
    let first_key = data["api_key"]["key"].as_str().unwrap().to_string();
    let first_key_id = data["api_key"]["id"].as_str().unwrap().to_string();
    rig.keys.push(first_key.clone());
    // A failed duplicate writes nothing.
    let dup = rig.op(
        "POST",
        "/management/v1/users",
        Some(json!({"email": "audited@example.com", "display_name": "Dup"})),
    );
    assert_eq!(dup.status, 409);
    // user.key.created by the operator and by the user.
    let (op_key_id, _) = rig.add_key(&uid, json!({"label": "op"}));
    let self_key = rig.as_user(
        &first_key,
        "POST",
        "/v1/user/keys",
        Some(json!({"label": "self"})),
    );
    assert_eq!(self_key.status, 201);
    let self_key_id = self_key.json()["data"]["id"].as_str().unwrap().to_string();
    rig.keys
        .push(self_key.json()["data"]["key"].as_str().unwrap().to_string());
    // user.key.rotated by both.
    let rotated_op = rig.op_ok(
        "POST",
        &format!("/management/v1/users/{uid}/keys/{op_key_id}/rotate"),
        None,
    );
    rig.keys
        .push(rotated_op["key"].as_str().unwrap().to_string());
    let rotated_self = rig.as_user(
        &first_key,
        "POST",
        &format!("/v1/user/keys/{self_key_id}/rotate"),
        None,
    );
    assert_eq!(rotated_self.status, 200);
    let rotated_self = rotated_self.json()["data"].clone();
    rig.keys
        .push(rotated_self["key"].as_str().unwrap().to_string());
    // user.key.revoked by both.
    let revoke_op = rig.op(
        "DELETE",
        &format!(
            "/management/v1/users/{uid}/keys/{}",
            rotated_op["id"].as_str().unwrap()
        ),
        None,
    );
    assert_eq!(revoke_op.status, 200);
    let revoke_self = rig.as_user(
        &first_key,
        "DELETE",
        &format!("/v1/user/keys/{}", rotated_self["id"].as_str().unwrap()),
        None,
    );
    assert_eq!(revoke_self.status, 200);
    // user.updated, user.suspended, user.unsuspended.
    let update = rig.op(
        "PATCH",
        &format!("/management/v1/users/{uid}"),
        Some(json!({"display_name": "Audited Again", "max_concurrency": 3})),
    );
    assert_eq!(update.status, 200);
    rig.op_ok("POST", &format!("/management/v1/users/{uid}/suspend"), None);
    rig.op_ok(
        "POST",
        &format!("/management/v1/users/{uid}/unsuspend"),
        None,
    );
    // A real turn with the user's key, then workspace.reset by the user.
    let turn = rig.chat(
        &first_key,
        &directive(json!({"write": {"path": "audit.txt", "content": "x\n"}})),
        json!({"client_session_id": "audited"}),
    );
    assert_eq!(turn.status, 200, "{}", turn.text());
    let reset = rig.as_user(&first_key, "POST", "/v1/user/workspace/reset", None);
    assert_eq!(reset.status, 200);
    // A second user, deleted.
    let doomed = rig.create_user("doomed@example.com", json!({}));
    let delete = rig.op(
        "DELETE",
        &format!("/management/v1/users/{}", doomed.id),
        None,
    );
    assert_eq!(delete.status, 200);
    // Failed and refused attempts write nothing.
    assert_eq!(
        rig.op(
            "POST",
            &format!("/management/v1/users/{}/unsuspend", doomed.id),
            None
        )
        .status,
        409
    );
    assert_eq!(
        rig.as_user(&first_key, "GET", "/management/v1/audit", None)
            .status,
        403
    );

    AuditedHistory {
        rig,
        _mock: mock,
        secret_token,
        uid,
        create_request,
        first_key_id,
        op_key_id,
        self_key_id,
        revoke_op,
        revoke_self,
        update,
        delete,
        doomed,
    }
}

/// The whole audit log as (action → entries).
fn audit_counts(rig: &Rig) -> BTreeMap<String, i64> {
    let conn = rig.db();
    let counts = conn
        .prepare("SELECT action, COUNT(*) FROM audit_log GROUP BY action")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    counts
}

#[test]
fn each_mutation_writes_an_audit_entry_with_actor_target_and_request() {
    let AuditedHistory {
        rig,
        uid,
        create_request,
        first_key_id,
        op_key_id,
        self_key_id,
        revoke_op,
        revoke_self,
        update,
        delete,
        doomed,
        ..
    } = audited_history();
    let user_actor = format!("user:{uid}");
    // The rows, straight from the table.
    let created = audit_rows(&rig, "user.created");
    assert_eq!(
        created.len(),
        2 + 1,
        "A, doomed and the Dashboard Admin: {created:?}"
    );
    let row = created.iter().find(|r| r.2 == uid).unwrap();
    assert_eq!((row.0.as_str(), row.1.as_str()), ("operator", "user"));
    assert_eq!(row.5.as_deref(), Some(create_request.as_str()));
    assert!(row.3.is_none());
    assert!(row.4.as_deref().unwrap().contains("audited@example.com"));
    assert!(
        created.iter().any(|r| r.0 == "system"),
        "the Dashboard Admin's provisioning"
    );

    let key_created = audit_rows(&rig, "user.key.created");
    for (key_id, actor) in [
        (&first_key_id, "operator"),
        (&op_key_id, "operator"),
        (&self_key_id, user_actor.as_str()),
    ] {
        let row = key_created
            .iter()
            .find(|r| &r.2 == key_id)
            .unwrap_or_else(|| panic!("no user.key.created for {key_id}: {key_created:?}"));
        assert_eq!((row.0.as_str(), row.1.as_str()), (actor, "api_key"));
        assert!(row.5.is_some(), "{row:?}");
        assert!(row.4.as_deref().unwrap().contains("prefix"), "{row:?}");
    }
    let rotated = audit_rows(&rig, "user.key.rotated");
    assert_eq!(rotated.len(), 2, "{rotated:?}");
    assert!(rotated
        .iter()
        .any(|r| r.0 == "operator" && r.2 == op_key_id));
    assert!(rotated
        .iter()
        .any(|r| r.0 == user_actor && r.2 == self_key_id));
    for row in &rotated {
        assert!(
            row.3.as_deref().unwrap().contains("\"status\":\"active\""),
            "{row:?}"
        );
    }
    let revoked = audit_rows(&rig, "user.key.revoked");
    assert_eq!(revoked.len(), 2, "{revoked:?}");
    let revoke_ids = [request_id(&revoke_op), request_id(&revoke_self)];
    for row in &revoked {
        assert!(revoke_ids.contains(row.5.as_ref().unwrap()), "{row:?}");
        assert!(
            row.4.as_deref().unwrap().contains("\"status\":\"revoked\""),
            "{row:?}"
        );
    }
    let updated = audit_rows(&rig, "user.updated");
    assert_eq!(updated.len(), 1);
    assert_eq!(updated[0].5.as_deref(), Some(request_id(&update).as_str()));
    assert!(updated[0]
        .3
        .as_deref()
        .unwrap()
        .contains("\"display_name\":\"Audited\""));
    assert!(updated[0]
        .4
        .as_deref()
        .unwrap()
        .contains("\"display_name\":\"Audited Again\""));
    for action in ["user.suspended", "user.unsuspended"] {
        let rows = audit_rows(&rig, action);
        assert_eq!(rows.len(), 1, "{action}: {rows:?}");
        assert_eq!(
            (rows[0].0.as_str(), rows[0].2.as_str()),
            ("operator", uid.as_str())
        );
    }
    let deleted = audit_rows(&rig, "user.deleted");
    assert_eq!(
        deleted.len(),
        1,
        "the refused unsuspend wrote nothing: {deleted:?}"
    );
    assert_eq!(deleted[0].2, doomed.id);
    assert_eq!(deleted[0].5.as_deref(), Some(request_id(&delete).as_str()));
    let reset_rows = audit_rows(&rig, "workspace.reset");
    assert_eq!(reset_rows.len(), 1);
    assert_eq!(
        (reset_rows[0].0.as_str(), reset_rows[0].2.as_str()),
        (user_actor.as_str(), uid.as_str())
    );
    assert!(reset_rows[0]
        .4
        .as_deref()
        .unwrap()
        .contains("\"sessions_wiped\":1"));
}

#[test]
fn failed_and_refused_calls_write_no_audit_entry() {
    let history = audited_history();
    let rig = history.rig;
    // Exactly these entries: nothing from the duplicate or the refused calls.
    let counts = audit_counts(&rig);
    let expected: BTreeMap<String, i64> = [
        ("user.created", 3),
        ("user.key.created", 5),
        ("user.key.rotated", 2),
        ("user.key.revoked", 2),
        ("user.updated", 1),
        ("user.suspended", 1),
        ("user.unsuspended", 1),
        ("workspace.reset", 1),
        ("user.deleted", 1),
        ("operator.login", 1),
    ]
    .into_iter()
    .map(|(a, n)| (a.to_string(), n))
    .collect();
    assert_eq!(counts, expected, "audit entries by action");
}

#[test]
fn audit_states_hold_no_key_hash_raw_key_or_secret() {
    let history = audited_history();
    let (rig, secret_token) = (history.rig, history.secret_token);
    // No hash or raw key in any state.
    let states: Vec<String> = rig
        .db()
        .prepare("SELECT COALESCE(before, '') || COALESCE(after, '') FROM audit_log")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    for state in &states {
        assert!(!state.contains("key_hash"), "{state}");
        for key in &rig.keys {
            assert!(!state.contains(key.as_str()), "a raw key in {state}");
        }
        assert!(
            !state.contains(SECRET) && !state.contains(&secret_token),
            "{state}"
        );
    }
}

#[test]
fn the_audit_api_filters_by_action_actor_target_and_text_and_pages() {
    let AuditedHistory {
        rig, uid, doomed, ..
    } = audited_history();
    let user_actor = format!("user:{uid}");
    let total: i64 = audit_counts(&rig).values().sum();
    // The audit API: filters by action (exact and prefix), actor, target, text; pages.
    let entries = audit_search(&rig, "action=user.key.rotated");
    assert_eq!(entries.len(), 2);
    assert!(entries.iter().all(|e| e["action"] == "user.key.rotated"));
    assert!(entries[0]["after"].is_object() && entries[0]["before"].is_object());
    let entries = audit_search(&rig, "action=user.key.");
    assert_eq!(entries.len(), 5 + 2 + 2, "the prefix filter");
    let entries = audit_search(&rig, &format!("actor={user_actor}"));
    let actions: BTreeSet<&str> = entries
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        BTreeSet::from([
            "user.key.created",
            "user.key.rotated",
            "user.key.revoked",
            "workspace.reset"
        ])
    );
    assert!(entries.iter().all(|e| e["actor"] == user_actor.as_str()));
    let entries = audit_search(&rig, &format!("target_id={}", doomed.id));
    let actions: BTreeSet<&str> = entries
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, BTreeSet::from(["user.created", "user.deleted"]));
    let entries = audit_search(
        &rig,
        "target_type=api_key&actor=operator&action=user.key.revoked",
    );
    assert_eq!(entries.len(), 1);
    let entries = audit_search(&rig, "q=AUDITED%20AGAIN");
    assert!(
        entries.iter().any(|e| e["action"] == "user.updated"),
        "{entries:?}"
    );
    assert!(entries.iter().all(|e| e["target_id"] == uid.as_str()));
    let entries = audit_search(&rig, "q=doomed@example.com");
    assert_eq!(entries.len(), 2, "{entries:?}");
    assert!(audit_search(&rig, "q=no-such-text-anywhere").is_empty());
    let mut paged = Vec::new();
    let mut query = "limit=4".to_string();
    loop {
        let response = rig.op("GET", &format!("/management/v1/audit?{query}"), None);
        let body = response.json();
        paged.extend(
            body["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["id"].as_str().unwrap().to_string()),
        );
        match body["meta"]["page"]["next_cursor"].as_str() {
            Some(cursor) => query = format!("limit=4&cursor={cursor}"),
            None => break,
        }
        assert!(
            paged.len() <= total as usize,
            "the audit cursor does not advance"
        );
    }
    assert_eq!(paged.len(), total as usize);
    assert_eq!(paged.iter().collect::<BTreeSet<_>>().len(), paged.len());
    assert_envelope_error(
        &rig.op("GET", "/management/v1/audit?since=yesterday", None),
        400,
        "invalid_request",
        Some("since"),
    );
}

#[test]
fn no_key_token_or_secret_reaches_disk_logs_or_output() {
    let history = audited_history();
    let (rig, secret_token) = (history.rig, history.secret_token);
    // No raw key, access token or operator secret anywhere: database (+ WAL), logs, CLI
    // homes, workspaces, stderr, stdout. The harness sets API_TOKEN, so no secret file.
    assert!(!rig.server.data_dir().join("operator.secret").exists());
    let mut secrets = rig.keys.clone();
    secrets.push(SECRET.to_string());
    secrets.push(secret_token);
    assert_no_secret_anywhere(&rig.server, &secrets);
}

// ---------------------------------------------------------------------------------------------
// CLI

/// The `uagk_live_…` key in a line of CLI output.
fn key_in(text: &str) -> String {
    let start = text
        .find("uagk_live_")
        .unwrap_or_else(|| panic!("no key in {text:?}"));
    text[start..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect()
}

#[test]
fn cli_creates_lists_and_rotates_beside_a_running_server() {
    let mut rig = rig(NO_CLI);
    let dir = rig.server.dir.clone();
    let (code, out, err) = support::run_cli(
        &dir,
        &[
            "user",
            "create",
            "--email",
            "cli@example.com",
            "--name",
            "Cli User",
        ],
        &[],
    );
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    let key = key_in(&out);
    assert_eq!(key.len(), "uagk_live_".len() + 32, "{out}");
    rig.keys.push(key.clone());
    let me = rig.me(&key);
    assert_eq!(me.status, 200, "{}", me.text());
    let id = me.json()["data"]["id"].as_str().unwrap().to_string();
    assert!(out.contains(&id), "{out}");
    assert_eq!(me.json()["data"]["display_name"], "Cli User");
    assert!(rig.workspaces_root().join(&id).join(".git").is_dir());

    let (code, out, err) = support::run_cli(&dir, &["user", "list"], &[]);
    assert_eq!(code, 0, "{err}");
    let line = out
        .lines()
        .find(|l| l.contains(&id))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(
        line.contains("cli@example.com") && line.contains("active"),
        "{line}"
    );
    assert!(out.contains("dashboard-admin@codara.local"), "{out}");
    assert!(!out.contains("uagk_live_"), "list shows a key: {out}");
    // The operator sees the CLI's user too.
    let listed = rig.op_ok("GET", "/management/v1/users", None);
    assert!(listed
        .as_array()
        .unwrap()
        .iter()
        .any(|u| u["id"] == id.as_str()));

    let (code, out, err) = support::run_cli(&dir, &["user", "rotate-key", &id], &[]);
    assert_eq!(code, 0, "{out}\n{err}");
    let new_key = key_in(&out);
    rig.keys.push(new_key.clone());
    assert_ne!(new_key, key);
    assert_openai_error(&rig.me(&key), 401, "unauthorized", "revoked");
    assert_eq!(rig.me(&new_key).status, 200);

    // Errors: duplicate email (runtime, 1), bad email and unknown user.
    let (code, _, err) = support::run_cli(
        &dir,
        &[
            "user",
            "create",
            "--email",
            "CLI@example.com",
            "--name",
            "Again",
        ],
        &[],
    );
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("already exists"), "{err}");
    let (code, _, err) = support::run_cli(
        &dir,
        &["user", "create", "--email", "nope", "--name", "X"],
        &[],
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("email"), "{err}");
    let (code, _, err) = support::run_cli(&dir, &["user", "rotate-key", "uag_usr_nope"], &[]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("uag_usr_nope"), "{err}");
    let users: i64 = rig.count(
        "SELECT COUNT(*) FROM users WHERE email = ?1",
        "cli@example.com",
    );
    assert_eq!(users, 1);

    // The CLI's changes are audited as `cli`, without secrets.
    for action in ["user.created", "user.key.created", "user.key.rotated"] {
        let rows = audit_rows(&rig, action);
        assert!(
            rows.iter().any(|r| r.0 == "cli"),
            "no {action} by cli: {rows:?}"
        );
    }
    let mut secrets = rig.keys.clone();
    secrets.push(SECRET.to_string());
    assert_no_secret_anywhere(&rig.server, &secrets);
}
