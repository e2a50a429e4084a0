//! Command-line entry: parses arguments with pico-args and dispatches to one file per command.
//!
//! Exit codes: 0 ok, 1 runtime error, 2 usage or configuration error. `--help` short-circuits
//! before any disk access. Output goes through `outln!`/`out!`: a closed stdout
//! (`codara doctor | head -1`) silences the rest instead of panicking, and the command still
//! ends with its own exit code. Must not talk HTTP to a running server: commands use the data
//! dir.

/// `outln!` for commands: see [`write_out`].
macro_rules! outln {
    () => {
        $crate::cli::write_out(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::cli::write_out(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// `out!` for commands: see [`write_out`].
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::cli::write_out(format_args!($($arg)*))
    };
}

pub mod account;
pub mod doctor;
pub mod project;
pub mod serve;
pub mod user;
pub mod version;

use crate::config::{Config, Overrides};
use crate::error::Error;
use crate::store::Store;
use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

/// Set once stdout failed: nothing more is written to it.
static STDOUT_GONE: AtomicBool = AtomicBool::new(false);

/// Writes to stdout. When the reader went away (`EPIPE`: `codara doctor | head -1`), the rest
/// of the output is dropped silently — the command still does its work and exits with its own
/// code, where `outln!` would panic (exit 101). Another write error is reported once on
/// stderr and treated the same way.
pub fn write_out(text: std::fmt::Arguments<'_>) {
    if STDOUT_GONE.load(Ordering::Relaxed) {
        return;
    }
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout.write_fmt(text).and_then(|()| stdout.flush()) {
        STDOUT_GONE.store(true, Ordering::Relaxed);
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            eprintln!("error: writing to stdout: {e}");
        }
    }
}

const HELP: &str = "\
codara — an OpenAI-compatible gateway for the Codex, Gemini and OpenCode CLIs

Usage: codara <command> [options]

Commands:
  serve     Run the gateway (HTTP API, dashboard)
  version   Print the version; --check asks for the latest release
  doctor    Check configuration, storage, vault and the provider CLIs
  user      Create and list users, rotate their API keys
  account   Manage the provider account pool (add, list, remove, primary, refresh)
  vault     rotate-key: re-encrypt every credential with a new master key
  project   Create, list and inspect projects (named workspaces)
  help      Show this help

Run `codara <command> --help` for a command's options.
";

/// Runs the command line and returns the process exit code.
pub fn run(args: Vec<OsString>) -> i32 {
    let mut args = pico_args::Arguments::from_vec(args);
    let command = match args.subcommand() {
        Ok(command) => command,
        Err(e) => return usage_error(&e.to_string()),
    };
    let result = match command.as_deref() {
        None if args.contains(["-V", "--version"]) => {
            outln!("codara {}", crate::VERSION);
            return 0;
        }
        None if args.contains(["-h", "--help"]) => {
            out!("{HELP}");
            return 0;
        }
        None => {
            out!("{HELP}");
            return 2;
        }
        Some("help") => {
            out!("{HELP}");
            return 0;
        }
        Some("serve") => serve::run(args),
        Some("version") => version::run(args),
        Some("doctor") => doctor::run(args),
        Some("user") => user::run(args),
        Some("account") => account::run(args),
        Some("vault") => account::run_vault(args),
        Some("project") => project::run(args),
        Some(other) => return usage_error(&format!("unknown command `{other}`")),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error}");
            error.exit_code()
        }
    }
}

fn usage_error(message: &str) -> i32 {
    eprintln!("error: {message}\nRun `codara --help` for usage.");
    2
}

/// Prints `help` and returns true when `--help`/`-h` was given.
fn wants_help(args: &mut pico_args::Arguments, help: &str) -> bool {
    if args.contains(["-h", "--help"]) {
        out!("{help}");
        true
    } else {
        false
    }
}

/// Reads `--config PATH`.
fn config_flag(args: &mut pico_args::Arguments) -> Result<Overrides, Error> {
    let config_path: Option<PathBuf> = args
        .opt_value_from_os_str("--config", |s| {
            Ok::<PathBuf, std::convert::Infallible>(PathBuf::from(s))
        })
        .map_err(|e| Error::bad_request(e.to_string()))?;
    Ok(Overrides {
        config_path,
        ..Overrides::default()
    })
}

/// Fails with a usage error when arguments are left over.
fn finish(args: pico_args::Arguments) -> Result<(), Error> {
    let rest = args.finish();
    if rest.is_empty() {
        Ok(())
    } else {
        let rest: Vec<String> = rest
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        Err(Error::bad_request(format!(
            "unexpected argument(s): {}",
            rest.join(" ")
        )))
    }
}

/// Opens the database for a command that creates something, after its input was checked:
/// the data dir (0700) and the database are created when missing.
fn create_store(config: &Config) -> Result<Store, Error> {
    crate::datadir::ensure_private_dir(&config.storage.data_dir)?;
    Store::open(&config.storage.database_path())
}

/// Opens the database for a command that reads or changes what exists: `None` when there is no
/// database yet. Such a command has nothing to act on then, and must not create one.
fn existing_store(config: &Config) -> Result<Option<Store>, Error> {
    let path = config.storage.database_path();
    if path.exists() {
        Store::open(&path).map(Some)
    } else {
        Ok(None)
    }
}

/// The error of a command that names a row when there is no database at all.
fn no_database(config: &Config, what: &str) -> Error {
    Error::NotFound(format!(
        "{what}: there is no database yet ({}); `codara serve` or a create command makes it",
        config.storage.database_path().display()
    ))
}

/// Prints `rows` under `header` in left-aligned columns two spaces apart, each as wide as its
/// widest cell (ids and labels have no fixed width), without trailing spaces.
fn print_table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut text = String::new();
        for (i, (cell, width)) in cells.zip(&widths).enumerate() {
            if i > 0 {
                text.push_str("  ");
            }
            text.push_str(cell);
            text.extend(std::iter::repeat_n(' ', width - cell.chars().count()));
        }
        text.trim_end().to_string()
    };
    outln!("{}", line(&mut header.iter().copied()));
    for row in rows {
        outln!("{}", line(&mut row.iter().map(String::as_str)));
    }
}
