//! The rows of a PostgreSQL write batch, staged in memory ([`crate::writer`]).
//!
//! A batch reads every row its requests touch in one statement, runs the requests against
//! those rows here (each request sees the ones before it), and writes what changed back in one
//! statement: a batch of any size costs the same few round trips. A request that fails leaves
//! nothing behind: its changes live apart ([`Stage::begin_request`]) until it succeeds.
//!
//! Which rows a batch needs is learnt by running its requests once in discovery mode
//! ([`Stage::discovery`]), where the first row a request asks for (or the keys a transaction
//! declares with `declare_keys`) is noted and the request stops there. Requests are deterministic
//! over the same rows (each carries its own "now"), so the real run asks for the same rows; a
//! row it asks for anyway is read then, on its own (the batch holds the database's write lock,
//! see `crate::backend::postgres::find`).
//!
//! The records of `Idempotency-Key`s ([`crate::idempotency`]) are staged the same way: the
//! batch reads those of its requests in one statement and writes the new ones in one more.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::backend::{DbConnection, postgres};
use crate::changes::Change;
use crate::error::StoreError;
use crate::model::{IdempotencyRecord, KeyValue};

/// How the staged rows answer a request that asks for a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Note the key and stop the request.
    Discover,
    /// Read rows not staged yet from the database.
    Run,
}

/// What a request asked of the rows that only a statement of its own can do (a bulk delete
/// over a key range): it runs as a transaction of its own instead (see [`crate::writer`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NeedsOwnTransaction;

#[derive(Debug)]
pub struct Stage {
    mode: Mode,
    /// Rows as the batch's requests so far left them (`None`: no row).
    rows: HashMap<String, Option<KeyValue>>,
    /// The running request's changes, kept apart until it succeeds.
    request: HashMap<String, Option<KeyValue>>,
    /// Keys whose rows the batch changed: written back at its end.
    changed: BTreeSet<String>,
    /// Discovery: the keys the requests asked for, in order.
    wanted: Vec<String>,
    /// The running request needs a transaction of its own.
    own_transaction: bool,
    /// A row read on its own failed: the batch's transaction is aborted.
    database_error: Option<StoreError>,
    /// Idempotency records as the batch's requests so far left them (`None`: none stored).
    records: HashMap<String, Option<IdempotencyRecord>>,
    /// The running request's new record, kept apart until it succeeds.
    request_record: Option<IdempotencyRecord>,
    /// Records the batch's requests stored: written at its end.
    new_records: BTreeMap<String, IdempotencyRecord>,
    /// Discovery: the idempotency keys the requests asked for.
    wanted_records: Vec<String>,
    /// The running request's change-log rows, kept apart until it succeeds.
    request_log: Vec<Change>,
    /// The change-log rows of the batch's successful requests: written at its end.
    log: Vec<Change>,
}

/// The sentinel error that stops a request in discovery mode (its result is thrown away).
fn stop_discovery() -> StoreError {
    StoreError::Internal("stopped at discovery".into())
}

impl Stage {
    /// A stage that only notes which keys the requests ask for.
    pub fn discovery() -> Stage {
        Stage {
            mode: Mode::Discover,
            rows: HashMap::new(),
            request: HashMap::new(),
            changed: BTreeSet::new(),
            wanted: Vec::new(),
            own_transaction: false,
            database_error: None,
            records: HashMap::new(),
            request_record: None,
            new_records: BTreeMap::new(),
            wanted_records: Vec::new(),
            request_log: Vec::new(),
            log: Vec::new(),
        }
    }

    /// The idempotency records read for `keys` (`records` holds those stored).
    pub(crate) fn with_records(mut self, keys: &[&str], records: Vec<IdempotencyRecord>) -> Stage {
        self.records = keys.iter().map(|k| ((*k).to_owned(), None)).collect();
        for record in records {
            self.records
                .insert(record.idempotency_key.clone(), Some(record));
        }
        self
    }

    /// A stage over the rows read for `keys` (`rows` holds those that exist).
    pub fn over(keys: &[&str], rows: Vec<KeyValue>) -> Stage {
        let mut staged: HashMap<String, Option<KeyValue>> =
            keys.iter().map(|k| ((*k).to_owned(), None)).collect();
        for row in rows {
            staged.insert(row.key.clone(), Some(row));
        }
        Stage {
            mode: Mode::Run,
            rows: staged,
            ..Stage::discovery()
        }
    }

    /// Starts a request: its changes are kept apart until [`Stage::end_request`].
    pub fn begin_request(&mut self) {
        self.request.clear();
        self.request_record = None;
        self.request_log.clear();
        self.own_transaction = false;
    }

    /// Ends a request: a successful one's changes join the batch's, a failed one's are dropped.
    pub fn end_request(&mut self, succeeded: bool) {
        if succeeded {
            for (key, row) in self.request.drain() {
                self.changed.insert(key.clone());
                self.rows.insert(key, row);
            }
            if let Some(record) = self.request_record.take() {
                let key = record.idempotency_key.clone();
                self.records.insert(key.clone(), Some(record.clone()));
                self.new_records.insert(key, record);
            }
            self.log.append(&mut self.request_log);
        } else {
            self.request.clear();
            self.request_record = None;
            self.request_log.clear();
        }
    }

    /// Whether the last request asked for something only a transaction of its own can do.
    pub fn needs_own_transaction(&self) -> bool {
        self.own_transaction
    }

    /// Discovery: the keys asked for, each once, in byte order.
    pub fn wanted_keys(&self) -> Vec<&str> {
        let mut keys: Vec<&str> = self.wanted.iter().map(String::as_str).collect();
        keys.sort_unstable();
        keys.dedup();
        keys
    }

    /// Discovery: the idempotency keys asked for, each once, in byte order.
    pub fn wanted_record_keys(&self) -> Vec<&str> {
        let mut keys: Vec<&str> = self.wanted_records.iter().map(String::as_str).collect();
        keys.sort_unstable();
        keys.dedup();
        keys
    }

    /// How many distinct keys discovery has noted so far (an upper bound).
    pub fn wanted_count(&self) -> usize {
        self.wanted.len()
    }

    /// The row of `key` as the running request sees it.
    pub(crate) fn row(
        &mut self,
        conn: &mut DbConnection,
        key: &str,
    ) -> Result<Option<KeyValue>, StoreError> {
        if let Some(row) = self.request.get(key).or_else(|| self.rows.get(key)) {
            return Ok(row.clone());
        }
        match (self.mode, conn) {
            (Mode::Discover, _) => {
                self.wanted.push(key.to_owned());
                Err(stop_discovery())
            }
            (Mode::Run, DbConnection::Postgres(c)) => match postgres::read_rows(c, &[key]) {
                Ok(mut rows) => {
                    let row = rows.pop();
                    self.rows.insert(key.to_owned(), row.clone());
                    Ok(row)
                }
                Err(err) => {
                    let err = StoreError::from(err);
                    self.database_error.get_or_insert_with(|| err.clone());
                    Err(err)
                }
            },
            (Mode::Run, DbConnection::Sqlite(_)) => Err(StoreError::Internal(
                "staged batches are PostgreSQL's".into(),
            )),
        }
    }

    /// The idempotency record of `key` as the running request sees it. Discovery notes the
    /// key and answers "none", so that the request goes on to name its rows too.
    pub(crate) fn record(
        &mut self,
        conn: &mut DbConnection,
        key: &str,
    ) -> Result<Option<IdempotencyRecord>, StoreError> {
        if let Some(record) = self
            .request_record
            .as_ref()
            .filter(|r| r.idempotency_key == key)
        {
            return Ok(Some(record.clone()));
        }
        if let Some(record) = self.records.get(key) {
            return Ok(record.clone());
        }
        if self.mode == Mode::Discover {
            self.wanted_records.push(key.to_owned());
            return Ok(None);
        }
        match crate::idempotency::find_records(conn, &[key]) {
            Ok(mut records) => {
                let record = records.pop();
                self.records.insert(key.to_owned(), record.clone());
                Ok(record)
            }
            Err(err) => {
                self.database_error.get_or_insert_with(|| err.clone());
                Err(err)
            }
        }
    }

    /// Stores the running request's response record.
    pub(crate) fn put_record(&mut self, record: IdempotencyRecord) {
        self.request_record = Some(record);
    }

    /// The records the batch's requests stored.
    pub(crate) fn new_records(&self) -> Vec<IdempotencyRecord> {
        self.new_records.values().cloned().collect()
    }

    /// A transaction names all its keys up front: discovery notes them all (the real run has
    /// them staged already, or reads them as they come).
    pub(crate) fn declare(&mut self, keys: &[&str]) {
        if self.mode == Mode::Discover {
            self.wanted.extend(keys.iter().map(|k| (*k).to_owned()));
        }
    }

    /// Writes `row` over whatever its key held.
    pub(crate) fn put(&mut self, row: KeyValue) {
        self.request.insert(row.key.clone(), Some(row));
    }

    /// Removes the row of `key`.
    pub(crate) fn remove(&mut self, key: &str) {
        self.request.insert(key.to_owned(), None);
    }

    /// Adds a row to the change log (see [`crate::changes`]).
    pub(crate) fn log_change(&mut self, change: Change) {
        self.request_log.push(change);
    }

    /// The change-log rows of the batch's successful requests, in order.
    pub fn change_log(&self) -> &[Change] {
        &self.log
    }

    /// The running request needs a statement of its own: it stops, and runs again alone.
    pub(crate) fn own_transaction(&mut self) -> StoreError {
        self.own_transaction = true;
        stop_discovery()
    }

    /// The error of a row read on its own, if one failed (the batch must roll back).
    pub fn take_database_error(&mut self) -> Option<StoreError> {
        self.database_error.take()
    }

    /// The batch's changes: rows to write and keys whose rows to delete.
    pub fn changes(&self) -> (Vec<KeyValue>, Vec<&str>) {
        let mut puts = Vec::new();
        let mut removes = Vec::new();
        for key in &self.changed {
            match self.rows.get(key) {
                Some(Some(row)) => puts.push(row.clone()),
                _ => removes.push(key.as_str()),
            }
        }
        (puts, removes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(key: &str, value: &str) -> KeyValue {
        KeyValue::string(key, value.into(), 1, 0, 0, None)
    }

    #[test]
    fn a_failed_request_leaves_nothing_and_a_successful_one_is_seen_by_the_next() {
        let mut stage = Stage::over(&["a", "b"], vec![row("a", "1")]);
        let mut conn = crate::backend::DbConnection::Sqlite(
            diesel::Connection::establish(":memory:").expect("sqlite"),
        );
        stage.begin_request();
        stage.put(row("b", "2"));
        stage.remove("a");
        stage.end_request(false);
        assert_eq!(stage.row(&mut conn, "a").expect("a"), Some(row("a", "1")));
        assert_eq!(stage.row(&mut conn, "b").expect("b"), None);
        assert_eq!(stage.changes(), (vec![], vec![]));

        stage.begin_request();
        stage.put(row("b", "2"));
        assert_eq!(
            stage.row(&mut conn, "b").expect("b"),
            Some(row("b", "2")),
            "a request sees its own writes"
        );
        stage.end_request(true);
        stage.begin_request();
        stage.remove("a");
        stage.end_request(true);
        assert_eq!(stage.changes(), (vec![row("b", "2")], vec!["a"]));
    }

    #[test]
    fn discovery_notes_the_keys_asked_for_and_stops_the_request() {
        let mut stage = Stage::discovery();
        let mut conn = crate::backend::DbConnection::Sqlite(
            diesel::Connection::establish(":memory:").expect("sqlite"),
        );
        stage.begin_request();
        stage.declare(&["z", "a"]);
        assert!(stage.row(&mut conn, "m").is_err());
        stage.end_request(false);
        stage.begin_request();
        assert!(stage.row(&mut conn, "a").is_err());
        assert!(!stage.needs_own_transaction());
        let _ = stage.own_transaction();
        assert!(stage.needs_own_transaction());
        assert_eq!(stage.wanted_keys(), vec!["a", "m", "z"]);
    }
}
