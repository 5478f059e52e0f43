//! Lua scripts over `/_upstash` and `POST /_eval`: Redis's conversions, atomicity (a script
//! that fails writes nothing), the script store (EVALSHA, SCRIPT LOAD | EXISTS | FLUSH, kept
//! across a restart), read-only scripts and API keys, scoped keys, and the sandbox: every way
//! out is a clean error and the server stays up.

use crate::common::{Server, TestDatabase, redis_err as err, redis_ok as ok};
use serde_json::{Value, json};

fn eval(script: &str, keys: &[&str], args: &[&str]) -> Value {
    let mut command = vec![json!("EVAL"), json!(script), json!(keys.len().to_string())];
    command.extend(keys.iter().map(|k| json!(k)));
    command.extend(args.iter().map(|a| json!(a)));
    Value::Array(command)
}

#[test]
fn scripts_convert_replies_as_redis_and_write_all_or_nothing() {
    let db = TestDatabase::new();
    let server = Server::start(&db);
    assert_eq!(ok(&server, eval("return 1 + 1", &[], &[])), 2);
    assert_eq!(ok(&server, eval("return 3.99", &[], &[])), 3);
    assert_eq!(
        ok(
            &server,
            eval("return {1, 'two', false, 4, nil, 6}", &[], &[])
        ),
        json!([1, "two", null, 4])
    );
    assert_eq!(ok(&server, eval("return {ok = 'OK'}", &[], &[])), "OK");
    assert_eq!(
        err(
            &server,
            eval("return redis.error_reply('MY failure')", &[], &[])
        ),
        "MY failure"
    );
    let counter = "local n = redis.call('INCRBY', KEYS[1], ARGV[1]) \
                   redis.call('PEXPIRE', KEYS[1], 60000) return n";
    assert_eq!(ok(&server, eval(counter, &["hits"], &["5"])), 5);
    assert_eq!(ok(&server, eval(counter, &["hits"], &["2"])), 7);
    assert!(ok(&server, json!(["PTTL", "hits"])).as_i64() > Some(0));
    // nil is false; a hash's fields come back as a table.
    let read = "local v = redis.call('GET', 'absent') if v == false then return 'nil is false' end";
    assert_eq!(ok(&server, eval(read, &[], &[])), "nil is false");
    ok(&server, json!(["HSET", "h", "a", "1", "b", "2"]));
    assert_eq!(
        ok(
            &server,
            eval(
                "return redis.call('HMGET', KEYS[1], 'a', 'b', 'c')",
                &["h"],
                &[]
            )
        ),
        json!(["1", "2", null])
    );
    // pcall hands the error back as a table; call raises it.
    ok(&server, json!(["SET", "text", "abc"]));
    let caught = "local r = redis.pcall('INCR', KEYS[1]) return r.err";
    assert_eq!(
        ok(&server, eval(caught, &["text"], &[])),
        "ERR value is not an integer or out of range"
    );
    // A script that fails after writing leaves nothing written, and its writes of one run
    // are one version.
    let version = ok(&server, json!(["SET", "probe", "1"]));
    assert_eq!(version, "OK");
    let failing = "redis.call('SET', KEYS[1], 'changed') redis.call('DEL', KEYS[2]) \
                   return redis.call('INCR', KEYS[3])";
    let e = err(&server, eval(failing, &["probe", "hits", "text"], &[]));
    assert!(e.starts_with("ERR value is not an integer"), "{e}");
    assert_eq!(ok(&server, json!(["GET", "probe"])), "1");
    assert_eq!(ok(&server, json!(["GET", "hits"])), "7");
    let before = server.get("/_stats").expect(200)["version"].as_i64();
    ok(
        &server,
        eval(
            "redis.call('SET', 'a', 1) redis.call('SET', 'b', 2)",
            &[],
            &[],
        ),
    );
    let a = server.get("/a").expect(200)["version"].as_i64();
    let b = server.get("/b").expect(200)["version"].as_i64();
    assert_eq!(a, b, "one script, one version");
    assert!(a > before);
    // In a pipeline, a failed script fails alone.
    let replies = server
        .post(
            "/_upstash/pipeline",
            &json!([
                ["SET", "p", "1"],
                ["EVAL", "redis.call('SET', 'p', '2') error('no')", "0"],
                ["GET", "p"]
            ])
            .to_string(),
        )
        .expect(200);
    assert_eq!(replies[0]["result"], "OK");
    assert!(
        replies[1]["error"]
            .as_str()
            .is_some_and(|e| e.contains("no")),
        "{replies}"
    );
    assert_eq!(replies[2]["result"], "1");
}

#[test]
fn scripts_are_kept_by_sha_across_restarts_until_flushed() {
    let db = TestDatabase::new();
    let mut server = Server::start(&db);
    let body = "return 'loaded ' .. ARGV[1]";
    let sha = ok(&server, json!(["SCRIPT", "LOAD", body]));
    let sha = sha.as_str().expect("a sha").to_owned();
    assert_eq!(
        ok(&server, eval("return redis.sha1hex(ARGV[1])", &[], &[body])),
        sha.as_str(),
        "the SHA1 of the body, lowercase hex"
    );
    assert_eq!(
        ok(&server, json!(["EVALSHA", sha.to_uppercase(), "0", "x"])),
        "loaded x"
    );
    // EVAL keeps its body too: EVALSHA finds it after.
    ok(&server, eval("return 7", &[], &[]));
    let seven = ok(&server, eval("return redis.sha1hex('return 7')", &[], &[]));
    assert_eq!(ok(&server, json!(["EVALSHA", seven, "0"])), 7);
    server.restart();
    assert_eq!(
        ok(
            &server,
            json!([
                "SCRIPT",
                "EXISTS",
                sha,
                "0000000000000000000000000000000000000000"
            ])
        ),
        json!([1, 0])
    );
    assert_eq!(ok(&server, json!(["EVALSHA", sha, "0", "y"])), "loaded y");
    assert_eq!(ok(&server, json!(["SCRIPT", "FLUSH"])), "OK");
    assert_eq!(
        err(&server, json!(["EVALSHA", sha, "0", "y"])),
        "NOSCRIPT No matching script. Please use EVAL."
    );
    assert_eq!(
        err(&server, json!(["SCRIPT", "KILL"])),
        "ERR unknown subcommand 'KILL'. Try SCRIPT HELP."
    );
    assert_eq!(
        err(&server, json!(["EVAL", "return 1", "2", "k"])),
        "ERR Number of keys can't be greater than number of args"
    );
    assert_eq!(
        err(&server, json!(["EVAL", "return 1", "-1"])),
        "ERR Number of keys can't be negative"
    );
}

#[test]
fn flags_read_only_scripts_and_api_keys_bound_what_a_script_touches() {
    let db = TestDatabase::new();
    let server =
        Server::start_with_key_file(&db, "rw:admin-2\nro:reader-2\nrw:app-2 prefix=app:\n", &[]);
    let as_key = |key: &str, command: Value| {
        let body = server
            .send(
                "POST",
                "/_upstash",
                &[("x-api-key", key)],
                Some(&command.to_string()),
            )
            .json();
        match body.get("error") {
            Some(e) => Err(e.as_str().unwrap_or_default().to_owned()),
            None => Ok(body["result"].clone()),
        }
    };
    as_key("admin-2", json!(["SET", "app:x", "1"])).expect("set");
    as_key("admin-2", json!(["SET", "other", "1"])).expect("set");
    // Upstash's allow-key-locking: only declared keys.
    let locked = "#!lua flags=allow-key-locking\nreturn redis.call('GET', KEYS[1]) .. redis.call('GET', 'other')";
    let e = as_key("admin-2", eval(locked, &["app:x"], &[])).expect_err("dynamic key");
    assert!(
        e.contains("Dynamic keys are not allowed") && e.contains("Key was: other"),
        "{e}"
    );
    // no-writes and EVAL_RO: a write inside is an error.
    let e = as_key(
        "admin-2",
        json!(["EVAL_RO", "return redis.call('SET', 'app:x', '2')", "0"]),
    )
    .expect_err("a write");
    assert!(
        e.starts_with("ERR Write commands are not allowed from read-only scripts."),
        "{e}"
    );
    // A read-only API key runs EVAL_RO only.
    assert_eq!(
        as_key(
            "reader-2",
            json!(["EVAL_RO", "return redis.call('GET', KEYS[1])", "1", "app:x"])
        ),
        Ok(json!("1"))
    );
    let e = as_key("reader-2", eval("return 1", &[], &[])).expect_err("EVAL");
    assert!(e.starts_with("NOPERM"), "{e}");
    // A scoped key: NOPERM for a key out of reach, declared or computed; nothing written.
    let e = as_key(
        "app-2",
        eval(
            "redis.call('SET', 'app:x', 'new') return redis.call('GET', 'oth' .. 'er')",
            &[],
            &[],
        ),
    )
    .expect_err("out of reach");
    assert!(e.starts_with("NOPERM"), "{e}");
    assert_eq!(as_key("admin-2", json!(["GET", "app:x"])), Ok(json!("1")));
    // POST /_eval: the same, for REST users.
    let answer = server
        .send(
            "POST",
            "/_eval",
            &[("x-api-key", "app-2")],
            Some(r#"{"script": "return redis.call('INCR', KEYS[1])", "keys": ["app:n"]}"#),
        )
        .expect(200);
    assert_eq!(answer, json!({"result": 1}));
    server
        .send(
            "POST",
            "/_eval",
            &[("x-api-key", "app-2")],
            Some(r#"{"script": "return redis.call('GET', KEYS[1])", "keys": ["other"]}"#),
        )
        .expect_error(403, "forbidden");
    server
        .send(
            "POST",
            "/_eval",
            &[("x-api-key", "reader-2")],
            Some(r#"{"script": "return 1"}"#),
        )
        .expect_error(403, "forbidden");
    let read_only = server
        .send(
            "POST",
            "/_eval",
            &[("x-api-key", "reader-2")],
            Some(r#"{"script": "return ARGV[1]", "args": [42], "read_only": true}"#),
        )
        .expect(200);
    assert_eq!(read_only, json!({"result": "42"}));
    server
        .send(
            "POST",
            "/_eval",
            &[("x-api-key", "admin-2")],
            Some(r#"{"sha": "0000000000000000000000000000000000000000"}"#),
        )
        .expect_error(404, "no_script");
    server
        .send(
            "POST",
            "/_eval",
            &[("x-api-key", "admin-2")],
            Some(r#"{"script": "error('x')"}"#),
        )
        .expect_error(400, "script_error");
    server
        .send(
            "POST",
            "/_eval",
            &[("x-api-key", "admin-2")],
            Some(r#"{"script": "return 1", "sha": "x"}"#),
        )
        .expect_error(400, "invalid_body");
}

#[test]
fn the_sandbox_holds_and_the_server_stays_up() {
    let db = TestDatabase::new();
    let server = Server::start_with(
        &db.url,
        &[
            "--script-time-limit",
            "300",
            "--script-memory-limit",
            "16777216",
            "--max-response-bytes",
            "200000",
        ],
        &[],
    );
    ok(&server, json!(["SET", "k", "before"]));
    let refused = [
        // Libraries a script may not reach.
        (
            "return io.open('/etc/passwd')",
            "nonexistent global variable 'io'",
        ),
        (
            "return os.execute('true')",
            "attempt to call field 'execute'",
        ),
        (
            "return require('os')",
            "nonexistent global variable 'require'",
        ),
        (
            "return dofile('/etc/passwd')",
            "nonexistent global variable 'dofile'",
        ),
        (
            "return loadfile('/etc/passwd')",
            "nonexistent global variable 'loadfile'",
        ),
        (
            "return package.loaded",
            "nonexistent global variable 'package'",
        ),
        (
            "return debug.getinfo(1)",
            "nonexistent global variable 'debug'",
        ),
        ("print('x')", "nonexistent global variable 'print'"),
        // No new globals, not even by rawset or a new metatable.
        ("x = 1", "Script attempted to create global variable 'x'"),
        (
            "rawset(_G, 'x', 1)",
            "Script attempted to create global variable 'x'",
        ),
        (
            "setmetatable(_G, nil)",
            "cannot change a protected metatable",
        ),
        // Precompiled chunks.
        (
            "local f = loadstring(string.dump(function() return 1 end)) return f()",
            "attempt to call local 'f'",
        ),
        // The time limit, even when caught with pcall in a loop.
        ("while true do end", "ERR script timed out"),
        (
            "while true do pcall(function() while true do end end) end",
            "ERR script timed out",
        ),
        (
            "local co = coroutine.create(function() while true do end end) while true do coroutine.resume(co) end",
            "ERR script timed out",
        ),
        // The memory limit: one big string, a growing table, caught or not.
        ("return string.rep('x', 100000000)", "memory"),
        (
            "local t = {} local i = 0 while true do i = i + 1 t[i] = i end",
            "memory",
        ),
        (
            "local t = {} while true do pcall(function() t[#t + 1] = string.rep('y', 1000000) .. #t end) end",
            "memory",
        ),
        // Deep recursion.
        (
            "local function f(n) return f(n + 1) + 1 end return f(1)",
            "stack overflow",
        ),
        // A reply over the response limit.
        (
            "local t = {} for i = 1, 10000 do t[i] = string.rep('z', 100) end return t",
            "ERR reply exceeds the response limit",
        ),
    ];
    for (script, says) in refused {
        let e = err(&server, eval(script, &[], &[]));
        assert!(e.contains(says), "{script}: {e}");
        // The server is up, answers, and nothing changed.
        assert_eq!(ok(&server, json!(["GET", "k"])), "before", "{script}");
    }
    // The library tables are read-only, however a script reaches for them, so every
    // script finds them as they were (the server keeps one sandbox per thread).
    for (script, says) in [
        ("string.len = nil", "Attempt to modify a readonly table"),
        (
            "rawset(string, 'len', nil)",
            "Attempt to modify a readonly table",
        ),
        (
            "redis.call = function() return 1 end",
            "Attempt to modify a readonly table",
        ),
        (
            "getmetatable('').__index = {}",
            "attempt to index a boolean value",
        ),
        (
            "setmetatable(string, {})",
            "cannot change a protected metatable",
        ),
        ("setfenv(0, {})", "setfenv(0) is not allowed"),
    ] {
        let e = err(&server, eval(script, &[], &[]));
        assert!(e.contains(says), "{script}: {e}");
    }
    ok(&server, eval("setfenv(1, {}) return 1", &[], &[]));
    ok(&server, eval("setfenv(1, {}) return 1", &[], &[]));
    assert_eq!(ok(&server, eval("return string.len('abc')", &[], &[])), 3);
    assert_eq!(ok(&server, eval("return ('abc'):upper()", &[], &[])), "ABC");
    // What Redis scripts may use is there.
    assert_eq!(
        ok(
            &server,
            eval(
                "return cjson.encode(cjson.decode('[1,{\"a\":null}]'))",
                &[],
                &[]
            )
        ),
        "[1,{\"a\":null}]"
    );
    assert_eq!(ok(&server, eval("return bit.bxor(5, 3)", &[], &[])), 6);
    assert_eq!(
        ok(&server, eval("return type(os.clock())", &[], &[])),
        "number"
    );
    assert_eq!(
        ok(&server, eval("return redis.sha1hex('abc')", &[], &[])),
        "a9993e364706816aba3e25717850c26c9cd0d89d"
    );
    assert_eq!(
        ok(
            &server,
            eval(
                "return #KEYS + #ARGV + select('#', unpack({1, 2}))",
                &["a"],
                &["b", "c"]
            )
        ),
        5
    );
}
