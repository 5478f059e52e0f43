//! kv-server's integration tests, one binary (`cargo test --test it`): each module tests one
//! area against the real `kv-server` and `kv-sweeper` binaries, with the shared harness and
//! fixtures in `common`. Filter by module, e.g. `cargo test --test it -- upstash::`.

mod common;

mod auth;
mod bad_input;
mod collection;
mod conditional_writes;
mod cors;
mod data_types;
mod durability;
mod faults;
mod hardening;
mod health_check;
mod idempotency;
mod limits;
mod openapi;
mod operations;
mod postgres_scale_out;
mod postgres_tls;
mod races;
mod read_replicas;
mod scopes;
mod scripting;
mod seed_api;
mod snapshots;
mod sweeper;
mod throttle;
mod tls;
mod transactions;
mod transfer;
mod typed_routes;
mod ui;
mod upstash;
mod watch;
