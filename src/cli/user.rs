//! `codara user create|list|rotate-key`: works on the data dir directly, beside a running server.

use crate::audit::Actor;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::store::Store;

const HELP: &str = "\
Usage:
  codara user create --email EMAIL --name NAME [--max-concurrency N] [--config FILE]
  codara user list [--config FILE]
  codara user rotate-key USER_ID [KEY_ID] [--config FILE]

create prints the new user's first API key once; rotate-key revokes the key (default: the
newest active one) and prints its replacement once. Works while a server runs (SQLite WAL).
Run `codara user <command> --help` for details.
";

const CREATE_HELP: &str = "\
Usage: codara user create --email EMAIL --name NAME [--max-concurrency N] [--config FILE]

Creates a user with a workspace <workspaces root>/<user id> and a first API key, which is
printed once: store it now, it cannot be shown again.

Options:
  --email EMAIL          the user's address (unique)
  --name NAME            the name shown for the user
  --max-concurrency N    turns the user may run at once, 1-64 ([users] default if omitted)
  --config FILE          the codara.toml to read
";

const LIST_HELP: &str = "\
Usage: codara user list [--config FILE]

Lists every user: id, status, email, name.
";

const ROTATE_HELP: &str = "\
Usage: codara user rotate-key USER_ID [KEY_ID] [--config FILE]

Revokes KEY_ID (default: the user's newest active key) and issues a replacement with the same
label and expiry, printed once.
";

/// Dispatches `codara user ...`.
pub fn run(mut args: pico_args::Arguments) -> Result<i32> {
    let sub = args
        .subcommand()
        .map_err(|e| Error::bad_request(e.to_string()))?;
    let help = match sub.as_deref() {
        Some("create") => CREATE_HELP,
        Some("list") => LIST_HELP,
        Some("rotate-key") => ROTATE_HELP,
        _ => HELP,
    };
    if super::wants_help(&mut args, help) {
        return Ok(0);
    }
    if sub.is_none() {
        out!("{HELP}");
        return Ok(2);
    }
    let overrides = super::config_flag(&mut args)?;
    match sub.as_deref() {
        Some("create") => {
            let email: String = args
                .value_from_str("--email")
                .map_err(|_| Error::bad_param("email", "--email is required"))?;
            let name: String = args
                .value_from_str("--name")
                .map_err(|_| Error::bad_param("name", "--name is required"))?;
            let max: Option<i64> = args
                .opt_value_from_str("--max-concurrency")
                .map_err(|e| Error::bad_request(e.to_string()))?;
            super::finish(args)?;
            let (config, store) = open(&overrides)?;
            let input = crate::users::NewUser {
                email,
                display_name: name,
                max_concurrency: max,
                ..Default::default()
            };
            let (user, issued) = crate::users::create(&store, &config, input, &Actor::Cli, None)?;
            outln!("Created user {} <{}>", user.id, user.email);
            outln!("Workspace: {}", user.workspace_path);
            outln!("API key (shown only this once): {}", issued.raw);
            Ok(0)
        }
        Some("list") => {
            super::finish(args)?;
            let (_, store) = open(&overrides)?;
            let users = store.read(|conn| crate::store::users::list(conn, 10_000, None))?;
            if users.is_empty() {
                outln!("No users.");
            }
            for user in users {
                outln!(
                    "{:<22} {:<10} {:<32} {}",
                    user.id,
                    user.status,
                    user.email,
                    user.display_name
                );
            }
            Ok(0)
        }
        Some("rotate-key") => {
            let user_id: String = args
                .free_from_str()
                .map_err(|_| Error::bad_param("user_id", "USER_ID is required"))?;
            let key_id: Option<String> = args
                .opt_free_from_str()
                .map_err(|e| Error::bad_request(e.to_string()))?;
            super::finish(args)?;
            let (_, store) = open(&overrides)?;
            crate::users::get(&store, &user_id)?;
            let key_id = match key_id {
                Some(id) => id,
                None => store
                    .read(|conn| crate::store::api_keys::list_for_user(conn, &user_id))?
                    .into_iter()
                    .find(|k| k.status == crate::store::api_keys::KeyStatus::Active)
                    .map(|k| k.id)
                    .ok_or_else(|| Error::NotFound(format!("user {user_id} has no active key")))?,
            };
            let issued = crate::users::rotate_key(&store, &user_id, &key_id, &Actor::Cli, None)?;
            outln!(
                "Revoked {key_id}; new key {} (shown only this once): {}",
                issued.key.id,
                issued.raw
            );
            Ok(0)
        }
        Some(other) => Err(Error::bad_request(format!(
            "unknown user command `{other}`; see `codara user --help`"
        ))),
        None => Ok(2),
    }
}

fn open(overrides: &crate::config::Overrides) -> Result<(Config, Store)> {
    let config = Config::load(overrides)?;
    crate::datadir::ensure_private_dir(&config.storage.data_dir)?;
    let store = Store::open(&config.storage.database_path())?;
    Ok((config, store))
}
