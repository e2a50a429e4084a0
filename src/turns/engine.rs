//! The turn engine: one chat turn from a validated request to a stored, reported outcome.
//!
//! Steps: lock session and workspace → plan (resume with new messages, or fresh with the whole
//! transcript) → prepare the provider's isolated home → snapshot → run the CLI under the watchdog,
//! streaming text to the caller → snapshot → diff → persist turn and session in one transaction.
//! Must not parse HTTP or render JSON.

use super::prompt::{self, Message, Plan};
use crate::app::App;
use crate::error::{Error, Result};
use crate::providers::{self, runner, Action, RunSpec, TurnEvent, Usage};
use crate::store;
use std::path::PathBuf;
use std::time::Duration;

/// A validated turn request.
#[derive(Debug, Clone)]
pub struct TurnRequest {
    /// The owner (`operator` for operator credentials).
    pub user_id: String,
    /// codex | gemini | opencode.
    pub provider: &'static str,
    /// The model id.
    pub model: String,
    /// The conversation as the client sent it.
    pub messages: Vec<Message>,
    /// Workspace id (relative to the owner's tree, or to the workspaces root for operators).
    pub workspace_id: String,
    /// The absolute workspace directory.
    pub workspace: PathBuf,
    /// The client's conversation label; `None` makes the turn stateless.
    pub client_session_id: Option<String>,
}

/// How a turn ended.
#[derive(Debug)]
pub struct TurnOutcome {
    /// `trn_<12hex>`.
    pub turn_id: String,
    /// The session id (`None` for stateless turns).
    pub session_id: Option<String>,
    /// The assistant's text.
    pub reply: String,
    /// Token usage as reported.
    pub usage: Usage,
    /// Normalized actions.
    pub actions: Vec<Action>,
    /// Workspace-relative paths changed by this turn.
    pub modified_files: Vec<String>,
    /// Unified diff of this turn.
    pub diff: String,
    /// The turn ended abnormally after touching files.
    pub dirty: bool,
    /// Whether the CLI session was resumed.
    pub resumed: bool,
    /// The failure, when the turn did not succeed (the outcome is still stored).
    pub error: Option<Error>,
}

/// Receives streamed text as the CLI emits it.
pub trait Sink {
    /// Called with each piece of assistant text.
    fn text(&mut self, delta: &str);
}

impl<F: FnMut(&str)> Sink for F {
    fn text(&mut self, delta: &str) {
        self(delta)
    }
}

/// The session key `user::workspace::client_session_id`.
pub fn session_key(user_id: &str, workspace_id: &str, client_session_id: &str) -> String {
    format!("{user_id}::{workspace_id}::{client_session_id}")
}

/// Checks what can be checked before answering: the provider CLI exists.
pub fn preflight(app: &App, request: &TurnRequest) -> Result<PathBuf> {
    let config = provider_config(app, request.provider);
    providers::find_binary(&config.binary, &app.config.host.path).ok_or_else(|| {
        Error::Unavailable {
            code: "provider_unavailable",
            message: format!(
                "the {} CLI (`{}`) is not installed or not on PATH; see `codara doctor`",
                request.provider, config.binary
            ),
        }
    })
}

fn provider_config<'a>(app: &'a App, provider: &str) -> &'a crate::config::ProviderConfig {
    match provider {
        "codex" => &app.config.providers.codex,
        "gemini" => &app.config.providers.gemini,
        _ => &app.config.providers.opencode,
    }
}

/// Runs one turn. Lock conflicts and a missing CLI are errors; a failed run is an outcome with
/// `error` set (it is stored like any other turn).
pub fn run(app: &App, request: &TurnRequest, sink: &mut dyn Sink) -> Result<TurnOutcome> {
    let binary = preflight(app, request)?;
    let lock_timeout = Duration::from_secs(app.config.workspace.lock_timeout_seconds);
    let key = request
        .client_session_id
        .as_deref()
        .map(|label| session_key(&request.user_id, &request.workspace_id, label));
    let _session_guard = match &key {
        Some(key) => Some(app.turn_locks.acquire(&format!("session:{key}"), lock_timeout).ok_or_else(
            || Error::Conflict(format!(
                "another turn of this session is still running (waited {} s); retry when it finishes",
                lock_timeout.as_secs()
            )),
        )?),
        None => None,
    };
    let workspace_name = format!("workspace:{}", request.workspace.display());
    let _workspace_guard = app
        .turn_locks
        .acquire(&workspace_name, lock_timeout)
        .ok_or_else(|| {
            Error::Conflict(format!(
                "another turn is running in this workspace (waited {} s); retry when it finishes",
                lock_timeout.as_secs()
            ))
        })?;

    let stored = match &key {
        Some(key) => app
            .store
            .read(|conn| store::sessions::find_by_key(conn, key))?,
        None => None,
    };
    // A session moved to another provider cannot resume the old CLI session.
    let stored_for_plan = stored.as_ref().filter(|s| s.provider == request.provider);
    let plan = prompt::plan(
        &request.messages,
        stored_for_plan
            .map(|s| prompt::Stored {
                cli_session_id: s.cli_session_id.as_deref(),
                transcript_hash: &s.transcript_hash,
                request_hash: &s.request_hash,
                message_count: s.message_count.max(0) as usize,
            })
            .as_ref(),
    );

    let tracker = Tracker::new(app, request)?;
    let before = tracker.snapshot()?;

    let (mut attempt, mut resumed) = match &plan {
        Plan::Resume {
            cli_session_id,
            prompt,
            ..
        } => (Attempt::resume(cli_session_id, prompt), true),
        Plan::Fresh { prompt, .. } => (Attempt::fresh(prompt), false),
    };
    let mut account = choose_account(
        app,
        request,
        stored.as_ref().and_then(|s| s.account_id.as_deref()),
    )?;
    let mut result = execute(app, request, &binary, &attempt, account.as_ref(), sink)?;
    if resumed && result.looks_like_missing_session() {
        let after_failed = tracker.snapshot()?;
        if after_failed.id == before.id {
            log::warn!(
                "resuming {} session {} failed ({}); starting a fresh session with the transcript",
                request.provider,
                attempt.resume.as_deref().unwrap_or(""),
                result.error_message()
            );
            attempt = Attempt::fresh(&prompt::flatten(&request.messages));
            resumed = false;
            result = execute(app, request, &binary, &attempt, account.as_ref(), sink)?;
        }
    }
    if let Some(used) = account.clone() {
        if !result.failed() {
            crate::accounts::record_success(&app.store, &used.id)?;
            let home =
                crate::accounts::home(&app.config.storage.data_dir, request.provider, &used.id);
            crate::accounts::sync_back(&app.store, &app.vault, &used, &home)?;
        } else {
            let message = format!("{}\n{}", result.error_message(), result.outcome.stderr_tail);
            let account_level = crate::accounts::record_failure(&app.store, &used.id, &message)?;
            // Retry once on another account, only if nothing in the workspace changed.
            if account_level && !result.outcome.stalled && tracker.snapshot()?.id == before.id {
                if let Some(next) = choose_account(app, request, Some(&used.id))
                    .ok()
                    .flatten()
                    .filter(|n| n.id != used.id)
                {
                    log::warn!(
                        "account {} failed at the account level; retrying on {}",
                        used.id,
                        next.id
                    );
                    result = execute(app, request, &binary, &attempt, Some(&next), sink)?;
                    if result.failed() {
                        let message =
                            format!("{}\n{}", result.error_message(), result.outcome.stderr_tail);
                        crate::accounts::record_failure(&app.store, &next.id, &message)?;
                    } else {
                        crate::accounts::record_success(&app.store, &next.id)?;
                        let home = crate::accounts::home(
                            &app.config.storage.data_dir,
                            request.provider,
                            &next.id,
                        );
                        crate::accounts::sync_back(&app.store, &app.vault, &next, &home)?;
                    }
                    account = Some(next);
                }
            }
        }
    }

    let after = tracker.snapshot()?;
    let (changes, diff) = tracker.diff(&before, &after)?;
    let modified_files: Vec<String> = changes.iter().map(|c| c.path.clone()).collect();
    let error = result.error(request.provider);
    let dirty = error.is_some() && !modified_files.is_empty();
    let now = crate::clock::now_ms();
    let turn_id = crate::crypto::random_id("trn_");
    let cli_session_id = result.session_id.clone().or_else(|| attempt.resume.clone());

    let session_id = store_outcome(
        app,
        StoreInput {
            request,
            key: key.as_deref(),
            stored: stored.as_ref(),
            turn_id: &turn_id,
            prompt: &attempt.prompt,
            resumed,
            result: &result,
            cli_session_id: cli_session_id.as_deref(),
            modified_files: &modified_files,
            dirty,
            error: error.as_ref(),
            before_tree: &before.id,
            after_tree: &after.id,
            account_id: account.as_ref().map(|a| a.id.as_str()),
            now,
        },
    )?;

    Ok(TurnOutcome {
        turn_id,
        session_id,
        reply: result.reply,
        usage: result.usage,
        actions: result.actions,
        modified_files,
        diff,
        dirty,
        resumed,
        error,
    })
}

/// Picks the pool account for a codex turn (none when the pool is empty: the provider's default
/// home is used). Moves the session's CLI state when the sticky account is not the one chosen.
fn choose_account(
    app: &App,
    request: &TurnRequest,
    sticky: Option<&str>,
) -> Result<Option<crate::store::accounts::Account>> {
    if request.provider != "codex" {
        return Ok(None);
    }
    let accounts = app
        .store
        .read(|conn| store::accounts::list(conn, Some("codex")))?;
    if accounts.is_empty() {
        return Ok(None);
    }
    let now = crate::clock::now_ms();
    let snapshots: Vec<_> = accounts.iter().map(crate::accounts::snapshot).collect();
    let threshold = app.config.accounts.headroom_threshold_percent;
    match crate::pool::select::select(&snapshots, sticky, threshold, now) {
        crate::pool::select::Selection::Chosen {
            id,
            reason,
            migrate_from,
        } => {
            let account = accounts
                .into_iter()
                .find(|a| a.id == id)
                .ok_or_else(|| Error::Internal("selected a missing account".into()))?;
            let data_dir = &app.config.storage.data_dir;
            if let Some(from) = &migrate_from {
                crate::accounts::migrate_session_state(
                    &crate::accounts::home(data_dir, "codex", from),
                    &crate::accounts::home(data_dir, "codex", &id),
                )?;
            }
            app.store.write(|tx| {
                crate::audit::record(tx, crate::audit::Record {
                    actor: &crate::audit::Actor::System,
                    action: "account.selected",
                    target_type: "account",
                    target_id: &id,
                    before: None,
                    after: Some(serde_json::json!({"reason": reason.as_str(), "migrated_from": migrate_from, "user_id": request.user_id})),
                    request_id: None,
                })
            })?;
            Ok(Some(account))
        }
        crate::pool::select::Selection::NoneReady { next_ready_at_ms } => Err(Error::Unavailable {
            code: "no_account_ready",
            message: match next_ready_at_ms {
                Some(at) => format!(
                    "no codex account is ready; the next one frees up at {}",
                    crate::clock::rfc3339(at)
                ),
                None => "no codex account is usable (all disabled or need re-authentication)"
                    .to_string(),
            },
        }),
    }
}

/// A provider's explanation of a CLI exit code.
type ExplainExit = fn(Option<i32>) -> Option<&'static str>;

struct Attempt {
    prompt: String,
    resume: Option<String>,
}

impl Attempt {
    fn fresh(prompt: &str) -> Attempt {
        Attempt {
            prompt: prompt.to_string(),
            resume: None,
        }
    }

    fn resume(cli_session_id: &str, prompt: &str) -> Attempt {
        Attempt {
            prompt: prompt.to_string(),
            resume: Some(cli_session_id.to_string()),
        }
    }
}

/// What one CLI run produced, folded from its events.
struct RunResult {
    session_id: Option<String>,
    reply: String,
    usage: Usage,
    actions: Vec<Action>,
    last_error: Option<String>,
    warnings: Vec<String>,
    completed: bool,
    outcome: runner::RunOutcome,
    stall_timeout: u64,
    turn_timeout: u64,
    explain_exit: Option<ExplainExit>,
}

impl RunResult {
    fn failed(&self) -> bool {
        self.last_error.is_some()
            || self.outcome.stalled
            || self.outcome.timed_out
            || self.outcome.exit_code != Some(0)
    }

    fn error_message(&self) -> String {
        if let Some(message) = &self.last_error {
            return message.clone();
        }
        // Without an error event, the last warning is usually the real cause (codex stream errors).
        if let (Some(warning), true) = (self.warnings.last(), self.outcome.exit_code != Some(0)) {
            return warning.clone();
        }
        if let Some(explained) = self.explain_exit.and_then(|f| f(self.outcome.exit_code)) {
            return format!(
                "{explained} (exit code {})",
                self.outcome.exit_code.unwrap_or_default()
            );
        }
        let tail = self.outcome.stderr_tail.trim();
        let last_lines: Vec<&str> = tail.lines().rev().take(5).collect();
        let tail: String = last_lines.into_iter().rev().collect::<Vec<_>>().join("\n");
        match (self.outcome.exit_code, self.outcome.signal) {
            (Some(code), _) if tail.is_empty() => format!("the CLI exited with code {code}"),
            (Some(code), _) => format!("the CLI exited with code {code}: {tail}"),
            (None, Some(signal)) => format!("the CLI was killed by signal {signal}"),
            (None, None) => "the CLI ended without a status".to_string(),
        }
    }

    fn looks_like_missing_session(&self) -> bool {
        if !self.failed()
            || !self.reply.is_empty()
            || !self.actions.is_empty()
            || self.outcome.stalled
        {
            return false;
        }
        let text = format!("{} {}", self.error_message(), self.outcome.stderr_tail).to_lowercase();
        [
            "no previous session",
            "not found",
            "no rollout",
            "no session",
            "does not exist",
            "unknown session",
        ]
        .iter()
        .any(|needle| text.contains(needle))
    }

    fn error(&self, provider: &str) -> Option<Error> {
        if self.outcome.stalled {
            return Some(Error::GatewayTimeout {
                code: "cli_stalled",
                message: format!(
                    "the {provider} CLI produced no output for {} s and was stopped",
                    self.stall_timeout
                ),
            });
        }
        if self.outcome.timed_out {
            return Some(Error::GatewayTimeout {
                code: "turn_timeout",
                message: format!(
                    "the {provider} turn exceeded {} s and was stopped",
                    self.turn_timeout
                ),
            });
        }
        self.failed()
            .then(|| Error::BadGateway(format!("{provider}: {}", self.error_message())))
    }
}

fn execute(
    app: &App,
    request: &TurnRequest,
    binary: &std::path::Path,
    attempt: &Attempt,
    account: Option<&crate::store::accounts::Account>,
    sink: &mut dyn Sink,
) -> Result<RunResult> {
    let config = provider_config(app, request.provider);
    let data_dir = &app.config.storage.data_dir;
    let home = match account {
        Some(account) => crate::accounts::home(data_dir, request.provider, &account.id),
        None => data_dir
            .join("homes")
            .join(request.provider)
            .join("default"),
    };
    // Clock times in CLI messages ("try again at 3:45 PM") are read as UTC by the pool.
    let mut extra_env = vec![("TZ".to_string(), "UTC".to_string())];
    if let Some(account) = account {
        crate::datadir::ensure_private_dir(&home)?;
        extra_env.extend(crate::accounts::materialize(&app.vault, account, &home)?);
    }
    extra_env.extend(config.env.iter().map(|(k, v)| (k.clone(), v.clone())));
    let spec = RunSpec {
        binary: binary.to_path_buf(),
        model: request.model.clone(),
        prompt: attempt.prompt.clone(),
        resume: attempt.resume.clone(),
        workspace: request.workspace.clone(),
        home: home.clone(),
        extra_args: config.extra_args.clone(),
        extra_env,
        sandbox: config.sandbox,
        path_env: app.config.host.path.clone(),
    };
    type Parse = fn(&str) -> Vec<TurnEvent>;
    let (command, parse, explain): (providers::CommandSpec, Parse, ExplainExit) =
        match request.provider {
            "codex" => {
                providers::codex::prepare_home(&home).map_err(|e| Error::io(&home, e))?;
                (
                    providers::codex::command(&spec),
                    providers::codex::parse_line,
                    providers::codex::exit_error,
                )
            }
            "gemini" => {
                providers::gemini::prepare_home(&home).map_err(|e| Error::io(&home, e))?;
                (
                    providers::gemini::command(&spec),
                    providers::gemini::parse_line,
                    providers::gemini::exit_error,
                )
            }
            _ => {
                providers::opencode::prepare_home(&home).map_err(|e| Error::io(&home, e))?;
                (
                    providers::opencode::command(&spec),
                    providers::opencode::parse_line,
                    providers::opencode::exit_error,
                )
            }
        };
    let seconds = |s: u64| (s > 0).then(|| Duration::from_secs(s));
    let limits = runner::Limits {
        stall: seconds(config.stall_timeout()),
        turn: seconds(config.turn_timeout()),
    };
    let mut result = RunResult {
        session_id: None,
        reply: String::new(),
        usage: Usage::default(),
        actions: Vec::new(),
        last_error: None,
        warnings: Vec::new(),
        completed: false,
        outcome: runner::RunOutcome {
            exit_code: None,
            signal: None,
            stalled: false,
            timed_out: false,
            stderr_tail: String::new(),
            duration: Duration::ZERO,
        },
        stall_timeout: config.stall_timeout(),
        turn_timeout: config.turn_timeout(),
        explain_exit: Some(explain),
    };
    let outcome = runner::run(&command, limits, &mut |line| {
        for event in parse(line) {
            match event {
                TurnEvent::SessionId(id) => {
                    if result.session_id.is_none() {
                        result.session_id = Some(id);
                    }
                }
                TurnEvent::Text(text) => {
                    result.reply.push_str(&text);
                    sink.text(&text);
                }
                TurnEvent::Action(action) => result.actions.push(action),
                TurnEvent::Usage(usage) => {
                    result.usage.prompt_tokens += usage.prompt_tokens;
                    result.usage.completion_tokens += usage.completion_tokens;
                    result.usage.cached_tokens += usage.cached_tokens;
                }
                TurnEvent::Warning(message) => result.warnings.push(message),
                TurnEvent::Error(message) => result.last_error = Some(message),
                TurnEvent::Completed => result.completed = true,
            }
        }
    })?;
    result.outcome = outcome;
    log::info!(
        "{} turn ran {:.1}s exit={:?} stalled={} events: {} chars, {} actions",
        request.provider,
        result.outcome.duration.as_secs_f64(),
        result.outcome.exit_code,
        result.outcome.stalled,
        result.reply.len(),
        result.actions.len()
    );
    Ok(result)
}

/// Records workspace states: git trees with a private index, or file manifests without git.
struct Tracker<'a> {
    dir: &'a std::path::Path,
    host: &'a crate::config::HostEnv,
    /// The private index file; `None` when git is not available (manifest fallback).
    index: Option<PathBuf>,
}

/// One recorded workspace state.
struct State {
    /// A git tree id, or a `manifest:` id.
    id: String,
    snapshot: Option<crate::workspace::Snapshot>,
    manifest: Option<crate::workspace::Manifest>,
}

impl<'a> Tracker<'a> {
    fn new(app: &'a App, request: &'a TurnRequest) -> Result<Tracker<'a>> {
        static GIT: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        let host = &app.config.host;
        let dir = request.workspace.as_path();
        if !*GIT.get_or_init(|| crate::workspace::git_available(host)) {
            return Ok(Tracker {
                dir,
                host,
                index: None,
            });
        }
        crate::workspace::ensure_repo(dir, host)?;
        let snapshots = app.config.storage.data_dir.join("snapshots");
        crate::datadir::ensure_private_dir(&snapshots)?;
        let name = crate::crypto::sha256_hex(dir.to_string_lossy().as_bytes());
        Ok(Tracker {
            dir,
            host,
            index: Some(snapshots.join(format!("{}.index", &name[..16]))),
        })
    }

    fn snapshot(&self) -> Result<State> {
        match &self.index {
            Some(index) => {
                let snapshot = crate::workspace::snapshot(self.dir, self.host, index)?;
                Ok(State {
                    id: snapshot.tree.clone(),
                    snapshot: Some(snapshot),
                    manifest: None,
                })
            }
            None => {
                let manifest = crate::workspace::manifest(self.dir)?;
                Ok(State {
                    id: manifest.id(),
                    snapshot: None,
                    manifest: Some(manifest),
                })
            }
        }
    }

    fn diff(
        &self,
        before: &State,
        after: &State,
    ) -> Result<(Vec<crate::workspace::Change>, String)> {
        match (
            &before.snapshot,
            &after.snapshot,
            &before.manifest,
            &after.manifest,
        ) {
            (Some(a), Some(b), _, _) => crate::workspace::diff(self.dir, self.host, a, b),
            (_, _, Some(a), Some(b)) => {
                Ok((crate::workspace::manifest_changes(a, b), String::new()))
            }
            _ => Err(Error::Internal(
                "workspace states of different kinds".to_string(),
            )),
        }
    }
}

struct StoreInput<'a> {
    request: &'a TurnRequest,
    key: Option<&'a str>,
    stored: Option<&'a store::sessions::Session>,
    turn_id: &'a str,
    prompt: &'a str,
    resumed: bool,
    result: &'a RunResult,
    cli_session_id: Option<&'a str>,
    modified_files: &'a [String],
    dirty: bool,
    error: Option<&'a Error>,
    before_tree: &'a str,
    after_tree: &'a str,
    account_id: Option<&'a str>,
    now: i64,
}

/// Writes the turn and the session in one transaction; returns the session id.
fn store_outcome(app: &App, input: StoreInput<'_>) -> Result<Option<String>> {
    let request = input.request;
    let request_json = serde_json::to_string(
        &request
            .messages
            .iter()
            .map(|m| serde_json::json!({"role": m.role, "content": m.text}))
            .collect::<Vec<_>>(),
    )
    .unwrap_or_default();
    let actions_json =
        serde_json::to_string(&actions_to_json(&input.result.actions)).unwrap_or_default();
    let files_json = serde_json::to_string(input.modified_files).unwrap_or_default();
    app.store.write(|tx| {
        let session = match input.key {
            Some(key) => {
                let mut session =
                    input
                        .stored
                        .cloned()
                        .unwrap_or_else(|| store::sessions::Session {
                            id: crate::crypto::random_id("ses_"),
                            session_key: key.to_string(),
                            user_id: request.user_id.clone(),
                            workspace_id: request.workspace_id.clone(),
                            workspace_path: request.workspace.display().to_string(),
                            client_session_id: request
                                .client_session_id
                                .clone()
                                .unwrap_or_default(),
                            provider: request.provider.to_string(),
                            model: request.model.clone(),
                            cli_session_id: None,
                            account_id: None,
                            transcript_hash: String::new(),
                            request_hash: String::new(),
                            message_count: 0,
                            turn_count: 0,
                            dirty: false,
                            created_at: input.now,
                            updated_at: input.now,
                        });
                session.provider = request.provider.to_string();
                session.model = request.model.clone();
                session.turn_count += 1;
                session.updated_at = input.now;
                session.dirty = input.dirty;
                if input.error.is_none() {
                    let mut transcript = request.messages.clone();
                    transcript.push(Message::new("assistant", &input.result.reply));
                    session.request_hash = prompt::transcript_hash(&request.messages);
                    session.transcript_hash = prompt::transcript_hash(&transcript);
                    session.message_count = transcript.len() as i64;
                    session.cli_session_id = input.cli_session_id.map(str::to_string);
                    session.account_id = input.account_id.map(str::to_string);
                }
                store::sessions::upsert(tx, &session)?;
                Some(session)
            }
            None => None,
        };
        if request.user_id.starts_with("uag_usr_") {
            store::usage::add(
                tx,
                &request.user_id,
                &store::usage::UsageRow {
                    day: crate::clock::ymd(input.now),
                    provider: request.provider.to_string(),
                    prompt_tokens: input.result.usage.prompt_tokens as i64,
                    completion_tokens: input.result.usage.completion_tokens as i64,
                    cached_tokens: input.result.usage.cached_tokens as i64,
                    requests: 1,
                },
            )?;
        }
        let error_text = input.error.map(|e| e.to_string());
        let status = match input.error {
            None => "ok",
            Some(Error::GatewayTimeout {
                code: "cli_stalled",
                ..
            }) => "stalled",
            Some(Error::GatewayTimeout { .. }) => "timeout",
            Some(_) => "error",
        };
        store::turns::insert(
            tx,
            &store::turns::Turn {
                id: input.turn_id.to_string(),
                session_id: session.as_ref().map(|s| s.id.clone()),
                turn_index: session.as_ref().map(|s| s.turn_count).unwrap_or(1),
                provider: request.provider.to_string(),
                model: request.model.clone(),
                cli_session_id: input.cli_session_id.map(str::to_string),
                resumed: input.resumed,
                request_messages: request_json.clone(),
                prompt: input.prompt.to_string(),
                reply: input.result.reply.clone(),
                actions: actions_json.clone(),
                modified_files: files_json.clone(),
                prompt_tokens: input.result.usage.prompt_tokens as i64,
                completion_tokens: input.result.usage.completion_tokens as i64,
                cached_tokens: input.result.usage.cached_tokens as i64,
                duration_ms: input.result.outcome.duration.as_millis() as i64,
                exit_code: input.result.outcome.exit_code.map(i64::from),
                status: status.to_string(),
                error: error_text,
                dirty: input.dirty,
                account_id: input.account_id.map(str::to_string),
                workspace_path: request.workspace.display().to_string(),
                before_tree: Some(input.before_tree.to_string()),
                after_tree: Some(input.after_tree.to_string()),
                created_at: input.now,
            },
        )?;
        Ok(session.map(|s| s.id))
    })
}

/// Actions as plain JSON values (the wire form lives with the data so turns store it verbatim).
pub fn actions_to_json(actions: &[Action]) -> Vec<serde_json::Value> {
    actions
        .iter()
        .map(|action| match action {
            Action::FileChange { path, kind } => serde_json::json!({"type": "file_change", "path": path, "kind": kind}),
            Action::Command { command, exit_code, ok } => {
                serde_json::json!({"type": "command", "command": command, "exit_code": exit_code, "ok": ok})
            }
            Action::Tool { name, ok } => serde_json::json!({"type": "tool", "name": name, "ok": ok}),
        })
        .collect()
}
