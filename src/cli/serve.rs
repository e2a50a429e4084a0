//! `codara serve`: bind the port, then take the data-dir lock, open storage and the vault,
//! print the banner, serve. Binding comes first so that a start that cannot listen creates
//! nothing.

use crate::app::App;
use crate::config::Config;
use crate::datadir::{self, SecretSource};
use crate::error::{Error, Result};
use std::io::Write;
use std::net::TcpListener;
use std::sync::Arc;

const HELP: &str = "\
Usage: codara serve [--host HOST] [--port PORT] [--config FILE]

Runs the gateway until SIGTERM or SIGINT.

Options:
  --host HOST     Address to bind (default 127.0.0.1; env CODARA_HOST)
  --port PORT     Port to bind, 0 for any free port (default 8000; env CODARA_PORT)
  --config FILE   codara.toml to read (default ./codara.toml; env CODARA_CONFIG)
  -h, --help      Show this help
";

/// Runs the server; returns the exit code.
pub fn run(mut args: pico_args::Arguments) -> Result<i32> {
    if super::wants_help(&mut args, HELP) {
        return Ok(0);
    }
    let mut overrides = super::config_flag(&mut args)?;
    overrides.host = args
        .opt_value_from_str("--host")
        .map_err(|e| Error::bad_request(e.to_string()))?;
    overrides.port = args
        .opt_value_from_str("--port")
        .map_err(|e| Error::bad_request(format!("--port: {e} (expected 0-65535)")))?;
    super::finish(args)?;

    let config = Config::load(&overrides)?;
    crate::telegram::check(&config)?;
    let data_dir = config.storage.data_dir.clone();
    // The port first: a start that cannot listen must leave nothing behind (no data dir, no
    // secret that would then never be printed, no database, no admin user).
    let listener = bind(&config)?;
    let local = listener
        .local_addr()
        .map_err(|e| Error::io("listener", e))?;
    datadir::ensure_private_dir(&data_dir)?;
    let _lock = datadir::InstanceLock::acquire(&data_dir, Some(local))?;
    crate::telemetry::init(&crate::telemetry::log::Settings {
        level: config.logging.level.clone(),
        json: config.logging.json,
        root: Some(config.log_root()),
        max_bytes: config.logging.max_bytes,
    });
    crate::telemetry::start_tracing(config.telemetry.enabled, config.trace_root());
    crate::telemetry::start_pruner(crate::telemetry::retention::Retention {
        log_root: config.log_root(),
        log_days: config.logging.retention_days,
        trace_root: config.trace_root(),
        trace_days: config.telemetry.trace_retention_days,
    });
    let (secret, secret_source) =
        datadir::operator_secret(config.secrets.operator_secret.as_deref(), &data_dir)?;
    let app = App::open(config, secret, secret_source)?;
    crate::users::ensure_dashboard_admin(&app.store, &app.config)?;
    recover_from_crash(&app)?;

    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "Codara {} listening on http://{local}", crate::VERSION);
    let _ = writeln!(out, "Dashboard: http://{local}/dashboard");
    let _ = writeln!(out, "Sandbox: {}", app.sandbox.describe());
    if !app.sandbox.enforced() {
        let _ = writeln!(
            out,
            "WARNING: agent runs are NOT confined: an agent can read the vault key, the database \
             and every tenant's files. {}",
            if app.sandbox.refuses_users() {
                "Turns from user keys are refused until [sandbox].mode = \"off\" accepts this."
            } else {
                "[sandbox].mode = \"off\" was chosen by the operator."
            }
        );
    }
    match &app.operator_secret_source {
        SecretSource::Generated(path) | SecretSource::File(path) => {
            if crate::operator::generated_secret_used(&app.store, &app.operator_secret)? {
                let _ = writeln!(
                    out,
                    "Operator secret: kept in {} (read it there; set API_TOKEN to use your own)",
                    path.display()
                );
            } else {
                // Printed on every start until it signs in once: a first start whose output
                // nobody saw (a service manager, a closed terminal) must not lose it.
                let _ = writeln!(
                    out,
                    "Operator secret (generated; shown until it is used to sign in): {}",
                    app.operator_secret
                );
                let _ = writeln!(
                    out,
                    "  kept in {} — sign in with it (POST /management/v1/auth/token or the \
                     dashboard), or set API_TOKEN to use your own",
                    path.display()
                );
            }
        }
        SecretSource::Configured => {
            let _ = writeln!(out, "Operator secret: from API_TOKEN");
        }
    }
    let _ = out.flush();
    drop(out);
    log::info!(
        "codara {} listening on http://{local}; data dir {}; vault key {}; sandbox {}",
        crate::VERSION,
        data_dir.display(),
        app.vault.key_id(),
        app.sandbox.describe()
    );
    if !app.sandbox.enforced() {
        log::warn!("agent runs are not confined: {}", app.sandbox.describe());
    }
    for setting in app.config.inert_settings() {
        log::warn!("{setting} is configured, but this build does not act on it: it is ignored");
    }
    let app = Arc::new(app);
    spawn_usage_refresher(&app);
    crate::telegram::start(&app)?;
    let reaper = spawn_warm_reaper(&app);
    let served = crate::http::serve(Arc::clone(&app), listener);
    app.warm.shutdown(&app);
    if let Some(reaper) = reaper {
        let _ = reaper.join();
    }
    // Last: the lines of everything above reach their shards before the process exits.
    crate::telemetry::stop(std::time::Duration::from_secs(2));
    served?;
    Ok(0)
}

/// Binds the configured address. When it is taken, says whether by this data dir's own server
/// (read from its lock file, without creating anything) or by another process.
fn bind(config: &Config) -> Result<TcpListener> {
    let (host, port) = (config.server.host.as_str(), config.server.port);
    TcpListener::bind((host, port)).map_err(|e| {
        let holder = match datadir::running_server(&config.storage.data_dir) {
            Some(server)
                if e.kind() == std::io::ErrorKind::AddrInUse
                    && server.listening.is_some_and(|a| a.port() == port) =>
            {
                format!(
                    " (this data dir's codara serve, pid {}, is already listening there)",
                    server.pid
                )
            }
            _ if e.kind() == std::io::ErrorKind::AddrInUse => {
                " (another process has it: stop it, or set [server].port / CODARA_PORT / --port)"
                    .to_string()
            }
            _ => String::new(),
        };
        Error::Unavailable {
            code: "bind_failed",
            message: format!("cannot listen on {host}:{port}: {e}{holder}"),
        }
    })
}

/// After a crash or kill -9: kills the CLI process groups the previous run left (their pgids are
/// recorded under `<data_dir>/run/groups`), removes its temp dirs, and stores the turns it was
/// running as interrupted, with their workspace changes. Then records this run's groups.
fn recover_from_crash(app: &App) -> Result<()> {
    let run = app.config.storage.data_dir.join("run");
    let groups = run.join("groups");
    let killed = crate::process::reap_leftovers(&groups);
    if killed > 0 {
        log::warn!("killed {killed} CLI process group(s) left by the previous run");
    }
    let tmp = run.join("tmp");
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
    }
    let scrubbed = crate::accounts::scrub_all(&app.config.storage.data_dir)?;
    if scrubbed > 0 {
        log::warn!("removed {scrubbed} pooled credential(s) the previous run left in CLI homes");
    }
    let recovered = crate::turns::recover_interrupted(app)?;
    if recovered > 0 {
        log::warn!("stored {recovered} turn(s) the previous run was interrupted in");
    }
    crate::process::use_registry(&groups)
}

/// Retires idle warm agent processes (`warm_idle_seconds`) until shutdown.
fn spawn_warm_reaper(app: &Arc<App>) -> Option<std::thread::JoinHandle<()>> {
    let app = Arc::clone(app);
    std::thread::Builder::new()
        .name("warm-reaper".into())
        .stack_size(128 * 1024)
        .spawn(move || app.warm.reaper(&app))
        .inspect_err(|error| log::error!("cannot start the warm reaper: {error}"))
        .ok()
}

/// Refreshes account tokens and quota windows every `[accounts].refresh_interval_seconds`.
fn spawn_usage_refresher(app: &Arc<App>) {
    let interval = app.config.accounts.refresh_interval_seconds;
    if interval == 0 {
        return;
    }
    let app = Arc::clone(app);
    let spawned = std::thread::Builder::new()
        .name("usage-refresher".into())
        .spawn(move || {
            let tick = std::time::Duration::from_millis(500);
            let mut waited = std::time::Duration::ZERO;
            while !crate::shutdown::requested() {
                std::thread::sleep(tick);
                waited += tick;
                if waited.as_secs() < interval {
                    continue;
                }
                waited = std::time::Duration::ZERO;
                let has_accounts = app
                    .store
                    .read(|conn| crate::store::accounts::list(conn, Some("codex")))
                    .map(|a| !a.is_empty())
                    .unwrap_or(false);
                if has_accounts {
                    if let Err(error) = crate::accounts::refresh_all(
                        &app.store,
                        &app.vault,
                        &app.config.accounts,
                        None,
                    ) {
                        log::warn!("usage refresh failed: {error}");
                    }
                }
            }
        });
    if let Err(error) = spawned {
        log::error!("cannot start the usage refresher: {error}");
    }
}
