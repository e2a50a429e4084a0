//! The Telegram channel's tables: `telegram_link_tokens`, `telegram_links`, `telegram_chats`,
//! `telegram_updates` (the inbox both receive modes write and the bot threads work from) and
//! `telegram_offsets` (the polling offset).
//!
//! Owns those five tables (one domain noun, one file). Stores what `telegram` decides: who may
//! link, what an update means and when it is handled are decided there, never here.

use crate::error::{Error, Result};
use rusqlite::{Connection, OptionalExtension, Row};

super::text_enum! {
    /// Where an update stands in the inbox.
    #[derive(Default)]
    pub enum UpdateState ("telegram update state") {
        /// Received, not handled yet (waiting for its chat or a free turn).
        #[default]
        Pending = "pending",
        /// Its turn is running.
        Running = "running",
        /// Handled; kept a day so that a redelivery is recognized.
        Done = "done",
    }
}

/// A one-time link token (only its hash).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkToken {
    /// `uag_clt_<12hex>`.
    pub id: String,
    /// SHA-256 hex of the raw token.
    pub token_hash: String,
    /// The user it links to.
    pub user_id: String,
    /// The bot it is valid for.
    pub bot: String,
    /// The actor that issued it.
    pub created_by: String,
    /// Epoch ms.
    pub created_at: i64,
    /// Epoch ms.
    pub expires_at: i64,
    /// Epoch ms, once used.
    pub consumed_at: Option<i64>,
}

/// A Telegram account linked to a user on one bot.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Link {
    /// `uag_tgl_<12hex>`.
    pub id: String,
    /// The bot.
    pub bot: String,
    /// Telegram's user id.
    pub telegram_user_id: i64,
    /// The @username at link time, if any.
    pub telegram_username: Option<String>,
    /// The Codara user.
    pub user_id: String,
    /// The link token that made it.
    pub token_id: String,
    /// Epoch ms.
    pub linked_at: i64,
}

/// What a linked user works on in one chat.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Chat {
    /// The bot.
    pub bot: String,
    /// Telegram's chat id.
    pub chat_id: i64,
    /// The Codara user.
    pub user_id: String,
    /// The current project (`None`: the user's base workspace).
    pub project: Option<String>,
    /// The conversation generation; `/new` increments it.
    pub generation: i64,
    /// Epoch ms.
    pub updated_at: i64,
}

/// One update in the inbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredUpdate {
    /// The bot that received it.
    pub bot: String,
    /// Telegram's `update_id`.
    pub update_id: i64,
    /// The chat it belongs to, when it has one.
    pub chat_id: Option<i64>,
    /// The update as Telegram sent it (JSON).
    pub body: String,
    /// Pending, running or done.
    pub state: UpdateState,
    /// Epoch ms.
    pub received_at: i64,
}

const TOKEN_COLUMNS: &str =
    "id, token_hash, user_id, bot, created_by, created_at, expires_at, consumed_at";
const LINK_COLUMNS: &str =
    "id, bot, telegram_user_id, telegram_username, user_id, token_id, linked_at";
const CHAT_COLUMNS: &str = "bot, chat_id, user_id, project, generation, updated_at";
const UPDATE_COLUMNS: &str = "bot, update_id, chat_id, body, state, received_at";

fn token_from_row(row: &Row<'_>) -> rusqlite::Result<LinkToken> {
    Ok(LinkToken {
        id: row.get(0)?,
        token_hash: row.get(1)?,
        user_id: row.get(2)?,
        bot: row.get(3)?,
        created_by: row.get(4)?,
        created_at: row.get(5)?,
        expires_at: row.get(6)?,
        consumed_at: row.get(7)?,
    })
}

fn link_from_row(row: &Row<'_>) -> rusqlite::Result<Link> {
    Ok(Link {
        id: row.get(0)?,
        bot: row.get(1)?,
        telegram_user_id: row.get(2)?,
        telegram_username: row.get(3)?,
        user_id: row.get(4)?,
        token_id: row.get(5)?,
        linked_at: row.get(6)?,
    })
}

fn chat_from_row(row: &Row<'_>) -> rusqlite::Result<Chat> {
    Ok(Chat {
        bot: row.get(0)?,
        chat_id: row.get(1)?,
        user_id: row.get(2)?,
        project: row.get(3)?,
        generation: row.get(4)?,
        updated_at: row.get(5)?,
    })
}

fn update_from_row(row: &Row<'_>) -> rusqlite::Result<StoredUpdate> {
    Ok(StoredUpdate {
        bot: row.get(0)?,
        update_id: row.get(1)?,
        chat_id: row.get(2)?,
        body: row.get(3)?,
        state: row.get(4)?,
        received_at: row.get(5)?,
    })
}

/// Stores a new link token.
pub fn insert_link_token(conn: &Connection, token: &LinkToken) -> Result<()> {
    conn.prepare_cached(&format!(
        "INSERT INTO telegram_link_tokens ({TOKEN_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
    ))
    .and_then(|mut stmt| {
        stmt.execute(rusqlite::params![
            token.id,
            token.token_hash,
            token.user_id,
            token.bot,
            token.created_by,
            token.created_at,
            token.expires_at,
            token.consumed_at,
        ])
    })
    .map(|_| ())
    .map_err(Error::sql("storing a link token"))
}

/// The link token of `bot` whose hash is `token_hash`, used or not.
pub fn find_link_token(
    conn: &Connection,
    bot: &str,
    token_hash: &str,
) -> Result<Option<LinkToken>> {
    conn.prepare_cached(&format!(
        "SELECT {TOKEN_COLUMNS} FROM telegram_link_tokens WHERE bot = ?1 AND token_hash = ?2"
    ))
    .and_then(|mut stmt| stmt.query_row([bot, token_hash], token_from_row).optional())
    .map_err(Error::sql("reading a link token"))
}

/// Marks a token used; false when it already was (a concurrent use won).
pub fn consume_link_token(conn: &Connection, id: &str, now: i64) -> Result<bool> {
    conn.prepare_cached(
        "UPDATE telegram_link_tokens SET consumed_at = ?2 WHERE id = ?1 AND consumed_at IS NULL",
    )
    .and_then(|mut stmt| stmt.execute(rusqlite::params![id, now]))
    .map(|changed| changed == 1)
    .map_err(Error::sql("using a link token"))
}

/// The link of a Telegram account on `bot`.
pub fn find_link(conn: &Connection, bot: &str, telegram_user_id: i64) -> Result<Option<Link>> {
    conn.prepare_cached(&format!(
        "SELECT {LINK_COLUMNS} FROM telegram_links WHERE bot = ?1 AND telegram_user_id = ?2"
    ))
    .and_then(|mut stmt| {
        stmt.query_row(rusqlite::params![bot, telegram_user_id], link_from_row)
            .optional()
    })
    .map_err(Error::sql("reading a Telegram link"))
}

/// One link by id.
pub fn get_link(conn: &Connection, id: &str) -> Result<Option<Link>> {
    conn.prepare_cached(&format!(
        "SELECT {LINK_COLUMNS} FROM telegram_links WHERE id = ?1"
    ))
    .and_then(|mut stmt| stmt.query_row([id], link_from_row).optional())
    .map_err(Error::sql("reading a Telegram link"))
}

/// A user's links, oldest first.
pub fn links_for_user(conn: &Connection, user_id: &str) -> Result<Vec<Link>> {
    conn.prepare_cached(&format!(
        "SELECT {LINK_COLUMNS} FROM telegram_links WHERE user_id = ?1 ORDER BY linked_at, id"
    ))
    .and_then(|mut stmt| stmt.query_map([user_id], link_from_row)?.collect())
    .map_err(Error::sql("listing Telegram links"))
}

/// Links on `bot`.
pub fn count_links(conn: &Connection, bot: &str) -> Result<i64> {
    conn.prepare_cached("SELECT COUNT(*) FROM telegram_links WHERE bot = ?1")
        .and_then(|mut stmt| stmt.query_row([bot], |row| row.get(0)))
        .map_err(Error::sql("counting Telegram links"))
}

/// Stores `link`, replacing the account's earlier link on the same bot (returned).
pub fn replace_link(conn: &Connection, link: &Link) -> Result<Option<Link>> {
    let previous = find_link(conn, &link.bot, link.telegram_user_id)?;
    if let Some(previous) = &previous {
        delete_link(conn, &previous.id)?;
    }
    conn.prepare_cached(&format!(
        "INSERT INTO telegram_links ({LINK_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"
    ))
    .and_then(|mut stmt| {
        stmt.execute(rusqlite::params![
            link.id,
            link.bot,
            link.telegram_user_id,
            link.telegram_username,
            link.user_id,
            link.token_id,
            link.linked_at,
        ])
    })
    .map_err(Error::sql("storing a Telegram link"))?;
    Ok(previous)
}

/// Deletes a link; false when there was none.
pub fn delete_link(conn: &Connection, id: &str) -> Result<bool> {
    conn.prepare_cached("DELETE FROM telegram_links WHERE id = ?1")
        .and_then(|mut stmt| stmt.execute([id]))
        .map(|n| n == 1)
        .map_err(Error::sql("deleting a Telegram link"))
}

/// Removes every link of `user_id` and the link tokens issued for it that were never used (a
/// deleted user's Telegram accounts must not stay bound to it); the number of links removed.
pub fn delete_links_for_user(conn: &Connection, user_id: &str) -> Result<usize> {
    conn.prepare_cached(
        "DELETE FROM telegram_link_tokens WHERE user_id = ?1 AND consumed_at IS NULL",
    )
    .and_then(|mut stmt| stmt.execute([user_id]))
    .and_then(|_| {
        conn.prepare_cached("DELETE FROM telegram_links WHERE user_id = ?1")
            .and_then(|mut stmt| stmt.execute([user_id]))
    })
    .map_err(Error::sql("deleting a user's Telegram links"))
}

/// What `user_id` works on in `chat_id` of `bot`.
pub fn get_chat(conn: &Connection, bot: &str, chat_id: i64, user_id: &str) -> Result<Option<Chat>> {
    conn.prepare_cached(&format!(
        "SELECT {CHAT_COLUMNS} FROM telegram_chats WHERE bot = ?1 AND chat_id = ?2 AND user_id = ?3"
    ))
    .and_then(|mut stmt| {
        stmt.query_row(rusqlite::params![bot, chat_id, user_id], chat_from_row)
            .optional()
    })
    .map_err(Error::sql("reading a Telegram chat"))
}

/// Stores a chat's state.
pub fn upsert_chat(conn: &Connection, chat: &Chat) -> Result<()> {
    conn.prepare_cached(&format!(
        "INSERT INTO telegram_chats ({CHAT_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
         ON CONFLICT (bot, chat_id, user_id) DO UPDATE SET project = excluded.project, \
         generation = excluded.generation, updated_at = excluded.updated_at"
    ))
    .and_then(|mut stmt| {
        stmt.execute(rusqlite::params![
            chat.bot,
            chat.chat_id,
            chat.user_id,
            chat.project,
            chat.generation,
            chat.updated_at,
        ])
    })
    .map(|_| ())
    .map_err(Error::sql("storing a Telegram chat"))
}

/// Puts an update into the inbox; false when it is there already (a redelivery).
pub fn insert_update(conn: &Connection, update: &StoredUpdate) -> Result<bool> {
    conn.prepare_cached(&format!(
        "INSERT OR IGNORE INTO telegram_updates ({UPDATE_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6)"
    ))
    .and_then(|mut stmt| {
        stmt.execute(rusqlite::params![
            update.bot,
            update.update_id,
            update.chat_id,
            update.body,
            update.state,
            update.received_at,
        ])
    })
    .map(|n| n == 1)
    .map_err(Error::sql("storing a Telegram update"))
}

/// The updates of `bot` in `state`, oldest first, at most `limit`.
pub fn updates_in(
    conn: &Connection,
    bot: &str,
    state: UpdateState,
    limit: i64,
) -> Result<Vec<StoredUpdate>> {
    conn.prepare_cached(&format!(
        "SELECT {UPDATE_COLUMNS} FROM telegram_updates WHERE bot = ?1 AND state = ?2 \
         ORDER BY update_id LIMIT ?3"
    ))
    .and_then(|mut stmt| {
        stmt.query_map(rusqlite::params![bot, state, limit], update_from_row)?
            .collect()
    })
    .map_err(Error::sql("listing Telegram updates"))
}

/// Updates of `bot` in `state`.
pub fn count_updates(conn: &Connection, bot: &str, state: UpdateState) -> Result<i64> {
    conn.prepare_cached("SELECT COUNT(*) FROM telegram_updates WHERE bot = ?1 AND state = ?2")
        .and_then(|mut stmt| stmt.query_row(rusqlite::params![bot, state], |row| row.get(0)))
        .map_err(Error::sql("counting Telegram updates"))
}

/// Moves an update to `state`.
pub fn set_update_state(
    conn: &Connection,
    bot: &str,
    update_id: i64,
    state: UpdateState,
) -> Result<()> {
    conn.prepare_cached("UPDATE telegram_updates SET state = ?3 WHERE bot = ?1 AND update_id = ?2")
        .and_then(|mut stmt| stmt.execute(rusqlite::params![bot, update_id, state]))
        .map(|_| ())
        .map_err(Error::sql("updating a Telegram update"))
}

/// Forgets handled updates received before `before_ms`; returns how many.
pub fn prune_updates(conn: &Connection, bot: &str, before_ms: i64) -> Result<usize> {
    conn.prepare_cached(
        "DELETE FROM telegram_updates WHERE bot = ?1 AND state = 'done' AND received_at < ?2",
    )
    .and_then(|mut stmt| stmt.execute(rusqlite::params![bot, before_ms]))
    .map_err(Error::sql("pruning Telegram updates"))
}

/// The next update id `getUpdates` should ask for (0 before the first).
pub fn offset(conn: &Connection, bot: &str) -> Result<i64> {
    conn.prepare_cached("SELECT next_update_id FROM telegram_offsets WHERE bot = ?1")
        .and_then(|mut stmt| stmt.query_row([bot], |row| row.get(0)).optional())
        .map(Option::unwrap_or_default)
        .map_err(Error::sql("reading the Telegram offset"))
}

/// Moves the offset forward to `next` (never back).
pub fn advance_offset(conn: &Connection, bot: &str, next: i64) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO telegram_offsets (bot, next_update_id) VALUES (?1, ?2) \
         ON CONFLICT (bot) DO UPDATE SET \
         next_update_id = MAX(next_update_id, excluded.next_update_id)",
    )
    .and_then(|mut stmt| stmt.execute(rusqlite::params![bot, next]))
    .map(|_| ())
    .map_err(Error::sql("storing the Telegram offset"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(conn: &Connection, id: &str) {
        conn.execute(
            "INSERT INTO users (id, email, display_name, workspace_path, max_concurrency, \
             created_by, created_at, updated_at) VALUES (?1, ?1 || '@x', 'n', '/w', 1, 't', 1, 1)",
            [id],
        )
        .unwrap();
    }

    fn update(id: i64, chat: i64) -> StoredUpdate {
        StoredUpdate {
            bot: "main".into(),
            update_id: id,
            chat_id: Some(chat),
            body: "{}".into(),
            state: UpdateState::Pending,
            received_at: 1,
        }
    }

    #[test]
    fn a_token_is_used_once() {
        let conn = crate::store::in_memory();
        user(&conn, "u1");
        let token = LinkToken {
            id: "t1".into(),
            token_hash: "h".into(),
            user_id: "u1".into(),
            bot: "main".into(),
            created_by: "operator".into(),
            created_at: 1,
            expires_at: 10,
            consumed_at: None,
        };
        insert_link_token(&conn, &token).unwrap();
        assert_eq!(find_link_token(&conn, "other", "h").unwrap(), None);
        assert_eq!(find_link_token(&conn, "main", "h").unwrap(), Some(token));
        assert!(consume_link_token(&conn, "t1", 5).unwrap());
        assert!(!consume_link_token(&conn, "t1", 6).unwrap());
        let used = find_link_token(&conn, "main", "h").unwrap().unwrap();
        assert_eq!(used.consumed_at, Some(5));
    }

    #[test]
    fn relinking_replaces_the_account_link() {
        let conn = crate::store::in_memory();
        user(&conn, "u1");
        user(&conn, "u2");
        let link = |id: &str, user: &str| Link {
            id: id.into(),
            bot: "main".into(),
            telegram_user_id: 42,
            user_id: user.into(),
            token_id: "t".into(),
            linked_at: 1,
            ..Link::default()
        };
        assert_eq!(replace_link(&conn, &link("l1", "u1")).unwrap(), None);
        let previous = replace_link(&conn, &link("l2", "u2")).unwrap().unwrap();
        assert_eq!(previous.id, "l1");
        assert_eq!(find_link(&conn, "main", 42).unwrap().unwrap().user_id, "u2");
        assert_eq!(count_links(&conn, "main").unwrap(), 1);
        assert!(links_for_user(&conn, "u1").unwrap().is_empty());
        assert!(delete_link(&conn, "l2").unwrap());
        assert!(!delete_link(&conn, "l2").unwrap());
    }

    #[test]
    fn the_inbox_drops_redeliveries_and_keeps_order() {
        let conn = crate::store::in_memory();
        assert!(insert_update(&conn, &update(7, 1)).unwrap());
        assert!(insert_update(&conn, &update(5, 2)).unwrap());
        assert!(
            !insert_update(&conn, &update(7, 1)).unwrap(),
            "a redelivery"
        );
        let pending = updates_in(&conn, "main", UpdateState::Pending, 10).unwrap();
        let ids: Vec<i64> = pending.iter().map(|u| u.update_id).collect();
        assert_eq!(ids, [5, 7]);
        set_update_state(&conn, "main", 5, UpdateState::Done).unwrap();
        assert_eq!(
            count_updates(&conn, "main", UpdateState::Pending).unwrap(),
            1
        );
        assert_eq!(prune_updates(&conn, "main", 2).unwrap(), 1);
        assert!(!insert_update(&conn, &update(7, 1)).unwrap(), "still known");
    }

    #[test]
    fn the_offset_only_moves_forward() {
        let conn = crate::store::in_memory();
        assert_eq!(offset(&conn, "main").unwrap(), 0);
        advance_offset(&conn, "main", 10).unwrap();
        advance_offset(&conn, "main", 4).unwrap();
        assert_eq!(offset(&conn, "main").unwrap(), 10);
        assert_eq!(offset(&conn, "other").unwrap(), 0);
    }

    #[test]
    fn chats_keep_project_and_generation() {
        let conn = crate::store::in_memory();
        user(&conn, "u1");
        let mut chat = Chat {
            bot: "main".into(),
            chat_id: 9,
            user_id: "u1".into(),
            project: None,
            generation: 1,
            updated_at: 1,
        };
        upsert_chat(&conn, &chat).unwrap();
        chat.project = Some("demo".into());
        chat.generation = 2;
        upsert_chat(&conn, &chat).unwrap();
        assert_eq!(get_chat(&conn, "main", 9, "u1").unwrap(), Some(chat));
        assert_eq!(get_chat(&conn, "main", 9, "u2").unwrap(), None);
    }
}
