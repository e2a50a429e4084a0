//! The provider account pool: the pure policy behind pooled codex accounts.
//!
//! Owns choosing an account for a turn (`select`: sticky sessions, the CLI-primary account,
//! headroom, session-aware migration), reading a failed run as a rate limit or an auth failure and
//! the cooldown that follows (`cooldown`), validating uploaded credentials and updating the tokens
//! inside them (`credential`), and the usage / OAuth token wire shapes (`usage`). Everything here
//! is a pure function of its inputs, with the time passed in as `now_ms`: `pool/` never spawns
//! processes, never does network or file I/O, and never touches the store or the vault — the
//! callers load snapshots, seal credentials and record the outcomes (with their audit entries).

pub mod cooldown;
pub mod credential;
pub mod select;
pub mod usage;
