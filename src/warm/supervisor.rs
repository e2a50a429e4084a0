//! The registry of warm processes: one per [`Key`], started on first use behind a per-key gate,
//! at most `[server].max_warm_processes` (the least recently used idle one makes room), retired
//! when idle, dead or at shutdown; start failures backed off; exec fallbacks counted. Must not
//! run turns (`agent`).

use super::agent::{Agent, AgentState, Busy};
use super::{connect, Key, Launch};
use crate::app::App;
use crate::providers::Provider;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// After a process failed to start, turns of its key run exec this long before it is tried again.
const START_BACKOFF: Duration = Duration::from_secs(60);

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
    pub(super) wake: Condvar,
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
