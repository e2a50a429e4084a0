//! Wire shapes of both planes: errors (401, 404, 405, 413, 400, 503), request ids, the root
//! redirect and HEAD, observed over raw HTTP.

use crate::support::{self, HttpResponse, SECRET};
use serde_json::Value;
use std::io::Write;
use std::time::Duration;

/// Asserts the OpenAI error object `{"error":{"message","type","param","code"}}`.
fn openai_error(response: &HttpResponse, status: u16, code: &str) -> Value {
    assert_eq!(response.status, status, "{}", response.text());
    assert!(
        response
            .header("Content-Type")
            .unwrap_or("")
            .starts_with("application/json"),
        "{:?}",
        response.headers
    );
    let body = response.json();
    let error = body["error"]
        .as_object()
        .unwrap_or_else(|| panic!("no error object: {body}"));
    for key in ["message", "type", "param", "code"] {
        assert!(error.contains_key(key), "error object lacks {key}: {body}");
    }
    assert!(error["message"].as_str().is_some_and(|m| !m.is_empty()));
    assert!(error["type"].is_string(), "{body}");
    assert_eq!(error["code"], code, "{body}");
    assert!(
        body.get("ok").is_none(),
        "no management envelope on /v1: {body}"
    );
    body["error"].clone()
}

/// Asserts the management envelope `{"ok":false,"error":{"code","message"},"meta":{...}}`.
fn management_error(response: &HttpResponse, status: u16, code: &str) -> Value {
    assert_eq!(response.status, status, "{}", response.text());
    let body = response.json();
    assert_eq!(body["ok"], false, "{body}");
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    assert_eq!(
        body["meta"]["request_id"].as_str(),
        response.header("X-Request-Id"),
        "{body}"
    );
    body["error"].clone()
}

fn is_generated_request_id(id: &str) -> bool {
    id.strip_prefix("req_").is_some_and(|hex| {
        hex.len() == 12
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

#[test]
fn unauthorized_in_each_shape() {
    let mut server = support::server().start();
    let error = openai_error(&server.get("/v1/models", None), 401, "unauthorized");
    assert_eq!(error["type"], "authentication_error");
    assert!(error["param"].is_null());
    let error = openai_error(
        &server.post_json("/v1/chat/completions", None, "{}"),
        401,
        "unauthorized",
    );
    assert!(error["message"].as_str().unwrap().contains("Bearer"));
    management_error(
        &server.get("/management/v1/overview", None),
        401,
        "unauthorized",
    );
    assert_eq!(server.signal_and_wait("TERM"), Some(0));
}

#[test]
fn not_found_in_each_shape_with_and_without_auth() {
    let mut server = support::server().start();
    for bearer in [None, Some(SECRET)] {
        let error = openai_error(&server.get("/v1/nope", bearer), 404, "not_found");
        assert_eq!(error["type"], "not_found_error");
        management_error(&server.get("/management/v1/nope", bearer), 404, "not_found");
        management_error(&server.get("/nope", bearer), 404, "not_found");
    }
    assert_eq!(server.signal_and_wait("TERM"), Some(0));
}

#[test]
fn method_not_allowed_lists_the_allowed_methods() {
    let mut server = support::server().start();
    let response = server.post_json("/v1/models", Some(SECRET), "{}");
    openai_error(&response, 405, "method_not_allowed");
    let allow = response.header("Allow").expect("Allow header");
    assert!(allow.contains("GET"), "{allow}");
    assert!(!allow.contains("POST"), "{allow}");

    let response = server.get("/management/v1/auth/token", None);
    management_error(&response, 405, "method_not_allowed");
    assert_eq!(response.header("Allow"), Some("POST"));
    assert_eq!(server.signal_and_wait("TERM"), Some(0));
}

#[test]
fn bodies_over_the_limit_get_413() {
    let mut server = support::server()
        .toml("[server]\nmax_body_bytes = 2048\n")
        .start();
    let content = "x".repeat(4096);
    let chat =
        format!(r#"{{"model":"uag-codex","messages":[{{"role":"user","content":"{content}"}}]}}"#);
    let response = server.post_json("/v1/chat/completions", Some(SECRET), &chat);
    let error = openai_error(&response, 413, "payload_too_large");
    assert_eq!(error["type"], "invalid_request_error");
    assert!(
        error["message"].as_str().unwrap().contains("2048"),
        "{error}"
    );

    let login = format!(r#"{{"operator_secret":"{SECRET}","pad":"{content}"}}"#);
    let response = server.post_json("/management/v1/auth/token", None, &login);
    management_error(&response, 413, "payload_too_large");

    // A body that is only announced: the declared length alone is refused, without reading.
    for (path, auth) in [
        ("/management/v1/auth/token", String::new()),
        (
            "/v1/chat/completions",
            format!("Authorization: Bearer {SECRET}\r\n"),
        ),
    ] {
        let mut stream = support::connect(server.addr);
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\n{auth}Content-Type: application/json\r\n\
             Content-Length: 1000000000000000\r\n\r\n{{\"a\":"
        );
        stream.write_all(head.as_bytes()).unwrap();
        let response = support::read_one_response(&mut stream, Duration::from_secs(30))
            .unwrap_or_else(|| panic!("{path}: connection closed without a response"));
        assert_eq!(response.status, 413, "{path}: {}", response.text());
        drop(stream);
        let health = server.get("/healthz", None);
        assert_eq!(
            health.status, 200,
            "the server survives a huge Content-Length"
        );
    }
    // And it still does real work.
    server.login();
    assert_eq!(server.signal_and_wait("TERM"), Some(0));
}

#[test]
fn bad_requests_name_the_problem() {
    let mut server = support::server()
        .toml("[providers.codex]\nbinary = \"/nonexistent/codex\"\n")
        .start();
    let chat = "/v1/chat/completions";

    let error = openai_error(
        &server.post_json(chat, Some(SECRET), "{not json"),
        400,
        "invalid_request",
    );
    assert!(
        error["message"].as_str().unwrap().contains("invalid JSON"),
        "{error}"
    );
    assert_eq!(error["type"], "invalid_request_error");

    let error = openai_error(
        &server.post_json(chat, Some(SECRET), ""),
        400,
        "invalid_request",
    );
    assert!(
        error["message"].as_str().unwrap().contains("empty"),
        "{error}"
    );

    let error = openai_error(
        &server.post_json(chat, Some(SECRET), r#"{"model":"uag-codex"}"#),
        400,
        "invalid_request",
    );
    assert_eq!(error["param"], "messages", "{error}");
    assert!(
        error["message"].as_str().unwrap().contains("messages"),
        "{error}"
    );

    let error = openai_error(
        &server.post_json(
            chat,
            Some(SECRET),
            r#"{"model":"no-such-model","messages":[{"role":"user","content":"hi"}]}"#,
        ),
        400,
        "invalid_request",
    );
    assert_eq!(error["param"], "model", "{error}");
    assert!(
        error["message"].as_str().unwrap().contains("no-such-model"),
        "{error}"
    );

    let error = openai_error(
        &server.post_json(
            chat,
            Some(SECRET),
            r#"{"model":"uag-codex","messages":[{"content":"hi"}]}"#,
        ),
        400,
        "invalid_request",
    );
    assert_eq!(error["param"], "messages[0].role", "{error}");

    // A valid request passes validation and reaches the provider check: this server's codex
    // binary does not exist, so the answer is 503 provider_unavailable.
    openai_error(
        &server.post_json(
            chat,
            Some(SECRET),
            r#"{"model":"uag-codex","messages":[{"role":"user","content":"hi"}]}"#,
        ),
        503,
        "provider_unavailable",
    );

    let error = management_error(
        &server.post_json("/management/v1/auth/token", None, "{not json"),
        400,
        "invalid_request",
    );
    assert!(
        error["message"].as_str().unwrap().contains("invalid JSON"),
        "{error}"
    );
    assert_eq!(server.signal_and_wait("TERM"), Some(0));
}

#[test]
fn request_ids_are_echoed_or_generated() {
    let mut server = support::server().start();
    let given = [("X-Request-Id", "abc-123")];
    let health = server.request("GET", "/healthz", &given, None);
    assert_eq!(health.status, 200);
    assert_eq!(health.header("X-Request-Id"), Some("abc-123"));

    let auth = format!("Bearer {SECRET}");
    let overview = server.request(
        "GET",
        "/management/v1/overview",
        &[("X-Request-Id", "abc-123"), ("Authorization", &auth)],
        None,
    );
    assert_eq!(overview.status, 200, "{}", overview.text());
    assert_eq!(overview.header("X-Request-Id"), Some("abc-123"));
    assert_eq!(overview.json()["meta"]["request_id"], "abc-123");

    let error = server.request("GET", "/v1/models", &given, None);
    assert_eq!(error.status, 401);
    assert_eq!(error.header("X-Request-Id"), Some("abc-123"));

    let mut seen = Vec::new();
    for response in [
        server.get("/healthz", None),
        server.get("/management/v1/overview", Some(SECRET)),
        server.get("/management/v1/overview", None),
        server.get("/v1/nope", None),
        server.request("GET", "/healthz", &[("X-Request-Id", "not ok!")], None),
    ] {
        let id = response
            .header("X-Request-Id")
            .expect("X-Request-Id")
            .to_string();
        assert!(is_generated_request_id(&id), "{id}");
        if response.text().contains("\"meta\"") {
            assert_eq!(response.json()["meta"]["request_id"], id.as_str());
        }
        seen.push(id);
    }
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 5, "generated ids are unique: {seen:?}");
    assert_eq!(server.signal_and_wait("TERM"), Some(0));
}

#[test]
fn a_full_intake_answers_503_busy_until_the_slow_client_times_out() {
    // One body read at a time: a second request with a body has nowhere to go.
    let mut server = support::server()
        .toml("[server]\nmax_pending_bodies = 1\nbody_timeout_seconds = 5\n")
        .start();
    // A body over 1 KiB: tiny_http reads smaller bodies itself before dispatching, so only a
    // larger one reaches the intake stage and holds it while it waits for the rest.
    let mut slow = support::connect(server.addr);
    slow.write_all(
        b"POST /management/v1/auth/token HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
          Content-Length: 4096\r\n\r\n{\"operator",
    )
    .unwrap();

    let padded = format!(
        r#"{{"operator_secret":"{SECRET}","pad":"{}"}}"#,
        "x".repeat(2048)
    );
    let mut busy = None;
    support::wait_until(Duration::from_secs(4), "a 503 for a second body", || {
        let response = server.post_json("/management/v1/auth/token", None, &padded);
        if response.status == 503 {
            busy = Some(response);
            true
        } else {
            assert_eq!(response.status, 200, "{}", response.text());
            false
        }
    });
    let busy = busy.unwrap();
    management_error(&busy, 503, "busy");
    assert_eq!(busy.header("Retry-After"), Some("1"));
    assert_eq!(busy.header("Connection"), Some("close"));
    let chat = format!(
        r#"{{"model":"uag-codex","messages":[{{"role":"user","content":"{}"}}]}}"#,
        "x".repeat(2048)
    );
    let openai = server.post_json("/v1/chat/completions", Some(SECRET), &chat);
    let error = openai_error(&openai, 503, "busy");
    assert_eq!(error["type"], "service_unavailable_error");
    assert!(openai.header("Retry-After").is_some());
    // Requests without a body never wait for the intake stage.
    assert_eq!(server.get("/healthz", None).status, 200);
    assert_eq!(server.get("/v1/models", Some(SECRET)).status, 200);

    // The slow client is cut off at its deadline: 408, or just a closed connection.
    if let Some(response) = support::read_one_response(&mut slow, Duration::from_secs(30)) {
        assert_eq!(response.status, 408, "{}", response.text());
    }
    drop(slow);
    support::wait_until(Duration::from_secs(10), "a body to be taken again", || {
        server
            .post_json("/management/v1/auth/token", None, &padded)
            .status
            == 200
    });
    assert_eq!(server.signal_and_wait("TERM"), Some(0));
}

#[test]
fn root_redirects_and_head_works() {
    let mut server = support::server().start();
    let root = server.get("/", None);
    assert_eq!(root.status, 307);
    assert_eq!(root.header("Location"), Some("/dashboard"));

    let head = server.request("HEAD", "/healthz", &[], None);
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty(), "HEAD has no body: {:?}", head.text());
    assert!(head.header("X-Request-Id").is_some());
    assert_eq!(server.signal_and_wait("TERM"), Some(0));
}

#[test]
fn the_server_keeps_accepting_after_idling_longer_than_the_read_timeout() {
    let mut server = support::server()
        .toml("[server]\nread_timeout_seconds = 1\n")
        .start();
    assert_eq!(server.get("/healthz", None).status, 200);
    // Idling is the condition under test, not a synchronization: no request for > 1 s.
    std::thread::sleep(Duration::from_millis(2500));
    let connected = std::net::TcpStream::connect_timeout(&server.addr, Duration::from_secs(5));
    assert!(
        connected.is_ok(),
        "the listener stopped accepting after an idle read timeout ({:?}); stderr:\n{}",
        connected.err(),
        server.stderr()
    );
    drop(connected);
    let health = server.get("/healthz", None);
    assert_eq!(health.status, 200, "{}", health.text());
    assert_eq!(server.signal_and_wait("TERM"), Some(0));
}
