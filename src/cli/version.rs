//! `codara version [--check]`.

use crate::config::Config;
use crate::error::Result;
use crate::release::CheckStatus;

const HELP: &str = "\
Usage: codara version [--check] [--config FILE]

Prints the version. With --check, asks the release API for the latest release
(only when [release].enabled and [release].repository are set).
";

/// Prints the version and, with `--check`, the release check; exit 1 when the check failed.
pub fn run(mut args: pico_args::Arguments) -> Result<i32> {
    if super::wants_help(&mut args, HELP) {
        return Ok(0);
    }
    let check = args.contains("--check");
    let overrides = super::config_flag(&mut args)?;
    super::finish(args)?;
    outln!("codara {}", crate::VERSION);
    if !check {
        return Ok(0);
    }
    let config = Config::load(&overrides)?;
    let result = crate::release::check(&config.release);
    match result.status {
        CheckStatus::Disabled => {
            outln!("Update check disabled. Set [release].enabled = true (or UAG_RELEASE_CHECK_ENABLED=1) to enable it.");
            Ok(0)
        }
        CheckStatus::Ok if result.update_available => {
            outln!(
                "Update available: {}",
                result.latest_version.unwrap_or_default()
            );
            if let Some(url) = result.release_url {
                outln!("Release: {url}");
            }
            Ok(0)
        }
        CheckStatus::Ok => {
            outln!("Codara is up to date.");
            Ok(0)
        }
        _ => {
            eprintln!(
                "Update check unavailable: {}",
                result.error.unwrap_or_default()
            );
            Ok(1)
        }
    }
}
