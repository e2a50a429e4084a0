//! Observability: the runtime logger and (later) trace spans.
//!
//! Owns how records leave the process. Must not block a request on disk errors: a failed log
//! write is dropped, never returned.

pub mod log;

pub use self::log::{init, with_request_id};
