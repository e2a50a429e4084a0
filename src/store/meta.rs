//! The `meta` table: small key/value facts about the database itself.
//!
//! Owns `meta`. Must not hold secrets in plaintext: values that need protecting are sealed by the
//! vault before they get here.

use crate::error::{Error, Result};
use rusqlite::{Connection, OptionalExtension};

/// The key of the vault check value: a known plaintext sealed with the master key.
pub const VAULT_CHECK: &str = "vault_check";
/// The SHA-256 of a generated operator secret once it has signed in (`POST /auth/token`): from
/// then on `serve` prints only where the secret is kept. A hash, so that a secret generated anew
/// (the file deleted) is printed again; the secret has 238 random bits, so its hash gives
/// nothing away.
pub const OPERATOR_SECRET_USED: &str = "operator_secret_used";

/// Reads one value.
pub fn get(conn: &Connection, key: &str) -> Result<Option<Vec<u8>>> {
    conn.prepare_cached("SELECT value FROM meta WHERE key = ?1")
        .and_then(|mut stmt| stmt.query_row([key], |row| row.get(0)).optional())
        .map_err(Error::sql("reading meta"))
}

/// Inserts or replaces one value.
pub fn put(conn: &Connection, key: &str, value: &[u8]) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO meta (key, value, updated_at) VALUES (?1, ?2, ?3)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
    )
    .and_then(|mut stmt| stmt.execute(rusqlite::params![key, value, crate::clock::now_ms()]))
    .map(|_| ())
    .map_err(Error::sql("writing meta"))
}
