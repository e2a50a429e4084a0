//! `App`: the shared handles every handler receives, built once at start-up.
//!
//! Must not hold logic: each field is owned by its module and only assembled here.

use crate::config::Config;
use crate::error::Result;
use crate::operator::LoginThrottle;
use crate::store::Store;
use crate::vault::Vault;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Shared state of a running server (and of CLI commands that need storage).
pub struct App {
    /// The validated configuration.
    pub config: Config,
    /// The database.
    pub store: Store,
    /// The credential vault.
    pub vault: Vault,
    /// The operator secret in effect (never logged).
    pub operator_secret: String,
    /// Where it came from: a generated one is printed at start-up until it signs in once.
    pub operator_secret_source: crate::datadir::SecretSource,
    /// Failed-login throttle per client address.
    pub login_throttle: LoginThrottle,
    /// The management endpoint's release-check cache.
    pub release_cache: Mutex<Option<crate::release::Cached>>,
    /// One turn at a time per session and per workspace.
    pub turn_locks: crate::turns::locks::Locks,
    /// Running turns per user (`max_concurrency`).
    pub user_slots: crate::turns::locks::Slots,
    /// The confinement of agent runs and of git on users' repositories.
    pub sandbox: crate::sandbox::Sandbox,
    /// The warm agent processes.
    pub warm: crate::warm::Supervisor,
    /// The running Telegram bots (empty until `telegram::start`).
    pub telegram: crate::telegram::Hub,
    /// Start time, epoch ms.
    pub started_at_ms: i64,
    started: Instant,
}

impl App {
    /// Opens storage and the vault for `config`, checking the vault key against the database.
    pub fn open(
        config: Config,
        operator_secret: String,
        operator_secret_source: crate::datadir::SecretSource,
    ) -> Result<App> {
        let sandbox = crate::sandbox::Sandbox::for_config(&config)?;
        crate::datadir::ensure_private_dir(&config.storage.data_dir)?;
        let store = Store::open(&config.storage.database_path())?;
        let mut vault = Vault::load(
            config.secrets.master_key.as_deref(),
            &config.storage.data_dir,
        )?;
        if let Err(error) = vault.check_against(&store) {
            // A rotation that crashed after its commit leaves the new key staged beside the old.
            let recovered = config.secrets.master_key.is_none()
                && finish_rotation(&config.storage.data_dir, &store).is_ok();
            if !recovered {
                return Err(error);
            }
            vault = Vault::load(None, &config.storage.data_dir)?;
            log::warn!(
                "finished an interrupted vault key rotation (key {})",
                vault.key_id()
            );
        }
        let warm = crate::warm::Supervisor::new(config.server.max_warm_processes);
        Ok(App {
            warm,
            config,
            store,
            vault,
            operator_secret,
            operator_secret_source,
            login_throttle: LoginThrottle::default(),
            release_cache: Mutex::new(None),
            turn_locks: crate::turns::locks::Locks::default(),
            user_slots: crate::turns::locks::Slots::default(),
            sandbox,
            telegram: crate::telegram::Hub::default(),
            started_at_ms: crate::clock::now_ms(),
            started: Instant::now(),
        })
    }

    /// Time since start-up.
    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }
}

/// Promotes `master.key.new` when it (and not `master.key`) opens the database's vault check.
fn finish_rotation(data_dir: &std::path::Path, store: &Store) -> Result<()> {
    let staged = data_dir.join("master.key.new");
    let text = std::fs::read_to_string(&staged).map_err(|e| crate::error::Error::io(&staged, e))?;
    let key = crate::crypto::unhex(text.trim())
        .ok_or_else(|| crate::error::Error::Vault("master.key.new is not a hex key".into()))?;
    Vault::from_key(&key, crate::vault::KeySource::File(staged.clone())).check_against(store)?;
    let path = data_dir.join("master.key");
    std::fs::rename(&staged, &path).map_err(|e| crate::error::Error::io(&path, e))
}
