//! The agent CLIs Codara drives: their names, how to find them, how to build their command
//! lines (`codex`, `gemini`, `opencode`) and how to parse one line of their output into
//! [`TurnEvent`]s (pure functions). Running them is `crate::process`.
//!
//! Must not touch the store: providers turn inputs into processes and outputs into events.

pub mod codex;
pub mod gemini;
pub mod opencode;

#[cfg(test)]
mod testing;

pub use crate::process::CommandSpec;

use crate::error::Result;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The agent CLIs Codara drives: a closed set, so an unknown provider cannot be constructed.
/// Everything that varies between them is answered here, in one table.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    /// OpenAI's Codex CLI.
    Codex,
    /// Google's Gemini CLI.
    Gemini,
    /// OpenCode.
    Opencode,
}

impl Provider {
    /// Every provider, in display order.
    pub const ALL: [Provider; 3] = [Provider::Codex, Provider::Gemini, Provider::Opencode];

    /// The provider's name on the wire, in the config and in the database.
    pub fn name(self) -> &'static str {
        match self {
            Provider::Codex => "codex",
            Provider::Gemini => "gemini",
            Provider::Opencode => "opencode",
        }
    }

    /// The provider called `name`, if it is one.
    pub fn from_name(name: &str) -> Option<Provider> {
        Provider::ALL.into_iter().find(|p| p.name() == name)
    }

    /// Its binary, default model and model list when the config names none.
    pub fn defaults(self) -> (&'static str, &'static str, &'static [&'static str]) {
        match self {
            Provider::Codex => ("codex", "gpt-5-codex", &["gpt-5-codex", "gpt-5"]),
            Provider::Gemini => (
                "gemini",
                "gemini-2.5-pro",
                &["gemini-2.5-pro", "gemini-2.5-flash"],
            ),
            Provider::Opencode => ("opencode", "opencode/big-pickle", &["opencode/big-pickle"]),
        }
    }

    /// The invocation of one turn.
    pub fn command(self, spec: &RunSpec) -> CommandSpec {
        match self {
            Provider::Codex => codex::command(spec),
            Provider::Gemini => gemini::command(spec),
            Provider::Opencode => opencode::command(spec),
        }
    }

    /// The invocation of its long-lived, streaming mode (codex `app-server`, gemini `--acp`,
    /// opencode `acp`), with the same environment as [`Provider::command`]; `spec.workspace` is
    /// the owner's whole tree, each session naming its own directory.
    pub fn warm_command(self, spec: &RunSpec) -> CommandSpec {
        match self {
            Provider::Codex => codex::warm_command(spec),
            Provider::Gemini => gemini::warm_command(spec),
            Provider::Opencode => opencode::warm_command(spec),
        }
    }

    /// One line of the CLI's output → its events (pure).
    pub fn parse_line(self, line: &str) -> Vec<TurnEvent> {
        match self {
            Provider::Codex => codex::parse_line(line),
            Provider::Gemini => gemini::parse_line(line),
            Provider::Opencode => opencode::parse_line(line),
        }
    }

    /// Creates the CLI's isolated home with the files it needs.
    pub fn prepare_home(self, home: &Path) -> std::io::Result<()> {
        match self {
            Provider::Codex => codex::prepare_home(home),
            Provider::Gemini => gemini::prepare_home(home),
            Provider::Opencode => opencode::prepare_home(home),
        }
    }

    /// A short explanation of an exit code, when the CLI documents it.
    pub fn exit_error(self, code: Option<i32>) -> Option<&'static str> {
        match self {
            Provider::Codex => codex::exit_error(code),
            Provider::Gemini => gemini::exit_error(code),
            Provider::Opencode => opencode::exit_error(code),
        }
    }
}

impl std::fmt::Display for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl rusqlite::types::ToSql for Provider {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        Ok(self.name().into())
    }
}

impl rusqlite::types::FromSql for Provider {
    fn column_result(value: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<Self> {
        let name = value.as_str()?;
        Provider::from_name(name).ok_or_else(|| {
            rusqlite::types::FromSqlError::Other(format!("unknown provider {name}").into())
        })
    }
}

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
    let mut command = CommandSpec::new(binary, std::env::temp_dir())
        .args(["--version"])
        .env("PATH", host.path.clone());
    if let Some(home) = &host.home {
        command = command.env("HOME", home.display().to_string());
    }
    let output = crate::process::capture(&command, Duration::from_secs(20))?;
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

/// One thing a CLI reported during a turn, normalized across providers.
#[derive(Debug, Clone, PartialEq)]
pub enum TurnEvent {
    /// The CLI's own session id (codex `thread_id`, gemini `session_id`, opencode `sessionID`).
    SessionId(String),
    /// Assistant text as it arrives (a delta, or a whole part for CLIs without deltas).
    Text(String),
    /// A normalized operation the agent performed.
    Action(Action),
    /// Token usage (summed over the turn by the caller when reported more than once).
    Usage(Usage),
    /// A non-fatal message from the CLI (e.g. codex's `error` items).
    Warning(String),
    /// A fatal model/API error with the CLI's message; the turn failed.
    Error(String),
    /// The CLI reported the end of the turn.
    Completed,
}

/// Token counts as the CLI reported them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Input tokens.
    pub prompt_tokens: u64,
    /// Output tokens.
    pub completion_tokens: u64,
    /// Input tokens served from cache.
    pub cached_tokens: u64,
}

/// A normalized operation taken from the CLI's own events. Its serde form (`{"type":
/// "file_change"|"command"|"tool", …}`) is how turns store it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Action {
    /// A file written, patched or deleted by the agent's file tool.
    FileChange {
        /// The path as the CLI reported it (absolute or workspace-relative).
        path: String,
        /// `add`, `update`, `delete`, or `write` when the CLI does not say.
        kind: String,
    },
    /// A shell command.
    Command {
        /// The command line.
        command: String,
        /// Its exit code when known.
        exit_code: Option<i32>,
        /// Whether the CLI reported it as successful.
        ok: bool,
    },
    /// Any other tool call.
    Tool {
        /// The tool's name.
        name: String,
        /// Whether it succeeded.
        ok: bool,
    },
}

/// Everything needed to build one CLI invocation (pure input of `<provider>::command`).
#[derive(Debug, Clone)]
pub struct RunSpec {
    /// The resolved executable.
    pub binary: PathBuf,
    /// The model id to pass.
    pub model: String,
    /// What to send the CLI this turn.
    pub prompt: String,
    /// The CLI session to resume, if any.
    pub resume: Option<String>,
    /// The working directory (the workspace).
    pub workspace: PathBuf,
    /// The isolated home for this provider (and account), created by the caller.
    pub home: PathBuf,
    /// `[providers.<p>].extra_args`.
    pub extra_args: Vec<String>,
    /// `[providers.<p>].env`.
    pub extra_env: Vec<(String, String)>,
    /// The CLI's own sandbox. `FullAccess` when Codara's Landlock confines the run: codex's
    /// bubblewrap sandbox cannot nest inside Landlock (it needs to mount), and the Landlock
    /// allow-list is the stricter of the two.
    pub sandbox: crate::config::Sandbox,
    /// The host `PATH`, for the child.
    pub path_env: String,
    /// Images to attach to this turn's prompt, relative to the workspace (saved there by the
    /// engine), each passed with the CLI's own image option.
    pub images: Vec<PathBuf>,
    /// Codara's Landlock confines the run (gemini cannot resolve `@` file references then).
    pub confined: bool,
    /// A JSON Schema file the CLI must make its final reply match (codex `--output-schema`);
    /// `None` for free text or when the reply is checked by the gateway instead.
    pub output_schema: Option<PathBuf>,
}

/// The child environment for `spec`, built from scratch: `PATH`, the provider's `home_vars`,
/// `PWD` = the workspace, then `[providers.<p>].env`. A later entry replaces an earlier one of the
/// same name (so configuration wins) and each name appears once, in first-set order.
pub fn child_env(spec: &RunSpec, home_vars: Vec<(&str, String)>) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = Vec::new();
    let mut set = |key: &str, value: String| match env.iter_mut().find(|(k, _)| k == key) {
        Some(entry) => entry.1 = value,
        None => env.push((key.to_string(), value)),
    };
    set("PATH", spec.path_env.clone());
    for (key, value) in home_vars {
        set(key, value);
    }
    set("PWD", spec.workspace.display().to_string());
    for (key, value) in &spec.extra_env {
        set(key, value.clone());
    }
    env
}

/// Creates `dir` and any missing parents with mode 0700, and sets `dir` itself to 0700.
pub fn private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}

/// Writes `contents` to a new file at `path` (mode 0600); leaves an existing file untouched.
/// A failed write removes the partial file so the next call retries.
pub fn write_if_absent(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(mut file) => file.write_all(contents.as_bytes()).inspect_err(|_| {
            // A half-written file would never be rewritten: remove it so the next call retries.
            let _ = std::fs::remove_file(path);
        }),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}
