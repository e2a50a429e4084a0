//! The `turn_journal` table: turns that have started and not yet been stored.
//!
//! Owns `turn_journal`. A row exists from a turn's first snapshot until the transaction that
//! stores the turn; a row found at start-up is a turn a crash interrupted.

use crate::error::{Error, Result};
use rusqlite::{Connection, Row};

/// One turn in flight.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Entry {
    /// The id the stored turn will have.
    pub turn_id: String,
    /// Owner.
    pub user_id: String,
    /// `user::workspace::client_session_id`, for stateful turns.
    pub session_key: Option<String>,
    /// The client's conversation label.
    pub client_session_id: Option<String>,
    /// Provider.
    pub provider: String,
    /// Model.
    pub model: String,
    /// Workspace id within the owner's tree.
    pub workspace_id: String,
    /// Absolute workspace directory.
    pub workspace_path: String,
    /// The request's messages as JSON.
    pub request_messages: String,
    /// What the CLI was sent.
    pub prompt: String,
    /// The snapshot taken before the CLI ran.
    pub before_tree: String,
    /// The pool account, when one was chosen.
    pub account_id: Option<String>,
    /// Epoch ms.
    pub started_at: i64,
}

const COLUMNS: &str = "turn_id, user_id, session_key, client_session_id, provider, model, \
    workspace_id, workspace_path, request_messages, prompt, before_tree, account_id, started_at";

fn from_row(row: &Row<'_>) -> rusqlite::Result<Entry> {
    Ok(Entry {
        turn_id: row.get(0)?,
        user_id: row.get(1)?,
        session_key: row.get(2)?,
        client_session_id: row.get(3)?,
        provider: row.get(4)?,
        model: row.get(5)?,
        workspace_id: row.get(6)?,
        workspace_path: row.get(7)?,
        request_messages: row.get(8)?,
        prompt: row.get(9)?,
        before_tree: row.get(10)?,
        account_id: row.get(11)?,
        started_at: row.get(12)?,
    })
}

/// Records a turn that is about to run.
pub fn insert(conn: &Connection, entry: &Entry) -> Result<()> {
    conn.prepare_cached(&format!(
        "INSERT INTO turn_journal ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)"
    ))
    .and_then(|mut stmt| {
        stmt.execute(rusqlite::params![
            entry.turn_id,
            entry.user_id,
            entry.session_key,
            entry.client_session_id,
            entry.provider,
            entry.model,
            entry.workspace_id,
            entry.workspace_path,
            entry.request_messages,
            entry.prompt,
            entry.before_tree,
            entry.account_id,
            entry.started_at,
        ])
    })
    .map(|_| ())
    .map_err(Error::sql("journaling a turn"))
}

/// Forgets a turn (it was stored, or recovered).
pub fn delete(conn: &Connection, turn_id: &str) -> Result<()> {
    conn.prepare_cached("DELETE FROM turn_journal WHERE turn_id = ?1")
        .and_then(|mut stmt| stmt.execute([turn_id]))
        .map(|_| ())
        .map_err(Error::sql("removing a journaled turn"))
}

/// Every journaled turn, oldest first.
pub fn list(conn: &Connection) -> Result<Vec<Entry>> {
    conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM turn_journal ORDER BY started_at"
    ))
    .and_then(|mut stmt| stmt.query_map([], from_row)?.collect())
    .map_err(Error::sql("listing journaled turns"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_list_delete() {
        let dir = std::env::temp_dir().join(crate::crypto::random_id("codara-journal-"));
        let store = crate::store::Store::open(&dir.join("codara.db")).unwrap();
        let entry = Entry {
            turn_id: "trn_1".into(),
            user_id: "u".into(),
            provider: "codex".into(),
            before_tree: "t".into(),
            started_at: 5,
            ..Entry::default()
        };
        store.write(|tx| insert(tx, &entry)).unwrap();
        assert_eq!(store.read(list).unwrap(), vec![entry]);
        store.write(|tx| delete(tx, "trn_1")).unwrap();
        assert!(store.read(list).unwrap().is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
