// The tables created by migrations/sqlite and migrations/postgres.

diesel::table! {
    kv_store (key) {
        key -> Text,
        value -> Text,
        version -> BigInt,
        created_at -> BigInt,
        updated_at -> BigInt,
        expires_at -> Nullable<BigInt>,
    }
}

// The store-wide version counter (one row): the last version handed out.
diesel::table! {
    kv_meta (id) {
        id -> Integer,
        version -> BigInt,
    }
}

// Expired keys deleted by sweeps, all sweepers together (one row).
diesel::table! {
    kv_sweeps (id) {
        id -> Integer,
        deleted_keys -> BigInt,
    }
}

// The first response to each write sent with an Idempotency-Key (see `idempotency`).
diesel::table! {
    kv_idempotency (idempotency_key) {
        idempotency_key -> Text,
        fingerprint -> Text,
        status -> Integer,
        body -> Text,
        etag -> Nullable<Text>,
        expires_at -> BigInt,
    }
}
