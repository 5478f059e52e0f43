-- Lua scripts by SHA1 (of the whole text, a shebang line included): every script loaded with
-- SCRIPT LOAD or run with EVAL, so every server on one database knows it (EVALSHA) and a
-- restart keeps it; SCRIPT FLUSH empties the table.
CREATE TABLE kv_scripts (
    sha        TEXT   NOT NULL PRIMARY KEY,
    body       TEXT   NOT NULL,
    created_at BIGINT NOT NULL
);
