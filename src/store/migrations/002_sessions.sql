-- Agent sessions: one per user::workspace::client_session_id, bound to one CLI session.
CREATE TABLE sessions (
    id              TEXT PRIMARY KEY,
    session_key     TEXT NOT NULL UNIQUE,
    user_id         TEXT NOT NULL,
    workspace_id    TEXT NOT NULL,
    workspace_path  TEXT NOT NULL,
    client_session_id TEXT NOT NULL,
    provider        TEXT NOT NULL,
    model           TEXT NOT NULL,
    cli_session_id  TEXT,
    account_id      TEXT,
    transcript_hash TEXT NOT NULL,
    request_hash    TEXT NOT NULL,
    message_count   INTEGER NOT NULL,
    turn_count      INTEGER NOT NULL DEFAULT 0,
    dirty           INTEGER NOT NULL DEFAULT 0,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
);
CREATE INDEX sessions_user ON sessions (user_id, updated_at);

-- One row per completed (or failed) turn, written in one transaction after the run.
CREATE TABLE turns (
    id              TEXT PRIMARY KEY,
    session_id      TEXT REFERENCES sessions (id) ON DELETE CASCADE,
    turn_index      INTEGER NOT NULL,
    provider        TEXT NOT NULL,
    model           TEXT NOT NULL,
    cli_session_id  TEXT,
    resumed         INTEGER NOT NULL,
    request_messages TEXT NOT NULL,
    prompt          TEXT NOT NULL,
    reply           TEXT NOT NULL,
    actions         TEXT NOT NULL,
    modified_files  TEXT NOT NULL,
    prompt_tokens   INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    cached_tokens   INTEGER NOT NULL,
    duration_ms     INTEGER NOT NULL,
    exit_code       INTEGER,
    status          TEXT NOT NULL,
    error           TEXT,
    dirty           INTEGER NOT NULL,
    account_id      TEXT,
    workspace_path  TEXT NOT NULL,
    before_tree     TEXT,
    after_tree      TEXT,
    created_at      INTEGER NOT NULL
);
CREATE INDEX turns_session ON turns (session_id, turn_index);
