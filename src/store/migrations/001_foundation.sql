-- Key/value facts about this database (vault check value, creation time).
CREATE TABLE meta (
    key        TEXT PRIMARY KEY,
    value      BLOB NOT NULL,
    updated_at INTEGER NOT NULL
);

-- Operator access tokens minted by POST /management/v1/auth/token; only the SHA-256 is kept.
CREATE TABLE operator_tokens (
    id          TEXT PRIMARY KEY,
    token_hash  TEXT NOT NULL UNIQUE,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    revoked_at  INTEGER,
    client_addr TEXT
);
CREATE INDEX operator_tokens_expires ON operator_tokens (expires_at);
