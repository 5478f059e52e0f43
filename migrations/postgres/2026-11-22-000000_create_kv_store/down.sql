DROP SEQUENCE kv_version;
DROP TABLE kv_store;
