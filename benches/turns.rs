//! `make bench` (second part): the gateway's overhead per agent turn and the model context growth
//! over a 10-turn conversation, with the real codex CLI against the loopback mock model.
//!
//! Method. Overhead: the same fresh codex turn is run (a) directly, with exactly the command line
//! and environment Codara builds (`codex::command`) through the same runner, and (b) through
//! `POST /v1/chat/completions` on the release binary (stateless turn, so both start a fresh CLI
//! session); 9 runs each, interleaved; overhead = median(b) − median(a). It includes Codara's
//! HTTP handling, two git snapshots of the workspace, the diff and the SQLite writes.
//! Confinement: the same gateway turn on a second server with `[sandbox].mode = "off"`,
//! interleaved with the others; the difference of the medians is what Landlock costs a turn
//! (building the ruleset in the parent, the restriction in the child).
//! First delta: a streamed turn (`stream: true`) over a raw socket; the time from sending the
//! request to the first chunk with non-empty `delta.content`, and to `[DONE]`; median of 5 per
//! provider. The mock streams its reply in 3 deltas 50 ms apart.
//! Growth: a client that resends its whole history each turn, 10 turns on one session; for each
//! turn the bytes of the model requests codex sent, and how often the first prompt occurs in the
//! last request (1 = the CLI session holds each message once).

#![allow(clippy::print_stdout, clippy::disallowed_methods)] // Prints figures; spawns the binary.

#[path = "../tests/it/support/mod.rs"]
mod support;

use codara::process;
use codara::providers::{codex, RunSpec};
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use support::mock_model::{clis_bin, MockModel, CODEX_MODEL};

fn median(mut values: Vec<Duration>) -> Duration {
    values.sort();
    values[values.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn direct_turn(mock: &MockModel, dir: &std::path::Path, n: usize) -> Duration {
    let workspace = dir.join(format!("direct-{n}"));
    std::fs::create_dir_all(&workspace).expect("workspace");
    let home = dir.join("direct-home");
    codex::prepare_home(&home).expect("home");
    let spec = RunSpec {
        binary: clis_bin().join("codex"),
        model: CODEX_MODEL.to_string(),
        prompt: format!("bench prompt {n}"),
        resume: None,
        workspace,
        home,
        extra_args: mock.codex_args(),
        extra_env: mock.codex_env(),
        sandbox: codara::config::Sandbox::WorkspaceWrite,
        path_env: std::env::var("PATH").unwrap_or_default(),
        images: Vec::new(),
        confined: false,
        output_schema: None,
    };
    let command = codex::command(&spec);
    let started = Instant::now();
    let outcome =
        process::run(&command, process::Limits::default(), &mut |_| {}).expect("codex runs");
    assert_eq!(
        outcome.exit_code,
        Some(0),
        "direct codex failed: {}",
        outcome.stderr_tail
    );
    started.elapsed()
}

/// Streams one stateless turn; returns (time to the first non-empty content delta, to `[DONE]`).
fn streamed_turn(
    server: &support::Server,
    token: &str,
    provider: &str,
    n: usize,
) -> (Duration, Duration) {
    use std::io::{Read, Write};
    let directive = json!({"reply": format!("streamed reply number {n} in a few parts"),
                           "chunks": 3, "chunk_delay_ms": 50});
    let body = json!({"model": format!("uag-{provider}"), "stream": true,
        "messages": [{"role": "user", "content": format!("MOCK:{directive}")}]})
    .to_string();
    let mut stream = std::net::TcpStream::connect(server.addr).expect("connect");
    let started = Instant::now();
    write!(
        stream,
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
         Authorization: Bearer {token}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .expect("write");
    let mut seen = String::new();
    let mut first = None;
    let mut buf = [0u8; 4096];
    loop {
        let read = stream.read(&mut buf).expect("read");
        if read == 0 {
            break;
        }
        seen.push_str(&String::from_utf8_lossy(&buf[..read]));
        if first.is_none() && seen.contains("\"content\":\"") {
            let has_text = seen
                .split("\"content\":\"")
                .skip(1)
                .any(|rest| !rest.starts_with('"'));
            if has_text {
                first = Some(started.elapsed());
            }
        }
        if seen.contains("data: [DONE]") {
            break;
        }
    }
    assert!(seen.contains("[DONE]"), "{provider}: {seen}");
    (first.expect("a content delta"), started.elapsed())
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let mock = MockModel::start();
    let server = support::server()
        .toml(&mock.codara_toml(&clis_bin()))
        .start();
    let token = server.login();
    let unconfined = support::server()
        .toml(&format!(
            "{}\n[sandbox]\nmode = \"off\"\n",
            mock.codara_toml(&clis_bin())
        ))
        .start();
    let unconfined_token = unconfined.login();
    let dir = support::TempDir::new("bench-turns");

    // Warm both paths once (first codex start installs skills into its home).
    direct_turn(&mock, dir.path(), 0);
    let turn_on = |server: &support::Server, token: &str, n: usize| {
        let body = json!({"model": "uag-codex", "messages": [{"role": "user", "content": format!("bench prompt {n}")}]});
        let started = Instant::now();
        let response = server.post_json("/v1/chat/completions", Some(token), &body.to_string());
        assert_eq!(response.status, 200, "{}", response.text());
        started.elapsed()
    };
    turn_on(&server, &token, 0);
    turn_on(&unconfined, &unconfined_token, 0);
    let mut direct = Vec::new();
    let mut gateway = Vec::new();
    let mut open = Vec::new();
    for n in 1..=9 {
        direct.push(direct_turn(&mock, dir.path(), n));
        gateway.push(turn_on(&server, &token, n));
        open.push(turn_on(&unconfined, &unconfined_token, n));
    }
    let (direct, gateway, open) = (median(direct), median(gateway), median(open));

    // Time to the first streamed delta.
    let mut first_delta = Vec::new();
    for provider in ["codex", "gemini"] {
        let mut firsts = Vec::new();
        let mut totals = Vec::new();
        for n in 0..5 {
            let (first, total) = streamed_turn(&server, &token, provider, n);
            firsts.push(first);
            totals.push(total);
        }
        first_delta.push((provider, median(firsts), median(totals)));
    }

    // Ten turns of one conversation, resending the whole history each time.
    mock.reset();
    let mut messages: Vec<Value> = Vec::new();
    let mut rows = Vec::new();
    for n in 1..=10 {
        messages
            .push(json!({"role": "user", "content": format!("conversation message number {n}")}));
        let before = mock.requests().len();
        let body =
            json!({"model": "uag-codex", "messages": messages, "client_session_id": "growth"});
        let response = server.post_json("/v1/chat/completions", Some(&token), &body.to_string());
        assert_eq!(response.status, 200, "{}", response.text());
        let reply = response.json()["choices"][0]["message"]["content"]
            .as_str()
            .unwrap_or("")
            .to_string();
        messages.push(json!({"role": "assistant", "content": reply}));
        let requests: Vec<String> = mock
            .requests()
            .into_iter()
            .skip(before)
            .map(|r| r.body_text())
            .collect();
        let bytes: usize = requests.iter().map(String::len).sum();
        let first = requests
            .last()
            .map(|b| b.matches("\"conversation message number 1\"").count())
            .unwrap_or(0);
        rows.push((n, bytes, first));
    }

    println!(
        "codara turn benchmark (codex {} against the loopback mock; method in benches/turns.rs)",
        CODEX_MODEL
    );
    println!(
        "{:<52} {:>10} {:>12} {:>8}",
        "figure", "codara", "python orig", "target"
    );
    println!(
        "{:<52} {:>7.1} ms",
        "  codex turn run directly (median of 9)",
        ms(direct)
    );
    println!(
        "{:<52} {:>7.1} ms",
        "  the same turn through codara (median of 9)",
        ms(gateway)
    );
    let overhead = gateway.saturating_sub(direct);
    println!(
        "{:<52} {:>7.1} ms {:>12} {:>8}",
        "  gateway overhead per turn",
        ms(overhead),
        "851 ms",
        "<= 2 ms"
    );
    println!(
        "{:<52} {:>7.1} ms",
        "  the same turn, sandbox off (median of 9)",
        ms(open)
    );
    println!(
        "{:<52} {:>7.1} ms",
        "  Landlock confinement per turn (confined - off)",
        ms(gateway) - ms(open)
    );
    for (provider, first, total) in &first_delta {
        println!(
            "{:<52} {:>7.1} ms (whole turn {:.1} ms)",
            format!("  {provider}: first streamed delta (median of 5)"),
            ms(*first),
            ms(*total)
        );
    }
    println!(
        "  model request bytes per turn, 10-turn conversation (full history resent by the client):"
    );
    for (n, bytes, first) in &rows {
        println!(
            "    turn {n:>2}: {bytes:>8} bytes; first prompt occurs {first}x in the last request"
        );
    }
    let growth: Vec<i64> = rows
        .windows(2)
        .map(|w| w[1].1 as i64 - w[0].1 as i64)
        .collect();
    println!("  per-turn growth (bytes): {growth:?}");
    println!(
        "  first prompt in turn 10's request: {}x (python original: 64x by turn 10)",
        rows[9].2
    );
}
