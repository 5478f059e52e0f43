-- One row per key. Times are unix milliseconds; value is JSON text validated by kv-core.
-- COLLATE "C" makes key order byte order, as on SQLite.
CREATE TABLE kv_store (
    key        TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    value      TEXT   NOT NULL,
    version    BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    expires_at BIGINT
);

CREATE INDEX kv_store_expires_at ON kv_store (expires_at) WHERE expires_at IS NOT NULL;

-- The store-wide version counter: a sequence, so writers on many servers never wait on one row.
CREATE SEQUENCE kv_version AS BIGINT START WITH 1 MINVALUE 1;
