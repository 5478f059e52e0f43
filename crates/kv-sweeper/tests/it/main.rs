//! kv-sweeper's integration tests, one binary (`cargo test --test it`).

mod cli;
