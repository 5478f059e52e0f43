//! `GET /_metrics`: the server's figures in Prometheus text format (0.0.4).
//!
//! Requests are counted by route template (never by key, so the number of series stays
//! small), live and expiring keys come from a cached count (see [`key_counts`]), and the
//! sweeps' count of deleted keys and the pool gauges are read when scraped ([`scrape`]).

pub mod key_counts;
pub mod middleware;
mod registry;
pub mod scrape;

pub use middleware::RouteLabel;
pub use registry::{CONTENT_TYPE, Metrics, unix_time};
