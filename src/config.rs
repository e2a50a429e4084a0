//! Configuration: `codara.toml`, the `.env` beside it, and the environment, merged and validated.
//!
//! Precedence, highest first: command-line flags, environment, `codara.toml`, `.env`, built-in
//! defaults. This is the only module that reads environment variables, and it reads only the names
//! in [`ENV_NAMES`], so no generic variable (`USERNAME`, `ENABLED`, ...) can leak in. Must not
//! open the database or touch the network.

use crate::error::{Error, Result};
use crate::providers::Provider;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Every environment variable Codara reads; nothing else is looked at.
pub const ENV_NAMES: &[&str] = &[
    "API_TOKEN",
    "UAG_MGMT_SECRET",
    "UAG_WORKSPACES_ROOT",
    "UAG_DATABASE_PATH",
    "UAG_CODEX_STALL_TIMEOUT_SECONDS",
    "UAG_GEMINI_STALL_TIMEOUT_SECONDS",
    "UAG_OPENCODE_STALL_TIMEOUT_SECONDS",
    "UAG_CODEX_AUTH_PATH",
    "UAG_GEMINI_AUTH_PATH",
    "UAG_OPENCODE_AUTH_PATH",
    "UAG_RELEASE_REPOSITORY",
    "UAG_RELEASE_CHECK_ENABLED",
    "UAG_MASTER_KEY",
    "CODARA_HOST",
    "CODARA_PORT",
    "CODARA_CONFIG",
];

/// Whether a configuration sets a setting.
pub type IsSet = fn(&Config) -> bool;

/// Settings this build parses but does not act on, each with whether a configuration sets it.
/// A list so that it shrinks as features land: remove an entry with the code that uses it.
pub const INERT: &[(&str, IsSet)] = &[(
    "[providers.<p>].auth_path / UAG_<P>_AUTH_PATH (credentials come from the account pool)",
    |c| {
        c.providers
            .iter()
            .iter()
            .any(|(_, p)| p.auth_path.is_some())
    },
)];

/// Host variables read to build child environments (never configuration).
pub const HOST_ENV_NAMES: &[&str] = &["PATH", "HOME"];

/// The validated configuration every other module reads.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// `[server]`: listening address, pools and request limits.
    pub server: ServerConfig,
    /// `[storage]`: where the database, master key and CLI homes live.
    pub storage: StorageConfig,
    /// `[workspace]`: the managed workspaces tree.
    pub workspace: WorkspaceConfig,
    /// `[providers.*]`: one block per agent CLI.
    pub providers: ProvidersConfig,
    /// `[accounts]`: the provider account pool.
    pub accounts: AccountsConfig,
    /// `[users]`: defaults for provisioned users.
    pub users: UsersConfig,
    /// `[logging]`: runtime log output.
    pub logging: LoggingConfig,
    /// `[telemetry]`: trace files.
    pub telemetry: TelemetryConfig,
    /// `[release]`: the optional latest-release check.
    pub release: ReleaseConfig,
    /// `[channels]`: chat channels (Telegram).
    pub channels: ChannelsConfig,
    /// `[sandbox]`: Landlock confinement of agent runs.
    pub sandbox: SandboxConfig,
    /// Secrets that come only from the environment or `.env`, never from `codara.toml`.
    #[serde(skip)]
    pub secrets: Secrets,
    /// The config file that was read, if any.
    #[serde(skip)]
    pub source: Option<PathBuf>,
    /// The host's `PATH` and `HOME`, the only host variables a child CLI may see.
    #[serde(skip)]
    pub host: HostEnv,
}

/// The host variables children inherit; everything else in their environment is built by Codara.
#[derive(Debug, Clone, Default)]
pub struct HostEnv {
    /// `PATH`, or a conventional default.
    pub path: String,
    /// `HOME`, when set.
    pub home: Option<PathBuf>,
}

/// `[server]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address to bind; `CODARA_HOST` overrides.
    pub host: String,
    /// Port to bind, 0 for an ephemeral one; `CODARA_PORT` overrides.
    pub port: u16,
    /// Workers of the pool for short requests.
    pub workers: usize,
    /// Short requests that may wait for a free worker before new ones get 503.
    pub queue: usize,
    /// Workers of the pool for agent turns (the bound on concurrent CLI runs).
    pub turn_workers: usize,
    /// Largest accepted request body.
    pub max_body_bytes: u64,
    /// Seconds a connection may stay silent: an idle keep-alive connection is closed after
    /// this, and a single read or write that waits longer fails.
    pub read_timeout_seconds: u64,
    /// The most seconds a client gets to send a request body, however large.
    pub body_timeout_seconds: u64,
    /// The slowest body upload accepted, bytes per second: a body of `n` bytes must arrive
    /// within 10 s + `n` / this (and within `body_timeout_seconds`); the same deadline holds
    /// for a request head.
    pub min_body_rate_bytes: u64,
    /// Requests whose bodies are being read at once (the intake stage, beside the pools); more
    /// get 503 at once.
    pub max_pending_bodies: usize,
    /// Connections one client address may have open at once; more are answered 503 and closed.
    /// 0: no cap (behind a reverse proxy every client has the proxy's address).
    pub max_connections_per_ip: usize,
    /// `TCP_NODELAY` on accepted connections. Leave it on: with Nagle and the client's delayed
    /// ACK a keep-alive response costs ~40 ms; `false` exists so a benchmark can show that.
    pub tcp_nodelay: bool,
    /// Seconds running requests get to finish after SIGTERM/SIGINT.
    pub shutdown_grace_seconds: u64,
    /// The externally reachable base URL (for Telegram webhooks and printed links).
    pub public_url: Option<String>,
    /// Fetch `image_url` parts from loopback, private, link-local and other non-public
    /// addresses too. Off by default: a gateway that fetches any URL a client names is a way
    /// into the operator's network (SSRF).
    pub image_fetch_private: bool,
    /// Warm agent processes kept at once, all providers together; at the cap a new one evicts
    /// the least recently used idle one, and a turn that finds every one busy runs `exec`.
    pub max_warm_processes: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            host: "127.0.0.1".to_string(),
            port: 8000,
            workers: 8,
            queue: 128,
            turn_workers: 4,
            max_body_bytes: 10 * 1024 * 1024,
            read_timeout_seconds: 30,
            body_timeout_seconds: 60,
            min_body_rate_bytes: 1024,
            max_pending_bodies: 64,
            max_connections_per_ip: 64,
            tcp_nodelay: true,
            shutdown_grace_seconds: 30,
            public_url: None,
            image_fetch_private: false,
            max_warm_processes: 4,
        }
    }
}

/// `[storage]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// Holds `codara.db`, `master.key`, `operator.secret`, `homes/` and the lock file.
    pub data_dir: PathBuf,
    /// Overrides `<data_dir>/codara.db`; `UAG_DATABASE_PATH` overrides.
    pub database_path: Option<PathBuf>,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            data_dir: PathBuf::from("data"),
            database_path: None,
        }
    }
}

impl StorageConfig {
    /// The SQLite file to open.
    pub fn database_path(&self) -> PathBuf {
        self.database_path
            .clone()
            .unwrap_or_else(|| self.data_dir.join("codara.db"))
    }
}

/// `[workspace]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorkspaceConfig {
    /// Root of every managed workspace; `UAG_WORKSPACES_ROOT` overrides.
    pub root: PathBuf,
    /// Seconds a turn waits for its session or workspace lock before a 409.
    pub lock_timeout_seconds: u64,
    /// Template for new projects.
    pub default_template: String,
}

impl Default for WorkspaceConfig {
    fn default() -> Self {
        WorkspaceConfig {
            root: PathBuf::from("workspaces"),
            lock_timeout_seconds: 30,
            default_template: "default".to_string(),
        }
    }
}

/// `[providers]`: the three supported CLIs.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct ProvidersConfig {
    /// `[providers.codex]`.
    pub codex: ProviderConfig,
    /// `[providers.gemini]`.
    pub gemini: ProviderConfig,
    /// `[providers.opencode]`.
    pub opencode: ProviderConfig,
}

impl ProvidersConfig {
    /// Each provider and its block, in display order.
    pub fn iter(&self) -> [(Provider, &ProviderConfig); 3] {
        Provider::ALL.map(|p| (p, self.get(p)))
    }

    /// The block of `provider`.
    pub fn get(&self, provider: Provider) -> &ProviderConfig {
        match provider {
            Provider::Codex => &self.codex,
            Provider::Gemini => &self.gemini,
            Provider::Opencode => &self.opencode,
        }
    }
}

/// How much of the machine a CLI may touch; approvals are always off, so this is the confinement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Sandbox {
    /// Writes only inside the workspace.
    #[default]
    WorkspaceWrite,
    /// No sandbox.
    FullAccess,
}

/// How a provider's turns run: a long-lived process per (user, provider, account) that streams
/// deltas, or one CLI process per turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum RunMode {
    /// codex `app-server`, gemini `--acp`, opencode `acp`; `exec` when it cannot start.
    #[default]
    Warm,
    /// `codex exec`, `gemini -p`, `opencode run`: a process per turn.
    Exec,
}

impl RunMode {
    /// The mode's name in the config.
    pub fn as_str(self) -> &'static str {
        match self {
            RunMode::Warm => "warm",
            RunMode::Exec => "exec",
        }
    }
}

/// `[providers.<name>]`. Empty strings and lists are filled with the provider's defaults at load.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct ProviderConfig {
    /// Whether requests may use this provider.
    pub enabled: Option<bool>,
    /// Executable name or path.
    pub binary: String,
    /// Model used for `uag-<provider>` and requests without a model.
    pub default_model: String,
    /// Model ids advertised by `/v1/models`.
    pub models: Vec<String>,
    /// Seconds without any output before the run is killed; 0 disables.
    pub stall_timeout_seconds: Option<u64>,
    /// Seconds a whole turn may take; 0 disables.
    pub turn_timeout_seconds: Option<u64>,
    /// Extra arguments appended to every command line.
    pub extra_args: Vec<String>,
    /// Extra environment for the CLI process.
    pub env: BTreeMap<String, String>,
    /// Confinement of the run.
    pub sandbox: Sandbox,
    /// The host login file to use (gemini/opencode); `UAG_<P>_AUTH_PATH` overrides.
    pub auth_path: Option<PathBuf>,
    /// Accept any `model` for this provider, not only those in `models`.
    pub allow_any_model: bool,
    /// `warm` (default) or `exec`.
    pub mode: RunMode,
    /// Seconds an idle warm process lives (default 600).
    pub warm_idle_seconds: Option<u64>,
}

impl ProviderConfig {
    /// Whether the provider is enabled (default true).
    pub fn is_enabled(&self) -> bool {
        self.enabled.unwrap_or(true)
    }

    /// The stall timeout in seconds (default 600; 0 = off).
    pub fn stall_timeout(&self) -> u64 {
        self.stall_timeout_seconds.unwrap_or(600)
    }

    /// Seconds an idle warm process lives (default 600, at least 1).
    pub fn warm_idle(&self) -> u64 {
        self.warm_idle_seconds.unwrap_or(600).max(1)
    }

    /// The whole-turn timeout in seconds (default 3600; 0 = off).
    pub fn turn_timeout(&self) -> u64 {
        self.turn_timeout_seconds.unwrap_or(3600)
    }

    fn fill_defaults(&mut self, provider: Provider) {
        let (binary, model, models) = provider.defaults();
        if self.binary.is_empty() {
            self.binary = binary.to_string();
        }
        if self.default_model.is_empty() {
            self.default_model = model.to_string();
        }
        if self.models.is_empty() {
            self.models = models.iter().map(|m| m.to_string()).collect();
        }
        if !self.models.contains(&self.default_model) {
            self.models.insert(0, self.default_model.clone());
        }
    }
}

/// `[accounts]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AccountsConfig {
    /// Seconds between background usage refreshes; 0 disables the refresher.
    pub refresh_interval_seconds: u64,
    /// Usage endpoints asked for each account's quota windows, in order.
    pub usage_endpoints: Vec<String>,
    /// OAuth token endpoint for refreshing Codex access tokens.
    pub oauth_token_url: String,
    /// OAuth client id for that endpoint.
    pub oauth_client_id: String,
    /// Below this percentage of remaining quota the CLI-primary account is passed over.
    pub headroom_threshold_percent: f64,
}

impl Default for AccountsConfig {
    fn default() -> Self {
        AccountsConfig {
            refresh_interval_seconds: 900,
            usage_endpoints: vec!["https://chatgpt.com/backend-api/wham/usage".to_string()],
            oauth_token_url: "https://auth.openai.com/oauth/token".to_string(),
            oauth_client_id: "app_EMoamEEZ73f0CkXaXp7hrann".to_string(),
            headroom_threshold_percent: 10.0,
        }
    }
}

/// `[users]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UsersConfig {
    /// Concurrent turns a new user may run.
    pub default_max_concurrency: u32,
}

impl Default for UsersConfig {
    fn default() -> Self {
        UsersConfig {
            default_max_concurrency: 2,
        }
    }
}

/// `[logging]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoggingConfig {
    /// error, warn, info, debug or trace.
    pub level: String,
    /// JSON lines on stderr even when it is a terminal (which otherwise gets a short line for a
    /// person); stderr that is not a terminal, and the file, always get JSON lines.
    pub json: bool,
    /// Directory of `codara-YYYY-MM-DD.jsonl`; default `<data_dir>/logs`.
    pub root: Option<PathBuf>,
    /// Days of log files to keep (0: all).
    pub retention_days: u32,
    /// The size at which a day's log file is continued in `codara-YYYY-MM-DD.N.jsonl`.
    pub max_bytes: u64,
}

impl Default for LoggingConfig {
    fn default() -> Self {
        LoggingConfig {
            level: "info".to_string(),
            json: false,
            root: None,
            retention_days: 30,
            max_bytes: 64 * 1024 * 1024,
        }
    }
}

/// `[telemetry]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    /// Whether traces are recorded and written.
    pub enabled: bool,
    /// Directory of trace partitions (`events/YYYY/MM/DD/HH.jsonl`); default `<data_dir>/traces`.
    pub trace_root: Option<PathBuf>,
    /// Days of trace partitions to keep (0: all).
    pub trace_retention_days: u32,
    /// `GET /metrics` without a token from loopback (a request that came through a proxy —
    /// `Forwarded`, `X-Forwarded-For`, `X-Real-IP` — never counts as loopback). `false` asks
    /// for the operator token there too: any local process, agents included, can reach
    /// loopback.
    pub metrics_loopback: bool,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        TelemetryConfig {
            enabled: true,
            trace_root: None,
            trace_retention_days: 30,
            metrics_loopback: true,
        }
    }
}

/// `[release]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReleaseConfig {
    /// Whether `version --check` and `?check_updates=true` may call out.
    pub enabled: bool,
    /// `owner/repo` (or a GitHub URL) whose latest release is compared.
    pub repository: Option<String>,
    /// Base of the GitHub-compatible API.
    pub api_base_url: String,
    /// Timeout of one check.
    pub check_timeout_seconds: u64,
    /// How long the management endpoint reuses a result.
    pub check_cache_ttl_seconds: u64,
}

impl Default for ReleaseConfig {
    fn default() -> Self {
        ReleaseConfig {
            enabled: false,
            repository: None,
            api_base_url: "https://api.github.com".to_string(),
            check_timeout_seconds: 3,
            check_cache_ttl_seconds: 21_600,
        }
    }
}

/// `[channels]`.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct ChannelsConfig {
    /// `[channels.telegram]`.
    pub telegram: TelegramConfig,
}

/// `[channels.telegram]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelegramConfig {
    /// Whether the channel runs.
    pub enabled: bool,
    /// `webhook` or `polling`.
    pub receive_mode: String,
    /// Bot API base URL (a loopback fake in tests).
    pub api_base: String,
    /// Stream replies as one message edited while the agent writes (`false`: the reply is sent
    /// when the turn ends, split into as many messages as it needs).
    pub stream: bool,
    /// The provider of chat turns, unless the project names one in its metadata.
    pub provider: String,
    /// Seconds a `getUpdates` long poll waits for an update (polling mode).
    pub poll_timeout_seconds: u64,
    /// Seconds any other Bot API call may take before it is abandoned and retried.
    pub api_timeout_seconds: u64,
    /// The shortest time between two edits of a streamed reply (Telegram limits edit rates).
    pub edit_interval_ms: u64,
    /// Turns one bot runs at once (all chats together); more messages wait their turn.
    pub max_turns: usize,
    /// The bots, `[[channels.telegram.bots]]`.
    pub bots: Vec<TelegramBot>,
}

impl Default for TelegramConfig {
    fn default() -> Self {
        TelegramConfig {
            enabled: false,
            receive_mode: "polling".to_string(),
            api_base: "https://api.telegram.org".to_string(),
            stream: true,
            provider: "codex".to_string(),
            poll_timeout_seconds: 25,
            api_timeout_seconds: 10,
            edit_interval_ms: 1500,
            max_turns: 4,
            bots: Vec::new(),
        }
    }
}

impl TelegramConfig {
    /// The enabled bots, when the channel is enabled.
    pub fn active_bots(&self) -> impl Iterator<Item = &TelegramBot> {
        self.bots
            .iter()
            .filter(move |bot| self.enabled && bot.enabled)
    }

    /// The enabled bot called `name`, when the channel is enabled.
    pub fn bot(&self, name: &str) -> Option<&TelegramBot> {
        self.active_bots().find(|bot| bot.name == name)
    }
}

/// One `[[channels.telegram.bots]]` entry. Its `Debug` hides the token and the secret.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelegramBot {
    /// Name used in the webhook path, in link tokens and in the database.
    pub name: String,
    /// Bot token from BotFather; after loading, the value of `token_env` when that is set.
    #[serde(default)]
    pub token: Option<String>,
    /// An environment variable (or `.env` entry) holding the token, so that it need not be
    /// written into the file.
    #[serde(default)]
    pub token_env: Option<String>,
    /// Whether this bot runs.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Secret Telegram sends in `X-Telegram-Bot-Api-Secret-Token` (webhook mode); after loading,
    /// the value of `webhook_secret_env` when that is set.
    #[serde(default)]
    pub webhook_secret: Option<String>,
    /// An environment variable (or `.env` entry) holding the webhook secret.
    #[serde(default)]
    pub webhook_secret_env: Option<String>,
    /// The bot's @username, for `/cmd@bot` forms (asked from Telegram with `getMe` when unset).
    #[serde(default)]
    pub username: Option<String>,
}

impl std::fmt::Debug for TelegramBot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown = |s: &Option<String>| if s.is_some() { "<set>" } else { "<unset>" };
        f.debug_struct("TelegramBot")
            .field("name", &self.name)
            .field("token", &shown(&self.token))
            .field("token_env", &self.token_env)
            .field("enabled", &self.enabled)
            .field("webhook_secret", &shown(&self.webhook_secret))
            .field("webhook_secret_env", &self.webhook_secret_env)
            .field("username", &self.username)
            .finish()
    }
}

fn yes() -> bool {
    true
}

/// `[sandbox].mode`: whether agent runs are confined with Landlock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum SandboxMode {
    /// Landlock where the kernel has it; without it the gateway starts but refuses user turns.
    #[default]
    Auto,
    /// Landlock is required: a kernel without it is a start-up error.
    Landlock,
    /// No confinement: the operator accepts that agents can read the whole host.
    Off,
}

impl SandboxMode {
    /// The configuration word.
    pub fn as_str(self) -> &'static str {
        match self {
            SandboxMode::Auto => "auto",
            SandboxMode::Landlock => "landlock",
            SandboxMode::Off => "off",
        }
    }
}

/// `[sandbox]`.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct SandboxConfig {
    /// auto | landlock | off.
    pub mode: SandboxMode,
    /// Extra paths every confined run may read and execute (a CLI or runtime installed outside
    /// the system directories). Must not contain the data dir, the workspaces root, the config
    /// file or the gateway's home.
    pub read_paths: Vec<PathBuf>,
}

/// Secrets taken from the environment (or `.env`) only.
#[derive(Clone, Default)]
pub struct Secrets {
    /// The operator secret (`API_TOKEN`, alias `UAG_MGMT_SECRET`).
    pub operator_secret: Option<String>,
    /// The vault master key (`UAG_MASTER_KEY`).
    pub master_key: Option<String>,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown = |s: &Option<String>| if s.is_some() { "<set>" } else { "<unset>" };
        f.debug_struct("Secrets")
            .field("operator_secret", &shown(&self.operator_secret))
            .field("master_key", &shown(&self.master_key))
            .finish()
    }
}

impl Default for Config {
    fn default() -> Self {
        let mut config = Config {
            server: ServerConfig::default(),
            storage: StorageConfig::default(),
            workspace: WorkspaceConfig::default(),
            providers: ProvidersConfig::default(),
            accounts: AccountsConfig::default(),
            users: UsersConfig::default(),
            logging: LoggingConfig::default(),
            telemetry: TelemetryConfig::default(),
            release: ReleaseConfig::default(),
            channels: ChannelsConfig::default(),
            sandbox: SandboxConfig::default(),
            secrets: Secrets::default(),
            source: None,
            host: HostEnv::default(),
        };
        config.fill_provider_defaults();
        config
    }
}

/// What the command line says about configuration; flags win over everything.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    /// `--config`.
    pub config_path: Option<PathBuf>,
    /// `--host`.
    pub host: Option<String>,
    /// `--port`.
    pub port: Option<u16>,
}

/// Reads one variable the configuration names itself (a bot's `token_env`).
#[allow(clippy::disallowed_methods)] // The operator named this variable in the config.
fn named_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// A portable environment variable name: `[A-Za-z_][A-Za-z0-9_]*`.
fn valid_env_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Reads the allowed environment variables of this process.
#[allow(clippy::disallowed_methods)] // The one place that reads the environment.
pub fn process_env() -> BTreeMap<String, String> {
    ENV_NAMES
        .iter()
        .chain(HOST_ENV_NAMES)
        .filter_map(|name| {
            std::env::var(name)
                .ok()
                .map(|value| (name.to_string(), value))
        })
        .collect()
}

impl Config {
    /// Loads the configuration for this process: flags, its environment, the files.
    pub fn load(overrides: &Overrides) -> Result<Config> {
        let cwd = std::env::current_dir().map_err(|e| Error::io(".", e))?;
        Config::load_with(overrides, &process_env(), &cwd, &named_env)
    }

    /// Loads with an explicit environment and working directory (what tests call); variables a
    /// config names (`token_env`) are looked up in `env` too.
    pub fn load_from(
        overrides: &Overrides,
        env: &BTreeMap<String, String>,
        cwd: &Path,
    ) -> Result<Config> {
        Config::load_with(overrides, env, cwd, &|name| env.get(name).cloned())
    }

    /// The loading itself: `named` reads a variable the configuration names by itself (a bot's
    /// `token_env`); those are the only names outside [`ENV_NAMES`] ever read.
    fn load_with(
        overrides: &Overrides,
        env: &BTreeMap<String, String>,
        cwd: &Path,
        named: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config> {
        let (path, must_exist) = match (&overrides.config_path, env.get("CODARA_CONFIG")) {
            (Some(path), _) => (cwd.join(path), true),
            (None, Some(path)) if !path.is_empty() => (cwd.join(path), true),
            _ => (cwd.join("codara.toml"), false),
        };
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => Some(text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !must_exist => None,
            Err(e) => {
                return Err(Error::Config {
                    source: path.display().to_string(),
                    key: "(file)".to_string(),
                    reason: format!("cannot read the config file: {e}"),
                })
            }
        };
        let base_dir = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| cwd.to_path_buf());
        let (mut config, table) = match &text {
            Some(text) => parse_file(text, &path)?,
            None => (Config::default(), toml::Table::new()),
        };
        if text.is_some() {
            config.source = Some(path.clone());
            config.resolve_file_paths(&base_dir);
        }

        let dotenv_path = base_dir.join(".env");
        let dotenv = match std::fs::read_to_string(&dotenv_path) {
            Ok(text) => parse_dotenv(&text),
            Err(_) => BTreeMap::new(),
        };
        // `.env` sits below the file: it applies only where the file is silent.
        for (name, value) in &dotenv {
            if !ENV_NAMES.contains(&name.as_str()) || env.contains_key(name) {
                continue;
            }
            if env_key_path(name).is_some_and(|key| table_has(&table, key)) {
                continue;
            }
            config.apply_env(
                name,
                value,
                &format!("{} (.env)", dotenv_path.display()),
                &base_dir,
            )?;
        }
        for (name, value) in env {
            config.apply_env(name, value, &format!("environment variable {name}"), cwd)?;
        }
        config.host = HostEnv {
            path: env
                .get("PATH")
                .cloned()
                .unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".to_string()),
            home: env.get("HOME").map(PathBuf::from),
        };
        if let Some(host) = &overrides.host {
            config.server.host = host.clone();
        }
        if let Some(port) = overrides.port {
            config.server.port = port;
        }
        config.fill_provider_defaults();
        config.resolve_named_secrets(named, &dotenv);
        config.validate()?;
        Ok(config)
    }

    /// Fills each bot's token and webhook secret from the variable its `*_env` key names (the
    /// environment first, then `.env`), over a value in the file. A variable that is not set
    /// leaves the file's value (or none): only `serve` needs the token, and refuses to start
    /// without it, so other commands work in a shell that lacks the variable.
    fn resolve_named_secrets(
        &mut self,
        named: &dyn Fn(&str) -> Option<String>,
        dotenv: &BTreeMap<String, String>,
    ) {
        let lookup = |name: &Option<String>| -> Option<String> {
            let name = name.as_deref().filter(|n| valid_env_name(n))?;
            named(name)
                .or_else(|| dotenv.get(name).cloned())
                .and_then(|v| non_empty(&v))
        };
        for bot in &mut self.channels.telegram.bots {
            if let Some(token) = lookup(&bot.token_env) {
                bot.token = Some(token);
            }
            if let Some(secret) = lookup(&bot.webhook_secret_env) {
                bot.webhook_secret = Some(secret);
            }
        }
    }

    /// `[logging].root`, defaulting under the data dir.
    pub fn log_root(&self) -> PathBuf {
        self.logging
            .root
            .clone()
            .unwrap_or_else(|| self.storage.data_dir.join("logs"))
    }

    /// `[telemetry].trace_root`, defaulting under the data dir.
    pub fn trace_root(&self) -> PathBuf {
        self.telemetry
            .trace_root
            .clone()
            .unwrap_or_else(|| self.storage.data_dir.join("traces"))
    }

    /// The settings of [`INERT`] this configuration sets: parsed, but not acted on by this
    /// build. Start-up warns about each and `codara doctor` lists them, so none is ignored
    /// silently.
    pub fn inert_settings(&self) -> Vec<&'static str> {
        INERT
            .iter()
            .filter(|(_, set)| set(self))
            .map(|(what, _)| *what)
            .collect()
    }

    fn fill_provider_defaults(&mut self) {
        self.providers.codex.fill_defaults(Provider::Codex);
        self.providers.gemini.fill_defaults(Provider::Gemini);
        self.providers.opencode.fill_defaults(Provider::Opencode);
    }

    /// Relative paths in the file are relative to the file, not to wherever codara was started.
    fn resolve_file_paths(&mut self, base: &Path) {
        let join = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        join(&mut self.storage.data_dir);
        join(&mut self.workspace.root);
        for p in &mut self.sandbox.read_paths {
            join(p);
        }
        for p in [
            &mut self.storage.database_path,
            &mut self.logging.root,
            &mut self.telemetry.trace_root,
        ]
        .into_iter()
        .flatten()
        {
            join(p);
        }
    }

    fn apply_env(&mut self, name: &str, value: &str, source: &str, base: &Path) -> Result<()> {
        let bad = |reason: String| Error::Config {
            source: source.to_string(),
            key: env_key_path(name).unwrap_or(name).to_string(),
            reason,
        };
        let path = |v: &str| {
            let p = PathBuf::from(v);
            if p.is_relative() {
                base.join(p)
            } else {
                p
            }
        };
        let seconds = |v: &str| {
            v.trim()
                .parse::<u64>()
                .map_err(|_| bad(format!("expected a whole number of seconds, got `{v}`")))
        };
        match name {
            "API_TOKEN" => self.secrets.operator_secret = non_empty(value),
            // API_TOKEN is the primary name; the alias fills in only when it is absent.
            "UAG_MGMT_SECRET" if self.secrets.operator_secret.is_none() => {
                self.secrets.operator_secret = non_empty(value)
            }
            "UAG_MASTER_KEY" => self.secrets.master_key = non_empty(value),
            "UAG_WORKSPACES_ROOT" => self.workspace.root = path(value),
            "UAG_DATABASE_PATH" => self.storage.database_path = Some(path(value)),
            "UAG_CODEX_STALL_TIMEOUT_SECONDS" => {
                self.providers.codex.stall_timeout_seconds = Some(seconds(value)?)
            }
            "UAG_GEMINI_STALL_TIMEOUT_SECONDS" => {
                self.providers.gemini.stall_timeout_seconds = Some(seconds(value)?)
            }
            "UAG_OPENCODE_STALL_TIMEOUT_SECONDS" => {
                self.providers.opencode.stall_timeout_seconds = Some(seconds(value)?)
            }
            "UAG_CODEX_AUTH_PATH" => self.providers.codex.auth_path = Some(path(value)),
            "UAG_GEMINI_AUTH_PATH" => self.providers.gemini.auth_path = Some(path(value)),
            "UAG_OPENCODE_AUTH_PATH" => self.providers.opencode.auth_path = Some(path(value)),
            "UAG_RELEASE_REPOSITORY" => self.release.repository = non_empty(value),
            "UAG_RELEASE_CHECK_ENABLED" => {
                self.release.enabled = parse_bool(value)
                    .ok_or_else(|| bad(format!("expected true or false, got `{value}`")))?
            }
            "CODARA_HOST" => self.server.host = value.trim().to_string(),
            "CODARA_PORT" => {
                self.server.port = value
                    .trim()
                    .parse::<u16>()
                    .map_err(|_| bad(format!("expected a port number 0-65535, got `{value}`")))?
            }
            _ => {}
        }
        Ok(())
    }

    fn validate(&self) -> Result<()> {
        let source = self
            .source
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "configuration".to_string());
        let fail = |key: &str, reason: &str| {
            Err(Error::Config {
                source: source.clone(),
                key: key.to_string(),
                reason: reason.to_string(),
            })
        };
        if self.server.host.trim().is_empty() {
            return fail("server.host", "must not be empty");
        }
        if self.server.workers == 0 || self.server.workers > 1024 {
            return fail("server.workers", "must be between 1 and 1024");
        }
        if self.server.queue > 65_536 {
            return fail("server.queue", "must be at most 65536");
        }
        if self.server.turn_workers == 0 || self.server.turn_workers > 256 {
            return fail("server.turn_workers", "must be between 1 and 256");
        }
        if self.server.max_body_bytes < 1024 {
            return fail("server.max_body_bytes", "must be at least 1024");
        }
        if self.server.read_timeout_seconds == 0 {
            return fail("server.read_timeout_seconds", "must be at least 1");
        }
        if self.server.body_timeout_seconds == 0 || self.server.body_timeout_seconds > 86_400 {
            return fail("server.body_timeout_seconds", "must be between 1 and 86400");
        }
        if self.server.min_body_rate_bytes == 0 {
            return fail("server.min_body_rate_bytes", "must be at least 1");
        }
        if self.server.max_pending_bodies == 0 || self.server.max_pending_bodies > 4096 {
            return fail("server.max_pending_bodies", "must be between 1 and 4096");
        }
        if self.server.max_connections_per_ip > 1_000_000 {
            return fail(
                "server.max_connections_per_ip",
                "must be at most 1000000 (0 turns the cap off)",
            );
        }
        if let Some(url) = &self.server.public_url {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return fail("server.public_url", "must start with http:// or https://");
            }
        }
        if !matches!(
            self.logging.level.as_str(),
            "error" | "warn" | "info" | "debug" | "trace"
        ) {
            return fail(
                "logging.level",
                "must be one of error, warn, info, debug, trace",
            );
        }
        if self.logging.max_bytes < 1024 {
            return fail("logging.max_bytes", "must be at least 1024");
        }
        if !matches!(
            self.channels.telegram.receive_mode.as_str(),
            "webhook" | "polling"
        ) {
            return fail(
                "channels.telegram.receive_mode",
                "must be webhook or polling",
            );
        }
        self.validate_telegram(&fail)?;
        if !matches!(
            self.workspace.default_template.as_str(),
            "default" | "python" | "docs" | "empty"
        ) {
            return fail(
                "workspace.default_template",
                "must be one of default, python, docs, empty",
            );
        }
        if !(0.0..=100.0).contains(&self.accounts.headroom_threshold_percent) {
            return fail(
                "accounts.headroom_threshold_percent",
                "must be between 0 and 100",
            );
        }
        if !(self.release.api_base_url.starts_with("http://")
            || self.release.api_base_url.starts_with("https://"))
        {
            return fail(
                "release.api_base_url",
                "must start with http:// or https://",
            );
        }
        for (name, provider) in self.providers.iter() {
            if provider.binary.trim().is_empty() {
                return fail(&format!("providers.{name}.binary"), "must not be empty");
            }
        }
        Ok(())
    }
}

impl Config {
    /// `[channels.telegram]`: bot names (unique, path-safe), variable names, secrets in the form
    /// Telegram accepts, a webhook secret for every bot in webhook mode, and sane timings.
    fn validate_telegram(&self, fail: &dyn Fn(&str, &str) -> Result<()>) -> Result<()> {
        let telegram = &self.channels.telegram;
        if !(1..=50).contains(&telegram.poll_timeout_seconds) {
            return fail(
                "channels.telegram.poll_timeout_seconds",
                "must be between 1 and 50",
            );
        }
        if !(1..=300).contains(&telegram.api_timeout_seconds) {
            return fail(
                "channels.telegram.api_timeout_seconds",
                "must be between 1 and 300",
            );
        }
        if !(100..=60_000).contains(&telegram.edit_interval_ms) {
            return fail(
                "channels.telegram.edit_interval_ms",
                "must be between 100 and 60000",
            );
        }
        if !(1..=64).contains(&telegram.max_turns) {
            return fail("channels.telegram.max_turns", "must be between 1 and 64");
        }
        if Provider::from_name(&telegram.provider).is_none() {
            return fail(
                "channels.telegram.provider",
                "must be one of codex, gemini, opencode",
            );
        }
        if !(telegram.api_base.starts_with("http://") || telegram.api_base.starts_with("https://"))
        {
            return fail(
                "channels.telegram.api_base",
                "must start with http:// or https://",
            );
        }
        let mut names = std::collections::BTreeSet::new();
        for (i, bot) in telegram.bots.iter().enumerate() {
            let key = |field: &str| format!("channels.telegram.bots[{i}].{field}");
            let name_ok = !bot.name.is_empty()
                && bot.name.len() <= 64
                && bot
                    .name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
            if !name_ok {
                return fail(
                    &key("name"),
                    "must be 1-64 letters, digits, `_` or `-` (it is part of the webhook path)",
                );
            }
            if !names.insert(bot.name.as_str()) {
                return fail(&key("name"), "another bot has this name");
            }
            for (field, value) in [
                ("token_env", &bot.token_env),
                ("webhook_secret_env", &bot.webhook_secret_env),
            ] {
                if value.as_deref().is_some_and(|v| !valid_env_name(v)) {
                    return fail(
                        &key(field),
                        "must be a variable name like CODARA_TELEGRAM_TOKEN",
                    );
                }
            }
            if let Some(secret) = &bot.webhook_secret {
                // Telegram's own rule for `secret_token`.
                let ok = (1..=256).contains(&secret.len())
                    && secret
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
                if !ok {
                    return fail(
                        &key("webhook_secret"),
                        "must be 1-256 letters, digits, `_` or `-` (Telegram's rule)",
                    );
                }
            }
            let active = telegram.enabled && bot.enabled;
            if active && bot.token.is_none() && bot.token_env.is_none() {
                return fail(&key("token"), "set token or token_env");
            }
            // A variable named but unset is reported by `serve`, which is the one that needs it.
            let webhook = active && telegram.receive_mode == "webhook";
            if webhook && bot.webhook_secret.is_none() && bot.webhook_secret_env.is_none() {
                return fail(
                    &key("webhook_secret"),
                    "is required in webhook mode (set webhook_secret or webhook_secret_env): \
                     without it anyone could post updates as Telegram",
                );
            }
        }
        Ok(())
    }
}

/// The TOML key an environment variable overrides, for `.env` precedence and error messages.
fn env_key_path(name: &str) -> Option<&'static str> {
    Some(match name {
        "UAG_WORKSPACES_ROOT" => "workspace.root",
        "UAG_DATABASE_PATH" => "storage.database_path",
        "UAG_CODEX_STALL_TIMEOUT_SECONDS" => "providers.codex.stall_timeout_seconds",
        "UAG_GEMINI_STALL_TIMEOUT_SECONDS" => "providers.gemini.stall_timeout_seconds",
        "UAG_OPENCODE_STALL_TIMEOUT_SECONDS" => "providers.opencode.stall_timeout_seconds",
        "UAG_CODEX_AUTH_PATH" => "providers.codex.auth_path",
        "UAG_GEMINI_AUTH_PATH" => "providers.gemini.auth_path",
        "UAG_OPENCODE_AUTH_PATH" => "providers.opencode.auth_path",
        "UAG_RELEASE_REPOSITORY" => "release.repository",
        "UAG_RELEASE_CHECK_ENABLED" => "release.enabled",
        "CODARA_HOST" => "server.host",
        "CODARA_PORT" => "server.port",
        _ => return None,
    })
}

fn table_has(table: &toml::Table, dotted: &str) -> bool {
    let mut current = table;
    let mut parts = dotted.split('.').peekable();
    while let Some(part) = parts.next() {
        match current.get(part) {
            Some(toml::Value::Table(inner)) if parts.peek().is_some() => current = inner,
            Some(_) if parts.peek().is_none() => return true,
            _ => return false,
        }
    }
    false
}

fn parse_file(text: &str, path: &Path) -> Result<(Config, toml::Table)> {
    let table: toml::Table = toml::from_str(text).map_err(|e| toml_error(text, path, &e))?;
    let config: Config = toml::from_str(text).map_err(|e| toml_error(text, path, &e))?;
    Ok((config, table))
}

/// Turns a toml error into "file:line: key: reason", finding the key from the error's span.
fn toml_error(text: &str, path: &Path, error: &toml::de::Error) -> Error {
    let reason = error.message().trim().to_string();
    let (line_no, key) = match error.span() {
        Some(span) => locate_key(text, span.start, span.end),
        None => (0, "(file)".to_string()),
    };
    let source = if line_no > 0 {
        format!("{}:{line_no}", path.display())
    } else {
        path.display().to_string()
    };
    Error::Config {
        source,
        key,
        reason,
    }
}

fn locate_key(text: &str, start: usize, end: usize) -> (usize, String) {
    let start = start.min(text.len());
    let line_start = text[..start].rfind('\n').map(|i| i + 1).unwrap_or(0);
    let line_no = text[..start].matches('\n').count() + 1;
    let line_end = text[start..]
        .find('\n')
        .map(|i| start + i)
        .unwrap_or(text.len());
    let line = &text[line_start..line_end];
    let spanned = text.get(start..end.min(text.len())).unwrap_or("").trim();
    let key = match line.find('=') {
        Some(eq) => line[..eq].trim().trim_matches('"').to_string(),
        None => spanned.trim_matches(|c| c == '[' || c == ']').to_string(),
    };
    let header = text[..line_start]
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('['))
        .map(|l| l.trim_matches(|c| c == '[' || c == ']').trim().to_string());
    let key = match header {
        Some(header) if !line.trim_start().starts_with('[') && !key.is_empty() => {
            format!("{header}.{key}")
        }
        _ if key.is_empty() => "(file)".to_string(),
        _ => key,
    };
    (line_no, key)
}

/// Parses `KEY=VALUE` lines: `#` comments, optional `export `, one layer of matching quotes.
pub fn parse_dotenv(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let value = value.trim();
        let value = match value.as_bytes() {
            [b'"', .., b'"'] | [b'\'', .., b'\''] if value.len() >= 2 => &value[1..value.len() - 1],
            _ => value,
        };
        out.insert(key.trim().to_string(), value.to_string());
    }
    out
}

fn non_empty(value: &str) -> Option<String> {
    let value = value.trim();
    (!value.is_empty()).then(|| value.to_string())
}

fn parse_bool(value: &str) -> Option<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Some(true),
        "0" | "false" | "no" | "off" | "" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(toml_text: Option<&str>, dotenv: Option<&str>, env: &[(&str, &str)]) -> Result<Config> {
        let dir = std::env::temp_dir().join(crate::crypto::random_id("codara-config-test-"));
        std::fs::create_dir_all(&dir).unwrap();
        if let Some(text) = toml_text {
            std::fs::write(dir.join("codara.toml"), text).unwrap();
        }
        if let Some(text) = dotenv {
            std::fs::write(dir.join(".env"), text).unwrap();
        }
        let env = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let result = Config::load_from(&Overrides::default(), &env, &dir);
        std::fs::remove_dir_all(&dir).unwrap();
        result
    }

    fn check_error(toml_text: &str, expected: &str) {
        let error = load(Some(toml_text), None, &[]).unwrap_err().to_string();
        assert!(error.contains(expected), "`{error}` lacks `{expected}`");
    }

    #[test]
    fn defaults_without_any_file() {
        let config = load(None, None, &[]).unwrap();
        assert_eq!(config.server.host, "127.0.0.1");
        assert_eq!(config.server.port, 8000);
        assert_eq!(config.server.body_timeout_seconds, 60);
        assert_eq!(config.server.min_body_rate_bytes, 1024);
        assert_eq!(config.server.max_pending_bodies, 64);
        assert_eq!(config.server.max_connections_per_ip, 64);
        assert!(!config.server.image_fetch_private, "no SSRF by default");
        let on = load(Some("[server]\nimage_fetch_private = true\n"), None, &[]).unwrap();
        assert!(on.server.image_fetch_private);
        assert_eq!(config.providers.gemini.default_model, "gemini-2.5-pro");
        assert_eq!(config.providers.codex.stall_timeout(), 600);
        assert!(config.source.is_none());
    }

    #[test]
    fn precedence_env_over_file_over_dotenv() {
        let file = "[server]\nport = 9001\n";
        let dotenv = "CODARA_PORT=9002\nCODARA_HOST=0.0.0.0\nAPI_TOKEN='from-dotenv'\n";
        let config = load(Some(file), Some(dotenv), &[]).unwrap();
        assert_eq!(config.server.port, 9001, "file beats .env");
        assert_eq!(config.server.host, "0.0.0.0", ".env beats defaults");
        assert_eq!(
            config.secrets.operator_secret.as_deref(),
            Some("from-dotenv")
        );
        let config = load(Some(file), Some(dotenv), &[("CODARA_PORT", "9003")]).unwrap();
        assert_eq!(config.server.port, 9003, "env beats file");
    }

    #[test]
    fn api_token_wins_over_alias() {
        let config = load(
            None,
            None,
            &[("UAG_MGMT_SECRET", "alias"), ("API_TOKEN", "primary")],
        )
        .unwrap();
        assert_eq!(config.secrets.operator_secret.as_deref(), Some("primary"));
        let config = load(None, None, &[("UAG_MGMT_SECRET", "alias")]).unwrap();
        assert_eq!(config.secrets.operator_secret.as_deref(), Some("alias"));
    }

    #[test]
    fn provider_defaults_survive_partial_blocks() {
        let config = load(
            Some("[providers.gemini]\nstall_timeout_seconds = 5\n"),
            None,
            &[],
        )
        .unwrap();
        assert_eq!(config.providers.gemini.binary, "gemini");
        assert_eq!(config.providers.gemini.stall_timeout(), 5);
    }

    #[test]
    fn validation_errors_name_file_key_and_reason() {
        check_error(
            "[server]\nbogus = 1\n",
            "codara.toml:2: server.bogus: unknown field `bogus`",
        );
        check_error("[server]\nport = 70000\n", "server.port");
        check_error("[server]\nport = \"eighty\"\n", "server.port: invalid type");
        check_error(
            "[server]\nbody_timeout_seconds = 0\n",
            "server.body_timeout_seconds: must be between 1 and 86400",
        );
        check_error(
            "[server]\nmin_body_rate_bytes = 0\n",
            "server.min_body_rate_bytes: must be at least 1",
        );
        check_error(
            "[server]\nmax_pending_bodies = 0\n",
            "server.max_pending_bodies",
        );
        check_error(
            "[logging]\nlevel = \"loud\"\n",
            "logging.level: must be one of",
        );
        check_error("[nonsense]\n", "unknown field `nonsense`");
    }

    #[test]
    fn inert_settings_are_listed_when_set() {
        let check = |toml: Option<&str>, env: &[(&str, &str)], expected: &[&str]| {
            let config = load(toml, None, env).unwrap();
            let got: Vec<&str> = config
                .inert_settings()
                .iter()
                .map(|s| s.split(' ').next().unwrap())
                .collect();
            assert_eq!(got, expected, "{toml:?} {env:?}");
        };
        check(None, &[], &[]);
        // Telegram and public_url are acted on (the channel, its webhooks): never inert.
        check(
            Some("[server]\npublic_url = \"https://x.example\"\n[channels.telegram]\nenabled = true\n"),
            &[],
            &[],
        );
        check(
            None,
            &[("UAG_GEMINI_AUTH_PATH", "/x/oauth.json")],
            &["[providers.<p>].auth_path"],
        );
        check_error(
            "[logging]\nmax_bytes = 10\n",
            "logging.max_bytes: must be at least 1024",
        );
    }

    #[test]
    fn bad_env_values_are_reported() {
        let error = load(None, None, &[("CODARA_PORT", "abc")])
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("environment variable CODARA_PORT"),
            "{error}"
        );
        assert!(error.contains("server.port"), "{error}");
    }

    #[test]
    fn telegram_tokens_from_named_variables() {
        let file = "[channels.telegram]\nenabled = true\n\n[[channels.telegram.bots]]\n\
                    name = \"main\"\ntoken_env = \"MY_BOT_TOKEN\"\n\
                    webhook_secret_env = \"MY_BOT_SECRET\"\n";
        // From the environment (only because the file names it) ...
        let config = load(Some(file), None, &[("MY_BOT_TOKEN", "123:abc")]).unwrap();
        let bot = &config.channels.telegram.bots[0];
        assert_eq!(bot.token.as_deref(), Some("123:abc"));
        assert_eq!(bot.webhook_secret, None);
        // ... or from `.env`; the environment wins.
        let dotenv = "MY_BOT_TOKEN=from-dotenv\nMY_BOT_SECRET=s3cret\n";
        let config = load(Some(file), Some(dotenv), &[]).unwrap();
        let bot = &config.channels.telegram.bots[0];
        assert_eq!(bot.token.as_deref(), Some("from-dotenv"));
        assert_eq!(bot.webhook_secret.as_deref(), Some("s3cret"));
        let config = load(Some(file), Some(dotenv), &[("MY_BOT_TOKEN", "env")]).unwrap();
        assert_eq!(
            config.channels.telegram.bots[0].token.as_deref(),
            Some("env")
        );
        // Unset: loading works (only `serve` needs the token).
        let config = load(Some(file), None, &[]).unwrap();
        assert_eq!(config.channels.telegram.bots[0].token, None);
        // Debug never shows them.
        let shown = format!("{:?}", load(Some(file), Some(dotenv), &[]).unwrap());
        assert!(
            !shown.contains("from-dotenv") && !shown.contains("s3cret"),
            "{shown}"
        );
    }

    #[test]
    fn telegram_refusals() {
        let bot = |extra: &str| {
            format!(
                "[channels.telegram]\nenabled = true\n{extra}\n[[channels.telegram.bots]]\n\
                 name = \"main\"\ntoken = \"1:x\"\n"
            )
        };
        check_error(
            &bot("receive_mode = \"webhook\""),
            "channels.telegram.bots[0].webhook_secret: is required in webhook mode",
        );
        check_error(
            &format!("{}webhook_secret = \"a b\"\n", bot("")),
            "bots[0].webhook_secret: must be 1-256",
        );
        check_error(
            "[channels.telegram]\nenabled = true\n[[channels.telegram.bots]]\nname = \"a\"\n",
            "bots[0].token: set token or token_env",
        );
        check_error(
            &bot("").replace("\"main\"", "\"../x\""),
            "bots[0].name: must be 1-64",
        );
        check_error(
            &format!(
                "{}[[channels.telegram.bots]]\nname = \"main\"\ntoken = \"2:y\"\n",
                bot("")
            ),
            "bots[1].name: another bot has this name",
        );
        check_error(
            &bot("provider = \"claude\""),
            "channels.telegram.provider: must be one of",
        );
        check_error(
            &bot("poll_timeout_seconds = 0"),
            "channels.telegram.poll_timeout_seconds",
        );
        check_error(
            &format!("{}token_env = \"not a name\"\n", bot("")),
            "bots[0].token_env: must be a variable name",
        );
        // A disabled channel is not held to the rules that only matter when it runs.
        load(
            Some("[channels.telegram]\nreceive_mode = \"webhook\"\n[[channels.telegram.bots]]\nname = \"a\"\n"),
            None,
            &[],
        )
        .unwrap();
    }

    #[test]
    fn dotenv_parsing() {
        let parsed = parse_dotenv("# c\nexport A=1\nB=\"two\"\nC='3'\nbroken\n");
        assert_eq!(parsed.get("A").map(String::as_str), Some("1"));
        assert_eq!(parsed.get("B").map(String::as_str), Some("two"));
        assert_eq!(parsed.get("C").map(String::as_str), Some("3"));
        assert_eq!(parsed.len(), 3);
    }

    #[test]
    fn the_example_config_is_valid_with_every_key_uncommented() {
        let example = include_str!("../codara.toml.example");
        let uncommented: String = example
            .lines()
            .map(|line| {
                let body = line.strip_prefix("# ").unwrap_or("");
                let key_like = body.starts_with('[')
                    || body.split_once(" = ").is_some_and(|(k, _)| {
                        k.trim()
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '_')
                    });
                if key_like {
                    format!("{body}\n")
                } else {
                    format!("{line}\n")
                }
            })
            .collect();
        let config = load(Some(&uncommented), None, &[]).unwrap();
        assert_eq!(
            config.server.public_url.as_deref(),
            Some("https://codara.example.com")
        );
        assert_eq!(config.channels.telegram.bots.len(), 1);
        assert_eq!(
            config
                .providers
                .codex
                .env
                .get("SOME_VAR")
                .map(String::as_str),
            Some("value")
        );
    }
}
