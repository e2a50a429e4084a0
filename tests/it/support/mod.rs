//! Test harness: start the real `codara` binary on an ephemeral port with a temp data dir, and
//! speak raw HTTP/1.1 to it (raw so tests control every byte: slow bodies, odd paths).

#![allow(dead_code)]
// The clippy.toml bans (env reads, `Command::new`) guard src/; a harness that spawns the binary
// under test with a controlled environment needs exactly those calls.
#![allow(clippy::disallowed_methods)]

pub mod fake_chatgpt;
pub mod fake_github;
pub mod fake_telegram;
pub mod mock_model;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The operator secret most tests configure through `API_TOKEN`.
pub const SECRET: &str = "test-operator-secret-0123456789";

/// A temporary directory removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    /// A fresh empty directory under the system temp dir.
    pub fn new(label: &str) -> TempDir {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("codara-it-{label}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The path of the binary under test.
pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_codara")
}

/// Runs `codara ARGS` to completion in `dir` with exactly `env` (plus PATH), with a time bound.
pub fn run_cli(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut command = Command::new(binary());
    command
        .args(args)
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    for (k, v) in env {
        command.env(k, v);
    }
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        assert!(
            Instant::now() < deadline,
            "codara {args:?} did not finish within 60 s"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let output = child.wait_with_output().unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// How to start a server.
pub struct Builder {
    dir: Option<PathBuf>,
    toml: Option<String>,
    env: BTreeMap<String, String>,
    args: Vec<String>,
}

/// Starts building a server in a new temp dir with `API_TOKEN` = [`SECRET`].
pub fn server() -> Builder {
    let mut env = BTreeMap::new();
    env.insert("API_TOKEN".to_string(), SECRET.to_string());
    Builder {
        dir: None,
        toml: None,
        env,
        args: Vec::new(),
    }
}

impl Builder {
    /// Writes this text as `codara.toml` in the working directory.
    pub fn toml(mut self, text: &str) -> Builder {
        self.toml = Some(text.to_string());
        self
    }

    /// Sets an environment variable (or removes it with `None`).
    pub fn env(mut self, name: &str, value: Option<&str>) -> Builder {
        match value {
            Some(value) => self.env.insert(name.to_string(), value.to_string()),
            None => self.env.remove(name),
        };
        self
    }

    /// Adds command-line arguments after `serve`.
    pub fn arg(mut self, arg: &str) -> Builder {
        self.args.push(arg.to_string());
        self
    }

    /// Uses an existing working directory (to restart on the same data).
    pub fn dir(mut self, dir: &Path) -> Builder {
        self.dir = Some(dir.to_path_buf());
        self
    }

    /// Spawns `codara serve --port 0` and waits for its "listening" line.
    pub fn start(self) -> Server {
        self.try_start().unwrap_or_else(|(code, out, err)| {
            panic!("codara serve exited with {code:?}\nstdout:\n{out}\nstderr:\n{err}")
        })
    }

    /// Like [`Builder::start`], but returns the exit code and output when the server does not come up.
    pub fn try_start(self) -> Result<Server, (Option<i32>, String, String)> {
        let (tempdir, dir) = match self.dir {
            Some(dir) => (None, dir),
            None => {
                let temp = TempDir::new("srv");
                let path = temp.path().to_path_buf();
                (Some(temp), path)
            }
        };
        if let Some(toml) = &self.toml {
            std::fs::write(dir.join("codara.toml"), toml).unwrap();
        }
        let mut command = Command::new(binary());
        command
            .arg("serve")
            .arg("--port")
            .arg("0")
            .args(&self.args)
            .current_dir(&dir)
            .env_clear();
        command.env("PATH", std::env::var("PATH").unwrap_or_default());
        for (k, v) in &self.env {
            command.env(k, v);
        }
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let stderr = child.stderr.take().unwrap();
        let stderr_path = dir.join("stderr.log");
        let stderr_file = std::fs::File::create(&stderr_path).unwrap();
        std::thread::spawn(move || {
            let mut stderr = stderr;
            let mut file = stderr_file;
            let _ = std::io::copy(&mut stderr, &mut file);
        });
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = Vec::new();
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                lines.push(line.clone());
                let _ = tx.send(line);
            }
        });
        let mut printed = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        let addr = loop {
            match rx.recv_timeout(Duration::from_millis(50)) {
                Ok(line) => {
                    printed.push(line.clone());
                    if let Some(rest) = line.split("listening on http://").nth(1) {
                        break rest.trim().parse::<SocketAddr>().unwrap();
                    }
                }
                Err(_) => {
                    if let Some(status) = child.try_wait().unwrap() {
                        std::thread::sleep(Duration::from_millis(100));
                        let err = std::fs::read_to_string(&stderr_path).unwrap_or_default();
                        return Err((status.code(), printed.join("\n"), err));
                    }
                    assert!(
                        Instant::now() < deadline,
                        "codara serve did not start within 30 s"
                    );
                }
            }
        };
        // Collect the rest of the banner (secret lines) without blocking for long.
        while let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
            printed.push(line);
        }
        Ok(Server {
            child: Some(child),
            addr,
            dir,
            _tempdir: tempdir,
            stdout: printed,
            stderr_path,
        })
    }
}

/// A running `codara serve`; killed on drop.
pub struct Server {
    child: Option<Child>,
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its working directory (holds `data/`, `codara.toml`, `stderr.log`).
    pub dir: PathBuf,
    _tempdir: Option<TempDir>,
    /// What it printed on stdout before serving.
    pub stdout: Vec<String>,
    stderr_path: PathBuf,
}

impl Server {
    /// The data dir under the working directory (the default layout).
    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// Everything written to stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// Sends `signal` and waits (bounded) for the exit code.
    pub fn signal_and_wait(&mut self, signal: &str) -> Option<i32> {
        self.signal(signal);
        self.wait_exit(Duration::from_secs(20))
    }

    /// Sends `signal` (TERM, INT or KILL) to the server without waiting.
    pub fn signal(&self, signal: &str) {
        let child = self.child.as_ref().expect("the server already exited");
        let signo = match signal {
            "TERM" => libc::SIGTERM,
            "INT" => libc::SIGINT,
            "KILL" => libc::SIGKILL,
            other => panic!("unsupported signal {other}"),
        };
        // SAFETY: signalling our own child process.
        unsafe { libc::kill(child.id() as libc::pid_t, signo) };
    }

    /// Waits up to `timeout` for the server to exit and returns its exit code (kills it and
    /// panics when it does not exit in time).
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let mut child = self.child.take().expect("the server already exited");
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status.code();
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "codara did not exit within {timeout:?}\nstderr:\n{}",
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits (bounded) until the server's stderr contains `needle`.
    pub fn wait_for_stderr(&self, needle: &str, timeout: Duration) {
        wait_until(timeout, &format!("stderr to contain {needle:?}"), || {
            self.stderr().contains(needle)
        });
    }

    /// The text of every `codara-*.jsonl` log file under the data dir's `logs/`.
    pub fn log_files_text(&self) -> String {
        log_files_text(&self.data_dir())
    }

    /// Stops the server and keeps its directory (for restarts).
    pub fn stop_keep_dir(mut self) -> (PathBuf, Option<TempDir>) {
        let code = self.signal_and_wait("TERM");
        assert_eq!(code, Some(0), "clean exit on SIGTERM");
        (self.dir.clone(), self._tempdir.take())
    }

    /// Sends one request and reads the whole response.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> HttpResponse {
        http(self.addr, method, path, headers, body)
    }

    /// GET with an optional bearer token.
    pub fn get(&self, path: &str, bearer: Option<&str>) -> HttpResponse {
        let auth = bearer.map(|t| format!("Bearer {t}"));
        let headers: Vec<(&str, &str)> =
            auth.iter().map(|a| ("Authorization", a.as_str())).collect();
        self.request("GET", path, &headers, None)
    }

    /// POST JSON with an optional bearer token.
    pub fn post_json(&self, path: &str, bearer: Option<&str>, body: &str) -> HttpResponse {
        let auth = bearer.map(|t| format!("Bearer {t}"));
        let mut headers: Vec<(&str, &str)> = vec![("Content-Type", "application/json")];
        if let Some(auth) = &auth {
            headers.push(("Authorization", auth.as_str()));
        }
        self.request("POST", path, &headers, Some(body.as_bytes()))
    }

    /// Waits (bounded) until the gateway has retired every warm agent process (needs a short
    /// `warm_idle_seconds`): their credentials are removed from the CLI homes then.
    pub fn wait_for_no_warm_processes(&self, token: &str) {
        let mut last = serde_json::Value::Null;
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            last = self.get("/management/v1/overview", Some(token)).json()["data"]["warm"].clone();
            if last["processes"].as_array().is_some_and(|p| p.is_empty()) && last["retiring"] == 0 {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("the warm processes were not retired within 30 s: {last}");
    }

    /// Exchanges [`SECRET`] for an access token.
    pub fn login(&self) -> String {
        let response = self.post_json(
            "/management/v1/auth/token",
            None,
            &format!(r#"{{"operator_secret":"{SECRET}"}}"#),
        );
        assert_eq!(response.status, 200, "{}", response.text());
        response.json()["data"]["access_token"]
            .as_str()
            .unwrap()
            .to_string()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A response read off the wire.
#[derive(Debug)]
pub struct HttpResponse {
    /// Status code.
    pub status: u16,
    /// Headers, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// Body bytes (de-chunked).
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// A header value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON (panics with the text when it is not).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
}

/// One HTTP/1.1 request over a fresh connection (`Connection: close`), bounded to 30 s.
pub fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> HttpResponse {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(180)))
        .unwrap();
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if let Some(body) = body {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).unwrap();
    if let Some(body) = body {
        stream.write_all(body).unwrap();
    }
    read_response(&mut stream)
}

/// Runs `script` with the pinned official OpenAI Python SDK (`make sdk` installs it into
/// `.sdk/`), with `OPENAI_BASE_URL` pointing at `addr`'s `/v1` and `OPENAI_API_KEY` = `key`,
/// bounded to 120 s. Returns (exit code, stdout, stderr).
pub fn sdk_python(addr: SocketAddr, key: &str, script: &str) -> (i32, String, String) {
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join(".sdk/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run scripts/install-sdk.sh (make sdk)",
        python.display()
    );
    let child = Command::new(python)
        .args(["-c", script])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("OPENAI_BASE_URL", format!("http://{addr}/v1"))
        .env("OPENAI_API_KEY", key)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id() as libc::pid_t;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let output = match rx.recv_timeout(Duration::from_secs(120)) {
        Ok(output) => output.unwrap(),
        Err(_) => {
            // SAFETY: killing the child this function started.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            panic!("the SDK script did not finish within 120 s:\n{script}");
        }
    };
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// POSTs JSON with a bearer token on a thread, for requests that must run while the test does
/// something else (a long turn, a race); join the handle for the response.
pub fn post_json_in_background(
    addr: SocketAddr,
    path: &str,
    bearer: &str,
    body: String,
) -> std::thread::JoinHandle<HttpResponse> {
    let (path, auth) = (path.to_string(), format!("Bearer {bearer}"));
    std::thread::spawn(move || {
        http(
            addr,
            "POST",
            &path,
            &[
                ("Authorization", &auth),
                ("Content-Type", "application/json"),
            ],
            Some(body.as_bytes()),
        )
    })
}

/// Reads one full response from `stream` (until close or the declared length).
pub fn read_response(stream: &mut TcpStream) -> HttpResponse {
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    parse_response(&raw)
}

/// Parses raw response bytes.
pub fn parse_response(raw: &[u8]) -> HttpResponse {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| {
            panic!(
                "no complete response head: {:?}",
                String::from_utf8_lossy(raw)
            )
        });
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    let status = status_line.split(' ').nth(1).unwrap().parse().unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.contains("chunked"));
    if chunked {
        body = dechunk(&body);
    }
    HttpResponse {
        status,
        headers,
        body,
    }
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(end) = data.windows(2).position(|w| w == b"\r\n") {
        let size =
            usize::from_str_radix(String::from_utf8_lossy(&data[..end]).trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        let start = end + 2;
        out.extend_from_slice(&data[start..(start + size).min(data.len())]);
        data = &data[(start + size + 2).min(data.len())..];
    }
    out
}

/// Polls `condition` every 20 ms until it holds; panics naming `what` after `timeout`.
pub fn wait_until(timeout: Duration, what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !condition() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The concatenated `codara-*.jsonl` files of `<data_dir>/logs`.
pub fn log_files_text(data_dir: &Path) -> String {
    let mut names: Vec<PathBuf> = std::fs::read_dir(data_dir.join("logs"))
        .map(|entries| entries.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    names.retain(|p| {
        let name = p.file_name().unwrap_or_default().to_string_lossy();
        name.starts_with("codara-") && name.ends_with(".jsonl")
    });
    names.sort();
    names
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect()
}

/// The messages of the JSON log lines in `text` (lines that are not JSON are skipped).
pub fn log_messages(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter_map(|v| v["message"].as_str().map(str::to_string))
        .collect()
}

/// A master key of 32 copies of `byte`, as 64 hex digits.
pub fn hex_key(byte: u8) -> String {
    format!("{byte:02x}").repeat(32)
}

/// Opens a raw connection with 30 s read/write timeouts.
pub fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(180)))
        .unwrap();
    stream
        .set_write_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    stream
}

/// Whether the server already answered on `stream` or closed it (without waiting).
pub fn was_answered(stream: &mut TcpStream) -> bool {
    stream.set_nonblocking(true).unwrap();
    let mut byte = [0u8; 1];
    let answered = match stream.peek(&mut byte) {
        Ok(_) => true,
        Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
    };
    stream.set_nonblocking(false).unwrap();
    answered
}

/// Reads exactly one response (head, then `Content-Length` bytes or a chunked body, else to
/// EOF), waiting at most `timeout`. `None` when the connection closed, was reset or stayed silent
/// before any byte arrived.
pub fn read_one_response(stream: &mut TcpStream, timeout: Duration) -> Option<HttpResponse> {
    let deadline = Instant::now() + timeout;
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        if let Some(split) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok());
            let chunked = head.contains("transfer-encoding: chunked");
            let body = &raw[split + 4..];
            let complete = match length {
                Some(length) => body.len() >= length,
                None if chunked => body.windows(5).any(|w| w == b"0\r\n\r\n"),
                None => false,
            };
            if complete {
                break;
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        stream.set_read_timeout(Some(left)).unwrap();
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
        }
    }
    if raw.windows(4).any(|w| w == b"\r\n\r\n") {
        Some(parse_response(&raw))
    } else {
        None
    }
}
