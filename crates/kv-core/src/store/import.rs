//! The write transaction's import operations: a page of string lines in two statements, and
//! one collection line (see `crate::transfer`).

use std::collections::{BTreeMap, HashMap, HashSet};

use super::{Lookup, Tx};
use crate::args::{ImportLine, ImportMode, Members};
use crate::backend::{self, Replaces};
use crate::changes::{self, ChangeOp};
use crate::collections;
use crate::error::StoreError;
use crate::key::validate_writable_key;
use crate::model::KeyValue;
use crate::sorted_sets;

impl Tx<'_> {
    /// Lines of an import (see [`crate::transfer::import`]), in order: each writes its key
    /// unless `mode` keeps a live one or refuses to touch it, seeing the lines before it. Two
    /// statements for all of them: one reads the rows of their keys, one writes the new rows.
    /// Returns how many lines wrote. Runs as a transaction of its own on PostgreSQL: an
    /// import is no set of staged rows.
    pub fn import_lines(
        &mut self,
        lines: Vec<(u64, ImportLine)>,
        mode: ImportMode,
    ) -> Result<u64, StoreError> {
        self.needs_own_transaction()?;
        let keys: Vec<&str> = lines.iter().map(|(_, line)| line.key.as_str()).collect();
        let (expired, live): (Vec<KeyValue>, Vec<KeyValue>) = backend::rows_of(self.conn, &keys)?
            .into_iter()
            .partition(|row| row.is_expired(self.now));
        let mut expired: HashSet<String> = expired.into_iter().map(|row| row.key).collect();
        let mut rows: HashMap<String, KeyValue> =
            live.into_iter().map(|row| (row.key.clone(), row)).collect();
        let mut written: BTreeMap<String, KeyValue> = BTreeMap::new();
        let mut log = Vec::new();
        let mut wrote = 0;
        for (number, line) in lines {
            let live = written.get(&line.key).or_else(|| rows.get(&line.key));
            match (mode, live) {
                (ImportMode::SkipExisting, Some(_)) => continue,
                (ImportMode::FailOnExisting, Some(_)) => {
                    return Err(StoreError::KeyExists(line.key).in_line(number));
                }
                _ => {}
            }
            if let Some(coll) = live.and_then(|r| r.coll) {
                collections::discard(self.conn, coll)?;
            }
            let row = KeyValue::string(
                &line.key,
                line.value,
                self.write_version()?,
                live.map_or(self.now, |r| r.created_at),
                self.now,
                line.expires_at,
            );
            if expired.remove(&row.key) {
                log.push(self.change(ChangeOp::Expired, &row.key, None)?);
            }
            log.push(self.change(ChangeOp::Set, &row.key, Some(&row))?);
            rows.remove(&row.key);
            written.insert(row.key.clone(), row);
            wrote += 1;
        }
        let written: Vec<KeyValue> = written.into_values().collect();
        backend::insert_rows(self.conn, &written)?;
        changes::insert(self.conn, &log)?;
        Ok(wrote)
    }

    /// An import line of a collection (see [`crate::transfer::import`]): unless `mode` keeps a
    /// live key of that name or refuses to touch it, replaces whatever the key held (a
    /// collection's members queued for removal) with a new collection of the line's members,
    /// its expiry, and the transaction's version. A line without members writes nothing (an
    /// empty collection does not exist). Returns whether it wrote. One statement per 1000
    /// members; on PostgreSQL a transaction of its own, as [`Tx::import_lines`].
    pub fn import_collection(
        &mut self,
        number: u64,
        line: ImportLine,
        mode: ImportMode,
    ) -> Result<bool, StoreError> {
        self.needs_own_transaction()?;
        validate_writable_key(&line.key)?;
        let Some(members) = line.members.filter(|m| !m.is_empty()) else {
            return Ok(false);
        };
        let row = self.locked_row(&line.key)?;
        let replaces = Replaces::row(row.as_ref());
        let exists = row.is_some();
        let found_coll = row.as_ref().and_then(|r| r.coll);
        let live = match self.lookup(row) {
            Lookup::Live(row) => Some(row),
            Lookup::Missing | Lookup::Expired => None,
        };
        match (mode, &live) {
            (ImportMode::SkipExisting, Some(_)) => return Ok(false),
            (ImportMode::FailOnExisting, Some(_)) => {
                return Err(StoreError::KeyExists(line.key).in_line(number));
            }
            _ => {}
        }
        if exists && live.is_none() {
            self.record(ChangeOp::Expired, &line.key, None)?;
        }
        self.discard_members(found_coll)?;
        let coll = collections::new_id(self.conn)?;
        match &members {
            Members::Hash(fields) => collections::insert_hash(self.conn, coll, fields)?,
            Members::Set(items) => collections::insert_set(self.conn, coll, items)?,
            Members::List(items) => collections::insert_list(self.conn, coll, 0, items)?,
            Members::Zset(items) => {
                sorted_sets::insert_all(self.conn, coll, items)?;
                sorted_sets::build_blocks(self.conn, coll, items.len() as i64)?;
            }
        }
        let row = KeyValue {
            key: line.key,
            value: "null".to_owned(),
            version: self.write_version()?,
            created_at: live.as_ref().map_or(self.now, |r| r.created_at),
            updated_at: self.now,
            expires_at: line.expires_at,
            kind: members.kind().to_owned(),
            coll: Some(coll),
            length: Some(members.len() as i64),
        };
        self.put(&row, replaces)?;
        self.record_collection(&row, "import")?;
        Ok(true)
    }
}
