//! kv-core's integration tests, one binary (`cargo test -p kv-core --test it`).
//!
//! The cases proptest once found failing are kept in `tests/proptest-regressions/properties.txt`
//! and run first: with a `main.rs` beside the test sources, that is where proptest's default
//! (`FileFailurePersistence::SourceParallel`) looks, not beside `properties.rs`.

mod properties;
