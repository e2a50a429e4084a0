//! Process lifecycle and the command line: clean stops on SIGTERM/SIGINT, draining a request in
//! flight, usage errors, `version` (with the release check against a fake GitHub), `doctor`, and
//! the management version endpoint.

use crate::support::{self, fake_github::FakeGithub, TempDir, SECRET};
use std::io::Write;
use std::sync::atomic::Ordering;
use std::time::Duration;

const RELEASE_9_9_9: &str =
    r#"{"tag_name":"v9.9.9","html_url":"https://github.com/acme/codara/releases/tag/v9.9.9"}"#;

fn stops_cleanly_on(signal: &str) {
    let mut server = support::server().start();
    assert_eq!(server.get("/healthz", None).status, 200);
    assert_eq!(
        server.signal_and_wait(signal),
        Some(0),
        "exit code after SIG{signal}"
    );
    let messages = support::log_messages(&server.stderr());
    assert!(
        messages.iter().any(|m| m == "stopped"),
        "no \"stopped\" line on stderr: {messages:?}"
    );
    assert!(
        support::log_messages(&server.log_files_text())
            .iter()
            .any(|m| m == "stopped"),
        "no \"stopped\" line in the log file"
    );
    // The data-dir lock went with the process: a new server on the same dir starts.
    let mut again = support::server().dir(&server.dir).start();
    assert_eq!(again.get("/healthz", None).status, 200);
    assert_eq!(again.signal_and_wait("TERM"), Some(0));
}

#[test]
fn sigterm_stops_cleanly_and_releases_the_lock() {
    stops_cleanly_on("TERM");
}

#[test]
fn sigint_stops_cleanly_and_releases_the_lock() {
    stops_cleanly_on("INT");
}

#[test]
fn a_request_in_flight_at_sigterm_completes() {
    let mut server = support::server()
        .toml("[server]\nmax_pending_bodies = 1\nread_timeout_seconds = 20\nshutdown_grace_seconds = 20\n")
        .start();
    // One body read at a time: the 503 below proves the slow request is in the intake stage.
    // Over 1 KiB so the intake stage (not tiny_http) waits for the body.
    let mut body = format!(r#"{{"operator_secret":"{SECRET}"}}"#).into_bytes();
    body.resize(2048, b' ');
    let head = format!(
        "POST /management/v1/auth/token HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n",
        body.len()
    );
    let start_slow = || {
        let mut stream = support::connect(server.addr);
        stream.write_all(head.as_bytes()).unwrap();
        stream.write_all(&body[..10]).unwrap();
        stream
    };
    let mut stream = start_slow();

    // The intake stage holds our request exactly when it refuses another body.
    let probe = String::from_utf8(body.clone()).unwrap();
    support::wait_until(
        Duration::from_secs(10),
        "the intake stage to hold the slow request",
        || {
            let status = server
                .post_json("/management/v1/auth/token", None, &probe)
                .status;
            // The probe may have taken the only intake slot first and the slow request been
            // refused: start it again.
            if status != 503 && support::was_answered(&mut stream) {
                stream = start_slow();
            }
            status == 503
        },
    );
    server.signal("TERM");
    server.wait_for_stderr("shutdown requested", Duration::from_secs(10));

    stream.write_all(&body[10..]).unwrap();
    let response = support::read_one_response(&mut stream, Duration::from_secs(30))
        .expect("the in-flight request was answered, not reset");
    assert_eq!(response.status, 200, "{}", response.text());
    assert!(response.json()["data"]["access_token"].is_string());

    assert_eq!(server.wait_exit(Duration::from_secs(30)), Some(0));
    let messages = support::log_messages(&server.stderr());
    assert!(messages.iter().any(|m| m == "stopped"), "{messages:?}");
    assert!(
        !messages.iter().any(|m| m.contains("still running")),
        "nothing was cut off: {messages:?}"
    );
}

#[test]
fn help_and_usage_errors() {
    let dir = TempDir::new("cli");
    for args in [
        &["--help"][..],
        &["serve", "--help"],
        &["doctor", "--help"],
        &["version", "--help"],
        &["help"],
    ] {
        let (code, stdout, stderr) = support::run_cli(dir.path(), args, &[]);
        assert_eq!(code, 0, "codara {args:?}: {stderr}");
        assert!(stdout.contains("Usage"), "codara {args:?}: {stdout}");
    }
    let (_, stdout, _) = support::run_cli(dir.path(), &["serve", "--help"], &[]);
    assert!(stdout.contains("--port"), "{stdout}");

    let (code, _, stderr) = support::run_cli(dir.path(), &["bogus"], &[]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("bogus"), "{stderr}");

    let (code, _, stderr) = support::run_cli(dir.path(), &["serve", "--port", "notanumber"], &[]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("--port"), "{stderr}");

    let (code, _, stderr) = support::run_cli(dir.path(), &["version", "--frobnicate"], &[]);
    assert_eq!(code, 2, "{stderr}");

    assert!(
        std::fs::read_dir(dir.path()).unwrap().next().is_none(),
        "help and usage errors touch nothing on disk"
    );
}

#[test]
fn version_prints_the_version() {
    let dir = TempDir::new("cli-version");
    let expected = format!("codara {}", env!("CARGO_PKG_VERSION"));
    assert_eq!(expected, "codara 0.1.0");
    for args in [&["version"][..], &["--version"]] {
        let (code, stdout, stderr) = support::run_cli(dir.path(), args, &[]);
        assert_eq!(code, 0, "{stderr}");
        assert_eq!(stdout.trim(), expected);
    }
    // Without enabling, --check does not call out.
    let (code, stdout, _) = support::run_cli(dir.path(), &["version", "--check"], &[]);
    assert_eq!(code, 0);
    assert!(stdout.contains("disabled"), "{stdout}");
}

fn version_check(fake: &FakeGithub) -> (i32, String, String) {
    let dir = TempDir::new("cli-check");
    std::fs::write(
        dir.path().join("codara.toml"),
        format!("[release]\napi_base_url = \"{}\"\n", fake.base_url),
    )
    .unwrap();
    support::run_cli(
        dir.path(),
        &["version", "--check"],
        &[
            ("UAG_RELEASE_CHECK_ENABLED", "1"),
            ("UAG_RELEASE_REPOSITORY", "acme/codara"),
        ],
    )
}

#[test]
fn version_check_reports_an_update() {
    let fake = FakeGithub::start(200, RELEASE_9_9_9);
    let (code, stdout, stderr) = version_check(&fake);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("Update available: 9.9.9"), "{stdout}");
    assert!(stdout.contains("releases/tag/v9.9.9"), "{stdout}");
    assert_eq!(fake.hits.load(Ordering::SeqCst), 1);
}

#[test]
fn version_check_reports_an_unavailable_api() {
    let fake = FakeGithub::start(500, r#"{"message":"boom"}"#);
    let (code, stdout, stderr) = version_check(&fake);
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(stderr.contains("unavailable"), "{stderr}");
    assert!(stderr.contains("500"), "{stderr}");
    assert_eq!(fake.hits.load(Ordering::SeqCst), 1);
}

#[test]
fn doctor_on_a_fresh_dir() {
    let dir = TempDir::new("cli-doctor");
    let (code, stdout, stderr) =
        support::run_cli(dir.path(), &["doctor"], &[("API_TOKEN", SECRET)]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    for provider in ["codex", "gemini", "opencode"] {
        assert!(
            stdout.lines().any(|l| l.contains(provider)),
            "doctor does not mention {provider}:\n{stdout}"
        );
    }
    assert!(stdout.contains("config"), "{stdout}");
    assert!(!stdout.contains("FAIL"), "{stdout}");
}

fn version_endpoint(server: &support::Server, query: &str) -> serde_json::Value {
    let response = server.get(&format!("/management/v1/version{query}"), Some(SECRET));
    assert_eq!(response.status, 200, "{}", response.text());
    let body = response.json();
    assert_eq!(body["data"]["name"], "codara");
    assert_eq!(body["data"]["version"], env!("CARGO_PKG_VERSION"));
    body["data"]["release_check"].clone()
}

#[test]
fn version_endpoint_without_checking() {
    let mut server = support::server().start();
    let check = version_endpoint(&server, "");
    assert_eq!(check["status"], "disabled");
    assert_eq!(check["enabled"], false);
    let check = version_endpoint(&server, "?check_updates=true");
    assert_eq!(
        check["status"], "disabled",
        "disabled means no call even when asked"
    );
    let bad = server.get("/management/v1/version?check_updates=maybe", Some(SECRET));
    assert_eq!(bad.status, 400, "{}", bad.text());
    assert_eq!(bad.json()["error"]["code"], "invalid_request");
    assert_eq!(bad.json()["error"]["param"], "check_updates");
    assert_eq!(server.signal_and_wait("TERM"), Some(0));
}

fn release_server(fake: &FakeGithub) -> support::Server {
    support::server()
        .toml(&format!(
            "[release]\napi_base_url = \"{}\"\n",
            fake.base_url
        ))
        .env("UAG_RELEASE_CHECK_ENABLED", Some("1"))
        .env("UAG_RELEASE_REPOSITORY", Some("acme/codara"))
        .start()
}

#[test]
fn version_endpoint_checks_and_caches() {
    let fake = FakeGithub::start(200, RELEASE_9_9_9);
    let mut server = release_server(&fake);
    let check = version_endpoint(&server, "");
    assert_eq!(check["status"], "not_checked");
    assert_eq!(check["enabled"], true);
    assert_eq!(fake.hits.load(Ordering::SeqCst), 0, "no call unless asked");

    let check = version_endpoint(&server, "?check_updates=true");
    assert_eq!(check["status"], "ok", "{check}");
    assert_eq!(check["latest_version"], "9.9.9");
    assert_eq!(check["update_available"], true);
    assert_eq!(check["repository"], "acme/codara");
    assert_eq!(check["cached"], false);

    let again = version_endpoint(&server, "?check_updates=true");
    assert_eq!(again["status"], "ok");
    assert_eq!(again["cached"], true);
    assert_eq!(again["latest_version"], "9.9.9");
    assert_eq!(
        fake.hits.load(Ordering::SeqCst),
        1,
        "the second answer came from the cache"
    );
    assert_eq!(server.signal_and_wait("TERM"), Some(0));
}

#[test]
fn version_endpoint_reports_an_unavailable_api() {
    let fake = FakeGithub::start(500, r#"{"message":"boom"}"#);
    let mut server = release_server(&fake);
    let check = version_endpoint(&server, "?check_updates=1");
    assert_eq!(check["status"], "unavailable", "{check}");
    assert!(
        check["error"].as_str().is_some_and(|e| e.contains("500")),
        "{check}"
    );
    assert_eq!(check["update_available"], false);
    // Failures are not cached: the next request asks again.
    let check = version_endpoint(&server, "?check_updates=true");
    assert_eq!(check["status"], "unavailable");
    assert_eq!(fake.hits.load(Ordering::SeqCst), 2);
    let bad = server.get("/management/v1/version?check_updates=maybe", Some(SECRET));
    assert_eq!(bad.status, 400);
    assert_eq!(server.signal_and_wait("TERM"), Some(0));
}
