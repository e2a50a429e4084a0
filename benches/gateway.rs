//! `make bench`: start-up time, idle RSS, binary size and authenticated management throughput of
//! the release binary, printed beside the original Python gateway's figures and our targets.
//!
//! Method: every figure comes from the real `target/release/codara` on loopback. Start-up is
//! spawn → "listening" line on stdout (median of 15). RSS is VmRSS from /proc after 2 s idle.
//! Throughput: 32 keep-alive connections, each a thread, GET /management/v1/overview with a bearer
//! token for 5 s; p50/p99 over every request. The load generator shares the 2 cores with the
//! server, so req/s is a lower bound.
//! wrk (the tool users compare gateways with): the same GET, `wrk --latency -d5s` at 1 connection
//! (1 thread) and at 32 (2 threads), on a server with `TCP_NODELAY` (the default) and on one with
//! `[server].tcp_nodelay = false` in the same run, for the before/after of Nagle.
//! Telemetry: log + trace bytes per management request are the growth of
//! `codara_log_bytes_written_total` + `codara_trace_bytes_written_total` (from `/metrics`, which
//! is itself neither logged at info nor traced) over 2000 sequential keep-alive GETs of the
//! overview, after the writer has written all their traces; and wrk's req/s, p50 and p99 of the
//! same GET at 32 connections on a server with `[telemetry].enabled = true` (the default) and
//! one with `false`, started side by side and measured alternately, three rounds each. And,
//! because a shared machine makes those noisy, what tracing one request costs in this process:
//! 200 000 times (in batches of 4000 the writer's queue holds) a request's context, an `auth`
//! span, a root field and the root's end handed to a running writer; wall time per request and
//! process CPU (getrusage, the writer's included).

#![allow(clippy::print_stdout, clippy::disallowed_methods)] // Prints figures; spawns the binary.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::row;

const SECRET: &str = "bench-operator-secret-0123456789";

/// The binaries to measure: the release build, and the static musl build when `make static` made one.
fn binaries() -> Vec<(&'static str, PathBuf)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut list = vec![(
        "release (glibc, dynamic)",
        root.join("target/release/codara"),
    )];
    let musl = root.join("dist/codara-x86_64-linux-musl");
    if musl.exists() {
        list.push(("static musl (make static)", musl));
    }
    list
}

struct Running {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One wrk run: req/s, p50 and p99 (from `--latency`).
struct Wrk {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
}

fn wrk(addr: SocketAddr, token: &str, connections: usize, seconds: u64) -> Option<Wrk> {
    let threads = connections.min(2).to_string();
    let output = Command::new("wrk")
        .args(["--latency", "-t", &threads, "-c", &connections.to_string()])
        .arg(format!("-d{seconds}s"))
        .args(["-H", &format!("Authorization: Bearer {token}")])
        .arg(format!("http://{addr}/management/v1/overview"))
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&output.stdout);
    let millis = |value: &str| -> Option<f64> {
        let (number, unit) = value.split_at(value.find(|c: char| c.is_ascii_alphabetic())?);
        let number: f64 = number.parse().ok()?;
        Some(match unit {
            "us" => number / 1000.0,
            "ms" => number,
            "s" => number * 1000.0,
            _ => return None,
        })
    };
    let field = |prefix: &str| {
        text.lines()
            .map(str::trim)
            .find_map(|l| l.strip_prefix(prefix).map(str::trim).map(str::to_string))
    };
    Some(Wrk {
        rps: field("Requests/sec:")?.parse().ok()?,
        p50_ms: millis(&field("50%")?)?,
        p99_ms: millis(&field("99%")?)?,
    })
}

/// One GET on a fresh connection; the body.
fn get_body(addr: SocketAddr, path: &str, token: Option<&str>) -> String {
    let mut stream = TcpStream::connect(addr).expect("connect");
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n"
    )
    .expect("write");
    let mut raw = String::new();
    stream.read_to_string(&mut raw).expect("read");
    raw[raw.find("\r\n\r\n").expect("head") + 4..].to_string()
}

/// A sample without labels from `/metrics`.
fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

/// (log bytes, trace bytes, traces written) once the writer has written at least `traces`.
fn telemetry_counters(addr: SocketAddr, traces: f64) -> (f64, f64, f64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = get_body(addr, "/metrics", None);
        let written = metric(&text, "codara_trace_events_written_total");
        let queued = metric(&text, "codara_trace_queue_depth");
        if (written >= traces && queued == 0.0) || Instant::now() > deadline {
            return (
                metric(&text, "codara_log_bytes_written_total"),
                metric(&text, "codara_trace_bytes_written_total"),
                written,
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Process CPU time (user + system), for the in-process tracing cost.
fn cpu_time() -> Duration {
    // SAFETY: getrusage fills the struct we pass.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// What tracing one management request costs, in this process: the request's context, an
/// `auth` span, the user annotation, the root's end and its line handed to a running writer
/// (whose CPU is counted too). Returns (wall per request on the request thread, process CPU per
/// request, trace bytes per request).
fn tracing_cost() -> (Duration, Duration, f64) {
    let dir = temp_dir("tracing-cost");
    codara::testing::start_tracing(true, dir.clone());
    let (batches, batch): (u32, u32) = (50, 4000);
    let n = batches * batch;
    let (_, bytes0) = codara::testing::metrics::bytes_written();
    let dropped0 = codara::testing::metrics::traces_dropped_total();
    let cpu0 = cpu_time();
    let mut wall = Duration::ZERO;
    // In batches the writer can take (its queue holds 8192): a tight loop outruns any writer,
    // and a dropped trace would cost the writer nothing. Waiting costs no CPU.
    for _ in 0..batches {
        let started = Instant::now();
        for _ in 0..batch {
            let context = codara::testing::Context::for_request(None, None);
            context.enter(|| {
                let span = codara::testing::span("auth");
                codara::testing::annotate(codara::testing::Field::User, "operator");
                drop(span);
            });
            context.finish_http("GET", Some("/management/v1/overview"), 200, true);
        }
        wall += started.elapsed();
        while codara::testing::metrics::trace_queue_depth() > 0 {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    codara::testing::stop(Duration::from_secs(10));
    let cpu = cpu_time() - cpu0;
    let (_, bytes1) = codara::testing::metrics::bytes_written();
    let dropped = codara::testing::metrics::traces_dropped_total() - dropped0;
    assert_eq!(dropped, 0, "the in-process measurement dropped traces");
    let _ = std::fs::remove_dir_all(&dir);
    (wall / n, cpu / n, (bytes1 - bytes0) as f64 / f64::from(n))
}

/// `n` authenticated GETs of the overview, one after another on one keep-alive connection.
fn overview_gets(addr: SocketAddr, token: &str, n: usize) {
    let stream = TcpStream::connect(addr).expect("connect");
    let mut writer = stream.try_clone().expect("clone");
    let mut reader = BufReader::new(stream);
    let request = format!(
        "GET /management/v1/overview HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n"
    );
    for _ in 0..n {
        writer.write_all(request.as_bytes()).expect("write");
        assert_eq!(read_one(&mut reader), Some(200));
    }
}

/// Log + trace bytes per authenticated management GET: (log, trace) bytes per request.
fn bytes_per_request(binary: &Path) -> (f64, f64) {
    let dir = temp_dir("bytes");
    let (server, _) = start(binary, &dir);
    let token = login(server.addr);
    let (log0, trace0, written0) = telemetry_counters(server.addr, 1.0);
    let n = 2000;
    overview_gets(server.addr, &token, n);
    let (log1, trace1, _) = telemetry_counters(server.addr, written0 + n as f64);
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
    ((log1 - log0) / n as f64, (trace1 - trace0) / n as f64)
}

/// VmRSS after 10 000 authenticated management GETs on one keep-alive connection, in KiB.
fn rss_after_requests(binary: &Path, n: usize) -> u64 {
    let dir = temp_dir("rss10k");
    let (server, _) = start(binary, &dir);
    let token = login(server.addr);
    overview_gets(server.addr, &token, n);
    // Let the trace writer drain what it was handed.
    std::thread::sleep(Duration::from_secs(1));
    let kib = rss_kib(server.child.id());
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
    kib
}

fn start(binary: &Path, dir: &Path) -> (Running, Duration) {
    let started = Instant::now();
    let mut child = Command::new(binary)
        .args(["serve", "--port", "0"])
        .current_dir(dir)
        .env_clear()
        .env("API_TOKEN", SECRET)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("run target/release/codara (make bench builds it)");
    let stdout = child.stdout.take().expect("piped stdout");
    let mut lines = BufReader::new(stdout).lines();
    let addr = loop {
        let line = lines
            .next()
            .expect("codara exited before listening")
            .expect("read stdout");
        if let Some(rest) = line.split("listening on http://").nth(1) {
            break rest.trim().parse().expect("socket address");
        }
    };
    let elapsed = started.elapsed();
    std::thread::spawn(move || for _ in lines {});
    (Running { child, addr }, elapsed)
}

fn temp_dir(label: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("codara-bench-{label}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn median(mut values: Vec<Duration>) -> Duration {
    values.sort();
    values[values.len() / 2]
}

fn login(addr: SocketAddr) -> String {
    let body = format!(r#"{{"operator_secret":"{SECRET}"}}"#);
    let mut stream = TcpStream::connect(addr).expect("connect");
    write!(
        stream,
        "POST /management/v1/auth/token HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .expect("write");
    let mut raw = String::new();
    stream.read_to_string(&mut raw).expect("read");
    let json = &raw[raw.find("\r\n\r\n").expect("head") + 4..];
    let value: serde_json::Value = serde_json::from_str(json).expect("json");
    value["data"]["access_token"]
        .as_str()
        .expect("token")
        .to_string()
}

/// Reads one keep-alive response with a Content-Length body; returns its status.
fn read_one(reader: &mut BufReader<TcpStream>) -> Option<u16> {
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let status = line.split(' ').nth(1)?.parse().ok()?;
    let mut length = 0usize;
    loop {
        line.clear();
        reader.read_line(&mut line).ok()?;
        if line == "\r\n" || line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().ok()?;
            }
        }
    }
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body).ok()?;
    Some(status)
}

fn load(
    addr: SocketAddr,
    token: &str,
    connections: usize,
    duration: Duration,
) -> (usize, usize, Vec<Duration>) {
    let request = format!(
        "GET /management/v1/overview HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n"
    );
    let deadline = Instant::now() + duration;
    let handles: Vec<_> = (0..connections)
        .map(|_| {
            let request = request.clone();
            std::thread::spawn(move || {
                let mut latencies = Vec::new();
                let mut errors = 0;
                let Ok(stream) = TcpStream::connect(addr) else {
                    return (latencies, 1);
                };
                let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
                let mut writer = stream.try_clone().expect("clone");
                let mut reader = BufReader::new(stream);
                while Instant::now() < deadline {
                    let sent = Instant::now();
                    if writer.write_all(request.as_bytes()).is_err() {
                        errors += 1;
                        break;
                    }
                    match read_one(&mut reader) {
                        Some(200) => latencies.push(sent.elapsed()),
                        Some(_) => errors += 1,
                        None => {
                            errors += 1;
                            break;
                        }
                    }
                }
                (latencies, errors)
            })
        })
        .collect();
    let mut all = Vec::new();
    let mut errors = 0;
    for handle in handles {
        let (latencies, e) = handle.join().expect("load thread");
        all.extend(latencies);
        errors += e;
    }
    all.sort();
    (all.len(), errors, all)
}

struct Figures {
    size: u64,
    warm: Duration,
    cold: Duration,
    idle_kib: u64,
}

fn measure(binary: &Path) -> Figures {
    let size = std::fs::metadata(binary).expect("binary").len();
    let mut cold = Vec::new();
    let mut warm = Vec::new();
    let warm_dir = temp_dir("warm");
    drop(start(binary, &warm_dir));
    for i in 0..15 {
        let dir = temp_dir(&format!("cold{i}"));
        let (server, elapsed) = start(binary, &dir);
        cold.push(elapsed);
        drop(server);
        let _ = std::fs::remove_dir_all(&dir);
        let (server, elapsed) = start(binary, &warm_dir);
        warm.push(elapsed);
        drop(server);
    }
    let (server, _) = start(binary, &warm_dir);
    std::thread::sleep(Duration::from_secs(2));
    let idle_kib = rss_kib(server.child.id());
    drop(server);
    let _ = std::fs::remove_dir_all(&warm_dir);
    Figures {
        size,
        warm: median(warm),
        cold: median(cold),
        idle_kib,
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    // `cargo bench --bench gateway -- --tracing-cost`: only the in-process tracing figure.
    if std::env::args().any(|a| a == "--tracing-cost") {
        let (wall, cpu, bytes) = tracing_cost();
        println!(
            "tracing per request: {:.2} us wall, {:.2} us CPU, {bytes:.0} trace bytes",
            wall.as_secs_f64() * 1e6,
            cpu.as_secs_f64() * 1e6
        );
        return;
    }
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!("codara benchmark (loopback, 2-core shared machine; method in benches/gateway.rs)");
    println!(
        "{:<46} {:>14} {:>12} {:>10}",
        "figure", "codara", "python orig", "target"
    );
    let binaries = binaries();
    let release_mtime = std::fs::metadata(&binaries[0].1)
        .and_then(|m| m.modified())
        .ok();
    for (label, binary) in &binaries {
        let f = measure(binary);
        println!("-- {label}: {}", binary.display());
        let mtime = std::fs::metadata(binary).and_then(|m| m.modified()).ok();
        if mtime < release_mtime {
            println!("   (older than target/release/codara: run `make static` to refresh it)");
        }
        println!(
            "{:<46} {:>11.2} MB {:>12} {:>10}",
            "  binary size",
            f.size as f64 / 1e6,
            "51 MB+py",
            "<= 8 MB"
        );
        println!(
            "{:<46} {:>11.1} ms {:>12} {:>10}",
            "  start-up, existing data dir (median of 15)",
            ms(f.warm),
            "394 ms",
            "<= 20 ms"
        );
        println!(
            "{:<46} {:>11.1} ms {:>12} {:>10}",
            "  start-up, fresh data dir (median of 15)",
            ms(f.cold),
            "-",
            "-"
        );
        println!(
            "{:<46} {:>10.1} MiB {:>12} {:>10}",
            "  idle RSS after 2 s (VmRSS)",
            f.idle_kib as f64 / 1024.0,
            "64 MiB",
            "<= 6 MiB"
        );
        let build = if label.starts_with("release") {
            "glibc"
        } else {
            "static musl"
        };
        if build == "glibc" {
            row(
                "start-up, existing data dir",
                format!("{:.1} ms", ms(f.warm)),
                "394 ms",
                "<= 20 ms",
                "spawn -> 'listening' on stdout, median of 15, release build",
            );
            row(
                "start-up, fresh data dir",
                format!("{:.1} ms", ms(f.cold)),
                "-",
                "-",
                "the same in an empty dir (creates db, key, secret), median of 15",
            );
        }
        row(
            &format!("idle RSS, {build}"),
            format!("{:.1} MiB", f.idle_kib as f64 / 1024.0),
            "64 MiB",
            "<= 6 MiB",
            "VmRSS 2 s after start",
        );
        println!(
            "  ratios vs python: start-up {:.0}x faster, idle RSS {:.0}x smaller",
            394.0 / ms(f.warm),
            64.0 * 1024.0 / f.idle_kib.max(1) as f64
        );
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for (arch, file) in [
        ("x86_64", "dist/codara-x86_64-linux-musl"),
        ("aarch64", "dist/codara-aarch64-linux-musl"),
    ] {
        let value = std::fs::metadata(root.join(file))
            .map(|m| format!("{:.2} MB", m.len() as f64 / 1e6))
            .unwrap_or_else(|_| "not built".to_string());
        row(
            &format!("binary size, static {arch}"),
            value,
            "51 MB + Python",
            "<= 8 MB",
            &format!("{file} (make static / make static-arm64), stripped"),
        );
    }
    // The load runs on the release build, which `make bench` has just rebuilt.
    let binary = binaries[0].1.clone();
    let rss_10k = rss_after_requests(&binary, 10_000);
    row(
        "RSS after 10k management GETs",
        format!("{:.1} MiB", rss_10k as f64 / 1024.0),
        "-",
        "-",
        "VmRSS after 10 000 keep-alive GET /management/v1/overview, release build",
    );
    let dir = temp_dir("load");
    let (server, _) = start(&binary, &dir);
    let token = login(server.addr);
    let seconds = 5;
    let (ok, errors, latencies) = load(server.addr, &token, 32, Duration::from_secs(seconds));
    let busy_kib = rss_kib(server.child.id());
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
    let rps = ok as f64 / seconds as f64;
    let pct = |p: f64| {
        let i = ((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1));
        latencies.get(i).copied().unwrap_or_default()
    };
    println!("-- load on {}: GET /management/v1/overview with a bearer, 32 keep-alive conns, {seconds} s", binary.display());
    println!(
        "{:<46} {:>14.0} {:>12} {:>10}",
        "  req/s", rps, "316", ">= 10000"
    );
    println!(
        "{:<46} {:>11.2} ms {:>12} {:>10}",
        "  p50 latency",
        ms(pct(0.50)),
        "-",
        "-"
    );
    println!(
        "{:<46} {:>11.2} ms {:>12} {:>10}",
        "  p99 latency",
        ms(pct(0.99)),
        "137 ms",
        "<= 10 ms"
    );
    println!(
        "{:<46} {:>10.1} MiB {:>12} {:>10}",
        "  RSS after the load",
        busy_kib as f64 / 1024.0,
        "-",
        "-"
    );
    println!("{:<46} {:>14}", "  errors during load", errors);
    println!("  throughput vs python: {:.0}x", rps / 316.0);

    // The same GET measured with wrk, with and without TCP_NODELAY, interleaved in one run.
    let with_delay = temp_dir("nagle");
    std::fs::write(
        with_delay.join("codara.toml"),
        "[server]\ntcp_nodelay = false\n",
    )
    .expect("config");
    let without_delay = temp_dir("nodelay");
    let (fast, _) = start(&binary, &without_delay);
    let (slow, _) = start(&binary, &with_delay);
    let fast_token = login(fast.addr);
    let slow_token = login(slow.addr);
    println!("-- wrk --latency -d5s, GET /management/v1/overview with a bearer");
    println!(
        "{:<46} {:>9} {:>9} {:>9}   python orig",
        "", "req/s", "p50 ms", "p99 ms"
    );
    for connections in [1, 32] {
        for (label, addr, token) in [
            ("TCP_NODELAY (default)", fast.addr, &fast_token),
            ("Nagle on (tcp_nodelay = false)", slow.addr, &slow_token),
        ] {
            let Some(w) = wrk(addr, token, connections, 5) else {
                println!("  wrk is not installed (apt-get install wrk); skipped");
                return;
            };
            let python = match connections {
                1 => "279 req/s, p50 3.2 ms",
                _ => "316 req/s, p99 137 ms",
            };
            println!(
                "{:<46} {:>9.0} {:>9.2} {:>9.2}   {python}",
                format!("  c={connections:<2} {label}"),
                w.rps,
                w.p50_ms,
                w.p99_ms
            );
            if label.starts_with("TCP_NODELAY") {
                let (python, target) = match connections {
                    1 => ("279 req/s, p50 3.2 ms", "p50 <= 0.3 ms"),
                    _ => ("316 req/s, p99 137 ms", ">= 10000 req/s, p99 <= 10 ms"),
                };
                row(
                    &format!("management GET, {connections} connection(s)"),
                    format!(
                        "{:.0} req/s, p50 {:.2} ms, p99 {:.2} ms",
                        w.rps, w.p50_ms, w.p99_ms
                    ),
                    python,
                    target,
                    &format!(
                        "wrk --latency -t{} -c{connections} -d5s, bearer GET /management/v1/overview, loopback, wrk on the same 2 cores",
                        connections.min(2)
                    ),
                );
            }
        }
    }
    println!("  targets: >= 10000 req/s and p99 <= 10 ms at c=32; p50 <= 0.3 ms at c=1");
    drop(fast);
    drop(slow);
    let _ = std::fs::remove_dir_all(&with_delay);
    let _ = std::fs::remove_dir_all(&without_delay);

    // Telemetry: what each request writes, and what tracing costs the management GET.
    let (log_bytes, trace_bytes) = bytes_per_request(&binary);
    println!("-- telemetry");
    println!(
        "{:<46} {:>11.0} B {:>12} {:>10}",
        "  log + trace bytes per management GET",
        log_bytes + trace_bytes,
        "-",
        "<= 512 B"
    );
    println!(
        "{:<46} {:>11.0} B / {:.0} B",
        "    of which log line / trace line", log_bytes, trace_bytes
    );
    row(
        "log + trace bytes per management GET",
        format!(
            "{:.0} B ({log_bytes:.0} + {trace_bytes:.0})",
            log_bytes + trace_bytes
        ),
        "-",
        "<= 512 B",
        "growth of the /metrics byte counters over 2000 keep-alive GETs",
    );
    let (wall, cpu, bytes) = tracing_cost();
    println!(
        "{:<46} {:>10.2} us {:>12} {:>10}",
        "  tracing per request, in-process (wall)",
        wall.as_secs_f64() * 1e6,
        "-",
        "-"
    );
    println!(
        "{:<46} {:>10.2} us   ({bytes:.0} trace bytes each, writer thread included)",
        "  tracing per request, process CPU",
        cpu.as_secs_f64() * 1e6
    );
    let traced_dir = temp_dir("traced");
    let untraced_dir = temp_dir("untraced");
    std::fs::write(
        untraced_dir.join("codara.toml"),
        "[telemetry]\nenabled = false\n",
    )
    .expect("config");
    let (traced, _) = start(&binary, &traced_dir);
    let (untraced, _) = start(&binary, &untraced_dir);
    let traced_token = login(traced.addr);
    let untraced_token = login(untraced.addr);
    println!("-- wrk --latency -d5s -c32, GET /management/v1/overview, alternating, 3 rounds");
    println!("{:<46} {:>9} {:>9} {:>9}", "", "req/s", "p50 ms", "p99 ms");
    for round in 1..=3 {
        for (label, addr, token) in [
            (
                "[telemetry].enabled = true (default)",
                traced.addr,
                &traced_token,
            ),
            (
                "[telemetry].enabled = false",
                untraced.addr,
                &untraced_token,
            ),
        ] {
            let Some(w) = wrk(addr, token, 32, 5) else {
                println!("  wrk is not installed (apt-get install wrk); skipped");
                return;
            };
            println!(
                "{:<46} {:>9.0} {:>9.2} {:>9.2}",
                format!("  #{round} {label}"),
                w.rps,
                w.p50_ms,
                w.p99_ms
            );
        }
    }
    drop(traced);
    drop(untraced);
    let _ = std::fs::remove_dir_all(&traced_dir);
    let _ = std::fs::remove_dir_all(&untraced_dir);
}
