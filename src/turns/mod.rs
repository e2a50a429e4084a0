//! Agent turns: the engine that runs one chat turn end to end, prompt building and transcript
//! hashing (pure), `response_format` instructions and reply checks (pure), and the
//! session/workspace locks.
//!
//! Must not parse HTTP: handlers turn requests into [`engine::TurnRequest`] and render outcomes.

pub mod engine;
pub mod locks;
pub mod output;
pub mod prompt;
