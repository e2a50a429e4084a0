//! The `responses` table: Responses API objects, each pointing at the turn that produced it.
//!
//! Owns `responses`. Stores the chain (`previous_response_id`), the session label a chain
//! shares, and the request fields a response echoes or a chained request inherits; the turn's
//! own outcome stays in `turns`. Decides nothing: ownership and `store: false` are the caller's
//! filters.

use crate::error::{Error, Result};
use rusqlite::{Connection, OptionalExtension, Row};

/// One stored response.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResponseRecord {
    /// `resp_<hex>`.
    pub id: String,
    /// Owner (`operator` for operator credentials).
    pub user_id: String,
    /// The turn that produced it.
    pub turn_id: String,
    /// The session of the turn (`None` for a stateless turn).
    pub session_id: Option<String>,
    /// The `client_session_id` the turn ran under: what a chained request continues.
    pub session_label: Option<String>,
    /// The response this one continued.
    pub previous_response_id: Option<String>,
    /// Provider.
    pub provider: String,
    /// Model as reported.
    pub model: String,
    /// The resolved workspace id (as reported).
    pub workspace_id: String,
    /// An operator's `workspace_root` as requested (a chained request resolves it again).
    pub workspace_root: Option<String>,
    /// `instructions` of this request (not carried along a chain).
    pub instructions: Option<String>,
    /// `metadata` as JSON text.
    pub metadata: Option<String>,
    /// `text.format` as JSON text.
    pub text_format: String,
    /// `tool_choice` as requested (`auto` or `none`: no client tools are ever called).
    pub tool_choice: String,
    /// `store`: false keeps the row for the record but hides it from clients.
    pub stored: bool,
    /// completed | failed.
    pub status: String,
    /// The error code of a failed response.
    pub error_code: Option<String>,
    /// The public error message of a failed response.
    pub error_message: Option<String>,
    /// Epoch ms.
    pub created_at: i64,
}

const COLUMNS: &str = "id, user_id, turn_id, session_id, session_label, previous_response_id, \
    provider, model, workspace_id, workspace_root, instructions, metadata, text_format, \
    tool_choice, stored, status, error_code, error_message, created_at";

fn from_row(row: &Row<'_>) -> rusqlite::Result<ResponseRecord> {
    Ok(ResponseRecord {
        id: row.get(0)?,
        user_id: row.get(1)?,
        turn_id: row.get(2)?,
        session_id: row.get(3)?,
        session_label: row.get(4)?,
        previous_response_id: row.get(5)?,
        provider: row.get(6)?,
        model: row.get(7)?,
        workspace_id: row.get(8)?,
        workspace_root: row.get(9)?,
        instructions: row.get(10)?,
        metadata: row.get(11)?,
        text_format: row.get(12)?,
        tool_choice: row.get(13)?,
        stored: row.get::<_, i64>(14)? != 0,
        status: row.get(15)?,
        error_code: row.get(16)?,
        error_message: row.get(17)?,
        created_at: row.get(18)?,
    })
}

/// Stores a response (after its turn is stored).
pub fn insert(conn: &Connection, record: &ResponseRecord) -> Result<()> {
    let placeholders: Vec<String> = (1..=19).map(|i| format!("?{i}")).collect();
    conn.prepare_cached(&format!(
        "INSERT INTO responses ({COLUMNS}) VALUES ({})",
        placeholders.join(", ")
    ))
    .and_then(|mut stmt| {
        stmt.execute(rusqlite::params![
            record.id,
            record.user_id,
            record.turn_id,
            record.session_id,
            record.session_label,
            record.previous_response_id,
            record.provider,
            record.model,
            record.workspace_id,
            record.workspace_root,
            record.instructions,
            record.metadata,
            record.text_format,
            record.tool_choice,
            i64::from(record.stored),
            record.status,
            record.error_code,
            record.error_message,
            record.created_at,
        ])
    })
    .map(|_| ())
    .map_err(Error::sql("storing a response"))
}

/// The response `id` if `user_id` owns it (stored or not: the caller filters on `stored`).
pub fn get_owned(conn: &Connection, id: &str, user_id: &str) -> Result<Option<ResponseRecord>> {
    conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM responses WHERE id = ?1 AND user_id = ?2"
    ))
    .and_then(|mut stmt| {
        stmt.query_row(rusqlite::params![id, user_id], from_row)
            .optional()
    })
    .map_err(Error::sql("reading a response"))
}

/// Deletes the stored response `id` of `user_id`; returns whether there was one.
pub fn delete_owned(conn: &Connection, id: &str, user_id: &str) -> Result<bool> {
    conn.prepare_cached("DELETE FROM responses WHERE id = ?1 AND user_id = ?2 AND stored = 1")
        .and_then(|mut stmt| stmt.execute(rusqlite::params![id, user_id]))
        .map(|n| n > 0)
        .map_err(Error::sql("deleting a response"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn turn(conn: &Connection, id: &str) {
        crate::store::turns::insert(
            conn,
            &crate::store::turns::Turn {
                id: id.to_string(),
                turn_index: 1,
                status: crate::store::turns::TurnStatus::Ok,
                ..crate::store::turns::Turn::default()
            },
        )
        .unwrap();
    }

    #[test]
    fn owned_reads_and_deletes_and_cascades_with_the_turn() {
        let conn = crate::store::in_memory();
        turn(&conn, "trn_1");
        let record = ResponseRecord {
            id: "resp_1".to_string(),
            user_id: "uag_usr_a".to_string(),
            turn_id: "trn_1".to_string(),
            metadata: Some(r#"{"k":"v"}"#.to_string()),
            text_format: r#"{"type":"text"}"#.to_string(),
            stored: true,
            status: "completed".to_string(),
            ..ResponseRecord::default()
        };
        insert(&conn, &record).unwrap();
        assert_eq!(
            get_owned(&conn, "resp_1", "uag_usr_a").unwrap(),
            Some(record.clone())
        );
        assert_eq!(get_owned(&conn, "resp_1", "uag_usr_b").unwrap(), None);
        assert!(!delete_owned(&conn, "resp_1", "uag_usr_b").unwrap());
        assert!(delete_owned(&conn, "resp_1", "uag_usr_a").unwrap());
        assert_eq!(get_owned(&conn, "resp_1", "uag_usr_a").unwrap(), None);

        // A response disappears with its turn (a wiped session takes its turns along).
        insert(&conn, &record).unwrap();
        conn.execute("DELETE FROM turns WHERE id = 'trn_1'", [])
            .unwrap();
        assert_eq!(get_owned(&conn, "resp_1", "uag_usr_a").unwrap(), None);
    }

    #[test]
    fn unstored_responses_cannot_be_deleted_by_clients() {
        let conn = crate::store::in_memory();
        turn(&conn, "trn_2");
        let record = ResponseRecord {
            id: "resp_2".to_string(),
            user_id: "operator".to_string(),
            turn_id: "trn_2".to_string(),
            text_format: "{}".to_string(),
            stored: false,
            status: "completed".to_string(),
            ..ResponseRecord::default()
        };
        insert(&conn, &record).unwrap();
        assert!(!delete_owned(&conn, "resp_2", "operator").unwrap());
    }
}
