//! One CLI attempt of a turn: the user's home for the provider (and account), a private temp
//! dir, the pooled credential for the length of the run, the Landlock confinement, the command;
//! then the watched run with each event folded into an [`Outcome`] and text streamed to the sink.
//! Whatever happens, the credential is sealed back (if the CLI refreshed it) and removed, and the
//! temp dir deleted. Must not decide whether to retry (`retry`) or store anything (`persist`).

use super::{output, OutputFormat, Sink, TurnRequest};
use crate::app::App;
use crate::error::{Error, Result};
use crate::process;
use crate::providers::{Action, CommandSpec, Provider, RunSpec, TurnEvent, Usage};
use crate::telemetry::{self, metrics, Attr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// What one attempt sends: the prompt, the CLI session to resume, the attached images.
#[derive(Debug, Clone)]
pub(super) struct Attempt {
    /// The prompt on the CLI's stdin.
    pub prompt: String,
    /// The CLI session to resume, if any.
    pub resume: Option<String>,
    /// Workspace-relative paths of the images attached to the prompt.
    pub images: Vec<PathBuf>,
}

impl Attempt {
    /// A new CLI session.
    pub fn fresh(prompt: &str, images: &[PathBuf]) -> Attempt {
        Attempt {
            prompt: prompt.to_string(),
            resume: None,
            images: images.to_vec(),
        }
    }

    /// A resumed CLI session.
    pub fn resume(cli_session_id: &str, prompt: &str, images: &[PathBuf]) -> Attempt {
        Attempt {
            prompt: prompt.to_string(),
            resume: Some(cli_session_id.to_string()),
            images: images.to_vec(),
        }
    }
}

/// The schema codex enforces itself (`--output-schema`): a `json_schema` in OpenAI's strict
/// form. Everything else (free text, `json_object`, other schemas, other CLIs) is `None`.
pub(super) fn codex_output_schema(request: &TurnRequest) -> Option<&serde_json::Value> {
    match &request.output {
        OutputFormat::JsonSchema { schema, .. }
            if request.provider == Provider::Codex && output::codex_enforces(schema) =>
        {
            Some(schema)
        }
        _ => None,
    }
}

/// What one CLI run produced, folded from its events.
#[derive(Default)]
pub(super) struct Outcome {
    /// The CLI's own session id, from its first report.
    pub session_id: Option<String>,
    /// The assistant's text.
    pub reply: String,
    /// The text since the last action: the answer after the agent's tool work, without the
    /// narration before it (what a JSON `response_format` is checked against when the whole
    /// reply does not parse).
    pub final_text: String,
    /// Token usage, summed.
    pub usage: Usage,
    /// Normalized actions, paths as clients see them.
    pub actions: Vec<Action>,
    /// The last fatal error the CLI reported.
    pub last_error: Option<String>,
    /// Non-fatal messages.
    pub warnings: Vec<String>,
    /// The CLI reported the end of the turn.
    pub completed: bool,
    /// How the process ended.
    pub process: process::RunOutcome,
    stall_timeout: u64,
    turn_timeout: u64,
    provider: Option<Provider>,
    /// The gateway could not run the CLI (or record its effects): home, credential, spawn.
    pub failure: Option<String>,
    /// The warm process reported that the session to resume does not exist.
    pub lost_session: bool,
}

impl Outcome {
    /// Anything but a clean, completed run.
    pub fn failed(&self) -> bool {
        self.failure.is_some()
            || self.last_error.is_some()
            || self.process.stalled
            || self.process.timed_out
            || self.process.exit_code != Some(0)
    }

    /// The failure in a person's words: the CLI's error, else its last warning, else the exit.
    pub fn error_message(&self) -> String {
        if let Some(message) = self.failure.as_ref().or(self.last_error.as_ref()) {
            return message.clone();
        }
        // Without an error event, the last warning is usually the real cause (codex stream errors).
        if let (Some(warning), true) = (self.warnings.last(), self.process.exit_code != Some(0)) {
            return warning.clone();
        }
        if let Some(explained) = self
            .provider
            .and_then(|p| p.exit_error(self.process.exit_code))
        {
            return format!(
                "{explained} (exit code {})",
                self.process.exit_code.unwrap_or_default()
            );
        }
        let tail = self.process.stderr_tail.trim();
        let last_lines: Vec<&str> = tail.lines().rev().take(5).collect();
        let tail: String = last_lines.into_iter().rev().collect::<Vec<_>>().join("\n");
        match (self.process.exit_code, self.process.signal) {
            (Some(code), _) if tail.is_empty() => format!("the CLI exited with code {code}"),
            (Some(code), _) => format!("the CLI exited with code {code}: {tail}"),
            (None, Some(signal)) => format!("the CLI was killed by signal {signal}"),
            (None, None) => "the CLI ended without a status".to_string(),
        }
    }

    /// A failed resume that produced nothing and reads like "no such session".
    pub fn looks_like_missing_session(&self) -> bool {
        if self.lost_session {
            return true;
        }
        if !self.failed()
            || !self.reply.is_empty()
            || !self.actions.is_empty()
            || self.process.stalled
        {
            return false;
        }
        let text = format!("{} {}", self.error_message(), self.process.stderr_tail).to_lowercase();
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

    /// The error the client gets, when the run failed.
    pub fn error(&self, provider: Provider) -> Option<Error> {
        if let Some(failure) = &self.failure {
            return Some(Error::Internal(format!("{provider}: {failure}")));
        }
        if self.process.stalled {
            return Some(Error::GatewayTimeout {
                code: "cli_stalled",
                message: format!(
                    "the {provider} CLI produced no output for {} s and was stopped",
                    self.stall_timeout
                ),
            });
        }
        if self.process.timed_out {
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

/// One attempt: through the owner's warm process when the provider is in warm mode and one is
/// available, else one CLI run. Text is streamed to `sink` as the CLI emits it. The attempt is
/// an `attempt` span (mode, account) with the run's spans below it; stalls, timeouts and
/// kills are counted per provider.
pub(super) fn execute(
    app: &App,
    request: &TurnRequest,
    binary: &Path,
    attempt: &Attempt,
    account: Option<&crate::store::accounts::Account>,
    sink: &mut dyn Sink,
) -> Outcome {
    let span = telemetry::span("attempt");
    span.attr("resume", attempt.resume.is_some());
    if let Some(account) = account {
        span.attr("account", &account.id);
    }
    let config = app.config.providers.get(request.provider);
    let mut result = None;
    if config.mode == crate::config::RunMode::Warm {
        match warm(app, request, binary, attempt, account, sink) {
            Ok(outcome) => {
                span.attr("mode", "warm");
                result = Some(outcome);
            }
            Err(reason) => {
                span.attr("fallback", &reason);
                app.warm.note_fallback(request.provider, &reason);
            }
        }
    }
    let result = result.unwrap_or_else(|| {
        span.attr("mode", "exec");
        exec(app, request, binary, attempt, account, sink)
    });
    let provider = request.provider.name();
    if result.process.stalled {
        metrics::cli_stalled(provider);
    }
    if result.process.timed_out {
        metrics::cli_timed_out(provider);
    }
    if result.process.killed {
        metrics::cli_killed(provider);
    }
    if result.failed() {
        span.fail();
    }
    result
}

/// An empty outcome with the provider's limits, for the error messages.
fn outcome_for(app: &App, provider: Provider) -> Outcome {
    let config = app.config.providers.get(provider);
    Outcome {
        stall_timeout: config.stall_timeout(),
        turn_timeout: config.turn_timeout(),
        provider: Some(provider),
        ..Outcome::default()
    }
}

fn seconds(s: u64) -> Option<Duration> {
    (s > 0).then(|| Duration::from_secs(s))
}

/// The attempt through the warm process of (owner, provider, account). `Err` (why) when the
/// turn must run exec instead: the workspace lies outside the owner's tree (an operator's
/// `workspace_root`), no process is available, or a gemini load would erase the session.
fn warm(
    app: &App,
    request: &TurnRequest,
    binary: &Path,
    attempt: &Attempt,
    account: Option<&crate::store::accounts::Account>,
    sink: &mut dyn Sink,
) -> std::result::Result<Outcome, String> {
    let provider = request.provider;
    let zone = owner_tree(app, request)?;
    let key = crate::warm::Key {
        owner: request.owner.id().to_string(),
        provider,
        account: account.map(|a| a.id.clone()),
    };
    let data_dir = &app.config.storage.data_dir;
    let home = crate::accounts::home(
        data_dir,
        provider.name(),
        account.map(|a| a.id.as_str()),
        request.owner.id(),
    );
    let handoff = Instant::now();
    let launched = std::cell::Cell::new(false);
    let acquired = app.warm.acquire(app, &key, &|| {
        launched.set(true);
        launch(app, provider, &request.model, binary, account, &home, &zone)
    });
    telemetry::current_span().record(
        "warm_handoff",
        handoff,
        Instant::now(),
        acquired.is_err(),
        vec![("started_process", Attr::Bool(launched.get()))],
    );
    let busy = acquired?;
    let agent = busy.agent();
    if let (Provider::Gemini, Some(id)) = (provider, attempt.resume.as_deref()) {
        if !agent.has_session(id)
            && !crate::warm::acp::load_is_safe(agent.home(), id, crate::clock::now_ms())
        {
            return Err(format!(
                "gemini session {id} was written this minute; loading it now would erase it"
            ));
        }
    }
    let config = app.config.providers.get(provider);
    let mut result = outcome_for(app, provider);
    let images: Vec<PathBuf> = attempt
        .images
        .iter()
        .map(|p| request.workspace.join(p))
        .collect();
    let sandbox = cli_sandbox(app.sandbox.enforced(), config.sandbox);
    let started = Instant::now();
    let mut first_output = None;
    let ending = agent.turn(
        &crate::warm::Open {
            resume: attempt.resume.as_deref(),
            cwd: &request.workspace,
            model: &request.model,
            sandbox: crate::providers::codex::sandbox_name(sandbox),
        },
        &crate::warm::TurnInput {
            prompt: &attempt.prompt,
            images: &images,
            model: &request.model,
            output_schema: codex_output_schema(request),
        },
        crate::warm::Limits {
            stall: seconds(config.stall_timeout()),
            turn: seconds(config.turn_timeout()),
        },
        request.client_session_id.is_none(),
        &mut |event| {
            first_output.get_or_insert_with(Instant::now);
            fold(&mut result, event, sink)
        },
    );
    result.process.duration = started.elapsed();
    let failed = ending != crate::warm::Ending::Ended;
    let ending_name = record_ending(&mut result, ending);
    let run = telemetry::current_span().record(
        "cli_run",
        started,
        Instant::now(),
        failed,
        vec![("ending", Attr::from(ending_name))],
    );
    if let Some(first) = first_output {
        run.record("first_output", started, first, false, Vec::new());
    }
    for action in &mut result.actions {
        if let Action::FileChange { path, .. } = action {
            *path = display_path(path, &request.workspace, agent.home(), agent.tmp());
        }
    }
    if let Some(account) = account {
        // The CLI may have refreshed its token during the turn; other processes need it.
        if let Err(error) =
            crate::accounts::sync_back(&app.store, &app.vault, account, agent.home())
        {
            log::error!(
                "sealing back the credential of account {}: {error}",
                account.id
            );
        }
    }
    let dead = !agent.alive();
    drop(busy);
    if dead {
        app.warm.forget_dead(app, &key);
    }
    log::info!(
        "{provider} warm turn ran {:.3}s: {} chars, {} actions, failed={}",
        result.process.duration.as_secs_f64(),
        result.reply.len(),
        result.actions.len(),
        result.failed()
    );
    Ok(result)
}

/// The CLI's own sandbox for a run: off (`FullAccess`) when Landlock confines it, since codex's
/// bubblewrap cannot nest inside Landlock and the Landlock allow-list is the stricter one.
fn cli_sandbox(confined: bool, configured: crate::config::Sandbox) -> crate::config::Sandbox {
    if confined {
        crate::config::Sandbox::FullAccess
    } else {
        configured
    }
}

/// The owner's whole tree, which a warm process is confined to: a workspace outside it (an
/// operator's `workspace_root`) runs exec instead.
fn owner_tree(app: &App, request: &TurnRequest) -> std::result::Result<PathBuf, String> {
    let zone = app
        .config
        .workspace
        .root
        .join(request.owner.id())
        .canonicalize()
        .map_err(|e| format!("the owner's tree is unreadable: {e}"))?;
    if !request.workspace.starts_with(&zone) {
        return Err("the workspace lies outside the owner's tree".into());
    }
    Ok(zone)
}

/// Writes how a warm turn ended into its outcome the way an exec run's exit would read;
/// returns the ending's name for the trace.
fn record_ending(result: &mut Outcome, ending: crate::warm::Ending) -> &'static str {
    use crate::warm::Ending;
    match ending {
        Ending::Ended => {
            result.process.exit_code = Some(0);
            "ended"
        }
        Ending::Stalled => {
            result.process.stalled = true;
            "stalled"
        }
        Ending::TimedOut => {
            result.process.timed_out = true;
            "timed_out"
        }
        Ending::LostSession(message) => {
            result.lost_session = true;
            result.last_error = Some(message);
            "lost_session"
        }
        Ending::Died(message) => {
            result.last_error = Some(message);
            "died"
        }
        Ending::Refused(message) => {
            result.last_error = Some(message);
            "refused"
        }
    }
}

/// Prepares a warm process of `provider`: the home with the credential, a temp dir kept for its
/// life, and the command confined to the owner's tree `zone`, that home and that temp dir.
fn launch(
    app: &App,
    provider: Provider,
    model: &str,
    binary: &Path,
    account: Option<&crate::store::accounts::Account>,
    home: &Path,
    zone: &Path,
) -> Result<crate::warm::Launch> {
    let tmp = app
        .config
        .storage
        .data_dir
        .join("run")
        .join("tmp")
        .join(crate::crypto::random_id("warm_"));
    crate::datadir::ensure_private_dir(&tmp)?;
    let prepared = (|| {
        let extra_env = environment(app, provider, account, home, &tmp)?;
        let confine = app.sandbox.agent(provider, zone, home, &tmp);
        let config = app.config.providers.get(provider);
        let spec = RunSpec {
            binary: binary.to_path_buf(),
            model: model.to_string(),
            prompt: String::new(),
            resume: None,
            workspace: zone.to_path_buf(),
            home: home.to_path_buf(),
            extra_args: config.extra_args.clone(),
            extra_env,
            sandbox: cli_sandbox(confine.is_some(), config.sandbox),
            path_env: app.config.host.path.clone(),
            images: Vec::new(),
            confined: confine.is_some(),
            output_schema: None,
        };
        let mut command = provider.warm_command(&spec);
        command.confine = confine;
        Ok(command)
    })();
    match prepared {
        Ok(command) => Ok(crate::warm::Launch {
            command,
            home: home.to_path_buf(),
            tmp,
            account: account.cloned(),
        }),
        Err(error) => {
            let _ = std::fs::remove_dir_all(&tmp);
            Err(error)
        }
    }
}

/// One CLI run: the user's home for this provider (and account), a private temp dir, the pooled
/// credential for the length of the run, the Landlock confinement; then the watched run with
/// each event folded into the result and text streamed to `sink`. Whatever happens, the
/// credential is sealed back (if the CLI refreshed it) and removed, and the temp dir deleted.
fn exec(
    app: &App,
    request: &TurnRequest,
    binary: &Path,
    attempt: &Attempt,
    account: Option<&crate::store::accounts::Account>,
    sink: &mut dyn Sink,
) -> Outcome {
    let config = app.config.providers.get(request.provider);
    let mut result = outcome_for(app, request.provider);
    let prepared = Instant::now();
    let data_dir = &app.config.storage.data_dir;
    let home = crate::accounts::home(
        data_dir,
        request.provider.name(),
        account.map(|a| a.id.as_str()),
        request.owner.id(),
    );
    let outcome = (|| -> Result<process::RunOutcome> {
        let tmp = RunDir::create(data_dir)?;
        let command = command_for(app, request, binary, attempt, account, &home, &tmp.path)?;
        let limits = process::Limits {
            stall: seconds(config.stall_timeout()),
            turn: seconds(config.turn_timeout()),
        };
        let provider = request.provider;
        let outcome = process::run(&command, limits, &mut |line| {
            for event in provider.parse_line(line) {
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
        // A warm process of the same home keeps its credential until it is retired.
        if !app.warm.holds_home(&home) {
            if let Err(error) = crate::accounts::scrub(&home) {
                log::error!(
                    "removing the credential of account {} from {}: {error}",
                    account.id,
                    home.display()
                );
            }
        }
    }
    record_exec_spans(prepared, outcome.as_ref().ok());
    match outcome {
        Ok(outcome) => result.process = outcome,
        Err(error) => {
            log::error!("{} turn could not run: {error}", request.provider);
            result.failure = Some(format!("the CLI could not be run: {error}"));
        }
    }
    log::info!(
        "{} turn ran {:.1}s exit={:?} stalled={} events: {} chars, {} actions",
        request.provider,
        result.process.duration.as_secs_f64(),
        result.process.exit_code,
        result.process.stalled,
        result.reply.len(),
        result.actions.len()
    );
    for warning in &result.warnings {
        log::info!("{} warned: {warning}", request.provider);
    }
    result
}

/// The spans of one exec run, measured by the runner: `spawn` (home, credential, confinement,
/// fork/exec), `cli_run` (spawn to exit, with how it ended) and `first_output` below it.
fn record_exec_spans(prepared: Instant, outcome: Option<&process::RunOutcome>) {
    let attempt = telemetry::current_span();
    let Some((outcome, spawned)) = outcome.and_then(|o| Some((o, o.spawned?))) else {
        attempt.record("spawn", prepared, Instant::now(), true, Vec::new());
        return;
    };
    attempt.record("spawn", prepared, spawned, false, Vec::new());
    let mut attrs = vec![
        ("stalled", Attr::Bool(outcome.stalled)),
        ("timed_out", Attr::Bool(outcome.timed_out)),
        ("killed", Attr::Bool(outcome.killed)),
    ];
    if let Some(code) = outcome.exit_code {
        attrs.push(("exit_code", Attr::from(code)));
    }
    if let Some(signal) = outcome.signal {
        attrs.push(("signal", Attr::from(signal)));
    }
    let failed = outcome.exit_code != Some(0) || outcome.stalled || outcome.timed_out;
    let run = attempt.record(
        "cli_run",
        spawned,
        spawned + outcome.duration,
        failed,
        attrs,
    );
    if let Some(first) = outcome.first_output {
        run.record("first_output", spawned, first, false, Vec::new());
    }
}

/// The environment of a CLI process beyond its home variables: UTC, the private temp dir, the
/// account's credential (written into the home), then `[providers.<p>].env`.
fn environment(
    app: &App,
    provider: Provider,
    account: Option<&crate::store::accounts::Account>,
    home: &Path,
    tmp: &Path,
) -> Result<Vec<(String, String)>> {
    crate::datadir::ensure_private_dir(home)?;
    provider
        .prepare_home(home)
        .map_err(|e| Error::io(home, e))?;
    let tmp_text = tmp.display().to_string();
    // Clock times in CLI messages ("try again at 3:45 PM") are read as UTC by the pool.
    let mut env = vec![
        ("TZ".to_string(), "UTC".to_string()),
        ("TMPDIR".to_string(), tmp_text.clone()),
        ("TMP".to_string(), tmp_text.clone()),
        ("TEMP".to_string(), tmp_text),
    ];
    if let Some(account) = account {
        env.extend(crate::accounts::materialize(&app.vault, account, home)?);
    }
    let config = app.config.providers.get(provider);
    env.extend(config.env.iter().map(|(k, v)| (k.clone(), v.clone())));
    Ok(env)
}

/// Builds the confined command of one attempt (preparing the home and the credential).
#[allow(clippy::too_many_arguments)] // The parts of one attempt; only `exec` calls this.
fn command_for(
    app: &App,
    request: &TurnRequest,
    binary: &Path,
    attempt: &Attempt,
    account: Option<&crate::store::accounts::Account>,
    home: &Path,
    tmp: &Path,
) -> Result<CommandSpec> {
    let config = app.config.providers.get(request.provider);
    let extra_env = environment(app, request.provider, account, home, tmp)?;
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
        sandbox: cli_sandbox(confine.is_some(), config.sandbox),
        path_env: app.config.host.path.clone(),
        images: attempt.images.clone(),
        confined: confine.is_some(),
        output_schema,
    };
    let mut command = request.provider.command(&spec);
    command.confine = confine;
    Ok(command)
}

/// A path a CLI reported, as clients see it: workspace-relative inside the workspace (like
/// `modified_files`); `~/…` in the CLI home and `$TMPDIR/…` in the run's temp dir, so no host
/// layout leaks; anything else unchanged.
fn display_path(path: &str, workspace: &Path, home: &Path, tmp: &Path) -> String {
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

/// Folds one event into the run's result, streaming text to the client as it comes.
fn fold(result: &mut Outcome, event: TurnEvent, sink: &mut dyn Sink) {
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
    fn create(data_dir: &Path) -> Result<RunDir> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_final_text_is_what_follows_the_last_action() {
        let mut result = Outcome::default();
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

    /// (how the run ended) → (status, code, part of the message), for the error a client gets.
    #[test]
    fn run_endings_become_errors() {
        struct Case {
            outcome: Outcome,
            expected: Option<(u16, &'static str, &'static str)>,
        }
        let ended = |exit_code: Option<i32>| Outcome {
            process: process::RunOutcome {
                exit_code,
                ..process::RunOutcome::default()
            },
            provider: Some(Provider::Gemini),
            stall_timeout: 600,
            turn_timeout: 3600,
            ..Outcome::default()
        };
        let cases = [
            Case {
                outcome: ended(Some(0)),
                expected: None,
            },
            Case {
                outcome: Outcome {
                    last_error: Some("model refused".into()),
                    ..ended(Some(1))
                },
                expected: Some((502, "provider_error", "gemini: model refused")),
            },
            Case {
                outcome: Outcome {
                    warnings: vec!["Reconnecting 5/5".into()],
                    ..ended(Some(1))
                },
                expected: Some((502, "provider_error", "Reconnecting 5/5")),
            },
            Case {
                // Gemini documents exit 144 as an API error.
                outcome: ended(Some(144)),
                expected: Some((502, "provider_error", "exit code 144")),
            },
            Case {
                outcome: Outcome {
                    process: process::RunOutcome {
                        stalled: true,
                        signal: Some(15),
                        ..process::RunOutcome::default()
                    },
                    ..ended(None)
                },
                expected: Some((504, "cli_stalled", "no output for 600 s")),
            },
            Case {
                outcome: Outcome {
                    process: process::RunOutcome {
                        timed_out: true,
                        ..process::RunOutcome::default()
                    },
                    ..ended(None)
                },
                expected: Some((504, "turn_timeout", "exceeded 3600 s")),
            },
            Case {
                outcome: Outcome {
                    failure: Some("the CLI could not be run: spawn failed".into()),
                    ..ended(None)
                },
                expected: Some((500, "internal_error", "could not be run")),
            },
            Case {
                outcome: Outcome {
                    process: process::RunOutcome {
                        signal: Some(9),
                        ..process::RunOutcome::default()
                    },
                    ..ended(None)
                },
                expected: Some((502, "provider_error", "killed by signal 9")),
            },
        ];
        for case in cases {
            let got = case.outcome.error(Provider::Gemini).map(|e| {
                let text = e.to_string();
                (e.status(), e.code(), text)
            });
            match (got, case.expected) {
                (None, None) => {}
                (Some((status, code, text)), Some((s, c, part))) => {
                    assert_eq!((status, code), (s, c), "{text}");
                    assert!(text.contains(part), "{text:?} lacks {part:?}");
                }
                (got, expected) => panic!("got {got:?}, expected {expected:?}"),
            }
        }
    }

    #[test]
    fn a_lost_session_is_a_failed_resume_that_produced_nothing() {
        let lost = |stderr: &str, reply: &str| Outcome {
            process: process::RunOutcome {
                exit_code: Some(1),
                stderr_tail: stderr.into(),
                ..process::RunOutcome::default()
            },
            reply: reply.into(),
            ..Outcome::default()
        };
        for (stderr, reply, expected) in [
            (
                "Error resuming session: No previous sessions found",
                "",
                true,
            ),
            ("thread 01a2 not found", "", true),
            ("no rollout found for thread", "", true),
            ("unexpected status 401", "", false),
            ("No previous sessions found", "partial answer", false),
        ] {
            assert_eq!(
                lost(stderr, reply).looks_like_missing_session(),
                expected,
                "{stderr:?} / {reply:?}"
            );
        }
    }
}
