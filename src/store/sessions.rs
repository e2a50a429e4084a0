//! The `sessions` table: each client conversation and the CLI session it is bound to.
//!
//! Owns `sessions`. Stores what the turn engine decides; decides nothing itself.

use crate::error::{Error, Result};
use rusqlite::{Connection, OptionalExtension, Row};

/// One stored session.
#[derive(Debug, Clone, Default)]
pub struct Session {
    /// `ses_<12hex>`: the id clients and the management API see.
    pub id: String,
    /// `user::workspace::client_session_id`.
    pub session_key: String,
    /// Owner.
    pub user_id: String,
    /// Workspace id within the owner's tree.
    pub workspace_id: String,
    /// Absolute workspace directory.
    pub workspace_path: String,
    /// The client's conversation label.
    pub client_session_id: String,
    /// codex | gemini | opencode.
    pub provider: String,
    /// Model of the last turn.
    pub model: String,
    /// The CLI's own session id.
    pub cli_session_id: Option<String>,
    /// Account whose CLI home holds the session.
    pub account_id: Option<String>,
    /// Hash of the conversation including the last reply.
    pub transcript_hash: String,
    /// Hash of the last request's messages (without the reply).
    pub request_hash: String,
    /// Messages covered by `transcript_hash`.
    pub message_count: i64,
    /// Turns run.
    pub turn_count: i64,
    /// The last turn ended abnormally after touching files.
    pub dirty: bool,
    /// Epoch ms.
    pub created_at: i64,
    /// Epoch ms.
    pub updated_at: i64,
}

const COLUMNS: &str = "id, session_key, user_id, workspace_id, workspace_path, client_session_id, \
    provider, model, cli_session_id, account_id, transcript_hash, request_hash, message_count, \
    turn_count, dirty, created_at, updated_at";

fn from_row(row: &Row<'_>) -> rusqlite::Result<Session> {
    Ok(Session {
        id: row.get(0)?,
        session_key: row.get(1)?,
        user_id: row.get(2)?,
        workspace_id: row.get(3)?,
        workspace_path: row.get(4)?,
        client_session_id: row.get(5)?,
        provider: row.get(6)?,
        model: row.get(7)?,
        cli_session_id: row.get(8)?,
        account_id: row.get(9)?,
        transcript_hash: row.get(10)?,
        request_hash: row.get(11)?,
        message_count: row.get(12)?,
        turn_count: row.get(13)?,
        dirty: row.get::<_, i64>(14)? != 0,
        created_at: row.get(15)?,
        updated_at: row.get(16)?,
    })
}

/// Finds a session by its key.
pub fn find_by_key(conn: &Connection, session_key: &str) -> Result<Option<Session>> {
    conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM sessions WHERE session_key = ?1"
    ))
    .and_then(|mut stmt| stmt.query_row([session_key], from_row).optional())
    .map_err(Error::sql("reading a session"))
}

/// Finds a session by id.
pub fn get(conn: &Connection, id: &str) -> Result<Option<Session>> {
    conn.prepare_cached(&format!("SELECT {COLUMNS} FROM sessions WHERE id = ?1"))
        .and_then(|mut stmt| stmt.query_row([id], from_row).optional())
        .map_err(Error::sql("reading a session"))
}

/// Sessions, newest first, optionally of one user.
pub fn list(conn: &Connection, user_id: Option<&str>, limit: i64) -> Result<Vec<Session>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM sessions WHERE (?1 IS NULL OR user_id = ?1) \
         ORDER BY updated_at DESC LIMIT ?2"
    );
    conn.prepare_cached(&sql)
        .and_then(|mut stmt| {
            stmt.query_map(rusqlite::params![user_id, limit], from_row)?
                .collect()
        })
        .map_err(Error::sql("listing sessions"))
}

/// What [`search`] filters on; `None` fields do not filter.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Owner.
    pub user_id: Option<String>,
    /// Provider.
    pub provider: Option<String>,
    /// Case-insensitive text in the id, label, workspace path or model.
    pub text: Option<String>,
    /// Only sessions ordered after this `(updated_at, id)`: the previous page's last row.
    pub before_cursor: Option<(i64, String)>,
}

/// Sessions matching `filter`, newest activity first (ties by id), at most `limit`.
pub fn search(conn: &Connection, filter: &Filter, limit: i64) -> Result<Vec<Session>> {
    let text = filter
        .text
        .as_ref()
        .map(|t| format!("%{}%", t.to_lowercase()));
    let (cursor_at, cursor_id) = match &filter.before_cursor {
        Some((at, id)) => (Some(*at), Some(id.clone())),
        None => (None, None),
    };
    let sql = format!(
        "SELECT {COLUMNS} FROM sessions WHERE (?1 IS NULL OR user_id = ?1) \
           AND (?2 IS NULL OR provider = ?2) \
           AND (?3 IS NULL OR lower(id || ' ' || client_session_id || ' ' || workspace_path || ' ' \
                                   || model) LIKE ?3) \
           AND (?4 IS NULL OR updated_at < ?4 OR (updated_at = ?4 AND id < ?5)) \
         ORDER BY updated_at DESC, id DESC LIMIT ?6"
    );
    conn.prepare_cached(&sql)
        .and_then(|mut stmt| {
            stmt.query_map(
                rusqlite::params![
                    filter.user_id,
                    filter.provider,
                    text,
                    cursor_at,
                    cursor_id,
                    limit
                ],
                from_row,
            )?
            .collect()
        })
        .map_err(Error::sql("searching sessions"))
}

/// Inserts the session, or updates its mutable fields when the id exists.
pub fn upsert(conn: &Connection, session: &Session) -> Result<()> {
    // A real upsert: `INSERT OR REPLACE` would delete the row first and cascade to its turns.
    conn.prepare_cached(&format!(
        "INSERT INTO sessions ({COLUMNS}) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17) \
         ON CONFLICT (id) DO UPDATE SET provider = excluded.provider, model = excluded.model, \
         cli_session_id = excluded.cli_session_id, account_id = excluded.account_id, \
         transcript_hash = excluded.transcript_hash, request_hash = excluded.request_hash, \
         message_count = excluded.message_count, turn_count = excluded.turn_count, \
         dirty = excluded.dirty, updated_at = excluded.updated_at"
    ))
    .and_then(|mut stmt| {
        stmt.execute(rusqlite::params![
            session.id,
            session.session_key,
            session.user_id,
            session.workspace_id,
            session.workspace_path,
            session.client_session_id,
            session.provider,
            session.model,
            session.cli_session_id,
            session.account_id,
            session.transcript_hash,
            session.request_hash,
            session.message_count,
            session.turn_count,
            i64::from(session.dirty),
            session.created_at,
            session.updated_at,
        ])
    })
    .map(|_| ())
    .map_err(Error::sql("writing a session"))
}

/// Deletes every session of a user (their turns cascade); returns how many.
pub fn delete_for_user(conn: &Connection, user_id: &str) -> Result<usize> {
    conn.prepare_cached("DELETE FROM sessions WHERE user_id = ?1")
        .and_then(|mut stmt| stmt.execute([user_id]))
        .map_err(Error::sql("deleting a user's sessions"))
}

/// `workspace_path` is `path` or lies below it (`path/…`); compared by characters, never with
/// `LIKE`, so `_` and `%` in directory names match only themselves.
const UNDER_PATH: &str =
    "(workspace_path = ?1 OR substr(workspace_path, 1, length(?1) + 1) = ?1 || '/')";

/// Sessions whose workspace is `path` or a directory below it, newest first (at most `limit`).
pub fn list_under_path(conn: &Connection, path: &str, limit: i64) -> Result<Vec<Session>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM sessions WHERE {UNDER_PATH} ORDER BY updated_at DESC LIMIT ?2"
    );
    conn.prepare_cached(&sql)
        .and_then(|mut stmt| {
            stmt.query_map(rusqlite::params![path, limit], from_row)?
                .collect()
        })
        .map_err(Error::sql("listing a workspace's sessions"))
}

/// How many sessions have their workspace at `path` or below it.
pub fn count_under_path(conn: &Connection, path: &str) -> Result<usize> {
    conn.prepare_cached(&format!("SELECT COUNT(*) FROM sessions WHERE {UNDER_PATH}"))
        .and_then(|mut stmt| stmt.query_row([path], |row| row.get::<_, i64>(0)))
        .map(|n| usize::try_from(n).unwrap_or(0))
        .map_err(Error::sql("counting a workspace's sessions"))
}

/// Deletes the sessions whose workspace is `path` or below it (their turns cascade); returns
/// how many.
pub fn delete_under_path(conn: &Connection, path: &str) -> Result<usize> {
    conn.prepare_cached(&format!("DELETE FROM sessions WHERE {UNDER_PATH}"))
        .and_then(|mut stmt| stmt.execute([path]))
        .map_err(Error::sql("deleting a workspace's sessions"))
}

/// Deletes one session (its turns cascade); returns whether it existed.
pub fn delete(conn: &Connection, id: &str) -> Result<bool> {
    conn.prepare_cached("DELETE FROM sessions WHERE id = ?1")
        .and_then(|mut stmt| stmt.execute([id]))
        .map(|n| n > 0)
        .map_err(Error::sql("deleting a session"))
}
