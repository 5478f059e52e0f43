//! List commands (LPUSH, LRANGE, …): their home, empty until kvstore stores lists.
