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
    /// Failed-login throttle per client address.
    pub login_throttle: LoginThrottle,
    /// The management endpoint's release-check cache.
    pub release_cache: Mutex<Option<crate::release::Cached>>,
    /// One turn at a time per session and per workspace.
    pub turn_locks: crate::turns::locks::Locks,
    /// Running turns per user (`max_concurrency`).
    pub user_slots: crate::turns::locks::Slots,
    /// Start time, epoch ms.
    pub started_at_ms: i64,
    started: Instant,
}

impl App {
    /// Opens storage and the vault for `config`, checking the vault key against the database.
    pub fn open(config: Config, operator_secret: String) -> Result<App> {
        crate::datadir::ensure_private_dir(&config.storage.data_dir)?;
        let store = Store::open(&config.storage.database_path())?;
        let vault = Vault::load(
            config.secrets.master_key.as_deref(),
            &config.storage.data_dir,
        )?;
        vault.check_against(&store)?;
        Ok(App {
            config,
            store,
            vault,
            operator_secret,
            login_throttle: LoginThrottle::default(),
            release_cache: Mutex::new(None),
            turn_locks: crate::turns::locks::Locks::default(),
            user_slots: crate::turns::locks::Slots::default(),
            started_at_ms: crate::clock::now_ms(),
            started: Instant::now(),
        })
    }

    /// Time since start-up.
    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }
}
