//! `codara user create|list|rotate-key|suspend|unsuspend|delete`: works on the data dir
//! directly, beside a running server, through the same `users` functions as the management API
//! (so every change is audited, with the CLI as the actor). Input is checked before storage is
//! opened, and only `create` creates the database: a refused command leaves nothing behind.

use crate::audit::Actor;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::store::Store;

const HELP: &str = "\
Usage:
  codara user create --email EMAIL --name NAME [--max-concurrency N] [--config FILE]
  codara user list [--config FILE]
  codara user rotate-key USER_ID [KEY_ID] [--config FILE]
  codara user suspend USER_ID [--config FILE]
  codara user unsuspend USER_ID [--config FILE]
  codara user delete USER_ID [--config FILE]

create prints the new user's first API key once; rotate-key revokes the key (default: the
newest active one) and prints its replacement once. Works while a server runs (SQLite WAL).
Run `codara user <command> --help` for details.
";

const SUSPEND_HELP: &str = "\
Usage: codara user suspend USER_ID [--config FILE]

Suspends the user: their keys get 403 until `codara user unsuspend`. Sessions, keys and files
are kept. Audited as user.suspended.
";

const UNSUSPEND_HELP: &str = "\
Usage: codara user unsuspend USER_ID [--config FILE]

Makes a suspended user active again. A deleted user cannot be reactivated. Audited as
user.unsuspended.
";

const DELETE_HELP: &str = "\
Usage: codara user delete USER_ID [--config FILE]

Deletes the user: status deleted, every API key revoked, every session ended (files are kept).
It cannot be undone. Audited as user.deleted.
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

Lists every user in a table: id, status, email, name.
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
        Some("suspend") => SUSPEND_HELP,
        Some("unsuspend") => UNSUSPEND_HELP,
        Some("delete") => DELETE_HELP,
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
            let input = crate::users::NewUser {
                email,
                display_name: name,
                max_concurrency: max,
                ..Default::default()
            };
            crate::users::check_new(&input)?;
            let config = Config::load(&overrides)?;
            let store = super::create_store(&config)?;
            let (user, issued) = crate::users::create(&store, &config, input, &Actor::Cli, None)?;
            outln!("Created user {} <{}>", user.id, user.email);
            outln!("Workspace: {}", user.workspace_path);
            outln!("API key (shown only this once): {}", issued.raw);
            Ok(0)
        }
        Some("list") => {
            super::finish(args)?;
            let config = Config::load(&overrides)?;
            let users = match super::existing_store(&config)? {
                Some(store) => store.read(|conn| crate::store::users::list(conn, 10_000, None))?,
                None => Vec::new(),
            };
            if users.is_empty() {
                outln!("No users.");
                return Ok(0);
            }
            let rows: Vec<Vec<String>> = users
                .into_iter()
                .map(|user| {
                    vec![
                        user.id,
                        user.status.to_string(),
                        user.email,
                        user.display_name,
                    ]
                })
                .collect();
            super::print_table(&["ID", "STATUS", "EMAIL", "NAME"], &rows);
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
            let store = existing(&overrides, &user_id)?;
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
        Some(sub @ ("suspend" | "unsuspend" | "delete")) => {
            let user_id: String = args
                .free_from_str()
                .map_err(|_| Error::bad_param("user_id", "USER_ID is required"))?;
            super::finish(args)?;
            let store = existing(&overrides, &user_id)?;
            let (user, done) = match sub {
                "suspend" => (
                    crate::users::set_suspended(&store, &user_id, true, &Actor::Cli, None)?,
                    "Suspended",
                ),
                "unsuspend" => (
                    crate::users::set_suspended(&store, &user_id, false, &Actor::Cli, None)?,
                    "Reactivated",
                ),
                _ => (
                    crate::users::delete(&store, &user_id, &Actor::Cli, None)?,
                    "Deleted (keys revoked, sessions ended, files kept)",
                ),
            };
            outln!(
                "{done}: user {} <{}>, status {}",
                user.id,
                user.email,
                user.status
            );
            Ok(0)
        }
        Some(other) => Err(Error::bad_request(format!(
            "unknown user command `{other}`; see `codara user --help`"
        ))),
        None => Ok(2),
    }
}

/// The database of a command that acts on user `user_id`; without one there is no such user.
fn existing(overrides: &crate::config::Overrides, user_id: &str) -> Result<Store> {
    let config = Config::load(overrides)?;
    super::existing_store(&config)?
        .ok_or_else(|| super::no_database(&config, &format!("no user {user_id}")))
}
