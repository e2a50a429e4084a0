-- The Telegram channel (issue 14). Every row is keyed by the bot's configured name.

-- One-time link tokens an operator issues for a user: only the SHA-256 of the raw token is kept.
CREATE TABLE telegram_link_tokens (
    id          TEXT PRIMARY KEY,
    token_hash  TEXT NOT NULL UNIQUE,
    user_id     TEXT NOT NULL REFERENCES users (id),
    bot         TEXT NOT NULL,
    created_by  TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    consumed_at INTEGER
);
CREATE INDEX telegram_link_tokens_user ON telegram_link_tokens (user_id);

-- A Telegram account bound to a Codara user, per bot.
CREATE TABLE telegram_links (
    id                TEXT PRIMARY KEY,
    bot               TEXT NOT NULL,
    telegram_user_id  INTEGER NOT NULL,
    telegram_username TEXT,
    user_id           TEXT NOT NULL REFERENCES users (id),
    token_id          TEXT NOT NULL,
    linked_at         INTEGER NOT NULL,
    UNIQUE (bot, telegram_user_id)
);
CREATE INDEX telegram_links_user ON telegram_links (user_id);

-- What a linked user works on in one chat: the project (NULL: their base workspace) and the
-- conversation generation (`/new` starts the next one, so the session label changes).
CREATE TABLE telegram_chats (
    bot        TEXT NOT NULL,
    chat_id    INTEGER NOT NULL,
    user_id    TEXT NOT NULL REFERENCES users (id),
    project    TEXT,
    generation INTEGER NOT NULL DEFAULT 1,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (bot, chat_id, user_id)
);

-- Every update received (both modes), until a day after it was handled: `pending` until it is
-- handled, `running` while its turn runs, then `done`. The primary key drops redeliveries.
CREATE TABLE telegram_updates (
    bot         TEXT NOT NULL,
    update_id   INTEGER NOT NULL,
    chat_id     INTEGER,
    body        TEXT NOT NULL,
    state       TEXT NOT NULL,
    received_at INTEGER NOT NULL,
    PRIMARY KEY (bot, update_id)
);
CREATE INDEX telegram_updates_state ON telegram_updates (bot, state, update_id);

-- Polling mode: the next update id to ask `getUpdates` for, advanced in the transaction that
-- stores the updates before it.
CREATE TABLE telegram_offsets (
    bot            TEXT PRIMARY KEY,
    next_update_id INTEGER NOT NULL
);
