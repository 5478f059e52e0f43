//! How rows are written and found for expiry, around `sweep_at`: when the expiry timer and
//! kv-sweeper next look at a row, the indexed column they find due rows by.
//!
//! `sweep_at` is never later than the row's expiry (a row without one may keep a stale
//! `sweep_at`). A new row gets its expiry; a write that gives a row an earlier expiry than its
//! `sweep_at`, or its first, sets `sweep_at` to it; any other write leaves it alone. So a
//! write that moves an expiry later (a SET with a TTL over a key that has one, a session's
//! EXPIRE) does not move the row in the index: on SQLite the old index entry sits on a random
//! 4 KiB page that such a SET would otherwise write to the log (measured in
//! docs/BENCHMARKS.md), and on PostgreSQL an update that changes no indexed value is HOT (no
//! new index entries at all). A row found due but not expired is filed again under its
//! expiry ([`refile`]): once per expiry period at most, rather than on every write.

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Nullable};

use super::connection::{DbConnection, with_conn};
use super::statement::{Bind, statement};
use crate::model::KeyValue;
use crate::schema::kv_store;

diesel::define_sql_function! {
    /// PostgreSQL's `LEAST`, which passes NULLs by: the lesser of the two, NULL if both are.
    fn least(a: Nullable<BigInt>, b: Nullable<BigInt>) -> Nullable<BigInt>;
}

/// The row a write replaces, as far as writing over it goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Replaces {
    /// No row holds the key.
    Nothing,
    /// A row (live or expired) with this expiry; `None` when it has none, or when the caller
    /// does not know it.
    Row { expires_at: Option<i64> },
}

impl Replaces {
    /// What writing over `row` (the key's row as read, if any) replaces.
    pub(crate) fn row(row: Option<&KeyValue>) -> Replaces {
        match row {
            None => Replaces::Nothing,
            Some(row) => Replaces::Row {
                expires_at: row.expires_at,
            },
        }
    }

    /// The expiry `sweep_at` may have to be lowered to when a row with `expires_at` is written
    /// over this one: none when the replaced row had an expiry at or before the new one (its
    /// `sweep_at` is at or before that expiry already).
    fn may_lower_sweep_at_to(self, expires_at: Option<i64>) -> Option<i64> {
        let new = expires_at?;
        match self {
            Replaces::Row {
                expires_at: Some(old),
            } if new >= old => None,
            _ => Some(new),
        }
    }
}

/// Writes `row` over whatever row holds its key (the caller holds the key's lock): an `INSERT`
/// when there is none, else an `UPDATE` that leaves `sweep_at` alone unless the new expiry is
/// earlier (see the module's documentation). On SQLite the key and `sweep_at` stay out of the
/// `UPDATE`'s columns, as SQLite rewrites the index entries of every column named there, and a
/// second statement lowers `sweep_at` when it may have to.
pub(crate) fn put_row(
    conn: &mut DbConnection,
    row: &KeyValue,
    replaces: Replaces,
) -> QueryResult<()> {
    if replaces == Replaces::Nothing {
        with_conn!(conn, c => diesel::insert_into(kv_store::table)
            .values((row, kv_store::sweep_at.eq(row.expires_at)))
            .execute(c))?;
        return Ok(());
    }
    let updated = match conn {
        DbConnection::Sqlite(_) => {
            update_sqlite_row(conn, row, replaces.may_lower_sweep_at_to(row.expires_at))?
        }
        DbConnection::Postgres(c) => update_postgres_row(c, row)?,
    };
    if updated != 1 {
        return Err(diesel::result::Error::QueryBuilderError(
            format!("the row of {:?} to write over is not there", row.key).into(),
        ));
    }
    Ok(())
}

/// [`put_row`]'s `UPDATE` on PostgreSQL: `sweep_at` keeps its value unless the new expiry is
/// earlier, and the update is HOT when it does. Returns how many rows it updated.
fn update_postgres_row(c: &mut diesel::PgConnection, row: &KeyValue) -> QueryResult<usize> {
    diesel::update(kv_store::table.find(&row.key))
        .set((
            kv_store::value.eq(&row.value),
            kv_store::version.eq(row.version),
            kv_store::created_at.eq(row.created_at),
            kv_store::updated_at.eq(row.updated_at),
            kv_store::expires_at.eq(row.expires_at),
            kv_store::kind.eq(&row.kind),
            kv_store::coll.eq(row.coll),
            kv_store::length.eq(row.length),
            kv_store::sweep_at.eq(least(kv_store::sweep_at, row.expires_at)),
        ))
        .execute(c)
}

/// [`put_row`]'s `UPDATE` on SQLite, in one or (`lower_sweep_at_to`) two statements that the
/// connection prepares once. Returns how many rows it updated.
fn update_sqlite_row(
    conn: &mut DbConnection,
    row: &KeyValue,
    lower_sweep_at_to: Option<i64>,
) -> QueryResult<usize> {
    let updated = with_conn!(conn, c => {
        statement::<marker::UpdateRow>(
            "UPDATE kv_store SET value = ?, version = ?, created_at = ?, updated_at = ?, \
             expires_at = ?, kind = ?, coll = ?, length = ? WHERE key = ?",
            vec![
                Bind::Text(&row.value),
                Bind::Int(row.version),
                Bind::Int(row.created_at),
                Bind::Int(row.updated_at),
                Bind::MaybeInt(row.expires_at),
                Bind::Text(&row.kind),
                Bind::MaybeInt(row.coll),
                Bind::MaybeInt(row.length),
                Bind::Text(&row.key),
            ],
        )
        .execute(c)
    })?;
    if let Some(expires_at) = lower_sweep_at_to {
        with_conn!(conn, c => statement::<marker::LowerSweepAt>(
            "UPDATE kv_store SET sweep_at = ? \
             WHERE key = ? AND (sweep_at IS NULL OR sweep_at > ?)",
            vec![Bind::Int(expires_at), Bind::Text(&row.key), Bind::Int(expires_at)],
        )
        .execute(c))?;
    }
    Ok(updated)
}

/// The markers of the statements above (see [`super::statement`]).
mod marker {
    pub struct UpdateRow;
    pub struct LowerSweepAt;
}

/// Copies `rows` into an empty table (or over rows of the same keys) in one multi-row
/// statement per call; the caller's transaction holds the write lock. Each row is written
/// whole, its `sweep_at` its expiry.
pub(crate) fn insert_rows(conn: &mut DbConnection, rows: &[KeyValue]) -> QueryResult<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let values: Vec<_> = rows
        .iter()
        .map(|row| (row, kv_store::sweep_at.eq(row.expires_at)))
        .collect();
    match conn {
        DbConnection::Sqlite(c) => diesel::replace_into(kv_store::table)
            .values(values)
            .execute(c),
        DbConnection::Postgres(c) => {
            use diesel::upsert::excluded;
            diesel::insert_into(kv_store::table)
                .values(values)
                .on_conflict(kv_store::key)
                .do_update()
                .set((
                    kv_store::value.eq(excluded(kv_store::value)),
                    kv_store::version.eq(excluded(kv_store::version)),
                    kv_store::created_at.eq(excluded(kv_store::created_at)),
                    kv_store::updated_at.eq(excluded(kv_store::updated_at)),
                    kv_store::expires_at.eq(excluded(kv_store::expires_at)),
                    kv_store::kind.eq(excluded(kv_store::kind)),
                    kv_store::coll.eq(excluded(kv_store::coll)),
                    kv_store::length.eq(excluded(kv_store::length)),
                    kv_store::sweep_at.eq(excluded(kv_store::sweep_at)),
                ))
                .execute(c)
        }
    }
    .map(|_| ())
}

/// Up to `limit` rows due at `now` (`sweep_at` at or before it), soonest first, with their
/// expiries, inside a write transaction (which removes the expired ones and files the rest
/// again). On PostgreSQL the rows are locked, and rows another transaction has locked are
/// passed by (`SKIP LOCKED`), so servers sweeping together never wait on each other's rows or
/// remove one twice.
pub(crate) fn due_rows(
    conn: &mut DbConnection,
    now: i64,
    limit: i64,
) -> QueryResult<Vec<(String, Option<i64>)>> {
    let due = kv_store::table
        .filter(kv_store::sweep_at.le(now))
        .order(kv_store::sweep_at.asc())
        .limit(limit)
        .select((kv_store::key, kv_store::expires_at));
    match conn {
        DbConnection::Sqlite(c) => due.load(c),
        DbConnection::Postgres(c) => due.for_update().skip_locked().load(c),
    }
}

/// Files the rows of `keys` (found due, not expired) again under their expiries (none for a
/// row that has lost its expiry). Not a change of any key: no version, no event.
pub(crate) fn refile(conn: &mut DbConnection, keys: &[&str]) -> QueryResult<()> {
    if keys.is_empty() {
        return Ok(());
    }
    with_conn!(conn, c => diesel::update(kv_store::table.filter(kv_store::key.eq_any(keys)))
        .set(kv_store::sweep_at.eq(kv_store::expires_at))
        .execute(c))
    .map(|_| ())
}

/// When the server's expiry timer next has work: the earliest `sweep_at` (at or before the
/// earliest expiry; a row found due but not expired is filed again).
pub fn next_due(conn: &mut DbConnection) -> QueryResult<Option<i64>> {
    // The filter lets both databases answer from the partial index on sweep_at.
    with_conn!(conn, c => kv_store::table
        .filter(kv_store::sweep_at.is_not_null())
        .select(diesel::dsl::min(kv_store::sweep_at))
        .get_result(c))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{ConnectionOptions, connect, run_migrations, sqlite_url_in};

    fn sweep_at(conn: &mut DbConnection, key: &str) -> Option<i64> {
        with_conn!(conn, c => kv_store::table
            .find(key)
            .select(kv_store::sweep_at)
            .get_result(c))
        .expect("row")
    }

    #[test]
    fn sweep_at_follows_an_expiry_down_never_up_and_is_filed_again_when_due() {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = sqlite_url_in(dir.path());
        let mut conn = connect(&url, &ConnectionOptions::default()).expect("connect");
        run_migrations(&mut conn).expect("migrations");
        let row = |expires_at| KeyValue::string("k", "1".into(), 1, 0, 0, expires_at);
        // Writes over the row as it stands, or over one whose expiry is not known.
        let put = |conn: &mut DbConnection, expires_at, replaces| {
            put_row(conn, &row(expires_at), replaces).expect("put");
            sweep_at(conn, "k")
        };
        let over = |expires_at| Replaces::Row { expires_at };
        let unknown = over(None);

        let new = put(&mut conn, Some(1_000), Replaces::Nothing);
        assert_eq!(new, Some(1_000), "a new row: its expiry");
        let later = put(&mut conn, Some(5_000), over(Some(1_000)));
        assert_eq!(later, Some(1_000), "a later expiry: left alone");
        let later = put(&mut conn, Some(6_000), unknown);
        assert_eq!(
            later,
            Some(1_000),
            "a later expiry over an unknown one: left alone"
        );
        let earlier = put(&mut conn, Some(500), over(Some(6_000)));
        assert_eq!(earlier, Some(500), "an earlier expiry: followed");
        let earlier = put(&mut conn, Some(400), unknown);
        assert_eq!(
            earlier,
            Some(400),
            "an earlier expiry over an unknown one: followed"
        );
        let none = put(&mut conn, None, over(Some(400)));
        assert_eq!(none, Some(400), "no expiry: left alone");
        assert_eq!(next_due(&mut conn).expect("next"), Some(400));
        assert_eq!(due_rows(&mut conn, 399, 10).expect("due"), vec![]);
        assert_eq!(
            due_rows(&mut conn, 400, 10).expect("due"),
            vec![("k".to_owned(), None)]
        );
        refile(&mut conn, &["k"]).expect("refile");
        assert_eq!(sweep_at(&mut conn, "k"), None, "filed under no expiry");
        assert_eq!(next_due(&mut conn).expect("next"), None);
        let first = put(&mut conn, Some(9_000), over(None));
        assert_eq!(first, Some(9_000), "a first expiry again");
        put(&mut conn, Some(20_000), over(Some(9_000)));
        refile(&mut conn, &["k"]).expect("refile");
        assert_eq!(
            sweep_at(&mut conn, "k"),
            Some(20_000),
            "filed under its expiry"
        );

        insert_rows(&mut conn, &[row(Some(7))]).expect("insert");
        assert_eq!(
            sweep_at(&mut conn, "k"),
            Some(7),
            "a copied row: its expiry"
        );

        let gone = KeyValue::string("gone", "1".into(), 1, 0, 0, None);
        let written = put_row(&mut conn, &gone, Replaces::Row { expires_at: None });
        assert!(
            written.is_err(),
            "writing over a row that is not there fails loudly"
        );
    }
}
