//! Hash commands (HSET, HGET, …): their home, empty until kvstore stores hashes.
