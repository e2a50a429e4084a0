//! Codara: a stateful OpenAI-compatible gateway in front of coding-agent CLIs.
//!
//! The binary (`main.rs`) only calls [`run`]; everything lives in this library so that unit
//! tests, integration tests and benchmarks see the same code. See ARCHITECTURE.md for the map.
//!
//! The modules are private: what the executable, the integration tests and the benchmarks need
//! is re-exported below and nothing else, so that rustc reports code nothing uses (ripgrep's
//! rule: a crate's public surface is a decision, not a default).

mod accounts;
mod api;
mod app;
mod audit;
mod cli;
mod clock;
mod config;
mod crypto;
mod datadir;
mod error;
mod http;
mod images;
mod operator;
mod pool;
mod process;
mod providers;
mod release;
mod sandbox;
mod shutdown;
mod store;
mod telegram;
mod telemetry;
mod turns;
mod users;
mod vault;
mod warm;
mod workspace;

pub use cli::run;

/// The pieces integration tests and benchmarks drive in-process (the rest they reach through
/// the binary): loading a configuration, base64, one CLI run the way turns run it, tracing.
pub mod testing {
    pub use crate::config::{Config, Overrides, Sandbox};
    pub use crate::crypto::{base64_encode, Base64};
    pub use crate::process::{run as run_command, Limits};
    pub use crate::providers::{codex, RunSpec};
    pub use crate::telemetry::{annotate, metrics, span, start_tracing, stop, Context, Field};
}

/// This build's version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

#[cfg(test)]
mod tidy;
