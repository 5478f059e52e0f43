CREATE SEQUENCE kv_version AS BIGINT START WITH 1 MINVALUE 1;
SELECT setval('kv_version', version, true) FROM kv_meta WHERE version > 0;
DROP TABLE kv_meta;
