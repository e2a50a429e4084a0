//! The authorization matrix as data: every authenticated route of `src/http/router.rs` × every
//! kind of caller (none, operator, user A, user B, a suspended user, a deleted user, an expired
//! key, a revoked key), each cell with the status class it must get. One server; turns are not
//! run: codex points at a missing binary, so a caller that passes auth gets 503
//! `provider_unavailable` and one that does not gets 401/403. A second test reads the route
//! table, so a new route without a row here fails.

use crate::support::{self, HttpResponse, Server};
use rusqlite::Connection;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The callers, in the column order of the expectation strings.
const PRINCIPALS: [&str; 8] = [
    "none",
    "operator",
    "user A",
    "user B",
    "suspended",
    "deleted",
    "expired key",
    "revoked key",
];

/// The order the callers run in within a row: the unauthorized ones first, then B before A
/// (so B meets A's resources while they are still live), the operator last (its success proves
/// nobody before it changed the target).
const RUN_ORDER: [usize; 8] = [0, 6, 7, 4, 5, 3, 2, 1];

// Expectation rows (columns as in PRINCIPALS): `2xx`, `401`, `403`, `404`, `503`
// (passed auth, then the missing CLI), `4xx` (any 4xx except 401/403).
/// Operator-only routes.
const OPERATOR: &str = "401 2xx 403 403 403 403 401 401";
/// Operator-only routes that run a turn.
const OPERATOR_TURN: &str = "401 503 403 403 403 403 401 401";
/// `/v1` routes for operators and users.
const CLIENT: &str = "401 2xx 2xx 2xx 403 403 401 401";
/// `/v1` turns for operators and users.
const CLIENT_TURN: &str = "401 503 503 503 403 403 401 401";
/// A stored `/v1/responses` object of user A: only A sees it (the operator is another caller).
const A_RESPONSE: &str = "401 404 2xx 404 403 403 401 401";
/// User self-service on the caller's own records.
const SELF: &str = "401 403 2xx 2xx 403 403 401 401";
/// User self-service on a record of user A.
const A_ONLY: &str = "401 403 2xx 404 403 403 401 401";
/// User self-service on a record of user B.
const B_ONLY: &str = "401 403 404 2xx 403 403 401 401";
/// A channel route: its own secret header is the credential, so every bearer (none sent the
/// secret) is refused alike.
const CHANNEL: &str = "401 401 401 401 401 401 401 401";
/// `/metrics`: the operator, or no credential from loopback (the tests' address); a credential
/// that is sent is checked.
const METRICS: &str = "2xx 2xx 403 403 403 403 401 401";

/// One row: method, path template (`{name}` filled from the fixture), body template, expectations.
type Row = (
    &'static str,
    &'static str,
    Option<&'static str>,
    &'static str,
);

/// Every route except the public ones (`/`, `/healthz`, `/dashboard`, `auth/token`), in the
/// order they run: reads first, then mutations, then the ones that destroy fixture state.
const MATRIX: &[Row] = &[
    // OpenAI-compatible plane.
    ("GET", "/v1/models", None, CLIENT),
    ("GET", "/v1/models/{model}", None, CLIENT),
    ("GET", "/v1/models/{model_owner}/{model_name}", None, CLIENT),
    ("GET", "/v1/user/providers/models", None, CLIENT),
    (
        "POST",
        "/v1/chat/completions",
        Some(r#"{"model":"uag-codex","messages":[{"role":"user","content":"matrix"}]}"#),
        CLIENT_TURN,
    ),
    (
        "POST",
        "/v1/responses",
        Some(r#"{"model":"uag-codex","input":"matrix"}"#),
        CLIENT_TURN,
    ),
    ("GET", "/v1/responses/{a_response}", None, A_RESPONSE),
    ("DELETE", "/v1/responses/{a_response}", None, A_RESPONSE),
    // User self-service.
    ("GET", "/v1/user/me", None, SELF),
    ("GET", "/v1/user/keys", None, SELF),
    ("POST", "/v1/user/keys", Some(r#"{"label":"matrix"}"#), SELF),
    ("GET", "/v1/user/usage", None, SELF),
    ("GET", "/v1/user/sessions", None, SELF),
    ("GET", "/v1/user/sessions/{a_session}", None, A_ONLY),
    ("GET", "/v1/user/sessions/{b_session}", None, B_ONLY),
    ("DELETE", "/v1/user/keys/{a_key_revoke}", None, A_ONLY),
    ("DELETE", "/v1/user/keys/{b_key_revoke}", None, B_ONLY),
    ("POST", "/v1/user/keys/{a_key_rotate}/rotate", None, A_ONLY),
    ("POST", "/v1/user/keys/{b_key_rotate}/rotate", None, B_ONLY),
    ("GET", "/metrics", None, METRICS),
    // Management plane.
    ("GET", "/management/v1/overview", None, OPERATOR),
    ("GET", "/management/v1/traces", None, OPERATOR),
    ("GET", "/management/v1/traces/{trace}", None, OPERATOR),
    ("GET", "/management/v1/logs", None, OPERATOR),
    ("GET", "/management/v1/observability/search", None, OPERATOR),
    ("GET", "/management/v1/version", None, OPERATOR),
    ("GET", "/management/v1/config", None, OPERATOR),
    ("GET", "/management/v1/providers/models", None, OPERATOR),
    ("GET", "/management/v1/audit", None, OPERATOR),
    ("GET", "/management/v1/users", None, OPERATOR),
    (
        "POST",
        "/management/v1/users",
        Some(r#"{"email":"matrix-new@example.com","display_name":"Matrix New"}"#),
        OPERATOR,
    ),
    ("GET", "/management/v1/users/{a}", None, OPERATOR),
    (
        "PATCH",
        "/management/v1/users/{a}",
        Some(r#"{"display_name":"User A (renamed)"}"#),
        OPERATOR,
    ),
    (
        "POST",
        "/management/v1/users/{victim}/suspend",
        None,
        OPERATOR,
    ),
    (
        "POST",
        "/management/v1/users/{victim}/unsuspend",
        None,
        OPERATOR,
    ),
    ("GET", "/management/v1/users/{a}/keys", None, OPERATOR),
    (
        "POST",
        "/management/v1/users/{a}/keys",
        Some("{}"),
        OPERATOR,
    ),
    (
        "DELETE",
        "/management/v1/users/{a}/keys/{a_key_op_revoke}",
        None,
        OPERATOR,
    ),
    (
        "POST",
        "/management/v1/users/{a}/keys/{a_key_op_rotate}/rotate",
        None,
        OPERATOR,
    ),
    (
        "POST",
        "/management/v1/playground/chat",
        Some(r#"{"model":"uag-codex","messages":[{"role":"user","content":"matrix"}]}"#),
        OPERATOR_TURN,
    ),
    // The account pool: refresh first (no account yet, so no usage request goes out).
    ("POST", "/management/v1/usage/refresh", None, OPERATOR),
    ("GET", "/management/v1/accounts", None, OPERATOR),
    (
        "POST",
        "/management/v1/accounts",
        Some(r#"{"id":"matrix-acct","auth_type":"API_KEY","credential":"sk-matrix-0123456789"}"#),
        OPERATOR,
    ),
    (
        "PATCH",
        "/management/v1/accounts/{account}",
        Some(r#"{"label":"Matrix account"}"#),
        OPERATOR,
    ),
    (
        "POST",
        "/management/v1/accounts/{account}/primary",
        None,
        OPERATOR,
    ),
    (
        "DELETE",
        "/management/v1/accounts/{account}/primary",
        None,
        OPERATOR,
    ),
    (
        "POST",
        "/management/v1/accounts/{account}/recover",
        None,
        OPERATOR,
    ),
    (
        "DELETE",
        "/management/v1/accounts/{account}",
        None,
        OPERATOR,
    ),
    ("GET", "/management/v1/sessions", None, OPERATOR),
    ("GET", "/management/v1/sessions/{a_session}", None, OPERATOR),
    (
        "GET",
        "/management/v1/sessions/{a_session}/turns/{turn}/diff",
        None,
        OPERATOR,
    ),
    (
        "POST",
        "/management/v1/sessions/{a_session}/turns/{turn}/revert",
        None,
        OPERATOR,
    ),
    ("GET", "/management/v1/workspaces", None, OPERATOR),
    ("GET", "/management/v1/workspaces/{a_ws}", None, OPERATOR),
    (
        "POST",
        "/management/v1/workspaces/{reset_ws}/reset",
        None,
        OPERATOR,
    ),
    (
        "DELETE",
        "/management/v1/workspaces/{victim_ws}",
        Some(r#"{"confirm":"matrix-victim"}"#),
        OPERATOR,
    ),
    ("GET", "/management/v1/projects", None, OPERATOR),
    (
        "POST",
        "/management/v1/projects",
        Some(r#"{"name":"matrix-project"}"#),
        OPERATOR,
    ),
    ("GET", "/management/v1/projects/{project}", None, OPERATOR),
    ("GET", "/management/v1/channels", None, OPERATOR),
    (
        "POST",
        "/management/v1/users/{a}/channels/link-token",
        Some(r#"{"channel":"telegram","bot_name":"matrix"}"#),
        OPERATOR,
    ),
    (
        "GET",
        "/management/v1/users/{a}/channels/links",
        None,
        OPERATOR,
    ),
    (
        "DELETE",
        "/management/v1/users/{a}/channels/links/{a_link}",
        None,
        OPERATOR,
    ),
    (
        "POST",
        "/channels/telegram/{bot}/webhook",
        Some(
            r#"{"update_id":1,"message":{"message_id":1,"chat":{"id":1},"from":{"id":1},"text":"matrix"}}"#,
        ),
        CHANNEL,
    ),
    (
        "DELETE",
        "/management/v1/sessions/{victim_session}",
        None,
        OPERATOR,
    ),
    ("DELETE", "/management/v1/users/{victim}", None, OPERATOR),
    // Destroys the caller's own sessions: after every row that reads them.
    ("POST", "/v1/user/workspace/reset", None, SELF),
    // Revokes the operator's token: last.
    ("POST", "/management/v1/auth/logout", None, OPERATOR),
];

/// The empty git tree: valid in every repository, so a turn can carry it as both snapshots.
const EMPTY_TREE: &str = "4b825dc642cb6eb9a060e54bf8d69288fbee4904";

struct Fixture {
    server: Server,
    /// Bearer per principal (index as in PRINCIPALS; `None` for "none").
    bearers: Vec<Option<String>>,
    /// Values for the `{name}` placeholders.
    ids: BTreeMap<&'static str, String>,
    /// The operator's access token.
    token: String,
    /// User A's id.
    user_a: String,
}

/// A created user: id, first raw key, first key id, workspace path.
struct NewUser {
    id: String,
    key: String,
    workspace: String,
}

fn create_user(server: &Server, token: &str, email: &str) -> NewUser {
    let body = json!({"email": email, "display_name": email.split('@').next().unwrap()});
    let response = server.post_json("/management/v1/users", Some(token), &body.to_string());
    assert_eq!(response.status, 201, "{}", response.text());
    let data = &response.json()["data"];
    NewUser {
        id: data["id"].as_str().unwrap().to_string(),
        key: data["api_key"]["key"].as_str().unwrap().to_string(),
        workspace: data["workspace_path"].as_str().unwrap().to_string(),
    }
}

/// Issues another key for `user` through the management plane: (key id, raw key).
fn add_key(server: &Server, token: &str, user: &str, label: &str) -> (String, String) {
    let response = server.post_json(
        &format!("/management/v1/users/{user}/keys"),
        Some(token),
        &json!({ "label": label }).to_string(),
    );
    assert_eq!(response.status, 201, "{}", response.text());
    let data = &response.json()["data"];
    (
        data["id"].as_str().unwrap().to_string(),
        data["key"].as_str().unwrap().to_string(),
    )
}

fn operator_post(server: &Server, token: &str, path: &str) {
    let response = server.post_json(path, Some(token), "{}");
    assert_eq!(response.status, 200, "{path}: {}", response.text());
}

fn db(server: &Server) -> Connection {
    let conn = Connection::open(server.data_dir().join("codara.db")).unwrap();
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .unwrap();
    conn
}

/// Inserts a session of `user` in `workspace` with one turn (index 1) whose snapshots are the
/// empty tree, as the turn engine would store it.
fn insert_session(conn: &Connection, id: &str, user: &str, workspace: &str) {
    conn.execute(
        "INSERT INTO sessions (id, session_key, user_id, workspace_id, workspace_path, \
         client_session_id, provider, model, transcript_hash, request_hash, message_count, \
         turn_count, created_at, updated_at) \
         VALUES (?1, ?2, ?3, '.', ?4, 'c', 'codex', 'm', '', '', 2, 1, 1, 1)",
        rusqlite::params![id, format!("{user}::.::{id}"), user, workspace],
    )
    .unwrap();
    conn.execute(
        "INSERT INTO turns (id, session_id, turn_index, provider, model, resumed, \
         request_messages, prompt, reply, actions, modified_files, prompt_tokens, \
         completion_tokens, cached_tokens, duration_ms, status, dirty, workspace_path, \
         before_tree, after_tree, created_at) \
         VALUES (?1, ?2, 1, 'codex', 'm', 0, '[]', 'p', 'r', '[]', '[]', 0, 0, 0, 0, 'ok', 0, \
         ?3, ?4, ?4, 1)",
        rusqlite::params![format!("trn_{id}"), id, workspace, EMPTY_TREE],
    )
    .unwrap();
}

/// The inventory's workspace id: the unpadded base64url of the path relative to the root.
fn workspace_id(relative: &str) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let bytes = relative.as_bytes();
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

fn setup() -> Fixture {
    let server = support::server()
        .toml(
            "[providers.codex]\nbinary = \"/nonexistent/codex\"\n\n\
             [accounts]\nrefresh_interval_seconds = 0\nusage_endpoints = [\"http://127.0.0.1:9/usage\"]\n\n\
             [channels.telegram]\nenabled = true\nreceive_mode = \"webhook\"\n\
             api_base = \"http://127.0.0.1:9\"\n\n[[channels.telegram.bots]]\nname = \"matrix\"\n\
             token = \"1:matrix\"\nwebhook_secret = \"matrix-secret\"\nusername = \"matrix_bot\"\n",
        )
        .start();
    let token = server.login();
    let a = create_user(&server, &token, "user-a@example.com");
    let b = create_user(&server, &token, "user-b@example.com");
    let suspended = create_user(&server, &token, "suspended@example.com");
    let deleted = create_user(&server, &token, "deleted@example.com");
    let victim = create_user(&server, &token, "victim@example.com");
    operator_post(
        &server,
        &token,
        &format!("/management/v1/users/{}/suspend", suspended.id),
    );
    let response = server.request(
        "DELETE",
        &format!("/management/v1/users/{}", deleted.id),
        &[("Authorization", &format!("Bearer {token}"))],
        None,
    );
    assert_eq!(response.status, 200, "{}", response.text());

    let mut ids = BTreeMap::new();
    for name in [
        "a_key_revoke",
        "a_key_rotate",
        "a_key_op_revoke",
        "a_key_op_rotate",
    ] {
        ids.insert(name, add_key(&server, &token, &a.id, name).0);
    }
    for name in ["b_key_revoke", "b_key_rotate"] {
        ids.insert(name, add_key(&server, &token, &b.id, name).0);
    }
    // A key of the active user A that expired (set in the database while the server runs).
    let (expired_id, expired_key) = add_key(&server, &token, &a.id, "expired");
    let conn = db(&server);
    let past = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
        - 60_000;
    let changed = conn
        .execute(
            "UPDATE api_keys SET expires_at = ?1 WHERE id = ?2",
            rusqlite::params![past, expired_id],
        )
        .unwrap();
    assert_eq!(changed, 1);
    // A revoked key of the active user A.
    let (revoked_id, revoked_key) = add_key(&server, &token, &a.id, "revoked");
    let response = server.request(
        "DELETE",
        &format!("/management/v1/users/{}/keys/{revoked_id}", a.id),
        &[("Authorization", &format!("Bearer {token}"))],
        None,
    );
    assert_eq!(response.status, 200, "{}", response.text());

    insert_session(&conn, "ses_matrix_a", &a.id, &a.workspace);
    insert_session(&conn, "ses_matrix_b", &b.id, &b.workspace);
    insert_session(&conn, "ses_matrix_victim", &victim.id, &victim.workspace);
    conn.execute(
        "INSERT INTO responses (id, user_id, turn_id, session_id, session_label, provider, model, \
         workspace_id, text_format, tool_choice, stored, status, created_at) \
         VALUES ('resp_matrix_a', ?1, 'trn_ses_matrix_a', 'ses_matrix_a', 'c', 'codex', 'm', '.', \
         '{\"type\":\"text\"}', 'auto', 1, 'completed', 1)",
        [&a.id],
    )
    .unwrap();
    // A Telegram link of user A (for unlinking).
    conn.execute(
        "INSERT INTO telegram_links (id, bot, telegram_user_id, user_id, token_id, linked_at) \
         VALUES ('uag_tgl_matrix', 'matrix', 1, ?1, 'uag_clt_matrix', 1)",
        [&a.id],
    )
    .unwrap();
    drop(conn);

    // A trace to read: the one of a request made now (its id is in `traceparent`), once the
    // writer has it in its shard.
    let traced = server.get("/management/v1/version", Some(&token));
    let trace = traced.header("traceparent").unwrap()[3..35].to_string();
    support::wait_until(
        std::time::Duration::from_secs(10),
        "the trace to read",
        || {
            server
                .get(&format!("/management/v1/traces/{trace}"), Some(&token))
                .status
                == 200
        },
    );
    ids.insert("trace", trace);

    let root = server.dir.join("workspaces");
    for dir in ["matrix-victim", "matrix-reset"] {
        std::fs::create_dir_all(root.join(dir)).unwrap();
    }
    ids.insert("account", "matrix-acct".to_string());
    ids.insert("model", "uag-codex".to_string());
    ids.insert("model_owner", "opencode".to_string());
    ids.insert("model_name", "big-pickle".to_string());
    ids.insert("project", "matrix-project".to_string());
    ids.insert("turn", "1".to_string());
    ids.insert("a", a.id.clone());
    ids.insert("victim", victim.id.clone());
    ids.insert("a_session", "ses_matrix_a".to_string());
    ids.insert("a_response", "resp_matrix_a".to_string());
    ids.insert("b_session", "ses_matrix_b".to_string());
    ids.insert("victim_session", "ses_matrix_victim".to_string());
    ids.insert("a_ws", workspace_id(&a.id));
    ids.insert("a_link", "uag_tgl_matrix".to_string());
    ids.insert("bot", "matrix".to_string());
    ids.insert("victim_ws", workspace_id("matrix-victim"));
    ids.insert("reset_ws", workspace_id("matrix-reset"));

    let bearers = vec![
        None,
        Some(token.clone()),
        Some(a.key),
        Some(b.key),
        Some(suspended.key),
        Some(deleted.key),
        Some(expired_key),
        Some(revoked_key),
    ];
    Fixture {
        server,
        bearers,
        ids,
        token,
        user_a: a.id,
    }
}

fn fill(template: &str, ids: &BTreeMap<&'static str, String>) -> String {
    let mut text = template.to_string();
    for (name, value) in ids {
        text = text.replace(&format!("{{{name}}}"), value);
    }
    assert!(
        !text.contains('{') || template.starts_with('{'),
        "unfilled placeholder in {template}"
    );
    text
}

fn send(
    server: &Server,
    method: &str,
    path: &str,
    body: Option<&str>,
    bearer: Option<&str>,
) -> HttpResponse {
    let auth = bearer.map(|t| format!("Bearer {t}"));
    let mut headers: Vec<(&str, &str)> = Vec::new();
    if let Some(auth) = &auth {
        headers.push(("Authorization", auth));
    }
    if body.is_some() {
        headers.push(("Content-Type", "application/json"));
    }
    server.request(method, path, &headers, body.map(str::as_bytes))
}

/// Checks one cell; `Err` describes a mismatch.
fn check_cell(path: &str, expect: &str, response: &HttpResponse) -> Result<(), String> {
    let status = response.status;
    let class_ok = match expect {
        "2xx" => (200..300).contains(&status),
        "4xx" => (400..500).contains(&status) && status != 401 && status != 403,
        code => code.parse::<u16>().ok() == Some(status),
    };
    if !class_ok {
        return Err(format!(
            "expected {expect}, got {status}: {}",
            response.text()
        ));
    }
    if status < 400 {
        return Ok(());
    }
    // Error bodies: the OpenAI error object on /v1, the envelope elsewhere.
    let body: Value = serde_json::from_slice(&response.body)
        .map_err(|_| format!("{status} without a JSON body: {}", response.text()))?;
    let wanted_code = match status {
        401 => Some("unauthorized"),
        403 => Some("forbidden"),
        404 => Some("not_found"),
        503 => Some("provider_unavailable"),
        _ => None,
    };
    let error = &body["error"];
    if path.starts_with("/v1/") {
        if !error["message"].is_string() || !error["type"].is_string() {
            return Err(format!("not an OpenAI error object: {body}"));
        }
    } else if body["ok"] != false || !error["message"].is_string() {
        return Err(format!("not the error envelope: {body}"));
    }
    if let Some(code) = wanted_code {
        if error["code"] != code {
            return Err(format!("expected code {code}: {body}"));
        }
    }
    if status == 401 && response.header("www-authenticate").is_none() {
        return Err("401 without WWW-Authenticate".to_string());
    }
    Ok(())
}

/// The (method, path pattern) pairs of every non-public route in `src/http/router.rs`, with
/// `_` for a one-segment parameter (`{id}`) and `*` for one that takes the rest of the path
/// (`{*id}`). The table is a list of `get|post|patch|delete("pattern", handler, Access)` calls.
fn routes_in_router() -> BTreeSet<(String, String)> {
    let text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/http/router.rs"))
            .unwrap();
    let start = text.find("static ROUTES").expect("the route table");
    let end = start + text[start..].find("\n];").expect("the route table's end");
    // One line without comments, so that an entry rustfmt wrapped reads like any other.
    let table: String = text[start..end]
        .lines()
        .map(|line| line.split("//").next().unwrap().trim())
        .collect::<Vec<_>>()
        .join(" ");
    let mut routes = BTreeSet::new();
    let mut rest = table.as_str();
    while let Some(at) = rest.find("(\"") {
        let method = rest[..at]
            .rsplit(|c: char| !c.is_ascii_alphabetic())
            .next()
            .unwrap()
            .to_ascii_uppercase();
        let call = &rest[at + 1..];
        let close = call.find(')').expect("a closing parenthesis");
        let fields: Vec<&str> = call[..close].split(',').map(str::trim).collect();
        assert_eq!(fields.len(), 3, "a route entry: {}", &call[..close]);
        let pattern = fields[0]
            .trim_matches('"')
            .split('/')
            .map(|s| match s {
                s if s.starts_with("{*") => "*",
                s if s.starts_with('{') => "_",
                s => s,
            })
            .collect::<Vec<_>>()
            .join("/");
        if fields[2] != "Public" {
            routes.insert((method, pattern));
        }
        rest = &call[close..];
    }
    routes
}

fn pattern_of(template: &str) -> String {
    template
        .split('/')
        .map(|s| if s.starts_with('{') { "_" } else { s })
        .collect::<Vec<_>>()
        .join("/")
}

/// Whether a matrix row's pattern (`_` per parameter) is served by a router pattern (`*`: one
/// segment or more).
fn covers(router: &str, row: &str) -> bool {
    let router: Vec<&str> = router.split('/').collect();
    let row: Vec<&str> = row.split('/').collect();
    match router.iter().position(|s| *s == "*") {
        Some(at) => {
            row.len() > at
                && router[..at]
                    .iter()
                    .zip(&row[..at])
                    .all(|(r, m)| r == m || (*r == "_" && *m == "_"))
        }
        None => router == row,
    }
}

#[test]
fn the_matrix_covers_every_authenticated_route() {
    let in_router = routes_in_router();
    assert!(in_router.len() > 30, "parsed {} routes", in_router.len());
    assert!(
        in_router.contains(&("GET".to_string(), "/v1/models/*".to_string())),
        "{in_router:?}"
    );
    let mut in_matrix = BTreeSet::new();
    for (method, template, _, _) in MATRIX {
        in_matrix.insert((method.to_string(), pattern_of(template)));
    }
    let missing: Vec<_> = in_router
        .iter()
        .filter(|(method, pattern)| {
            !in_matrix
                .iter()
                .any(|(m, row)| m == method && covers(pattern, row))
        })
        .collect();
    let unknown: Vec<_> = in_matrix
        .iter()
        .filter(|(method, row)| {
            !in_router
                .iter()
                .any(|(m, pattern)| m == method && covers(pattern, row))
        })
        .collect();
    assert!(
        missing.is_empty(),
        "routes without a matrix row: {missing:?}"
    );
    assert!(
        unknown.is_empty(),
        "matrix rows without a route: {unknown:?}"
    );
}

#[test]
fn every_route_for_every_caller() {
    let started = std::time::Instant::now();
    let fixture = setup();
    let server = &fixture.server;
    let mut failures = Vec::new();
    let mut cells = 0;
    let mut wrong_by_caller: BTreeMap<&str, usize> = BTreeMap::new();
    for (method, template, body, expectations) in MATRIX {
        let expected: Vec<&str> = expectations.split_whitespace().collect();
        assert_eq!(expected.len(), PRINCIPALS.len(), "{method} {template}");
        let path = fill(template, &fixture.ids);
        let body = body.map(|b| fill(b, &fixture.ids));
        for &who in &RUN_ORDER {
            let response = send(
                server,
                method,
                &path,
                body.as_deref(),
                fixture.bearers[who].as_deref(),
            );
            cells += 1;
            if let Err(problem) = check_cell(&path, expected[who], &response) {
                *wrong_by_caller.entry(PRINCIPALS[who]).or_insert(0) += 1;
                failures.push(format!(
                    "{method} {template} as {}: {problem}",
                    PRINCIPALS[who]
                ));
            }
        }
    }
    assert_eq!(cells, MATRIX.len() * PRINCIPALS.len());

    // Side effects the operator and the owners were allowed to cause, and nothing else.
    let conn = db(server);
    let status_of = |id: &str| -> String {
        conn.query_row("SELECT status FROM api_keys WHERE id = ?1", [id], |r| {
            r.get(0)
        })
        .unwrap()
    };
    for name in [
        "a_key_revoke",
        "b_key_revoke",
        "a_key_rotate",
        "b_key_rotate",
        "a_key_op_revoke",
        "a_key_op_rotate",
    ] {
        let status = status_of(&fixture.ids[name]);
        if status != "revoked" {
            failures.push(format!(
                "{name} is {status} after its owner revoked/rotated it"
            ));
        }
    }
    let victim_status: String = conn
        .query_row(
            "SELECT status FROM users WHERE id = ?1",
            [&fixture.ids["victim"]],
            |r| r.get(0),
        )
        .unwrap();
    if victim_status != "deleted" {
        failures.push(format!("the victim user is {victim_status}"));
    }
    let count = |sql: &str| -> i64 { conn.query_row(sql, [], |r| r.get(0)).unwrap() };
    if count("SELECT COUNT(*) FROM telegram_updates") != 0 {
        failures.push("a webhook update without the secret was stored".to_string());
    }
    if count("SELECT COUNT(*) FROM telegram_links") != 0 {
        failures.push("user A's Telegram link survived the operator's unlink".to_string());
    }
    let a_name: String = conn
        .query_row(
            "SELECT display_name FROM users WHERE id = ?1",
            [&fixture.user_a],
            |r| r.get(0),
        )
        .unwrap();
    if a_name != "User A (renamed)" {
        failures.push(format!("user A's name is {a_name}"));
    }
    // Only the operator created this user, once.
    let created: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM users WHERE email = 'matrix-new@example.com'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    if created != 1 {
        failures.push(format!("{created} users named matrix-new"));
    }
    if server.dir.join("workspaces/matrix-victim").exists() {
        failures.push("the victim workspace still exists".to_string());
    }
    // Users' sessions: A and B reset their own; the operator wiped the victim's.
    let sessions: i64 = conn
        .query_row("SELECT COUNT(*) FROM sessions", [], |r| r.get(0))
        .unwrap();
    if sessions != 0 {
        failures.push(format!("{sessions} session(s) left"));
    }
    // Denied callers wrote no audit entry: every entry is by the operator, user A or user B,
    // or the start-up provisioning.
    let actors: Vec<String> = conn
        .prepare("SELECT DISTINCT actor FROM audit_log")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let b_id: String = conn
        .query_row(
            "SELECT id FROM users WHERE email = 'user-b@example.com'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let allowed = [
        "operator".to_string(),
        "system".to_string(),
        format!("user:{}", fixture.user_a),
        format!("user:{b_id}"),
    ];
    for actor in &actors {
        if !allowed.contains(actor) {
            failures.push(format!("audit entry by {actor}"));
        }
    }
    // The logout revoked the operator's token.
    let after = server.get("/management/v1/overview", Some(&fixture.token));
    if after.status != 401 {
        failures.push(format!(
            "the token still works after logout: {}",
            after.status
        ));
    }
    // Odd credentials on both planes: refused until five unknown credentials from this address
    // (the logged-out token above does not count) throttle it like failed logins.
    let mut guesses = 0;
    for bearer in [
        "uagk_live_0000000000000000000000000000000",
        "uagk_test",
        "not-a-token",
    ] {
        for path in ["/v1/models", "/v1/user/me", "/management/v1/overview"] {
            let response = server.get(path, Some(bearer));
            guesses += 1;
            let expected = if guesses <= 5 { "401" } else { "429" };
            if let Err(problem) = check_cell(path, expected, &response) {
                failures.push(format!("GET {path} with {bearer:?}: {problem}"));
            }
        }
    }
    let elapsed = started.elapsed();
    assert!(
        failures.is_empty(),
        "{} of {cells} cells wrong (matrix cells by caller: {wrong_by_caller:?}):\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(
        elapsed < std::time::Duration::from_secs(60),
        "the matrix took {elapsed:?}"
    );
}
