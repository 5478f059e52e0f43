//! The command table: every Redis command `/_upstash` (and later Lua) runs, declared once.
//!
//! As Redis's own table (`src/commands/*.json` → `commands.def`), each entry says the
//! command's name, its arity, whether it reads or writes, which of its arguments are keys, and
//! the function that runs it. The scope check, the read-only check, the arity check and the
//! choice between a read connection and the writer all come from here, so adding a command is
//! one entry here and one function in its family's file.

use std::collections::HashMap;
use std::sync::LazyLock;

use super::call::Call;
use super::reply::Reply;
use super::source::Source;
use super::spec::{KeySpec, Run, Spec};
use super::{generic, hashes, lists, scripting, server, sets, strings};
use super::{zset_combine, zset_ranges, zsets};
use crate::error::StoreError;
use crate::store::Tx;

/// The first argument is the key.
const FIRST: KeySpec = KeySpec::Range {
    first: 0,
    last: 0,
    step: 1,
};
/// The first two arguments are keys (a source and a destination).
const FIRST_TWO: KeySpec = KeySpec::Range {
    first: 0,
    last: 1,
    step: 1,
};
/// Every argument is a key.
const ALL: KeySpec = KeySpec::Range {
    first: 0,
    last: -1,
    step: 1,
};
/// Key, value, key, value, …
const PAIRS: KeySpec = KeySpec::Range {
    first: 0,
    last: -1,
    step: 2,
};

const fn read(
    name: &'static str,
    arity: i32,
    keys: KeySpec,
    f: fn(&mut dyn Source, &Call<'_>) -> Result<Reply, StoreError>,
) -> Spec {
    Spec {
        name,
        arity,
        keys,
        run: Run::Read(f),
    }
}

const fn write(
    name: &'static str,
    arity: i32,
    keys: KeySpec,
    f: fn(&mut Tx<'_>, &Call<'_>) -> Result<Reply, StoreError>,
) -> Spec {
    Spec {
        name,
        arity,
        keys,
        run: Run::Write(f),
    }
}

/// Every command, by family (the arities are Redis 7's).
pub static COMMANDS: &[Spec] = &[
    // server and connection
    read("ping", -1, KeySpec::None, server::ping),
    read("echo", 2, KeySpec::None, server::echo),
    read("time", 1, KeySpec::None, server::time),
    read("dbsize", 1, KeySpec::Every, server::dbsize),
    write("flushdb", -1, KeySpec::Every, server::flushdb),
    write("flushall", -1, KeySpec::Every, server::flushdb),
    // generic keys
    read("exists", -2, ALL, generic::exists),
    read("touch", -2, ALL, generic::exists),
    read("ttl", 2, FIRST, generic::ttl),
    read("pttl", 2, FIRST, generic::pttl),
    read("type", 2, FIRST, generic::type_of),
    read("keys", 2, KeySpec::Listing, generic::keys),
    read("scan", -2, KeySpec::Listing, generic::scan),
    read("randomkey", 1, KeySpec::Listing, generic::random_key),
    write("del", -2, ALL, generic::del),
    write("unlink", -2, ALL, generic::del),
    write("expire", -3, FIRST, generic::expire),
    write("pexpire", -3, FIRST, generic::expire),
    write("expireat", -3, FIRST, generic::expire),
    write("pexpireat", -3, FIRST, generic::expire),
    write("persist", 2, FIRST, generic::persist),
    write("rename", 3, FIRST_TWO, generic::rename),
    write("renamenx", 3, FIRST_TWO, generic::renamenx),
    write("copy", -3, FIRST_TWO, generic::copy),
    // strings
    read("get", 2, FIRST, strings::get),
    read("mget", -2, ALL, strings::mget),
    read("getrange", 4, FIRST, strings::getrange),
    read("strlen", 2, FIRST, strings::strlen),
    write("set", -3, FIRST, strings::set),
    write("setnx", 3, FIRST, strings::setnx),
    write("setex", 4, FIRST, strings::setex),
    write("psetex", 4, FIRST, strings::psetex),
    write("mset", -3, PAIRS, strings::mset),
    write("msetnx", -3, PAIRS, strings::msetnx),
    write("getdel", 2, FIRST, strings::getdel),
    write("getset", 3, FIRST, strings::getset),
    write("getex", -2, FIRST, strings::getex),
    write("append", 3, FIRST, strings::append),
    write("setrange", 4, FIRST, strings::setrange),
    write("incr", 2, FIRST, strings::incr),
    write("decr", 2, FIRST, strings::decr),
    write("incrby", 3, FIRST, strings::incrby),
    write("decrby", 3, FIRST, strings::decrby),
    write("incrbyfloat", 3, FIRST, strings::incrbyfloat),
    // hashes
    read("hget", 3, FIRST, hashes::hget),
    read("hmget", -3, FIRST, hashes::hmget),
    read("hgetall", 2, FIRST, hashes::hgetall),
    read("hkeys", 2, FIRST, hashes::hgetall),
    read("hvals", 2, FIRST, hashes::hgetall),
    read("hlen", 2, FIRST, hashes::hlen),
    read("hexists", 3, FIRST, hashes::hexists),
    read("hstrlen", 3, FIRST, hashes::hstrlen),
    read("hrandfield", -2, FIRST, hashes::hrandfield),
    read("hscan", -3, FIRST, hashes::hscan),
    write("hset", -4, FIRST, hashes::hset),
    write("hmset", -4, FIRST, hashes::hset),
    write("hsetnx", 4, FIRST, hashes::hsetnx),
    write("hdel", -3, FIRST, hashes::hdel),
    write("hincrby", 4, FIRST, hashes::hincrby),
    write("hincrbyfloat", 4, FIRST, hashes::hincrbyfloat),
    // sets
    read("scard", 2, FIRST, sets::scard),
    read("sismember", 3, FIRST, sets::sismember),
    read("smismember", -3, FIRST, sets::smismember),
    read("smembers", 2, FIRST, sets::smembers),
    read("srandmember", -2, FIRST, sets::srandmember),
    read("sinter", -2, ALL, sets::scombine),
    read("sunion", -2, ALL, sets::scombine),
    read("sdiff", -2, ALL, sets::scombine),
    read(
        "sintercard",
        -3,
        KeySpec::NumKeys { at: 0 },
        sets::sintercard,
    ),
    read("sscan", -3, FIRST, sets::sscan),
    write("sadd", -3, FIRST, sets::sadd),
    write("srem", -3, FIRST, sets::srem),
    write("spop", -2, FIRST, sets::spop),
    write("smove", 4, FIRST_TWO, sets::smove),
    write("sinterstore", -3, ALL, sets::sstore),
    write("sunionstore", -3, ALL, sets::sstore),
    write("sdiffstore", -3, ALL, sets::sstore),
    // lists
    read("llen", 2, FIRST, lists::llen),
    read("lindex", 3, FIRST, lists::lindex),
    read("lrange", 4, FIRST, lists::lrange),
    read("lpos", -3, FIRST, lists::lpos),
    write("lpush", -3, FIRST, lists::push),
    write("rpush", -3, FIRST, lists::push),
    write("lpushx", -3, FIRST, lists::push),
    write("rpushx", -3, FIRST, lists::push),
    write("lpop", -2, FIRST, lists::pop),
    write("rpop", -2, FIRST, lists::pop),
    write("lset", 4, FIRST, lists::lset),
    write("ltrim", 4, FIRST, lists::ltrim),
    write("lrem", 4, FIRST, lists::lrem),
    write("linsert", 5, FIRST, lists::linsert),
    write("lmove", 5, FIRST_TWO, lists::lmove),
    write("rpoplpush", 3, FIRST_TWO, lists::rpoplpush),
    write("lmpop", -4, KeySpec::NumKeys { at: 0 }, lists::lmpop),
    // sorted sets
    read("zcard", 2, FIRST, zsets::zcard),
    read("zscore", 3, FIRST, zsets::zscore),
    read("zmscore", -3, FIRST, zsets::zmscore),
    read("zrank", -3, FIRST, zsets::zrank),
    read("zrevrank", -3, FIRST, zsets::zrank),
    read("zcount", 4, FIRST, zset_ranges::zcount),
    read("zlexcount", 4, FIRST, zset_ranges::zcount),
    read("zrange", -4, FIRST, zset_ranges::zrange),
    read("zrangebyscore", -4, FIRST, zset_ranges::zrange),
    read("zrevrangebyscore", -4, FIRST, zset_ranges::zrange),
    read("zrangebylex", -4, FIRST, zset_ranges::zrange),
    read("zrevrangebylex", -4, FIRST, zset_ranges::zrange),
    read("zrevrange", -4, FIRST, zset_ranges::zrange),
    read("zrandmember", -2, FIRST, zset_ranges::zrandmember),
    read("zscan", -3, FIRST, zsets::zscan),
    read(
        "zunion",
        -3,
        KeySpec::NumKeys { at: 0 },
        zset_combine::zcombine,
    ),
    read(
        "zinter",
        -3,
        KeySpec::NumKeys { at: 0 },
        zset_combine::zcombine,
    ),
    read(
        "zdiff",
        -3,
        KeySpec::NumKeys { at: 0 },
        zset_combine::zcombine,
    ),
    read(
        "zintercard",
        -3,
        KeySpec::NumKeys { at: 0 },
        zset_combine::zintercard,
    ),
    write("zadd", -4, FIRST, zsets::zadd),
    write("zincrby", 4, FIRST, zsets::zincrby),
    write("zrem", -3, FIRST, zsets::zrem),
    write("zpopmin", -2, FIRST, zset_ranges::zpop),
    write("zpopmax", -2, FIRST, zset_ranges::zpop),
    write("zremrangebyrank", 4, FIRST, zset_ranges::zremrange),
    write("zremrangebyscore", 4, FIRST, zset_ranges::zremrange),
    write("zremrangebylex", 4, FIRST, zset_ranges::zremrange),
    write("zrangestore", -5, FIRST_TWO, zset_ranges::zrangestore),
    write(
        "zunionstore",
        -4,
        KeySpec::DestinationNumKeys,
        zset_combine::zcombinestore,
    ),
    write(
        "zinterstore",
        -4,
        KeySpec::DestinationNumKeys,
        zset_combine::zcombinestore,
    ),
    write(
        "zdiffstore",
        -4,
        KeySpec::DestinationNumKeys,
        zset_combine::zcombinestore,
    ),
    // scripting
    write("eval", -3, KeySpec::NumKeys { at: 1 }, scripting::eval),
    write("evalsha", -3, KeySpec::NumKeys { at: 1 }, scripting::eval),
    read(
        "eval_ro",
        -3,
        KeySpec::NumKeys { at: 1 },
        scripting::eval_ro,
    ),
    read(
        "evalsha_ro",
        -3,
        KeySpec::NumKeys { at: 1 },
        scripting::eval_ro,
    ),
    write("script", -2, KeySpec::None, scripting::script),
];

static BY_NAME: LazyLock<HashMap<&'static str, &'static Spec>> =
    LazyLock::new(|| COMMANDS.iter().map(|spec| (spec.name, spec)).collect());

/// The declaration of the command called `name` (any case), if there is one.
pub fn lookup(name: &str) -> Option<&'static Spec> {
    // The SDKs send names in lowercase: no copy for them.
    if name.bytes().any(|b| b.is_ascii_uppercase()) {
        BY_NAME.get(name.to_ascii_lowercase().as_str()).copied()
    } else {
        BY_NAME.get(name).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_command_is_declared_once_in_lowercase() {
        assert_eq!(BY_NAME.len(), COMMANDS.len(), "a name declared twice");
        for spec in COMMANDS {
            assert_eq!(spec.name, spec.name.to_ascii_lowercase());
            assert_ne!(spec.arity, 0, "{}", spec.name);
        }
        assert_eq!(lookup("GeT").map(|s| s.name), Some("get"));
        assert!(lookup("hset-nope").is_none());
    }

    #[test]
    fn key_ranges_pick_the_keys() {
        let spec = |name| lookup(name).expect("declared");
        assert_eq!(spec("get").key_args(&["k"]), vec!["k"]);
        assert_eq!(spec("set").key_args(&["k", "v", "ex", "1"]), vec!["k"]);
        assert_eq!(spec("del").key_args(&["a", "b", "c"]), vec!["a", "b", "c"]);
        assert_eq!(spec("mset").key_args(&["a", "1", "b", "2"]), vec!["a", "b"]);
        assert_eq!(
            spec("copy").key_args(&["a", "b", "replace"]),
            vec!["a", "b"]
        );
        assert_eq!(spec("rename").key_args(&["a"]), vec!["a"]);
        assert!(spec("get").key_args(&[]).is_empty());
        assert!(spec("ping").key_args(&["hello"]).is_empty());
        assert!(spec("keys").key_args(&["*"]).is_empty());
        assert_eq!(
            spec("sintercard").key_args(&["2", "a", "b", "LIMIT", "1"]),
            vec!["a", "b"]
        );
        assert_eq!(spec("smove").key_args(&["a", "b", "m"]), vec!["a", "b"]);
        assert_eq!(
            spec("zunionstore").key_args(&["d", "2", "a", "b", "WEIGHTS", "1", "2"]),
            vec!["d", "a", "b"]
        );
        assert_eq!(
            spec("zunion").key_args(&["1", "a", "WITHSCORES"]),
            vec!["a"]
        );
    }

    #[test]
    fn arity_is_redis_s() {
        let spec = |name| lookup(name).expect("declared");
        assert!(spec("get").arity_fits(2));
        assert!(!spec("get").arity_fits(3));
        assert!(spec("set").arity_fits(3));
        assert!(spec("set").arity_fits(7));
        assert!(!spec("set").arity_fits(2));
        assert!(spec("ping").arity_fits(1));
    }
}
