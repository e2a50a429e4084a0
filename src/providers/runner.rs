//! The one place child processes are created: a clean environment, its own process group,
//! stdin closed, output captured, and a deadline after which the whole group is killed.
//!
//! Must not inherit the gateway's environment: only `PATH` and `HOME` from the host, plus what
//! the caller adds explicitly.

use crate::config::HostEnv;
use crate::error::{Error, Result};
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Captured output of a finished child.
#[derive(Debug)]
pub struct Captured {
    /// Exit code, if it exited normally.
    pub code: Option<i32>,
    /// Standard output, lossily decoded.
    pub stdout: String,
    /// Standard error, lossily decoded.
    pub stderr: String,
}

/// A command for `program` with a from-scratch environment in a new process group.
#[allow(clippy::disallowed_methods)] // The one sanctioned constructor of child processes.
pub fn command(program: &Path, host: &HostEnv) -> Command {
    let mut command = Command::new(program);
    command
        .env_clear()
        .env("PATH", &host.path)
        .stdin(Stdio::null())
        .process_group(0);
    if let Some(home) = &host.home {
        command.env("HOME", home);
    }
    command
}

/// Runs `command` to completion, killing its process group if it outlives `timeout`.
///
/// Short helper runs (git, `--version`) go through here: output is read by two threads and the
/// caller waits on their results, so a finished child is noticed at once (no polling interval).
pub fn capture(mut command: Command, timeout: Duration) -> Result<Captured> {
    let program = command.get_program().to_string_lossy().into_owned();
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::io(&program, e))?;
    let pid = child.id() as libc::pid_t;
    let (tx, rx) = std::sync::mpsc::channel::<(usize, String)>();
    let streams = [
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    ];
    for (slot, stream) in streams.into_iter().enumerate() {
        let tx = tx.clone();
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut stream) = stream {
                // Bounded: a chatty child cannot grow this without limit.
                let _ = stream.by_ref().take(1024 * 1024).read_to_end(&mut bytes);
            }
            let _ = tx.send((slot, String::from_utf8_lossy(&bytes).into_owned()));
        });
    }
    drop(tx);
    let deadline = Instant::now() + timeout;
    let mut outputs = [String::new(), String::new()];
    let mut timed_out = false;
    for _ in 0..2 {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok((slot, text)) => outputs[slot] = text,
            Err(_) => {
                timed_out = true;
                break;
            }
        }
    }
    // Kill the group either way: on timeout to stop it, otherwise to reap grandchildren that
    // outlived it (a process group id is not reused while its leader is unreaped).
    // SAFETY: signalling the process group we created.
    unsafe { libc::kill(-pid, libc::SIGKILL) };
    let status = child.wait().map_err(|e| Error::io(&program, e))?;
    if timed_out {
        return Err(Error::Unavailable {
            code: "timeout",
            message: format!("{program} did not finish within {} s", timeout.as_secs()),
        });
    }
    let [stdout, stderr] = outputs;
    Ok(Captured {
        code: status.code(),
        stdout,
        stderr,
    })
}

/// Bounds of one CLI run.
#[derive(Debug, Clone, Copy, Default)]
pub struct Limits {
    /// Kill the run when neither pipe produced a byte for this long.
    pub stall: Option<Duration>,
    /// Kill the run when it takes longer than this in total.
    pub turn: Option<Duration>,
}

/// How a watched run ended.
#[derive(Debug, Clone)]
pub struct RunOutcome {
    /// Exit code, when the CLI exited by itself.
    pub exit_code: Option<i32>,
    /// The signal that ended it, if any.
    pub signal: Option<i32>,
    /// Killed for silence.
    pub stalled: bool,
    /// Killed for exceeding the turn timeout.
    pub timed_out: bool,
    /// The last part of stderr (bounded), for error messages.
    pub stderr_tail: String,
    /// Wall time of the run.
    pub duration: Duration,
}

const STDERR_TAIL_BYTES: usize = 16 * 1024;
const KILL_GRACE: Duration = Duration::from_secs(5);
/// After the CLI itself exits, how long grandchildren may keep the pipes open.
const PIPE_GRACE: Duration = Duration::from_secs(2);

static LIVE_GROUPS: std::sync::Mutex<Vec<libc::pid_t>> = std::sync::Mutex::new(Vec::new());

/// Sends SIGTERM, then SIGKILL after the grace period, to every CLI process group still running.
pub fn terminate_all(grace: Duration) {
    let groups = LIVE_GROUPS.lock().map(|g| g.clone()).unwrap_or_default();
    for pgid in &groups {
        // SAFETY: signalling process groups we created.
        unsafe { libc::kill(-pgid, libc::SIGTERM) };
    }
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline && LIVE_GROUPS.lock().map(|g| !g.is_empty()).unwrap_or(false) {
        std::thread::sleep(Duration::from_millis(50));
    }
    for pgid in LIVE_GROUPS.lock().map(|g| g.clone()).unwrap_or_default() {
        // SAFETY: as above.
        unsafe { libc::kill(-pgid, libc::SIGKILL) };
    }
}

/// Kills and reaps the child's process group when dropped, whatever path the run took.
struct GroupGuard {
    child: std::process::Child,
    pgid: libc::pid_t,
    reaped: Option<std::process::ExitStatus>,
}

impl GroupGuard {
    fn signal(&self, signal: libc::c_int) {
        // SAFETY: signalling the process group we created for this child.
        unsafe { libc::kill(-self.pgid, signal) };
    }

    fn try_reap(&mut self) -> Option<std::process::ExitStatus> {
        if self.reaped.is_none() {
            self.reaped = self.child.try_wait().ok().flatten();
        }
        self.reaped
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        self.signal(libc::SIGKILL);
        if self.reaped.is_none() {
            let _ = self.child.wait();
        }
        if let Ok(mut groups) = LIVE_GROUPS.lock() {
            groups.retain(|g| *g != self.pgid);
        }
    }
}

/// Runs `spec` under the watchdog, calling `on_line` with each complete stdout line as it arrives.
///
/// One thread (the caller's) polls stdout and stderr together with poll(2); the poll timeout is
/// the stall watchdog. On silence or overrun the whole process group gets SIGTERM, then SIGKILL
/// after 5 s. Grandchildren that keep the pipes open after the CLI exits are killed after 2 s.
#[allow(clippy::disallowed_methods)] // The one sanctioned constructor of child processes.
pub fn run(
    spec: &super::CommandSpec,
    limits: Limits,
    on_line: &mut dyn FnMut(&str),
) -> Result<RunOutcome> {
    use std::os::unix::io::AsRawFd;
    let program = spec.program.display().to_string();
    let mut command = Command::new(&spec.program);
    command
        .args(&spec.args)
        .env_clear()
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .current_dir(&spec.cwd)
        .stdin(if spec.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let started = Instant::now();
    let mut child = command.spawn().map_err(|e| Error::io(&program, e))?;
    let pgid = child.id() as libc::pid_t;
    if let Ok(mut groups) = LIVE_GROUPS.lock() {
        groups.push(pgid);
    }
    let stdin = child.stdin.take();
    let mut stdout = child.stdout.take();
    let mut stderr = child.stderr.take();
    let mut guard = GroupGuard {
        child,
        pgid,
        reaped: None,
    };
    if let (Some(mut pipe), Some(input)) = (stdin, spec.stdin.clone()) {
        // A writer thread: a large prompt must not deadlock against a child filling stdout.
        std::thread::spawn(move || {
            use std::io::Write;
            let _ = pipe.write_all(input.as_bytes());
        });
    }
    for pipe in [
        stdout.as_ref().map(|p| p.as_raw_fd()),
        stderr.as_ref().map(|p| p.as_raw_fd()),
    ]
    .into_iter()
    .flatten()
    {
        // SAFETY: fcntl on descriptors we own.
        unsafe {
            let flags = libc::fcntl(pipe, libc::F_GETFL);
            libc::fcntl(pipe, libc::F_SETFL, flags | libc::O_NONBLOCK);
        }
    }

    let mut line_buf: Vec<u8> = Vec::new();
    let mut stderr_tail: Vec<u8> = Vec::new();
    let mut last_output = Instant::now();
    let mut exited_at: Option<Instant> = None;
    let mut killing: Option<(Instant, bool)> = None; // (SIGTERM sent at, stalled?)
    let mut stalled = false;
    let mut timed_out = false;
    let mut chunk = [0u8; 16 * 1024];

    while stdout.is_some() || stderr.is_some() {
        let now = Instant::now();
        if guard.try_reap().is_some() && exited_at.is_none() {
            exited_at = Some(now);
        }
        if exited_at.is_some_and(|t| now.duration_since(t) > PIPE_GRACE) {
            guard.signal(libc::SIGKILL);
            break;
        }
        match killing {
            Some((sent, _)) if now.duration_since(sent) > KILL_GRACE => {
                guard.signal(libc::SIGKILL);
                break;
            }
            Some(_) => {}
            None => {
                let silent = limits
                    .stall
                    .is_some_and(|s| now.duration_since(last_output) >= s);
                let overrun = limits
                    .turn
                    .is_some_and(|t| now.duration_since(started) >= t);
                if silent || overrun {
                    stalled = silent && !overrun;
                    timed_out = overrun;
                    guard.signal(libc::SIGTERM);
                    killing = Some((now, stalled));
                }
            }
        }
        let mut fds: Vec<libc::pollfd> = Vec::with_capacity(2);
        for pipe in [
            stdout.as_ref().map(|p| p.as_raw_fd()),
            stderr.as_ref().map(|p| p.as_raw_fd()),
        ]
        .into_iter()
        .flatten()
        {
            fds.push(libc::pollfd {
                fd: pipe,
                events: libc::POLLIN,
                revents: 0,
            });
        }
        // Wake at least every 200 ms to check exit, grace periods and deadlines.
        let mut wait = Duration::from_millis(200);
        if let Some(stall) = limits.stall {
            wait = wait.min(stall.saturating_sub(now.duration_since(last_output)));
        }
        // SAFETY: `fds` is a live array of `fds.len()` pollfd structs.
        let rc = unsafe {
            libc::poll(
                fds.as_mut_ptr(),
                fds.len() as libc::nfds_t,
                wait.as_millis().max(1) as libc::c_int,
            )
        };
        if rc < 0 {
            let err = std::io::Error::last_os_error();
            if err.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(Error::io("poll", err));
        }
        if let Some(pipe) = stdout.as_mut() {
            match read_available(pipe, &mut chunk) {
                ReadResult::Data(n) => {
                    last_output = Instant::now();
                    line_buf.extend_from_slice(&chunk[..n]);
                    while let Some(pos) = line_buf.iter().position(|b| *b == b'\n') {
                        let line: Vec<u8> = line_buf.drain(..=pos).collect();
                        let text = String::from_utf8_lossy(&line);
                        let text = text.trim_end_matches(['\n', '\r']);
                        if !text.is_empty() {
                            on_line(text);
                        }
                    }
                }
                ReadResult::Eof => stdout = None,
                ReadResult::Empty => {}
            }
        }
        if let Some(pipe) = stderr.as_mut() {
            match read_available(pipe, &mut chunk) {
                ReadResult::Data(n) => {
                    last_output = Instant::now();
                    stderr_tail.extend_from_slice(&chunk[..n]);
                    if stderr_tail.len() > STDERR_TAIL_BYTES {
                        let excess = stderr_tail.len() - STDERR_TAIL_BYTES;
                        stderr_tail.drain(..excess);
                    }
                }
                ReadResult::Eof => stderr = None,
                ReadResult::Empty => {}
            }
        }
    }
    if !line_buf.is_empty() {
        let text = String::from_utf8_lossy(&line_buf).trim().to_string();
        if !text.is_empty() {
            on_line(&text);
        }
    }
    // Wait for the CLI itself (bounded: it is SIGKILLed if it ignores TERM).
    let deadline = Instant::now() + KILL_GRACE;
    let status = loop {
        if let Some(status) = guard.try_reap() {
            break Some(status);
        }
        if Instant::now() > deadline {
            guard.signal(libc::SIGKILL);
            break guard.child.wait().ok();
        }
        if killing.is_none() && !stalled && !timed_out && exited_at.is_none() {
            // Pipes closed but the CLI still runs: apply the same limits while waiting.
            let now = Instant::now();
            if limits
                .turn
                .is_some_and(|t| now.duration_since(started) >= t)
            {
                timed_out = true;
                guard.signal(libc::SIGTERM);
                killing = Some((now, false));
            }
        }
        std::thread::sleep(Duration::from_millis(1));
    };
    guard.reaped = status;
    use std::os::unix::process::ExitStatusExt;
    Ok(RunOutcome {
        exit_code: status.and_then(|s| s.code()),
        signal: status.and_then(|s| s.signal()),
        stalled,
        timed_out,
        stderr_tail: String::from_utf8_lossy(&stderr_tail).into_owned(),
        duration: started.elapsed(),
    })
}

enum ReadResult {
    Data(usize),
    Eof,
    Empty,
}

fn read_available(pipe: &mut impl Read, buf: &mut [u8]) -> ReadResult {
    match pipe.read(buf) {
        Ok(0) => ReadResult::Eof,
        Ok(n) => ReadResult::Data(n),
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted
            ) =>
        {
            ReadResult::Empty
        }
        Err(_) => ReadResult::Eof,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::CommandSpec;

    fn sh(script: &str) -> CommandSpec {
        CommandSpec {
            program: "/bin/sh".into(),
            args: vec!["-c".into(), script.into()],
            env: vec![("PATH".into(), "/usr/bin:/bin".into())],
            cwd: std::env::temp_dir(),
            stdin: None,
        }
    }

    fn run_collect(spec: &CommandSpec, limits: Limits) -> (RunOutcome, Vec<String>) {
        let mut lines = Vec::new();
        let outcome = run(spec, limits, &mut |l| lines.push(l.to_string())).unwrap();
        (outcome, lines)
    }

    #[test]
    fn lines_exit_code_and_stderr() {
        let (outcome, lines) = run_collect(
            &sh("echo one; printf 'two\\nthree'; echo oops >&2; exit 3"),
            Limits::default(),
        );
        assert_eq!(lines, ["one", "two", "three"]);
        assert_eq!(outcome.exit_code, Some(3));
        assert!(outcome.stderr_tail.contains("oops"));
        assert!(!outcome.stalled);
    }

    #[test]
    fn stdin_is_written_then_closed() {
        let mut spec = sh("cat");
        spec.stdin = Some("hello stdin\n".into());
        let (outcome, lines) = run_collect(
            &spec,
            Limits {
                stall: Some(Duration::from_secs(5)),
                turn: None,
            },
        );
        assert_eq!(lines, ["hello stdin"]);
        assert_eq!(outcome.exit_code, Some(0));
    }

    #[test]
    fn environment_is_only_what_the_spec_says() {
        let (_, lines) = run_collect(&sh("env | sort"), Limits::default());
        assert!(
            lines.iter().all(|l| l.starts_with("PATH=")
                || l.starts_with("PWD=")
                || l.starts_with("SHLVL=")
                || l.starts_with("_=")),
            "{lines:?}"
        );
    }

    #[test]
    fn stall_kills_the_group_including_grandchildren() {
        let marker = std::env::temp_dir().join(crate::crypto::random_id("codara-stall-"));
        let script = format!(
            "echo started; (sleep 30; touch {}) & sleep 30",
            marker.display()
        );
        let (outcome, lines) = run_collect(
            &sh(&script),
            Limits {
                stall: Some(Duration::from_millis(300)),
                turn: None,
            },
        );
        assert_eq!(lines, ["started"]);
        assert!(outcome.stalled);
        assert!(
            outcome.duration < Duration::from_secs(10),
            "{:?}",
            outcome.duration
        );
        assert_eq!(outcome.signal, Some(libc::SIGTERM));
        std::thread::sleep(Duration::from_millis(200));
        assert!(!marker.exists());
    }

    #[test]
    fn turn_timeout_applies_even_with_output() {
        let (outcome, _) = run_collect(
            &sh("while true; do echo tick; sleep 0.05; done"),
            Limits {
                stall: Some(Duration::from_secs(5)),
                turn: Some(Duration::from_millis(400)),
            },
        );
        assert!(outcome.timed_out);
        assert!(!outcome.stalled);
    }

    #[test]
    fn grandchild_holding_pipes_does_not_hang() {
        let started = Instant::now();
        let (outcome, lines) = run_collect(&sh("echo done; sleep 60 &"), Limits::default());
        assert_eq!(lines, ["done"]);
        assert_eq!(outcome.exit_code, Some(0));
        assert!(started.elapsed() < Duration::from_secs(10));
    }
}
