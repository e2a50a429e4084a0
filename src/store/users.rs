//! The `users` table.
//!
//! Owns `users`. Policy (who may create, what a status change means) lives in `users.rs`.

use crate::error::{Error, Result};
use rusqlite::{Connection, OptionalExtension, Row};

super::text_enum! {
    /// Where a user stands: only active users' keys authenticate.
    #[derive(Default)]
    pub enum UserStatus ("user status") {
        /// May use their keys (a new user is).
        #[default]
        Active = "active",
        /// Keys refused until unsuspended.
        Suspended = "suspended",
        /// Gone for good (keys revoked, sessions ended); files are kept.
        Deleted = "deleted",
    }
}

/// One user row.
#[derive(Debug, Clone, Default)]
pub struct User {
    /// `uag_usr_<12hex>`.
    pub id: String,
    /// Unique, validated email.
    pub email: String,
    /// Shown name.
    pub display_name: String,
    /// Active, suspended or deleted.
    pub status: UserStatus,
    /// `<workspaces root>/<id>`.
    pub workspace_path: String,
    /// Concurrent turns allowed.
    pub max_concurrency: i64,
    /// Optional tokens per UTC day.
    pub daily_token_budget: Option<i64>,
    /// `operator`, `cli`, `system`.
    pub created_by: String,
    /// Epoch ms.
    pub created_at: i64,
    /// Epoch ms.
    pub updated_at: i64,
}

const COLUMNS: &str = "id, email, display_name, status, workspace_path, max_concurrency, \
    daily_token_budget, created_by, created_at, updated_at";

fn from_row(row: &Row<'_>) -> rusqlite::Result<User> {
    Ok(User {
        id: row.get(0)?,
        email: row.get(1)?,
        display_name: row.get(2)?,
        status: row.get(3)?,
        workspace_path: row.get(4)?,
        max_concurrency: row.get(5)?,
        daily_token_budget: row.get(6)?,
        created_by: row.get(7)?,
        created_at: row.get(8)?,
        updated_at: row.get(9)?,
    })
}

/// Inserts a user; a duplicate email is reported as `Ok(false)`.
pub fn insert(conn: &Connection, user: &User) -> Result<bool> {
    let result = conn
        .prepare_cached(&format!(
            "INSERT INTO users ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"
        ))
        .and_then(|mut stmt| {
            stmt.execute(rusqlite::params![
                user.id,
                user.email,
                user.display_name,
                user.status,
                user.workspace_path,
                user.max_concurrency,
                user.daily_token_budget,
                user.created_by,
                user.created_at,
                user.updated_at,
            ])
        });
    match result {
        Ok(_) => Ok(true),
        Err(rusqlite::Error::SqliteFailure(e, _))
            if e.code == rusqlite::ErrorCode::ConstraintViolation =>
        {
            Ok(false)
        }
        Err(source) => Err(Error::Sql {
            op: "creating a user",
            source,
        }),
    }
}

/// Updates the mutable fields of a user.
pub fn update(conn: &Connection, user: &User) -> Result<()> {
    conn.prepare_cached(
        "UPDATE users SET display_name = ?2, status = ?3, max_concurrency = ?4, \
         daily_token_budget = ?5, updated_at = ?6 WHERE id = ?1",
    )
    .and_then(|mut stmt| {
        stmt.execute(rusqlite::params![
            user.id,
            user.display_name,
            user.status,
            user.max_concurrency,
            user.daily_token_budget,
            user.updated_at,
        ])
    })
    .map(|_| ())
    .map_err(Error::sql("updating a user"))
}

/// A user by id.
pub fn get(conn: &Connection, id: &str) -> Result<Option<User>> {
    conn.prepare_cached(&format!("SELECT {COLUMNS} FROM users WHERE id = ?1"))
        .and_then(|mut stmt| stmt.query_row([id], from_row).optional())
        .map_err(Error::sql("reading a user"))
}

/// A user by email.
pub fn find_by_email(conn: &Connection, email: &str) -> Result<Option<User>> {
    conn.prepare_cached(&format!("SELECT {COLUMNS} FROM users WHERE email = ?1"))
        .and_then(|mut stmt| stmt.query_row([email], from_row).optional())
        .map_err(Error::sql("reading a user"))
}

/// Users ordered by creation (newest first), after the cursor `(created_at, id)`.
pub fn list(conn: &Connection, limit: i64, cursor: Option<(i64, String)>) -> Result<Vec<User>> {
    let (at, id) = cursor
        .map(|(a, i)| (Some(a), Some(i)))
        .unwrap_or((None, None));
    conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM users WHERE (?1 IS NULL OR created_at < ?1 OR (created_at = ?1 AND id < ?2)) \
         ORDER BY created_at DESC, id DESC LIMIT ?3"
    ))
    .and_then(|mut stmt| stmt.query_map(rusqlite::params![at, id, limit], from_row)?.collect())
    .map_err(Error::sql("listing users"))
}

/// Counts users by status.
pub fn count(conn: &Connection) -> Result<(i64, i64)> {
    conn.query_row(
        "SELECT COUNT(*), COALESCE(SUM(status = 'active'), 0) FROM users",
        [],
        |row| Ok((row.get(0)?, row.get(1)?)),
    )
    .map_err(Error::sql("counting users"))
}
