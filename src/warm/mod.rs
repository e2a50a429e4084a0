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
pub mod codex;
pub mod peer;

use crate::app::App;
use crate::process::CommandSpec;
use crate::providers::{Provider, TurnEvent};
use crate::store::accounts::Account;
use peer::{Dialect, Incoming, Peer, RpcError};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::mpsc::RecvTimeoutError;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// How long a stalled or overrun turn gets to end after it was interrupted, before its process
/// is killed.
const INTERRUPT_GRACE: Duration = Duration::from_secs(5);
/// How long a retired process gets to exit after SIGTERM.
const STOP_GRACE: Duration = Duration::from_secs(2);
/// After a process failed to start, turns of its key run exec this long before it is tried again.
const START_BACKOFF: Duration = Duration::from_secs(60);

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

/// One live agent process.
pub struct Agent {
    key: Key,
    peer: Arc<Peer>,
    home: PathBuf,
    tmp: PathBuf,
    account: Option<Account>,
    started: Instant,
    state: Mutex<AgentState>,
}

struct AgentState {
    /// Sessions loaded in the process, with the model each is on.
    sessions: HashMap<String, String>,
    busy: usize,
    last_used: Instant,
    turns: u64,
}

impl Agent {
    /// The process's key.
    pub fn key(&self) -> &Key {
        &self.key
    }

    /// The CLI home.
    pub fn home(&self) -> &Path {
        &self.home
    }

    /// The private temp dir.
    pub fn tmp(&self) -> &Path {
        &self.tmp
    }

    /// Whether `session` is loaded in this process.
    pub fn has_session(&self, session: &str) -> bool {
        self.state
            .lock()
            .map(|s| s.sessions.contains_key(session))
            .unwrap_or(false)
    }

    /// Whether the process still runs.
    pub fn alive(&self) -> bool {
        self.peer.alive()
    }

    /// Runs one turn: opens (or reuses) the session, sends the prompt, and folds every message
    /// into `on_event` until the CLI ends the turn; a silence of `limits.stall` or an overrun
    /// interrupts it, and a process that does not stop is killed. `stateless` sessions are
    /// released afterwards.
    pub fn turn(
        &self,
        open: &Open<'_>,
        input: &TurnInput<'_>,
        limits: Limits,
        stateless: bool,
        on_event: &mut dyn FnMut(TurnEvent),
    ) -> Ending {
        let provider = self.key.provider;
        let session = match self.session(open) {
            Ok(Opened::Fresh(id) | Opened::Resumed(id)) => id,
            Ok(Opened::Missing(message)) => return Ending::LostSession(message),
            Err(error) => return self.failed(&error),
        };
        on_event(TurnEvent::SessionId(session.clone()));
        let (tx, rx) = self.peer.subscribe(&session);
        let started = match provider {
            Provider::Codex => codex::start_turn(&self.peer, &session, input, tx)
                .map(|id| (id, Fold::Codex(codex::Turn::new(id)))),
            _ => acp::start_turn(&self.peer, &session, input, tx)
                .map(|id| (id, Fold::Acp(acp::Turn::new(id)))),
        };
        let (request, mut fold) = match started {
            Ok(started) => started,
            Err(error) => {
                self.peer.unsubscribe(&session);
                return self.failed(&error);
            }
        };
        let ending = self.watch(&session, &rx, &mut fold, limits, on_event);
        self.peer.unsubscribe(&session);
        self.peer.forget(request);
        if stateless && ending == Ending::Ended {
            match provider {
                Provider::Codex => codex::release(&self.peer, &session),
                _ => acp::release(&self.peer, provider, &session),
            }
            if let Ok(mut state) = self.state.lock() {
                state.sessions.remove(&session);
            }
        }
        ending
    }

    /// The session of this turn: already loaded (switching its model if asked), else opened.
    fn session(&self, open: &Open<'_>) -> Result<Opened, RpcError> {
        let provider = self.key.provider;
        if let Some(id) = open.resume {
            let loaded = self
                .state
                .lock()
                .ok()
                .and_then(|s| s.sessions.get(id).cloned());
            if let Some(model) = loaded {
                if provider != Provider::Codex && model != open.model {
                    acp::set_model(&self.peer, provider, id, open.model);
                    self.remember(id, open.model);
                }
                return Ok(Opened::Resumed(id.to_string()));
            }
        }
        let opened = match provider {
            Provider::Codex => codex::open(&self.peer, open)?,
            _ => acp::open(&self.peer, provider, open)?,
        };
        if let Opened::Fresh(id) | Opened::Resumed(id) = &opened {
            self.remember(id, open.model);
        }
        Ok(opened)
    }

    fn remember(&self, session: &str, model: &str) {
        if let Ok(mut state) = self.state.lock() {
            state
                .sessions
                .insert(session.to_string(), model.to_string());
        }
    }

    /// The turn's messages until it ends, with the stall and turn deadlines.
    fn watch(
        &self,
        session: &str,
        rx: &std::sync::mpsc::Receiver<Incoming>,
        fold: &mut Fold,
        limits: Limits,
        on_event: &mut dyn FnMut(TurnEvent),
    ) -> Ending {
        let started = Instant::now();
        let mut last_message = started;
        // Set once the turn was interrupted: why, and when the process must have answered.
        let mut interrupted: Option<(Ending, Instant)> = None;
        loop {
            let now = Instant::now();
            let deadline = match &interrupted {
                Some((_, by)) => *by,
                None => [
                    limits.stall.map(|s| last_message + s),
                    limits.turn.map(|t| started + t),
                ]
                .into_iter()
                .flatten()
                .min()
                .unwrap_or(now + Duration::from_secs(3600)),
            };
            match rx.recv_timeout(deadline.saturating_duration_since(now)) {
                Ok(incoming) => {
                    last_message = Instant::now();
                    let step = fold.fold(&incoming);
                    if let (Some(answer), Incoming::Request { id, method, .. }) =
                        (step.answer, &incoming)
                    {
                        log::info!(
                            "{} asked {method}; answered by policy: {}",
                            self.key.provider,
                            match &answer {
                                Ok(result) => result.to_string(),
                                Err(error) => error.to_string(),
                            }
                        );
                        let _ = self.peer.answer(id, answer);
                    }
                    for event in step.events {
                        on_event(event);
                    }
                    if step.done {
                        return interrupted.map(|(why, _)| why).unwrap_or(Ending::Ended);
                    }
                }
                Err(RecvTimeoutError::Timeout) => match interrupted {
                    Some((why, _)) => {
                        log::warn!(
                            "the {} turn did not stop when interrupted; killing its process",
                            self.key.provider
                        );
                        self.peer.kill();
                        crate::telemetry::metrics::cli_killed(self.key.provider.name());
                        return why;
                    }
                    None => {
                        let overrun = limits.turn.is_some_and(|t| started.elapsed() >= t);
                        let why = if overrun {
                            Ending::TimedOut
                        } else {
                            Ending::Stalled
                        };
                        log::warn!(
                            "the {} turn {}; interrupting it",
                            self.key.provider,
                            if overrun {
                                "overran its time"
                            } else {
                                "went silent"
                            }
                        );
                        match fold {
                            Fold::Codex(turn) => codex::interrupt(&self.peer, session, turn),
                            Fold::Acp(_) => acp::cancel(&self.peer, session),
                        }
                        interrupted = Some((why, Instant::now() + INTERRUPT_GRACE));
                    }
                },
                Err(RecvTimeoutError::Disconnected) => {
                    return match interrupted {
                        Some((why, _)) => why,
                        None => Ending::Died(self.death()),
                    }
                }
            }
        }
    }

    /// A request that failed: the process died, or the agent refused.
    fn failed(&self, error: &RpcError) -> Ending {
        if self.peer.alive() {
            Ending::Refused(error.message.clone())
        } else {
            Ending::Died(self.death())
        }
    }

    /// How the process died, in a person's words.
    fn death(&self) -> String {
        // The reader thread records the exit just after it disconnects the turn.
        let deadline = Instant::now() + Duration::from_secs(2);
        let mut ended = self.peer.ended();
        while ended.is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
            ended = self.peer.ended();
        }
        let how = match ended.as_ref().map(|e| (e.exit_code, e.signal)) {
            Some((Some(code), _)) => format!("exited with code {code}"),
            Some((None, Some(signal))) => format!("was killed by signal {signal}"),
            _ => "ended".to_string(),
        };
        let tail: Vec<&str> = ended
            .as_ref()
            .map(|e| e.stderr_tail.trim().lines().rev().take(3).collect())
            .unwrap_or_default();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        if tail.is_empty() {
            format!(
                "the warm {} process {how} during the turn",
                self.key.provider
            )
        } else {
            format!(
                "the warm {} process {how} during the turn: {}",
                self.key.provider,
                tail.join("\n")
            )
        }
    }

    /// Stops the process and cleans up after it: the credential sealed back (if the CLI
    /// refreshed it) and removed from the home, the temp dir deleted.
    fn retire(&self, app: &App) {
        self.peer.stop(STOP_GRACE);
        if let Some(account) = &self.account {
            if let Err(error) =
                crate::accounts::sync_back(&app.store, &app.vault, account, &self.home)
            {
                log::error!(
                    "sealing back the credential of account {}: {error}",
                    account.id
                );
            }
            if let Err(error) = crate::accounts::scrub(&self.home) {
                log::error!(
                    "removing the credential from {}: {error}",
                    self.home.display()
                );
            }
        }
        if let Err(error) = std::fs::remove_dir_all(&self.tmp) {
            if error.kind() != std::io::ErrorKind::NotFound {
                log::warn!("removing {}: {error}", self.tmp.display());
            }
        }
        log::info!(
            "retired the warm {} process of {} after {} turn(s)",
            self.key.provider,
            self.key.owner,
            self.state.lock().map(|s| s.turns).unwrap_or(0)
        );
    }
}

/// Spawns `command` and shakes hands in `provider`'s protocol; the live connection, or why not
/// (with the last line the CLI printed on stderr when it exited).
fn connect(provider: Provider, command: CommandSpec) -> Result<Arc<Peer>, String> {
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
    let why = if peer.alive() {
        format!("its handshake failed: {error}")
    } else {
        // The reader records the exit and stderr just after it disconnects.
        std::thread::sleep(Duration::from_millis(50));
        let tail = peer
            .ended()
            .map(|e| {
                e.stderr_tail
                    .trim()
                    .lines()
                    .last()
                    .unwrap_or_default()
                    .to_string()
            })
            .unwrap_or_default();
        format!("it exited during the handshake: {tail}")
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

/// The pure fold of a running turn, by protocol.
enum Fold {
    Codex(codex::Turn),
    Acp(acp::Turn),
}

impl Fold {
    fn fold(&mut self, incoming: &Incoming) -> Step {
        match self {
            Fold::Codex(turn) => turn.fold(incoming),
            Fold::Acp(turn) => turn.fold(incoming),
        }
    }
}

/// A warm process reserved for one turn; released (and its idle clock restarted) when dropped.
pub struct Busy<'a> {
    agent: Arc<Agent>,
    supervisor: &'a Supervisor,
}

impl Busy<'_> {
    /// The agent.
    pub fn agent(&self) -> &Agent {
        &self.agent
    }
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        if let Ok(mut state) = self.agent.state.lock() {
            state.busy = state.busy.saturating_sub(1);
            state.last_used = Instant::now();
            state.turns += 1;
        }
        self.supervisor.wake.notify_all();
    }
}

/// Why a provider's turns ran exec instead: the last reason and how often.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Fallbacks {
    /// Turns that ran exec although the provider is in warm mode.
    pub count: u64,
    /// The last reason.
    pub last_reason: Option<String>,
    /// When, epoch ms.
    pub last_at_ms: Option<i64>,
}

/// One live process, for the overview.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AgentStatus {
    /// The CLI.
    pub provider: Provider,
    /// The owner's id.
    pub owner: String,
    /// The pool account.
    pub account: Option<String>,
    /// The process group (the CLI's pid).
    pub pid: i32,
    /// Turns running now.
    pub busy: usize,
    /// Sessions loaded.
    pub sessions: usize,
    /// Turns served.
    pub turns: u64,
    /// Seconds since start.
    pub uptime_seconds: u64,
    /// Seconds since its last turn ended (0 while busy).
    pub idle_seconds: u64,
    /// Resident memory of its whole process group, bytes.
    pub rss_bytes: u64,
}

#[derive(Default)]
struct Inner {
    agents: HashMap<Key, Arc<Agent>>,
    starting: usize,
    failed: HashMap<Key, (Instant, String)>,
    fallbacks: BTreeMap<Provider, Fallbacks>,
    /// Processes taken out of `agents` whose cleanup has not finished.
    retiring: usize,
    shutdown: bool,
}

/// The registry of warm processes.
pub struct Supervisor {
    cap: usize,
    inner: Mutex<Inner>,
    /// One start at a time per key (two turns must not start two processes for one home).
    gates: Mutex<HashMap<Key, Arc<Mutex<()>>>>,
    wake: Condvar,
}

impl Supervisor {
    /// A supervisor of at most `cap` processes.
    pub fn new(cap: usize) -> Supervisor {
        Supervisor {
            cap,
            inner: Mutex::new(Inner::default()),
            gates: Mutex::new(HashMap::new()),
            wake: Condvar::new(),
        }
    }

    /// The live process of `key`, reserved for one turn; started with `launch` when there is
    /// none. `Err` (why) when the turn should run exec instead: the cap is full of busy
    /// processes, or the process cannot start or fails its handshake.
    pub fn acquire(
        &self,
        app: &App,
        key: &Key,
        launch: &dyn Fn() -> crate::error::Result<Launch>,
    ) -> Result<Busy<'_>, String> {
        let gate = self
            .gates
            .lock()
            .map_err(|_| "the warm registry is poisoned".to_string())?
            .entry(key.clone())
            .or_default()
            .clone();
        let _gate = gate
            .lock()
            .map_err(|_| "the warm registry is poisoned".to_string())?;
        let mut retired = Vec::new();
        {
            let mut inner = self.lock()?;
            if inner.shutdown {
                return Err("the gateway is shutting down".into());
            }
            match inner.agents.get(key) {
                Some(agent) if agent.alive() => {
                    return Ok(self.reserve(Arc::clone(agent)));
                }
                Some(_) => retired.extend(inner.agents.remove(key)),
                None => {}
            }
            if let Some((at, why)) = inner.failed.get(key) {
                if at.elapsed() < START_BACKOFF {
                    return Err(format!(
                        "it failed to start {} s ago: {why}",
                        at.elapsed().as_secs()
                    ));
                }
            }
            if inner.agents.len() + inner.starting >= self.cap {
                let idle = inner
                    .agents
                    .iter()
                    .filter_map(|(k, a)| {
                        let state = a.state.lock().ok()?;
                        (state.busy == 0).then(|| (state.last_used, k.clone()))
                    })
                    .min();
                match idle {
                    Some((_, lru)) => retired.extend(inner.agents.remove(&lru)),
                    None => {
                        drop(inner);
                        self.retire_all(app, retired);
                        return Err(format!(
                            "all {} warm processes are busy ([server].max_warm_processes)",
                            self.cap
                        ));
                    }
                }
            }
            inner.starting += 1;
        }
        self.retire_all(app, retired);
        let started = self.start(key, launch);
        let mut inner = self.lock()?;
        inner.starting -= 1;
        match started {
            Ok(agent) => {
                inner.failed.remove(key);
                let agent = Arc::new(agent);
                inner.agents.insert(key.clone(), Arc::clone(&agent));
                drop(inner);
                Ok(self.reserve(agent))
            }
            Err(why) => {
                inner
                    .failed
                    .insert(key.clone(), (Instant::now(), why.clone()));
                Err(why)
            }
        }
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Inner>, String> {
        self.inner
            .lock()
            .map_err(|_| "the warm registry is poisoned".to_string())
    }

    fn reserve(&self, agent: Arc<Agent>) -> Busy<'_> {
        if let Ok(mut state) = agent.state.lock() {
            state.busy += 1;
            state.last_used = Instant::now();
        }
        Busy {
            agent,
            supervisor: self,
        }
    }

    /// Starts a process and shakes hands with it.
    fn start(
        &self,
        key: &Key,
        launch: &dyn Fn() -> crate::error::Result<Launch>,
    ) -> Result<Agent, String> {
        let began = Instant::now();
        let launch = launch().map_err(|e| format!("preparing it failed: {e}"))?;
        let peer = connect(key.provider, launch.command.clone()).inspect_err(|_| {
            let _ = std::fs::remove_dir_all(&launch.tmp);
            if launch.account.is_some() {
                let _ = crate::accounts::scrub(&launch.home);
            }
        })?;
        log::info!(
            "started a warm {} process for {} (pid {}) in {} ms",
            key.provider,
            key.owner,
            peer.pgid(),
            began.elapsed().as_millis()
        );
        Ok(Agent {
            key: key.clone(),
            peer,
            home: launch.home,
            tmp: launch.tmp,
            account: launch.account,
            started: Instant::now(),
            state: Mutex::new(AgentState {
                sessions: HashMap::new(),
                busy: 0,
                last_used: Instant::now(),
                turns: 0,
            }),
        })
    }

    /// Records that a turn of a warm-mode provider ran exec, and why.
    pub fn note_fallback(&self, provider: Provider, reason: &str) {
        log::warn!("{provider} turn runs exec: the warm process is unavailable ({reason})");
        if let Ok(mut inner) = self.inner.lock() {
            let entry = inner.fallbacks.entry(provider).or_default();
            entry.count += 1;
            entry.last_reason = Some(reason.to_string());
            entry.last_at_ms = Some(crate::clock::now_ms());
        }
    }

    /// Retires the process of `key` if it is dead (after a turn saw it die).
    pub fn forget_dead(&self, app: &App, key: &Key) {
        let dead = self.inner.lock().ok().and_then(|mut inner| {
            let dead = inner.agents.get(key).is_some_and(|a| !a.alive());
            dead.then(|| inner.agents.remove(key)).flatten()
        });
        self.retire_all(app, dead.into_iter().collect());
    }

    /// Whether a live process uses `home` (an exec run must then leave its credential there).
    pub fn holds_home(&self, home: &Path) -> bool {
        self.inner
            .lock()
            .map(|inner| inner.agents.values().any(|a| a.home == home && a.alive()))
            .unwrap_or(false)
    }

    /// Retires the processes idle for longer than their provider's `warm_idle_seconds`, and
    /// dead ones.
    pub fn reap(&self, app: &App) {
        let retired: Vec<Arc<Agent>> = match self.inner.lock() {
            Ok(mut inner) => {
                let expired: Vec<Key> = inner
                    .agents
                    .iter()
                    .filter(|(key, agent)| {
                        let idle =
                            Duration::from_secs(app.config.providers.get(key.provider).warm_idle());
                        !agent.alive()
                            || agent
                                .state
                                .lock()
                                .is_ok_and(|s| s.busy == 0 && s.last_used.elapsed() >= idle)
                    })
                    .map(|(key, _)| key.clone())
                    .collect();
                expired
                    .iter()
                    .filter_map(|key| inner.agents.remove(key))
                    .collect()
            }
            Err(_) => Vec::new(),
        };
        self.retire_all(app, retired);
    }

    /// Runs [`Supervisor::reap`] until [`Supervisor::shutdown`]; the serve command's thread.
    pub fn reaper(&self, app: &App) {
        let shortest = crate::providers::Provider::ALL
            .iter()
            .map(|p| app.config.providers.get(*p).warm_idle())
            .min()
            .unwrap_or(600);
        let tick = Duration::from_millis((shortest * 1000 / 4).clamp(100, 30_000));
        loop {
            let Ok(inner) = self.inner.lock() else { return };
            if inner.shutdown {
                return;
            }
            let Ok((inner, _)) = self.wake.wait_timeout(inner, tick) else {
                return;
            };
            if inner.shutdown {
                return;
            }
            drop(inner);
            self.reap(app);
        }
    }

    /// Retires every process and refuses new ones (gateway shutdown).
    pub fn shutdown(&self, app: &App) {
        let all: Vec<Arc<Agent>> = match self.inner.lock() {
            Ok(mut inner) => {
                inner.shutdown = true;
                inner.agents.drain().map(|(_, a)| a).collect()
            }
            Err(_) => Vec::new(),
        };
        self.wake.notify_all();
        self.retire_all(app, all);
    }

    /// Retires processes already taken out of the registry (counted as retiring meanwhile).
    fn retire_all(&self, app: &App, agents: Vec<Arc<Agent>>) {
        if agents.is_empty() {
            return;
        }
        if let Ok(mut inner) = self.inner.lock() {
            inner.retiring += agents.len();
        }
        for agent in &agents {
            agent.retire(app);
        }
        if let Ok(mut inner) = self.inner.lock() {
            inner.retiring -= agents.len();
        }
    }

    /// Processes being retired now (stopped, their credential not yet removed).
    pub fn retiring(&self) -> usize {
        self.inner.lock().map(|i| i.retiring).unwrap_or(0)
    }

    /// The live processes and the exec fallbacks, for the overview.
    pub fn status(&self) -> (Vec<AgentStatus>, BTreeMap<Provider, Fallbacks>) {
        let Ok(inner) = self.inner.lock() else {
            return (Vec::new(), BTreeMap::new());
        };
        let mut agents: Vec<AgentStatus> = inner
            .agents
            .values()
            .filter(|a| a.alive())
            .filter_map(|a| {
                let state = a.state.lock().ok()?;
                Some(AgentStatus {
                    provider: a.key.provider,
                    owner: a.key.owner.clone(),
                    account: a.key.account.clone(),
                    pid: a.peer.pgid(),
                    busy: state.busy,
                    sessions: state.sessions.len(),
                    turns: state.turns,
                    uptime_seconds: a.started.elapsed().as_secs(),
                    idle_seconds: if state.busy > 0 {
                        0
                    } else {
                        state.last_used.elapsed().as_secs()
                    },
                    rss_bytes: crate::process::group_rss(a.peer.pgid()),
                })
            })
            .collect();
        agents.sort_by(|a, b| (a.provider, &a.owner).cmp(&(b.provider, &b.owner)));
        (agents, inner.fallbacks.clone())
    }
}
