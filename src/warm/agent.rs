//! One live warm process ([`Agent`]) and one turn through it: open or reuse the session, send the
//! prompt, fold every message into events until the CLI ends the turn, with the stall and turn
//! deadlines (interrupt, then kill). [`Busy`] reserves a process for one turn. Must not decide
//! which process serves a turn (`supervisor`).

use super::peer::{Incoming, Peer, RpcError};
use super::{acp, codex, Ending, Key, Limits, Open, Opened, Step, TurnInput, STOP_GRACE};
use crate::app::App;
use crate::providers::{Provider, TurnEvent};
use crate::store::accounts::Account;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc::RecvTimeoutError;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a stalled or overrun turn gets to end after it was interrupted, before its process
/// is killed.
const INTERRUPT_GRACE: Duration = Duration::from_secs(5);
/// A codex thread idle this long is resumed again before its next turn: the app-server unloads
/// threads unused for 30 minutes.
const CODEX_RELOAD: Duration = Duration::from_secs(20 * 60);

/// One live agent process.
pub struct Agent {
    pub(super) key: Key,
    pub(super) peer: Arc<Peer>,
    pub(super) home: PathBuf,
    pub(super) tmp: PathBuf,
    pub(super) account: Option<Account>,
    pub(super) started: Instant,
    pub(super) state: Mutex<AgentState>,
}

pub(super) struct AgentState {
    /// Sessions loaded in the process: the model each is on and when it last ran a turn.
    pub(super) sessions: HashMap<String, (String, Instant)>,
    pub(super) busy: usize,
    pub(super) last_used: Instant,
    pub(super) turns: u64,
}

impl Agent {
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
            match loaded {
                // codex unloads a thread nobody used for 30 minutes: resume it again before.
                Some((_, used)) if provider == Provider::Codex && used.elapsed() > CODEX_RELOAD => {
                }
                Some((model, _)) => {
                    if provider != Provider::Codex && model != open.model {
                        acp::set_model(&self.peer, provider, id, open.model);
                    }
                    self.remember(id, open.model);
                    return Ok(Opened::Resumed(id.to_string()));
                }
                None => {}
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
                .insert(session.to_string(), (model.to_string(), Instant::now()));
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
    pub(super) fn retire(&self, app: &App) {
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
    pub(super) agent: Arc<Agent>,
    pub(super) supervisor: &'a super::Supervisor,
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
