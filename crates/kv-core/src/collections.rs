//! The members of collections (hashes, sets and lists; sorted sets in `sorted_sets`), by
//! collection id, the same SQL on both
//! databases; and the garbage queue: a collection whose key is deleted, expired or overwritten
//! is queued in `kv_garbage`, and [`collect_garbage`] removes its members in bounded batches,
//! so that dropping a million members never holds other writes for long. Every member
//! operation is a primary-key statement: independent of the collection's size.

use diesel::prelude::*;
use diesel::sql_types::BigInt;

use crate::backend::{DbConnection, with_conn};
use crate::error::StoreError;
use crate::schema::{kv_garbage, kv_hash, kv_list, kv_meta, kv_set, kv_zset, kv_zset_block};

/// Members removed per statement by [`collect_garbage`].
pub const GARBAGE_BATCH: i64 = 5000;

/// A new collection id (from the counter in `kv_meta`, in the write transaction).
pub(crate) fn new_id(conn: &mut DbConnection) -> Result<i64, StoreError> {
    Ok(with_conn!(conn, c => diesel::update(kv_meta::table.find(1))
        .set(kv_meta::collections.eq(kv_meta::collections + 1))
        .returning(kv_meta::collections)
        .get_result::<i64>(c))?)
}

/// Queues the members of collection `coll` for removal.
pub(crate) fn discard(conn: &mut DbConnection, coll: i64) -> Result<(), StoreError> {
    with_conn!(conn, c => diesel::insert_into(kv_garbage::table)
        .values(kv_garbage::coll.eq(coll))
        .on_conflict_do_nothing()
        .execute(c))?;
    Ok(())
}

/// Queues the members of the collections among `keys` expired by `expired_by` (their rows are
/// about to be removed).
pub(crate) fn discard_where_expired(
    conn: &mut DbConnection,
    keys: &[String],
    expired_by: i64,
) -> Result<(), StoreError> {
    use crate::schema::kv_store;
    with_conn!(conn, c => diesel::insert_into(kv_garbage::table)
        .values(
            kv_store::table
                .filter(kv_store::key.eq_any(keys))
                .filter(kv_store::expires_at.le(expired_by))
                .filter(kv_store::coll.is_not_null())
                .select(kv_store::coll.assume_not_null()),
        )
        .into_columns(kv_garbage::coll)
        .on_conflict_do_nothing()
        .execute(c))?;
    Ok(())
}

/// Queues the members of every collection whose key is in `[lower, upper)` (a bulk delete).
pub(crate) fn discard_range(
    conn: &mut DbConnection,
    lower: &str,
    upper: Option<&str>,
) -> Result<(), StoreError> {
    use crate::schema::kv_store;
    with_conn!(conn, c => {
        let in_range = kv_store::table
            .filter(kv_store::key.ge(lower))
            .filter(kv_store::coll.is_not_null())
            .into_boxed();
        let in_range = match upper {
            Some(upper) => in_range.filter(kv_store::key.lt(upper)),
            None => in_range,
        };
        diesel::insert_into(kv_garbage::table)
            .values(in_range.select(kv_store::coll.assume_not_null()))
            .into_columns(kv_garbage::coll)
            .on_conflict_do_nothing()
            .execute(c)
    })?;
    Ok(())
}

/// Removes up to [`GARBAGE_BATCH`] members of discarded collections (one transaction of its own
/// each call); returns how many went. A collection with none left leaves the queue.
pub fn collect_garbage(conn: &mut DbConnection) -> Result<usize, StoreError> {
    let Some(coll) = with_conn!(conn, c => kv_garbage::table
        .select(kv_garbage::coll)
        .first::<i64>(c)
        .optional())?
    else {
        return Ok(0);
    };
    let mut removed = 0;
    for (table, member) in [
        ("kv_hash", "field"),
        ("kv_set", "member"),
        ("kv_list", "pos"),
        ("kv_zset", "member"),
        // A block's member is not unique in its set: more than a batch may go, but blocks
        // are few (one per 1,024 members).
        ("kv_zset_block", "member"),
    ] {
        removed += match conn {
            DbConnection::Sqlite(c) => diesel::sql_query(format!(
                "DELETE FROM {table} WHERE coll = ? AND {member} IN \
                 (SELECT {member} FROM {table} WHERE coll = ? LIMIT ?)"
            ))
            .bind::<BigInt, _>(coll)
            .bind::<BigInt, _>(coll)
            .bind::<BigInt, _>(GARBAGE_BATCH)
            .execute(c)?,
            DbConnection::Postgres(c) => diesel::sql_query(format!(
                "DELETE FROM {table} WHERE coll = $1 AND {member} IN \
                 (SELECT {member} FROM {table} WHERE coll = $1 LIMIT $2)"
            ))
            .bind::<BigInt, _>(coll)
            .bind::<BigInt, _>(GARBAGE_BATCH)
            .execute(c)?,
        };
    }
    if removed == 0 {
        with_conn!(conn, c => diesel::delete(kv_garbage::table.find(coll)).execute(c))?;
    }
    Ok(removed)
}

/// How many collections wait in the garbage queue.
pub fn garbage_queued(conn: &mut DbConnection) -> Result<i64, StoreError> {
    Ok(with_conn!(conn, c => kv_garbage::table.count().get_result(c))?)
}

/// Members of collections that no key refers to and that are not queued for removal: none,
/// if every path that removes a collection's key queues its members (for tests).
pub fn orphan_members(conn: &mut DbConnection) -> Result<i64, StoreError> {
    use crate::schema::kv_store;
    let referenced = kv_store::table
        .filter(kv_store::coll.is_not_null())
        .select(kv_store::coll.assume_not_null());
    let queued = kv_garbage::table.select(kv_garbage::coll);
    Ok(with_conn!(conn, c => {
        let hash: i64 = kv_hash::table
            .filter(kv_hash::coll.ne_all(referenced))
            .filter(kv_hash::coll.ne_all(queued))
            .count()
            .get_result(c)?;
        let set: i64 = kv_set::table
            .filter(kv_set::coll.ne_all(referenced))
            .filter(kv_set::coll.ne_all(queued))
            .count()
            .get_result(c)?;
        let list: i64 = kv_list::table
            .filter(kv_list::coll.ne_all(referenced))
            .filter(kv_list::coll.ne_all(queued))
            .count()
            .get_result(c)?;
        let zset: i64 = kv_zset::table
            .filter(kv_zset::coll.ne_all(referenced))
            .filter(kv_zset::coll.ne_all(queued))
            .count()
            .get_result(c)?;
        QueryResult::Ok(hash + set + list + zset)
    })?)
}

/// A hash field's value.
pub fn hash_get(
    conn: &mut DbConnection,
    coll: i64,
    field: &str,
) -> Result<Option<String>, StoreError> {
    Ok(with_conn!(conn, c => kv_hash::table
        .find((coll, field))
        .select(kv_hash::value)
        .first::<String>(c)
        .optional())?)
}

/// Sets a hash field; whether it is new.
pub fn hash_put(
    conn: &mut DbConnection,
    coll: i64,
    field: &str,
    value: &str,
) -> Result<bool, StoreError> {
    let existed = hash_get(conn, coll, field)?.is_some();
    with_conn!(conn, c => diesel::insert_into(kv_hash::table)
        .values((kv_hash::coll.eq(coll), kv_hash::field.eq(field), kv_hash::value.eq(value)))
        .on_conflict((kv_hash::coll, kv_hash::field))
        .do_update()
        .set(kv_hash::value.eq(value))
        .execute(c))?;
    Ok(!existed)
}

/// Removes a hash field; whether it was there.
pub fn hash_remove(conn: &mut DbConnection, coll: i64, field: &str) -> Result<bool, StoreError> {
    Ok(with_conn!(conn, c => diesel::delete(kv_hash::table.find((coll, field))).execute(c))? > 0)
}

/// A page of a hash's fields and values in byte order of field, after `after`.
pub fn hash_page(
    conn: &mut DbConnection,
    coll: i64,
    after: Option<&str>,
    limit: i64,
) -> Result<Vec<(String, String)>, StoreError> {
    Ok(with_conn!(conn, c => {
        let query = kv_hash::table
            .filter(kv_hash::coll.eq(coll))
            .order(kv_hash::field.asc())
            .select((kv_hash::field, kv_hash::value))
            .limit(limit)
            .into_boxed();
        match after {
            Some(after) => query.filter(kv_hash::field.gt(after)).load(c),
            None => query.load(c),
        }
    })?)
}

/// Whether `member` is in the set.
pub fn set_contains(conn: &mut DbConnection, coll: i64, member: &str) -> Result<bool, StoreError> {
    Ok(with_conn!(conn, c => diesel::select(diesel::dsl::exists(
        kv_set::table.find((coll, member)),
    ))
    .get_result::<bool>(c))?)
}

/// Adds a member; whether it is new.
pub fn set_add(conn: &mut DbConnection, coll: i64, member: &str) -> Result<bool, StoreError> {
    Ok(with_conn!(conn, c => diesel::insert_into(kv_set::table)
        .values((kv_set::coll.eq(coll), kv_set::member.eq(member)))
        .on_conflict_do_nothing()
        .execute(c))?
        > 0)
}

/// Removes a member; whether it was there.
pub fn set_remove(conn: &mut DbConnection, coll: i64, member: &str) -> Result<bool, StoreError> {
    Ok(with_conn!(conn, c => diesel::delete(kv_set::table.find((coll, member))).execute(c))? > 0)
}

/// A page of a set's members in byte order, after `after`.
pub fn set_page(
    conn: &mut DbConnection,
    coll: i64,
    after: Option<&str>,
    limit: i64,
) -> Result<Vec<String>, StoreError> {
    Ok(with_conn!(conn, c => {
        let query = kv_set::table
            .filter(kv_set::coll.eq(coll))
            .order(kv_set::member.asc())
            .select(kv_set::member)
            .limit(limit)
            .into_boxed();
        match after {
            Some(after) => query.filter(kv_set::member.gt(after)).load(c),
            None => query.load(c),
        }
    })?)
}

/// The member at `offset` in byte order (SRANDMEMBER, SPOP, HRANDFIELD pick an offset).
pub fn set_member_at(
    conn: &mut DbConnection,
    coll: i64,
    offset: i64,
) -> Result<Option<String>, StoreError> {
    Ok(with_conn!(conn, c => kv_set::table
        .filter(kv_set::coll.eq(coll))
        .order(kv_set::member.asc())
        .select(kv_set::member)
        .offset(offset)
        .first::<String>(c)
        .optional())?)
}

/// The field at `offset` in byte order, with its value.
pub fn hash_field_at(
    conn: &mut DbConnection,
    coll: i64,
    offset: i64,
) -> Result<Option<(String, String)>, StoreError> {
    Ok(with_conn!(conn, c => kv_hash::table
        .filter(kv_hash::coll.eq(coll))
        .order(kv_hash::field.asc())
        .select((kv_hash::field, kv_hash::value))
        .offset(offset)
        .first::<(String, String)>(c)
        .optional())?)
}

/// Copies the members of collection `from` into `to` (COPY).
pub fn copy_members(conn: &mut DbConnection, from: i64, to: i64) -> Result<(), StoreError> {
    with_conn!(conn, c => {
        diesel::insert_into(kv_hash::table)
            .values(
                kv_hash::table
                    .filter(kv_hash::coll.eq(from))
                    .select((to.into_sql::<diesel::sql_types::BigInt>(), kv_hash::field, kv_hash::value)),
            )
            .into_columns((kv_hash::coll, kv_hash::field, kv_hash::value))
            .execute(c)?;
        diesel::insert_into(kv_set::table)
            .values(
                kv_set::table
                    .filter(kv_set::coll.eq(from))
                    .select((to.into_sql::<diesel::sql_types::BigInt>(), kv_set::member)),
            )
            .into_columns((kv_set::coll, kv_set::member))
            .execute(c)?;
        diesel::insert_into(kv_list::table)
            .values(
                kv_list::table
                    .filter(kv_list::coll.eq(from))
                    .select((to.into_sql::<diesel::sql_types::BigInt>(), kv_list::pos, kv_list::value)),
            )
            .into_columns((kv_list::coll, kv_list::pos, kv_list::value))
            .execute(c)?;
        diesel::insert_into(kv_zset::table)
            .values(
                kv_zset::table
                    .filter(kv_zset::coll.eq(from))
                    .select((to.into_sql::<diesel::sql_types::BigInt>(), kv_zset::member, kv_zset::score)),
            )
            .into_columns((kv_zset::coll, kv_zset::member, kv_zset::score))
            .execute(c)?;
        diesel::insert_into(kv_zset_block::table)
            .values(
                kv_zset_block::table
                    .filter(kv_zset_block::coll.eq(from))
                    .select((
                        to.into_sql::<diesel::sql_types::BigInt>(),
                        kv_zset_block::score,
                        kv_zset_block::member,
                        kv_zset_block::size,
                    )),
            )
            .into_columns((
                kv_zset_block::coll,
                kv_zset_block::score,
                kv_zset_block::member,
                kv_zset_block::size,
            ))
            .execute(c)
    })?;
    Ok(())
}

/// The position of a list's head (its smallest), or `None` for no element.
pub fn list_head(conn: &mut DbConnection, coll: i64) -> Result<Option<i64>, StoreError> {
    Ok(with_conn!(conn, c => kv_list::table
        .filter(kv_list::coll.eq(coll))
        .order(kv_list::pos.asc())
        .select(kv_list::pos)
        .first::<i64>(c)
        .optional())?)
}

/// Writes the element at position `pos` (a new one, or over the one there).
pub fn list_put(
    conn: &mut DbConnection,
    coll: i64,
    pos: i64,
    value: &str,
) -> Result<(), StoreError> {
    with_conn!(conn, c => diesel::insert_into(kv_list::table)
        .values((kv_list::coll.eq(coll), kv_list::pos.eq(pos), kv_list::value.eq(value)))
        .on_conflict((kv_list::coll, kv_list::pos))
        .do_update()
        .set(kv_list::value.eq(value))
        .execute(c))?;
    Ok(())
}

/// The elements at positions `from..=to`, in order.
pub fn list_range(
    conn: &mut DbConnection,
    coll: i64,
    from: i64,
    to: i64,
) -> Result<Vec<(i64, String)>, StoreError> {
    Ok(with_conn!(conn, c => kv_list::table
        .filter(kv_list::coll.eq(coll))
        .filter(kv_list::pos.between(from, to))
        .order(kv_list::pos.asc())
        .select((kv_list::pos, kv_list::value))
        .load(c))?)
}

/// Removes the elements at positions `from..=to`.
pub fn list_remove_range(
    conn: &mut DbConnection,
    coll: i64,
    from: i64,
    to: i64,
) -> Result<usize, StoreError> {
    Ok(with_conn!(conn, c => diesel::delete(
        kv_list::table
            .filter(kv_list::coll.eq(coll))
            .filter(kv_list::pos.between(from, to)),
    )
    .execute(c))?)
}

/// Writes `values` as the whole list from position `head` on (LREM and LINSERT renumber:
/// O(n), as Redis allows them).
pub fn list_rewrite(
    conn: &mut DbConnection,
    coll: i64,
    head: i64,
    values: &[String],
) -> Result<(), StoreError> {
    with_conn!(conn, c => diesel::delete(kv_list::table.filter(kv_list::coll.eq(coll))).execute(c))?;
    insert_list(conn, coll, head, values)
}

/// Inserts `values` at positions `head`, `head + 1`, … (no element there yet).
pub fn insert_list(
    conn: &mut DbConnection,
    coll: i64,
    head: i64,
    values: &[String],
) -> Result<(), StoreError> {
    for (chunk, values) in values.chunks(500).enumerate() {
        let rows: Vec<_> = values
            .iter()
            .enumerate()
            .map(|(i, value)| {
                (
                    kv_list::coll.eq(coll),
                    kv_list::pos.eq(head + (chunk * 500 + i) as i64),
                    kv_list::value.eq(value.as_str()),
                )
            })
            .collect();
        with_conn!(conn, c => diesel::insert_into(kv_list::table).values(&rows).execute(c))?;
    }
    Ok(())
}

/// Members inserted per statement by [`insert_hash`] and [`insert_set`]: three parameters a
/// row stay under both databases' limits.
const INSERT_BATCH: usize = 1000;

/// Inserts the fields of a new hash `coll` (each field once), a statement per
/// [`INSERT_BATCH`] of them (import, copy).
pub(crate) fn insert_hash(
    conn: &mut DbConnection,
    coll: i64,
    fields: &[(String, String)],
) -> Result<(), StoreError> {
    for batch in fields.chunks(INSERT_BATCH) {
        let rows: Vec<_> = batch
            .iter()
            .map(|(field, value)| {
                (
                    kv_hash::coll.eq(coll),
                    kv_hash::field.eq(field),
                    kv_hash::value.eq(value),
                )
            })
            .collect();
        with_conn!(conn, c => diesel::insert_into(kv_hash::table).values(&rows).execute(c))?;
    }
    Ok(())
}

/// Inserts the members of a new set `coll` (each once), as [`insert_hash`].
pub(crate) fn insert_set(
    conn: &mut DbConnection,
    coll: i64,
    members: &[String],
) -> Result<(), StoreError> {
    for batch in members.chunks(INSERT_BATCH) {
        let rows: Vec<_> = batch
            .iter()
            .map(|member| (kv_set::coll.eq(coll), kv_set::member.eq(member)))
            .collect();
        with_conn!(conn, c => diesel::insert_into(kv_set::table).values(&rows).execute(c))?;
    }
    Ok(())
}

/// The collection id counter: every id handed out so far is at most this.
pub(crate) fn last_id(conn: &mut DbConnection) -> Result<i64, StoreError> {
    Ok(with_conn!(conn, c => kv_meta::table
        .find(1)
        .select(kv_meta::collections)
        .get_result::<i64>(c))?)
}

/// Raises the collection id counter to at least `id` (a copy's target).
pub(crate) fn raise_last_id(conn: &mut DbConnection, id: i64) -> Result<(), StoreError> {
    with_conn!(conn, c => diesel::update(kv_meta::table.find(1).filter(kv_meta::collections.lt(id)))
        .set(kv_meta::collections.eq(id))
        .execute(c))?;
    Ok(())
}
