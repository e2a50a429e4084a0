//! The embedded dashboard: the HTML shell with history fallback, every asset under its versioned
//! URL with its content type, cache header and the Content-Security-Policy, 404 for missing
//! files, path traversal refused on raw request lines, a static check that the app needs nothing
//! the policy forbids, and the operator's flows in a real browser (`dashboard.cjs`: playwright-core
//! driving Debian's chromium against the real binary, the mock model and a real CLI).

// Spawning node (the browser driver) and reading its output is this test's job.
#![allow(clippy::disallowed_methods)]

use crate::support::fake_chatgpt::{usage_body, FakeChatgpt, Usage};
use crate::support::mock_model::{clis_bin, MockModel};
use crate::support::{self, HttpResponse, SECRET};
use serde_json::json;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Every file under `ui-dist/assets`, relative to it.
fn asset_files() -> Vec<String> {
    fn walk(dir: &Path, base: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, base, out);
            } else {
                out.push(path.strip_prefix(base).unwrap().display().to_string());
            }
        }
    }
    let base = root().join("ui-dist/assets");
    let mut out = Vec::new();
    walk(&base, &base, &mut out);
    out.sort();
    out
}

/// The checks every dashboard response passes: the policy and the other security headers.
fn assert_secured(path: &str, response: &HttpResponse) {
    let csp = response
        .header("Content-Security-Policy")
        .unwrap_or_else(|| panic!("{path}: no Content-Security-Policy"));
    for directive in [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "connect-src 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
    ] {
        assert!(csp.contains(directive), "{path}: {csp} lacks {directive}");
    }
    for loose in ["unsafe-inline", "unsafe-eval", "http:", "https:", "*"] {
        assert!(!csp.contains(loose), "{path}: {csp} allows {loose}");
    }
    assert_eq!(
        response.header("X-Content-Type-Options"),
        Some("nosniff"),
        "{path}"
    );
    assert_eq!(response.header("X-Frame-Options"), Some("DENY"), "{path}");
}

/// The versioned asset directory the shell names: `/dashboard/assets/<16 hex>`.
fn asset_dir(shell: &str) -> String {
    let start = shell
        .find("/dashboard/assets/")
        .expect("the shell names its assets");
    let dir = &shell[start..start + "/dashboard/assets/".len() + 16];
    let version = dir.rsplit('/').next().unwrap();
    assert!(
        version.bytes().all(|b| b.is_ascii_hexdigit()),
        "a content hash: {dir}"
    );
    dir.to_string()
}

#[test]
fn shell_is_served_for_the_app_routes() {
    let mut server = support::server().start();
    for path in [
        "/dashboard",
        "/dashboard/",
        "/dashboard/workspaces/abc",
        "/dashboard/sessions/ses_1?x=1",
        "/dashboard/observability/traces/t1",
        "/dashboard/index.html",
    ] {
        let response = server.get(path, None);
        assert_eq!(response.status, 200, "{path}: {}", response.text());
        let content_type = response.header("Content-Type").unwrap_or("");
        assert!(
            content_type.starts_with("text/html"),
            "{path}: {content_type}"
        );
        assert_eq!(response.header("Cache-Control"), Some("no-cache"), "{path}");
        assert_secured(path, &response);
        let html = response.text();
        assert!(html.contains("data-codara-shell"), "{path}");
        assert!(!html.contains("__CODARA_"), "{path}: a placeholder left");
        assert!(html.contains("<meta name=\"codara-version\" content=\""));
    }
    // HEAD gets the headers without the body.
    let head = server.request("HEAD", "/dashboard/users", &[], None);
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    assert_secured("HEAD /dashboard/users", &head);
    assert_eq!(server.signal_and_wait("TERM"), Some(0));
}

/// Every file of `ui-dist/assets` is served under the shell's versioned directory with its
/// content type, a year-long immutable cache and the policy; unversioned or stale URLs get the
/// same bytes but `no-cache`.
#[test]
fn every_asset_has_its_type_cache_and_csp() {
    let mut server = support::server().start();
    let shell = server.get("/dashboard", None).text();
    let dir = asset_dir(&shell);
    let files = asset_files();
    assert!(files.len() >= 10, "{files:?}");
    for file in &files {
        let expected_type = match file.rsplit('.').next().unwrap() {
            "js" => "text/javascript",
            "css" => "text/css",
            "svg" => "image/svg+xml",
            other => panic!("{file}: add a content type check for .{other}"),
        };
        let bytes = std::fs::read(root().join("ui-dist/assets").join(file)).unwrap();
        let path = format!("{dir}/{file}");
        let response = server.get(&path, None);
        assert_eq!(response.status, 200, "{path}: {}", response.text());
        let content_type = response.header("Content-Type").unwrap_or("");
        assert!(
            content_type.starts_with(expected_type),
            "{path}: {content_type}"
        );
        assert_eq!(
            response.header("Cache-Control"),
            Some("public, max-age=31536000, immutable"),
            "{path}"
        );
        assert_secured(&path, &response);
        assert!(
            response.body == bytes,
            "{path}: not the file's bytes ({} served, {} on disk)",
            response.body.len(),
            bytes.len()
        );

        for other in [
            format!("/dashboard/assets/{file}"),
            format!("/dashboard/assets/0000000000000000/{file}"),
        ] {
            let response = server.get(&other, None);
            assert_eq!(response.status, 200, "{other}");
            assert_eq!(
                response.header("Cache-Control"),
                Some("no-cache"),
                "{other}"
            );
            assert!(response.body == bytes, "{other}: not the file's bytes");
        }
    }
    // The shell names the entry module, the stylesheet and the icon under that directory.
    for file in ["app.js", "app.css", "icon.svg"] {
        assert!(shell.contains(&format!("{dir}/{file}")), "{file}: {shell}");
    }
    assert_eq!(server.signal_and_wait("TERM"), Some(0));
}

/// The app needs nothing the policy forbids and loads nothing from elsewhere: no inline script
/// or style, no `on…=` attributes, no `eval`, no HTML strings, no third-party URL.
#[test]
fn the_app_is_compatible_with_its_policy() {
    let mut files = vec!["index.html".to_string()];
    files.extend(asset_files().into_iter().map(|f| format!("assets/{f}")));
    let mut total = 0;
    for file in &files {
        let text = std::fs::read_to_string(root().join("ui-dist").join(file)).unwrap();
        total += text.len();
        // An SVG names its XML namespace; that is not a request.
        let text = text.replace("xmlns=\"http://www.w3.org/2000/svg\"", "");
        for banned in [
            "style=",
            "setAttribute('style'",
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
            "new Function",
            "javascript:",
            "http://",
            "@import",
        ] {
            assert!(!text.contains(banned), "{file} uses {banned}");
        }
        if file.ends_with(".html") {
            for tag in text.split("<script").skip(1) {
                let head = &tag[..tag.find('>').unwrap()];
                assert!(head.contains("src="), "{file}: an inline script");
                assert!(
                    !tag[tag.find('>').unwrap() + 1..].starts_with(|c: char| c != '<'),
                    "{file}: a script with a body"
                );
            }
            assert!(!text.contains("<style"), "{file}: an inline stylesheet");
            let handler = text.match_indices(" on").any(|(at, _)| {
                let name: String = text[at + 3..]
                    .chars()
                    .take_while(char::is_ascii_lowercase)
                    .collect();
                !name.is_empty() && text[at + 3 + name.len()..].starts_with('=')
            });
            assert!(!handler, "{file}: an event handler attribute");
        }
        // The only https URL anywhere is a release link the API hands over at run time.
        assert!(!text.contains("https://"), "{file} names a third-party URL");
    }
    // Small: the whole app, hand-written, stays well under 200 KB.
    assert!(total < 200_000, "ui-dist is {total} bytes");
}

#[test]
fn missing_files_are_404_not_the_shell() {
    let mut server = support::server().start();
    for path in [
        "/dashboard/assets/missing.js",
        "/dashboard/assets/0123456789abcdef/missing.js",
        "/dashboard/nope.png",
        "/dashboard/favicon.ico",
    ] {
        let response = server.get(path, None);
        assert_eq!(response.status, 404, "{path}: {}", response.text());
        assert!(!response.text().contains("data-codara-shell"), "{path}");
        assert_eq!(response.json()["error"]["code"], "not_found", "{path}");
        assert_secured(path, &response);
    }
    assert_eq!(server.signal_and_wait("TERM"), Some(0));
}

#[test]
fn path_traversal_is_refused() {
    let mut server = support::server().start();
    for path in [
        "/dashboard/../../etc/passwd",
        "/dashboard/..%2f..%2fetc%2fpasswd",
        "/dashboard/%2e%2e/%2e%2e/etc/passwd",
        "/dashboard/assets/../../../../etc/passwd",
        "/dashboard/%2E%2E%2F%2E%2E%2Fetc%2Fpasswd",
    ] {
        // Written byte for byte: no client-side normalization of the request line.
        let mut stream = support::connect(server.addr);
        let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).unwrap();
        let response = support::read_one_response(&mut stream, Duration::from_secs(30))
            .unwrap_or_else(|| panic!("{path}: no response"));
        assert!(
            matches!(response.status, 400 | 404),
            "{path}: {} {}",
            response.status,
            response.text()
        );
        assert!(!response.text().contains("root:"), "{path}: leaked a file");
        assert!(
            !response.text().contains("data-codara-shell"),
            "{path}: served the shell"
        );
    }
    assert_eq!(server.get("/healthz", None).status, 200);
    assert_eq!(server.signal_and_wait("TERM"), Some(0));
}

/// Debian's chromium, which `make browser` (part of `make test`) installs when missing.
fn chromium() -> PathBuf {
    let path = PathBuf::from("/usr/bin/chromium");
    assert!(
        path.exists(),
        "{} is missing: run scripts/install-browser.sh (make browser; as root it installs \
         Debian's chromium)",
        path.display()
    );
    path
}

/// The pinned playwright-core that `make browser` installs into `.browser/`.
fn playwright_core() -> PathBuf {
    let path = root().join(".browser/node_modules/playwright-core");
    assert!(
        path.join("package.json").exists(),
        "{} is missing: run scripts/install-browser.sh (make browser)",
        path.display()
    );
    path
}

/// A JWT with these claims (unsigned: the gateway only reads the claims).
fn jwt(claims: serde_json::Value) -> String {
    let part = |bytes: &[u8]| codara::testing::base64_encode(bytes, codara::testing::Base64::Url);
    format!(
        "{}.{}.{}",
        part(br#"{"alg":"RS256","typ":"JWT"}"#),
        part(claims.to_string().as_bytes()),
        part(b"not-a-real-signature")
    )
}

/// A codex `auth.json` (an OAuth login of `oauth-dash@example.com`, valid for a day) and its
/// access token, which the fake usage endpoint answers.
fn oauth_login() -> (serde_json::Value, String) {
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 86_400;
    let claims = json!({"chatgpt_account_id": "chatgpt-acct-dash", "chatgpt_plan_type": "plus"});
    let id_token = jwt(
        json!({"email": "oauth-dash@example.com", "exp": exp, "https://api.openai.com/auth": claims}),
    );
    let access_token = jwt(json!({"exp": exp, "jti": "access-dash", "scp": ["openid"]}));
    let auth = json!({
        "OPENAI_API_KEY": null,
        "tokens": {
            "id_token": id_token,
            "access_token": access_token,
            "refresh_token": "rt-dash-secret-refresh-value",
            "account_id": "chatgpt-acct-dash"
        },
        "last_refresh": "2026-01-01T00:00:00Z"
    });
    (auth, access_token)
}

/// The operator's flows in a real browser against the real binary, the mock model and the real
/// codex CLI: sign in, a user and its key shown once, an account and the CLI-primary toggle, a
/// streaming Playground turn that writes a file and its diff, the session's diff and revert,
/// Observability (its unavailable state while the traces routes answer 404; the trace's
/// timeline when they exist), the audit filters, deep links reloaded, every page at 1280 and 375
/// px without sideways scrolling (a screenshot each under `target/dashboard-shots/`), no console
/// error, sign-out, and an expired token back at sign-in. Then what the browser did is checked
/// where it landed: the database and the workspace on disk.
#[test]
fn operator_flows_in_a_real_browser() {
    let (chromium, playwright) = (chromium(), playwright_core());
    let mock = MockModel::start();
    let fake = FakeChatgpt::start();
    let toml = format!(
        "{}\n{}\n[workspace]\nlock_timeout_seconds = 30\n",
        mock.codara_toml(&clis_bin()),
        fake.accounts_toml()
    );
    let server = support::server().toml(&toml).start();
    let shots = root().join("target/dashboard-shots");
    let _ = std::fs::remove_dir_all(&shots);
    std::fs::create_dir_all(&shots).unwrap();
    let home = support::TempDir::new("browser-home");
    // A codex login to upload, whose quota windows the fake usage endpoint reports.
    let (auth, access_token) = oauth_login();
    let auth_file = home.path().join("auth.json");
    std::fs::write(&auth_file, auth.to_string()).unwrap();
    fake.set_usage(
        &access_token,
        Usage::Json(usage_body((42.5, 3_600), (10.0, 86_400))),
    );

    let started = Instant::now();
    let mut child = Command::new("node")
        .arg(root().join("tests/it/dashboard.cjs"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", home.path())
        .env("CODARA_URL", format!("http://{}", server.addr))
        .env("CODARA_SECRET", SECRET)
        .env("CHROMIUM", &chromium)
        .env("PLAYWRIGHT_CORE", &playwright)
        .env("SHOTS", &shots)
        .env("AUTH_JSON", &auth_file)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("node runs (it is installed with the CLIs)");
    let mut stdin = child.stdin.take().unwrap();
    let stdout = child.stdout.take().unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let errors = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut BufReader::new(stderr), &mut text);
        text
    });

    // Follow the script: expire the operator's tokens when it asks; bounded in time.
    let deadline = started + Duration::from_secs(240);
    let mut lines = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left.max(Duration::from_millis(1))) {
            Ok(line) => {
                if line == "EXPIRE" {
                    let db = rusqlite::Connection::open(server.data_dir().join("codara.db"))
                        .expect("the database");
                    db.busy_timeout(Duration::from_secs(5)).unwrap();
                    let expired = db
                        .execute(
                            "UPDATE operator_tokens SET expires_at = 1 WHERE revoked_at IS NULL",
                            [],
                        )
                        .unwrap();
                    assert!(expired >= 1, "no live operator token to expire");
                    writeln!(stdin, "EXPIRED").unwrap();
                }
                lines.push(line);
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                let _ = child.kill();
                panic!(
                    "the browser test did not finish within 240 s:\n{}\nserver stderr:\n{}",
                    lines.join("\n"),
                    server.stderr()
                );
            }
        }
    }
    let status = child.wait().unwrap();
    let elapsed = started.elapsed();
    let errors = errors.join().unwrap_or_default();
    assert!(
        status.success(),
        "the browser test failed ({status}):\n{}\n{errors}\nserver stderr (tail):\n{}",
        lines.join("\n"),
        tail(&server.stderr(), 40)
    );
    assert!(
        elapsed < Duration::from_secs(120),
        "the browser test took {elapsed:?}:\n{}",
        lines.join("\n")
    );

    // What the script reports, checked where it landed.
    let result: serde_json::Value = lines
        .iter()
        .find_map(|l| l.strip_prefix("RESULT "))
        .map(|json| serde_json::from_str(json).unwrap())
        .unwrap_or_else(|| panic!("no RESULT line:\n{}", lines.join("\n")));
    let workspace = PathBuf::from(result["workspace"].as_str().expect("the workspace"));
    assert!(workspace.is_dir(), "{result}");
    assert!(
        !workspace.join("dashboard-note.txt").exists(),
        "the revert in the browser did not remove the turn's file"
    );
    let db = rusqlite::Connection::open(server.data_dir().join("codara.db")).unwrap();
    let count = |sql: &str| -> i64 { db.query_row(sql, [], |r| r.get(0)).unwrap() };
    assert_eq!(
        count(
            "SELECT COUNT(*) FROM users WHERE display_name = 'Dash Board' AND max_concurrency = 4"
        ),
        1
    );
    assert_eq!(
        count("SELECT COUNT(*) FROM accounts WHERE id = 'dash-acct' AND cli_primary = 1"),
        1
    );
    assert_eq!(
        count("SELECT COUNT(*) FROM audit_log WHERE action = 'turn.reverted'"),
        1
    );
    assert_eq!(
        count("SELECT COUNT(*) FROM audit_log WHERE action = 'account.primary_set'"),
        1
    );
    // The uploaded login is in the pool with the windows the browser's refresh fetched; no
    // page, response or audit entry showed its tokens.
    let accounts = server.get("/management/v1/accounts", Some(&server.login()));
    let uploaded = accounts.json()["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["id"] == "dash-oauth")
        .cloned()
        .unwrap_or_else(|| panic!("no dash-oauth: {}", accounts.text()));
    assert_eq!(
        uploaded["quota"]["five_hour"]["used_percent"], 42.5,
        "{uploaded}"
    );
    assert_eq!(uploaded["label"], "oauth-dash@example.com");
    assert!(!accounts.text().contains(&access_token));
    // Observability is asserted in the browser once the traces routes exist.
    let observability = result["observability"].as_str().unwrap_or("");
    assert!(
        matches!(observability, "unavailable" | "asserted"),
        "{result}"
    );
    let traces = server.get("/management/v1/traces?limit=1", Some(&server.login()));
    assert_eq!(
        observability == "asserted",
        traces.status != 404,
        "the traces route answered {} but the browser step was {observability}",
        traces.status
    );

    // A screenshot of every page at both widths, each a PNG.
    let mut names: Vec<String> = std::fs::read_dir(&shots)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    for page in [
        "overview",
        "accounts",
        "users",
        "user",
        "sessions",
        "session",
        "workspaces",
        "workspace",
        "playground",
        "observability",
        "observability-contract",
        "trace-contract",
        "audit",
        "settings",
        "signin",
    ] {
        for width in [1280, 375] {
            let name = format!("{page}-{width}.png");
            let bytes = std::fs::read(shots.join(&name))
                .unwrap_or_else(|_| panic!("no screenshot {name}: {names:?}"));
            assert!(
                bytes.starts_with(b"\x89PNG") && bytes.len() > 2000,
                "{name}"
            );
        }
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
