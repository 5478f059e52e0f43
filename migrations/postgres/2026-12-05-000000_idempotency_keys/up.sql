-- The first response to each write sent with an Idempotency-Key, kept for the retention
-- (24 h by default) so that a retry gets it again instead of writing twice. Written in the
-- same transaction as the write itself; expired rows are deleted by the sweeper.
CREATE TABLE kv_idempotency (
    idempotency_key TEXT    NOT NULL PRIMARY KEY,
    -- SHA-256 of the request (method, path and query, conditional headers, API key, body).
    fingerprint     TEXT    NOT NULL,
    status          INTEGER NOT NULL,
    body            TEXT    NOT NULL,
    etag            TEXT,
    expires_at      BIGINT  NOT NULL
);

CREATE INDEX kv_idempotency_expires_at ON kv_idempotency (expires_at);
