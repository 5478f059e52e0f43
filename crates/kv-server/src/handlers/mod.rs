//! Thin handlers: parse the request, call kv-core in one database call, shape the response.

pub mod bodies;
pub mod collection;
pub mod eval;
pub mod keys;
pub mod metrics;
pub mod server;
pub mod transfer;
pub mod typed;
pub mod ui;
