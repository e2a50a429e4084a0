//! The turn pipeline: one turn from a validated request to a stored, reported outcome, as a
//! short sequence of named steps — lock → plan → attach → snapshot → journal → choose account →
//! run (with the retry decision) → check the output → diff → persist → respond. Each step is a
//! function with one job in this module or its siblings.
//!
//! From the journal step on, the CLI may change the workspace: every failure is stored as the
//! turn's outcome (or, if the gateway dies, recovered from the journal), never returned early.
//! Must not parse HTTP or render JSON.

use super::attempt::{self, Attempt, Outcome};
use super::locks::Guard;
use super::prompt::{self, Plan};
use super::retry::{self, Attempted, Next};
use super::tracker::{State, Tracker};
use super::{output, persist, pool, OutputFormat, Sink, TurnOutcome, TurnRequest};
use crate::app::App;
use crate::error::{Error, Result};
use crate::store;
use crate::telemetry::{self, metrics, Field};
use std::path::PathBuf;
use std::time::{Duration, Instant};

pub use super::admit::refuse_unconfined;

/// Checks what can be checked before answering: the run can be confined (or need not be) and
/// the provider CLI exists. Returns the CLI's executable.
pub fn preflight(app: &App, request: &TurnRequest) -> Result<PathBuf> {
    refuse_unconfined(app, request.via_user_key)?;
    let config = app.config.providers.get(request.provider);
    crate::providers::find_binary(&config.binary, &app.config.host.path).ok_or_else(|| {
        Error::Unavailable {
            code: "provider_unavailable",
            message: format!(
                "the {} CLI (`{}`) is not installed or not on PATH; see `codara doctor`",
                request.provider, config.binary
            ),
        }
    })
}

/// Runs one turn. Lock conflicts, a missing CLI and a pool with no ready account are errors
/// (nothing ran); a failed run is an outcome with `error` set, stored like any other turn.
///
/// The turn is a `turn` span of the current trace (a trace of its own when no request carries
/// it), counted in the turn metrics by provider and outcome.
pub fn run(app: &App, request: &TurnRequest, sink: &mut dyn Sink) -> Result<TurnOutcome> {
    let _root = telemetry::trace::root("turn");
    let span = telemetry::span("turn");
    let provider = request.provider.name();
    span.attr("provider", provider);
    span.attr("model", &request.model);
    span.attr(
        "mode",
        app.config.providers.get(request.provider).mode.as_str(),
    );
    span.attr("stateless", request.client_session_id.is_none());
    telemetry::annotate(Field::Provider, provider);
    telemetry::annotate(Field::User, request.owner.id());
    let _active = metrics::turn_started();
    let started = Instant::now();
    let mut timed = FirstDelta {
        sink,
        started,
        turn: span.handle(),
        seen: false,
    };
    let result = run_turn(app, request, &mut timed);
    let outcome = match &result {
        Err(_) => "rejected",
        Ok(outcome) => match outcome.error.as_ref().map(Error::code) {
            None => "ok",
            Some("cli_stalled") => "stalled",
            Some("turn_timeout") => "timeout",
            Some(_) => "error",
        },
    };
    metrics::turn_finished(provider, outcome, started.elapsed());
    span.attr("outcome", outcome);
    match &result {
        Ok(done) => {
            span.attr("turn_id", &done.turn_id);
            span.attr("resumed", done.resumed);
            span.attr("files_changed", done.modified_files.len());
            if done.error.is_some() {
                span.fail();
                // The client may have had its 200 already (a stream): the trace says it failed.
                telemetry::mark_error();
            }
        }
        Err(error) => {
            span.attr("error", error.code());
            span.fail();
        }
    }
    log::info!(
        provider = provider,
        outcome = outcome,
        turn_id = result.as_ref().map(|o| o.turn_id.as_str()).unwrap_or("");
        "{provider} turn {outcome} in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    result
}

/// Passes text on to the client's sink and records when the first piece went out.
struct FirstDelta<'a> {
    sink: &'a mut dyn Sink,
    started: Instant,
    turn: telemetry::SpanRef,
    seen: bool,
}

impl Sink for FirstDelta<'_> {
    fn text(&mut self, delta: &str) {
        if !self.seen && !delta.is_empty() {
            self.seen = true;
            self.turn.record(
                "first_delta",
                self.started,
                Instant::now(),
                false,
                Vec::new(),
            );
        }
        self.sink.text(delta);
    }
}

fn run_turn(app: &App, request: &TurnRequest, sink: &mut dyn Sink) -> Result<TurnOutcome> {
    let binary = preflight(app, request)?;
    let key = request.session_key();
    let _locks = lock(app, request, key.as_deref())?;
    let stored = match &key {
        Some(key) => app
            .store
            .read(|conn| store::sessions::find_by_key(conn, key))?,
        None => None,
    };
    let plan = plan(request, stored.as_ref());
    let attachments = attach(request, &plan)?;
    // The snapshot store is opened (made, on a workspace's first turn) as part of the snapshot.
    let (tracker, before) = {
        let span = telemetry::span("snapshot");
        span.attr("phase", "before");
        Tracker::new(app, request)
            .and_then(|tracker| tracker.snapshot().map(|before| (tracker, before)))
            .inspect_err(|_| span.fail())?
    };
    let mut attempt = first_attempt(request, &plan, &attachments);
    let mut account = pool::choose_account(
        app,
        request,
        stored.as_ref().and_then(|s| s.account_id.as_deref()),
    )?;
    let turn_id = crate::crypto::random_id("trn_");
    let request_json = persist::messages_json(&request.messages);
    journal(
        app,
        request,
        &Journaled {
            turn_id: &turn_id,
            key: key.as_deref(),
            request_json: &request_json,
            prompt: &attempt.prompt,
            before: &before.id,
            account_id: account.as_ref().map(|a| a.id.as_str()),
        },
    )?;

    // A JSON reply is checked before anyone sees it: it is streamed whole after the check.
    let mut quiet = |_: &str| {};
    let live: &mut dyn Sink = if request.output == OutputFormat::Text {
        &mut *sink
    } else {
        &mut quiet
    };
    let mut result = attempt::execute(app, request, &binary, &attempt, account.as_ref(), live);
    let mut switched_account = false;
    loop {
        let next = retry::next(Attempted {
            failed: result.failed(),
            resumed: attempt.resume.is_some(),
            lost_session: result.looks_like_missing_session(),
            account_failed: match (&account, next_is_fresh(&attempt, &result)) {
                // A lost session is the CLI's state, not the account's health.
                (Some(used), false) => pool::record_health(app, used, &result),
                _ => false,
            },
            stalled: result.process.stalled,
            workspace_changed: result.failed() && !tracker.unchanged_since(&before),
            switched_account,
        });
        match next {
            Next::Done => break,
            Next::FreshSession => {
                log::warn!(
                    "resuming {} session {} failed ({}); starting a fresh session with the transcript",
                    request.provider,
                    attempt.resume.as_deref().unwrap_or(""),
                    result.error_message()
                );
                // Only this turn's images were saved before the snapshot; earlier ones are not
                // re-sent.
                attempt = Attempt::fresh(
                    &instructed(request, &prompt::flatten(&request.messages)),
                    &attachments,
                );
            }
            Next::OtherAccount => {
                let used = account.as_ref().map(|a| a.id.clone());
                let next = pool::choose_account(app, request, used.as_deref())
                    .ok()
                    .flatten()
                    .filter(|n| Some(&n.id) != used.as_ref());
                let Some(next) = next else { break };
                log::warn!(
                    "account {} failed at the account level; retrying on {}",
                    used.unwrap_or_default(),
                    next.id
                );
                account = Some(next);
                switched_account = true;
            }
        }
        result = attempt::execute(app, request, &binary, &attempt, account.as_ref(), live);
    }
    check_output(request, &mut result, sink);
    let (after, changes, diff, unknown) = changes(&tracker, &before, &mut result);
    let modified_files: Vec<String> = changes.iter().map(|c| c.path.clone()).collect();
    let error = result.error(request.provider);
    let dirty = error.is_some() && (unknown || !modified_files.is_empty());
    let cli_session_id = result.session_id.clone().or_else(|| attempt.resume.clone());
    let persist_span = telemetry::span("persist");
    let session_id = persist::store_outcome(
        app,
        persist::StoreInput {
            request,
            key: key.as_deref(),
            stored: stored.as_ref(),
            turn_id: &turn_id,
            request_json: &request_json,
            prompt: &attempt.prompt,
            resumed: attempt.resume.is_some(),
            result: &result,
            cli_session_id: cli_session_id.as_deref(),
            modified_files: &modified_files,
            dirty,
            error: error.as_ref(),
            before_tree: &before.id,
            after_tree: &after.id,
            account_id: account.as_ref().map(|a| a.id.as_str()),
            now: crate::clock::now_ms(),
        },
    )
    .inspect_err(|_| persist_span.fail())?;
    drop(persist_span);
    Ok(TurnOutcome {
        turn_id,
        session_id,
        reply: result.reply,
        usage: result.usage,
        actions: result.actions,
        modified_files,
        diff,
        dirty,
        resumed: attempt.resume.is_some(),
        error,
    })
}

/// Whether the retry decision will start a fresh session (so the failure is not the account's).
fn next_is_fresh(attempt: &Attempt, result: &Outcome) -> bool {
    attempt.resume.is_some() && result.failed() && result.looks_like_missing_session()
}

/// One turn at a time per session and per workspace; a 409 after `lock_timeout_seconds`.
fn lock<'a>(app: &'a App, request: &TurnRequest, key: Option<&str>) -> Result<Vec<Guard<'a>>> {
    let span = telemetry::span("lock_wait");
    locks(app, request, key).inspect_err(|_| span.fail())
}

fn locks<'a>(app: &'a App, request: &TurnRequest, key: Option<&str>) -> Result<Vec<Guard<'a>>> {
    let timeout = Duration::from_secs(app.config.workspace.lock_timeout_seconds);
    let mut guards = Vec::new();
    if let Some(key) = key {
        guards.push(app.turn_locks.session(key, timeout).ok_or_else(|| {
            Error::Conflict(format!(
                "another turn of this session is still running (waited {} s); retry when it finishes",
                timeout.as_secs()
            ))
        })?);
    }
    guards.push(
        app.turn_locks
            .workspace(&request.workspace, timeout)
            .ok_or_else(|| {
                Error::Conflict(format!(
                    "another turn is running in this workspace (waited {} s); retry when it finishes",
                    timeout.as_secs()
                ))
            })?,
    );
    Ok(guards)
}

/// Resume the stored CLI session with the new messages, or start fresh with the transcript.
fn plan(request: &TurnRequest, stored: Option<&store::sessions::Session>) -> Plan {
    // A session moved to another provider cannot resume the old CLI session.
    let stored = stored.filter(|s| s.provider == request.provider.name());
    prompt::plan(
        &request.messages,
        stored
            .map(|s| prompt::Stored {
                cli_session_id: s.cli_session_id.as_deref(),
                transcript_hash: &s.transcript_hash,
                request_hash: &s.request_hash,
                message_count: s.message_count.max(0) as usize,
            })
            .as_ref(),
    )
}

/// Saves the images of the messages sent this turn into the workspace, before the first
/// snapshot, so that they are not reported as changes the turn made.
fn attach(request: &TurnRequest, plan: &Plan) -> Result<Vec<PathBuf>> {
    let new_from = match plan {
        Plan::Resume { new_from, .. } => *new_from,
        Plan::Fresh { .. } => 0,
    };
    let images: Vec<&prompt::Image> = request.messages[new_from..]
        .iter()
        .flat_map(|m| m.images.iter())
        .collect();
    crate::images::save(&request.workspace, &images)
}

/// The attempt the plan calls for.
fn first_attempt(request: &TurnRequest, plan: &Plan, attachments: &[PathBuf]) -> Attempt {
    match plan {
        Plan::Resume {
            cli_session_id,
            prompt,
            ..
        } => Attempt::resume(cli_session_id, &instructed(request, prompt), attachments),
        Plan::Fresh { prompt, .. } => Attempt::fresh(&instructed(request, prompt), attachments),
    }
}

/// `prompt` with this turn's output instruction first, when the format is asked for in the
/// prompt (everything but what codex's `--output-schema` enforces).
fn instructed(request: &TurnRequest, prompt: &str) -> String {
    let instruction = match attempt::codex_output_schema(request) {
        Some(_) => None,
        None => output::instruction(&request.output),
    };
    match instruction {
        Some(instruction) => format!("{instruction}\n\n{prompt}"),
        None => prompt.to_string(),
    }
}

/// What the journal row of a starting turn holds beside the request.
struct Journaled<'a> {
    turn_id: &'a str,
    key: Option<&'a str>,
    request_json: &'a str,
    prompt: &'a str,
    before: &'a str,
    account_id: Option<&'a str>,
}

/// Records the turn as in flight: found at the next start if the gateway dies during it.
fn journal(app: &App, request: &TurnRequest, row: &Journaled<'_>) -> Result<()> {
    app.store.write(|tx| {
        store::turn_journal::insert(
            tx,
            &store::turn_journal::Entry {
                turn_id: row.turn_id.to_string(),
                user_id: request.owner.id().to_string(),
                session_key: row.key.map(str::to_string),
                client_session_id: request.client_session_id.clone(),
                provider: request.provider.name().to_string(),
                model: request.model.clone(),
                workspace_id: request.workspace_id.clone(),
                workspace_path: request.workspace.display().to_string(),
                request_messages: row.request_json.to_string(),
                prompt: row.prompt.to_string(),
                before_tree: row.before.to_string(),
                account_id: row.account_id.map(str::to_string),
                started_at: crate::clock::now_ms(),
            },
        )
    })
}

/// Checks a JSON reply (`response_format`): the whole reply, else the answer after the last
/// tool call (an agent may narrate its work first). A reply that passes is streamed now, whole.
fn check_output(request: &TurnRequest, result: &mut Outcome, sink: &mut dyn Sink) {
    if request.output == OutputFormat::Text || result.failed() {
        return;
    }
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

/// The after-state and what changed. When it cannot be recorded the turn is still stored, its
/// changes unknown (`true` in the last place) and the failure noted.
fn changes(
    tracker: &Tracker<'_>,
    before: &State,
    result: &mut Outcome,
) -> (State, Vec<crate::workspace::Change>, String, bool) {
    let snapshot = || {
        let span = telemetry::span("snapshot");
        span.attr("phase", "after");
        tracker.snapshot().inspect_err(|_| span.fail())
    };
    let diff = |after: State| {
        let span = telemetry::span("diff");
        let diffed = tracker.diff(before, &after).map(|(c, d)| (after, c, d));
        match &diffed {
            Ok((_, changes, _)) => span.attr("files", changes.len()),
            Err(_) => span.fail(),
        }
        diffed
    };
    match snapshot().and_then(diff) {
        Ok((after, changes, diff)) => (after, changes, diff, false),
        Err(error) => {
            log::error!("recording the workspace after the turn failed: {error}");
            if result.failure.is_none() {
                result.failure = Some(format!("recording the workspace changes failed: {error}"));
            }
            (State::unknown(&before.id), Vec::new(), String::new(), true)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::Provider;
    use crate::turns::prompt::Message;
    use crate::turns::Owner;

    fn app(dir: &std::path::Path) -> App {
        let mut config = crate::config::Config::default();
        config.storage.data_dir = dir.join("data");
        config.workspace.root = dir.join("workspaces");
        config.host.path = "/usr/bin:/bin".to_string();
        App::open(
            config,
            "secret-for-tests".to_string(),
            crate::datadir::SecretSource::Configured,
        )
        .unwrap()
    }

    fn request(via_user_key: bool) -> TurnRequest {
        TurnRequest {
            owner: Owner::User("uag_usr_test".to_string()),
            provider: Provider::Codex,
            model: "gpt-5".to_string(),
            messages: vec![Message::new("user", "hi")],
            workspace_id: "default".to_string(),
            workspace: PathBuf::from("/nonexistent"),
            client_session_id: None,
            via_user_key,
            output: OutputFormat::Text,
        }
    }

    /// A stand-in codex that swallows the prompt and reports one reply, the way `codex exec
    /// --json` does.
    fn fake_codex(dir: &std::path::Path) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let bin = dir.join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        let path = bin.join("codex");
        std::fs::write(
            &path,
            "#!/bin/sh\ncat > /dev/null\n\
             echo '{\"type\":\"thread.started\",\"thread_id\":\"t-1\"}'\n\
             echo '{\"type\":\"item.completed\",\"item\":{\"id\":\"i\",\"type\":\"agent_message\",\"text\":\"fake reply\"}}'\n\
             echo '{\"type\":\"turn.completed\",\"usage\":{\"input_tokens\":3,\"output_tokens\":2}}'\n",
        )
        .unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    #[test]
    fn a_failing_bookkeeping_step_still_stores_the_turn() {
        let dir = std::env::temp_dir().join(crate::crypto::random_id("codara-engine-"));
        let mut config = crate::config::Config::default();
        config.storage.data_dir = dir.join("data");
        config.workspace.root = dir.join("workspaces");
        config.host.path = "/usr/bin:/bin".to_string();
        config.providers.codex.binary = fake_codex(&dir).display().to_string();
        let app = App::open(
            config,
            "secret-for-tests".to_string(),
            crate::datadir::SecretSource::Configured,
        )
        .unwrap();
        crate::accounts::add(
            &app.store,
            &app.vault,
            crate::accounts::NewAccount {
                id: "acct".into(),
                provider: "codex".into(),
                auth_type: "API_KEY".into(),
                label: None,
                credential: "sk-test-bookkeeping".into(),
            },
            &crate::audit::Actor::System,
            None,
        )
        .unwrap();
        // Every update of an account fails from now on: the health bookkeeping after the run.
        app.store
            .write(|tx| {
                tx.execute_batch(
                    "CREATE TRIGGER broken BEFORE UPDATE ON accounts \
                     BEGIN SELECT RAISE(FAIL, 'bookkeeping is broken'); END;",
                )
                .map_err(Error::sql("installing the trigger"))
            })
            .unwrap();
        let workspace = dir.join("workspaces/operator/default");
        std::fs::create_dir_all(&workspace).unwrap();
        let request = TurnRequest {
            owner: Owner::Operator,
            workspace: workspace.canonicalize().unwrap(),
            client_session_id: Some("kept".into()),
            ..request(false)
        };
        let outcome = run(&app, &request, &mut |_: &str| {}).unwrap();
        assert!(outcome.error.is_none(), "{:?}", outcome.error);
        assert_eq!(outcome.reply, "fake reply");
        let session = outcome.session_id.expect("a session");
        let turns = app
            .store
            .read(|conn| store::turns::list_for_session(conn, &session))
            .unwrap();
        assert_eq!(turns.len(), 1);
        assert_eq!(turns[0].account_id.as_deref(), Some("acct"));
        assert!(app
            .store
            .read(store::turn_journal::list)
            .unwrap()
            .is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
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
