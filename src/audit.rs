//! The audit trail: who changed what, when, from which request.
//!
//! Owns the shape of audit entries, and the snapshot types of the domain objects recorded in
//! them ([`UserState`], [`KeyState`], [`AccountState`], [`SessionState`]): their field names
//! are the audit log's history and do not follow the API's wire views (`api::wire`), so a
//! renamed API field never rewrites what old entries mean. States must already be free of
//! secrets and hashes; [`redact`] strips the known secret-bearing keys once more as a safety
//! net.

use crate::error::{Error, Result};
use crate::store;
use crate::store::accounts::Account;
use crate::store::api_keys::ApiKey;
use crate::store::sessions::Session;
use crate::store::users::User;
use rusqlite::Connection;
use serde::Serialize;
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

/// A snapshot as the JSON of a record's `before` or `after`.
pub fn state<T: Serialize>(snapshot: &T) -> Result<Value> {
    serde_json::to_value(snapshot)
        .map_err(|e| Error::Internal(format!("an audit state could not be rendered: {e}")))
}

fn time(ms: i64) -> String {
    crate::clock::rfc3339(ms)
}

fn time_opt(ms: Option<i64>) -> Option<String> {
    ms.map(crate::clock::rfc3339)
}

/// A user as the audit log records it (no secrets).
#[derive(Debug, Serialize)]
pub struct UserState<'a> {
    /// The user's id.
    pub id: &'a str,
    /// The same id (recorded since the first version).
    pub user_id: &'a str,
    /// Email.
    pub email: &'a str,
    /// Shown name.
    pub display_name: &'a str,
    /// active | suspended | deleted.
    pub status: &'static str,
    /// The base workspace.
    pub workspace_path: &'a str,
    /// Concurrent turns allowed.
    pub max_concurrency: i64,
    /// Tokens per UTC day.
    pub daily_token_budget: Option<i64>,
    /// Who created the user.
    pub created_by: &'a str,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub updated_at: String,
}

impl<'a> From<&'a User> for UserState<'a> {
    fn from(user: &'a User) -> Self {
        UserState {
            id: &user.id,
            user_id: &user.id,
            email: &user.email,
            display_name: &user.display_name,
            status: user.status.as_str(),
            workspace_path: &user.workspace_path,
            max_concurrency: user.max_concurrency,
            daily_token_budget: user.daily_token_budget,
            created_by: &user.created_by,
            created_at: time(user.created_at),
            updated_at: time(user.updated_at),
        }
    }
}

/// The state after a user's deletion: the user and what the deletion ended.
#[derive(Debug, Serialize)]
pub struct UserDeletedState<'a> {
    /// The user (status `deleted`).
    #[serde(flatten)]
    pub user: UserState<'a>,
    /// Keys revoked with it.
    pub keys_revoked: usize,
    /// Sessions ended with it.
    pub sessions_ended: usize,
    /// Chat-channel links (Telegram) removed with it.
    pub channel_links_removed: usize,
}

/// An API key as the audit log records it (never the hash or the raw key).
#[derive(Debug, Serialize)]
pub struct KeyState<'a> {
    /// The key's id.
    pub id: &'a str,
    /// The same id.
    pub key_id: &'a str,
    /// Owner.
    pub user_id: &'a str,
    /// The key's first characters.
    pub prefix: &'a str,
    /// Free label.
    pub label: Option<&'a str>,
    /// active | revoked.
    pub status: &'static str,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub expires_at: Option<String>,
    /// RFC 3339.
    pub last_used_at: Option<String>,
    /// RFC 3339.
    pub revoked_at: Option<String>,
}

impl<'a> From<&'a ApiKey> for KeyState<'a> {
    fn from(key: &'a ApiKey) -> Self {
        KeyState {
            id: &key.id,
            key_id: &key.id,
            user_id: &key.user_id,
            prefix: &key.key_prefix,
            label: key.label.as_deref(),
            status: key.status.as_str(),
            created_at: time(key.created_at),
            expires_at: time_opt(key.expires_at),
            last_used_at: time_opt(key.last_used_at),
            revoked_at: time_opt(key.revoked_at),
        }
    }
}

/// A pool account as the audit log records it at a moment (never the credential).
#[derive(Debug, Serialize)]
pub struct AccountState<'a> {
    /// The account's id.
    pub id: &'a str,
    /// Provider.
    pub provider: &'a str,
    /// `OAUTH_SESSION` or `API_KEY`.
    pub auth_type: &'a str,
    /// Shown name.
    pub label: &'a str,
    /// Whether selection may use it.
    pub enabled: bool,
    /// The CLI-primary account.
    pub cli_primary: bool,
    /// The status at that moment (an ended cooldown reads `ready`).
    pub status: &'static str,
    /// Whether selection would have considered it.
    pub usable: bool,
    /// RFC 3339, while cooling down.
    pub cooldown_until: Option<String>,
    /// The last failure.
    pub last_error: Option<&'a str>,
    /// RFC 3339.
    pub last_used_at: Option<String>,
    /// RFC 3339.
    pub access_token_expires_at: Option<String>,
    /// Plan type.
    pub plan: Option<&'a str>,
    /// Quota windows.
    pub quota: QuotaState,
    /// RFC 3339.
    pub created_at: String,
}

/// An account's quota windows in an [`AccountState`].
#[derive(Debug, Serialize)]
pub struct QuotaState {
    /// The 5-hour window.
    pub five_hour: Option<WindowState>,
    /// The weekly window.
    pub weekly: Option<WindowState>,
    /// RFC 3339 of the last usage fetch.
    pub checked_at: Option<String>,
}

/// One quota window in a [`QuotaState`].
#[derive(Debug, Serialize)]
pub struct WindowState {
    /// Percent used.
    pub used_percent: f64,
    /// RFC 3339 of its reset.
    pub resets_at: Option<String>,
}

impl<'a> AccountState<'a> {
    /// The state of `account` at `now_ms`.
    pub fn new(account: &'a Account, now_ms: i64) -> Self {
        let window = |used: Option<f64>, resets: Option<i64>| {
            used.map(|used_percent| WindowState {
                used_percent,
                resets_at: time_opt(resets),
            })
        };
        AccountState {
            id: &account.id,
            provider: &account.provider,
            auth_type: &account.auth_type,
            label: &account.label,
            enabled: account.enabled,
            cli_primary: account.cli_primary,
            status: crate::accounts::effective_status(account, now_ms).as_str(),
            usable: crate::accounts::is_usable(account, now_ms),
            cooldown_until: time_opt(crate::accounts::cooling_until(account, now_ms)),
            last_error: account.last_error.as_deref(),
            last_used_at: time_opt(account.last_used_at),
            access_token_expires_at: time_opt(account.access_token_expires_at),
            plan: account.plan.as_deref(),
            quota: QuotaState {
                five_hour: window(account.five_hour_used_percent, account.five_hour_resets_at),
                weekly: window(account.weekly_used_percent, account.weekly_resets_at),
                checked_at: time_opt(account.usage_checked_at),
            },
            created_at: time(account.created_at),
        }
    }
}

/// A session as the audit log records it (when it is wiped).
#[derive(Debug, Serialize)]
pub struct SessionState<'a> {
    /// The session's id.
    pub id: &'a str,
    /// Owner.
    pub user_id: &'a str,
    /// Workspace id.
    pub workspace_id: &'a str,
    /// Workspace directory.
    pub workspace_path: &'a str,
    /// The client's label.
    pub client_session_id: &'a str,
    /// Provider.
    pub provider: &'a str,
    /// Model.
    pub model: &'a str,
    /// The CLI's session id.
    pub cli_session_id: Option<&'a str>,
    /// Account of the CLI home.
    pub account_id: Option<&'a str>,
    /// Turns run.
    pub turn_count: i64,
    /// Messages in the stored transcript.
    pub message_count: i64,
    /// The last turn ended abnormally after touching files.
    pub dirty: bool,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub updated_at: String,
}

impl<'a> From<&'a Session> for SessionState<'a> {
    fn from(session: &'a Session) -> Self {
        SessionState {
            id: &session.id,
            user_id: &session.user_id,
            workspace_id: &session.workspace_id,
            workspace_path: &session.workspace_path,
            client_session_id: &session.client_session_id,
            provider: &session.provider,
            model: &session.model,
            cli_session_id: session.cli_session_id.as_deref(),
            account_id: session.account_id.as_deref(),
            turn_count: session.turn_count,
            message_count: session.message_count,
            dirty: session.dirty,
            created_at: time(session.created_at),
            updated_at: time(session.updated_at),
        }
    }
}

/// A Telegram account's link to a user as the audit log records it.
#[derive(Debug, Serialize)]
pub struct TelegramLinkState<'a> {
    /// The link's id.
    pub id: &'a str,
    /// The bot (its configured name).
    pub bot: &'a str,
    /// Telegram's user id.
    pub telegram_user_id: i64,
    /// The @username at link time.
    pub telegram_username: Option<&'a str>,
    /// The Codara user.
    pub user_id: &'a str,
    /// The link token that made it.
    pub token_id: &'a str,
    /// RFC 3339.
    pub linked_at: String,
}

impl<'a> From<&'a store::telegram::Link> for TelegramLinkState<'a> {
    fn from(link: &'a store::telegram::Link) -> Self {
        TelegramLinkState {
            id: &link.id,
            bot: &link.bot,
            telegram_user_id: link.telegram_user_id,
            telegram_username: link.telegram_username.as_deref(),
            user_id: &link.user_id,
            token_id: &link.token_id,
            linked_at: time(link.linked_at),
        }
    }
}

/// A link token as the audit log records it (never the token or its hash).
#[derive(Debug, Serialize)]
pub struct TelegramLinkTokenState<'a> {
    /// The token's id.
    pub id: &'a str,
    /// The user it links.
    pub user_id: &'a str,
    /// The bot it is valid for.
    pub bot: &'a str,
    /// RFC 3339.
    pub expires_at: String,
}

impl<'a> From<&'a store::telegram::LinkToken> for TelegramLinkTokenState<'a> {
    fn from(token: &'a store::telegram::LinkToken) -> Self {
        TelegramLinkTokenState {
            id: &token.id,
            user_id: &token.user_id,
            bot: &token.bot,
            expires_at: time(token.expires_at),
        }
    }
}

/// What a Telegram chat works on, as the audit log records a change of it.
#[derive(Debug, Serialize)]
pub struct TelegramChatState<'a> {
    /// The bot.
    pub bot: &'a str,
    /// Telegram's chat id.
    pub chat_id: i64,
    /// The Codara user.
    pub user_id: &'a str,
    /// The project (`null`: the user's base workspace).
    pub project: Option<&'a str>,
    /// The conversation generation (`/new` increments it).
    pub generation: i64,
}

impl<'a> From<&'a store::telegram::Chat> for TelegramChatState<'a> {
    fn from(chat: &'a store::telegram::Chat) -> Self {
        TelegramChatState {
            bot: &chat.bot,
            chat_id: chat.chat_id,
            user_id: &chat.user_id,
            project: chat.project.as_deref(),
            generation: chat.generation,
        }
    }
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

    fn keys(value: &Value) -> Vec<&str> {
        value
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect()
    }

    /// The audit log's field names are history: pinned here, apart from the API's views.
    #[test]
    fn snapshots_keep_the_recorded_field_names() {
        let user = User {
            id: "uag_usr_1".into(),
            ..User::default()
        };
        let value = state(&UserState::from(&user)).unwrap();
        assert_eq!(
            keys(&value),
            [
                "created_at",
                "created_by",
                "daily_token_budget",
                "display_name",
                "email",
                "id",
                "max_concurrency",
                "status",
                "updated_at",
                "user_id",
                "workspace_path"
            ]
        );
        assert_eq!(value["status"], "active");
        let deleted = state(&UserDeletedState {
            user: UserState::from(&user),
            keys_revoked: 2,
            sessions_ended: 1,
            channel_links_removed: 0,
        })
        .unwrap();
        assert_eq!(
            (deleted["keys_revoked"].clone(), deleted["user_id"].clone()),
            (2.into(), "uag_usr_1".into())
        );
        let key = state(&KeyState::from(&ApiKey::default())).unwrap();
        assert_eq!(
            keys(&key),
            [
                "created_at",
                "expires_at",
                "id",
                "key_id",
                "label",
                "last_used_at",
                "prefix",
                "revoked_at",
                "status",
                "user_id"
            ]
        );
        let account = Account {
            status: crate::store::accounts::AccountStatus::Cooldown,
            cooldown_until: Some(10),
            five_hour_used_percent: Some(12.5),
            ..Account::default()
        };
        let value = state(&AccountState::new(&account, 20)).unwrap();
        assert_eq!(
            keys(&value),
            [
                "access_token_expires_at",
                "auth_type",
                "cli_primary",
                "cooldown_until",
                "created_at",
                "enabled",
                "id",
                "label",
                "last_error",
                "last_used_at",
                "plan",
                "provider",
                "quota",
                "status",
                "usable"
            ]
        );
        assert_eq!(value["status"], "ready", "an ended cooldown reads ready");
        assert_eq!(value["quota"]["five_hour"]["used_percent"], 12.5);
        assert_eq!(value["quota"]["weekly"], Value::Null);
        let session = state(&SessionState::from(&Session::default())).unwrap();
        assert_eq!(keys(&session).len(), 14);
    }

    #[test]
    fn redacts_nested_secrets() {
        let value = serde_json::json!({"id": "k1", "key_hash": "abc", "nested": [{"raw_key": "x", "label": "l"}]});
        assert_eq!(
            redact(value),
            serde_json::json!({"id": "k1", "nested": [{"label": "l"}]})
        );
    }
}
