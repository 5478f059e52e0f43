//! The tables created by migrations/sqlite and migrations/postgres.

diesel::table! {
    kv_store (key) {
        key -> Text,
        value -> Text,
        version -> BigInt,
        created_at -> BigInt,
        updated_at -> BigInt,
        expires_at -> Nullable<BigInt>,
        kind -> Text,
        coll -> Nullable<BigInt>,
        length -> Nullable<BigInt>,
        sweep_at -> Nullable<BigInt>,
    }
}

// The store-wide version counter (one row): the last version handed out; and the last
// collection id handed out.
diesel::table! {
    kv_meta (id) {
        id -> Integer,
        version -> BigInt,
        collections -> BigInt,
    }
}

// A hash's fields, by collection id (see `collections`).
diesel::table! {
    kv_hash (coll, field) {
        coll -> BigInt,
        field -> Text,
        value -> Text,
    }
}

// A set's members, by collection id.
diesel::table! {
    kv_set (coll, member) {
        coll -> BigInt,
        member -> Text,
    }
}

// A list's elements at consecutive positions, by collection id.
diesel::table! {
    kv_list (coll, pos) {
        coll -> BigInt,
        pos -> BigInt,
        value -> Text,
    }
}

// A sorted set's members with their scores, by collection id (see `sorted_sets`).
diesel::table! {
    kv_zset (coll, member) {
        coll -> BigInt,
        member -> Text,
        score -> Double,
    }
}

// The rank blocks of a large sorted set: where each starts in (score, member) order, and
// how many members it holds.
diesel::table! {
    kv_zset_block (coll, score, member) {
        coll -> BigInt,
        score -> Double,
        member -> Text,
        size -> BigInt,
    }
}

// Lua scripts by SHA1 (see `scripts`).
diesel::table! {
    kv_scripts (sha) {
        sha -> Text,
        body -> Text,
        created_at -> BigInt,
    }
}

// Collections whose key is gone: their members are removed in bounded batches.
diesel::table! {
    kv_garbage (coll) {
        coll -> BigInt,
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

// The change log behind `GET /_watch` (see `changes`): one row per change, all changes of a
// transaction under its version, in `seq` order.
diesel::table! {
    kv_changes (version, seq) {
        version -> BigInt,
        seq -> BigInt,
        key -> Text,
        op -> Text,
        value -> Nullable<Text>,
        expires_at -> Nullable<BigInt>,
        at_ms -> BigInt,
        kind -> Nullable<Text>,
        command -> Nullable<Text>,
    }
}

// Every change at or below this version has been trimmed from the change log (one row).
diesel::table! {
    kv_changes_trimmed (id) {
        id -> Integer,
        version -> BigInt,
    }
}

diesel::allow_tables_to_appear_in_same_query!(
    kv_store,
    kv_meta,
    kv_hash,
    kv_set,
    kv_list,
    kv_zset,
    kv_zset_block,
    kv_garbage
);
