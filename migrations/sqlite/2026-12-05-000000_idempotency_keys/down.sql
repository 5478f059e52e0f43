DROP TABLE kv_idempotency;
