-- When the expiry timer and kv-sweeper next look at a row: never later than its expiry, and
-- indexed instead of expires_at, so that a write that moves an expiry later (a SET with a TTL
-- over a key that has one, EXPIRE extending a session) leaves the index alone. A write that
-- moves an expiry earlier, or gives a key its first, sets sweep_at to the new expiry; a row
-- found due whose expiry has moved on is filed again under its expiry (not a change: no
-- version, no event). See kv-core's `backend::put_row` and `Tx::remove_expired`.
ALTER TABLE kv_store ADD COLUMN sweep_at BIGINT;
UPDATE kv_store SET sweep_at = expires_at WHERE expires_at IS NOT NULL;
DROP INDEX kv_store_expires_at;
CREATE INDEX kv_store_sweep_at ON kv_store (sweep_at) WHERE sweep_at IS NOT NULL;
