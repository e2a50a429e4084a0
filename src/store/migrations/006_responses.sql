-- Responses API objects (`POST /v1/responses`): one row per response, pointing at the turn that
-- produced it. The turn holds the conversation, reply, usage and changes; this row holds what
-- the Responses API adds: the chain (`previous_response_id`), the session label the chain shares,
-- what a chained request inherits, and the fields echoed back. Deleting a turn (a wiped session)
-- deletes its response.
CREATE TABLE responses (
    id                   TEXT PRIMARY KEY,
    user_id              TEXT NOT NULL,
    turn_id              TEXT NOT NULL REFERENCES turns (id) ON DELETE CASCADE,
    session_id           TEXT,
    session_label        TEXT,
    previous_response_id TEXT,
    provider             TEXT NOT NULL,
    model                TEXT NOT NULL,
    workspace_id         TEXT NOT NULL,
    workspace_root       TEXT,
    instructions         TEXT,
    metadata             TEXT,
    text_format          TEXT NOT NULL,
    tool_choice          TEXT NOT NULL,
    stored               INTEGER NOT NULL,
    status               TEXT NOT NULL,
    error_code           TEXT,
    error_message        TEXT,
    created_at           INTEGER NOT NULL
);
CREATE INDEX responses_user ON responses (user_id, created_at);
CREATE INDEX responses_turn ON responses (turn_id);
