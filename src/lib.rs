//! Codara: a stateful OpenAI-compatible gateway in front of coding-agent CLIs.
//!
//! The binary (`main.rs`) only calls [`cli::run`]; everything lives in this library so that unit
//! tests, integration tests and benchmarks see the same code. See ARCHITECTURE.md for the map.

pub mod accounts;
pub mod api;
pub mod app;
pub mod audit;
pub mod cli;
pub mod clock;
pub mod config;
pub mod crypto;
pub mod datadir;
pub mod error;
pub mod http;
pub mod images;
pub mod operator;
pub mod pool;
pub mod process;
pub mod providers;
pub mod release;
pub mod sandbox;
pub mod shutdown;
pub mod store;
pub mod telegram;
pub mod telemetry;
pub mod turns;
pub mod users;
pub mod vault;
pub mod warm;
pub mod workspace;

/// This build's version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

#[cfg(test)]
mod tidy;
