//! Response shapes built from domain types: what clients see, declared once. Renaming a field
//! here changes the API and nothing else (audit entries keep their own snapshot types in
//! `audit`).
//!
//! Each view borrows the domain value it renders and derives `Serialize`; handlers turn it into
//! JSON with [`json`]. Times are RFC 3339 strings. Must not read the store or decide anything:
//! what a view shows is computed by its caller (an account's effective status, session counts).

use crate::error::{Error, Result};
use crate::providers::Action;
use crate::store::accounts::Account;
use crate::store::api_keys::ApiKey;
use crate::store::audit::Entry;
use crate::store::sessions::Session;
use crate::store::turns::Turn;
use crate::store::usage::UsageRow;
use crate::store::users::User;
use crate::telemetry::query::{Found, LogLine, SpanRow, TraceDetail, TraceRow};
use crate::workspace::inventory::{GitInfo, Workspace};
use crate::workspace::projects::ProjectMeta;
use serde::Serialize;
use serde_json::{Map, Value};

/// A view as a JSON value (a view that cannot be rendered is a bug: 500).
pub fn json<T: Serialize>(view: &T) -> Result<Value> {
    serde_json::to_value(view)
        .map_err(|e| Error::Internal(format!("a response could not be rendered: {e}")))
}

fn time(ms: i64) -> String {
    crate::clock::rfc3339(ms)
}

fn time_opt(ms: Option<i64>) -> Option<String> {
    ms.map(crate::clock::rfc3339)
}

/// One action of a turn as clients see it (`actions[]`).
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ActionView<'a> {
    /// A file the agent's file tool changed; `path` workspace-relative.
    FileChange {
        /// The path.
        path: &'a str,
        /// add | update | delete | write.
        kind: &'a str,
    },
    /// A shell command.
    Command {
        /// The command line.
        command: &'a str,
        /// Its exit code, when known.
        exit_code: Option<i32>,
        /// Whether it succeeded.
        ok: bool,
    },
    /// Another tool call.
    Tool {
        /// The tool's name.
        name: &'a str,
        /// Whether it succeeded.
        ok: bool,
    },
}

impl<'a> From<&'a Action> for ActionView<'a> {
    fn from(action: &'a Action) -> Self {
        match action {
            Action::FileChange { path, kind } => ActionView::FileChange { path, kind },
            Action::Command {
                command,
                exit_code,
                ok,
            } => ActionView::Command {
                command,
                exit_code: *exit_code,
                ok: *ok,
            },
            Action::Tool { name, ok } => ActionView::Tool { name, ok: *ok },
        }
    }
}

/// The `actions` array of a turn.
pub fn actions(actions: &[Action]) -> Vec<ActionView<'_>> {
    actions.iter().map(ActionView::from).collect()
}

/// A user (never a key or a hash). `user_id` repeats `id` for the original gateway's clients.
#[derive(Debug, Serialize)]
pub struct UserView<'a> {
    /// `uag_usr_…`.
    pub id: &'a str,
    /// The same id.
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
    /// Tokens per UTC day, if limited.
    pub daily_token_budget: Option<i64>,
    /// Who created the user.
    pub created_by: &'a str,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub updated_at: String,
}

impl<'a> From<&'a User> for UserView<'a> {
    fn from(user: &'a User) -> Self {
        UserView {
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

/// A user with the first key, as `POST /management/v1/users` answers.
#[derive(Debug, Serialize)]
pub struct CreatedUserView<'a> {
    /// The user.
    #[serde(flatten)]
    pub user: UserView<'a>,
    /// The key, with the raw key shown once.
    pub api_key: IssuedKeyView<'a>,
}

/// A user with what the operator's detail page shows.
#[derive(Debug, Serialize)]
pub struct UserDetailView<'a> {
    /// The user.
    #[serde(flatten)]
    pub user: UserView<'a>,
    /// Their keys, newest first.
    pub keys: Vec<KeyView<'a>>,
    /// Their latest sessions.
    pub sessions: Vec<SessionView<'a>>,
    /// Their token usage.
    pub usage: UsageView<'a>,
    /// The latest audit entries about them.
    pub recent_activity: Vec<AuditEntryView<'a>>,
}

/// An API key (never the hash; the raw key only in [`IssuedKeyView`]). `key_id` repeats `id`.
#[derive(Debug, Serialize)]
pub struct KeyView<'a> {
    /// `uag_key_…`.
    pub id: &'a str,
    /// The same id.
    pub key_id: &'a str,
    /// Owner.
    pub user_id: &'a str,
    /// The first characters of the key, to tell keys apart.
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

impl<'a> From<&'a ApiKey> for KeyView<'a> {
    fn from(key: &'a ApiKey) -> Self {
        KeyView {
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

/// A newly issued key: the key plus the raw key, shown this once.
#[derive(Debug, Serialize)]
pub struct IssuedKeyView<'a> {
    /// The stored key.
    #[serde(flatten)]
    pub key: KeyView<'a>,
    /// `uagk_live_…`.
    #[serde(rename = "key")]
    pub raw: &'a str,
}

impl<'a> From<&'a crate::users::IssuedKey> for IssuedKeyView<'a> {
    fn from(issued: &'a crate::users::IssuedKey) -> Self {
        IssuedKeyView {
            key: KeyView::from(&issued.key),
            raw: &issued.raw,
        }
    }
}

/// A user's token usage: totals and one row per day and provider.
#[derive(Debug, Serialize)]
pub struct UsageView<'a> {
    /// Sums over every row.
    pub totals: UsageTotals,
    /// The rows, oldest day first.
    pub by_day: Vec<UsageDayView<'a>>,
}

/// Usage sums.
#[derive(Debug, Default, Serialize)]
pub struct UsageTotals {
    /// Tokens in.
    pub prompt_tokens: i64,
    /// Tokens out.
    pub completion_tokens: i64,
    /// Tokens served from cache.
    pub cached_tokens: i64,
    /// Turns.
    pub requests: i64,
}

/// One day and provider of usage.
#[derive(Debug, Serialize)]
pub struct UsageDayView<'a> {
    /// `YYYY-MM-DD` (UTC).
    pub day: &'a str,
    /// Provider.
    pub provider: &'a str,
    /// Tokens in.
    pub prompt_tokens: i64,
    /// Tokens out.
    pub completion_tokens: i64,
    /// Tokens served from cache.
    pub cached_tokens: i64,
    /// Turns.
    pub requests: i64,
}

impl<'a> UsageView<'a> {
    /// The view of a user's usage rows.
    pub fn of(rows: &'a [UsageRow]) -> Self {
        let mut totals = UsageTotals::default();
        for row in rows {
            totals.prompt_tokens += row.prompt_tokens;
            totals.completion_tokens += row.completion_tokens;
            totals.cached_tokens += row.cached_tokens;
            totals.requests += row.requests;
        }
        let by_day = rows
            .iter()
            .map(|row| UsageDayView {
                day: &row.day,
                provider: &row.provider,
                prompt_tokens: row.prompt_tokens,
                completion_tokens: row.completion_tokens,
                cached_tokens: row.cached_tokens,
                requests: row.requests,
            })
            .collect();
        UsageView { totals, by_day }
    }
}

/// A session: the one shape every route that lists sessions uses (management, a user's own,
/// a user's and a workspace's detail).
#[derive(Debug, Serialize)]
pub struct SessionView<'a> {
    /// `ses_…`.
    pub id: &'a str,
    /// Owner.
    pub user_id: &'a str,
    /// Workspace id within the owner's tree.
    pub workspace_id: &'a str,
    /// Absolute workspace directory.
    pub workspace_path: &'a str,
    /// The client's conversation label.
    pub client_session_id: &'a str,
    /// Provider.
    pub provider: &'a str,
    /// Model of the last turn.
    pub model: &'a str,
    /// The CLI's own session id.
    pub cli_session_id: Option<&'a str>,
    /// Account whose CLI home holds the session.
    pub account_id: Option<&'a str>,
    /// Turns run.
    pub turn_count: i64,
    /// Messages covered by the stored transcript.
    pub message_count: i64,
    /// The last turn ended abnormally after touching files.
    pub dirty: bool,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub updated_at: String,
}

impl<'a> From<&'a Session> for SessionView<'a> {
    fn from(session: &'a Session) -> Self {
        SessionView {
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

/// A session with its turns.
#[derive(Debug, Serialize)]
pub struct SessionDetailView<'a> {
    /// The session.
    #[serde(flatten)]
    pub session: SessionView<'a>,
    /// Its turns in order.
    pub turns: Vec<TurnView<'a>>,
}

impl<'a> SessionDetailView<'a> {
    /// The view of `session` and its `turns`.
    pub fn of(session: &'a Session, turns: &'a [Turn]) -> Self {
        SessionDetailView {
            session: SessionView::from(session),
            turns: turns.iter().map(TurnView::from).collect(),
        }
    }
}

/// A stored turn.
#[derive(Debug, Serialize)]
pub struct TurnView<'a> {
    /// `trn_…`.
    pub id: &'a str,
    /// 1-based index in its session.
    pub turn_index: i64,
    /// Provider.
    pub provider: &'a str,
    /// Model.
    pub model: &'a str,
    /// The CLI session it ran in.
    pub cli_session_id: Option<&'a str>,
    /// Whether the CLI session was resumed.
    pub resumed: bool,
    /// What the CLI was sent.
    pub prompt: &'a str,
    /// The reply.
    pub reply: &'a str,
    /// The actions (as stored; `null` when unreadable).
    pub actions: Value,
    /// Changed paths (as stored; `null` when unreadable).
    pub modified_files: Value,
    /// Token counts.
    pub usage: TurnUsageView,
    /// Wall time of the run.
    pub duration_ms: i64,
    /// The CLI's exit code.
    pub exit_code: Option<i64>,
    /// ok | error | stalled | timeout | interrupted.
    pub status: &'static str,
    /// The error message when not ok.
    pub error: Option<&'a str>,
    /// Ended abnormally after touching files.
    pub dirty: bool,
    /// Account used.
    pub account_id: Option<&'a str>,
    /// RFC 3339.
    pub created_at: String,
}

/// A turn's token counts.
#[derive(Debug, Serialize)]
pub struct TurnUsageView {
    /// Tokens in.
    pub prompt_tokens: i64,
    /// Tokens out.
    pub completion_tokens: i64,
    /// Tokens served from cache.
    pub cached_tokens: i64,
}

impl<'a> From<&'a Turn> for TurnView<'a> {
    fn from(turn: &'a Turn) -> Self {
        let parse = |text: &str| serde_json::from_str::<Value>(text).unwrap_or(Value::Null);
        TurnView {
            id: &turn.id,
            turn_index: turn.turn_index,
            provider: &turn.provider,
            model: &turn.model,
            cli_session_id: turn.cli_session_id.as_deref(),
            resumed: turn.resumed,
            prompt: &turn.prompt,
            reply: &turn.reply,
            actions: parse(&turn.actions),
            modified_files: parse(&turn.modified_files),
            usage: TurnUsageView {
                prompt_tokens: turn.prompt_tokens,
                completion_tokens: turn.completion_tokens,
                cached_tokens: turn.cached_tokens,
            },
            duration_ms: turn.duration_ms,
            exit_code: turn.exit_code,
            status: turn.status.as_str(),
            error: turn.error.as_deref(),
            dirty: turn.dirty,
            account_id: turn.account_id.as_deref(),
            created_at: time(turn.created_at),
        }
    }
}

/// A pool account (never its credential).
#[derive(Debug, Serialize)]
pub struct AccountView<'a> {
    /// Operator-chosen id.
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
    /// The status now (a cooldown that ended reads `ready`).
    pub status: &'static str,
    /// Whether selection would consider it now.
    pub usable: bool,
    /// RFC 3339, while cooling down.
    pub cooldown_until: Option<String>,
    /// The last failure.
    pub last_error: Option<&'a str>,
    /// RFC 3339.
    pub last_used_at: Option<String>,
    /// RFC 3339.
    pub access_token_expires_at: Option<String>,
    /// Plan type when known.
    pub plan: Option<&'a str>,
    /// Quota windows.
    pub quota: QuotaView,
    /// RFC 3339.
    pub created_at: String,
}

/// An account's quota windows.
#[derive(Debug, Serialize)]
pub struct QuotaView {
    /// The 5-hour window, when known.
    pub five_hour: Option<WindowView>,
    /// The weekly window, when known.
    pub weekly: Option<WindowView>,
    /// RFC 3339 of the last successful usage fetch.
    pub checked_at: Option<String>,
}

/// One quota window.
#[derive(Debug, Serialize)]
pub struct WindowView {
    /// Percent used.
    pub used_percent: f64,
    /// RFC 3339 of its reset.
    pub resets_at: Option<String>,
}

impl<'a> AccountView<'a> {
    /// The view of `account` at `now_ms` (status and usability depend on the time).
    pub fn new(account: &'a Account, now_ms: i64) -> Self {
        let window = |used: Option<f64>, resets: Option<i64>| {
            used.map(|used_percent| WindowView {
                used_percent,
                resets_at: time_opt(resets),
            })
        };
        AccountView {
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
            quota: QuotaView {
                five_hour: window(account.five_hour_used_percent, account.five_hour_resets_at),
                weekly: window(account.weekly_used_percent, account.weekly_resets_at),
                checked_at: time_opt(account.usage_checked_at),
            },
            created_at: time(account.created_at),
        }
    }
}

/// An audit entry, its states as JSON objects.
#[derive(Debug, Serialize)]
pub struct AuditEntryView<'a> {
    /// `aud_…`.
    pub id: &'a str,
    /// RFC 3339.
    pub at: String,
    /// `operator`, `user:<id>`, `cli`, `system`.
    pub actor: &'a str,
    /// e.g. `user.created`.
    pub action: &'a str,
    /// e.g. `user`.
    pub target_type: &'a str,
    /// The target's id.
    pub target_id: &'a str,
    /// The state before (`null` when none or unreadable).
    pub before: Option<Value>,
    /// The state after.
    pub after: Option<Value>,
    /// The request that caused it.
    pub request_id: Option<&'a str>,
}

impl<'a> From<&'a Entry> for AuditEntryView<'a> {
    fn from(entry: &'a Entry) -> Self {
        let parse = |text: &Option<String>| {
            text.as_deref()
                .and_then(|t| serde_json::from_str::<Value>(t).ok())
        };
        AuditEntryView {
            id: &entry.id,
            at: time(entry.at),
            actor: &entry.actor,
            action: &entry.action,
            target_type: &entry.target_type,
            target_id: &entry.target_id,
            before: parse(&entry.before),
            after: parse(&entry.after),
            request_id: entry.request_id.as_deref(),
        }
    }
}

/// A workspace of the inventory (the original gateway's record fields that Codara has).
#[derive(Debug, Serialize)]
pub struct WorkspaceView<'a> {
    /// base64url of the relative path.
    pub workspace_id: &'a str,
    /// The directory name.
    pub name: &'a str,
    /// The canonical directory.
    pub path: String,
    /// The directory relative to the root.
    pub relative_path: String,
    /// Always true: records are made of directories that exist.
    pub exists: bool,
    /// Git metadata.
    pub git: GitView<'a>,
    /// Project metadata, when it is a project.
    pub project: Option<ProjectView<'a>>,
    /// Sessions bound to the directory or below it.
    pub bound_sessions_count: usize,
}

impl<'a> From<&'a Workspace> for WorkspaceView<'a> {
    fn from(workspace: &'a Workspace) -> Self {
        WorkspaceView {
            workspace_id: &workspace.id,
            name: &workspace.name,
            path: workspace.path.display().to_string(),
            relative_path: workspace.relative_path.display().to_string(),
            exists: true,
            git: GitView::from(&workspace.git),
            project: workspace.project.as_ref().map(ProjectView::from),
            bound_sessions_count: workspace.bound_sessions_count,
        }
    }
}

/// A workspace with the sessions bound to it or below.
#[derive(Debug, Serialize)]
pub struct WorkspaceDetailView<'a> {
    /// The record.
    #[serde(flatten)]
    pub workspace: WorkspaceView<'a>,
    /// Its sessions, newest first.
    pub sessions: Vec<SessionView<'a>>,
}

/// A project's record as `POST /management/v1/projects` answers: `created` is false when an
/// existing directory was initialized.
#[derive(Debug, Serialize)]
pub struct CreatedProjectView<'a> {
    /// The workspace record.
    #[serde(flatten)]
    pub workspace: WorkspaceView<'a>,
    /// Whether the directory was created.
    pub created: bool,
}

/// Git facts of a workspace.
#[derive(Debug, Serialize)]
pub struct GitView<'a> {
    /// A git repository.
    pub is_git_repo: bool,
    /// Branch (`HEAD` when detached).
    pub branch: Option<&'a str>,
    /// Full HEAD id.
    pub head_commit: Option<&'a str>,
    /// Abbreviated HEAD id.
    pub short_commit: Option<&'a str>,
    /// HEAD's subject.
    pub head_summary: Option<&'a str>,
    /// HEAD's committer time, RFC 3339.
    pub head_committed_at: Option<&'a str>,
    /// `remote.origin.url`.
    pub remote_url: Option<&'a str>,
    /// Uncommitted changes; `null` when unknown.
    pub dirty: Option<bool>,
}

impl<'a> From<&'a GitInfo> for GitView<'a> {
    fn from(git: &'a GitInfo) -> Self {
        GitView {
            is_git_repo: git.is_git_repo,
            branch: git.branch.as_deref(),
            head_commit: git.head_commit.as_deref(),
            short_commit: git.short_commit.as_deref(),
            head_summary: git.head_summary.as_deref(),
            head_committed_at: git.head_committed_at.as_deref(),
            remote_url: git.remote_url.as_deref(),
            dirty: git.dirty,
        }
    }
}

/// A project's metadata. `default_provider` repeats `provider` under the original gateway's
/// name.
#[derive(Debug, Serialize)]
pub struct ProjectView<'a> {
    /// Name.
    pub name: &'a str,
    /// Template it was laid out with.
    pub template: &'a str,
    /// Default provider of its turns.
    pub provider: Option<&'a str>,
    /// The same provider.
    pub default_provider: Option<&'a str>,
    /// RFC 3339.
    pub created_at: Option<&'a str>,
    /// `cli`, `operator`, …
    pub created_by: Option<&'a str>,
    /// Absolute path of `.codara/project.toml`.
    pub metadata_path: String,
}

impl<'a> From<&'a ProjectMeta> for ProjectView<'a> {
    fn from(meta: &'a ProjectMeta) -> Self {
        ProjectView {
            name: &meta.name,
            template: &meta.template,
            provider: meta.provider.as_deref(),
            default_provider: meta.provider.as_deref(),
            created_at: meta.created_at.as_deref(),
            created_by: meta.created_by.as_deref(),
            metadata_path: meta.metadata_path.display().to_string(),
        }
    }
}

/// A Telegram link token just issued: the raw token, shown once, and how to use it
/// (the original gateway's field names).
#[derive(Debug, Serialize)]
pub struct LinkTokenView<'a> {
    /// `uag_clt_…`.
    pub token_id: &'a str,
    /// The token for `/link`; never shown again.
    pub raw_token: &'a str,
    /// The user it links.
    pub user_id: &'a str,
    /// Always `telegram`.
    pub channel: &'static str,
    /// The bot it is valid for.
    pub bot_name: &'a str,
    /// Who issued it.
    pub created_by: &'a str,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub expires_at: String,
    /// What the user sends the bot.
    pub link_command: String,
    /// `https://t.me/<bot>?start=<token>`, when the bot's @username is known.
    pub deep_link: Option<String>,
}

impl<'a> LinkTokenView<'a> {
    /// The view of `issued`, with the bot's @username when known.
    pub fn of(issued: &'a crate::telegram::links::IssuedToken, username: Option<&str>) -> Self {
        let token = &issued.token;
        LinkTokenView {
            token_id: &token.id,
            raw_token: &issued.raw,
            user_id: &token.user_id,
            channel: "telegram",
            bot_name: &token.bot,
            created_by: &token.created_by,
            created_at: time(token.created_at),
            expires_at: time(token.expires_at),
            link_command: format!("/link {}", issued.raw),
            deep_link: username.map(|name| {
                format!(
                    "https://t.me/{}?start={}",
                    name.trim_start_matches('@'),
                    issued.raw
                )
            }),
        }
    }
}

/// A Telegram account linked to a user.
#[derive(Debug, Serialize)]
pub struct LinkView<'a> {
    /// `uag_tgl_…`.
    pub id: &'a str,
    /// Always `telegram`.
    pub channel: &'static str,
    /// The bot.
    pub bot_name: &'a str,
    /// Telegram's user id.
    pub telegram_user_id: i64,
    /// The @username at link time.
    pub telegram_username: Option<&'a str>,
    /// The Codara user.
    pub user_id: &'a str,
    /// RFC 3339.
    pub linked_at: String,
}

impl<'a> From<&'a crate::store::telegram::Link> for LinkView<'a> {
    fn from(link: &'a crate::store::telegram::Link) -> Self {
        LinkView {
            id: &link.id,
            channel: "telegram",
            bot_name: &link.bot,
            telegram_user_id: link.telegram_user_id,
            telegram_username: link.telegram_username.as_deref(),
            user_id: &link.user_id,
            linked_at: time(link.linked_at),
        }
    }
}

/// One configured Telegram bot and how it is doing (never its token or secret).
#[derive(Debug, Serialize)]
pub struct TelegramBotView<'a> {
    /// The configured name.
    pub name: &'a str,
    /// Whether it is enabled (and the channel too).
    pub enabled: bool,
    /// Whether its threads run.
    pub running: bool,
    /// Its @username.
    pub username: Option<String>,
    /// Where Telegram posts its updates in webhook mode.
    pub webhook_path: String,
    /// The URL registered with `setWebhook`, if Codara registered it.
    pub webhook_url: Option<String>,
    /// The last Bot API failure.
    pub last_error: Option<String>,
    /// RFC 3339.
    pub last_error_at: Option<String>,
    /// RFC 3339 of the last successful Bot API call.
    pub last_ok_at: Option<String>,
    /// Turns running now.
    pub turns_running: usize,
    /// Updates received and not handled yet.
    pub pending_updates: i64,
    /// Linked Telegram accounts.
    pub links: i64,
}

impl<'a> TelegramBotView<'a> {
    /// The view of `bot` with its runtime `status` (`None`: not running) and counts.
    pub fn of(
        bot: &'a crate::config::TelegramBot,
        enabled: bool,
        status: Option<crate::telegram::Status>,
        pending_updates: i64,
        links: i64,
    ) -> Self {
        let running = status.is_some();
        let status = status.unwrap_or_default();
        TelegramBotView {
            name: &bot.name,
            enabled,
            running,
            username: status.username.or_else(|| bot.username.clone()),
            webhook_path: crate::telegram::webhook_path(&bot.name),
            webhook_url: status.webhook_url,
            last_error: status.last_error,
            last_error_at: time_opt(status.last_error_at),
            last_ok_at: time_opt(status.last_ok_at),
            turns_running: status.turns_running,
            pending_updates,
            links,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The field names clients see, pinned: a rename here is an API change.
    fn keys(value: &Value) -> Vec<&str> {
        value
            .as_object()
            .expect("an object")
            .keys()
            .map(String::as_str)
            .collect()
    }

    #[test]
    fn one_session_shape_with_every_field() {
        let session = Session {
            id: "ses_1".into(),
            cli_session_id: Some("cli".into()),
            ..Session::default()
        };
        let value = json(&SessionView::from(&session)).unwrap();
        assert_eq!(
            keys(&value),
            [
                "account_id",
                "cli_session_id",
                "client_session_id",
                "created_at",
                "dirty",
                "id",
                "message_count",
                "model",
                "provider",
                "turn_count",
                "updated_at",
                "user_id",
                "workspace_id",
                "workspace_path"
            ]
        );
        assert_eq!(value["created_at"], "1970-01-01T00:00:00.000Z");
        let detail = json(&SessionDetailView::of(&session, &[Turn::default()])).unwrap();
        assert_eq!(detail["id"], "ses_1");
        assert_eq!(detail["turns"][0]["status"], "ok");
        assert_eq!(detail["turns"][0]["actions"], Value::Null);
    }

    #[test]
    fn an_issued_key_shows_the_raw_key_once_beside_the_key() {
        let issued = crate::users::IssuedKey {
            key: ApiKey {
                id: "uag_key_1".into(),
                key_prefix: "uagk_live_abcd".into(),
                ..ApiKey::default()
            },
            raw: "uagk_live_secret".into(),
        };
        let value = json(&IssuedKeyView::from(&issued)).unwrap();
        assert_eq!(value["key"], "uagk_live_secret");
        assert_eq!(value["key_id"], "uag_key_1");
        assert_eq!(value["prefix"], "uagk_live_abcd");
        assert!(value.get("key_hash").is_none());
    }
}

/// A trace root, as the trace list and the explorer show it.
#[derive(Debug, Serialize)]
pub struct TraceRowView<'a> {
    /// 32 hex digits.
    pub trace_id: &'a str,
    /// `METHOD /route/template`, or the root span's name.
    pub name: &'a str,
    /// The route template.
    pub route: Option<&'a str>,
    /// The request method.
    pub method: Option<&'a str>,
    /// `ok` or `error`.
    pub status: &'a str,
    /// The response status.
    pub http_status: Option<u16>,
    /// The provider of the turn it ran.
    pub provider: Option<&'a str>,
    /// `operator` or a user id.
    pub user_id: Option<&'a str>,
    /// RFC 3339.
    pub started_at: String,
    /// Duration.
    pub duration_ms: f64,
    /// Spans, the root included.
    pub span_count: usize,
}

impl<'a> From<&'a TraceRow> for TraceRowView<'a> {
    fn from(row: &'a TraceRow) -> Self {
        TraceRowView {
            trace_id: &row.trace_id,
            name: &row.name,
            route: row.route.as_deref(),
            method: row.method.as_deref(),
            status: &row.status,
            http_status: row.http_status,
            provider: row.provider.as_deref(),
            user_id: row.user_id.as_deref(),
            started_at: time(row.started_ms),
            duration_ms: row.duration_ms,
            span_count: row.span_count,
        }
    }
}

/// One span of a trace's timeline.
#[derive(Debug, Serialize)]
pub struct SpanView<'a> {
    /// 16 hex digits.
    pub span_id: &'a str,
    /// The parent span.
    pub parent_id: Option<&'a str>,
    /// What it measured.
    pub name: &'a str,
    /// RFC 3339.
    pub started_at: String,
    /// Start relative to the trace's start.
    pub offset_ms: f64,
    /// Duration.
    pub duration_ms: f64,
    /// `ok` or `error`.
    pub status: &'a str,
    /// Bounded attributes.
    pub attributes: &'a Map<String, Value>,
}

impl<'a> From<&'a SpanRow> for SpanView<'a> {
    fn from(span: &'a SpanRow) -> Self {
        SpanView {
            span_id: &span.span_id,
            parent_id: span.parent_id.as_deref(),
            name: &span.name,
            started_at: time(span.started_ms),
            offset_ms: span.offset_ms,
            duration_ms: span.duration_ms,
            status: &span.status,
            attributes: &span.attributes,
        }
    }
}

/// One log line.
#[derive(Debug, Serialize)]
pub struct LogLineView<'a> {
    /// RFC 3339, as logged.
    pub ts: &'a str,
    /// ERROR, WARN, INFO, DEBUG, TRACE.
    pub level: &'a str,
    /// The module that logged it.
    pub target: &'a str,
    /// The message.
    pub message: &'a str,
    /// The request it belongs to.
    pub request_id: Option<&'a str>,
    /// The trace it belongs to.
    pub trace_id: Option<&'a str>,
    /// The span that was current.
    pub span: Option<&'a str>,
    /// Key-values.
    pub fields: &'a Map<String, Value>,
}

impl<'a> From<&'a LogLine> for LogLineView<'a> {
    fn from(line: &'a LogLine) -> Self {
        LogLineView {
            ts: &line.ts,
            level: &line.level,
            target: &line.target,
            message: &line.message,
            request_id: line.request_id.as_deref(),
            trace_id: line.trace_id.as_deref(),
            span: line.span.as_deref(),
            fields: &line.fields,
        }
    }
}

/// One trace's timeline: its root, spans in order, and its log lines.
#[derive(Debug, Serialize)]
pub struct TraceDetailView<'a> {
    /// 32 hex digits.
    pub trace_id: &'a str,
    /// The root, as a list row.
    pub root: TraceRowView<'a>,
    /// Spans by start.
    pub spans: Vec<SpanView<'a>>,
    /// Log lines of the trace, oldest first.
    pub logs: Vec<LogLineView<'a>>,
}

impl<'a> From<&'a TraceDetail> for TraceDetailView<'a> {
    fn from(detail: &'a TraceDetail) -> Self {
        TraceDetailView {
            trace_id: &detail.root.trace_id,
            root: TraceRowView::from(&detail.root),
            spans: detail.spans.iter().map(SpanView::from).collect(),
            logs: detail.logs.iter().map(LogLineView::from).collect(),
        }
    }
}

/// A result of the combined search: a trace root (`ts` is when it ended) or a log line.
#[derive(Debug, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FoundView<'a> {
    /// A trace root.
    Trace {
        /// The row.
        #[serde(flatten)]
        row: TraceRowView<'a>,
        /// RFC 3339: when it ended.
        ts: String,
    },
    /// A log line.
    Log(LogLineView<'a>),
}

impl<'a> From<&'a Found> for FoundView<'a> {
    fn from(found: &'a Found) -> Self {
        match found {
            Found::Trace(row) => FoundView::Trace {
                row: TraceRowView::from(row),
                ts: time(row.end_ms),
            },
            Found::Log(line) => FoundView::Log(LogLineView::from(line)),
        }
    }
}
