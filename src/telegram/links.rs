//! Linking Telegram accounts to users: one-time link tokens the operator issues for a user and
//! bot, `/link <token>` binding the sender's Telegram user id, and unlinking. Each is one
//! transaction with its audit entry.
//!
//! Owns the token format (24 base62 characters, only the SHA-256 stored) and the rules: a
//! token is valid once, before it expires, on the bot it was issued for, for an active user.
//! Must not talk to Telegram or parse requests.

use crate::audit::{self, Actor};
use crate::config::TelegramConfig;
use crate::error::{Error, Result};
use crate::store::telegram::{self as table, Link, LinkToken};
use crate::store::users::{User, UserStatus};
use crate::store::{self, Store};

/// Minutes a token is valid when the operator does not say.
pub const DEFAULT_MINUTES: i64 = 30;

/// The longest validity: a week.
pub const MAX_MINUTES: i64 = 7 * 24 * 60;

/// Characters of a raw token (base62: about 143 bits).
const TOKEN_LEN: usize = 24;

/// A token just issued: the row and the raw token, shown once.
#[derive(Debug)]
pub struct IssuedToken {
    /// The stored token (hash only).
    pub token: LinkToken,
    /// The raw token for `/link`.
    pub raw: String,
}

/// The bot a token is for: `requested` when it is an enabled bot of an enabled channel, or the
/// only such bot when none is named.
pub fn resolve_bot<'a>(config: &'a TelegramConfig, requested: Option<&str>) -> Result<&'a str> {
    if !config.enabled {
        return Err(Error::Conflict(
            "the Telegram channel is not enabled ([channels.telegram].enabled)".to_string(),
        ));
    }
    match requested {
        Some(name) => config
            .bot(name)
            .map(|bot| bot.name.as_str())
            .ok_or_else(|| Error::NotFound(format!("no enabled Telegram bot named `{name}`"))),
        None => {
            let bots: Vec<&str> = config.active_bots().map(|b| b.name.as_str()).collect();
            match bots.as_slice() {
                [only] => Ok(only),
                [] => Err(Error::Conflict(
                    "the Telegram channel has no enabled bot".to_string(),
                )),
                several => Err(Error::bad_param(
                    "bot_name",
                    format!("`bot_name` is required: one of {}", several.join(", ")),
                )),
            }
        }
    }
}

/// Issues a link token for `user_id` on `bot` (already resolved), valid for `minutes`.
pub fn issue_token(
    store: &Store,
    user_id: &str,
    bot: &str,
    minutes: Option<i64>,
    actor: &Actor,
    request_id: Option<&str>,
) -> Result<IssuedToken> {
    let minutes = minutes.unwrap_or(DEFAULT_MINUTES);
    if !(1..=MAX_MINUTES).contains(&minutes) {
        return Err(Error::bad_param(
            "expires_in_minutes",
            format!("`expires_in_minutes` must be between 1 and {MAX_MINUTES}"),
        ));
    }
    let raw = crate::crypto::random_base62(TOKEN_LEN)
        .map_err(|e| Error::Internal(format!("no randomness for a link token: {e}")))?;
    let now = crate::clock::now_ms();
    let token = LinkToken {
        id: crate::crypto::random_id("uag_clt_"),
        token_hash: crate::crypto::sha256_hex(raw.as_bytes()),
        user_id: user_id.to_string(),
        bot: bot.to_string(),
        created_by: actor.as_string(),
        created_at: now,
        expires_at: now + minutes * 60_000,
        consumed_at: None,
    };
    store.write(|tx| {
        let user = store::users::get(tx, user_id)?
            .ok_or_else(|| Error::NotFound(format!("no user {user_id}")))?;
        if user.status != UserStatus::Active {
            return Err(Error::Conflict(format!(
                "user {user_id} is {}: only active users can be linked",
                user.status
            )));
        }
        table::insert_link_token(tx, &token)?;
        audit::record(
            tx,
            audit::Record {
                actor,
                action: "telegram.link_token.created",
                target_type: "user",
                target_id: user_id,
                before: None,
                after: Some(audit::state(&audit::TelegramLinkTokenState::from(&token))?),
                request_id,
            },
        )
    })?;
    Ok(IssuedToken { token, raw })
}

/// Why `/link` did not link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// No such token on this bot, or already used.
    Invalid,
    /// The token's time is over.
    Expired,
    /// The token's user is suspended or deleted.
    Inactive,
}

/// What `/link` did.
#[derive(Debug, Clone)]
pub enum Linking {
    /// Linked (replacing an earlier link of the account on this bot, if any).
    Linked(Box<User>),
    /// Not linked.
    Refused(Refused),
}

/// `/link <raw>` from Telegram user `telegram_user_id` on `bot`: uses the token and binds the
/// account to the token's user, in one transaction with the `telegram.linked` entry.
pub fn link(
    store: &Store,
    bot: &str,
    raw: &str,
    telegram_user_id: i64,
    telegram_username: Option<&str>,
    request_id: Option<&str>,
) -> Result<Linking> {
    let hash = crate::crypto::sha256_hex(raw.trim().as_bytes());
    let now = crate::clock::now_ms();
    store.write(|tx| {
        let Some(token) = table::find_link_token(tx, bot, &hash)? else {
            return Ok(Linking::Refused(Refused::Invalid));
        };
        if token.consumed_at.is_some() {
            return Ok(Linking::Refused(Refused::Invalid));
        }
        if token.expires_at <= now {
            return Ok(Linking::Refused(Refused::Expired));
        }
        let user = match store::users::get(tx, &token.user_id)? {
            Some(user) if user.status == UserStatus::Active => user,
            _ => return Ok(Linking::Refused(Refused::Inactive)),
        };
        if !table::consume_link_token(tx, &token.id, now)? {
            return Ok(Linking::Refused(Refused::Invalid));
        }
        let link = Link {
            id: crate::crypto::random_id("uag_tgl_"),
            bot: bot.to_string(),
            telegram_user_id,
            telegram_username: telegram_username.map(str::to_string),
            user_id: user.id.clone(),
            token_id: token.id.clone(),
            linked_at: now,
        };
        let previous = table::replace_link(tx, &link)?;
        let before = previous
            .as_ref()
            .map(|p| audit::state(&audit::TelegramLinkState::from(p)))
            .transpose()?;
        audit::record(
            tx,
            audit::Record {
                actor: &Actor::User(user.id.clone()),
                action: "telegram.linked",
                target_type: "telegram_link",
                target_id: &link.id,
                before,
                after: Some(audit::state(&audit::TelegramLinkState::from(&link))?),
                request_id,
            },
        )?;
        Ok(Linking::Linked(Box::new(user)))
    })
}

/// Removes link `link_id` of `user_id` (a 404 for another user's link), with its
/// `telegram.unlinked` entry.
pub fn unlink(
    store: &Store,
    user_id: &str,
    link_id: &str,
    actor: &Actor,
    request_id: Option<&str>,
) -> Result<Link> {
    store.write(|tx| {
        let link = table::get_link(tx, link_id)?
            .filter(|link| link.user_id == user_id)
            .ok_or_else(|| Error::NotFound(format!("user {user_id} has no link {link_id}")))?;
        table::delete_link(tx, &link.id)?;
        audit::record(
            tx,
            audit::Record {
                actor,
                action: "telegram.unlinked",
                target_type: "telegram_link",
                target_id: &link.id,
                before: Some(audit::state(&audit::TelegramLinkState::from(&link))?),
                after: None,
                request_id,
            },
        )?;
        Ok(link)
    })
}

/// The user a Telegram account is linked to on `bot` (whatever their status).
pub fn linked_user(store: &Store, bot: &str, telegram_user_id: i64) -> Result<Option<User>> {
    store.read(
        |conn| match table::find_link(conn, bot, telegram_user_id)? {
            Some(link) => store::users::get(conn, &link.user_id),
            None => Ok(None),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store_with_user(status: &str) -> (Store, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(crate::crypto::random_id("codara-links-"));
        std::fs::create_dir_all(&dir).unwrap();
        let store = Store::open(&dir.join("codara.db")).unwrap();
        store
            .write(|tx| {
                tx.execute(
                    "INSERT INTO users (id, email, display_name, status, workspace_path, \
                     max_concurrency, created_by, created_at, updated_at) \
                     VALUES ('u1', 'u1@x', 'U One', ?1, '/w', 1, 't', 1, 1)",
                    [status],
                )
                .map_err(Error::sql("test user"))
            })
            .unwrap();
        (store, dir)
    }

    fn audit_actions(store: &Store) -> Vec<String> {
        store
            .read(|conn| {
                let mut stmt = conn
                    .prepare("SELECT action FROM audit_log ORDER BY rowid")
                    .unwrap();
                let rows = stmt.query_map([], |r| r.get(0)).unwrap();
                Ok(rows.map(|r| r.unwrap()).collect())
            })
            .unwrap()
    }

    #[test]
    fn a_token_links_once_on_its_bot() {
        let (store, dir) = store_with_user("active");
        let issued = issue_token(&store, "u1", "main", None, &Actor::Operator, None).unwrap();
        assert_eq!(issued.raw.len(), 24);
        assert_ne!(issued.token.token_hash, issued.raw);
        let refused = |outcome: Linking| match outcome {
            Linking::Refused(why) => why,
            Linking::Linked(user) => panic!("linked {}", user.id),
        };
        assert_eq!(
            refused(link(&store, "other", &issued.raw, 42, None, None).unwrap()),
            Refused::Invalid
        );
        match link(&store, "main", &issued.raw, 42, Some("ann"), None).unwrap() {
            Linking::Linked(user) => assert_eq!(user.id, "u1"),
            Linking::Refused(why) => panic!("{why:?}"),
        }
        assert_eq!(
            refused(link(&store, "main", &issued.raw, 43, None, None).unwrap()),
            Refused::Invalid,
            "used once"
        );
        assert_eq!(
            linked_user(&store, "main", 42).unwrap().map(|u| u.id),
            Some("u1".to_string())
        );
        assert_eq!(linked_user(&store, "main", 43).unwrap().map(|u| u.id), None);
        let links = store
            .read(|conn| table::links_for_user(conn, "u1"))
            .unwrap();
        assert!(unlink(&store, "u2", &links[0].id, &Actor::Operator, None).is_err());
        unlink(&store, "u1", &links[0].id, &Actor::Operator, None).unwrap();
        assert_eq!(linked_user(&store, "main", 42).unwrap().map(|u| u.id), None);
        assert_eq!(
            audit_actions(&store),
            [
                "telegram.link_token.created",
                "telegram.linked",
                "telegram.unlinked"
            ]
        );
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn expired_tokens_and_inactive_users_are_refused() {
        let (store, dir) = store_with_user("active");
        let issued = issue_token(&store, "u1", "main", Some(1), &Actor::Operator, None).unwrap();
        store
            .write(|tx| {
                tx.execute("UPDATE telegram_link_tokens SET expires_at = 0", [])
                    .map_err(Error::sql("expire"))
            })
            .unwrap();
        assert!(matches!(
            link(&store, "main", &issued.raw, 42, None, None).unwrap(),
            Linking::Refused(Refused::Expired)
        ));
        let minutes = issue_token(&store, "u1", "main", Some(0), &Actor::Operator, None);
        assert_eq!(minutes.unwrap_err().status(), 400);
        let issued = issue_token(&store, "u1", "main", None, &Actor::Operator, None).unwrap();
        store
            .write(|tx| {
                tx.execute("UPDATE users SET status = 'suspended'", [])
                    .map_err(Error::sql("suspend"))
            })
            .unwrap();
        assert!(matches!(
            link(&store, "main", &issued.raw, 42, None, None).unwrap(),
            Linking::Refused(Refused::Inactive)
        ));
        let refused = issue_token(&store, "u1", "main", None, &Actor::Operator, None);
        assert_eq!(refused.unwrap_err().status(), 409);
        let _ = std::fs::remove_dir_all(dir);
    }
}
