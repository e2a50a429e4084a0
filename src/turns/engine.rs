//! The turn engine: one chat turn from a validated request to a stored, reported outcome.
//!
//! Steps: lock session and workspace → plan (resume with new messages, or fresh with the whole
//! transcript) → save the images of the messages sent this turn into the workspace → snapshot
//! (so the attachments are not the turn's changes) → journal the turn → prepare the user's CLI
//! home, a private temp dir and the pooled credential → run the CLI confined and under the
//! watchdog, streaming text to the caller → seal back and remove the credential → snapshot →
//! diff → persist turn and session (and drop the journal entry) in one transaction. A JSON
//! `response_format` is enforced by codex (`--output-schema`) for strict-mode schemas, otherwise
//! instructed in the prompt; either way the reply is checked after the run and streamed whole
//! once it passes (a reply that fails is a 502). A turn the gateway died in is found in the
//! journal at the next start and stored as interrupted, with its changes
//! ([`recover_interrupted`]). Must not parse HTTP or render JSON.

use super::output;
use super::prompt::{self, Message, Plan};
use crate::app::App;
use crate::error::{Error, Result};
use crate::process;
use crate::providers::{self, Action, RunSpec, TurnEvent, Usage};
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
    /// The caller used a user API key (not the operator): such turns are refused when the
    /// sandbox cannot confine them.
    pub via_user_key: bool,
    /// The shape the reply must have (`response_format`).
    pub output: OutputFormat,
}

/// The shape a reply must have: free text, or JSON (`response_format`).
#[derive(Debug, Clone, Default, PartialEq)]
pub enum OutputFormat {
    /// Free text.
    #[default]
    Text,
    /// Any JSON object.
    JsonObject,
    /// A JSON value matching `schema`.
    JsonSchema {
        /// The schema's name, as the client gave it.
        name: String,
        /// The JSON Schema.
        schema: serde_json::Value,
    },
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

/// 503 for a turn from a user key when the sandbox cannot confine it (`auto` on a kernel without
/// Landlock); checked at admission, before the body is read, and again in [`preflight`].
pub fn refuse_unconfined(app: &App, via_user_key: bool) -> Result<()> {
    if via_user_key && app.sandbox.refuses_users() {
        return Err(Error::Unavailable {
            code: "sandbox_unavailable",
            message: "agent turns from user keys are refused: this kernel has no Landlock \
                      (Linux >= 5.13 with landlock enabled), so the agent could read the whole \
                      host; the operator can set [sandbox].mode = \"off\" to accept that risk"
                .to_string(),
        });
    }
    Ok(())
}

/// Checks what can be checked before answering: the run can be confined (or need not be) and
/// the provider CLI exists.
pub fn preflight(app: &App, request: &TurnRequest) -> Result<PathBuf> {
    refuse_unconfined(app, request.via_user_key)?;
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
    // The images of the messages sent this turn, saved before the first snapshot so that they
    // are not reported as changes the turn made.
    let new_from = match &plan {
        Plan::Resume { new_from, .. } => *new_from,
        Plan::Fresh { .. } => 0,
    };
    let images: Vec<&prompt::Image> = request.messages[new_from..]
        .iter()
        .flat_map(|m| m.images.iter())
        .collect();
    let attachments = crate::images::save(&request.workspace, &images)?;
    let before = tracker.snapshot()?;

    // Without `--output-schema`, the format is asked for in this turn's prompt.
    let instruction = match codex_output_schema(request) {
        Some(_) => None,
        None => output::instruction(&request.output),
    };
    let instructed = |prompt: &str| match &instruction {
        Some(instruction) => format!("{instruction}\n\n{prompt}"),
        None => prompt.to_string(),
    };
    let (mut attempt, mut resumed) = match &plan {
        Plan::Resume {
            cli_session_id,
            prompt,
            ..
        } => (
            Attempt::resume(cli_session_id, &instructed(prompt), &attachments),
            true,
        ),
        Plan::Fresh { prompt, .. } => (Attempt::fresh(&instructed(prompt), &attachments), false),
    };
    // A JSON reply is checked before anyone sees it: it is streamed whole after the check.
    let mut quiet = |_: &str| {};
    let live: &mut dyn Sink = if request.output == OutputFormat::Text {
        &mut *sink
    } else {
        &mut quiet
    };
    let mut account = choose_account(
        app,
        request,
        stored.as_ref().and_then(|s| s.account_id.as_deref()),
    )?;
    let turn_id = crate::crypto::random_id("trn_");
    let request_json = messages_json(&request.messages);
    app.store.write(|tx| {
        store::turn_journal::insert(
            tx,
            &store::turn_journal::Entry {
                turn_id: turn_id.clone(),
                user_id: request.user_id.clone(),
                session_key: key.clone(),
                client_session_id: request.client_session_id.clone(),
                provider: request.provider.to_string(),
                model: request.model.clone(),
                workspace_id: request.workspace_id.clone(),
                workspace_path: request.workspace.display().to_string(),
                request_messages: request_json.clone(),
                prompt: attempt.prompt.clone(),
                before_tree: before.id.clone(),
                account_id: account.as_ref().map(|a| a.id.clone()),
                started_at: crate::clock::now_ms(),
            },
        )
    })?;

    // From here on the CLI may change the workspace: every failure is stored as the turn's
    // outcome (or recovered from the journal), never returned early.
    let mut result = execute(app, request, &binary, &attempt, account.as_ref(), live);
    let unchanged = |tracker: &Tracker<'_>| tracker.snapshot().is_ok_and(|now| now.id == before.id);
    if resumed && result.looks_like_missing_session() && unchanged(&tracker) {
        log::warn!(
            "resuming {} session {} failed ({}); starting a fresh session with the transcript",
            request.provider,
            attempt.resume.as_deref().unwrap_or(""),
            result.error_message()
        );
        // Only this turn's images were saved before the snapshot; earlier ones are not re-sent.
        attempt = Attempt::fresh(
            &instructed(&prompt::flatten(&request.messages)),
            &attachments,
        );
        resumed = false;
        result = execute(app, request, &binary, &attempt, account.as_ref(), live);
    }
    if let Some(used) = account.clone() {
        let account_level = record_health(app, &used, &result);
        // Retry once on another account, only if nothing in the workspace changed.
        if result.failed() && account_level && !result.outcome.stalled && unchanged(&tracker) {
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
                result = execute(app, request, &binary, &attempt, Some(&next), live);
                record_health(app, &next, &result);
                account = Some(next);
            }
        }
    }

    if request.output != OutputFormat::Text && !result.failed() {
        // The whole reply, else the answer after the last tool call (an agent may narrate its
        // work before answering).
        let checked = output::check(&result.reply, &request.output)
            .or_else(|error| output::check(&result.final_text, &request.output).map_err(|_| error));
        match checked {
            Ok(reply) => {
                sink.text(&reply);
                result.reply = reply;
            }
            Err(why) => result.last_error = Some(why),
        }
    }

    let (after, changes, diff, unknown) = match tracker
        .snapshot()
        .and_then(|after| tracker.diff(&before, &after).map(|(c, d)| (after, c, d)))
    {
        Ok((after, changes, diff)) => (after, changes, diff, false),
        Err(error) => {
            // The turn is still stored; without an after-state its changes are unknown.
            log::error!("recording the workspace after the turn failed: {error}");
            if result.failure.is_none() {
                result.failure = Some(format!("recording the workspace changes failed: {error}"));
            }
            (
                State {
                    id: before.id.clone(),
                    snapshot: None,
                    manifest: None,
                },
                Vec::new(),
                String::new(),
                true,
            )
        }
    };
    let modified_files: Vec<String> = changes.iter().map(|c| c.path.clone()).collect();
    let error = result.error(request.provider);
    let dirty = error.is_some() && (unknown || !modified_files.is_empty());
    let now = crate::clock::now_ms();
    let cli_session_id = result.session_id.clone().or_else(|| attempt.resume.clone());

    let session_id = store_outcome(
        app,
        StoreInput {
            request,
            key: key.as_deref(),
            stored: stored.as_ref(),
            turn_id: &turn_id,
            request_json: &request_json,
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

/// Records a run's effect on its account (cooldown, needs-reauth, or a success); returns whether
/// the failure was the account's (so another account may help). Bookkeeping errors are logged:
/// they must not cost the turn its record.
fn record_health(app: &App, account: &crate::store::accounts::Account, result: &RunResult) -> bool {
    let recorded = if result.failed() {
        let message = format!("{}\n{}", result.error_message(), result.outcome.stderr_tail);
        crate::accounts::record_failure(&app.store, &account.id, &message)
    } else {
        crate::accounts::record_success(&app.store, &account.id).map(|_| false)
    };
    recorded.unwrap_or_else(|error| {
        log::error!("recording the health of account {}: {error}", account.id);
        false
    })
}

/// The request's messages as stored JSON.
fn messages_json(messages: &[Message]) -> String {
    serde_json::to_string(
        &messages
            .iter()
            .map(|m| serde_json::json!({"role": m.role, "content": m.text}))
            .collect::<Vec<_>>(),
    )
    .unwrap_or_default()
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
                let user = request.user_id.as_str();
                crate::accounts::migrate_session_state(
                    &crate::accounts::home(data_dir, "codex", Some(from), user),
                    &crate::accounts::home(data_dir, "codex", Some(&id), user),
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
        crate::pool::select::Selection::NoneReady { next_ready_at_ms } => {
            let now = crate::clock::now_ms();
            Err(Error::NoAccountReady {
                message: match next_ready_at_ms {
                    Some(at) => format!(
                        "no codex account is ready; the next one frees up at {}",
                        crate::clock::rfc3339(at)
                    ),
                    None => "no codex account is usable (all disabled or need re-authentication)"
                        .to_string(),
                },
                // Rounded up, at least 1 s; none when no account will free up by itself.
                retry_after_secs: next_ready_at_ms
                    .map(|at| ((at - now).max(0) as u64).div_ceil(1000).max(1)),
            })
        }
    }
}

/// A provider's explanation of a CLI exit code.
type ExplainExit = fn(Option<i32>) -> Option<&'static str>;

struct Attempt {
    prompt: String,
    resume: Option<String>,
    /// Workspace-relative paths of the images attached to the prompt.
    images: Vec<PathBuf>,
}

impl Attempt {
    fn fresh(prompt: &str, images: &[PathBuf]) -> Attempt {
        Attempt {
            prompt: prompt.to_string(),
            resume: None,
            images: images.to_vec(),
        }
    }

    fn resume(cli_session_id: &str, prompt: &str, images: &[PathBuf]) -> Attempt {
        Attempt {
            prompt: prompt.to_string(),
            resume: Some(cli_session_id.to_string()),
            images: images.to_vec(),
        }
    }
}

/// The schema codex enforces itself (`--output-schema`): a `json_schema` in OpenAI's strict
/// form. Everything else (free text, `json_object`, other schemas, other CLIs) is `None`.
fn codex_output_schema(request: &TurnRequest) -> Option<&serde_json::Value> {
    match &request.output {
        OutputFormat::JsonSchema { schema, .. }
            if request.provider == "codex" && output::codex_enforces(schema) =>
        {
            Some(schema)
        }
        _ => None,
    }
}

/// What one CLI run produced, folded from its events.
#[derive(Default)]
struct RunResult {
    session_id: Option<String>,
    reply: String,
    /// The text since the last action: the answer after the agent's tool work, without the
    /// narration before it (what a JSON `response_format` is checked against when the whole
    /// reply does not parse).
    final_text: String,
    usage: Usage,
    actions: Vec<Action>,
    last_error: Option<String>,
    warnings: Vec<String>,
    completed: bool,
    outcome: process::RunOutcome,
    stall_timeout: u64,
    turn_timeout: u64,
    explain_exit: Option<ExplainExit>,
    /// The gateway could not run the CLI (or record its effects): home, credential, spawn.
    failure: Option<String>,
}

impl RunResult {
    fn failed(&self) -> bool {
        self.failure.is_some()
            || self.last_error.is_some()
            || self.outcome.stalled
            || self.outcome.timed_out
            || self.outcome.exit_code != Some(0)
    }

    fn error_message(&self) -> String {
        if let Some(message) = self.failure.as_ref().or(self.last_error.as_ref()) {
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
        if let Some(failure) = &self.failure {
            return Some(Error::Internal(format!("{provider}: {failure}")));
        }
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

/// One CLI run: the user's home for this provider (and account), a private temp dir, the pooled
/// credential for the length of the run, the Landlock confinement; then the watched run with
/// each event folded into the result and text streamed to `sink`. Whatever happens, the
/// credential is sealed back (if the CLI refreshed it) and removed, and the temp dir deleted.
fn execute(
    app: &App,
    request: &TurnRequest,
    binary: &std::path::Path,
    attempt: &Attempt,
    account: Option<&crate::store::accounts::Account>,
    sink: &mut dyn Sink,
) -> RunResult {
    let config = provider_config(app, request.provider);
    let mut result = RunResult {
        stall_timeout: config.stall_timeout(),
        turn_timeout: config.turn_timeout(),
        ..RunResult::default()
    };
    let data_dir = &app.config.storage.data_dir;
    let home = crate::accounts::home(
        data_dir,
        request.provider,
        account.map(|a| a.id.as_str()),
        &request.user_id,
    );
    let outcome = (|| -> Result<process::RunOutcome> {
        let tmp = RunDir::create(data_dir)?;
        let command = command_for(
            app,
            request,
            binary,
            attempt,
            account,
            &home,
            &tmp.path,
            &mut result,
        )?;
        let seconds = |s: u64| (s > 0).then(|| Duration::from_secs(s));
        let limits = process::Limits {
            stall: seconds(config.stall_timeout()),
            turn: seconds(config.turn_timeout()),
        };
        let parse = parser(request.provider);
        let outcome = process::run(&command, limits, &mut |line| {
            for event in parse(line) {
                fold(&mut result, event, sink);
            }
        });
        for action in &mut result.actions {
            if let Action::FileChange { path, .. } = action {
                *path = display_path(path, &request.workspace, &home, &tmp.path);
            }
        }
        outcome
    })();
    if let Some(account) = account {
        if let Err(error) = crate::accounts::sync_back(&app.store, &app.vault, account, &home) {
            log::error!(
                "sealing back the credential of account {}: {error}",
                account.id
            );
        }
        if let Err(error) = crate::accounts::scrub(&home) {
            log::error!(
                "removing the credential of account {} from {}: {error}",
                account.id,
                home.display()
            );
        }
    }
    match outcome {
        Ok(outcome) => result.outcome = outcome,
        Err(error) => {
            log::error!("{} turn could not run: {error}", request.provider);
            result.failure = Some(format!("the CLI could not be run: {error}"));
        }
    }
    log::info!(
        "{} turn ran {:.1}s exit={:?} stalled={} events: {} chars, {} actions",
        request.provider,
        result.outcome.duration.as_secs_f64(),
        result.outcome.exit_code,
        result.outcome.stalled,
        result.reply.len(),
        result.actions.len()
    );
    for warning in &result.warnings {
        log::info!("{} warned: {warning}", request.provider);
    }
    result
}

/// Builds the confined command of one attempt (preparing the home and the credential).
#[allow(clippy::too_many_arguments)] // The parts of one attempt; only `execute` calls this.
fn command_for(
    app: &App,
    request: &TurnRequest,
    binary: &std::path::Path,
    attempt: &Attempt,
    account: Option<&crate::store::accounts::Account>,
    home: &std::path::Path,
    tmp: &std::path::Path,
    result: &mut RunResult,
) -> Result<providers::CommandSpec> {
    let config = provider_config(app, request.provider);
    crate::datadir::ensure_private_dir(home)?;
    let prepared = match request.provider {
        "codex" => providers::codex::prepare_home(home),
        "gemini" => providers::gemini::prepare_home(home),
        _ => providers::opencode::prepare_home(home),
    };
    prepared.map_err(|e| Error::io(home, e))?;
    let tmp_text = tmp.display().to_string();
    // Clock times in CLI messages ("try again at 3:45 PM") are read as UTC by the pool.
    let mut extra_env = vec![
        ("TZ".to_string(), "UTC".to_string()),
        ("TMPDIR".to_string(), tmp_text.clone()),
        ("TMP".to_string(), tmp_text.clone()),
        ("TEMP".to_string(), tmp_text),
    ];
    if let Some(account) = account {
        extra_env.extend(crate::accounts::materialize(&app.vault, account, home)?);
    }
    extra_env.extend(config.env.iter().map(|(k, v)| (k.clone(), v.clone())));
    let output_schema = match codex_output_schema(request) {
        Some(schema) => {
            let path = tmp.join("output-schema.json");
            crate::datadir::write_new_private(&path, schema.to_string().as_bytes())?;
            Some(path)
        }
        None => None,
    };
    let confine = app
        .sandbox
        .agent(request.provider, &request.workspace, home, tmp);
    let spec = RunSpec {
        binary: binary.to_path_buf(),
        model: request.model.clone(),
        prompt: attempt.prompt.clone(),
        resume: attempt.resume.clone(),
        workspace: request.workspace.clone(),
        home: home.to_path_buf(),
        extra_args: config.extra_args.clone(),
        extra_env,
        sandbox: if confine.is_some() {
            crate::config::Sandbox::FullAccess
        } else {
            config.sandbox
        },
        path_env: app.config.host.path.clone(),
        images: attempt.images.clone(),
        confined: confine.is_some(),
        output_schema,
    };
    let (mut command, explain): (providers::CommandSpec, ExplainExit) = match request.provider {
        "codex" => (
            providers::codex::command(&spec),
            providers::codex::exit_error,
        ),
        "gemini" => (
            providers::gemini::command(&spec),
            providers::gemini::exit_error,
        ),
        _ => (
            providers::opencode::command(&spec),
            providers::opencode::exit_error,
        ),
    };
    result.explain_exit = Some(explain);
    command.confine = confine;
    Ok(command)
}

/// A path a CLI reported, as clients see it: workspace-relative inside the workspace (like
/// `modified_files`); `~/…` in the CLI home and `$TMPDIR/…` in the run's temp dir, so no host
/// layout leaks; anything else unchanged.
fn display_path(
    path: &str,
    workspace: &std::path::Path,
    home: &std::path::Path,
    tmp: &std::path::Path,
) -> String {
    let reported = std::path::Path::new(path);
    if reported.is_relative() {
        return path.to_string();
    }
    for (base, prefix) in [(workspace, ""), (home, "~/"), (tmp, "$TMPDIR/")] {
        if let Ok(rest) = reported.strip_prefix(base) {
            return format!("{prefix}{}", rest.display());
        }
    }
    path.to_string()
}

/// The pure line parser of a provider.
fn parser(provider: &str) -> fn(&str) -> Vec<TurnEvent> {
    match provider {
        "codex" => providers::codex::parse_line,
        "gemini" => providers::gemini::parse_line,
        _ => providers::opencode::parse_line,
    }
}

/// Folds one event into the run's result, streaming text to the client as it comes.
fn fold(result: &mut RunResult, event: TurnEvent, sink: &mut dyn Sink) {
    match event {
        TurnEvent::SessionId(id) => {
            if result.session_id.is_none() {
                result.session_id = Some(id);
            }
        }
        TurnEvent::Text(text) => {
            result.reply.push_str(&text);
            result.final_text.push_str(&text);
            sink.text(&text);
        }
        TurnEvent::Action(action) => {
            result.final_text.clear();
            result.actions.push(action);
        }
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

/// A run's private temp dir under `<data_dir>/run/tmp/` (0700), removed when dropped. The agent's
/// `TMPDIR`: the host `/tmp` is shared by every tenant and stays closed to it.
struct RunDir {
    path: PathBuf,
}

impl RunDir {
    fn create(data_dir: &std::path::Path) -> Result<RunDir> {
        let path = data_dir
            .join("run")
            .join("tmp")
            .join(crate::crypto::random_id("run_"));
        crate::datadir::ensure_private_dir(&path)?;
        Ok(RunDir { path })
    }
}

impl Drop for RunDir {
    fn drop(&mut self) {
        if let Err(error) = std::fs::remove_dir_all(&self.path) {
            log::warn!("removing {}: {error}", self.path.display());
        }
    }
}

/// Records workspace states: trees in the gateway's snapshot repository, or file manifests
/// without git.
struct Tracker<'a> {
    dir: &'a std::path::Path,
    host: &'a crate::config::HostEnv,
    /// The workspace's snapshot store; `None` when git is not available (manifest fallback).
    snapshots: Option<crate::workspace::Snapshots>,
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
        let host = &app.config.host;
        let dir = request.workspace.as_path();
        if !git_on_host(host) {
            return Ok(Tracker {
                dir,
                host,
                snapshots: None,
            });
        }
        // The workspace is the user's repository too (created here for a new workspace id).
        crate::workspace::ensure_repo(dir, host, app.sandbox.repository_writer(dir))?;
        Ok(Tracker {
            dir,
            host,
            snapshots: Some(crate::workspace::Snapshots::of(
                &app.config.storage.data_dir,
                dir,
            )),
        })
    }

    fn snapshot(&self) -> Result<State> {
        match &self.snapshots {
            Some(snapshots) => {
                let snapshot = snapshots.take(self.host)?;
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
            &self.snapshots,
            &before.snapshot,
            &after.snapshot,
            &before.manifest,
            &after.manifest,
        ) {
            (Some(store), Some(a), Some(b), _, _) => store.diff(self.host, a, b),
            (_, _, _, Some(a), Some(b)) => {
                Ok((crate::workspace::manifest_changes(a, b), String::new()))
            }
            _ => Err(Error::Internal(
                "workspace states of different kinds".to_string(),
            )),
        }
    }
}

/// Whether git is on the host (asked once per process).
fn git_on_host(host: &crate::config::HostEnv) -> bool {
    static GIT: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *GIT.get_or_init(|| crate::workspace::git_available(host))
}

struct StoreInput<'a> {
    request: &'a TurnRequest,
    key: Option<&'a str>,
    stored: Option<&'a store::sessions::Session>,
    turn_id: &'a str,
    request_json: &'a str,
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

/// A session row for a conversation's first turn.
fn new_session(
    key: &str,
    entry: &store::turn_journal::Entry,
    now: i64,
) -> store::sessions::Session {
    store::sessions::Session {
        id: crate::crypto::random_id("ses_"),
        session_key: key.to_string(),
        user_id: entry.user_id.clone(),
        workspace_id: entry.workspace_id.clone(),
        workspace_path: entry.workspace_path.clone(),
        client_session_id: entry.client_session_id.clone().unwrap_or_default(),
        provider: entry.provider.clone(),
        model: entry.model.clone(),
        cli_session_id: None,
        account_id: None,
        transcript_hash: String::new(),
        request_hash: String::new(),
        message_count: 0,
        turn_count: 0,
        dirty: false,
        created_at: now,
        updated_at: now,
    }
}

/// Writes the turn and the session, and drops the turn's journal entry, in one transaction;
/// returns the session id.
fn store_outcome(app: &App, input: StoreInput<'_>) -> Result<Option<String>> {
    let request = input.request;
    let actions_json =
        serde_json::to_string(&actions_to_json(&input.result.actions)).unwrap_or_default();
    let files_json = serde_json::to_string(input.modified_files).unwrap_or_default();
    app.store.write(|tx| {
        let session = match input.key {
            Some(key) => {
                let mut session = input.stored.cloned().unwrap_or_else(|| {
                    let entry = store::turn_journal::Entry {
                        user_id: request.user_id.clone(),
                        workspace_id: request.workspace_id.clone(),
                        workspace_path: request.workspace.display().to_string(),
                        client_session_id: request.client_session_id.clone(),
                        provider: request.provider.to_string(),
                        model: request.model.clone(),
                        ..store::turn_journal::Entry::default()
                    };
                    new_session(key, &entry, input.now)
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
                request_messages: input.request_json.to_string(),
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
        store::turn_journal::delete(tx, input.turn_id)?;
        Ok(session.map(|s| s.id))
    })
}

/// Stores every turn the journal holds — turns a crash, kill -9 or power loss interrupted — as
/// `interrupted`, with the workspace changes made since its first snapshot (the turn is `dirty`
/// when there are any, and so is its session). Runs at start-up, after the process groups the
/// previous run left were killed, before requests are served. Returns how many were recovered.
pub fn recover_interrupted(app: &App) -> Result<usize> {
    let entries = app.store.read(store::turn_journal::list)?;
    for entry in &entries {
        let workspace = std::path::Path::new(&entry.workspace_path);
        let changes = if git_on_host(&app.config.host) && workspace.is_dir() {
            let snapshots =
                crate::workspace::Snapshots::of(&app.config.storage.data_dir, workspace);
            snapshots.take(&app.config.host).and_then(|after| {
                let before = crate::workspace::Snapshot::from_tree(entry.before_tree.clone());
                let (changes, _) = snapshots.diff(&app.config.host, &before, &after)?;
                Ok((after.tree, changes))
            })
        } else {
            Err(Error::Internal(
                "the workspace cannot be snapshotted".to_string(),
            ))
        };
        let (after_tree, files, dirty) = match changes {
            Ok((tree, changes)) => {
                let files: Vec<String> = changes.into_iter().map(|c| c.path).collect();
                let dirty = !files.is_empty();
                (Some(tree), files, dirty)
            }
            Err(error) => {
                log::warn!(
                    "interrupted turn {}: its changes in {} are unknown ({error})",
                    entry.turn_id,
                    entry.workspace_path
                );
                (None, Vec::new(), true)
            }
        };
        let now = crate::clock::now_ms();
        app.store.write(|tx| {
            let session = match &entry.session_key {
                Some(key) => {
                    let mut session = store::sessions::find_by_key(tx, key)?
                        .unwrap_or_else(|| new_session(key, entry, now));
                    session.turn_count += 1;
                    session.updated_at = now;
                    session.dirty = dirty;
                    store::sessions::upsert(tx, &session)?;
                    Some(session)
                }
                None => None,
            };
            store::turns::insert(
                tx,
                &store::turns::Turn {
                    id: entry.turn_id.clone(),
                    session_id: session.as_ref().map(|s| s.id.clone()),
                    turn_index: session.as_ref().map(|s| s.turn_count).unwrap_or(1),
                    provider: entry.provider.clone(),
                    model: entry.model.clone(),
                    request_messages: entry.request_messages.clone(),
                    prompt: entry.prompt.clone(),
                    actions: "[]".to_string(),
                    modified_files: serde_json::to_string(&files).unwrap_or_default(),
                    duration_ms: (now - entry.started_at).max(0),
                    status: "interrupted".to_string(),
                    error: Some(
                        "the gateway stopped during this turn (crash, kill or power loss); the \
                         changes it made are kept"
                            .to_string(),
                    ),
                    dirty,
                    account_id: entry.account_id.clone(),
                    workspace_path: entry.workspace_path.clone(),
                    before_tree: Some(entry.before_tree.clone()),
                    after_tree: after_tree.clone(),
                    created_at: entry.started_at,
                    ..store::turns::Turn::default()
                },
            )?;
            store::turn_journal::delete(tx, &entry.turn_id)
        })?;
        log::warn!(
            "recovered interrupted turn {} in {} ({} changed file(s))",
            entry.turn_id,
            entry.workspace_path,
            files.len()
        );
    }
    Ok(entries.len())
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

#[cfg(test)]
mod tests {
    use super::*;

    fn app(dir: &std::path::Path) -> App {
        let mut config = crate::config::Config::default();
        config.storage.data_dir = dir.join("data");
        config.workspace.root = dir.join("workspaces");
        config.host.path = "/usr/bin:/bin".to_string();
        App::open(config, "secret-for-tests".to_string()).unwrap()
    }

    fn request(via_user_key: bool) -> TurnRequest {
        TurnRequest {
            user_id: "uag_usr_test".to_string(),
            provider: "codex",
            model: "gpt-5".to_string(),
            messages: vec![Message::new("user", "hi")],
            workspace_id: "default".to_string(),
            workspace: PathBuf::from("/nonexistent"),
            client_session_id: None,
            via_user_key,
            output: OutputFormat::Text,
        }
    }

    #[test]
    fn the_final_text_is_what_follows_the_last_action() {
        let mut result = RunResult::default();
        let mut seen = String::new();
        let mut sink = |t: &str| seen.push_str(t);
        let events = [
            TurnEvent::Text("Let me look. ".into()),
            TurnEvent::Action(Action::Tool {
                name: "read".into(),
                ok: true,
            }),
            TurnEvent::Text("{\"a\":".into()),
            TurnEvent::Text("1}".into()),
        ];
        for event in events {
            fold(&mut result, event, &mut sink);
        }
        assert_eq!(result.reply, "Let me look. {\"a\":1}");
        assert_eq!(result.final_text, "{\"a\":1}");
        assert_eq!(seen, result.reply);
    }

    #[test]
    fn reported_paths_hide_the_host_layout() {
        let (ws, home, tmp) = (
            std::path::Path::new("/srv/w/uag_usr_1/ws"),
            std::path::Path::new("/srv/data/homes/codex/default/uag_usr_1"),
            std::path::Path::new("/srv/data/run/tmp/run_1"),
        );
        for (reported, shown) in [
            ("/srv/w/uag_usr_1/ws/src/main.rs", "src/main.rs"),
            ("src/main.rs", "src/main.rs"),
            (
                "/srv/data/homes/codex/default/uag_usr_1/notes.md",
                "~/notes.md",
            ),
            ("/srv/data/run/tmp/run_1/scratch.txt", "$TMPDIR/scratch.txt"),
            ("/srv/w/uag_usr_1/wsx/a", "/srv/w/uag_usr_1/wsx/a"),
            ("/etc/hosts", "/etc/hosts"),
        ] {
            assert_eq!(display_path(reported, ws, home, tmp), shown, "{reported}");
        }
    }

    #[test]
    fn without_landlock_user_keys_are_refused_and_the_operator_is_not() {
        let dir = std::env::temp_dir().join(crate::crypto::random_id("codara-engine-"));
        let mut app = app(&dir);
        app.sandbox = crate::sandbox::Sandbox::without_landlock_for_tests();
        let refused = preflight(&app, &request(true)).unwrap_err();
        assert_eq!(refused.status(), 503);
        assert_eq!(refused.code(), "sandbox_unavailable");
        assert!(refused.to_string().contains("Landlock"), "{refused}");
        // The operator's own turns pass this check (and here fail on the missing CLI instead).
        let operator = preflight(&app, &request(false)).unwrap_err();
        assert_eq!(operator.code(), "provider_unavailable");
        // With the sandbox switched off on purpose, user keys pass too.
        app.sandbox = crate::sandbox::Sandbox::off();
        assert_eq!(
            preflight(&app, &request(true)).unwrap_err().code(),
            "provider_unavailable"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
