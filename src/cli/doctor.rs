//! `codara doctor`: checks configuration, data dir, database, vault, the Telegram bots' tokens
//! and each provider CLI.
//!
//! Read-mostly: it never takes the server lock, so it runs beside a live server.

use crate::config::Config;
use crate::error::Result;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

const HELP: &str = "\
Usage: codara doctor [--config FILE]

Checks the configuration, that the configured port is free (or held by this
data dir's own running server), the data directory, the database, the vault key,
the sandbox (Landlock) and each provider CLI (found on PATH or at [providers.<p>].binary, and its version);
in warm mode, starts each CLI's long-lived process once and shakes hands with it.
Exit code 1 when a required check fails; missing CLIs are warnings.
";

enum Level {
    Ok,
    Warn,
    Fail,
}

fn report(level: Level, what: &str, detail: &str) -> bool {
    let tag = match level {
        Level::Ok => "ok  ",
        Level::Warn => "warn",
        Level::Fail => "FAIL",
    };
    outln!("{tag}  {what:<10} {detail}");
    !matches!(level, Level::Fail)
}

/// The provider's run mode; in warm mode, whether its long-lived process starts and answers its
/// handshake (a failure is a warning: turns then run exec).
fn warm_check(
    config: &Config,
    sandbox: Option<&crate::sandbox::Sandbox>,
    provider: crate::providers::Provider,
    settings: &crate::config::ProviderConfig,
    binary: &std::path::Path,
) {
    let what = format!("{}-mode", provider.name());
    if settings.mode == crate::config::RunMode::Exec {
        report(Level::Ok, &what, "exec: one CLI process per turn");
        return;
    }
    let Some(sandbox) = sandbox else { return };
    match crate::warm::probe(config, sandbox, provider, binary) {
        Ok(took) => report(
            Level::Ok,
            &what,
            &format!(
                "warm: the long-lived process answered its handshake in {} ms",
                took.as_millis()
            ),
        ),
        Err(why) => report(
            Level::Warn,
            &what,
            &format!("warm mode cannot start ({why}); turns will run exec"),
        ),
    };
}

/// Where logs and traces go and for how long; a warning when the trace root cannot be a
/// directory (traces would be dropped, and counted, but requests still served).
fn telemetry_check(config: &Config) {
    let logs = format!(
        "logs {} ({} days, {} MiB per file)",
        config.log_root().display(),
        config.logging.retention_days,
        config.logging.max_bytes / (1024 * 1024)
    );
    if !config.telemetry.enabled {
        report(Level::Ok, "telemetry", &format!("{logs}; traces off"));
        return;
    }
    let root = config.trace_root();
    let blocked = root
        .ancestors()
        .find(|p| p.exists())
        .is_some_and(|existing| !existing.is_dir());
    let traces = format!(
        "traces {} ({} days)",
        root.display(),
        config.telemetry.trace_retention_days
    );
    if blocked {
        report(
            Level::Warn,
            "telemetry",
            &format!("{logs}; {traces} is not a directory: traces will be dropped"),
        );
    } else {
        report(Level::Ok, "telemetry", &format!("{logs}; {traces}"));
    }
}

/// Whether `serve` could listen where the configuration says: the port is free, or it is taken
/// by this data dir's own running server (its lock file records the address), or by something
/// else (a failure: `serve` would stop at start-up). Binds and closes at once; creates nothing.
fn port_check(config: &Config, running: Option<&crate::datadir::RunningServer>) -> (Level, String) {
    let (host, port) = (config.server.host.as_str(), config.server.port);
    if port == 0 {
        return (
            Level::Ok,
            format!("{host}:0: any free port is chosen at start"),
        );
    }
    match std::net::TcpListener::bind((host, port)) {
        Ok(_) => (Level::Ok, format!("{host}:{port} is free")),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => match running {
            Some(server) if server.listening.is_some_and(|a| a.port() == port) => (
                Level::Ok,
                format!(
                    "{host}:{port} is in use by this data dir's running server (pid {})",
                    server.pid
                ),
            ),
            _ => (
                Level::Fail,
                format!(
                    "{host}:{port} is in use by another process: `codara serve` would fail; \
                     stop it or set [server].port (CODARA_PORT, --port)"
                ),
            ),
        },
        Err(e) => (Level::Fail, format!("cannot listen on {host}:{port}: {e}")),
    }
}

/// Runs every check and prints one line each.
pub fn run(mut args: pico_args::Arguments) -> Result<i32> {
    if super::wants_help(&mut args, HELP) {
        return Ok(0);
    }
    let overrides = super::config_flag(&mut args)?;
    super::finish(args)?;
    let mut healthy = true;
    let config = match Config::load(&overrides) {
        Ok(config) => {
            let source = config.source.as_ref().map(|p| p.display().to_string());
            report(
                Level::Ok,
                "config",
                &source.unwrap_or_else(|| "built-in defaults (no codara.toml)".into()),
            );
            config
        }
        Err(error) => {
            report(Level::Fail, "config", &error.to_string());
            return Ok(1);
        }
    };

    for setting in config.inert_settings() {
        report(
            Level::Warn,
            "config",
            &format!("{setting} is set, but this build does not act on it: it is ignored"),
        );
    }
    telemetry_check(&config);

    let data_dir = &config.storage.data_dir;
    healthy &= data_dir_check(data_dir);

    healthy &= storage_check(&config, data_dir);

    let running = crate::datadir::running_server(data_dir);
    if let Some(server) = &running {
        let on = server
            .listening
            .map(|addr| format!(", listening on {addr}"))
            .unwrap_or_default();
        report(
            Level::Ok,
            "server",
            &format!("running (pid {}{on})", server.pid),
        );
    }
    let (level, detail) = port_check(&config, running.as_ref());
    healthy &= report(level, "port", &detail);

    let sandbox = match crate::sandbox::Sandbox::for_config(&config) {
        Ok(sandbox) => {
            let level = if sandbox.enforced() {
                Level::Ok
            } else {
                Level::Warn
            };
            report(level, "sandbox", &sandbox.describe());
            Some(sandbox)
        }
        Err(error) => {
            healthy &= report(Level::Fail, "sandbox", &error.to_string());
            None
        }
    };

    healthy &= telegram_check(&config);

    providers_check(&config, sandbox.as_ref());
    Ok(if healthy { 0 } else { 1 })
}

/// The data dir: present and private (a warning when others can read it), or still to be made.
fn data_dir_check(data_dir: &Path) -> bool {
    let mut healthy = true;
    match std::fs::metadata(data_dir) {
        Ok(meta) => {
            let mode = meta.permissions().mode() & 0o777;
            let level = if mode & 0o077 == 0 {
                Level::Ok
            } else {
                Level::Warn
            };
            healthy &= report(
                level,
                "data dir",
                &format!("{} (mode {mode:o})", data_dir.display()),
            );
        }
        Err(_) => {
            report(
                Level::Warn,
                "data dir",
                &format!(
                    "{} does not exist yet; `codara serve` creates it",
                    data_dir.display()
                ),
            );
        }
    }
    healthy
}

/// The database (its schema) and the vault key checked against it.
fn storage_check(config: &Config, data_dir: &Path) -> bool {
    let mut healthy = true;
    let db_path = config.storage.database_path();
    if db_path.exists() {
        match crate::store::Store::open(&db_path) {
            Ok(store) => {
                let version = store.schema_version().unwrap_or(0);
                healthy &= report(
                    Level::Ok,
                    "database",
                    &format!(
                        "{} (schema {version} of {})",
                        db_path.display(),
                        crate::store::latest_schema_version()
                    ),
                );
                let has_key =
                    config.secrets.master_key.is_some() || data_dir.join("master.key").exists();
                if has_key {
                    let checked =
                        crate::vault::Vault::load(config.secrets.master_key.as_deref(), data_dir)
                            .and_then(|vault| vault.check_against(&store).map(|_| vault));
                    healthy &= match checked {
                        Ok(vault) => report(
                            Level::Ok,
                            "vault",
                            &format!("master key {}", vault.key_id()),
                        ),
                        Err(error) => report(Level::Fail, "vault", &error.to_string()),
                    };
                } else {
                    healthy &= report(
                        Level::Fail,
                        "vault",
                        "no UAG_MASTER_KEY and no master.key beside a database",
                    );
                }
            }
            Err(error) => healthy &= report(Level::Fail, "database", &error.to_string()),
        }
    } else {
        report(
            Level::Warn,
            "database",
            &format!("{} does not exist yet", db_path.display()),
        );
    }
    healthy
}

/// The Telegram bots, when the channel is enabled: tokens present, the mode's needs met.
fn telegram_check(config: &Config) -> bool {
    let mut healthy = true;
    let telegram = &config.channels.telegram;
    if telegram.enabled {
        let bots = telegram.active_bots().count();
        healthy &= match crate::telegram::check(config) {
            Err(error) => report(Level::Fail, "telegram", &error.to_string()),
            Ok(()) if bots == 0 => report(Level::Warn, "telegram", "enabled, but no bot is"),
            Ok(()) if telegram.receive_mode == "webhook" && config.server.public_url.is_none() => {
                report(
                    Level::Warn,
                    "telegram",
                    &format!(
                        "{bots} bot(s), webhook mode without [server].public_url: register \
                         /channels/telegram/<name>/webhook with setWebhook yourself"
                    ),
                )
            }
            Ok(()) => report(
                Level::Ok,
                "telegram",
                &format!("{bots} bot(s), {} mode", telegram.receive_mode),
            ),
        };
    }
    healthy
}

/// Each enabled CLI: found on PATH, its version, and how its warm mode would start.
fn providers_check(config: &Config, sandbox: Option<&crate::sandbox::Sandbox>) {
    for (provider_id, provider) in config.providers.iter() {
        let name = provider_id.name();
        if !provider.is_enabled() {
            report(Level::Ok, name, "disabled");
            continue;
        }
        match crate::providers::find_binary(&provider.binary, &config.host.path) {
            None => {
                report(
                    Level::Warn,
                    name,
                    &format!(
                        "`{}` not found on PATH; turns for {name} will fail with 503",
                        provider.binary
                    ),
                );
            }
            Some(path) => {
                match crate::providers::cli_version(&path, &config.host) {
                    Ok(version) => {
                        report(Level::Ok, name, &format!("{} — {version}", path.display()));
                    }
                    Err(error) => {
                        report(
                            Level::Warn,
                            name,
                            &format!("{}: --version failed: {error}", path.display()),
                        );
                    }
                }
                warm_check(config, sandbox, provider_id, provider, &path);
            }
        }
    }
}
