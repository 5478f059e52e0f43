DROP TABLE kv_zset_block;
DROP TABLE kv_zset;
