-- Expired keys deleted by sweeps (kv-sweeper), all sweepers together: one row, added to in the
-- same transaction as each sweep batch's delete, and read by kv-server for /_metrics.
CREATE TABLE kv_sweeps (
    id           INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
    deleted_keys BIGINT  NOT NULL
);
INSERT INTO kv_sweeps (id, deleted_keys) VALUES (1, 0);
