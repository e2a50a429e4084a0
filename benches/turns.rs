//! `make bench` (second part): what an agent turn costs through the gateway, exec and warm, with
//! the real CLIs against the loopback mock model (which answers at once).
//!
//! Method.
//! - Exec overhead: the same fresh codex turn run (a) directly, with exactly the command line and
//!   environment Codara builds (`codex::command`) through the same runner, and (b) through
//!   `POST /v1/chat/completions` on an exec-mode server (stateless turn); 9 runs each,
//!   interleaved; overhead = median(b) − median(a): HTTP, two git snapshots, the diff, SQLite.
//!   Confinement: the same exec turn on a server with `[sandbox].mode = "off"`, interleaved.
//! - Warm vs exec, per provider: one session per server, each turn resumes it with one new
//!   message (the client resends its history); 9 turns on the warm-mode server and 9 on the
//!   exec-mode server, interleaved, after one turn each to start the processes. With an instant
//!   mock the turn's wall time is the CLI's and the gateway's own cost above the model.
//! - First delta: a streamed turn per provider on the warm server; the time from sending the
//!   request to the first non-empty `delta.content` and to `[DONE]`; median of 5. The mock
//!   streams its reply in 3 deltas 50 ms apart.
//! - Delta latency inside the gateway: a stand-in ACP agent (a 40-line Python script in place of
//!   gemini, the only test double here) prints 20 deltas 10 ms apart, each carrying the
//!   wall-clock time it was printed; the client subtracts it from the time the SSE chunk arrived.
//! - RSS of each warm process (its whole process group, from the overview) beside the figure the
//!   reference measured for the CLI alone.
//! - Telemetry per turn: the growth of `codara_log_bytes_written_total` +
//!   `codara_trace_bytes_written_total` (read from `/metrics`) over the 9 resumed turns of each
//!   provider, warm and exec, divided by 9, after each writer has written those turns' traces.
//! - Growth: a client that resends its whole history each turn, 10 turns on one warm session;
//!   the bytes of the model requests codex sent per turn, and how often the first prompt occurs
//!   in the last request (1 = the CLI session holds each message once).

#![allow(clippy::print_stdout, clippy::disallowed_methods)] // Prints figures; spawns the binary.

mod common;
#[path = "../tests/it/support/mod.rs"]
mod support;
use common::row;

use codara::testing::{codex, run_command, Limits, RunSpec};
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
        sandbox: codara::testing::Sandbox::WorkspaceWrite,
        path_env: std::env::var("PATH").unwrap_or_default(),
        images: Vec::new(),
        confined: false,
        output_schema: None,
    };
    let command = codex::command(&spec);
    let started = Instant::now();
    let outcome = run_command(&command, Limits::default(), &mut |_| {}).expect("codex runs");
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
    let directive = json!({"reply": format!("streamed reply number {n} in a few parts"),
                           "chunks": 3, "chunk_delay_ms": 50});
    let (first, total, _) = stream(server, token, provider, &format!("MOCK:{directive}"));
    (first.expect("a content delta"), total)
}

/// Sends one streamed stateless turn; returns the time to the first non-empty content delta, to
/// `[DONE]`, and each content delta with the wall-clock time it arrived.
fn stream(
    server: &support::Server,
    token: &str,
    provider: &str,
    prompt: &str,
) -> (
    Option<Duration>,
    Duration,
    Vec<(std::time::SystemTime, String)>,
) {
    use std::io::{Read, Write};
    let body = json!({"model": format!("uag-{provider}"), "stream": true,
        "messages": [{"role": "user", "content": prompt}]})
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
    let mut deltas = Vec::new();
    let mut scanned = 0;
    let mut buf = [0u8; 4096];
    loop {
        let read = stream.read(&mut buf).expect("read");
        if read == 0 {
            break;
        }
        let arrived = std::time::SystemTime::now();
        seen.push_str(&String::from_utf8_lossy(&buf[..read]));
        // Frames arrive in chunks (`<hex>\r\ndata: …\n\n\r\n`): find each `data: ` line.
        while let Some(start) = seen[scanned..].find("data: ") {
            let begin = scanned + start + 6;
            let Some(end) = seen[begin..].find('\n') else {
                break;
            };
            let data = &seen[begin..begin + end];
            scanned = begin + end;
            let content = serde_json::from_str::<Value>(data)
                .ok()
                .and_then(|v| {
                    v["choices"][0]["delta"]["content"]
                        .as_str()
                        .map(str::to_string)
                })
                .filter(|c| !c.is_empty());
            if let Some(content) = content {
                first.get_or_insert(started.elapsed());
                deltas.push((arrived, content));
            }
        }
        if seen.contains("data: [DONE]") {
            break;
        }
    }
    assert!(seen.contains("[DONE]"), "{provider}: {seen}");
    (first, started.elapsed(), deltas)
}

/// A stand-in ACP agent: answers the handshake and `session/new`, and prints each prompt's reply
/// as 20 deltas 10 ms apart, each the wall-clock time (ns since the epoch) it was printed.
const STAMPING_AGENT: &str = r#"#!/usr/bin/python3
import json, sys, time
def send(message):
    message["jsonrpc"] = "2.0"
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()
for line in sys.stdin:
    request = json.loads(line)
    method, rid = request.get("method"), request.get("id")
    if method == "initialize":
        send({"id": rid, "result": {"protocolVersion": 1, "agentCapabilities": {}}})
    elif method == "session/new":
        send({"id": rid, "result": {"sessionId": "stamp-%d" % time.time_ns()}})
    elif method == "session/prompt":
        session = request["params"]["sessionId"]
        for _ in range(20):
            chunk = {"sessionUpdate": "agent_message_chunk",
                     "content": {"type": "text", "text": "%d " % time.time_ns()}}
            send({"method": "session/update", "params": {"sessionId": session, "update": chunk}})
            time.sleep(0.01)
        send({"id": rid, "result": {"stopReason": "end_turn"}})
    elif rid is not None:
        send({"id": rid, "result": {}})
"#;

/// The mock's provider blocks, every provider in `mode`.
fn toml_in(mock: &MockModel, mode: &str) -> String {
    let mut toml = mock.codara_toml(&clis_bin());
    for provider in ["codex", "gemini", "opencode"] {
        toml = toml.replace(
            &format!("[providers.{provider}]\n"),
            &format!("[providers.{provider}]\nmode = \"{mode}\"\n"),
        );
    }
    toml
}

/// One resumed turn of `session` on `server`: the history so far plus one new message.
fn resumed_turn(
    server: &support::Server,
    token: &str,
    provider: &str,
    history: &mut Vec<Value>,
    n: usize,
) -> Duration {
    history.push(json!({"role": "user", "content": format!("bench turn {n}")}));
    let body = json!({"model": format!("uag-{provider}"), "messages": history,
                      "client_session_id": format!("bench-{provider}")});
    let started = Instant::now();
    let response = server.post_json("/v1/chat/completions", Some(token), &body.to_string());
    let took = started.elapsed();
    assert_eq!(response.status, 200, "{provider}: {}", response.text());
    let reply = response.json()["choices"][0]["message"]["content"].clone();
    history.push(json!({"role": "assistant", "content": reply}));
    took
}

/// (log + trace bytes written, traces written) by `server` once its trace writer has written
/// at least `traces` traces and has none queued.
fn telemetry_bytes(server: &support::Server, traces: f64) -> (f64, f64) {
    let metric = |text: &str, name: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or(0.0)
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = server.get("/metrics", None).text();
        let written = metric(&text, "codara_trace_events_written_total");
        if (written >= traces && metric(&text, "codara_trace_queue_depth") == 0.0)
            || Instant::now() > deadline
        {
            let bytes = metric(&text, "codara_log_bytes_written_total")
                + metric(&text, "codara_trace_bytes_written_total");
            return (bytes, written);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let mock = MockModel::start();
    let start = |toml: &str| {
        let server = support::server().toml(toml).start();
        let token = server.login();
        (server, token)
    };
    let (exec, exec_token) = start(&toml_in(&mock, "exec"));
    let (warm, warm_token) = start(&toml_in(&mock, "warm"));
    let (open, open_token) = start(&format!(
        "{}\n[sandbox]\nmode = \"off\"\n",
        toml_in(&mock, "exec")
    ));
    let dir = support::TempDir::new("bench-turns");

    // Exec: the gateway's overhead on a codex run, and what Landlock adds.
    direct_turn(&mock, dir.path(), 0);
    let turn_on = |server: &support::Server, token: &str, n: usize| {
        let body = json!({"model": "uag-codex", "messages": [{"role": "user", "content": format!("bench prompt {n}")}]});
        let started = Instant::now();
        let response = server.post_json("/v1/chat/completions", Some(token), &body.to_string());
        assert_eq!(response.status, 200, "{}", response.text());
        started.elapsed()
    };
    turn_on(&exec, &exec_token, 0);
    turn_on(&open, &open_token, 0);
    let (mut direct, mut gateway, mut unconfined) = (Vec::new(), Vec::new(), Vec::new());
    for n in 1..=9 {
        direct.push(direct_turn(&mock, dir.path(), n));
        gateway.push(turn_on(&exec, &exec_token, n));
        unconfined.push(turn_on(&open, &open_token, n));
    }
    let (direct, gateway, unconfined) = (median(direct), median(gateway), median(unconfined));

    // Warm vs exec: resumed turns per provider, interleaved; and the log + trace bytes each
    // turn writes (every line logged meanwhile, the request's trace).
    let mut modes = Vec::new();
    let mut turn_bytes = Vec::new();
    for provider in ["codex", "gemini", "opencode"] {
        let (mut warm_history, mut exec_history) = (Vec::new(), Vec::new());
        resumed_turn(&warm, &warm_token, provider, &mut warm_history, 0);
        resumed_turn(&exec, &exec_token, provider, &mut exec_history, 0);
        let (warm_bytes, warm_traces) = telemetry_bytes(&warm, 0.0);
        let (exec_bytes, exec_traces) = telemetry_bytes(&exec, 0.0);
        let (mut warm_times, mut exec_times) = (Vec::new(), Vec::new());
        for n in 1..=9 {
            warm_times.push(resumed_turn(
                &warm,
                &warm_token,
                provider,
                &mut warm_history,
                n,
            ));
            exec_times.push(resumed_turn(
                &exec,
                &exec_token,
                provider,
                &mut exec_history,
                n,
            ));
        }
        modes.push((provider, median(warm_times), median(exec_times)));
        let warm_after = telemetry_bytes(&warm, warm_traces + 9.0).0;
        let exec_after = telemetry_bytes(&exec, exec_traces + 9.0).0;
        turn_bytes.push((
            provider,
            (warm_after - warm_bytes) / 9.0,
            (exec_after - exec_bytes) / 9.0,
        ));
    }

    // Time to the first streamed delta, warm.
    let mut first_delta = Vec::new();
    for provider in ["codex", "gemini", "opencode"] {
        let (mut firsts, mut totals) = (Vec::new(), Vec::new());
        for n in 0..5 {
            let (first, total) = streamed_turn(&warm, &warm_token, provider, n);
            firsts.push(first);
            totals.push(total);
        }
        first_delta.push((provider, median(firsts), median(totals)));
    }

    // RSS of each warm process (its process group), after the turns above.
    let overview = warm
        .get("/management/v1/overview", Some(&warm_token))
        .json();
    let rss: Vec<(String, u64)> = overview["data"]["warm"]["processes"]
        .as_array()
        .expect("processes")
        .iter()
        .map(|p| {
            (
                p["provider"].as_str().unwrap_or("?").to_string(),
                p["rss_bytes"].as_u64().unwrap_or(0),
            )
        })
        .collect();

    // How long a printed delta takes to reach the client: a stamping stand-in agent.
    let agent = dir.path().join("stamping-agent");
    std::fs::write(&agent, STAMPING_AGENT).expect("agent");
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&agent, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    let stamped_toml = toml_in(&mock, "warm").replace(
        &format!(
            "binary = {:?}",
            clis_bin().join("gemini").display().to_string()
        ),
        &format!("binary = {:?}", agent.display().to_string()),
    );
    let (stamped, stamped_token) = start(&stamped_toml);
    let mut lags = Vec::new();
    for _ in 0..5 {
        let (_, _, deltas) = stream(&stamped, &stamped_token, "gemini", "stamp");
        for (arrived, text) in deltas {
            let arrived_ns = arrived
                .duration_since(std::time::UNIX_EPOCH)
                .expect("clock")
                .as_nanos();
            for printed in text
                .split_whitespace()
                .filter_map(|t| t.parse::<u128>().ok())
            {
                lags.push(Duration::from_nanos(
                    arrived_ns.saturating_sub(printed) as u64
                ));
            }
        }
    }
    let lag_count = lags.len();
    let mut sorted = lags.clone();
    sorted.sort();
    let (lag_median, lag_p99) = (
        median(lags),
        sorted[(sorted.len() * 99 / 100).min(sorted.len() - 1)],
    );

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
        let response = warm.post_json("/v1/chat/completions", Some(&warm_token), &body.to_string());
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
        "codara turn benchmark (real CLIs against the loopback mock; method in benches/turns.rs)"
    );
    println!(
        "{:<56} {:>10} {:>12} {:>8}",
        "figure", "codara", "python orig", "target"
    );
    println!(
        "{:<56} {:>7.1} ms",
        "  codex exec run directly (median of 9)",
        ms(direct)
    );
    println!(
        "{:<56} {:>7.1} ms",
        "  the same turn through codara, exec mode (median of 9)",
        ms(gateway)
    );
    println!(
        "{:<56} {:>7.1} ms {:>12}",
        "  gateway overhead per exec turn",
        ms(gateway.saturating_sub(direct)),
        "851 ms"
    );
    println!(
        "{:<56} {:>7.1} ms",
        "  Landlock per exec turn (confined - sandbox off)",
        ms(gateway) - ms(unconfined)
    );
    println!(
        "  resumed turn through codara, warm vs exec (median of 9, interleaved; instant model):"
    );
    for (provider, warm_time, exec_time) in &modes {
        let target = if *provider == "opencode" {
            "<= 300 ms"
        } else {
            "<= 100 ms"
        };
        println!(
            "{:<56} {:>7.1} ms {:>12} {:>8}",
            format!(
                "    {provider}: warm (exec {:.0} ms, {:.1}x)",
                ms(*exec_time),
                ms(*exec_time) / ms(*warm_time).max(0.001)
            ),
            ms(*warm_time),
            "",
            target
        );
    }
    for (provider, warm_bytes, exec_bytes) in &turn_bytes {
        println!(
            "{:<56} {:>7.0} B  (exec {:.0} B) {:>8}",
            format!("  {provider}: log + trace bytes per resumed turn, warm"),
            warm_bytes,
            exec_bytes,
            "<= 4096"
        );
    }
    for (provider, first, total) in &first_delta {
        println!(
            "{:<56} {:>7.1} ms (whole turn {:.1} ms)",
            format!("  {provider} warm: first streamed delta (median of 5)"),
            ms(*first),
            ms(*total)
        );
    }
    println!(
        "{:<56} {:>7.2} ms (p99 {:.2} ms, {lag_count} deltas) {:>8}",
        "  CLI printed a delta -> client got the chunk (median)",
        ms(lag_median),
        ms(lag_p99),
        "<= 20 ms"
    );
    let reference = |provider: &str| match provider {
        "codex" => "155 MB (+44 MB node wrapper)",
        "gemini" => "273-290 MB",
        _ => "314 MB at start, 600-740 MB later",
    };
    for (provider, bytes) in &rss {
        println!(
            "{:<56} {:>7.0} MB   (the CLI alone, per the reference: {})",
            format!("  RSS of the warm {provider} process group"),
            *bytes as f64 / 1_048_576.0,
            reference(provider)
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

    row(
        "gateway overhead per turn, codex exec",
        format!("{:.0} ms", ms(gateway.saturating_sub(direct))),
        "851 ms",
        "-",
        "chat completion through codara - the same `codex exec` run directly, medians of 9, instant mock model",
    );
    for (provider, warm_time, exec_time) in &modes {
        let target = if *provider == "opencode" {
            "<= 300 ms"
        } else {
            "<= 100 ms"
        };
        row(
            &format!("resumed turn above the model, {provider}"),
            format!(
                "warm {:.0} ms, exec {:.0} ms",
                ms(*warm_time),
                ms(*exec_time)
            ),
            "-",
            &format!("warm {target}"),
            "wall time of a resumed chat completion against an instant mock model, median of 9, warm and exec interleaved",
        );
    }
    for (provider, first, _) in &first_delta {
        row(
            &format!("first streamed delta, {provider} warm"),
            format!("{:.0} ms", ms(*first)),
            "-",
            "-",
            "request sent -> first non-empty content chunk, stream=true, median of 5",
        );
    }
    row(
        "model request bytes at turn 10 (codex warm)",
        format!("{} B, first prompt {}x", rows[9].1, rows[9].2),
        "first prompt 64x",
        "each message once",
        "bytes codex sent the mock for turn 10 of a conversation whose client resends its history",
    );
    for (provider, warm_bytes, exec_bytes) in &turn_bytes {
        row(
            &format!("log + trace bytes per turn, {provider}"),
            format!("warm {warm_bytes:.0} B, exec {exec_bytes:.0} B"),
            "-",
            "<= 4096 B",
            "growth of the /metrics byte counters over 9 resumed turns",
        );
    }
    println!(
        "  first prompt in turn 10's request: {}x (python original: 64x by turn 10)",
        rows[9].2
    );
}
