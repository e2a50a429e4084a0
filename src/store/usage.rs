//! The `user_usage` table: token counters per user, UTC day and provider.
//!
//! Owns `user_usage`. Additive upserts only.

use crate::error::{Error, Result};
use rusqlite::Connection;

/// One counter row.
#[derive(Debug, Clone, Default)]
pub struct UsageRow {
    /// `YYYY-MM-DD` (UTC).
    pub day: String,
    /// Provider.
    pub provider: String,
    /// Tokens in.
    pub prompt_tokens: i64,
    /// Tokens out.
    pub completion_tokens: i64,
    /// Tokens served from cache.
    pub cached_tokens: i64,
    /// Turns.
    pub requests: i64,
}

/// Adds one turn's usage.
pub fn add(conn: &Connection, user_id: &str, row: &UsageRow) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO user_usage (user_id, day, provider, prompt_tokens, completion_tokens, cached_tokens, requests)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT (user_id, day, provider) DO UPDATE SET
           prompt_tokens = prompt_tokens + excluded.prompt_tokens,
           completion_tokens = completion_tokens + excluded.completion_tokens,
           cached_tokens = cached_tokens + excluded.cached_tokens,
           requests = requests + excluded.requests",
    )
    .and_then(|mut stmt| {
        stmt.execute(rusqlite::params![
            user_id,
            row.day,
            row.provider,
            row.prompt_tokens,
            row.completion_tokens,
            row.cached_tokens,
            row.requests
        ])
    })
    .map(|_| ())
    .map_err(Error::sql("recording usage"))
}

/// A user's rows, oldest day first.
pub fn list_for_user(conn: &Connection, user_id: &str) -> Result<Vec<UsageRow>> {
    conn.prepare_cached(
        "SELECT day, provider, prompt_tokens, completion_tokens, cached_tokens, requests
         FROM user_usage WHERE user_id = ?1 ORDER BY day, provider",
    )
    .and_then(|mut stmt| {
        stmt.query_map([user_id], |row| {
            Ok(UsageRow {
                day: row.get(0)?,
                provider: row.get(1)?,
                prompt_tokens: row.get(2)?,
                completion_tokens: row.get(3)?,
                cached_tokens: row.get(4)?,
                requests: row.get(5)?,
            })
        })?
        .collect()
    })
    .map_err(Error::sql("reading usage"))
}

/// Tokens (in + out) a user spent on `day`.
pub fn tokens_on(conn: &Connection, user_id: &str, day: &str) -> Result<i64> {
    conn.prepare_cached(
        "SELECT COALESCE(SUM(prompt_tokens + completion_tokens), 0) FROM user_usage WHERE user_id = ?1 AND day = ?2",
    )
    .and_then(|mut stmt| stmt.query_row([user_id, day], |row| row.get(0)))
    .map_err(Error::sql("reading usage"))
}
