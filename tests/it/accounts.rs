//! The provider account pool end to end: credential validation on add (API and CLI) with no
//! credential ever in a response, usage and token refresh against a loopback ChatGPT stand-in
//! (windows, refusals, malformed answers, a slow endpoint, an expiring OAuth token), turns through
//! the real codex CLI that pick an account, cool a rate-limited one down and retry on another,
//! move a session's CLI state when its account is switched off, and pick a cooled-down account
//! again once its cooldown passed; no plaintext credential on disk outside the per-account
//! `auth.json`, `codara vault rotate-key`, and the host's `~/.codex` left alone.

use crate::support::fake_chatgpt::{usage_body, FakeChatgpt, Usage};
use crate::support::mock_model::{clis_bin, MockModel, CODEX_MODEL};
use crate::support::{self, HttpResponse, Server, TempDir};
use rusqlite::Connection;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

// ---------------------------------------------------------------------------------------------
// Fabricated credentials

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn b64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let mut acc = 0u32;
        for (i, &b) in chunk.iter().enumerate() {
            acc |= u32::from(b) << (16 - 8 * i);
        }
        for i in 0..=chunk.len() {
            out.push(ALPHABET[((acc >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

/// A JWT `header.payload.signature` (base64url, unsigned) carrying `claims`.
fn jwt(claims: Value) -> String {
    format!(
        "{}.{}.{}",
        b64url(br#"{"alg":"RS256","typ":"JWT"}"#),
        b64url(claims.to_string().as_bytes()),
        b64url(b"not-a-real-signature")
    )
}

/// An OAuth login as codex stores it, with its raw secrets.
struct OauthLogin {
    auth_json: Value,
    access_token: String,
    refresh_token: String,
    id_token: String,
}

/// A codex `auth.json` for `email` whose access token expires `expires_in_s` from now; `tag`
/// makes every token unique.
fn oauth_login(tag: &str, email: &str, expires_in_s: i64) -> OauthLogin {
    let exp = now_ms() / 1000 + expires_in_s;
    let id_token = jwt(json!({
        "email": email,
        "exp": exp,
        "https://api.openai.com/auth": {
            "chatgpt_account_id": format!("chatgpt-acct-{tag}"),
            "chatgpt_plan_type": "plus"
        }
    }));
    let access_token = jwt(json!({"exp": exp, "jti": format!("access-{tag}"), "scp": ["openid"]}));
    let refresh_token = format!("rt-{tag}-secret-refresh-value");
    let auth_json = json!({
        "OPENAI_API_KEY": null,
        "tokens": {
            "id_token": id_token,
            "access_token": access_token,
            "refresh_token": refresh_token,
            "account_id": format!("chatgpt-acct-{tag}")
        },
        "last_refresh": "2026-01-01T00:00:00Z"
    });
    OauthLogin {
        auth_json,
        access_token,
        refresh_token,
        id_token,
    }
}

/// Epoch ms of an RFC 3339 UTC time as the API renders it (`2026-01-02T03:04:05(.678)Z`).
fn parse_time(text: &str) -> i64 {
    let t = text.trim_end_matches('Z');
    let (date, time) = t.split_once('T').unwrap();
    let d: Vec<i64> = date.split('-').map(|p| p.parse().unwrap()).collect();
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let h: Vec<i64> = hms.split(':').map(|p| p.parse().unwrap()).collect();
    let ms: i64 = format!("{frac:0<3}")[..3].parse().unwrap();
    // Days from civil (Howard Hinnant).
    let (y, m) = if d[1] <= 2 {
        (d[0] - 1, d[1] + 9)
    } else {
        (d[0], d[1] - 3)
    };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + d[2] - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    ((days * 24 + h[0]) * 60 + h[1]) * 60_000 + h[2] * 1000 + ms
}

// ---------------------------------------------------------------------------------------------
// The rig

/// A TOML basic string.
fn quote(text: &str) -> String {
    serde_json::to_string(text).unwrap()
}

/// The codex block pointing at the mock, with the mock provider's `env_key` = `OPENAI_API_KEY`,
/// so codex authenticates with the pool account's API key (materialized into that variable).
fn codex_toml(mock: &MockModel) -> String {
    let args: Vec<String> = mock
        .codex_args()
        .iter()
        .map(|a| quote(&a.replace("MOCK_API_KEY", "OPENAI_API_KEY")))
        .collect();
    format!(
        "[workspace]\nlock_timeout_seconds = 30\n\n\
         [providers.codex]\nwarm_idle_seconds = 1\nbinary = {}\ndefault_model = {}\nmodels = [{}]\nextra_args = [{}]\n",
        quote(&clis_bin().join("codex").display().to_string()),
        quote(CODEX_MODEL),
        quote(CODEX_MODEL),
        args.join(", ")
    )
}

struct Rig {
    mock: MockModel,
    fake: FakeChatgpt,
    server: Server,
    token: String,
}

impl Rig {
    /// Mock model + fake ChatGPT + a server whose codex sends the account's key.
    fn start() -> Rig {
        Rig::start_with(
            |mock, fake| format!("{}\n{}", codex_toml(mock), fake.accounts_toml()),
            |b| b,
        )
    }

    /// Like [`Rig::start`] with the whole `codara.toml` from `toml` and a changed builder.
    fn start_with(
        toml: impl FnOnce(&MockModel, &FakeChatgpt) -> String,
        builder: impl FnOnce(support::Builder) -> support::Builder,
    ) -> Rig {
        let mock = MockModel::start();
        let fake = FakeChatgpt::start();
        let toml = toml(&mock, &fake);
        let server = builder(support::server().toml(&toml)).start();
        let token = server.login();
        Rig {
            mock,
            fake,
            server,
            token,
        }
    }

    fn call(&self, method: &str, path: &str, body: Option<&Value>) -> HttpResponse {
        let auth = format!("Bearer {}", self.token);
        let text = body.map(Value::to_string);
        let mut headers: Vec<(&str, &str)> = vec![("Authorization", &auth)];
        if text.is_some() {
            headers.push(("Content-Type", "application/json"));
        }
        self.server
            .request(method, path, &headers, text.as_deref().map(str::as_bytes))
    }

    /// `POST /management/v1/accounts`.
    fn add(&self, id: &str, auth_type: &str, credential: Value) -> HttpResponse {
        self.call(
            "POST",
            "/management/v1/accounts",
            Some(
                &json!({"id": id, "provider": "codex", "auth_type": auth_type,
                         "credential": credential}),
            ),
        )
    }

    fn add_ok(&self, id: &str, auth_type: &str, credential: Value) -> Value {
        let response = self.add(id, auth_type, credential);
        assert_eq!(response.status, 201, "{}", response.text());
        response.json()["data"].clone()
    }

    fn accounts_text(&self) -> String {
        let response = self.call("GET", "/management/v1/accounts", None);
        assert_eq!(response.status, 200, "{}", response.text());
        response.text()
    }

    fn account(&self, id: &str) -> Value {
        let list: Value = serde_json::from_str(&self.accounts_text()).unwrap();
        list["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["id"] == id)
            .unwrap_or_else(|| panic!("no account {id} in {list}"))
            .clone()
    }

    /// `POST /management/v1/usage/refresh?account_id=ID` → the one report.
    fn refresh(&self, id: &str) -> Value {
        let response = self.call(
            "POST",
            &format!("/management/v1/usage/refresh?account_id={id}"),
            None,
        );
        assert_eq!(response.status, 200, "{}", response.text());
        let data = response.json()["data"].clone();
        assert_eq!(data.as_array().map(Vec::len), Some(1), "{data}");
        data[0].clone()
    }

    fn audit(&self, action: &str, target: &str) -> Vec<Value> {
        let response = self.call(
            "GET",
            &format!("/management/v1/audit?action={action}&target_id={target}&limit=100"),
            None,
        );
        assert_eq!(response.status, 200, "{}", response.text());
        response.json()["data"].as_array().unwrap().clone()
    }

    fn chat(&self, session: Option<&str>, messages: &[Value]) -> HttpResponse {
        let mut body = json!({"model": "uag-codex", "messages": messages});
        if let Some(session) = session {
            body["client_session_id"] = json!(session);
        }
        self.server
            .post_json("/v1/chat/completions", Some(&self.token), &body.to_string())
    }

    fn chat_ok(&self, session: Option<&str>, messages: &[Value]) -> Value {
        let response = self.chat(session, messages);
        assert_eq!(
            response.status,
            200,
            "{}\nstderr:\n{}",
            response.text(),
            self.server.stderr()
        );
        response.json()
    }

    fn session(&self, id: &str) -> Value {
        let response = self.call("GET", &format!("/management/v1/sessions/{id}"), None);
        assert_eq!(response.status, 200, "{}", response.text());
        response.json()["data"].clone()
    }

    /// The account recorded on each stored turn of a session (the turns table, in order).
    fn turn_accounts(&self, session_id: &str) -> Vec<Option<String>> {
        let conn = Connection::open(self.server.data_dir().join("codara.db")).unwrap();
        let mut statement = conn
            .prepare("SELECT account_id FROM turns WHERE session_id = ?1 ORDER BY turn_index")
            .unwrap();
        let rows = statement
            .query_map([session_id], |row| row.get::<_, Option<String>>(0))
            .unwrap();
        rows.map(Result::unwrap).collect()
    }

    /// The bearer tokens of the model requests (not `/models`) received so far, in order.
    fn model_bearers(&self) -> Vec<String> {
        self.mock
            .requests()
            .iter()
            .filter(|r| r.path.ends_with("/responses"))
            .filter_map(|r| r.header("authorization").map(str::to_string))
            .map(|a| a.trim_start_matches("Bearer ").to_string())
            .collect()
    }

    fn db(&self) -> Connection {
        let conn = Connection::open(self.server.data_dir().join("codara.db")).unwrap();
        conn.busy_timeout(Duration::from_secs(10)).unwrap();
        conn
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

// ---------------------------------------------------------------------------------------------
// Usage and token refresh

#[test]
fn usage_refresh_stores_windows_and_records_refusals_and_bad_answers() {
    let rig = Rig::start();
    let good = oauth_login("good", "good@example.com", 86_400);
    let refused = oauth_login("refused", "refused@example.com", 86_400);
    let garbled = oauth_login("garbled", "garbled@example.com", 86_400);
    rig.add_ok("good", "OAUTH_SESSION", good.auth_json.clone());
    rig.add_ok("refused", "OAUTH_SESSION", refused.auth_json.clone());
    rig.add_ok("garbled", "OAUTH_SESSION", garbled.auth_json.clone());
    rig.fake.set_usage(
        &good.access_token,
        Usage::Json(usage_body((42.5, 3_600), (10.0, 86_400))),
    );
    rig.fake
        .set_usage(&refused.access_token, Usage::Status(401));
    rig.fake.set_usage(&garbled.access_token, Usage::Malformed);

    // Unknown quota is null before any refresh, never invented.
    let fresh = rig.account("good");
    assert_eq!(fresh["quota"]["five_hour"], Value::Null, "{fresh}");
    assert_eq!(fresh["quota"]["weekly"], Value::Null, "{fresh}");
    assert_eq!(fresh["quota"]["checked_at"], Value::Null, "{fresh}");

    let unknown = rig.call(
        "POST",
        "/management/v1/usage/refresh?account_id=nobody",
        None,
    );
    assert_eq!(unknown.status, 404, "{}", unknown.text());

    // Success: both windows with their reset times.
    let before = now_ms();
    let report = rig.refresh("good");
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["error"], Value::Null, "{report}");
    let account = rig.account("good");
    let quota = &account["quota"];
    assert_eq!(quota["five_hour"]["used_percent"], 42.5, "{account}");
    assert_eq!(quota["weekly"]["used_percent"], 10.0, "{account}");
    let five_reset = parse_time(quota["five_hour"]["resets_at"].as_str().unwrap());
    let week_reset = parse_time(quota["weekly"]["resets_at"].as_str().unwrap());
    assert!(
        (before + 3_600_000 - 2_000..=now_ms() + 3_600_000 + 2_000).contains(&five_reset),
        "five_hour resets_at {five_reset} vs now {before}"
    );
    assert!(
        (before + 86_400_000 - 2_000..=now_ms() + 86_400_000 + 2_000).contains(&week_reset),
        "weekly resets_at {week_reset} vs now {before}"
    );
    assert!(quota["checked_at"].is_string(), "{account}");
    assert_eq!(account["status"], "ready");
    assert_eq!(account["last_error"], Value::Null);
    // The fetch used the account's own token and ChatGPT account id.
    let sent = rig.fake.usage_requests();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0].bearer.as_deref(), Some(good.access_token.as_str()));
    assert_eq!(sent[0].account_id.as_deref(), Some("chatgpt-acct-good"));
    assert_eq!(rig.audit("usage.refreshed", "good").len(), 1);

    // 401: the account needs re-authentication, with the error and an audit row.
    let report = rig.refresh("refused");
    assert_eq!(report["ok"], false, "{report}");
    assert!(
        report["error"].as_str().unwrap().contains("401"),
        "{report}"
    );
    let account = rig.account("refused");
    assert_eq!(account["status"], "needs_reauth", "{account}");
    assert_eq!(account["usable"], false, "{account}");
    assert!(account["last_error"].is_string(), "{account}");
    assert_eq!(account["quota"]["five_hour"], Value::Null, "{account}");
    let failed = rig.audit("usage.refresh_failed", "refused");
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert!(
        failed[0].to_string().contains("401"),
        "the audit row says why: {}",
        failed[0]
    );
    assert_eq!(rig.audit("account.needs_reauth", "refused").len(), 1);

    // Malformed JSON: an error is recorded, the windows stay null.
    let report = rig.refresh("garbled");
    assert_eq!(report["ok"], false, "{report}");
    assert!(
        report["error"].as_str().unwrap().contains("malformed"),
        "{report}"
    );
    let account = rig.account("garbled");
    assert!(
        account["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("malformed")),
        "{account}"
    );
    assert_eq!(account["quota"]["five_hour"], Value::Null, "{account}");
    assert_eq!(account["quota"]["weekly"], Value::Null, "{account}");
    assert_eq!(account["quota"]["checked_at"], Value::Null, "{account}");
    assert_eq!(
        account["status"], "ready",
        "a garbled answer is not the account's fault"
    );
    assert_eq!(rig.audit("usage.refresh_failed", "garbled").len(), 1);

    // A later garbled answer keeps the last good windows instead of inventing new ones.
    rig.fake.set_usage(&good.access_token, Usage::Malformed);
    assert_eq!(rig.refresh("good")["ok"], false);
    let account = rig.account("good");
    assert_eq!(
        account["quota"]["five_hour"]["used_percent"], 42.5,
        "{account}"
    );
    assert_eq!(
        account["quota"]["weekly"]["used_percent"], 10.0,
        "{account}"
    );

    // The CLI refreshes beside the running server: exit 0 when all went well, 1 otherwise.
    rig.fake.set_usage(
        &good.access_token,
        Usage::Json(usage_body((55.0, 3_000), (20.0, 80_000))),
    );
    let (code, out, err) = support::run_cli(&rig.server.dir, &["account", "refresh", "good"], &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("good: refreshed"), "{out}");
    assert_eq!(
        rig.account("good")["quota"]["five_hour"]["used_percent"],
        55.0
    );
    let (code, out, err) = support::run_cli(&rig.server.dir, &["account", "refresh"], &[]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        out.contains("refused:") && out.contains("garbled:"),
        "{out}"
    );
    for login in [&good, &refused, &garbled] {
        for secret in [&login.access_token, &login.refresh_token, &login.id_token] {
            assert!(!out.contains(secret.as_str()) && !err.contains(secret.as_str()));
        }
    }
    // Every whole-pool refresh reached the usage endpoint with each account's own token.
    assert!(rig
        .fake
        .usage_requests()
        .iter()
        .all(|r| [&good, &refused, &garbled]
            .iter()
            .any(|l| r.bearer.as_deref() == Some(l.access_token.as_str()))));
}

#[test]
fn the_background_refresher_falls_through_to_the_next_usage_endpoint() {
    // A port nobody listens on: the first endpoint refuses the connection.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!(
        "http://{}/backend-api/wham/usage",
        closed.local_addr().unwrap()
    );
    drop(closed);
    let rig = Rig::start_with(
        |mock, fake| {
            format!(
                "{}\n[accounts]\nusage_endpoints = [{}, {}]\noauth_token_url = {}\n\
                 oauth_client_id = \"test-client\"\nrefresh_interval_seconds = 1\n",
                codex_toml(mock),
                quote(&dead),
                quote(&fake.usage_url()),
                quote(&fake.token_url())
            )
        },
        |b| b,
    );
    let login = oauth_login("background", "bg@example.com", 86_400);
    rig.fake.set_usage(
        &login.access_token,
        Usage::Json(usage_body((12.0, 3_600), (34.0, 86_400))),
    );
    rig.add_ok("bg", "OAUTH_SESSION", login.auth_json.clone());
    // Nobody asks: the refresher fetches the windows by itself.
    support::wait_until(
        Duration::from_secs(20),
        "a background usage refresh",
        || rig.account("bg")["quota"]["five_hour"].is_object(),
    );
    let account = rig.account("bg");
    assert_eq!(
        account["quota"]["five_hour"]["used_percent"], 12.0,
        "{account}"
    );
    assert_eq!(
        account["quota"]["weekly"]["used_percent"], 34.0,
        "{account}"
    );
    assert_eq!(account["last_error"], Value::Null, "{account}");
    assert!(!rig.audit("usage.refreshed", "bg").is_empty());
}

#[test]
fn usage_refresh_gives_up_on_a_slow_endpoint_at_the_client_timeout() {
    let rig = Rig::start();
    let slow = oauth_login("slow", "slow@example.com", 86_400);
    rig.add_ok("slow", "OAUTH_SESSION", slow.auth_json.clone());
    // Longer than the 10 s client timeout.
    rig.fake.set_usage(
        &slow.access_token,
        Usage::Delayed(
            Duration::from_secs(12),
            usage_body((1.0, 3_600), (1.0, 86_400)),
        ),
    );
    let started = Instant::now();
    let report = rig.refresh("slow");
    let took = started.elapsed();
    assert_eq!(report["ok"], false, "{report}");
    assert!(report["error"].is_string(), "{report}");
    assert!(
        took >= Duration::from_secs(9) && took < Duration::from_secs(12),
        "the refresh gave up after {took:?}, expected at the 10 s client timeout"
    );
    let account = rig.account("slow");
    assert!(account["last_error"].is_string(), "{account}");
    assert_eq!(account["quota"]["five_hour"], Value::Null, "{account}");
    assert_eq!(
        account["status"], "ready",
        "a slow endpoint is not the account's fault"
    );
    // The server still answers.
    assert_eq!(rig.server.get("/healthz", None).status, 200);
}

#[test]
fn an_expiring_oauth_token_is_refreshed_and_the_new_one_is_stored() {
    let rig = Rig::start();
    // The access token expires a minute from now: inside the 5-minute refresh margin.
    let old = oauth_login("expiring", "expiring@example.com", 60);
    let added = rig.add_ok("expiring", "OAUTH_SESSION", old.auth_json.clone());
    let old_expiry = parse_time(added["access_token_expires_at"].as_str().unwrap());
    assert!((old_expiry - now_ms()).abs() < 70_000, "{added}");

    let new_access = jwt(json!({"exp": now_ms() / 1000 + 3_600, "jti": "access-renewed"}));
    let new_refresh = "rt-renewed-secret-refresh-value";
    rig.fake.set_token(
        &old.refresh_token,
        200,
        json!({"access_token": new_access, "refresh_token": new_refresh,
               "id_token": old.id_token, "token_type": "Bearer", "expires_in": 3_600}),
    );
    rig.fake.set_usage(
        &new_access,
        Usage::Json(usage_body((5.0, 7_000), (2.0, 500_000))),
    );
    // The old token is no longer accepted by the usage endpoint (unknown bearer → 401).

    let report = rig.refresh("expiring");
    assert_eq!(report["ok"], true, "{report}\n{}", rig.server.stderr());
    let requests = rig.fake.token_requests();
    assert_eq!(requests.len(), 1, "{requests:?}");
    let body = &requests[0].body;
    assert_eq!(body["grant_type"], "refresh_token", "{body}");
    assert_eq!(body["client_id"], "test-client", "{body}");
    assert_eq!(body["refresh_token"], old.refresh_token.as_str(), "{body}");
    let account = rig.account("expiring");
    let new_expiry = parse_time(account["access_token_expires_at"].as_str().unwrap());
    assert!(
        new_expiry > now_ms() + 3_000_000,
        "the new expiry is read from the new token: {account}"
    );
    assert_eq!(
        account["quota"]["five_hour"]["used_percent"], 5.0,
        "{account}"
    );
    assert_eq!(rig.audit("account.token_refreshed", "expiring").len(), 1);

    // The stored credential changed: a second refresh does not refresh again and fetches the
    // usage with the NEW token, read back from the vault.
    let report = rig.refresh("expiring");
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(
        rig.fake.token_requests().len(),
        1,
        "no second token refresh"
    );
    let bearers: Vec<Option<String>> = rig
        .fake
        .usage_requests()
        .into_iter()
        .map(|r| r.bearer)
        .collect();
    assert_eq!(
        bearers,
        vec![Some(new_access.clone()), Some(new_access.clone())],
        "the usage endpoint saw only the new token"
    );
    // Neither the old nor the new tokens ever reach an API response or the audit log.
    let audit = rig
        .call("GET", "/management/v1/audit?limit=200", None)
        .text();
    for secret in [
        old.access_token.as_str(),
        old.refresh_token.as_str(),
        new_access.as_str(),
        new_refresh,
    ] {
        assert!(!rig.accounts_text().contains(secret));
        assert!(!audit.contains(secret), "a token is in the audit log");
    }

    // A refused refresh token (invalid_grant) marks the account for re-authentication.
    let revoked = oauth_login("revoked", "revoked@example.com", 60);
    rig.add_ok("revoked", "OAUTH_SESSION", revoked.auth_json.clone());
    let report = rig.refresh("revoked");
    assert_eq!(report["ok"], false, "{report}");
    let account = rig.account("revoked");
    assert_eq!(account["status"], "needs_reauth", "{account}");
    assert!(account["last_error"].is_string(), "{account}");
    assert_eq!(rig.audit("usage.refresh_failed", "revoked").len(), 1);
}

// ---------------------------------------------------------------------------------------------
// Adding accounts

/// Asserts a 400 naming `param` whose text contains `fragment` and none of `secrets`.
fn assert_refused(response: &HttpResponse, param: &str, fragment: &str, secrets: &[&str]) {
    assert_eq!(response.status, 400, "{}", response.text());
    let body = response.json();
    assert_eq!(body["ok"], false, "{body}");
    assert_eq!(body["error"]["param"], param, "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains(fragment), "{message:?} lacks {fragment:?}");
    for secret in secrets {
        assert!(
            !response.text().contains(secret),
            "the error echoes a secret"
        );
    }
}

#[test]
fn credentials_are_validated_on_add_and_never_returned() {
    let rig = Rig::start();
    let login = oauth_login("upload", "dev@example.com", 86_400);
    let secrets = [
        login.access_token.as_str(),
        login.refresh_token.as_str(),
        login.id_token.as_str(),
        "sk-test-upload-key-123",
        "sk-test-upload-key-456",
    ];

    // A good auth.json as an object: email as label, plan from the claims, first = CLI-primary.
    let added = rig.add_ok("oauth-obj", "OAUTH_SESSION", login.auth_json.clone());
    assert_eq!(added["auth_type"], "OAUTH_SESSION", "{added}");
    assert_eq!(added["label"], "dev@example.com", "{added}");
    assert_eq!(added["plan"], "plus", "{added}");
    assert_eq!(added["status"], "ready", "{added}");
    assert_eq!(added["cli_primary"], true, "{added}");
    assert!(added["access_token_expires_at"].is_string(), "{added}");
    // ... and as the file's text, with a label of our own.
    let response = rig.call(
        "POST",
        "/management/v1/accounts",
        Some(
            &json!({"id": "oauth-text", "auth_type": "OAUTH_SESSION", "label": "Team seat",
                     "credential": serde_json::to_string_pretty(&login.auth_json).unwrap()}),
        ),
    );
    assert_eq!(response.status, 201, "{}", response.text());
    let added = response.json()["data"].clone();
    assert_eq!(added["label"], "Team seat");
    assert_eq!(added["provider"], "codex");
    assert_eq!(added["cli_primary"], false);
    // An API key.
    let added = rig.add_ok("key-a", "API_KEY", json!("  sk-test-upload-key-123\n"));
    assert_eq!(added["auth_type"], "API_KEY", "{added}");
    assert_eq!(added["label"], "key-a", "{added}");
    assert_eq!(added["plan"], Value::Null);
    assert_eq!(added["quota"]["five_hour"], Value::Null);

    // Refusals, each naming the field, none echoing the input.
    let not_json = rig.add("bad-1", "OAUTH_SESSION", json!("sk-test-upload-key-456"));
    assert_refused(&not_json, "credential", "not JSON", &secrets);
    let mut no_tokens = login.auth_json.clone();
    no_tokens.as_object_mut().unwrap().remove("tokens");
    no_tokens["OPENAI_API_KEY"] = json!("sk-test-upload-key-456");
    let response = rig.add("bad-2", "OAUTH_SESSION", no_tokens);
    assert_refused(&response, "credential", "missing tokens", &secrets);
    let mut no_refresh = login.auth_json.clone();
    no_refresh["tokens"]
        .as_object_mut()
        .unwrap()
        .remove("refresh_token");
    let response = rig.add("bad-3", "OAUTH_SESSION", no_refresh);
    assert_refused(
        &response,
        "credential",
        "missing tokens.refresh_token",
        &secrets,
    );
    let mut cut_jwt = login.auth_json.clone();
    cut_jwt["tokens"]["id_token"] = json!(&login.id_token[..20]);
    let response = rig.add("bad-4", "OAUTH_SESSION", cut_jwt);
    assert_refused(&response, "credential", "not a JWT", &secrets);
    let response = rig.add("bad-5", "API_KEY", login.auth_json.clone());
    assert_refused(&response, "credential", "looks like JSON", &secrets);
    let response = rig.add("bad-6", "API_KEY", json!("sk-test-upload-key-456 extra"));
    assert_refused(&response, "credential", "single line", &secrets);
    let response = rig.add("bad-7", "API_KEY", json!(42));
    assert_refused(&response, "credential", "credential", &secrets);
    let response = rig.add("bad-8", "SERVICE_ACCOUNT", json!("sk-test-upload-key-456"));
    assert_refused(&response, "auth_type", "API_KEY", &secrets);
    let response = rig.call(
        "POST",
        "/management/v1/accounts",
        Some(
            &json!({"id": "bad-9", "provider": "gemini", "auth_type": "API_KEY",
                     "credential": "sk-test-upload-key-456"}),
        ),
    );
    assert_refused(&response, "provider", "codex", &secrets);
    let response = rig.add("../evil", "API_KEY", json!("sk-test-upload-key-456"));
    assert_refused(&response, "id", "id", &secrets);
    let duplicate = rig.add("key-a", "API_KEY", json!("sk-test-upload-key-456"));
    assert_eq!(duplicate.status, 409, "{}", duplicate.text());
    assert!(!duplicate.text().contains("sk-test-upload-key-456"));

    // Only the three good ones exist, and no response ever carries a credential.
    let text = rig.accounts_text();
    let list: Value = serde_json::from_str(&text).unwrap();
    let ids: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 3, "{ids:?}");
    for secret in secrets {
        assert!(!text.contains(secret), "GET /accounts carries a credential");
        // Nor a recognizable part of one (a JWT's payload segment).
        if let Some(payload) = secret.split('.').nth(1) {
            assert!(
                !text.contains(payload),
                "GET /accounts carries a JWT payload"
            );
        }
    }
    for account in list["data"].as_array().unwrap() {
        for field in ["credential", "sealed_credential", "tokens", "api_key"] {
            assert!(account.get(field).is_none(), "{account}");
        }
    }
    // The audit trail records the additions without the credential.
    let audit = rig
        .call("GET", "/management/v1/audit?limit=200", None)
        .text();
    assert_eq!(rig.audit("account.added", "oauth-obj").len(), 1);
    for secret in secrets {
        assert!(
            !audit.contains(secret),
            "the audit log carries a credential"
        );
    }

    // Patch, primary, recover and delete answer without credentials too.
    let patched = rig.call(
        "PATCH",
        "/management/v1/accounts/key-a",
        Some(&json!({"label": "Renamed", "enabled": false})),
    );
    assert_eq!(patched.status, 200, "{}", patched.text());
    assert_eq!(patched.json()["data"]["label"], "Renamed");
    assert_eq!(patched.json()["data"]["enabled"], false);
    let primary = rig.call("POST", "/management/v1/accounts/oauth-text/primary", None);
    assert_eq!(primary.status, 200, "{}", primary.text());
    assert_eq!(rig.account("oauth-text")["cli_primary"], true);
    assert_eq!(rig.account("oauth-obj")["cli_primary"], false);
    // Cleared again (the dashboard's toggle): no account of the provider is primary, once
    // audited; clearing twice changes nothing.
    for _ in 0..2 {
        let cleared = rig.call("DELETE", "/management/v1/accounts/oauth-text/primary", None);
        assert_eq!(cleared.status, 200, "{}", cleared.text());
        assert_eq!(cleared.json()["data"]["cli_primary"], false);
    }
    assert_eq!(rig.account("oauth-text")["cli_primary"], false);
    let audit = rig.call(
        "GET",
        "/management/v1/audit?action=account.primary_cleared",
        None,
    );
    assert_eq!(
        audit.json()["data"].as_array().unwrap().len(),
        1,
        "{}",
        audit.text()
    );
    let recovered = rig.call("POST", "/management/v1/accounts/oauth-obj/recover", None);
    assert_eq!(recovered.status, 200, "{}", recovered.text());
    let deleted = rig.call("DELETE", "/management/v1/accounts/oauth-obj", None);
    assert_eq!(deleted.status, 200, "{}", deleted.text());
    let missing = rig.call("DELETE", "/management/v1/accounts/oauth-obj", None);
    assert_eq!(missing.status, 404, "{}", missing.text());
    for response in [&patched, &primary, &recovered, &deleted] {
        for secret in secrets {
            assert!(!response.text().contains(secret));
        }
    }
}

#[test]
fn the_cli_validates_and_adds_credentials_without_printing_them() {
    let rig = Rig::start();
    let dir = rig.server.dir.clone();
    let login = oauth_login("cli", "cli@example.com", 86_400);
    let files = TempDir::new("cred-files");
    let write = |name: &str, text: &str| {
        let path = files.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    };
    let good = write(
        "auth.json",
        &serde_json::to_string_pretty(&login.auth_json).unwrap(),
    );
    let not_json = write("not-json.json", "sk-test-cli-key-789\n");
    let mut no_tokens = login.auth_json.clone();
    no_tokens.as_object_mut().unwrap().remove("tokens");
    let no_tokens = write("no-tokens.json", &no_tokens.to_string());
    let key = write("key.txt", "sk-test-cli-key-789\n");
    let secrets = [
        login.access_token.as_str(),
        login.refresh_token.as_str(),
        login.id_token.as_str(),
        "sk-test-cli-key-789",
    ];
    let add = |id: &str, auth_type: &str, file: &str| {
        let (code, out, err) = support::run_cli(
            &dir,
            &[
                "account",
                "add",
                "--id",
                id,
                "--provider",
                "codex",
                "--auth-type",
                auth_type,
                "--label",
                &format!("{id} label"),
                "--credential-file",
                file,
            ],
            &[],
        );
        for secret in secrets {
            assert!(
                !out.contains(secret) && !err.contains(secret),
                "codara account add printed a credential:\n{out}{err}"
            );
        }
        (code, format!("{out}{err}"))
    };

    let (code, output) = add("cli-oauth", "OAUTH_SESSION", &good);
    assert_eq!(code, 0, "{output}");
    assert!(output.contains("Added account cli-oauth"), "{output}");
    assert!(
        output.contains("CLI-primary"),
        "the first account: {output}"
    );
    let (code, output) = add("cli-key", "API_KEY", &key);
    assert_eq!(code, 0, "{output}");
    assert!(output.contains("API_KEY"), "{output}");

    for (id, auth_type, file, fragment) in [
        ("cli-bad-1", "OAUTH_SESSION", not_json.as_str(), "not JSON"),
        (
            "cli-bad-2",
            "OAUTH_SESSION",
            no_tokens.as_str(),
            "missing tokens",
        ),
        ("cli-bad-3", "API_KEY", good.as_str(), "looks like JSON"),
        ("cli-bad-4", "PASSWORD", key.as_str(), "auth_type"),
    ] {
        let (code, output) = add(id, auth_type, file);
        assert_ne!(code, 0, "{id}: {output}");
        assert!(
            output.contains(fragment),
            "{id}: {output:?} lacks {fragment:?}"
        );
    }
    let missing = files.path().join("missing.json").display().to_string();
    let (code, output) = add("cli-bad-5", "API_KEY", &missing);
    assert_ne!(code, 0, "{output}");
    assert!(output.contains("missing.json"), "{output}");

    // The running server sees what the CLI added, without the credentials.
    let text = rig.accounts_text();
    let list: Value = serde_json::from_str(&text).unwrap();
    let mut ids: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap())
        .collect();
    ids.sort();
    assert_eq!(ids, ["cli-key", "cli-oauth"]);
    assert_eq!(rig.account("cli-oauth")["label"], "cli-oauth label");
    for secret in secrets {
        assert!(!text.contains(secret), "GET /accounts carries a credential");
    }

    // list, primary, remove.
    let (code, out, err) = support::run_cli(&dir, &["account", "list"], &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("cli-oauth") && out.contains("cli-key"),
        "{out}"
    );
    for secret in secrets {
        assert!(!out.contains(secret), "account list printed a credential");
    }
    let (code, out, err) = support::run_cli(&dir, &["account", "primary", "cli-key"], &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(rig.account("cli-key")["cli_primary"], true);
    assert_eq!(rig.account("cli-oauth")["cli_primary"], false);
    let (code, out, err) = support::run_cli(&dir, &["account", "remove", "cli-oauth"], &[]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = support::run_cli(&dir, &["account", "remove", "cli-oauth"], &[]);
    assert_ne!(code, 0, "removing twice: {out}{err}");
    assert!(!rig.accounts_text().contains("cli-oauth"));
    assert_eq!(rig.audit("account.added", "cli-key").len(), 1);
    assert_eq!(rig.audit("account.removed", "cli-oauth").len(), 1);
}

// ---------------------------------------------------------------------------------------------
// Turns across accounts

#[test]
fn a_rate_limited_account_cools_down_and_the_turn_retries_on_another() {
    let rig = Rig::start();
    let a1 = rig.add_ok("a1", "API_KEY", json!("sk-test-a1"));
    assert_eq!(a1["cli_primary"], true, "{a1}");
    rig.add_ok("a2", "API_KEY", json!("sk-test-a2"));
    rig.mock.reject(
        "sk-test-a1",
        429,
        "Rate limit reached for requests. Please try again in 20 minutes.",
    );

    let started = now_ms();
    let response = rig.chat_ok(Some("rl"), &[user("hello through the pool")]);
    assert!(reply(&response).contains("MOCK_REPLY"), "{response}");
    // a1 was tried first (CLI-primary), then a2 served the turn.
    let bearers = rig.model_bearers();
    assert_eq!(
        bearers.first().map(String::as_str),
        Some("sk-test-a1"),
        "{bearers:?}"
    );
    assert_eq!(
        bearers.last().map(String::as_str),
        Some("sk-test-a2"),
        "{bearers:?}"
    );

    let a1 = rig.account("a1");
    assert_eq!(a1["status"], "cooldown", "{a1}");
    assert_eq!(a1["usable"], false, "{a1}");
    let until = parse_time(
        a1["cooldown_until"]
            .as_str()
            .unwrap_or_else(|| panic!("no cooldown_until: {a1}")),
    );
    assert!(until > now_ms(), "cooldown_until is in the future: {a1}");
    // codex reports a plain 429 as "exceeded retry limit, last status: 429" without the body's
    // "try again in 20 minutes", so this is the first backoff step (1 minute), not the reset.
    assert!(
        (started + 55_000..=now_ms() + 20 * 60_000 + 5_000).contains(&until),
        "cooldown_until {} is neither the 1-minute backoff nor the reported reset: {a1}",
        a1["cooldown_until"]
    );
    assert!(
        a1["last_error"].as_str().is_some_and(|e| !e.is_empty()),
        "{a1}"
    );
    assert_eq!(rig.audit("account.cooldown", "a1").len(), 1);
    let a2 = rig.account("a2");
    assert_eq!(a2["status"], "ready", "{a2}");
    assert!(a2["last_used_at"].is_string(), "{a2}");

    let session_id = response["session_id"].as_str().unwrap().to_string();
    let session = rig.session(&session_id);
    assert_eq!(session["account_id"], "a2", "{session}");
    assert_eq!(rig.turn_accounts(&session_id), [Some("a2".to_string())]);
    if let Some(account) = session["turns"][0].get("account_id") {
        assert_eq!(account, "a2", "{session}");
    }

    // The next turn of another session goes straight to a2 while a1 cools down.
    let before = rig.model_bearers().len();
    rig.chat_ok(Some("rl-2"), &[user("second conversation")]);
    let later: Vec<String> = rig.model_bearers().into_iter().skip(before).collect();
    assert!(
        !later.is_empty() && later.iter().all(|b| b == "sk-test-a2"),
        "{later:?}"
    );

    // Once a2 is rate limited too, the turn fails (no third account) ...
    rig.mock.reject(
        "sk-test-a2",
        429,
        "Rate limit reached for requests. Please try again in 30 minutes.",
    );
    let failed = rig.chat(Some("rl-3"), &[user("third conversation")]);
    assert_ne!(failed.status, 200, "{}", failed.text());
    assert_eq!(rig.account("a2")["status"], "cooldown");
    // ... and the next one is refused up front: no account is ready.
    let refused = rig.chat(Some("rl-4"), &[user("fourth conversation")]);
    assert_eq!(refused.status, 503, "{}", refused.text());
    assert!(
        refused.text().contains("no_account_ready"),
        "{}",
        refused.text()
    );
}

#[test]
fn when_every_account_is_rate_limited_each_one_cools_down() {
    let rig = Rig::start();
    rig.add_ok("a1", "API_KEY", json!("sk-test-all-a1"));
    rig.add_ok("a2", "API_KEY", json!("sk-test-all-a2"));
    for key in ["sk-test-all-a1", "sk-test-all-a2"] {
        rig.mock.reject(
            key,
            429,
            "Rate limit reached for requests. Please try again later.",
        );
    }
    // a1 fails, the turn is retried once on a2, which fails the same way.
    let failed = rig.chat(Some("all"), &[user("hello")]);
    assert_ne!(failed.status, 200, "{}", failed.text());
    let bearers = rig.model_bearers();
    assert_eq!(
        bearers.first().map(String::as_str),
        Some("sk-test-all-a1"),
        "{bearers:?}"
    );
    assert_eq!(
        bearers.last().map(String::as_str),
        Some("sk-test-all-a2"),
        "the turn was retried on a2: {bearers:?}"
    );
    let a1 = rig.account("a1");
    assert_eq!(a1["status"], "cooldown", "{a1}");
    // The retry's rate limit counts against a2 just like the first one counted against a1.
    let a2 = rig.account("a2");
    assert_eq!(
        a2["status"], "cooldown",
        "a2 was rate limited on the retry but is not cooling down: {a2}"
    );
    assert!(a2["cooldown_until"].is_string(), "{a2}");
    let refused = rig.chat(Some("all-2"), &[user("hello again")]);
    assert_eq!(refused.status, 503, "{}", refused.text());
    assert!(
        refused.text().contains("no_account_ready"),
        "{}",
        refused.text()
    );
}

#[test]
fn a_session_whose_account_was_removed_continues_on_another_with_its_transcript() {
    let rig = Rig::start();
    rig.add_ok("a1", "API_KEY", json!("sk-test-rm-a1"));
    rig.add_ok("a2", "API_KEY", json!("sk-test-rm-a2"));
    let first = rig.chat_ok(Some("orphan"), &[user("first question gamma-rm")]);
    let session_id = first["session_id"].as_str().unwrap().to_string();
    assert_eq!(rig.session(&session_id)["account_id"], "a1");
    let removed = rig.call("DELETE", "/management/v1/accounts/a1", None);
    assert_eq!(removed.status, 200, "{}", removed.text());
    assert!(!rig.server.data_dir().join("homes/codex/a1").exists());

    let before = rig.mock.requests().len();
    let second = rig.chat_ok(
        Some("orphan"),
        &[
            user("first question gamma-rm"),
            assistant(&reply(&first)),
            user("second question delta-rm"),
        ],
    );
    assert_eq!(second["session_id"], first["session_id"]);
    assert_eq!(rig.session(&session_id)["account_id"], "a2");
    // The CLI session went with a1's home, so the earlier turn reaches the model through the
    // transcript (a fresh CLI session), never lost.
    let later: Vec<_> = rig.mock.requests().into_iter().skip(before).collect();
    assert!(
        later
            .iter()
            .filter(|r| r.path.ends_with("/responses"))
            .any(|r| r.body_text().contains("first question gamma-rm")
                && r.body_text().contains("second question delta-rm")),
        "the model did not see the earlier turn"
    );
}

#[test]
fn a_usage_limit_with_a_reported_reset_cools_down_until_that_reset() {
    let rig = Rig::start();
    rig.add_ok("a1", "API_KEY", json!("sk-test-limit-a1"));
    rig.add_ok("a2", "API_KEY", json!("sk-test-limit-a2"));
    // ChatGPT's usage-limit error: codex turns it into "You've hit your usage limit … Try again
    // at <time>", printed in the CLI's time zone (UTC, set by the gateway).
    rig.mock.reject_with(json!({
        "bearer": "sk-test-limit-a1",
        "status": 429,
        "message": "The usage limit has been reached",
        "type": "usage_limit_reached",
        "plan_type": "plus",
        "resets_in_seconds": 7_200,
        "resets_at": now_ms() / 1000 + 7_200
    }));
    let started = now_ms();
    let response = rig.chat_ok(Some("limit"), &[user("hello")]);
    let session_id = response["session_id"].as_str().unwrap();
    assert_eq!(rig.session(session_id)["account_id"], "a2");
    let a1 = rig.account("a1");
    assert_eq!(a1["status"], "cooldown", "{a1}");
    assert!(
        a1["last_error"]
            .as_str()
            .is_some_and(|e| e.to_lowercase().contains("usage limit")),
        "{a1}"
    );
    let until = parse_time(a1["cooldown_until"].as_str().unwrap());
    assert!(
        (started + 7_200_000 - 120_000..=now_ms() + 7_200_000 + 120_000).contains(&until),
        "cooldown_until {} is not the reported reset two hours ahead: {a1}",
        a1["cooldown_until"]
    );
}

#[test]
fn an_account_refused_by_the_provider_needs_reauth_and_the_turn_retries() {
    let rig = Rig::start();
    rig.add_ok("a1", "API_KEY", json!("sk-test-revoked-a1"));
    rig.add_ok("a2", "API_KEY", json!("sk-test-good-a2"));
    rig.mock.reject(
        "sk-test-revoked-a1",
        401,
        "Incorrect API key provided. You can find your API key at https://platform.openai.com/account/api-keys.",
    );
    let response = rig.chat_ok(Some("auth"), &[user("hello")]);
    let session_id = response["session_id"].as_str().unwrap();
    assert_eq!(rig.session(session_id)["account_id"], "a2");
    let a1 = rig.account("a1");
    assert_eq!(
        a1["status"],
        "needs_reauth",
        "{a1}\n{}",
        rig.server.stderr()
    );
    assert_eq!(a1["usable"], false, "{a1}");
    assert_eq!(a1["cooldown_until"], Value::Null, "{a1}");
    assert_eq!(rig.audit("account.needs_reauth", "a1").len(), 1);

    // Recovery puts it back in rotation: as CLI-primary it takes the next new session.
    rig.mock.reject("sk-test-revoked-a1", 0, "");
    let recovered = rig.call("POST", "/management/v1/accounts/a1/recover", None);
    assert_eq!(recovered.status, 200, "{}", recovered.text());
    assert_eq!(recovered.json()["data"]["status"], "ready");
    assert_eq!(recovered.json()["data"]["last_error"], Value::Null);
    let response = rig.chat_ok(Some("auth-2"), &[user("hello again")]);
    let session_id = response["session_id"].as_str().unwrap();
    assert_eq!(rig.session(session_id)["account_id"], "a1");
    assert_eq!(
        rig.model_bearers().last().map(String::as_str),
        Some("sk-test-revoked-a1")
    );
}

#[test]
fn a_session_moves_with_its_cli_state_when_its_account_is_disabled() {
    let rig = Rig::start();
    rig.add_ok("a1", "API_KEY", json!("sk-test-mig-a1"));
    rig.add_ok("a2", "API_KEY", json!("sk-test-mig-a2"));
    let first = rig.chat_ok(Some("moving"), &[user("first question alpha-mig")]);
    let first_reply = reply(&first);
    let session_id = first["session_id"].as_str().unwrap().to_string();
    assert_eq!(rig.session(&session_id)["account_id"], "a1");
    let thread = rig.session(&session_id)["cli_session_id"]
        .as_str()
        .unwrap()
        .to_string();
    let data = rig.server.data_dir();
    // The operator's turns run in the operator's own home on the account.
    assert!(data.join("homes/codex/a1/operator/sessions").is_dir());

    let disabled = rig.call(
        "PATCH",
        "/management/v1/accounts/a1",
        Some(&json!({"enabled": false})),
    );
    assert_eq!(disabled.status, 200, "{}", disabled.text());
    assert_eq!(disabled.json()["data"]["usable"], false);

    let before = rig.mock.requests().len();
    let second = rig.chat_ok(
        Some("moving"),
        &[
            user("first question alpha-mig"),
            assistant(&first_reply),
            user("second question beta-mig"),
        ],
    );
    assert_eq!(second["session_id"], first["session_id"]);
    assert_eq!(second["resumed"], true, "{second}");
    let session = rig.session(&session_id);
    assert_eq!(session["account_id"], "a2", "{session}");
    assert_eq!(
        session["cli_session_id"],
        thread.as_str(),
        "the same CLI session"
    );
    assert_eq!(session["turns"][1]["resumed"], true, "{session}");
    assert_eq!(session["turns"][1]["prompt"], "second question beta-mig");
    assert_eq!(
        rig.turn_accounts(&session_id),
        [Some("a1".to_string()), Some("a2".to_string())]
    );
    // The model saw the earlier turn, through a2's key.
    let later: Vec<_> = rig.mock.requests().into_iter().skip(before).collect();
    let resumed: Vec<_> = later
        .iter()
        .filter(|r| r.path.ends_with("/responses"))
        .collect();
    assert!(!resumed.is_empty());
    assert!(
        resumed
            .iter()
            .any(|r| r.body_text().contains("first question alpha-mig")
                && r.body_text().contains("second question beta-mig")),
        "the resumed request lacks the earlier turn"
    );
    assert!(resumed
        .iter()
        .all(|r| r.header("authorization") == Some("Bearer sk-test-mig-a2")));
    // The CLI state followed the session, and the selection says so.
    assert!(data.join("homes/codex/a2/operator/sessions").is_dir());
    let selected = rig.audit("account.selected", "a2");
    assert!(
        selected
            .iter()
            .any(|e| e.to_string().contains("\"migrated_from\":\"a1\"")),
        "{selected:?}"
    );
}

#[test]
fn an_account_whose_cooldown_passed_is_selected_again() {
    let rig = Rig::start();
    rig.add_ok("a1", "API_KEY", json!("sk-test-cool-a1"));
    rig.add_ok("a2", "API_KEY", json!("sk-test-cool-a2"));
    let set_cooldown = |until: i64| {
        let changed = rig
            .db()
            .execute(
                "UPDATE accounts SET status = 'cooldown', cooldown_until = ?1, \
                 consecutive_failures = 1 WHERE id = 'a1'",
                [until],
            )
            .unwrap();
        assert_eq!(changed, 1);
    };
    let account_of = |session: &str| {
        let response = rig.chat_ok(Some(session), &[user(&format!("hello {session}"))]);
        let id = response["session_id"].as_str().unwrap().to_string();
        rig.session(&id)["account_id"].as_str().unwrap().to_string()
    };

    // While cooling down, the CLI-primary a1 is passed over.
    set_cooldown(now_ms() + 10 * 60_000);
    let a1 = rig.account("a1");
    assert_eq!(a1["status"], "cooldown", "{a1}");
    assert_eq!(a1["usable"], false, "{a1}");
    assert_eq!(account_of("cool-1"), "a2");

    // Once the cooldown lies in the past, a1 is ready by itself and chosen again.
    set_cooldown(now_ms() - 1_000);
    let a1 = rig.account("a1");
    assert_eq!(a1["status"], "ready", "{a1}");
    assert_eq!(a1["usable"], true, "{a1}");
    assert_eq!(a1["cooldown_until"], Value::Null, "{a1}");
    assert_eq!(account_of("cool-2"), "a1");
    assert_eq!(
        rig.model_bearers().last().map(String::as_str),
        Some("sk-test-cool-a1")
    );
    // The success cleared the stored cooldown.
    let (status, until, failures): (String, Option<i64>, i64) = rig
        .db()
        .query_row(
            "SELECT status, cooldown_until, consecutive_failures FROM accounts WHERE id = 'a1'",
            [],
            |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
        )
        .unwrap();
    assert_eq!((status.as_str(), until, failures), ("ready", None, 0));
}

// ---------------------------------------------------------------------------------------------
// Secrets on disk, the vault key, the host's codex home

/// Every regular file under `dir` (symlinks not followed).
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(next) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&next) else {
            continue;
        };
        for entry in entries.flatten() {
            let kind = entry.file_type().unwrap();
            if kind.is_dir() {
                stack.push(entry.path());
            } else if kind.is_file() {
                out.push(entry.path());
            }
        }
    }
    out.sort();
    out
}

/// `(file, secret)` for every secret found in a file under `dir` (the workspaces included: the
/// agent copies what it sees there).
fn plaintext_leaks(dir: &Path, secrets: &[&str]) -> Vec<(PathBuf, String)> {
    let mut leaks = Vec::new();
    for file in files_under(dir) {
        let Ok(bytes) = std::fs::read(&file) else {
            continue;
        };
        for secret in secrets {
            if bytes.windows(secret.len()).any(|w| w == secret.as_bytes()) {
                leaks.push((file.clone(), secret.to_string()));
            }
        }
    }
    leaks
}

#[test]
fn credentials_are_on_disk_only_in_the_per_account_auth_json() {
    let rig = Rig::start();
    let keys = ["sk-test-disk-a1-q8Zr", "sk-test-disk-a2-W3xk"];
    rig.add_ok("d1", "API_KEY", json!(keys[0]));
    rig.add_ok("d2", "API_KEY", json!(keys[1]));
    let login = oauth_login("disk", "disk@example.com", 60);
    rig.add_ok("d3", "OAUTH_SESSION", login.auth_json.clone());
    let new_access = jwt(json!({"exp": now_ms() / 1000 + 3_600, "jti": "access-disk-renewed"}));
    let new_refresh = "rt-disk-renewed-secret-value";
    rig.fake.set_token(
        &login.refresh_token,
        200,
        json!({"access_token": new_access, "refresh_token": new_refresh, "expires_in": 3_600}),
    );
    rig.fake.set_usage(
        &new_access,
        Usage::Json(usage_body((1.0, 3_600), (1.0, 86_400))),
    );

    // Turns on both API-key accounts (d1 rate limited → retried on d2), a token refresh.
    rig.mock
        .reject(keys[0], 429, "Rate limit reached, try again in 5 minutes");
    let first = rig.chat_ok(Some("disk"), &[user("first disk turn")]);
    rig.chat_ok(
        Some("disk"),
        &[
            user("first disk turn"),
            assistant(&reply(&first)),
            user("second disk turn"),
        ],
    );
    rig.mock.reject(keys[0], 0, "");
    rig.call("POST", "/management/v1/accounts/d1/recover", None);
    rig.chat_ok(Some("disk-2"), &[user("a turn on d1")]);
    assert_eq!(rig.refresh("d3")["ok"], true);
    assert!(rig.model_bearers().iter().any(|b| b == keys[0]));
    assert!(rig.model_bearers().iter().any(|b| b == keys[1]));

    // During a run the credential is in the run's home, private, and only that account's; the
    // agent itself observes it (an agent using an account can use that account).
    let probe = "stat -c %a \"$CODEX_HOME/auth.json\" > probe.txt; \
                 stat -c %a \"$CODEX_HOME\" >> probe.txt; grep -c sk-test-disk \"$CODEX_HOME/auth.json\" >> probe.txt";
    let directive = json!({"steps": [{"shell": probe}], "final": "probed"});
    rig.chat_ok(None, &[user(&format!("MOCK:{directive}"))]);
    let workspace = rig.server.dir.join("workspaces/operator/default");
    let probed = std::fs::read_to_string(workspace.join("probe.txt")).unwrap();
    assert_eq!(
        probed, "600\n700\n1\n",
        "mode of auth.json, of its home, matching keys"
    );
    std::fs::remove_file(workspace.join("probe.txt")).unwrap();
    // Once its warm process is retired it is gone: the vault holds the only copy.
    rig.server.wait_for_no_warm_processes(&rig.token);
    let homes = rig.server.data_dir().join("homes/codex");
    for id in ["d1", "d2"] {
        let home = homes.join(id).join("operator");
        assert!(home.is_dir(), "{id}: the run's home");
        assert!(
            !home.join("auth.json").exists(),
            "{id}: the credential was left on disk"
        );
        let mode = std::fs::metadata(&home).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "{id} home");
    }

    let secrets = [
        keys[0],
        keys[1],
        login.access_token.as_str(),
        login.refresh_token.as_str(),
        login.id_token.as_str(),
        new_access.as_str(),
        new_refresh,
    ];
    let leaks = plaintext_leaks(&rig.server.dir, &secrets);
    assert!(
        leaks.is_empty(),
        "plaintext credentials on disk: {leaks:#?}"
    );
    // Checkpointed into codara.db after a clean stop: still nothing.
    let (dir, _keep) = rig.server.stop_keep_dir();
    let leaks = plaintext_leaks(&dir, &secrets);
    assert!(
        leaks.is_empty(),
        "plaintext credentials on disk after stop: {leaks:#?}"
    );
}

#[test]
fn vault_rotate_key_reencrypts_and_refuses_a_running_server() {
    let mut rig = Rig::start();
    rig.add_ok("k1", "API_KEY", json!("sk-test-rotate-k1"));
    let login = oauth_login("rotate", "rotate@example.com", 86_400);
    rig.add_ok("o1", "OAUTH_SESSION", login.auth_json.clone());
    rig.fake.set_usage(
        &login.access_token,
        Usage::Json(usage_body((30.0, 3_600), (3.0, 86_400))),
    );
    rig.chat_ok(Some("rot"), &[user("before rotation")]);
    assert_eq!(rig.refresh("o1")["ok"], true);

    // Refused while the server runs (it holds the key in memory).
    let dir = rig.server.dir.clone();
    let key_file = rig.server.data_dir().join("master.key");
    let key_before = std::fs::read(&key_file).unwrap();
    let (code, out, err) = support::run_cli(&dir, &["vault", "rotate-key"], &[]);
    assert_ne!(code, 0, "{out}{err}");
    assert!(err.contains("already running"), "{out}{err}");
    assert_eq!(std::fs::read(&key_file).unwrap(), key_before);

    // Stopped: rotate, the key file changes and stays private.
    let (dir, _keep) = rig.server.stop_keep_dir();
    let (code, out, err) = support::run_cli(&dir, &["vault", "rotate-key"], &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("Re-encrypted 2 credential(s)"), "{out}");
    let key_after = std::fs::read(&key_file).unwrap();
    assert_ne!(key_after, key_before, "master.key changed");
    let mode = std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert!(!dir.join("data/master.key.new").exists());
    for secret in [
        "sk-test-rotate-k1",
        login.access_token.as_str(),
        String::from_utf8_lossy(&key_after).trim(),
        String::from_utf8_lossy(&key_before).trim(),
    ] {
        assert!(!out.contains(secret) && !err.contains(secret));
    }

    // Restarted on the same dir: the accounts still work with the new key.
    rig.server = support::server().dir(&dir).start();
    rig.token = rig.server.login();
    let before = rig.model_bearers().len();
    rig.chat_ok(Some("rot-2"), &[user("after rotation")]);
    let later: Vec<String> = rig.model_bearers().into_iter().skip(before).collect();
    assert!(
        !later.is_empty() && later.iter().all(|b| b == "sk-test-rotate-k1"),
        "{later:?}"
    );
    let usage_before = rig.fake.usage_requests().len();
    assert_eq!(rig.refresh("o1")["ok"], true);
    let usage = rig.fake.usage_requests();
    assert_eq!(
        usage[usage_before].bearer.as_deref(),
        Some(login.access_token.as_str())
    );
    let rotated = rig.call("GET", "/management/v1/audit?action=vault.key_rotated", None);
    assert_eq!(rotated.json()["data"].as_array().unwrap().len(), 1);
}

/// Every file under `dir` with its bytes.
fn tree(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    files_under(dir)
        .into_iter()
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap();
            (p.strip_prefix(dir).unwrap().to_path_buf(), bytes)
        })
        .collect()
}

#[test]
fn the_host_codex_home_is_never_touched() {
    let home = TempDir::new("host-home");
    let codex = home.path().join(".codex");
    std::fs::create_dir_all(&codex).unwrap();
    let host_auth =
        "{\n  \"OPENAI_API_KEY\": \"sk-host-own-key-do-not-touch\",\n  \"tokens\": null\n}\n";
    std::fs::write(codex.join("auth.json"), host_auth).unwrap();
    std::fs::write(codex.join("config.toml"), "model = \"host-model\"\n").unwrap();
    let before = tree(home.path());

    // The mock's own key variable, so turns succeed with or without pool accounts.
    let home_path = home.path().display().to_string();
    let rig = Rig::start_with(
        |mock, fake| {
            format!(
                "{}\n[workspace]\nlock_timeout_seconds = 30\n\n{}",
                mock.codara_toml(&clis_bin()).replace(
                    "[providers.codex]\n",
                    "[providers.codex]\nwarm_idle_seconds = 1\n"
                ),
                fake.accounts_toml()
            )
        },
        |b| b.env("HOME", Some(&home_path)),
    );
    // No account: the provider's default isolated home, per user.
    rig.chat_ok(Some("host-1"), &[user("a turn without accounts")]);
    assert!(rig
        .server
        .data_dir()
        .join("homes/codex/default/operator")
        .is_dir());
    // Pool accounts: their own homes.
    rig.add_ok("h1", "API_KEY", json!("sk-test-host-h1"));
    let login = oauth_login("host", "host@example.com", 86_400);
    rig.add_ok("h2", "OAUTH_SESSION", login.auth_json.clone());
    rig.chat_ok(Some("host-2"), &[user("a turn on a pool account")]);
    // The run used h1's home, and left no credential behind once its process was retired.
    rig.server.wait_for_no_warm_processes(&rig.token);
    let h1 = rig.server.data_dir().join("homes/codex/h1/operator");
    assert!(h1.is_dir());
    assert!(!h1.join("auth.json").exists());
    rig.fake.set_usage(
        &login.access_token,
        Usage::Json(usage_body((1.0, 3_600), (1.0, 86_400))),
    );
    assert_eq!(rig.refresh("h2")["ok"], true);

    let after = tree(home.path());
    assert_eq!(
        after.keys().collect::<Vec<_>>(),
        before.keys().collect::<Vec<_>>(),
        "files appeared or vanished under the host HOME"
    );
    assert_eq!(
        after.get(Path::new(".codex/auth.json")).map(Vec::as_slice),
        Some(host_auth.as_bytes()),
        "the host's ~/.codex/auth.json changed"
    );
    assert_eq!(after, before, "a file under the host HOME changed");
    // The host key never reached the model either.
    assert!(rig
        .mock
        .requests()
        .iter()
        .all(|r| !format!("{:?}", r.headers).contains("sk-host-own-key-do-not-touch")));
}
