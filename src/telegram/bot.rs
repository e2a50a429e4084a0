//! One bot's threads. The **dispatcher** works through the bot's inbox in update order:
//! commands are answered on it, a chat turn gets a thread of its own (while it runs, that
//! chat's later text and changes wait; reads are answered at once). The **poller** (polling
//! mode) long-polls `getUpdates` and stores what arrives. A short-lived **set-up** thread
//! learns the bot's @username, registers the command menu and, in webhook mode with a public
//! URL, the webhook. A **turn** thread runs the engine and, beside it, a **presenter** that
//! keeps the typing indicator up and edits the streamed reply at a throttled rate.
//!
//! Threads share only the store, the `App`, a channel to the dispatcher and small status
//! records; no lock is held across a Bot API call, so a hanging Bot API delays only the thread
//! that called it. Must not decide what a message means: that is `commands`.

use super::api::{self, Client, Policy};
use super::commands::{self, Command, Kind, Message, Sender, Situation, Step};
use super::links::{self, Linking, Refused};
use super::reply::{self, Op, Sent, Throttle};
use super::{lock, Status};
use crate::app::App;
use crate::audit::{self, Actor};
use crate::config::TelegramBot;
use crate::error::{Error, Result};
use crate::providers::Provider;
use crate::store::telegram::{self as table, Chat, StoredUpdate, UpdateState};
use crate::store::users::{User, UserStatus};
use crate::turns::locks::Slot;
use crate::turns::prompt::Message as TurnMessage;
use crate::turns::{self, Owner, TurnRequest};
use crate::workspace::{ops, projects};
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// What wakes the dispatcher.
pub(super) enum Event {
    /// New updates in the inbox.
    Wake,
    /// A chat's turn ended.
    TurnEnded {
        /// The chat.
        chat_id: i64,
    },
}

/// Telegram shows "typing…" for about five seconds; it is renewed a little sooner.
const TYPING_EVERY: Duration = Duration::from_secs(4);

/// Handled updates are kept this long so that a redelivery is recognized (Telegram keeps
/// undelivered updates for a day).
const KEEP_HANDLED_MS: i64 = 24 * 60 * 60 * 1000;

/// Updates one dispatcher pass reads.
const PASS_LIMIT: i64 = 200;

/// One bot, shared by its threads.
struct Bot {
    app: Arc<App>,
    name: String,
    client: Client,
    webhook_secret: Option<String>,
    events: mpsc::Sender<Event>,
    status: Arc<Mutex<Status>>,
}

/// Starts the bot's threads; returns the dispatcher's channel.
pub(super) fn spawn(
    app: &Arc<App>,
    config: &TelegramBot,
    status: Arc<Mutex<Status>>,
) -> Result<mpsc::Sender<Event>> {
    let telegram = &app.config.channels.telegram;
    let token = config.token.as_deref().unwrap_or_default();
    let (events, receiver) = mpsc::channel();
    let bot = Arc::new(Bot {
        app: Arc::clone(app),
        name: config.name.clone(),
        client: Client::new(
            &telegram.api_base,
            token,
            Duration::from_secs(telegram.api_timeout_seconds),
        ),
        webhook_secret: config.webhook_secret.clone(),
        events: events.clone(),
        status,
    });
    let polling = telegram.receive_mode == "polling";
    thread(&format!("tg-{}", bot.name), {
        let bot = Arc::clone(&bot);
        move || Dispatcher::new(bot, receiver).run()
    })?;
    thread(&format!("tg-setup-{}", bot.name), {
        let bot = Arc::clone(&bot);
        move || bot.set_up(polling)
    })?;
    if polling {
        thread(&format!("tg-poll-{}", bot.name), {
            let bot = Arc::clone(&bot);
            move || bot.poll()
        })?;
    }
    Ok(events)
}

fn thread(name: &str, run: impl FnOnce() + Send + 'static) -> Result<()> {
    std::thread::Builder::new()
        .name(name.to_string())
        .spawn(run)
        .map(|_| ())
        .map_err(|e| Error::io(format!("thread {name}"), e))
}

impl Bot {
    /// A Bot API call with `policy`, recorded in the bot's status.
    fn api(&self, method: &str, params: &Value, policy: Policy) -> Result<Value> {
        let result = self.client.call_retrying(method, params, policy);
        self.record(&result);
        result
    }

    fn record<T>(&self, result: &Result<T>) {
        let now = crate::clock::now_ms();
        let mut status = lock(&self.status);
        match result {
            Ok(_) => status.last_ok_at = Some(now),
            Err(error) => {
                status.last_error = Some(self.client.redact(&error.to_string()));
                status.last_error_at = Some(now);
            }
        }
    }

    fn username(&self) -> Option<String> {
        lock(&self.status).username.clone()
    }

    /// `getMe` (unless the username is configured), `setMyCommands`, and in webhook mode with a
    /// `[server].public_url`, `setWebhook` with the secret; the webhook is retried until it is
    /// set, the others are best effort.
    fn set_up(&self, polling: bool) {
        if self.username().is_none() {
            match self.api("getMe", &json!({}), Policy::DELIVERY) {
                Ok(me) => {
                    let username = me["username"].as_str().map(str::to_string);
                    lock(&self.status).username = username;
                }
                Err(error) => log::warn!("telegram bot {}: {error}", self.name),
            }
        }
        let menu: Vec<Value> = commands::MENU
            .iter()
            .map(|(command, description)| json!({"command": command, "description": description}))
            .collect();
        if let Err(error) = self.api(
            "setMyCommands",
            &json!({ "commands": menu }),
            Policy::DELIVERY,
        ) {
            log::warn!("telegram bot {}: {error}", self.name);
        }
        if polling {
            return;
        }
        let (Some(public_url), Some(secret)) = (
            self.app.config.server.public_url.as_deref(),
            self.webhook_secret.as_deref(),
        ) else {
            log::warn!(
                "telegram bot {}: [server].public_url is not set, so the webhook is not \
                 registered; register {} (with its secret token) with setWebhook yourself",
                self.name,
                super::webhook_path(&self.name)
            );
            return;
        };
        let url = format!(
            "{}{}",
            public_url.trim_end_matches('/'),
            super::webhook_path(&self.name)
        );
        let params = json!({
            "url": url,
            "secret_token": secret,
            "allowed_updates": ["message"],
            "drop_pending_updates": false,
        });
        match self.api("setWebhook", &params, Policy::RECEIVE) {
            Ok(_) => {
                log::info!("telegram bot {}: webhook set to {url}", self.name);
                lock(&self.status).webhook_url = Some(url);
            }
            Err(error) => log::error!("telegram bot {}: {error}", self.name),
        }
    }

    /// Polling mode: `deleteWebhook` (keeping pending updates), then `getUpdates` from the
    /// stored offset until shutdown; each batch is stored (advancing the offset) before the
    /// next call confirms it to Telegram. Failures back off (429: `retry_after`).
    fn poll(&self) {
        let telegram = &self.app.config.channels.telegram;
        let delete_webhook = || {
            self.api(
                "deleteWebhook",
                &json!({"drop_pending_updates": false}),
                Policy::RECEIVE,
            )
        };
        if let Err(error) = delete_webhook() {
            log::error!("telegram bot {}: {error}", self.name);
        }
        let long_poll = Duration::from_secs(telegram.poll_timeout_seconds);
        let mut failures: u32 = 0;
        while !crate::shutdown::requested() {
            let offset = match self.app.store.read(|conn| table::offset(conn, &self.name)) {
                Ok(offset) => offset,
                Err(error) => {
                    log::error!("telegram bot {}: {error}", self.name);
                    api::pause(Duration::from_secs(1));
                    continue;
                }
            };
            let params = json!({
                "offset": offset,
                "timeout": long_poll.as_secs(),
                "allowed_updates": ["message"],
            });
            let result =
                self.client
                    .call_within("getUpdates", &params, long_poll + self.client.timeout());
            self.record(&result);
            match result {
                Ok(updates) => {
                    failures = 0;
                    let updates = updates.as_array().cloned().unwrap_or_default();
                    if updates.is_empty() {
                        continue;
                    }
                    match super::store_updates(&self.app.store, &self.name, &updates, true) {
                        Ok(_) => {
                            let _ = self.events.send(Event::Wake);
                        }
                        Err(error) => {
                            log::error!("telegram bot {}: {error}", self.name);
                            api::pause(Duration::from_secs(1));
                        }
                    }
                }
                Err(error) => {
                    let (status, retry_after) = match &error {
                        Error::Telegram {
                            status,
                            retry_after_secs,
                            ..
                        } => (*status, *retry_after_secs),
                        _ => (None, None),
                    };
                    // A final refusal (a revoked token: 401) is retried slowly, not given up:
                    // the operator may fix it without a restart being noticed.
                    let wait = api::next_wait(Policy::RECEIVE, failures, status, retry_after)
                        .unwrap_or(Duration::from_secs(60));
                    log::warn!(
                        "telegram bot {}: {error}; next getUpdates in {} ms",
                        self.name,
                        wait.as_millis()
                    );
                    failures = failures.saturating_add(1);
                    if status == Some(409) {
                        let _ = delete_webhook();
                    }
                    api::pause(wait);
                }
            }
        }
    }

    /// Sends (or edits into place) the messages that show `text`, starting from `sent`.
    fn show(&self, chat: &Target, text: &str, mut sent: Vec<Sent>) {
        if let Err(error) = self.apply(chat, &reply::messages(text), &mut sent, Policy::DELIVERY) {
            log::warn!(
                "telegram bot {}: a reply to chat {} was not delivered: {error}",
                self.name,
                chat.chat_id
            );
        }
    }

    /// Carries out [`reply::plan`] for `pieces`, keeping `sent` up to date. An edit that
    /// Telegram refuses for good (the message was deleted) becomes a new message.
    fn apply(
        &self,
        chat: &Target,
        pieces: &[String],
        sent: &mut Vec<Sent>,
        policy: Policy,
    ) -> Result<()> {
        for op in reply::plan(pieces, sent) {
            match op {
                Op::Send(i) => {
                    let message = self.api("sendMessage", &chat.params(&pieces[i]), policy)?;
                    sent.push(Sent {
                        message_id: message["message_id"].as_i64().unwrap_or_default(),
                        text: pieces[i].clone(),
                    });
                }
                Op::Edit(i) => {
                    let mut params = chat.params(&pieces[i]);
                    params["message_id"] = json!(sent[i].message_id);
                    match self.api("editMessageText", &params, policy) {
                        Ok(_) => {}
                        Err(error) if not_modified(&error) => {}
                        Err(Error::Telegram {
                            status: Some(400), ..
                        }) => {
                            let message =
                                self.api("sendMessage", &chat.params(&pieces[i]), policy)?;
                            sent[i].message_id = message["message_id"].as_i64().unwrap_or_default();
                        }
                        Err(error) => return Err(error),
                    }
                    sent[i].text = pieces[i].clone();
                }
                Op::Delete(message_id) => {
                    let params = json!({"chat_id": chat.chat_id, "message_id": message_id});
                    let _ = self.api("deleteMessage", &params, Policy::ONCE);
                }
            }
        }
        sent.truncate(pieces.len());
        Ok(())
    }

    fn typing(&self, chat: &Target) {
        let mut params = json!({"chat_id": chat.chat_id, "action": "typing"});
        if let Some(thread) = chat.thread_id {
            params["message_thread_id"] = json!(thread);
        }
        let _ = self.api("sendChatAction", &params, Policy::ONCE);
    }

    fn finish(&self, update_id: i64) {
        let done = self
            .app
            .store
            .write(|tx| table::set_update_state(tx, &self.name, update_id, UpdateState::Done));
        if let Err(error) = done {
            log::error!("telegram bot {}: {error}", self.name);
        }
    }
}

/// Whether Telegram refused an edit because the text is already what it shows.
fn not_modified(error: &Error) -> bool {
    matches!(error, Error::Telegram { status: Some(400), message, .. }
        if message.contains("not modified"))
}

/// Where replies go: a chat, and the forum topic the message came from.
#[derive(Debug, Clone)]
struct Target {
    chat_id: i64,
    thread_id: Option<i64>,
}

impl Target {
    fn of(message: &Message) -> Target {
        Target {
            chat_id: message.chat_id,
            thread_id: message.thread_id,
        }
    }

    /// `sendMessage`/`editMessageText` parameters: plain text (no `parse_mode`, so an agent's
    /// Markdown can never make Telegram refuse the message).
    fn params(&self, text: &str) -> Value {
        let mut params = json!({"chat_id": self.chat_id, "text": text});
        if let Some(thread) = self.thread_id {
            params["message_thread_id"] = json!(thread);
        }
        params
    }
}

/// The dispatcher: the bot's inbox, one update at a time, in order.
struct Dispatcher {
    bot: Arc<Bot>,
    events: Receiver<Event>,
    /// Chats with a turn running.
    running: HashSet<i64>,
}

impl Dispatcher {
    fn new(bot: Arc<Bot>, events: Receiver<Event>) -> Dispatcher {
        Dispatcher {
            bot,
            events,
            running: HashSet::new(),
        }
    }

    fn run(mut self) {
        self.recover();
        let mut pruned = Instant::now() - Duration::from_secs(3600);
        while !crate::shutdown::requested() {
            if pruned.elapsed() >= Duration::from_secs(3600) {
                self.prune();
                pruned = Instant::now();
            }
            self.pass();
            // Wakes at once for new updates or an ended turn; the timeout re-reads the inbox
            // now and then anyway and notices shutdown.
            match self.events.recv_timeout(Duration::from_secs(1)) {
                Ok(event) => self.note(event),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            while let Ok(event) = self.events.try_recv() {
                self.note(event);
            }
        }
    }

    fn note(&mut self, event: Event) {
        if let Event::TurnEnded { chat_id } = event {
            self.running.remove(&chat_id);
        }
        lock(&self.bot.status).turns_running = self.running.len();
    }

    /// Updates whose turn was running when the gateway stopped: the turn itself was stored as
    /// interrupted by the engine's recovery; the chat is told, and the update is not run again.
    fn recover(&self) {
        let bot = &self.bot;
        let running = bot
            .app
            .store
            .read(|conn| table::updates_in(conn, &bot.name, UpdateState::Running, PASS_LIMIT));
        for update in running.unwrap_or_default() {
            if let Some(Kind::Message(message)) = parse(&update).map(|u| u.kind) {
                bot.show(
                    &Target::of(&message),
                    "⚠️ Codara restarted while this turn was running, so it was stopped (the \
                     changes it had made are kept). Send your message again to continue.",
                    Vec::new(),
                );
            }
            bot.finish(update.update_id);
        }
    }

    fn prune(&self) {
        let before = crate::clock::now_ms() - KEEP_HANDLED_MS;
        let pruned = self
            .bot
            .app
            .store
            .write(|tx| table::prune_updates(tx, &self.bot.name, before));
        if let Err(error) = pruned {
            log::warn!("telegram bot {}: {error}", self.bot.name);
        }
    }

    /// One pass over the pending updates, oldest first.
    fn pass(&mut self) {
        let bot = Arc::clone(&self.bot);
        let pending = bot
            .app
            .store
            .read(|conn| table::updates_in(conn, &bot.name, UpdateState::Pending, PASS_LIMIT));
        let pending = match pending {
            Ok(pending) => pending,
            Err(error) => {
                log::error!("telegram bot {}: {error}", bot.name);
                return;
            }
        };
        let username = bot.username();
        let max_turns = bot.app.config.channels.telegram.max_turns;
        // Chats whose messages must wait: a turn runs there, or an earlier message waits.
        let mut busy: HashSet<i64> = self.running.clone();
        let mut waiting: HashMap<i64, usize> = HashMap::new();
        for update in pending {
            if crate::shutdown::requested() {
                return;
            }
            let Some(Kind::Message(message)) = parse(&update).map(|u| u.kind) else {
                // Edited messages, channel posts, messages from bots: never acted on.
                bot.finish(update.update_id);
                continue;
            };
            let user = match links::linked_user(&bot.app.store, &bot.name, message.from_id) {
                Ok(user) => user,
                Err(error) => {
                    log::error!("telegram bot {}: {error}", bot.name);
                    return;
                }
            };
            let sender = match &user {
                None => Sender::Unlinked,
                Some(user) if user.status == UserStatus::Active => Sender::Linked,
                Some(_) => Sender::Inactive,
            };
            let chat_id = message.chat_id;
            let situation = Situation {
                sender,
                private_chat: message.private,
                chat_busy: busy.contains(&chat_id),
                waiting: waiting.get(&chat_id).copied().unwrap_or_default(),
                bot_full: self.running.len() >= max_turns,
            };
            let input = commands::parse(message.text.as_deref(), username.as_deref());
            let target = Target::of(&message);
            let request_id = format!("telegram:{}:{}", bot.name, update.update_id);
            let linked = user.filter(|_| sender == Sender::Linked);
            match (commands::decide(&input, situation), linked) {
                (Step::Wait, _) => {
                    busy.insert(chat_id);
                    *waiting.entry(chat_id).or_default() += 1;
                    continue;
                }
                (Step::Ignore, _) => {}
                (Step::Answer(answer), _) => {
                    bot.show(&target, &commands::answer_text(&answer), Vec::new())
                }
                (Step::Link(token), _) => {
                    let text = link(&bot, &message, &token, &request_id);
                    bot.show(&target, &text, Vec::new());
                }
                (Step::Run(command), Some(user)) => {
                    let text = run_command(&bot, &message, &user, command, situation, &request_id);
                    bot.show(&target, &text, Vec::new());
                }
                (Step::Turn(text), Some(user)) => {
                    match start_turn(&bot, &message, &user, &text, update.update_id) {
                        Ok(()) => {
                            self.running.insert(chat_id);
                            busy.insert(chat_id);
                            lock(&bot.status).turns_running = self.running.len();
                            continue;
                        }
                        Err(error) => bot.show(
                            &target,
                            &format!("⚠️ {}", error.public_message()),
                            Vec::new(),
                        ),
                    }
                }
                (Step::Run(_) | Step::Turn(_), None) => {}
            }
            bot.finish(update.update_id);
        }
    }
}

fn parse(update: &StoredUpdate) -> Option<commands::Incoming> {
    serde_json::from_str::<Value>(&update.body)
        .ok()
        .and_then(|value| commands::parse_update(&value))
}

/// `/link <token>`: the answer to send. Failed attempts are counted per Telegram account with
/// the login throttle (5 per 5 minutes), so tokens cannot be guessed from a chat faster than
/// operator secrets from an address.
fn link(bot: &Bot, message: &Message, token: &str, request_id: &str) -> String {
    let attempts = format!("telegram:{}:{}", bot.name, message.from_id);
    let now = crate::clock::now_ms();
    if let Err(Error::TooManyRequests {
        retry_after_secs, ..
    }) = bot.app.login_throttle.check(&attempts, now)
    {
        return format!(
            "Too many link attempts from this Telegram account; try again in {retry_after_secs} s."
        );
    }
    let linked = links::link(
        &bot.app.store,
        &bot.name,
        token,
        message.from_id,
        message.from_username.as_deref(),
        Some(request_id),
    );
    if let Ok(Linking::Refused(Refused::Invalid | Refused::Expired)) = &linked {
        bot.app.login_throttle.record_failure(&attempts, now);
    }
    match linked {
        Ok(Linking::Linked(user)) => format!(
            "✅ This Telegram account is now linked to Codara as {} ({}).\n\nSend a message to \
             run the agent, or /help for the commands.",
            user.display_name, user.email
        ),
        Ok(Linking::Refused(Refused::Expired)) => {
            "That link token has expired. Ask your Codara operator for a new one.".to_string()
        }
        Ok(Linking::Refused(Refused::Inactive)) => {
            "That link token belongs to a suspended or deleted Codara user.".to_string()
        }
        Ok(Linking::Refused(Refused::Invalid)) => {
            "That link token is not valid: it may have \
             been used already or be meant for another bot. Ask your Codara operator for a new one."
                .to_string()
        }
        Err(error) => format!("⚠️ {}", error.public_message()),
    }
}

/// What a chat's turn runs in: the workspace, the provider and model, the session label.
struct Place {
    workspace_id: String,
    workspace: PathBuf,
    project: Option<String>,
    provider: Provider,
    model: String,
    label: String,
}

impl Place {
    fn session_key(&self, user: &User) -> String {
        turns::session_key(&user.id, &self.workspace_id, &self.label)
    }
}

/// The chat's state for `user` (the defaults before any command changed it).
fn chat_state(bot: &Bot, chat_id: i64, user: &User) -> Result<Chat> {
    let stored = bot
        .app
        .store
        .read(|conn| table::get_chat(conn, &bot.name, chat_id, &user.id))?;
    Ok(stored.unwrap_or_else(|| Chat {
        bot: bot.name.clone(),
        chat_id,
        user_id: user.id.clone(),
        project: None,
        generation: 1,
        updated_at: 0,
    }))
}

/// Where `chat`'s next turn runs: the project's directory inside the user's own tree (through
/// the same confinement checks as a `workspace_id`), or the user's base workspace.
fn place(bot: &Bot, user: &User, chat: &Chat) -> Result<Place> {
    let config = &bot.app.config;
    let user_root = PathBuf::from(&user.workspace_path);
    let (workspace_id, workspace, project_provider) = match &chat.project {
        Some(name) => {
            let info = projects::info(&user_root, name).map_err(|_| {
                Error::NotFound(format!(
                    "the project {name} no longer exists; pick another with /projects"
                ))
            })?;
            let dir =
                crate::workspace::zone::owned_workspace(&config.workspace.root, &user.id, name)?;
            (name.clone(), dir, info.meta.provider)
        }
        None => {
            crate::datadir::ensure_private_dir(&user_root)?;
            let dir = user_root
                .canonicalize()
                .map_err(|e| Error::io(&user_root, e))?;
            (".".to_string(), dir, None)
        }
    };
    let provider = project_provider
        .as_deref()
        .and_then(Provider::from_name)
        .filter(|p| config.providers.get(*p).is_enabled())
        .or_else(|| Provider::from_name(&config.channels.telegram.provider))
        .unwrap_or(Provider::Codex);
    Ok(Place {
        workspace_id,
        workspace,
        project: chat.project.clone(),
        provider,
        model: config.providers.get(provider).default_model.clone(),
        label: format!("telegram:{}:{}:{}", bot.name, chat.chat_id, chat.generation),
    })
}

/// The conversation so far in the session `key`: the last successful turn's messages and
/// reply, which is exactly the transcript the engine stored, so the new message extends it
/// and the CLI session is resumed with only that message.
fn history(bot: &Bot, key: &str) -> Result<Vec<TurnMessage>> {
    let last =
        bot.app.store.read(
            |conn| match crate::store::sessions::find_by_key(conn, key)? {
                Some(session) => crate::store::turns::last_ok_for_session(conn, &session.id),
                None => Ok(None),
            },
        )?;
    let Some(turn) = last else {
        return Ok(Vec::new());
    };
    let stored: Vec<Value> = serde_json::from_str(&turn.request_messages)
        .map_err(|e| Error::Internal(format!("turn {}: stored messages: {e}", turn.id)))?;
    let mut messages: Vec<TurnMessage> = stored
        .iter()
        .map(|m| {
            TurnMessage::new(
                m["role"].as_str().unwrap_or("user"),
                m["content"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    messages.push(TurnMessage::new("assistant", &turn.reply));
    Ok(messages)
}

/// Admits and starts a chat turn on a thread of its own; marks the update running.
fn start_turn(
    bot: &Arc<Bot>,
    message: &Message,
    user: &User,
    text: &str,
    update_id: i64,
) -> Result<()> {
    let app = &bot.app;
    let slot = turns::admit::user(app, user)?;
    let chat = chat_state(bot, message.chat_id, user)?;
    let place = place(bot, user, &chat)?;
    let mut messages = history(bot, &place.session_key(user))?;
    messages.push(TurnMessage::new("user", text));
    let turn = TurnRequest {
        owner: Owner::User(user.id.clone()),
        provider: place.provider,
        model: place.model,
        messages,
        workspace_id: place.workspace_id,
        workspace: place.workspace,
        client_session_id: Some(place.label),
        // A Telegram user is a tenant like a user key: confined, or refused.
        via_user_key: true,
        output: turns::OutputFormat::Text,
    };
    turns::preflight(app, &turn)?;
    app.store
        .write(|tx| table::set_update_state(tx, &bot.name, update_id, UpdateState::Running))?;
    let target = Target::of(message);
    let chat_id = message.chat_id;
    let spawned = thread(&format!("tg-turn-{}", bot.name), {
        let bot = Arc::clone(bot);
        move || {
            run_turn(&bot, &target, &turn, slot);
            bot.finish(update_id);
            let _ = bot.events.send(Event::TurnEnded { chat_id });
        }
    });
    if let Err(error) = spawned {
        bot.finish(update_id);
        return Err(error);
    }
    Ok(())
}

/// The streamed text of a running turn, shared by the turn thread (which appends) and the
/// presenter (which shows it). The lock is held only to copy or append.
#[derive(Default)]
struct Live {
    state: Mutex<LiveState>,
    wake: Condvar,
}

#[derive(Default)]
struct LiveState {
    text: String,
    changed: bool,
    done: bool,
}

impl Live {
    fn push(&self, delta: &str) {
        let mut state = lock(&self.state);
        state.text.push_str(delta);
        state.changed = true;
        self.wake.notify_one();
    }

    fn finish(&self) {
        lock(&self.state).done = true;
        self.wake.notify_one();
    }

    /// Waits up to `timeout` for news; true once the turn is done.
    fn wait(&self, timeout: Duration, want_changes: bool) -> bool {
        let state = lock(&self.state);
        if state.done || (want_changes && state.changed) {
            return state.done;
        }
        let (state, _) = self
            .wake
            .wait_timeout(state, timeout)
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        state.done
    }

    fn take_changed(&self) -> Option<String> {
        let mut state = lock(&self.state);
        if !state.changed {
            return None;
        }
        state.changed = false;
        Some(state.text.clone())
    }

    fn mark_changed(&self) {
        lock(&self.state).changed = true;
    }
}

/// Runs the turn with a presenter beside it, then shows the final reply (edited into the
/// streamed messages), with the failure and the modified files.
fn run_turn(bot: &Arc<Bot>, target: &Target, turn: &TurnRequest, slot: Slot) {
    let live = Arc::new(Live::default());
    let presenter = std::thread::Builder::new()
        .name(format!("tg-show-{}", bot.name))
        .spawn({
            let (bot, target, live) = (Arc::clone(bot), target.clone(), Arc::clone(&live));
            move || present(&bot, &target, &live)
        })
        .inspect_err(|e| log::warn!("telegram bot {}: no presenter thread: {e}", bot.name))
        .ok();
    let mut sink = |delta: &str| live.push(delta);
    let result = turns::run(&bot.app, turn, &mut sink);
    drop(slot);
    live.finish();
    let (sent, throttle) = presenter
        .and_then(|handle| handle.join().ok())
        .unwrap_or_else(|| (Vec::new(), Throttle::new(Duration::ZERO)));
    // The final edit keeps to the edit rate too (a flood wait included, within reason).
    api::pause(throttle.wait(Instant::now()).min(api::MAX_FLOOD_WAIT));
    let text = match &result {
        Ok(outcome) => {
            let failure = outcome.error.as_ref().map(Error::public_message);
            reply::compose(&outcome.reply, &outcome.modified_files, failure.as_deref())
        }
        Err(error) => reply::compose("", &[], Some(&error.public_message())),
    };
    if let Err(error) = &result {
        log::warn!("telegram bot {}: turn refused: {error}", bot.name);
    }
    bot.show(target, &text, sent);
}

/// Keeps "typing…" up while the turn runs and, when streaming, edits the reply in place at most
/// once per `edit_interval_ms` (longer when Telegram asks to wait). Returns the messages it
/// sent, for the final reply to edit, and the throttle the final edit keeps to.
fn present(bot: &Bot, target: &Target, live: &Live) -> (Vec<Sent>, Throttle) {
    let telegram = &bot.app.config.channels.telegram;
    let mut sent = Vec::new();
    let mut throttle = Throttle::new(Duration::from_millis(telegram.edit_interval_ms));
    let mut next_typing = Instant::now();
    loop {
        let now = Instant::now();
        if now >= next_typing {
            bot.typing(target);
            next_typing = Instant::now() + TYPING_EVERY;
        }
        if telegram.stream && throttle.ready(Instant::now()) {
            if let Some(text) = live.take_changed() {
                let pieces = reply::messages(&text);
                let now = Instant::now();
                match bot.apply(target, &pieces, &mut sent, Policy::ONCE) {
                    Ok(()) => throttle.sent(now),
                    Err(error) => {
                        let flood = match &error {
                            Error::Telegram {
                                retry_after_secs: Some(seconds),
                                ..
                            } => Duration::from_secs(*seconds),
                            _ => Duration::ZERO,
                        };
                        throttle.flooded(now, flood);
                        live.mark_changed();
                    }
                }
            }
        }
        let now = Instant::now();
        let until_typing = next_typing.saturating_duration_since(now);
        let wait = if telegram.stream && !throttle.ready(now) {
            until_typing.min(throttle.wait(now))
        } else {
            until_typing
        };
        if live.wait(
            wait.max(Duration::from_millis(10)),
            telegram.stream && throttle.ready(now),
        ) {
            return (sent, throttle);
        }
    }
}

/// A linked user's command: the answer to send (a failure is answered too, never raised).
fn run_command(
    bot: &Bot,
    message: &Message,
    user: &User,
    command: Command,
    situation: Situation,
    request_id: &str,
) -> String {
    command_answer(bot, message, user, command, situation, request_id)
        .unwrap_or_else(|error| format!("⚠️ {}", error.public_message()))
}

fn command_answer(
    bot: &Bot,
    message: &Message,
    user: &User,
    command: Command,
    situation: Situation,
    request_id: &str,
) -> Result<String> {
    let user_root = PathBuf::from(&user.workspace_path);
    let chat = chat_state(bot, message.chat_id, user)?;
    let current = chat.project.as_deref();
    match command {
        Command::Projects => {
            let found = projects::list(&user_root)?;
            if found.is_empty() {
                return Ok(
                    "You have no projects yet. Create one with /project_create NAME \
                     [TEMPLATE]; until then your messages run in your base workspace."
                        .to_string(),
                );
            }
            let mut text = String::from("Your projects:");
            for project in &found {
                let marker = if current == Some(project.relative_path.as_str()) {
                    "  ← current"
                } else {
                    ""
                };
                text.push_str(&format!(
                    "\n- {} ({}){marker}",
                    project.relative_path, project.meta.template
                ));
            }
            text.push_str("\n\nSwitch with /project NAME.");
            Ok(text)
        }
        Command::ProjectInfo(name) => {
            let info = projects::info(&user_root, &name)?;
            let meta = &info.meta;
            let mut text = format!(
                "Project: {}\nTemplate: {}",
                info.relative_path, meta.template
            );
            if let Some(provider) = &meta.provider {
                text.push_str(&format!("\nProvider: {provider}"));
            }
            if let Some(created_at) = &meta.created_at {
                text.push_str(&format!("\nCreated: {created_at}"));
            }
            if let Some(created_by) = &meta.created_by {
                text.push_str(&format!("\nCreated by: {created_by}"));
            }
            text.push_str(&format!(
                "\nGit repository: {}",
                if info.path.join(".git").exists() {
                    "yes"
                } else {
                    "no"
                }
            ));
            if current == Some(name.as_str()) {
                text.push_str("\nThis chat works in it now.");
            }
            Ok(text)
        }
        Command::ProjectCreate { name, template } => {
            let info = projects::create_in(
                &ops::Context::of(&bot.app),
                &user_root,
                projects::NewProject {
                    name: &name,
                    template: template.as_deref(),
                    provider: None,
                    force: false,
                },
                &Actor::User(user.id.clone()),
                Some(request_id),
            )?;
            change_chat(bot, &chat, Some(name.clone()), chat.generation, request_id)?;
            Ok(format!(
                "Created project {name} (template {}) and switched to it: your next message \
                 runs there.",
                info.meta.template
            ))
        }
        Command::Project(name) => {
            projects::info(&user_root, &name)?;
            change_chat(bot, &chat, Some(name.clone()), chat.generation, request_id)?;
            Ok(format!(
                "Switched to project {name}: your next message runs there (continuing this \
                 chat's conversation in it, if there is one; /new starts afresh)."
            ))
        }
        Command::New => {
            change_chat(
                bot,
                &chat,
                chat.project.clone(),
                chat.generation + 1,
                request_id,
            )?;
            Ok(format!(
                "Started a new conversation in {}: the agent will not remember the earlier \
                 one.",
                current.map_or("your base workspace".to_string(), |p| format!(
                    "project {p}"
                ))
            ))
        }
        Command::Status => {
            let place = place(bot, user, &chat)?;
            let session = bot
                .app
                .store
                .read(|conn| crate::store::sessions::find_by_key(conn, &place.session_key(user)))?;
            let mut text = format!(
                "Linked to Codara as {} ({}).\nProject: {}\nAgent: {} ({})",
                user.display_name,
                user.email,
                place
                    .project
                    .as_deref()
                    .unwrap_or("none (your base workspace)"),
                place.provider,
                place.model
            );
            match session {
                Some(session) => text.push_str(&format!(
                    "\nConversation: {} turn(s), the last at {}",
                    session.turn_count,
                    crate::clock::rfc3339(session.updated_at)
                )),
                None => text.push_str("\nConversation: new (no turn yet)"),
            }
            if situation.chat_busy {
                text.push_str("\nA turn is running in this chat.");
            }
            if situation.waiting > 0 {
                text.push_str(&format!("\n{} message(s) wait for it.", situation.waiting));
            }
            Ok(text)
        }
        Command::Help | Command::Unknown(_) => Ok(commands::help(true)),
        Command::Usage(name) => Ok(commands::usage(name).to_string()),
        Command::Link(_) => Ok(commands::usage("link").to_string()),
    }
}

/// Stores what the chat works on, with its audit entry: `telegram.project_switched` when the
/// project changes, `telegram.conversation_reset` when only the conversation does.
fn change_chat(
    bot: &Bot,
    chat: &Chat,
    project: Option<String>,
    generation: i64,
    request_id: &str,
) -> Result<()> {
    let after = Chat {
        project,
        generation,
        updated_at: crate::clock::now_ms(),
        ..chat.clone()
    };
    let action = if after.project != chat.project {
        "telegram.project_switched"
    } else {
        "telegram.conversation_reset"
    };
    let target_id = format!("{}:{}", chat.bot, chat.chat_id);
    bot.app.store.write(|tx| {
        table::upsert_chat(tx, &after)?;
        audit::record(
            tx,
            audit::Record {
                actor: &Actor::User(chat.user_id.clone()),
                action,
                target_type: "telegram_chat",
                target_id: &target_id,
                before: Some(audit::state(&audit::TelegramChatState::from(chat))?),
                after: Some(audit::state(&audit::TelegramChatState::from(&after))?),
                request_id: Some(request_id),
            },
        )
    })
}
