//! Warm agents: one long-lived CLI process per (owner, provider, account) — codex `app-server`,
//! gemini `--acp`, opencode `acp` — that runs turn after turn and streams deltas, instead of a
//! process per turn. The [`Supervisor`] starts them on first use, caps them
//! (`[server].max_warm_processes`, evicting the least recently used idle one), retires idle ones
//! (`warm_idle_seconds`) and dead ones; [`Agent::turn`] runs one turn with the stall watchdog.
//!
//! Each process runs inside the same Landlock confinement as an exec run, widened from one
//! workspace to the owner's whole tree (`<root>/<owner>`), with the CLI home and a private temp
//! dir; its credential stays in the home while it lives and is sealed back and removed when it
//! is retired. Must not decide what a turn sends or store anything (`turns` does).

pub mod acp;
mod agent;
pub mod codex;
pub mod peer;
mod supervisor;

pub use supervisor::Supervisor;

use crate::process::CommandSpec;
use crate::providers::{Provider, TurnEvent};
use crate::store::accounts::Account;
use peer::{Dialect, Peer, RpcError};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a retired process gets to exit after SIGTERM.
const STOP_GRACE: Duration = Duration::from_secs(2);

/// Which process serves a turn.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key {
    /// The owner's id (`operator` or a user id).
    pub owner: String,
    /// The CLI.
    pub provider: Provider,
    /// The pool account, when the provider has one.
    pub account: Option<String>,
}

/// What opening a session needs (pure input of the protocol modules).
#[derive(Debug)]
pub struct Open<'a> {
    /// The CLI session to bring into the process, or `None` for a new one.
    pub resume: Option<&'a str>,
    /// The session's working directory (its workspace).
    pub cwd: &'a Path,
    /// The model, empty for the CLI's default.
    pub model: &'a str,
    /// codex's own sandbox name.
    pub sandbox: &'a str,
}

/// How opening a session went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Opened {
    /// A new session with this id.
    Fresh(String),
    /// The existing session, now loaded.
    Resumed(String),
    /// The CLI has no such session (its message).
    Missing(String),
}

/// What one turn sends.
#[derive(Debug)]
pub struct TurnInput<'a> {
    /// The prompt.
    pub prompt: &'a str,
    /// Absolute paths of the images attached.
    pub images: &'a [PathBuf],
    /// The model, empty for the session's.
    pub model: &'a str,
    /// A JSON Schema codex must make the reply match.
    pub output_schema: Option<&'a Value>,
}

/// What one message of a turn produced (the protocol modules' pure fold).
#[derive(Debug, Default)]
pub struct Step {
    /// Events for the turn's outcome.
    pub events: Vec<TurnEvent>,
    /// The answer to an agent request.
    pub answer: Option<Result<Value, RpcError>>,
    /// The turn is over.
    pub done: bool,
}

/// How a warm turn ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Ending {
    /// The CLI ended the turn (its events say whether it succeeded).
    Ended,
    /// No message for the stall timeout: interrupted (the process killed if it did not stop).
    Stalled,
    /// The turn timeout passed: interrupted likewise.
    TimedOut,
    /// The process died during the turn.
    Died(String),
    /// The session to resume does not exist in this CLI home.
    LostSession(String),
    /// The agent refused to open the session or start the turn.
    Refused(String),
}

/// Bounds of one warm turn.
#[derive(Debug, Clone, Copy, Default)]
pub struct Limits {
    /// Interrupt after this long without a message.
    pub stall: Option<Duration>,
    /// Interrupt after this long in total.
    pub turn: Option<Duration>,
}

/// Everything a new process needs, built by the caller (`turns::attempt`).
#[derive(Debug)]
pub struct Launch {
    /// The confined command.
    pub command: CommandSpec,
    /// The CLI home (holds the credential while the process lives).
    pub home: PathBuf,
    /// The process's private temp dir, removed when it is retired.
    pub tmp: PathBuf,
    /// The pool account whose credential is in the home.
    pub account: Option<Account>,
}

/// Spawns `command` and shakes hands in `provider`'s protocol; the live connection, or why not
/// (with the last line the CLI printed on stderr when it exited).
pub(crate) fn connect(provider: Provider, command: CommandSpec) -> Result<Arc<Peer>, String> {
    let (dialect, unrouted): (Dialect, peer::Policy) = match provider {
        Provider::Codex => (Dialect::Codex, codex::answer),
        _ => (Dialect::Acp, acp::answer),
    };
    let peer = Peer::start(command, dialect, provider.name().to_string(), unrouted)
        .map_err(|e| format!("it could not be spawned: {e}"))?;
    let shaken = match provider {
        Provider::Codex => codex::handshake(&peer),
        _ => acp::handshake(&peer).map(|_| ()),
    };
    let Err(error) = shaken else {
        return Ok(peer);
    };
    // A CLI that exits at once may fail our first write before its exit is read: give the
    // reader a moment to record the exit and stderr, which say why.
    let deadline = Instant::now() + Duration::from_secs(2);
    while peer.alive() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let why = if peer.alive() {
        format!("its handshake failed: {error}")
    } else {
        let mut ended = peer.ended();
        while ended.is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
            ended = peer.ended();
        }
        let tail = ended
            .as_ref()
            .and_then(|e| e.stderr_tail.trim().lines().last().map(str::to_string))
            .unwrap_or_default();
        let code = ended.and_then(|e| e.exit_code);
        match (tail.is_empty(), code) {
            (false, _) => format!("it exited during the handshake: {tail}"),
            (true, Some(code)) => format!("it exited during the handshake with code {code}"),
            (true, None) => format!("it ended during the handshake: {error}"),
        }
    };
    peer.stop(STOP_GRACE);
    Err(why)
}

/// Starts `provider`'s warm mode the way a turn would (confined to scratch directories, with the
/// configured arguments and environment, no credential), shakes hands and stops it: how long
/// the handshake took, or why it failed. For `codara doctor`.
pub fn probe(
    config: &crate::config::Config,
    sandbox: &crate::sandbox::Sandbox,
    provider: Provider,
    binary: &Path,
) -> Result<Duration, String> {
    let scratch = std::env::temp_dir().join(crate::crypto::random_id("codara-doctor-"));
    let (zone, home, tmp) = (
        scratch.join("zone"),
        scratch.join("home"),
        scratch.join("tmp"),
    );
    let probed = (|| {
        for dir in [&zone, &home, &tmp] {
            crate::datadir::ensure_private_dir(dir).map_err(|e| e.to_string())?;
        }
        provider.prepare_home(&home).map_err(|e| e.to_string())?;
        let settings = config.providers.get(provider);
        let confine = sandbox.agent(provider, &zone, &home, &tmp);
        let mut extra_env = vec![("TMPDIR".to_string(), tmp.display().to_string())];
        extra_env.extend(settings.env.iter().map(|(k, v)| (k.clone(), v.clone())));
        let spec = crate::providers::RunSpec {
            binary: binary.to_path_buf(),
            model: settings.default_model.clone(),
            prompt: String::new(),
            resume: None,
            workspace: zone.clone(),
            home: home.clone(),
            extra_args: settings.extra_args.clone(),
            extra_env,
            sandbox: settings.sandbox,
            path_env: config.host.path.clone(),
            images: Vec::new(),
            confined: confine.is_some(),
            output_schema: None,
        };
        let mut command = provider.warm_command(&spec);
        command.confine = confine;
        let began = Instant::now();
        let peer = connect(provider, command)?;
        let took = began.elapsed();
        peer.stop(STOP_GRACE);
        Ok(took)
    })();
    let _ = std::fs::remove_dir_all(&scratch);
    probed
}
