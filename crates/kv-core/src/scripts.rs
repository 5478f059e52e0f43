//! The script store: every Lua script loaded with SCRIPT LOAD or run with EVAL, by its SHA1,
//! in the database (`kv_scripts`), so every server on one PostgreSQL knows it for EVALSHA and
//! a restart keeps it. SCRIPT FLUSH forgets them all, everywhere.

use diesel::prelude::*;

use crate::backend::{DbConnection, with_conn};
use crate::error::StoreError;
use crate::schema::kv_scripts;

/// The body of the script `sha`, if it is stored.
pub fn body(conn: &mut DbConnection, sha: &str) -> Result<Option<String>, StoreError> {
    Ok(with_conn!(conn, c => kv_scripts::table
        .find(sha)
        .select(kv_scripts::body)
        .first::<String>(c)
        .optional())?)
}

/// Whether the script `sha` is stored.
pub fn exists(conn: &mut DbConnection, sha: &str) -> Result<bool, StoreError> {
    Ok(
        with_conn!(conn, c => diesel::select(diesel::dsl::exists(kv_scripts::table.find(sha)))
        .get_result::<bool>(c))?,
    )
}

/// Stores `body` as the script `sha` (nothing when it is there already).
pub fn store(conn: &mut DbConnection, sha: &str, body: &str, now: i64) -> Result<(), StoreError> {
    if exists(conn, sha)? {
        return Ok(());
    }
    with_conn!(conn, c => diesel::insert_into(kv_scripts::table)
        .values((
            kv_scripts::sha.eq(sha),
            kv_scripts::body.eq(body),
            kv_scripts::created_at.eq(now),
        ))
        .on_conflict_do_nothing()
        .execute(c))?;
    Ok(())
}

/// Forgets every script.
pub fn flush(conn: &mut DbConnection) -> Result<usize, StoreError> {
    Ok(with_conn!(conn, c => diesel::delete(kv_scripts::table).execute(c))?)
}
