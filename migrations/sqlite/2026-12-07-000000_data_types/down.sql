DROP TABLE kv_garbage;
DROP TABLE kv_set;
DROP TABLE kv_hash;
ALTER TABLE kv_changes DROP COLUMN command;
ALTER TABLE kv_changes DROP COLUMN kind;
ALTER TABLE kv_meta DROP COLUMN collections;
ALTER TABLE kv_store DROP COLUMN length;
ALTER TABLE kv_store DROP COLUMN coll;
ALTER TABLE kv_store DROP COLUMN kind;
