//! The audit trail: who changed what, when, from which request.
//!
//! Owns the shape of audit entries. States passed in must already be free of secrets and
//! hashes; [`redact`] strips the known secret-bearing keys once more as a safety net.

use crate::error::Result;
use crate::store;
use rusqlite::Connection;
use serde_json::Value;

/// Who performed an action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    /// An operator credential.
    Operator,
    /// A user, by id.
    User(String),
    /// The command line.
    Cli,
    /// Codara itself.
    System,
}

impl Actor {
    /// The stored form: `operator`, `user:<id>`, `cli`, `system`.
    pub fn as_string(&self) -> String {
        match self {
            Actor::Operator => "operator".to_string(),
            Actor::User(id) => format!("user:{id}"),
            Actor::Cli => "cli".to_string(),
            Actor::System => "system".to_string(),
        }
    }
}

/// What to record.
pub struct Record<'a> {
    /// Who.
    pub actor: &'a Actor,
    /// e.g. `user.created`.
    pub action: &'a str,
    /// e.g. `user`.
    pub target_type: &'a str,
    /// The target's id.
    pub target_id: &'a str,
    /// State before.
    pub before: Option<Value>,
    /// State after.
    pub after: Option<Value>,
    /// The request id, when there is one.
    pub request_id: Option<&'a str>,
}

/// Writes `record` on `conn` (inside the caller's transaction, so it commits with the change).
pub fn record(conn: &Connection, record: Record<'_>) -> Result<()> {
    let render = |value: Option<Value>| value.map(|v| redact(v).to_string());
    store::audit::insert(
        conn,
        &store::audit::Entry {
            id: crate::crypto::random_id("aud_"),
            at: crate::clock::now_ms(),
            actor: record.actor.as_string(),
            action: record.action.to_string(),
            target_type: record.target_type.to_string(),
            target_id: record.target_id.to_string(),
            before: render(record.before),
            after: render(record.after),
            request_id: record.request_id.map(str::to_string),
        },
    )
}

/// Removes keys that could hold secrets or their hashes, at any depth.
pub fn redact(value: Value) -> Value {
    const SECRET_KEYS: &[&str] = &[
        "key_hash",
        "raw_key",
        "api_key",
        "token",
        "access_token",
        "refresh_token",
        "secret",
        "password",
        "credential",
        "operator_secret",
        "token_hash",
    ];
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .filter(|(k, _)| !SECRET_KEYS.contains(&k.as_str()))
                .map(|(k, v)| (k, redact(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(redact).collect()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_nested_secrets() {
        let value = serde_json::json!({"id": "k1", "key_hash": "abc", "nested": [{"raw_key": "x", "label": "l"}]});
        assert_eq!(
            redact(value),
            serde_json::json!({"id": "k1", "nested": [{"label": "l"}]})
        );
    }
}
