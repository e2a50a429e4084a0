//! The `api_keys` table: users' API keys, stored as SHA-256 only.
//!
//! Owns `api_keys`. Never sees a raw key.

use crate::error::{Error, Result};
use rusqlite::{Connection, OptionalExtension, Row};

super::text_enum! {
    /// Whether a key still authenticates (expiry is a separate time, not a state).
    #[derive(Default)]
    pub enum KeyStatus ("API key status") {
        /// Authenticates until it expires (a new key is).
        #[default]
        Active = "active",
        /// Revoked (by its user, an operator, a rotation or the user's deletion).
        Revoked = "revoked",
    }
}

/// One key row.
#[derive(Debug, Clone, Default)]
pub struct ApiKey {
    /// `uag_key_<12hex>`.
    pub id: String,
    /// Owner.
    pub user_id: String,
    /// SHA-256 hex of the raw key.
    pub key_hash: String,
    /// The first characters after `uagk_live_`, to tell keys apart.
    pub key_prefix: String,
    /// Free label.
    pub label: Option<String>,
    /// Active or revoked.
    pub status: KeyStatus,
    /// Epoch ms.
    pub created_at: i64,
    /// Epoch ms.
    pub expires_at: Option<i64>,
    /// Epoch ms.
    pub last_used_at: Option<i64>,
    /// Epoch ms.
    pub revoked_at: Option<i64>,
}

const COLUMNS: &str =
    "id, user_id, key_hash, key_prefix, label, status, created_at, expires_at, last_used_at, revoked_at";

fn from_row(row: &Row<'_>) -> rusqlite::Result<ApiKey> {
    Ok(ApiKey {
        id: row.get(0)?,
        user_id: row.get(1)?,
        key_hash: row.get(2)?,
        key_prefix: row.get(3)?,
        label: row.get(4)?,
        status: row.get(5)?,
        created_at: row.get(6)?,
        expires_at: row.get(7)?,
        last_used_at: row.get(8)?,
        revoked_at: row.get(9)?,
    })
}

/// Stores a key.
pub fn insert(conn: &Connection, key: &ApiKey) -> Result<()> {
    conn.prepare_cached(&format!(
        "INSERT INTO api_keys ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"
    ))
    .and_then(|mut stmt| {
        stmt.execute(rusqlite::params![
            key.id,
            key.user_id,
            key.key_hash,
            key.key_prefix,
            key.label,
            key.status,
            key.created_at,
            key.expires_at,
            key.last_used_at,
            key.revoked_at,
        ])
    })
    .map(|_| ())
    .map_err(Error::sql("storing an API key"))
}

/// The key with this hash.
pub fn find_by_hash(conn: &Connection, key_hash: &str) -> Result<Option<ApiKey>> {
    conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM api_keys WHERE key_hash = ?1"
    ))
    .and_then(|mut stmt| stmt.query_row([key_hash], from_row).optional())
    .map_err(Error::sql("looking up an API key"))
}

/// A user's key by id.
pub fn get(conn: &Connection, user_id: &str, id: &str) -> Result<Option<ApiKey>> {
    conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM api_keys WHERE user_id = ?1 AND id = ?2"
    ))
    .and_then(|mut stmt| stmt.query_row([user_id, id], from_row).optional())
    .map_err(Error::sql("reading an API key"))
}

/// A user's keys, newest first.
pub fn list_for_user(conn: &Connection, user_id: &str) -> Result<Vec<ApiKey>> {
    conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM api_keys WHERE user_id = ?1 ORDER BY created_at DESC, id DESC"
    ))
    .and_then(|mut stmt| stmt.query_map([user_id], from_row)?.collect())
    .map_err(Error::sql("listing API keys"))
}

/// Revokes one key; returns whether it was active.
pub fn revoke(conn: &Connection, id: &str, now_ms: i64) -> Result<bool> {
    conn.prepare_cached(
        "UPDATE api_keys SET status = 'revoked', revoked_at = ?2 WHERE id = ?1 AND status = 'active'",
    )
    .and_then(|mut stmt| stmt.execute(rusqlite::params![id, now_ms]))
    .map(|n| n > 0)
    .map_err(Error::sql("revoking an API key"))
}

/// Revokes every active key of a user; returns how many.
pub fn revoke_all(conn: &Connection, user_id: &str, now_ms: i64) -> Result<usize> {
    conn.prepare_cached(
        "UPDATE api_keys SET status = 'revoked', revoked_at = ?2 WHERE user_id = ?1 AND status = 'active'",
    )
    .and_then(|mut stmt| stmt.execute(rusqlite::params![user_id, now_ms]))
    .map_err(Error::sql("revoking API keys"))
}

/// Records a use of the key.
pub fn touch(conn: &Connection, id: &str, now_ms: i64) -> Result<()> {
    conn.prepare_cached("UPDATE api_keys SET last_used_at = ?2 WHERE id = ?1")
        .and_then(|mut stmt| stmt.execute(rusqlite::params![id, now_ms]))
        .map(|_| ())
        .map_err(Error::sql("recording an API key use"))
}
