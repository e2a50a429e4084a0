//! Observability: the runtime log (`log`), traces and spans (`trace`) and their writer thread
//! (`writer`), retention of both (`retention`), reading them back (`query`), and the
//! Prometheus counters (`metrics`); `files` names what they write.
//!
//! Owns how records leave the process. Must not block a request on disk: a trace is handed to
//! the writer thread without waiting (dropped and counted when it cannot keep up), and a failed
//! log write is dropped, never returned.

pub mod files;
pub mod log;
pub mod metrics;
pub mod query;
pub mod retention;
pub mod trace;
mod writer;

pub use self::trace::{
    annotate, current, current_span, mark_error, span, Attr, Context, Field, Span, SpanRef,
};

use std::path::PathBuf;
use std::time::Duration;

/// Installs the logger (once per process).
pub fn init(settings: &self::log::Settings) {
    self::log::init(settings);
}

/// Starts tracing (when `enabled`): the writer thread appending to `trace_root`.
pub fn start_tracing(enabled: bool, trace_root: PathBuf) {
    trace::set_enabled(enabled);
    if enabled {
        writer::start(trace_root);
    }
}

/// Starts the pruner thread (logs and trace shards past their retention; at once, then daily).
pub fn start_pruner(retention: retention::Retention) {
    retention::spawn(retention);
}

/// Writes the traces still queued and stops the writer (at most `grace`).
pub fn stop(grace: Duration) {
    trace::set_enabled(false);
    writer::stop(grace);
}
