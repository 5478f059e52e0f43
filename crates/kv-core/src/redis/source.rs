//! Where read commands read: a write transaction ([`Tx`], when they run beside writes in a
//! pipeline or `/multi-exec`) or a [`Snapshot`] on a read connection (a pipeline of reads
//! only never queues behind the writer). Read commands are written once, over [`Source`].

use crate::args::{ScanArgs, ScanPage};
use crate::backend::DbConnection;
use crate::error::StoreError;
use crate::model::StoredValue;
use crate::store::{self, Lookup, Tx};

/// Where read commands read.
pub trait Source {
    fn now(&self) -> i64;
    /// The live row of `key`, if any.
    fn row(&mut self, key: &str) -> Result<Option<StoredValue>, StoreError>;
    /// A page of live keys: under `within`'s prefixes (a scoped API key's), or under
    /// `args.prefix` when `within` is `None`.
    fn page(&mut self, within: Option<&[String]>, args: &ScanArgs) -> Result<ScanPage, StoreError>;
    /// How many keys are live.
    fn live_keys(&mut self) -> Result<i64, StoreError>;
    /// The connection collections' members are read on (see `crate::collections`).
    fn members(&mut self) -> Result<&mut DbConnection, StoreError>;
    /// Whether it reads committed data only (a snapshot, not a write transaction): what it
    /// reads at a key's version is then that version's for good (see `sorted_sets`).
    fn committed(&self) -> bool;
}

impl Source for Tx<'_> {
    fn now(&self) -> i64 {
        Tx::now(self)
    }

    fn row(&mut self, key: &str) -> Result<Option<StoredValue>, StoreError> {
        Ok(self.get(key)?.map(|row| StoredValue {
            value: row.value,
            version: row.version,
            expires_at: row.expires_at,
            kind: row.kind,
            coll: row.coll,
            length: row.length,
        }))
    }

    fn page(&mut self, within: Option<&[String]>, args: &ScanArgs) -> Result<ScanPage, StoreError> {
        // A key range is no set of staged rows: on PostgreSQL a transaction of its own.
        self.needs_own_transaction()?;
        let now = Tx::now(self);
        let conn = self.conn();
        listing_page(conn, now, within, args)
    }

    fn live_keys(&mut self) -> Result<i64, StoreError> {
        store::stats_in(self)
    }

    fn members(&mut self) -> Result<&mut DbConnection, StoreError> {
        // Members are no set of staged rows: on PostgreSQL a transaction of its own.
        self.needs_own_transaction()?;
        Ok(self.conn())
    }

    fn committed(&self) -> bool {
        false
    }
}

/// Reads on a read connection, at `now`.
pub struct Snapshot<'c> {
    pub conn: &'c mut DbConnection,
    pub now: i64,
}

impl Source for Snapshot<'_> {
    fn now(&self) -> i64 {
        self.now
    }

    fn row(&mut self, key: &str) -> Result<Option<StoredValue>, StoreError> {
        Ok(match store::get(self.conn, self.now, key)? {
            Lookup::Live(row) => Some(row),
            Lookup::Missing | Lookup::Expired => None,
        })
    }

    fn page(&mut self, within: Option<&[String]>, args: &ScanArgs) -> Result<ScanPage, StoreError> {
        listing_page(self.conn, self.now, within, args)
    }

    fn live_keys(&mut self) -> Result<i64, StoreError> {
        store::live_keys(self.conn, self.now)
    }

    fn members(&mut self) -> Result<&mut DbConnection, StoreError> {
        Ok(self.conn)
    }

    fn committed(&self) -> bool {
        true
    }
}

fn listing_page(
    conn: &mut DbConnection,
    now: i64,
    within: Option<&[String]>,
    args: &ScanArgs,
) -> Result<ScanPage, StoreError> {
    match within {
        Some(prefixes) => store::scan_within(conn, now, prefixes, args),
        None => store::scan(conn, now, args),
    }
}
