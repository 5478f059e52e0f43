DROP TABLE kv_meta;
DROP TABLE kv_store;
