//! kvstore's storage layer, shared by `kv-server` and `kv-sweeper`.
//!
//! Store operations are functions over a database connection with "now" (unix milliseconds)
//! passed in, so the expiry rules are pure and a transaction is the same operations run in
//! one database transaction. Nothing here knows about HTTP.

pub mod args;
pub mod backend;
pub mod budget;
pub mod changes;
pub mod clock;
pub mod collections;
pub mod copy;
pub mod cursor;
pub mod database;
pub mod deadline;
pub mod error;
pub mod expiry;
pub mod glob;
pub mod idempotency;
pub mod key;
pub mod known_version;
pub mod logging;
pub mod lua;
pub mod model;
pub mod point_reads;
pub mod precondition;
pub mod reader;
pub mod redis;
pub mod replicas;
pub mod request;
mod rows;
pub mod schema;
pub mod scripts;
pub mod sorted_sets;
pub mod stage;
pub mod store;
pub mod transfer;
pub mod tx;
pub mod typed;
pub mod view;
pub mod writer;

pub use backend::{
    Backend, ConnectionOptions, DatabaseUrl, DbConnection, DbPool, DbSetupError, SyncMode,
};
pub use clock::now_ms;
pub use database::{
    FeedConnection, FeedConnector, ReplicaReads, ShortRead, Store, StoreOptions, StorePool,
    Versioned,
};
pub use error::StoreError;
