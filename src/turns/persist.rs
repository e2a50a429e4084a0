//! Storing turns: the turn, its session and the journal entry in one transaction after the run;
//! and, at start-up, the turns a crash left in the journal, stored as interrupted with the
//! workspace changes they made. Must not run anything but git snapshots.

use super::attempt::Outcome;
use super::prompt::{self, Message};
use super::TurnRequest;
use crate::app::App;
use crate::error::{Error, Result};
use crate::store;
use crate::store::turns::TurnStatus;

/// The request's messages as stored JSON.
pub(super) fn messages_json(messages: &[Message]) -> String {
    serde_json::to_string(
        &messages
            .iter()
            .map(|m| serde_json::json!({"role": m.role, "content": m.text}))
            .collect::<Vec<_>>(),
    )
    .unwrap_or_default()
}

/// Everything a finished turn stores.
pub(super) struct StoreInput<'a> {
    pub request: &'a TurnRequest,
    pub key: Option<&'a str>,
    pub stored: Option<&'a store::sessions::Session>,
    pub turn_id: &'a str,
    pub request_json: &'a str,
    pub prompt: &'a str,
    pub resumed: bool,
    pub result: &'a Outcome,
    pub cli_session_id: Option<&'a str>,
    pub modified_files: &'a [String],
    pub dirty: bool,
    pub error: Option<&'a Error>,
    pub before_tree: &'a str,
    pub after_tree: &'a str,
    pub account_id: Option<&'a str>,
    pub now: i64,
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
pub(super) fn store_outcome(app: &App, input: StoreInput<'_>) -> Result<Option<String>> {
    let request = input.request;
    let actions_json = serde_json::to_string(&input.result.actions).unwrap_or_default();
    let files_json = serde_json::to_string(input.modified_files).unwrap_or_default();
    app.store.write(|tx| {
        let session = match input.key {
            Some(key) => {
                let mut session = input.stored.cloned().unwrap_or_else(|| {
                    let entry = store::turn_journal::Entry {
                        user_id: request.owner.id().to_string(),
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
        if let Some(user_id) = request.owner.user_id() {
            store::usage::add(
                tx,
                user_id,
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
            None => TurnStatus::Ok,
            Some(Error::GatewayTimeout {
                code: "cli_stalled",
                ..
            }) => TurnStatus::Stalled,
            Some(Error::GatewayTimeout { .. }) => TurnStatus::Timeout,
            Some(_) => TurnStatus::Error,
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
                duration_ms: input.result.process.duration.as_millis() as i64,
                exit_code: input.result.process.exit_code.map(i64::from),
                status,
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
        let changes = if super::tracker::git_on_host(&app.config.host) && workspace.is_dir() {
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
                    status: TurnStatus::Interrupted,
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
