//! Set commands (SADD, SMEMBERS, …): their home, empty until kvstore stores sets.
