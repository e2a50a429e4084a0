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
pub fn capture(mut command: Command, timeout: Duration) -> Result<Captured> {
    let program = command.get_program().to_string_lossy().into_owned();
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::io(&program, e))?;
    let pid = child.id() as libc::pid_t;
    let readers: Vec<_> = [
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    ]
    .into_iter()
    .map(|stream| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut stream) = stream {
                // Bounded: a chatty child cannot grow this without limit.
                let _ = stream.by_ref().take(1024 * 1024).read_to_end(&mut bytes);
            }
            String::from_utf8_lossy(&bytes).into_owned()
        })
    })
    .collect();
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait().map_err(|e| Error::io(&program, e))? {
            Some(status) => break Some(status),
            None if Instant::now() >= deadline => {
                // SAFETY: signalling the process group we created; a stale pid group is harmless.
                unsafe { libc::kill(-pid, libc::SIGKILL) };
                let _ = child.wait();
                break None;
            }
            None => std::thread::sleep(Duration::from_millis(10)),
        }
    };
    // Grandchildren may still hold the pipes; kill the group so the readers see EOF.
    // SAFETY: as above.
    unsafe { libc::kill(-pid, libc::SIGKILL) };
    let mut outputs = readers.into_iter().map(|r| r.join().unwrap_or_default());
    let stdout = outputs.next().unwrap_or_default();
    let stderr = outputs.next().unwrap_or_default();
    match status {
        Some(status) => Ok(Captured {
            code: status.code(),
            stdout,
            stderr,
        }),
        None => Err(Error::Unavailable {
            code: "timeout",
            message: format!("{program} did not finish within {} s", timeout.as_secs()),
        }),
    }
}
