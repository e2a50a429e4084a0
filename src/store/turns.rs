//! The `turns` table: one row per turn, written once after the run.
//!
//! Owns `turns`. Holds the snapshot tree ids that make per-turn diff and revert possible.

use crate::error::{Error, Result};
use rusqlite::{Connection, OptionalExtension, Row};

super::text_enum! {
    /// How a stored turn ended.
    #[derive(Default)]
    pub enum TurnStatus ("turn status") {
        /// The CLI finished and its reply was accepted.
        #[default]
        Ok = "ok",
        /// The CLI or the gateway failed the turn.
        Error = "error",
        /// The CLI went silent past the stall timeout.
        Stalled = "stalled",
        /// The turn overran its time limit.
        Timeout = "timeout",
        /// The gateway stopped during the turn (recovered from the journal at start-up).
        Interrupted = "interrupted",
    }
}

/// One stored turn.
#[derive(Debug, Clone, Default)]
pub struct Turn {
    /// `trn_<12hex>`.
    pub id: String,
    /// The session, or `None` for a stateless turn.
    pub session_id: Option<String>,
    /// 1-based index within the session.
    pub turn_index: i64,
    /// Provider.
    pub provider: String,
    /// Model.
    pub model: String,
    /// The CLI session the turn ran in.
    pub cli_session_id: Option<String>,
    /// Whether the CLI session was resumed (vs started fresh).
    pub resumed: bool,
    /// The request's messages as JSON.
    pub request_messages: String,
    /// What the CLI was sent.
    pub prompt: String,
    /// The assistant's reply.
    pub reply: String,
    /// Normalized actions as JSON.
    pub actions: String,
    /// Changed paths as JSON.
    pub modified_files: String,
    /// Usage.
    pub prompt_tokens: i64,
    /// Usage.
    pub completion_tokens: i64,
    /// Usage.
    pub cached_tokens: i64,
    /// Wall time of the run.
    pub duration_ms: i64,
    /// The CLI's exit code.
    pub exit_code: Option<i64>,
    /// Ok, error, stalled, timeout or interrupted.
    pub status: TurnStatus,
    /// The error message when not ok.
    pub error: Option<String>,
    /// Ended abnormally after touching files.
    pub dirty: bool,
    /// Account used.
    pub account_id: Option<String>,
    /// Workspace directory.
    pub workspace_path: String,
    /// Snapshot before the turn.
    pub before_tree: Option<String>,
    /// Snapshot after the turn.
    pub after_tree: Option<String>,
    /// Epoch ms.
    pub created_at: i64,
}

const COLUMNS: &str = "id, session_id, turn_index, provider, model, cli_session_id, resumed, \
    request_messages, prompt, reply, actions, modified_files, prompt_tokens, completion_tokens, \
    cached_tokens, duration_ms, exit_code, status, error, dirty, account_id, workspace_path, \
    before_tree, after_tree, created_at";

fn from_row(row: &Row<'_>) -> rusqlite::Result<Turn> {
    Ok(Turn {
        id: row.get(0)?,
        session_id: row.get(1)?,
        turn_index: row.get(2)?,
        provider: row.get(3)?,
        model: row.get(4)?,
        cli_session_id: row.get(5)?,
        resumed: row.get::<_, i64>(6)? != 0,
        request_messages: row.get(7)?,
        prompt: row.get(8)?,
        reply: row.get(9)?,
        actions: row.get(10)?,
        modified_files: row.get(11)?,
        prompt_tokens: row.get(12)?,
        completion_tokens: row.get(13)?,
        cached_tokens: row.get(14)?,
        duration_ms: row.get(15)?,
        exit_code: row.get(16)?,
        status: row.get(17)?,
        error: row.get(18)?,
        dirty: row.get::<_, i64>(19)? != 0,
        account_id: row.get(20)?,
        workspace_path: row.get(21)?,
        before_tree: row.get(22)?,
        after_tree: row.get(23)?,
        created_at: row.get(24)?,
    })
}

/// Stores a turn.
pub fn insert(conn: &Connection, turn: &Turn) -> Result<()> {
    let placeholders: Vec<String> = (1..=25).map(|i| format!("?{i}")).collect();
    conn.prepare_cached(&format!(
        "INSERT INTO turns ({COLUMNS}) VALUES ({})",
        placeholders.join(", ")
    ))
    .and_then(|mut stmt| {
        stmt.execute(rusqlite::params![
            turn.id,
            turn.session_id,
            turn.turn_index,
            turn.provider,
            turn.model,
            turn.cli_session_id,
            i64::from(turn.resumed),
            turn.request_messages,
            turn.prompt,
            turn.reply,
            turn.actions,
            turn.modified_files,
            turn.prompt_tokens,
            turn.completion_tokens,
            turn.cached_tokens,
            turn.duration_ms,
            turn.exit_code,
            turn.status,
            turn.error,
            i64::from(turn.dirty),
            turn.account_id,
            turn.workspace_path,
            turn.before_tree,
            turn.after_tree,
            turn.created_at,
        ])
    })
    .map(|_| ())
    .map_err(Error::sql("storing a turn"))
}

/// The turns of a session in order.
pub fn list_for_session(conn: &Connection, session_id: &str) -> Result<Vec<Turn>> {
    conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM turns WHERE session_id = ?1 ORDER BY turn_index"
    ))
    .and_then(|mut stmt| stmt.query_map([session_id], from_row)?.collect())
    .map_err(Error::sql("listing turns"))
}

/// The latest successful turn of a session: its messages and reply are the session's stored
/// transcript (the engine updates the transcript only on success).
pub fn last_ok_for_session(conn: &Connection, session_id: &str) -> Result<Option<Turn>> {
    conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM turns WHERE session_id = ?1 AND status = 'ok' \
         ORDER BY turn_index DESC LIMIT 1"
    ))
    .and_then(|mut stmt| stmt.query_row([session_id], from_row).optional())
    .map_err(Error::sql("reading a session's last turn"))
}

/// One turn of a session by index.
pub fn get(conn: &Connection, session_id: &str, turn_index: i64) -> Result<Option<Turn>> {
    conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM turns WHERE session_id = ?1 AND turn_index = ?2"
    ))
    .and_then(|mut stmt| {
        stmt.query_row(rusqlite::params![session_id, turn_index], from_row)
            .optional()
    })
    .map_err(Error::sql("reading a turn"))
}

/// One turn by id.
pub fn get_by_id(conn: &Connection, id: &str) -> Result<Option<Turn>> {
    conn.prepare_cached(&format!("SELECT {COLUMNS} FROM turns WHERE id = ?1"))
        .and_then(|mut stmt| stmt.query_row([id], from_row).optional())
        .map_err(Error::sql("reading a turn"))
}
