-- One row per key. Times are unix milliseconds; value is JSON text validated by kv-core.
CREATE TABLE kv_store (
    key        TEXT    NOT NULL PRIMARY KEY,
    value      TEXT    NOT NULL,
    version    BIGINT  NOT NULL,
    created_at BIGINT  NOT NULL,
    updated_at BIGINT  NOT NULL,
    expires_at BIGINT
) WITHOUT ROWID;

CREATE INDEX kv_store_expires_at ON kv_store (expires_at) WHERE expires_at IS NOT NULL;

-- The store-wide version counter (one row), bumped in the same transaction as every write.
CREATE TABLE kv_meta (
    id      INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
    version BIGINT  NOT NULL
);
INSERT INTO kv_meta (id, version) VALUES (1, 0);
