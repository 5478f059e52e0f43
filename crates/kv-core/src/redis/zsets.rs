//! Sorted-set commands (ZADD, ZRANGE, …): their home, empty until kvstore stores sorted sets.
