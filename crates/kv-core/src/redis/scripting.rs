//! Lua scripting (EVAL, EVALSHA, SCRIPT): its home, empty until kvstore runs scripts.
