//! The `accounts` table: the provider account pool, credentials sealed by the vault.
//!
//! Owns `accounts`. Never sees plaintext credentials: callers seal before and open after.

use crate::error::{Error, Result};
use rusqlite::{Connection, OptionalExtension, Row};

super::text_enum! {
    /// An account's health as bookkeeping after runs left it.
    #[derive(Default)]
    pub enum AccountStatus ("account status") {
        /// Usable (a new account is).
        #[default]
        Ready = "ready",
        /// Rate-limited until `cooldown_until`.
        Cooldown = "cooldown",
        /// The provider refused the credential; an operator must log in again.
        NeedsReauth = "needs_reauth",
        /// Failing for another reason.
        Error = "error",
    }
}

/// One account row.
#[derive(Debug, Clone, Default)]
pub struct Account {
    /// Operator-chosen id, e.g. `codex-main`.
    pub id: String,
    /// `codex`.
    pub provider: String,
    /// `OAUTH_SESSION` or `API_KEY`.
    pub auth_type: String,
    /// Shown name.
    pub label: String,
    /// Whether selection may use it.
    pub enabled: bool,
    /// The CLI-primary account, preferred while it has headroom.
    pub cli_primary: bool,
    /// Ready, cooldown, needs-reauth or error.
    pub status: AccountStatus,
    /// The vault-sealed credential.
    pub sealed_credential: Vec<u8>,
    /// Expiry of the OAuth access token, epoch ms.
    pub access_token_expires_at: Option<i64>,
    /// Plan type when known.
    pub plan: Option<String>,
    /// ChatGPT account id when known.
    pub chatgpt_account_id: Option<String>,
    /// End of the current cooldown, epoch ms.
    pub cooldown_until: Option<i64>,
    /// Account-level failures in a row (drives the backoff).
    pub consecutive_failures: i64,
    /// The last failure, for operators.
    pub last_error: Option<String>,
    /// Last selection, epoch ms.
    pub last_used_at: Option<i64>,
    /// 5-hour window usage.
    pub five_hour_used_percent: Option<f64>,
    /// 5-hour window reset, epoch ms.
    pub five_hour_resets_at: Option<i64>,
    /// Weekly window usage.
    pub weekly_used_percent: Option<f64>,
    /// Weekly window reset, epoch ms.
    pub weekly_resets_at: Option<i64>,
    /// Last successful usage fetch, epoch ms.
    pub usage_checked_at: Option<i64>,
    /// Epoch ms.
    pub created_at: i64,
    /// Epoch ms.
    pub updated_at: i64,
}

const COLUMNS: &str = "id, provider, auth_type, label, enabled, cli_primary, status, sealed_credential, \
    access_token_expires_at, plan, chatgpt_account_id, cooldown_until, consecutive_failures, last_error, \
    last_used_at, five_hour_used_percent, five_hour_resets_at, weekly_used_percent, weekly_resets_at, \
    usage_checked_at, created_at, updated_at";

fn from_row(row: &Row<'_>) -> rusqlite::Result<Account> {
    Ok(Account {
        id: row.get(0)?,
        provider: row.get(1)?,
        auth_type: row.get(2)?,
        label: row.get(3)?,
        enabled: row.get::<_, i64>(4)? != 0,
        cli_primary: row.get::<_, i64>(5)? != 0,
        status: row.get(6)?,
        sealed_credential: row.get(7)?,
        access_token_expires_at: row.get(8)?,
        plan: row.get(9)?,
        chatgpt_account_id: row.get(10)?,
        cooldown_until: row.get(11)?,
        consecutive_failures: row.get(12)?,
        last_error: row.get(13)?,
        last_used_at: row.get(14)?,
        five_hour_used_percent: row.get(15)?,
        five_hour_resets_at: row.get(16)?,
        weekly_used_percent: row.get(17)?,
        weekly_resets_at: row.get(18)?,
        usage_checked_at: row.get(19)?,
        created_at: row.get(20)?,
        updated_at: row.get(21)?,
    })
}

/// Inserts an account; a duplicate id is `Ok(false)`.
pub fn insert(conn: &Connection, account: &Account) -> Result<bool> {
    match write(conn, account, "INSERT") {
        Ok(()) => Ok(true),
        Err(Error::Sql {
            source: rusqlite::Error::SqliteFailure(e, _),
            ..
        }) if e.code == rusqlite::ErrorCode::ConstraintViolation => Ok(false),
        Err(other) => Err(other),
    }
}

/// Replaces every column of an existing account (the row has no dependants that could cascade).
pub fn update(conn: &Connection, account: &Account) -> Result<()> {
    write(conn, account, "REPLACE")
}

fn write(conn: &Connection, a: &Account, verb: &str) -> Result<()> {
    let placeholders: Vec<String> = (1..=22).map(|i| format!("?{i}")).collect();
    conn.prepare_cached(&format!(
        "{verb} INTO accounts ({COLUMNS}) VALUES ({})",
        placeholders.join(", ")
    ))
    .and_then(|mut stmt| {
        stmt.execute(rusqlite::params![
            a.id,
            a.provider,
            a.auth_type,
            a.label,
            i64::from(a.enabled),
            i64::from(a.cli_primary),
            a.status,
            a.sealed_credential,
            a.access_token_expires_at,
            a.plan,
            a.chatgpt_account_id,
            a.cooldown_until,
            a.consecutive_failures,
            a.last_error,
            a.last_used_at,
            a.five_hour_used_percent,
            a.five_hour_resets_at,
            a.weekly_used_percent,
            a.weekly_resets_at,
            a.usage_checked_at,
            a.created_at,
            a.updated_at,
        ])
    })
    .map(|_| ())
    .map_err(Error::sql("writing an account"))
}

/// One account.
pub fn get(conn: &Connection, id: &str) -> Result<Option<Account>> {
    conn.prepare_cached(&format!("SELECT {COLUMNS} FROM accounts WHERE id = ?1"))
        .and_then(|mut stmt| stmt.query_row([id], from_row).optional())
        .map_err(Error::sql("reading an account"))
}

/// Every account of a provider (or all), by id.
pub fn list(conn: &Connection, provider: Option<&str>) -> Result<Vec<Account>> {
    conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM accounts WHERE (?1 IS NULL OR provider = ?1) ORDER BY id"
    ))
    .and_then(|mut stmt| stmt.query_map([provider], from_row)?.collect())
    .map_err(Error::sql("listing accounts"))
}

/// Deletes an account; returns whether it existed.
pub fn delete(conn: &Connection, id: &str) -> Result<bool> {
    conn.prepare_cached("DELETE FROM accounts WHERE id = ?1")
        .and_then(|mut stmt| stmt.execute([id]))
        .map(|n| n > 0)
        .map_err(Error::sql("deleting an account"))
}

/// Makes `id` the only CLI-primary account of its provider.
pub fn set_primary(conn: &Connection, provider: &str, id: &str, now_ms: i64) -> Result<()> {
    conn.execute(
        "UPDATE accounts SET cli_primary = (id = ?2), updated_at = ?3 WHERE provider = ?1",
        rusqlite::params![provider, id, now_ms],
    )
    .map(|_| ())
    .map_err(Error::sql("setting the CLI-primary account"))
}

/// Clears the CLI-primary mark of `id` (its provider then has no CLI-primary account).
pub fn clear_primary(conn: &Connection, id: &str, now_ms: i64) -> Result<()> {
    conn.execute(
        "UPDATE accounts SET cli_primary = 0, updated_at = ?2 WHERE id = ?1",
        rusqlite::params![id, now_ms],
    )
    .map(|_| ())
    .map_err(Error::sql("clearing the CLI-primary account"))
}
