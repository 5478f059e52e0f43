-- Redis data types beside strings. A key row says what its key holds (kind: string, hash, set, list)
-- and, for a collection, its id (coll, from the kv_meta counter) and member count (length);
-- its value column is then 'null'. Members live in one table per type, keyed by (collection,
-- member): a key row renamed keeps its members, and a collection that is deleted, expired or
-- overwritten is queued in kv_garbage, whose members are removed in bounded batches.
ALTER TABLE kv_store ADD COLUMN kind TEXT NOT NULL DEFAULT 'string';
ALTER TABLE kv_store ADD COLUMN coll BIGINT;
ALTER TABLE kv_store ADD COLUMN length BIGINT;
ALTER TABLE kv_meta ADD COLUMN collections BIGINT NOT NULL DEFAULT 0;
ALTER TABLE kv_changes ADD COLUMN kind TEXT;
ALTER TABLE kv_changes ADD COLUMN command TEXT;

CREATE TABLE kv_hash (
    coll  BIGINT NOT NULL,
    field TEXT   NOT NULL,
    value TEXT   NOT NULL,
    PRIMARY KEY (coll, field)
) WITHOUT ROWID;

CREATE TABLE kv_set (
    coll   BIGINT NOT NULL,
    member TEXT   NOT NULL,
    PRIMARY KEY (coll, member)
) WITHOUT ROWID;

-- A list's elements at consecutive positions (the head's is the smallest): a push takes the
-- position before the head or after the tail, so no other element moves.
CREATE TABLE kv_list (
    coll  BIGINT NOT NULL,
    pos   BIGINT NOT NULL,
    value TEXT   NOT NULL,
    PRIMARY KEY (coll, pos)
) WITHOUT ROWID;

CREATE TABLE kv_garbage (
    coll BIGINT NOT NULL PRIMARY KEY
) WITHOUT ROWID;
