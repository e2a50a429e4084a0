//! Hostile clients over raw HTTP: bodies trickled a byte at a time, bodies that are only
//! announced, too many connections from one address, request smuggling framings, unknown HTTP
//! versions, guessed credentials, and the latency of keep-alive responses (Nagle).

use crate::support::mock_model::{clis_bin, directive, MockModel};
use crate::support::{self, HttpResponse, Server, SECRET};
use serde_json::{json, Value};
use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::unix::io::FromRawFd;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A server whose codex points at a missing binary: the turn routes admit and read bodies, but
/// no CLI ever runs.
const NO_CLI: &str = "[providers.codex]\nbinary = \"/nonexistent/codex\"\n";

/// What became of a client that trickles its body.
#[derive(Debug)]
enum Trickled {
    /// The server answered after this long.
    Answered(u16, Duration),
    /// The server closed (or reset) the connection without an answer after this long.
    Closed(Duration),
    /// Still open when the client gave up.
    StillOpen,
}

/// Sends `head`, then one body byte every 3 s until the server answers or closes, or `give_up`.
fn trickle(addr: SocketAddr, head: String, give_up: Duration) -> JoinHandle<Trickled> {
    std::thread::spawn(move || {
        let mut stream = support::connect(addr);
        let started = Instant::now();
        stream.write_all(head.as_bytes()).unwrap();
        let mut raw = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            if started.elapsed() > give_up {
                return Trickled::StillOpen;
            }
            stream
                .set_read_timeout(Some(Duration::from_secs(3)))
                .unwrap();
            match stream.read(&mut buf) {
                Ok(0) => return Trickled::Closed(started.elapsed()),
                Ok(n) => {
                    raw.extend_from_slice(&buf[..n]);
                    if raw.windows(4).any(|w| w == b"\r\n\r\n") {
                        let response = support::parse_response(&raw);
                        return Trickled::Answered(response.status, started.elapsed());
                    }
                }
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    if stream.write_all(b" ").is_err() {
                        return Trickled::Closed(started.elapsed());
                    }
                }
                Err(_) => return Trickled::Closed(started.elapsed()),
            }
        }
    })
}

/// Whether the server closes (or resets) `stream` within 2 s, reading past any leftover bytes.
fn closed_soon(stream: &mut TcpStream) -> bool {
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        stream.set_read_timeout(Some(left)).unwrap();
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) => return e.kind() == ErrorKind::ConnectionReset,
        }
    }
}

/// A request head for `POST path` announcing `length` body bytes.
fn post_head(path: &str, bearer: Option<&str>, length: usize) -> String {
    let auth = bearer
        .map(|b| format!("Authorization: Bearer {b}\r\n"))
        .unwrap_or_default();
    format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\n{auth}Content-Type: application/json\r\n\
         Content-Length: {length}\r\n\r\n"
    )
}

/// Creates a user through the management plane; returns its first API key.
fn create_user(server: &Server, email: &str, extra: Value) -> String {
    let mut body = json!({"email": email, "display_name": email});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    let response = server.post_json("/management/v1/users", Some(SECRET), &body.to_string());
    assert_eq!(response.status, 201, "{}", response.text());
    response.json()["data"]["api_key"]["key"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Runs `call` and asserts it answered `expected` within `limit`.
fn timed(what: &str, limit: Duration, expected: u16, call: impl FnOnce() -> HttpResponse) {
    let started = Instant::now();
    let response = call();
    let took = started.elapsed();
    assert_eq!(response.status, expected, "{what}: {}", response.text());
    assert!(took < limit, "{what} took {took:?} (limit {limit:?})");
}

/// Fifteen clients trickle bodies of `length` bytes to the management plane (operator secret)
/// and the turn route (a user key) while `/healthz`, another user's `/v1/models` and complete POSTs
/// keep answering within a second; the tricklers are cut off by `cut_within`.
fn tricklers_hold_no_worker_and_are_cut_off(length: usize, toml: &str, cut_within: Duration) {
    let mut server = support::server()
        .toml(&format!("{NO_CLI}\n[server]\n{toml}"))
        .start();
    let trickler_key = create_user(
        &server,
        "trickler@example.com",
        json!({"max_concurrency": 10}),
    );
    let other_key = create_user(&server, "other@example.com", json!({}));
    // Ten on the management plane (more than the api pool's 8 workers) and five on the turn
    // route (more than its 4 workers).
    let mut tricklers = Vec::new();
    for i in 0..15 {
        let head = if i < 10 {
            post_head("/management/v1/users", Some(SECRET), length)
        } else {
            post_head("/v1/chat/completions", Some(&trickler_key), length)
        };
        tricklers.push(trickle(server.addr, head, Duration::from_secs(35)));
    }
    // Let every trickler's head arrive and reach whatever stage reads bodies.
    std::thread::sleep(Duration::from_millis(500));

    let second = Duration::from_secs(1);
    let mut padded_login = format!(r#"{{"operator_secret":"{SECRET}","pad":""}}"#);
    padded_login.insert_str(padded_login.len() - 2, &"x".repeat(4096));
    for round in 0..5 {
        timed("GET /healthz", second, 200, || server.get("/healthz", None));
        timed("another user's GET /v1/models", second, 200, || {
            server.get("/v1/models", Some(&other_key))
        });
        timed("a small complete POST", second, 201, || {
            let body = json!({"email": format!("probe{round}@example.com"), "display_name": "P"});
            server.post_json("/management/v1/users", Some(SECRET), &body.to_string())
        });
        timed("a 4 KiB complete POST", second, 200, || {
            server.post_json("/management/v1/auth/token", None, &padded_login)
        });
        std::thread::sleep(Duration::from_millis(700));
    }

    for trickler in tricklers {
        match trickler.join().unwrap() {
            Trickled::Answered(status, after) => {
                assert_eq!(status, 408, "a trickler got {status} after {after:?}");
                assert!(after < cut_within, "cut off only after {after:?}");
            }
            Trickled::Closed(after) => {
                assert!(after < cut_within, "cut off only after {after:?}")
            }
            Trickled::StillOpen => panic!("a trickler was never cut off"),
        }
    }
    assert_eq!(server.get("/healthz", None).status, 200);
    assert_eq!(server.signal_and_wait("TERM"), Some(0));
}

#[test]
fn small_trickled_bodies_hold_no_worker_and_are_cut_off() {
    // 100 bytes: tiny_http reads it on the connection's thread, under the same deadline
    // (10 s + 100 B at 1 KiB/s).
    tricklers_hold_no_worker_and_are_cut_off(100, "", Duration::from_secs(16));
}

#[test]
fn large_trickled_bodies_hold_no_worker_and_are_cut_off() {
    tricklers_hold_no_worker_and_are_cut_off(
        200_000,
        "body_timeout_seconds = 12\n",
        Duration::from_secs(18),
    );
}

#[test]
fn a_connection_over_the_per_address_cap_is_refused_at_once() {
    let mut server = support::server()
        .toml("[server]\nmax_connections_per_ip = 4\n")
        .start();
    let keep_alive_get = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
    let mut open = Vec::new();
    for _ in 0..4 {
        let mut stream = support::connect(server.addr);
        stream.write_all(keep_alive_get).unwrap();
        let response = support::read_one_response(&mut stream, Duration::from_secs(5))
            .expect("an answer within the cap");
        assert_eq!(response.status, 200);
        open.push(stream);
    }

    let started = Instant::now();
    let mut fifth = support::connect(server.addr);
    let _ = fifth.write_all(keep_alive_get);
    let refused = support::read_one_response(&mut fifth, Duration::from_secs(5));
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "the refusal took {:?}",
        started.elapsed()
    );
    if let Some(response) = refused {
        assert_eq!(response.status, 503, "{}", response.text());
        assert_eq!(response.header("Retry-After"), Some("1"));
        assert_eq!(response.header("Connection"), Some("close"));
    }
    assert!(closed_soon(&mut fifth), "the refused connection is closed");

    // The connections within the cap still work.
    open[0].write_all(keep_alive_get).unwrap();
    let response = support::read_one_response(&mut open[0], Duration::from_secs(5)).unwrap();
    assert_eq!(response.status, 200);

    drop(open);
    support::wait_until(
        Duration::from_secs(5),
        "a new connection to be served after the others closed",
        || {
            let mut stream = support::connect(server.addr);
            let _ = stream.write_all(keep_alive_get);
            support::read_one_response(&mut stream, Duration::from_secs(2))
                .is_some_and(|r| r.status == 200)
        },
    );
    assert_eq!(server.signal_and_wait("TERM"), Some(0));
}

/// Sends a head that announces a body which never comes; returns the answer, how long it took,
/// and whether the server then closed the connection (within 2 s).
fn announce_only(addr: SocketAddr, head: &str) -> (Option<HttpResponse>, Duration, bool) {
    let mut stream = support::connect(addr);
    let started = Instant::now();
    stream.write_all(head.as_bytes()).unwrap();
    let response = support::read_one_response(&mut stream, Duration::from_secs(5));
    let took = started.elapsed();
    (response, took, closed_soon(&mut stream))
}

#[test]
fn unauthenticated_posts_are_answered_without_waiting_for_the_body() {
    let mut server = support::server().toml(NO_CLI).start();
    for (path, bearer) in [
        ("/management/v1/users", None),
        ("/management/v1/users", Some("wrong-secret")),
        ("/v1/chat/completions", None),
        ("/v1/chat/completions", Some("uagk_live_nosuchkey")),
    ] {
        let (response, took, closed) =
            announce_only(server.addr, &post_head(path, bearer, 200_000));
        let response = response.unwrap_or_else(|| panic!("{path}: no answer"));
        assert_eq!(response.status, 401, "{path}: {}", response.text());
        assert!(took < Duration::from_secs(2), "{path}: took {took:?}");
        assert_eq!(response.header("Connection"), Some("close"), "{path}");
        assert!(closed, "{path}: the connection stayed open");
    }
    // A user key on the management plane: 403, equally without the body.
    let key = create_user(&server, "plane@example.com", json!({}));
    let (response, took, closed) = announce_only(
        server.addr,
        &post_head("/management/v1/users", Some(&key), 200_000),
    );
    assert_eq!(response.map(|r| r.status), Some(403));
    assert!(took < Duration::from_secs(2) && closed, "{took:?} {closed}");
    assert_eq!(server.get("/healthz", None).status, 200);
    assert_eq!(server.signal_and_wait("TERM"), Some(0));
}

#[test]
fn a_turn_slot_is_taken_before_the_body_is_read() {
    let mut server = support::server().toml(NO_CLI).start();
    let key = create_user(&server, "one@example.com", json!({"max_concurrency": 1}));
    // The first turn is admitted and holds the user's only slot while its body trickles in.
    let first = trickle(
        server.addr,
        post_head("/v1/chat/completions", Some(&key), 200_000),
        Duration::from_secs(4),
    );
    std::thread::sleep(Duration::from_millis(500));
    let (response, took, closed) = announce_only(
        server.addr,
        &post_head("/v1/chat/completions", Some(&key), 200_000),
    );
    let response = response.expect("an answer without the body");
    assert_eq!(response.status, 429, "{}", response.text());
    assert!(response.header("Retry-After").is_some());
    assert!(
        response.text().contains("max_concurrency"),
        "{}",
        response.text()
    );
    assert!(took < Duration::from_secs(2) && closed, "{took:?} {closed}");
    assert!(matches!(first.join().unwrap(), Trickled::StillOpen));
    assert_eq!(server.signal_and_wait("TERM"), Some(0));
}

#[test]
fn a_slot_is_free_again_before_the_answer_leaves() {
    let server = support::server().toml(NO_CLI).start();
    let key = create_user(&server, "quick@example.com", json!({"max_concurrency": 1}));
    // Each request is admitted (taking the only slot) and then refused by validation; the next
    // one, sent on the same connection the moment the answer arrives, must find the slot free.
    let mut stream = support::connect(server.addr);
    for n in 0..100 {
        let body = json!({"model": "uag-codex", "messages": [{"role": "user", "content": "hi"}],
                          "workspace_id": format!(".git/{n}")})
        .to_string();
        let head = format!(
            "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(head.as_bytes()).unwrap();
        let response = support::read_one_response(&mut stream, Duration::from_secs(10))
            .unwrap_or_else(|| panic!("request {n}: no answer"));
        assert_eq!(response.status, 400, "request {n}: {}", response.text());
    }
}

#[test]
fn a_user_running_a_turn_at_max_concurrency_gets_429_before_sending_the_body() {
    let mock = MockModel::start();
    // One turn worker, so that another user's turn meanwhile finds the turns pool full.
    let mut server = support::server()
        .toml(&format!(
            "{}\n[server]\nturn_workers = 1\n",
            mock.codara_toml(&clis_bin())
        ))
        .start();
    let key = create_user(&server, "busy@example.com", json!({"max_concurrency": 1}));
    let other_key = create_user(&server, "other@example.com", json!({}));
    let addr = server.addr;
    let body = json!({"model": "uag-codex", "workspace_id": "one",
        "messages": [{"role": "user", "content": directive(json!({"reply": "slow", "delay": 5}))}]});
    let slow =
        support::post_json_in_background(addr, "/v1/chat/completions", &key, body.to_string());
    // The turn is running once its CLI asked the model.
    mock.wait_for_requests(1, Duration::from_secs(60));
    let (response, took, closed) = announce_only(
        addr,
        &post_head("/v1/chat/completions", Some(&key), 200_000),
    );
    let response = response.expect("an answer without the body");
    assert_eq!(response.status, 429, "{}", response.text());
    assert_eq!(response.json()["error"]["code"], "rate_limited");
    assert!(response.header("Retry-After").is_some());
    assert!(took < Duration::from_secs(2) && closed, "{took:?} {closed}");
    // Another user is not limited by this user's slot, but the only turn worker is busy: the
    // accept thread answers 503 at once and closes.
    let started = Instant::now();
    let other = server.post_json(
        "/v1/chat/completions",
        Some(&other_key),
        &json!({"model": "uag-codex", "messages": [{"role": "user", "content": "hi"}]}).to_string(),
    );
    assert_eq!(other.status, 503, "{}", other.text());
    assert_eq!(other.json()["error"]["code"], "busy");
    assert_eq!(other.header("Connection"), Some("close"));
    assert!(started.elapsed() < Duration::from_secs(2));
    let first = slow.join().unwrap();
    assert_eq!(first.status, 200, "{}", first.text());
    assert_eq!(server.signal_and_wait("TERM"), Some(0));
}

/// Sends raw bytes on a fresh connection; returns the answer (if any within 5 s) and whether
/// the server closed the connection afterwards.
fn raw_exchange(addr: SocketAddr, bytes: &[u8]) -> (Option<HttpResponse>, bool) {
    let mut stream = support::connect(addr);
    stream.write_all(bytes).unwrap();
    let response = support::read_one_response(&mut stream, Duration::from_secs(5));
    (response, closed_soon(&mut stream))
}

#[test]
fn ambiguous_framing_is_400_and_unknown_versions_are_505() {
    let mut server = support::server().start();
    let login = format!(r#"{{"operator_secret":"{SECRET}"}}"#);
    let n = login.len();
    let framings = [
        format!("Content-Length: {n}\r\nContent-Length: {n}\r\n"),
        format!("Content-Length: {n}\r\nContent-Length: {}\r\n", n + 1),
        format!("Content-Length: {n}\r\nTransfer-Encoding: chunked\r\n"),
        format!("Transfer-Encoding: chunked\r\nContent-Length: {n}\r\n"),
        "Content-Length: abc\r\n".to_string(),
        format!("Content-Length: +{n}\r\n"),
    ];
    for framing in framings {
        let request =
            format!("POST /management/v1/auth/token HTTP/1.1\r\nHost: x\r\n{framing}\r\n{login}");
        let (response, closed) = raw_exchange(server.addr, request.as_bytes());
        let response = response.unwrap_or_else(|| panic!("{framing:?}: no answer"));
        assert_eq!(response.status, 400, "{framing:?}: {}", response.text());
        assert!(closed, "{framing:?}: the connection stayed open");
    }
    for version in ["HTTP/2.0", "HTTP/1.2", "HTTP/3.0", "HTTP/9.9"] {
        let request = format!("GET /healthz {version}\r\nHost: x\r\n\r\n");
        let (response, closed) = raw_exchange(server.addr, request.as_bytes());
        let response = response.unwrap_or_else(|| panic!("{version}: no answer (silence)"));
        assert_eq!(response.status, 505, "{version}: {}", response.text());
        assert!(!response.body.is_empty(), "{version}: the 505 has a body");
        assert!(closed, "{version}: the connection stayed open");
    }
    // A well-formed request still works.
    assert_eq!(server.get("/healthz", None).status, 200);
    assert_eq!(server.signal_and_wait("TERM"), Some(0));
}

/// A connection to `addr` from the loopback address `source` (any of 127.0.0.0/8 works on Linux).
fn connect_from(source: Ipv4Addr, addr: SocketAddr) -> TcpStream {
    let SocketAddr::V4(target) = addr else {
        panic!("IPv4 only")
    };
    let sockaddr = |ip: Ipv4Addr, port: u16| libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(ip).to_be(),
        },
        sin_zero: [0; 8],
    };
    let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: a fresh socket we own, bound and connected with correctly sized addresses, then
    // handed to TcpStream, which closes it.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0);
        let local = sockaddr(source, 0);
        assert_eq!(
            libc::bind(fd, (&local as *const libc::sockaddr_in).cast(), len),
            0
        );
        let remote = sockaddr(*target.ip(), target.port());
        assert_eq!(
            libc::connect(fd, (&remote as *const libc::sockaddr_in).cast(), len),
            0
        );
        TcpStream::from_raw_fd(fd)
    }
}

/// `GET path` with `bearer` over `stream` (closing it).
fn get_over(mut stream: TcpStream, path: &str, bearer: &str) -> HttpResponse {
    let head =
        format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer {bearer}\r\n\r\n");
    stream.write_all(head.as_bytes()).unwrap();
    support::read_one_response(&mut stream, Duration::from_secs(10)).expect("an answer")
}

#[test]
fn failed_bearers_are_throttled_per_address() {
    let mut server = support::server().start();
    let token = server.login();
    // Successful requests and requests without any credential do not count.
    for _ in 0..10 {
        assert_eq!(
            server.get("/management/v1/overview", Some(SECRET)).status,
            200
        );
        assert_eq!(server.get("/v1/models", Some(&token)).status, 200);
        assert_eq!(server.get("/v1/models", None).status, 401);
    }
    let guesses = [
        "wrong-secret",
        "cdt_notatoken",
        "uagk_live_00000000000000000000000000000000",
        "another-guess",
        "uagk_nope",
    ];
    for guess in guesses {
        let response = server.get("/management/v1/overview", Some(guess));
        assert_eq!(response.status, 401, "{guess}: {}", response.text());
    }
    let sixth = server.get("/v1/models", Some("sixth-guess"));
    assert_eq!(sixth.status, 429, "{}", sixth.text());
    let retry_after: u64 = sixth.header("Retry-After").unwrap().parse().unwrap();
    assert!(retry_after > 0);
    // While throttled, even correct credentials from this address get 429 ...
    let correct = server.get("/management/v1/overview", Some(SECRET));
    assert_eq!(correct.status, 429, "{}", correct.text());
    assert!(correct.header("Retry-After").is_some());
    assert_eq!(server.get("/v1/models", Some(&token)).status, 429);
    // ... and so does a login ...
    let login = server.post_json(
        "/management/v1/auth/token",
        None,
        &format!(r#"{{"operator_secret":"{SECRET}"}}"#),
    );
    assert_eq!(login.status, 429, "{}", login.text());
    // ... while public routes and other addresses are unaffected.
    assert_eq!(server.get("/healthz", None).status, 200);
    let other = get_over(
        connect_from(Ipv4Addr::new(127, 0, 0, 2), server.addr),
        "/management/v1/overview",
        SECRET,
    );
    assert_eq!(other.status, 200, "{}", other.text());
    assert_eq!(server.signal_and_wait("TERM"), Some(0));
}

#[test]
fn keep_alive_responses_are_not_delayed_by_nagle() {
    let mut server = support::server().start();
    let mut stream = support::connect(server.addr);
    // A response over 1 KiB leaves tiny_http's write buffer in more than one write: with Nagle
    // on, the second write waits for the client's delayed ACK (~40 ms).
    let request = b"GET /dashboard/assets/app.js HTTP/1.1\r\nHost: x\r\n\r\n";
    let mut took = Vec::new();
    for _ in 0..50 {
        let started = Instant::now();
        stream.write_all(request).unwrap();
        let response = support::read_one_response(&mut stream, Duration::from_secs(5))
            .expect("a keep-alive answer");
        took.push(started.elapsed());
        assert_eq!(response.status, 200);
        assert!(
            response.body.len() > 1500,
            "the premise: a response over 1 KiB"
        );
    }
    took.sort();
    let median = took[took.len() / 2];
    assert!(
        median < Duration::from_millis(20),
        "median keep-alive response took {median:?}"
    );
    drop(stream);
    assert_eq!(server.signal_and_wait("TERM"), Some(0));
}
