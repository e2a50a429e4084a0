//! Operator authentication end to end: token exchange, aliases, the raw secret as a bearer,
//! logout, expiry, throttling, the generated secret, and secrets kept out of every log.

use crate::support::{self, Server, SECRET};
use rusqlite::Connection;
use std::os::unix::fs::PermissionsExt;

const TOKEN: &str = "/management/v1/auth/token";

fn exchange(server: &Server, body: &str) -> support::HttpResponse {
    server.post_json(TOKEN, None, body)
}

fn assert_unauthorized(response: &support::HttpResponse, fragment: &str) {
    assert_eq!(response.status, 401, "{}", response.text());
    let body = response.json();
    assert_eq!(body["ok"], false);
    assert_eq!(body["error"]["code"], "unauthorized");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains(fragment), "{message:?} lacks {fragment:?}");
}

/// Asserts every line of the log files is a JSON object with the standard keys.
fn assert_log_lines_well_formed(server: &Server) -> String {
    let text = server.log_files_text();
    assert!(
        !text.is_empty(),
        "no log file under {}",
        server.data_dir().display()
    );
    for line in text.lines() {
        let value: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("log line is not JSON ({e}): {line}"));
        let object = value
            .as_object()
            .unwrap_or_else(|| panic!("not an object: {line}"));
        for key in ["ts", "level", "target", "message", "request_id"] {
            assert!(object.contains_key(key), "log line lacks {key}: {line}");
        }
    }
    text
}

fn assert_absent_from_logs(server: &Server, secrets: &[&str]) {
    let file = assert_log_lines_well_formed(server);
    let stderr = server.stderr();
    for secret in secrets {
        assert!(!file.contains(secret), "log file contains a secret");
        assert!(!stderr.contains(secret), "stderr contains a secret");
    }
}

#[test]
fn token_exchange_issues_an_eight_hour_bearer_token() {
    let mut server = support::server().start();
    let response = exchange(&server, &format!(r#"{{"operator_secret":"{SECRET}"}}"#));
    assert_eq!(response.status, 200, "{}", response.text());
    let body = response.json();
    assert_eq!(body["ok"], true);
    let data = &body["data"];
    let token = data["access_token"].as_str().unwrap();
    assert!(token.starts_with("cdt_"), "{token}");
    assert_eq!(data["token_type"], "bearer");
    assert_eq!(data["expires_in"], 28800);
    assert!(data["token_id"].as_str().unwrap().starts_with("otk_"));
    let overview = server.get("/management/v1/overview", Some(token));
    assert_eq!(overview.status, 200, "{}", overview.text());
    assert_absent_from_logs(&server, &[SECRET, token]);
    // The login's log line carries the request id the client saw.
    let request_id = response.header("X-Request-Id").unwrap();
    let logged = server
        .log_files_text()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|v| {
            v["message"]
                .as_str()
                .unwrap_or("")
                .contains("operator logged in")
        })
        .expect("a log line for the login");
    assert_eq!(logged["request_id"], request_id, "{logged}");
    assert_eq!(server.signal_and_wait("TERM"), Some(0));
    assert_absent_from_logs(&server, &[SECRET, token]);
}

#[test]
fn bad_secrets_are_refused() {
    let mut server = support::server().start();
    // Five failures: the throttle only refuses the sixth attempt.
    assert_unauthorized(
        &exchange(&server, r#"{"operator_secret":"wrong"}"#),
        "invalid operator secret",
    );
    assert_unauthorized(&exchange(&server, ""), "operator secret required");
    assert_unauthorized(
        &server.request("POST", TOKEN, &[], None),
        "operator secret required",
    );
    assert_unauthorized(
        &exchange(&server, r#"{"operator_secret":""}"#),
        "operator secret required",
    );
    assert_unauthorized(
        &exchange(&server, r#"{"operator_secret":"  "}"#),
        "operator secret required",
    );
    assert_eq!(server.signal_and_wait("TERM"), Some(0));
}

#[test]
fn aliases_and_the_raw_secret_are_accepted() {
    let mut server = support::server().start();
    for field in ["operator_passkey", "api_token"] {
        let response = exchange(&server, &format!(r#"{{"{field}":"{SECRET}"}}"#));
        assert_eq!(response.status, 200, "{field}: {}", response.text());
        assert!(response.json()["data"]["access_token"].is_string());
    }
    let overview = server.get("/management/v1/overview", Some(SECRET));
    assert_eq!(overview.status, 200, "{}", overview.text());
    let models = server.get("/v1/models", Some(SECRET));
    assert_eq!(models.status, 200, "{}", models.text());
    assert_eq!(server.signal_and_wait("TERM"), Some(0));
}

#[test]
fn logout_revokes_the_token() {
    let mut server = support::server().start();
    let token = server.login();
    let other = server.login();
    let response = server.post_json("/management/v1/auth/logout", Some(&token), "");
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(response.json()["data"]["revoked"], true);
    assert_unauthorized(
        &server.get("/management/v1/overview", Some(&token)),
        "logged out",
    );
    let openai = server.get("/v1/models", Some(&token));
    assert_eq!(openai.status, 401);
    assert!(openai.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("logged out"));
    // Only that token.
    assert_eq!(
        server.get("/management/v1/overview", Some(&other)).status,
        200
    );
    assert_eq!(server.signal_and_wait("TERM"), Some(0));
}

#[test]
fn an_expired_token_is_refused() {
    let server = support::server().start();
    let token = server.login();
    let db = server.data_dir().join("codara.db");
    let (dir, _keep) = server.stop_keep_dir();
    let conn = Connection::open(&db).unwrap();
    assert_eq!(
        conn.execute("UPDATE operator_tokens SET expires_at = 1", [])
            .unwrap(),
        1
    );
    drop(conn);

    // No login on the restarted server: logging in prunes long-expired tokens.
    let mut server = support::server().dir(&dir).start();
    assert_unauthorized(
        &server.get("/management/v1/overview", Some(&token)),
        "expired",
    );
    assert_eq!(server.signal_and_wait("TERM"), Some(0));
}

#[test]
fn repeated_failures_are_throttled() {
    let mut server = support::server().start();
    for attempt in 1..=5 {
        let response = exchange(&server, r#"{"operator_secret":"wrong"}"#);
        assert_eq!(
            response.status,
            401,
            "attempt {attempt}: {}",
            response.text()
        );
    }
    let response = exchange(&server, &format!(r#"{{"operator_secret":"{SECRET}"}}"#));
    assert_eq!(response.status, 429, "{}", response.text());
    let retry_after: u64 = response
        .header("Retry-After")
        .expect("Retry-After header")
        .parse()
        .unwrap();
    assert!(retry_after > 0 && retry_after <= 300, "{retry_after}");
    let body = response.json();
    assert_eq!(body["ok"], false);
    assert_eq!(body["error"]["code"], "rate_limited");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("too many"));
    // While the address is throttled, its bearers get 429 as well, the secret included;
    // public routes still answer.
    let throttled = server.get("/management/v1/overview", Some(SECRET));
    assert_eq!(throttled.status, 429, "{}", throttled.text());
    assert!(throttled.header("Retry-After").is_some());
    assert_eq!(server.get("/healthz", None).status, 200);
    assert_eq!(server.signal_and_wait("TERM"), Some(0));
}

#[test]
fn a_garbage_bearer_gets_a_bearer_challenge() {
    let mut server = support::server().start();
    for path in ["/management/v1/overview", "/v1/models"] {
        let response = server.get(path, Some("garbage-token"));
        assert_eq!(response.status, 401, "{path}: {}", response.text());
        assert_eq!(
            response.header("WWW-Authenticate"),
            Some("Bearer"),
            "{path}"
        );
    }
    let basic = server.request(
        "GET",
        "/management/v1/overview",
        &[("Authorization", "Basic Zm9vOmJhcg==")],
        None,
    );
    assert_eq!(basic.status, 401);
    assert_eq!(basic.header("WWW-Authenticate"), Some("Bearer"));
    assert_eq!(server.signal_and_wait("TERM"), Some(0));
}

#[test]
fn a_generated_secret_is_printed_until_it_signs_in_stored_privately_and_never_logged() {
    let server = support::server().env("API_TOKEN", None).start();
    let line = server
        .stdout
        .iter()
        .find(|l| l.contains("Operator secret (generated"))
        .unwrap_or_else(|| panic!("no generated secret printed: {:?}", server.stdout))
        .clone();
    let secret = line.rsplit(' ').next().unwrap().trim().to_string();
    assert!(secret.len() >= 20, "{line}");

    let path = server.data_dir().join("operator.secret");
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "operator.secret mode");
    assert_eq!(std::fs::read_to_string(&path).unwrap().trim(), secret);

    let response = exchange(&server, &format!(r#"{{"operator_secret":"{secret}"}}"#));
    assert_eq!(response.status, 200, "{}", response.text());
    let token = response.json()["data"]["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        server.get("/management/v1/overview", Some(&token)).status,
        200
    );
    assert_absent_from_logs(&server, &[&secret, &token]);
    let (dir, _keep) = server.stop_keep_dir();

    let mut server = support::server().dir(&dir).env("API_TOKEN", None).start();
    let printed = server.stdout.join("\n");
    assert!(!printed.contains("generated"), "{printed}");
    assert!(
        !printed.contains(&secret),
        "not shown again after it signed in"
    );
    assert!(printed.contains("kept in"), "{printed}");
    let response = exchange(&server, &format!(r#"{{"operator_secret":"{secret}"}}"#));
    assert_eq!(response.status, 200, "{}", response.text());
    assert_absent_from_logs(&server, &[&secret, &token]);
    assert_eq!(server.signal_and_wait("TERM"), Some(0));
}
