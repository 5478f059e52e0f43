-- The change log behind GET /_watch: one row per change, written in the same transaction as
-- the write (set, delete, and the removal of an expired row: op 'expired'). All changes of one
-- transaction share its version; seq orders them within it. Kept for --changes-retention and
-- up to a row cap, trimmed oldest first, a version at a time.
CREATE TABLE kv_changes (
    version    BIGINT  NOT NULL,
    seq        BIGINT  NOT NULL,
    key        TEXT COLLATE "C" NOT NULL,
    op         TEXT    NOT NULL,
    value      TEXT,
    expires_at BIGINT,
    at_ms      BIGINT  NOT NULL,
    PRIMARY KEY (version, seq)
);

-- Every change with a version at or below this one has been trimmed: a watcher resuming from
-- an older position has lost history. Starts at the version the log starts after.
CREATE TABLE kv_changes_trimmed (
    id      INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
    version BIGINT  NOT NULL
);
INSERT INTO kv_changes_trimmed (id, version) SELECT 1, version FROM kv_meta WHERE id = 1;
