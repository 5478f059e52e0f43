DROP INDEX kv_store_sweep_at;
ALTER TABLE kv_store DROP COLUMN sweep_at;
CREATE INDEX kv_store_expires_at ON kv_store (expires_at) WHERE expires_at IS NOT NULL;
