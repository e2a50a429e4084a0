//! The `audit_log` table: append-only records of every mutation.
//!
//! Owns `audit_log`. Stores what `audit` hands it; callers strip secrets before.

use crate::error::{Error, Result};
use rusqlite::{Connection, Row};

/// One audit entry.
#[derive(Debug, Clone, Default)]
pub struct Entry {
    /// `aud_<12hex>`.
    pub id: String,
    /// Epoch ms.
    pub at: i64,
    /// `operator`, `user:<id>`, `cli`, `system`.
    pub actor: String,
    /// e.g. `user.created`.
    pub action: String,
    /// e.g. `user`.
    pub target_type: String,
    /// The target's id.
    pub target_id: String,
    /// JSON of the state before, without secrets.
    pub before: Option<String>,
    /// JSON of the state after, without secrets.
    pub after: Option<String>,
    /// The request that caused it.
    pub request_id: Option<String>,
}

/// Filters for [`search`]; `None` means any.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Case-insensitive substring of actor, action, target or states.
    pub text: Option<String>,
    /// Exact actor.
    pub actor: Option<String>,
    /// Exact action, or a prefix ending in `.` (e.g. `user.`).
    pub action: Option<String>,
    /// Exact target type.
    pub target_type: Option<String>,
    /// Exact target id.
    pub target_id: Option<String>,
    /// From this time (epoch ms, inclusive).
    pub since: Option<i64>,
    /// Until this time (epoch ms, exclusive).
    pub until: Option<i64>,
    /// Only entries older than this cursor `(at, id)`.
    pub before_cursor: Option<(i64, String)>,
}

const COLUMNS: &str = "id, at, actor, action, target_type, target_id, before, after, request_id";

fn from_row(row: &Row<'_>) -> rusqlite::Result<Entry> {
    Ok(Entry {
        id: row.get(0)?,
        at: row.get(1)?,
        actor: row.get(2)?,
        action: row.get(3)?,
        target_type: row.get(4)?,
        target_id: row.get(5)?,
        before: row.get(6)?,
        after: row.get(7)?,
        request_id: row.get(8)?,
    })
}

/// Appends an entry.
pub fn insert(conn: &Connection, entry: &Entry) -> Result<()> {
    conn.prepare_cached(&format!(
        "INSERT INTO audit_log ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"
    ))
    .and_then(|mut stmt| {
        stmt.execute(rusqlite::params![
            entry.id,
            entry.at,
            entry.actor,
            entry.action,
            entry.target_type,
            entry.target_id,
            entry.before,
            entry.after,
            entry.request_id,
        ])
    })
    .map(|_| ())
    .map_err(Error::sql("writing an audit entry"))
}

/// Entries matching `filter`, newest first, at most `limit`.
pub fn search(conn: &Connection, filter: &Filter, limit: i64) -> Result<Vec<Entry>> {
    let text = filter
        .text
        .as_ref()
        .map(|t| format!("%{}%", t.to_lowercase()));
    let (action_exact, action_prefix) = match filter.action.as_deref() {
        Some(a) if a.ends_with('.') => (None, Some(format!("{a}%"))),
        Some(a) => (Some(a.to_string()), None),
        None => (None, None),
    };
    let (cursor_at, cursor_id) = match &filter.before_cursor {
        Some((at, id)) => (Some(*at), Some(id.clone())),
        None => (None, None),
    };
    let sql = format!(
        "SELECT {COLUMNS} FROM audit_log WHERE
           (?1 IS NULL OR lower(actor || ' ' || action || ' ' || target_type || ' ' || target_id || ' ' ||
                               COALESCE(before, '') || ' ' || COALESCE(after, '')) LIKE ?1)
           AND (?2 IS NULL OR actor = ?2)
           AND (?3 IS NULL OR action = ?3)
           AND (?4 IS NULL OR action LIKE ?4)
           AND (?5 IS NULL OR target_type = ?5)
           AND (?6 IS NULL OR target_id = ?6)
           AND (?7 IS NULL OR at >= ?7)
           AND (?8 IS NULL OR at < ?8)
           AND (?9 IS NULL OR at < ?9 OR (at = ?9 AND id < ?10))
         ORDER BY at DESC, id DESC LIMIT ?11"
    );
    conn.prepare_cached(&sql)
        .and_then(|mut stmt| {
            stmt.query_map(
                rusqlite::params![
                    text,
                    filter.actor,
                    action_exact,
                    action_prefix,
                    filter.target_type,
                    filter.target_id,
                    filter.since,
                    filter.until,
                    cursor_at,
                    cursor_id,
                    limit
                ],
                from_row,
            )?
            .collect()
        })
        .map_err(Error::sql("searching the audit log"))
}
