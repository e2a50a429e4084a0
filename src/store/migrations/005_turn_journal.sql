-- Turns in flight: written when a turn starts (after its first snapshot), removed in the same
-- transaction that stores the turn. Rows left by a crash or kill -9 are stored as interrupted
-- turns, with the workspace changes they made, at the next start.
CREATE TABLE turn_journal (
    turn_id           TEXT PRIMARY KEY,
    user_id           TEXT NOT NULL,
    session_key       TEXT,
    client_session_id TEXT,
    provider          TEXT NOT NULL,
    model             TEXT NOT NULL,
    workspace_id      TEXT NOT NULL,
    workspace_path    TEXT NOT NULL,
    request_messages  TEXT NOT NULL,
    prompt            TEXT NOT NULL,
    before_tree       TEXT NOT NULL,
    account_id        TEXT,
    started_at        INTEGER NOT NULL
);
