//! The Telegram channel: bots from `[[channels.telegram.bots]]` that receive updates by
//! webhook or long polling, link Telegram accounts to users, answer project commands, and run
//! chat turns through the same engine and limits as the HTTP fronts.
//!
//! Every update received, in either mode, is first stored in the `telegram_updates` inbox (the
//! polling offset advances in that same transaction; the webhook answers 200 only after it);
//! each bot's dispatcher thread works from the inbox, so a restart loses nothing and a
//! redelivered update id is dropped. Modules: `api` (the Bot API client: timeouts, backoff,
//! no token in errors), `commands` (pure: what an update means, what to do), `reply` (pure:
//! composing, splitting and updating reply messages), `links` (link tokens, linking), `bot`
//! (the threads). [`Hub`] is what the rest of the gateway sees: it wakes a bot when the
//! webhook stored an update, and reports each bot's status. Must not parse HTTP requests:
//! `api::telegram` hands the webhook body here.

pub mod api;
mod bot;
pub mod commands;
pub mod links;
pub mod reply;

use crate::app::App;
use crate::config::{Config, TelegramBot};
use crate::error::{Error, Result};
use crate::store::telegram::{self as table, StoredUpdate, UpdateState};
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex, MutexGuard};

/// The running bots, as the HTTP side sees them.
#[derive(Default)]
pub struct Hub {
    bots: Mutex<BTreeMap<String, Handle>>,
}

struct Handle {
    events: Sender<bot::Event>,
    status: Arc<Mutex<Status>>,
}

/// What a bot reports about itself (never its token).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Status {
    /// Its @username, from the config or `getMe`.
    pub username: Option<String>,
    /// The webhook URL registered with `setWebhook` at start-up.
    pub webhook_url: Option<String>,
    /// The last Bot API failure (without the token).
    pub last_error: Option<String>,
    /// When it happened, epoch ms.
    pub last_error_at: Option<i64>,
    /// The last successful Bot API call, epoch ms.
    pub last_ok_at: Option<i64>,
    /// Turns running now.
    pub turns_running: usize,
}

impl Hub {
    /// Tells `bot`'s dispatcher that the inbox has new updates (a no-op for a bot that is not
    /// running).
    pub fn wake(&self, bot: &str) {
        if let Some(handle) = lock(&self.bots).get(bot) {
            let _ = handle.events.send(bot::Event::Wake);
        }
    }

    /// The status of `bot`, when it runs.
    pub fn status(&self, bot: &str) -> Option<Status> {
        let bots = lock(&self.bots);
        let handle = bots.get(bot)?;
        let status = lock(&handle.status).clone();
        Some(status)
    }

    fn register(&self, name: &str, handle: Handle) {
        lock(&self.bots).insert(name.to_string(), handle);
    }
}

/// Locks a mutex whose data stays consistent even if a holder panicked (plain fields).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The path Telegram posts `bot`'s updates to.
pub fn webhook_path(bot: &str) -> String {
    format!("/channels/telegram/{bot}/webhook")
}

/// Refuses to serve when an enabled bot lacks its token, or its webhook secret in webhook
/// mode (a `token_env` naming a variable that is not set).
pub fn check(config: &Config) -> Result<()> {
    let telegram = &config.channels.telegram;
    for (i, bot) in telegram.bots.iter().enumerate() {
        if !(telegram.enabled && bot.enabled) {
            continue;
        }
        let missing = |field: &str, variable: &Option<String>| Error::Config {
            source: config
                .source
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| "configuration".to_string()),
            key: format!("channels.telegram.bots[{i}].{field}"),
            reason: match variable {
                Some(name) => format!("the variable {name} is not set (environment or .env)"),
                None => "is required".to_string(),
            },
        };
        if bot.token.is_none() {
            return Err(missing("token", &bot.token_env));
        }
        if telegram.receive_mode == "webhook" && bot.webhook_secret.is_none() {
            return Err(missing("webhook_secret", &bot.webhook_secret_env));
        }
    }
    Ok(())
}

/// Starts every enabled bot: a dispatcher thread each, a poller thread in polling mode, and a
/// short-lived set-up thread (`getMe`, `setMyCommands`, `setWebhook`). Returns at once; a
/// Bot API that is down only makes those threads retry.
pub fn start(app: &Arc<App>) -> Result<()> {
    check(&app.config)?;
    let bots: Vec<TelegramBot> = app
        .config
        .channels
        .telegram
        .active_bots()
        .cloned()
        .collect();
    for config in bots {
        let status = Arc::new(Mutex::new(Status {
            username: config.username.clone(),
            ..Status::default()
        }));
        let events = bot::spawn(app, &config, Arc::clone(&status))?;
        app.telegram
            .register(&config.name, Handle { events, status });
        log::info!(
            "telegram bot {} started ({} mode)",
            config.name,
            app.config.channels.telegram.receive_mode
        );
    }
    Ok(())
}

/// Checks a webhook delivery for `bot`: the bot must be an enabled webhook bot (404
/// otherwise, so that the route reveals nothing), and `secret` (the
/// `X-Telegram-Bot-Api-Secret-Token` header) must equal its secret (401), compared in
/// constant time over hashes so neither content nor length leaks.
pub fn authorize_webhook(config: &Config, bot: &str, secret: Option<&str>) -> Result<()> {
    let telegram = &config.channels.telegram;
    let not_found = || Error::NotFound(format!("no Telegram webhook for bot `{bot}`"));
    let bot = telegram.bot(bot).ok_or_else(not_found)?;
    if telegram.receive_mode != "webhook" {
        return Err(not_found());
    }
    let expected = bot.webhook_secret.as_deref().ok_or_else(not_found)?;
    let given = secret.unwrap_or_default();
    let same = crate::crypto::constant_time_eq(
        &crate::crypto::sha256(given.as_bytes()),
        &crate::crypto::sha256(expected.as_bytes()),
    );
    if !same {
        return Err(Error::Unauthorized(
            "invalid or missing X-Telegram-Bot-Api-Secret-Token".to_string(),
        ));
    }
    Ok(())
}

/// A webhook delivery, already authorized: stores the update in the inbox and wakes the bot.
/// Returns false for a redelivery (already stored). Telegram gets its 200 only after the
/// update is stored, and long before any turn ends (the original answered after the turn,
/// so Telegram timed out and delivered again: duplicate turns).
pub fn receive(app: &App, bot: &str, update: &Value) -> Result<bool> {
    if update.get("update_id").and_then(Value::as_i64).is_none() {
        return Err(Error::bad_param(
            "update_id",
            "a Telegram update needs an integer `update_id`",
        ));
    }
    let stored = store_updates(&app.store, bot, std::slice::from_ref(update), false)?;
    app.telegram.wake(bot);
    Ok(stored > 0)
}

/// Stores `updates` for `bot` in one transaction (redeliveries are dropped); in polling mode
/// the offset advances past them in the same transaction, so an update is confirmed to
/// Telegram (by the next `getUpdates`) only once it is stored. Returns how many were new.
fn store_updates(
    store: &crate::store::Store,
    bot: &str,
    updates: &[Value],
    advance_offset: bool,
) -> Result<usize> {
    let now = crate::clock::now_ms();
    store.write(|tx| {
        let mut stored = 0;
        let mut next = None;
        for update in updates {
            let Some(update_id) = update.get("update_id").and_then(Value::as_i64) else {
                continue;
            };
            let chat_id = commands::parse_update(update).and_then(|u| u.chat_id());
            let row = StoredUpdate {
                bot: bot.to_string(),
                update_id,
                chat_id,
                body: update.to_string(),
                state: UpdateState::Pending,
                received_at: now,
            };
            if table::insert_update(tx, &row)? {
                stored += 1;
            }
            next = next.max(Some(update_id + 1));
        }
        if let (true, Some(next)) = (advance_offset, next) {
            table::advance_offset(tx, bot, next)?;
        }
        Ok(stored)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(toml: &str) -> Config {
        let dir = std::env::temp_dir().join(crate::crypto::random_id("codara-tg-config-"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("codara.toml"), toml).unwrap();
        let config = Config::load_from(
            &crate::config::Overrides::default(),
            &Default::default(),
            &dir,
        )
        .unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        config
    }

    const WEBHOOK: &str = "[channels.telegram]\nenabled = true\nreceive_mode = \"webhook\"\n\
        [[channels.telegram.bots]]\nname = \"main\"\ntoken = \"1:x\"\nwebhook_secret = \"s3cret\"\n";

    #[test]
    fn webhook_authorization() {
        let config = config(WEBHOOK);
        let status = |bot: &str, secret: Option<&str>| {
            authorize_webhook(&config, bot, secret).map_or_else(|e| e.status(), |()| 200)
        };
        assert_eq!(status("main", Some("s3cret")), 200);
        assert_eq!(status("main", Some("s3cre")), 401);
        assert_eq!(status("main", Some("s3cret ")), 401);
        assert_eq!(status("main", None), 401);
        assert_eq!(status("other", Some("s3cret")), 404);
        let polling = self::config(&WEBHOOK.replace("webhook\"", "polling\""));
        assert_eq!(
            authorize_webhook(&polling, "main", Some("s3cret"))
                .unwrap_err()
                .status(),
            404
        );
    }

    #[test]
    fn serving_needs_the_named_variables() {
        let config = config(
            "[channels.telegram]\nenabled = true\n[[channels.telegram.bots]]\nname = \"main\"\n\
             token_env = \"NOT_SET_HERE\"\n",
        );
        let error = check(&config).unwrap_err().to_string();
        assert!(
            error.contains("bots[0].token: the variable NOT_SET_HERE is not set"),
            "{error}"
        );
        check(&self::config(WEBHOOK)).unwrap();
    }

    #[test]
    fn storing_updates_advances_the_offset_once_stored() {
        let dir = std::env::temp_dir().join(crate::crypto::random_id("codara-tg-store-"));
        std::fs::create_dir_all(&dir).unwrap();
        let store = crate::store::Store::open(&dir.join("codara.db")).unwrap();
        let updates = [
            serde_json::json!({"update_id": 5, "message": {"chat": {"id": 9}}}),
            serde_json::json!({"update_id": 6}),
            serde_json::json!({"no": "id"}),
        ];
        assert_eq!(store_updates(&store, "main", &updates, true).unwrap(), 2);
        assert_eq!(store_updates(&store, "main", &updates, true).unwrap(), 0);
        let (offset, pending) = store
            .read(|conn| {
                Ok((
                    table::offset(conn, "main")?,
                    table::updates_in(conn, "main", UpdateState::Pending, 10)?,
                ))
            })
            .unwrap();
        assert_eq!(offset, 7);
        assert_eq!(pending[0].chat_id, Some(9));
        assert_eq!(pending[1].chat_id, None);
        let _ = std::fs::remove_dir_all(dir);
    }
}
