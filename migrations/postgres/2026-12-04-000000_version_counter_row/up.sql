-- The store-wide version counter becomes one row, as on SQLite. Every write batch locks it
-- (SELECT ... FOR UPDATE) and holds it until it commits, so versions become visible in the
-- order they were handed out, on every server: once a client has seen version V, every write
-- with a smaller version is visible too. (A sequence hands out numbers that transactions then
-- commit in any order.) It continues where the sequence stopped.
CREATE TABLE kv_meta (
    id      INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
    version BIGINT  NOT NULL
);
INSERT INTO kv_meta (id, version)
    SELECT 1, CASE WHEN is_called THEN last_value ELSE 0 END FROM kv_version;
DROP SEQUENCE kv_version;
