//! The write transaction's operations on collections (hashes, sets, lists): reading one of a
//! type, creating and storing one, renaming and copying keys that may hold one, and the queue
//! of members to remove once a collection's key is gone.

use super::{Lookup, Tx};
use crate::backend::Replaces;
use crate::changes::ChangeOp;
use crate::collections;
use crate::error::StoreError;
use crate::key::validate_writable_key;
use crate::model::KeyValue;

impl Tx<'_> {
    /// Queues the members of the collection `coll` (a key's, about to be removed or replaced)
    /// for removal. A PostgreSQL batch's request that does runs as a transaction of its own.
    pub(super) fn discard_members(&mut self, coll: Option<i64>) -> Result<(), StoreError> {
        let Some(coll) = coll else {
            return Ok(());
        };
        self.needs_own_transaction()?;
        collections::discard(self.conn, coll)
    }

    /// The live collection of `key`, which must be of `kind`: `None` when the key is absent,
    /// [`StoreError::WrongType`] when it holds something else.
    pub fn collection(&mut self, key: &str, kind: &str) -> Result<Option<KeyValue>, StoreError> {
        // Members are no set of staged rows: on PostgreSQL a transaction of its own.
        self.needs_own_transaction()?;
        match self.get(key)? {
            Some(row) if row.kind == kind => Ok(Some(row)),
            Some(_) => Err(StoreError::WrongType),
            None => Ok(None),
        }
    }

    /// The collection of `key` to write to: the live one (of `kind`, else
    /// [`StoreError::WrongType`]), or a new, empty one (not stored until
    /// [`Tx::collection_written`]; an expired row in its way is removed).
    pub fn collection_for_write(&mut self, key: &str, kind: &str) -> Result<KeyValue, StoreError> {
        validate_writable_key(key)?;
        self.needs_own_transaction()?;
        let row = self.locked_row(key)?;
        let expired_coll = row.as_ref().and_then(|r| r.coll);
        match self.lookup(row) {
            Lookup::Live(row) if row.kind == kind => Ok(row),
            Lookup::Live(_) => Err(StoreError::WrongType),
            found => {
                if matches!(found, Lookup::Expired) {
                    self.remove(key)?;
                    self.record(ChangeOp::Expired, key, None)?;
                    self.discard_members(expired_coll)?;
                }
                Ok(KeyValue {
                    key: key.to_owned(),
                    value: "null".to_owned(),
                    version: 0,
                    created_at: self.now,
                    updated_at: self.now,
                    expires_at: None,
                    kind: kind.to_owned(),
                    coll: Some(collections::new_id(self.conn)?),
                    length: Some(0),
                })
            }
        }
    }

    /// Stores what a write command (`command`, as the change feed names it) did to the
    /// collection `row` (from [`Tx::collection_for_write`]): its new member count `length`,
    /// a new version, a change in the log. A collection left empty no longer exists.
    pub fn collection_written(
        &mut self,
        mut row: KeyValue,
        length: i64,
        command: &str,
    ) -> Result<(), StoreError> {
        let stored = row.version != 0;
        if length == 0 {
            if stored {
                self.remove(&row.key)?;
                self.record(ChangeOp::Delete, &row.key, None)?;
            }
            return Ok(());
        }
        row.version = self.write_version()?;
        row.updated_at = self.now;
        row.length = Some(length);
        // The stored row had the same expiry.
        self.put(&row, Replaces::row(stored.then_some(&row)))?;
        self.record_collection(&row, command)
    }

    /// Records the write `command` made to the collection `row`: a `set` change with its type
    /// and the command, and no value (a watcher reads what it needs).
    pub(super) fn record_collection(
        &mut self,
        row: &KeyValue,
        command: &str,
    ) -> Result<(), StoreError> {
        let mut change = self.change(ChangeOp::Set, &row.key, None)?;
        change.expires_at = row.expires_at;
        change.kind = Some(row.kind.clone());
        change.command = Some(command.to_owned());
        self.rows.log_change(self.conn, change)
    }

    /// The row of `to` made ready to be replaced: an expired one recorded as such, a
    /// collection's members queued for removal. What a write of `to` replaces.
    fn clear_destination(&mut self, to: &str) -> Result<Replaces, StoreError> {
        validate_writable_key(to)?;
        let row = self.locked_row(to)?;
        let replaces = Replaces::row(row.as_ref());
        let coll = row.as_ref().and_then(|r| r.coll);
        if let Lookup::Expired = self.lookup(row) {
            self.record(ChangeOp::Expired, to, None)?;
        }
        self.discard_members(coll)?;
        Ok(replaces)
    }

    /// RENAME: the key `from` (a string, or a collection with its members) and its expiry
    /// move to `to`, replacing whatever `to` held; `NotFound` when `from` is absent.
    pub fn rename(&mut self, from: &str, to: &str) -> Result<(), StoreError> {
        validate_writable_key(from)?;
        let Some(mut row) = self.get(from)? else {
            return Err(StoreError::NotFound { expired: false });
        };
        let replaces = self.clear_destination(to)?;
        row.key = to.to_owned();
        row.version = self.write_version()?;
        row.updated_at = self.now;
        self.put(&row, replaces)?;
        if row.is_string() {
            self.record(ChangeOp::Set, to, Some(&row))?;
        } else {
            self.record_collection(&row, "rename")?;
        }
        self.remove(from)?;
        self.record(ChangeOp::Delete, from, None)
    }

    /// COPY of the collection `source` to `to`, replacing whatever `to` held: a new collection
    /// with the same members and expiry.
    pub fn copy_collection(&mut self, source: &KeyValue, to: &str) -> Result<(), StoreError> {
        self.needs_own_transaction()?;
        let from = source
            .coll
            .ok_or_else(|| StoreError::Internal("a collection without an id".into()))?;
        let replaces = self.clear_destination(to)?;
        let coll = collections::new_id(self.conn)?;
        collections::copy_members(self.conn, from, coll)?;
        let row = KeyValue {
            key: to.to_owned(),
            version: self.write_version()?,
            created_at: self.now,
            updated_at: self.now,
            coll: Some(coll),
            ..source.clone()
        };
        self.put(&row, replaces)?;
        self.record_collection(&row, "copy")
    }

    /// Removes up to [`collections::GARBAGE_BATCH`] members of discarded collections (a
    /// transaction of its own); how many went.
    pub fn collect_garbage(&mut self) -> Result<usize, StoreError> {
        self.needs_own_transaction()?;
        collections::collect_garbage(self.conn)
    }
}
