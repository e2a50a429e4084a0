//! The `operator_tokens` table: hashed operator access tokens with expiry and revocation.
//!
//! Owns `operator_tokens`. Stores only SHA-256 hashes; must never see or return a raw token.

use crate::error::{Error, Result};
use rusqlite::{Connection, OptionalExtension};

/// One stored token, looked up by its hash.
#[derive(Debug, Clone)]
pub struct OperatorToken {
    /// `otk_<12hex>`.
    pub id: String,
    /// Expiry, epoch ms.
    pub expires_at: i64,
    /// When it was logged out, epoch ms.
    pub revoked_at: Option<i64>,
}

/// Stores a new token hash.
pub fn insert(
    conn: &Connection,
    id: &str,
    token_hash: &str,
    now_ms: i64,
    expires_at: i64,
    client_addr: Option<&str>,
) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO operator_tokens (id, token_hash, created_at, expires_at, client_addr)
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )
    .and_then(|mut stmt| {
        stmt.execute(rusqlite::params![
            id,
            token_hash,
            now_ms,
            expires_at,
            client_addr
        ])
    })
    .map(|_| ())
    .map_err(Error::sql("storing an operator token"))
}

/// Finds a token by the SHA-256 hex of its raw value.
pub fn find_by_hash(conn: &Connection, token_hash: &str) -> Result<Option<OperatorToken>> {
    conn.prepare_cached(
        "SELECT id, expires_at, revoked_at FROM operator_tokens WHERE token_hash = ?1",
    )
    .and_then(|mut stmt| {
        stmt.query_row([token_hash], |row| {
            Ok(OperatorToken {
                id: row.get(0)?,
                expires_at: row.get(1)?,
                revoked_at: row.get(2)?,
            })
        })
        .optional()
    })
    .map_err(Error::sql("looking up an operator token"))
}

/// Marks a token revoked; returns whether a live token was revoked.
pub fn revoke(conn: &Connection, id: &str, now_ms: i64) -> Result<bool> {
    conn.prepare_cached(
        "UPDATE operator_tokens SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL",
    )
    .and_then(|mut stmt| stmt.execute(rusqlite::params![id, now_ms]))
    .map(|n| n > 0)
    .map_err(Error::sql("revoking an operator token"))
}

/// Deletes tokens that expired before `before_ms` (they can never authenticate again).
pub fn delete_expired(conn: &Connection, before_ms: i64) -> Result<usize> {
    conn.prepare_cached("DELETE FROM operator_tokens WHERE expires_at < ?1")
        .and_then(|mut stmt| stmt.execute([before_ms]))
        .map_err(Error::sql("pruning expired operator tokens"))
}

/// Tokens that are neither expired nor revoked.
pub fn count_active(conn: &Connection, now_ms: i64) -> Result<i64> {
    conn.prepare_cached(
        "SELECT COUNT(*) FROM operator_tokens WHERE expires_at > ?1 AND revoked_at IS NULL",
    )
    .and_then(|mut stmt| stmt.query_row([now_ms], |row| row.get(0)))
    .map_err(Error::sql("counting operator tokens"))
}
