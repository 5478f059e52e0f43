//! Where a write transaction's rows live, the one seam of [`crate::store::Tx`]: in the
//! database (SQLite, and PostgreSQL outside a batch), or staged in a PostgreSQL batch's
//! memory ([`crate::stage`]), which the writer then writes in a few statements. Every
//! primitive a `Tx` operation needs (read a locked row, write one, remove one, log a change,
//! read and store an idempotency record) is here once, for both places.

use diesel::prelude::*;

use crate::backend::{self, DbConnection, Replaces, with_conn};
use crate::changes::{self, Change};
use crate::collections;
use crate::error::StoreError;
use crate::idempotency::{find_records, put_records};
use crate::model::{IdempotencyRecord, KeyValue};
use crate::schema::kv_store;
use crate::stage::Stage;

/// Where a transaction's rows live.
pub(crate) enum Rows<'c> {
    /// In the database, under the transaction's write lock.
    Direct,
    /// In a PostgreSQL batch's staged rows.
    Staged(&'c mut Stage),
}

impl Rows<'_> {
    /// Names the keys the transaction will touch: a batch reads them in its first statement.
    pub fn declare(&mut self, keys: &[&str]) {
        if let Rows::Staged(stage) = self {
            stage.declare(keys);
        }
    }

    /// The row of `key` (live or expired), locked until the transaction ends.
    pub fn row(
        &mut self,
        conn: &mut DbConnection,
        key: &str,
    ) -> Result<Option<KeyValue>, StoreError> {
        match self {
            Rows::Staged(stage) => stage.row(conn, key),
            Rows::Direct => Ok(backend::find_for_update(conn, key)?),
        }
    }

    /// Writes `row`, inserting or replacing whatever row (live or expired) held the key.
    pub fn put(
        &mut self,
        conn: &mut DbConnection,
        row: &KeyValue,
        replaces: Replaces,
    ) -> Result<(), StoreError> {
        match self {
            // A batch writes string rows only (its statement knows no collection columns).
            Rows::Staged(stage) if !row.is_string() => return Err(stage.own_transaction()),
            Rows::Staged(stage) => stage.put(row.clone()),
            Rows::Direct => backend::put_row(conn, row, replaces)?,
        }
        Ok(())
    }

    pub fn remove(&mut self, conn: &mut DbConnection, key: &str) -> Result<(), StoreError> {
        match self {
            Rows::Staged(stage) => stage.remove(key),
            Rows::Direct => {
                with_conn!(conn, c => diesel::delete(kv_store::table.find(key)).execute(c))?;
            }
        }
        Ok(())
    }

    /// Removes the row of `key` if it is expired at `now`; whether it did.
    pub fn remove_if_expired(
        &mut self,
        conn: &mut DbConnection,
        key: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        Ok(match self {
            Rows::Staged(stage) => {
                let row = stage.row(conn, key)?;
                let expired = row.as_ref().is_some_and(|row| row.is_expired(now));
                if expired && row.as_ref().is_some_and(|row| row.coll.is_some()) {
                    // Its members must be queued for removal: not in a batch's stage.
                    return Err(stage.own_transaction());
                }
                if expired {
                    stage.remove(key);
                }
                expired
            }
            Rows::Direct => {
                collections::discard_where_expired(conn, &[key.to_owned()], now)?;
                with_conn!(conn, c => diesel::delete(
                    kv_store::table
                        .filter(kv_store::key.eq(key))
                        .filter(kv_store::expires_at.le(now)),
                )
                .execute(c))?
                    > 0
            }
        })
    }

    /// Adds `change` to the change log.
    pub fn log_change(
        &mut self,
        conn: &mut DbConnection,
        change: Change,
    ) -> Result<(), StoreError> {
        match self {
            Rows::Staged(stage) => stage.log_change(change),
            Rows::Direct => changes::insert(conn, std::slice::from_ref(&change))?,
        }
        Ok(())
    }

    /// The idempotency record of `key` (expired ones too).
    pub fn record(
        &mut self,
        conn: &mut DbConnection,
        key: &str,
    ) -> Result<Option<IdempotencyRecord>, StoreError> {
        match self {
            Rows::Staged(stage) => stage.record(conn, key),
            Rows::Direct => Ok(find_records(conn, &[key])?.pop()),
        }
    }

    pub fn put_record(
        &mut self,
        conn: &mut DbConnection,
        record: IdempotencyRecord,
    ) -> Result<(), StoreError> {
        match self {
            Rows::Staged(stage) => stage.put_record(record),
            Rows::Direct => put_records(conn, &[record])?,
        }
        Ok(())
    }

    /// Stops a request that must run as a transaction of its own (a key range, an import)
    /// when its rows are a batch's staged rows; the writer then runs it alone.
    pub fn needs_own_transaction(&mut self) -> Result<(), StoreError> {
        match self {
            Rows::Staged(stage) => Err(stage.own_transaction()),
            Rows::Direct => Ok(()),
        }
    }
}
