//! The agent CLIs Codara drives: their names, how to find them, and (in `runner`) how to run them.
//!
//! Must not touch the store: providers turn inputs into processes and outputs into events.

pub mod runner;

use crate::error::Result;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The supported providers, in display order.
pub const NAMES: [&str; 3] = ["codex", "gemini", "opencode"];

/// Resolves `binary` (a path, or a name searched on `path_env`) to an executable file.
pub fn find_binary(binary: &str, path_env: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let executable = |p: &Path| {
        p.metadata()
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false)
    };
    if binary.contains('/') {
        let path = PathBuf::from(binary);
        return executable(&path).then_some(path);
    }
    path_env
        .split(':')
        .filter(|dir| !dir.is_empty())
        .map(|dir| Path::new(dir).join(binary))
        .find(|candidate| executable(candidate))
}

/// Runs `<binary> --version` and returns its first non-empty output line.
pub fn cli_version(binary: &Path, host: &crate::config::HostEnv) -> Result<String> {
    let mut command = runner::command(binary, host);
    command.arg("--version");
    let output = runner::capture(command, Duration::from_secs(20))?;
    let text = if output.stdout.trim().is_empty() {
        &output.stderr
    } else {
        &output.stdout
    };
    Ok(text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("(no output)")
        .to_string())
}
