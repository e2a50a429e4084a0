//! `codara account add|list|remove|primary|refresh` and `codara vault rotate-key`: the pool and
//! the vault from the command line, on the data dir directly.

use crate::audit::Actor;
use crate::config::{Config, Overrides};
use crate::error::{Error, Result};
use crate::store::Store;
use crate::vault::Vault;
use std::path::PathBuf;

const HELP: &str = "\
Usage:
  codara account add --id ID --provider codex --auth-type OAUTH_SESSION|API_KEY --label LABEL --credential-file FILE
  codara account list
  codara account remove ID
  codara account primary ID
  codara account refresh [ID]
(each accepts --config FILE)

The credential (a codex auth.json, or a file holding an API key) is validated, sealed in the
vault and never printed. Works beside a running server. Run `codara account <command> --help`
for details.
";

const ADD_HELP: &str = "\
Usage: codara account add --id ID --auth-type OAUTH_SESSION|API_KEY --credential-file FILE
                          [--provider codex] [--label LABEL] [--config FILE]

Adds an account to the pool: the credential file (a codex auth.json for OAUTH_SESSION, or a
file holding the API key for API_KEY) is validated, sealed in the vault and never printed. The
first account of a provider becomes its CLI-primary account.

Options:
  --id ID                 the account's id: letters, digits, `.`, `_`, `-` (at most 64)
  --auth-type TYPE        OAUTH_SESSION or API_KEY
  --credential-file FILE  where the credential is read from
  --provider P            the provider (only codex is pooled; the default)
  --label LABEL           the name shown (default: the email in the credential, else the id)
  --config FILE           the codara.toml to read
";

const LIST_HELP: &str = "\
Usage: codara account list [--config FILE]

Lists the pool as a table: id, provider, status now, the used share of the 5-hour and weekly
quota windows (`-` while unknown: never guessed), when a cooldown ends, whether the account is
CLI-primary, and its label.
";

const REMOVE_HELP: &str = "\
Usage: codara account remove ID [--config FILE]

Removes the account and its CLI homes (the transcripts kept there go with it).
";

const PRIMARY_HELP: &str = "\
Usage: codara account primary ID [--config FILE]

Makes ID the CLI-primary account of its provider: preferred while it has headroom.
";

const REFRESH_HELP: &str = "\
Usage: codara account refresh [ID] [--config FILE]

Refreshes the tokens (when close to expiry) and quota windows of every OAuth account, or of ID.
Exit code 1 when one failed.
";

const VAULT_HELP: &str = "\
Usage: codara vault rotate-key [--config FILE]

Generates a new master key and re-encrypts every sealed credential with it in one transaction.
Stop the server first. With UAG_MASTER_KEY set, prints the new key to put there instead of
rewriting master.key.
";

/// The store and vault of `add` (input already checked): created when missing.
fn open(config: &Config) -> Result<(Store, Vault)> {
    let store = super::create_store(config)?;
    let vault = open_vault(config, &store)?;
    Ok((store, vault))
}

/// The vault, checked against the database (a wrong key stops here, not at the first use).
fn open_vault(config: &Config, store: &Store) -> Result<Vault> {
    let vault = Vault::load(
        config.secrets.master_key.as_deref(),
        &config.storage.data_dir,
    )?;
    vault.check_against(store)?;
    Ok(vault)
}

/// The database of a command that acts on existing accounts (`what` names them for the error
/// when there is no database: nothing is created).
fn existing(config: &Config, what: &str) -> Result<Store> {
    super::existing_store(config)?.ok_or_else(|| super::no_database(config, what))
}

/// A quota window's used share: `37%`, or `-` while unknown.
fn percent(used: Option<f64>) -> String {
    used.map_or_else(|| "-".to_string(), |p| format!("{p:.0}%"))
}

/// Dispatches `codara account ...`.
pub fn run(mut args: pico_args::Arguments) -> Result<i32> {
    let sub = args
        .subcommand()
        .map_err(|e| Error::bad_request(e.to_string()))?;
    let help = match sub.as_deref() {
        Some("add") => ADD_HELP,
        Some("list") => LIST_HELP,
        Some("remove") => REMOVE_HELP,
        Some("primary") => PRIMARY_HELP,
        Some("refresh") => REFRESH_HELP,
        _ => HELP,
    };
    if super::wants_help(&mut args, help) {
        return Ok(0);
    }
    let Some(sub) = sub else {
        out!("{HELP}");
        return Ok(2);
    };
    let overrides = super::config_flag(&mut args)?;
    match sub.as_str() {
        "add" => add(args, &overrides),
        "list" => list(args, &overrides),
        "remove" | "primary" => remove_or_primary(args, &overrides, &sub),
        "refresh" => refresh(args, &overrides),
        other => Err(Error::bad_request(format!(
            "unknown account command `{other}`; see `codara account --help`"
        ))),
    }
}

/// `account add`: reads the credential file, checks the input before anything is opened.
fn add(mut args: pico_args::Arguments, overrides: &Overrides) -> Result<i32> {
    let id =
        opt_value(&mut args, "--id")?.ok_or_else(|| Error::bad_param("id", "--id is required"))?;
    let provider = opt_value(&mut args, "--provider")?.unwrap_or_else(|| "codex".into());
    let auth_type = opt_value(&mut args, "--auth-type")?
        .ok_or_else(|| Error::bad_param("auth_type", "--auth-type is required"))?;
    let label = opt_value(&mut args, "--label")?;
    let file: PathBuf = opt_value(&mut args, "--credential-file")?
        .ok_or_else(|| Error::bad_param("credential_file", "--credential-file is required"))?
        .into();
    super::finish(args)?;
    let credential = std::fs::read_to_string(&file)
        .map_err(|e| Error::bad_param("credential_file", format!("{}: {e}", file.display())))?;
    let input = crate::accounts::NewAccount {
        id,
        provider,
        auth_type,
        label,
        credential,
    };
    crate::accounts::check_new(&input)?;
    let config = Config::load(overrides)?;
    let (store, vault) = open(&config)?;
    let account = crate::accounts::add(&store, &vault, input, &Actor::Cli, None)?;
    outln!(
        "Added account {} ({}), {}{}",
        account.id,
        account.label,
        account.auth_type,
        if account.cli_primary {
            ", CLI-primary"
        } else {
            ""
        }
    );
    Ok(0)
}

/// `account list`: the pool as a table (no database: nothing to list).
fn list(args: pico_args::Arguments, overrides: &Overrides) -> Result<i32> {
    super::finish(args)?;
    let config = Config::load(overrides)?;
    let accounts = match super::existing_store(&config)? {
        Some(store) => store.read(|conn| crate::store::accounts::list(conn, None))?,
        None => Vec::new(),
    };
    if accounts.is_empty() {
        outln!("No accounts in the pool.");
        return Ok(0);
    }
    let now = crate::clock::now_ms();
    let rows: Vec<Vec<String>> = accounts
        .into_iter()
        .map(|account| {
            let status = crate::accounts::effective_status(&account, now);
            let cooldown = account
                .cooldown_until
                .filter(|until| {
                    status == crate::store::accounts::AccountStatus::Cooldown && *until > now
                })
                .map_or_else(|| "-".to_string(), crate::clock::rfc3339);
            vec![
                account.id,
                account.provider,
                status.to_string(),
                percent(account.five_hour_used_percent),
                percent(account.weekly_used_percent),
                cooldown,
                if account.cli_primary { "yes" } else { "no" }.to_string(),
                account.label,
            ]
        })
        .collect();
    super::print_table(
        &[
            "ID",
            "PROVIDER",
            "STATUS",
            "5H USED",
            "WEEKLY USED",
            "COOLDOWN UNTIL",
            "PRIMARY",
            "LABEL",
        ],
        &rows,
    );
    Ok(0)
}

/// `account remove ID` and `account primary ID`.
fn remove_or_primary(
    mut args: pico_args::Arguments,
    overrides: &Overrides,
    sub: &str,
) -> Result<i32> {
    let id: String = args
        .free_from_str()
        .map_err(|_| Error::bad_param("id", "ID is required"))?;
    super::finish(args)?;
    let config = Config::load(overrides)?;
    let store = existing(&config, &format!("no account {id}"))?;
    if sub == "remove" {
        crate::accounts::remove(&store, &config.storage.data_dir, &id, &Actor::Cli, None)?;
        outln!("Removed account {id}");
    } else {
        crate::accounts::set_primary(&store, &id, &Actor::Cli, None)?;
        outln!("Account {id} is now CLI-primary");
    }
    Ok(0)
}

/// `account refresh [ID]`: exit 1 when any account failed.
fn refresh(mut args: pico_args::Arguments, overrides: &Overrides) -> Result<i32> {
    let id: Option<String> = args
        .opt_free_from_str()
        .map_err(|e| Error::bad_request(e.to_string()))?;
    super::finish(args)?;
    let config = Config::load(overrides)?;
    let store = existing(&config, "no accounts to refresh")?;
    let vault = open_vault(&config, &store)?;
    let reports = crate::accounts::refresh_all(&store, &vault, &config.accounts, id.as_deref())?;
    let mut failed = false;
    for report in reports {
        match report.error {
            None => outln!("{}: refreshed", report.id),
            Some(error) => {
                failed = true;
                outln!("{}: {error}", report.id)
            }
        }
    }
    Ok(if failed { 1 } else { 0 })
}

/// The value of option `name`, if given.
fn opt_value(args: &mut pico_args::Arguments, name: &'static str) -> Result<Option<String>> {
    args.opt_value_from_str(name)
        .map_err(|e| Error::bad_request(format!("{name}: {e}")))
}

/// Dispatches `codara vault ...`.
pub fn run_vault(mut args: pico_args::Arguments) -> Result<i32> {
    let sub = args
        .subcommand()
        .map_err(|e| Error::bad_request(e.to_string()))?;
    if super::wants_help(&mut args, VAULT_HELP) {
        return Ok(0);
    }
    match sub.as_deref() {
        Some("rotate-key") => {}
        None => {
            out!("{VAULT_HELP}");
            return Ok(2);
        }
        Some(other) => {
            return Err(Error::bad_request(format!(
                "unknown vault command `{other}`; see `codara vault --help`"
            )))
        }
    }
    let overrides = super::config_flag(&mut args)?;
    super::finish(args)?;
    let config = Config::load(&overrides)?;
    let data_dir = config.storage.data_dir.clone();
    // The server keeps the key in memory: rotating under it would strand its credentials.
    let _lock = crate::datadir::InstanceLock::acquire(&data_dir, None)?;
    let store = Store::open(&config.storage.database_path())?;
    let old = Vault::load(config.secrets.master_key.as_deref(), &data_dir)?;
    old.check_against(&store)?;
    let key = crate::crypto::random_bytes(32).map_err(|e| Error::io("getrandom", e))?;
    let new = Vault::from_key(&key, crate::vault::KeySource::Environment);
    let hex = crate::crypto::hex(&key);
    let from_env = config.secrets.master_key.is_some();
    let staged = data_dir.join("master.key.new");
    if !from_env {
        crate::vault::write_key_file(&staged, &hex)?;
    }
    let count = crate::accounts::reseal_all(&store, &old, &new)?;
    if from_env {
        outln!(
            "Re-encrypted {count} credential(s). Set UAG_MASTER_KEY={hex} before the next start."
        );
    } else {
        let path = data_dir.join("master.key");
        std::fs::rename(&staged, &path).map_err(|e| Error::io(&path, e))?;
        outln!(
            "Re-encrypted {count} credential(s) with a new master key ({}), written to {}",
            new.key_id(),
            path.display()
        );
    }
    Ok(0)
}
