#!/usr/bin/env bash
# Runs @upstash/redis's OWN tests for the data-type and scripting commands against a fresh
# kv-server. Its files stay out of this project and CI cannot fetch
# them: give a checkout of github.com/upstash/redis-js.
#
#   scripts/upstash-own-tests.sh /path/to/redis-js [file …]
#
# Needs bun (`npm install --prefix "$WORK/bun" bun` is done here when it is missing) and a
# built target/debug/kv-server. Starts the server on a free port over a temp SQLite file,
# runs each pkg/commands/<file>.test.ts (or pkg/<file>.test.ts) with `bun test`, prints each file's pass/fail counts
# and the total, and stops the server it started by its PID.
set -u
CHECKOUT=${1:?usage: scripts/upstash-own-tests.sh /path/to/redis-js [file …]}
shift
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=$(mktemp -d)
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/debug/kv-server"
if ! command -v bun >/dev/null; then
    npm install --no-audit --no-fund --prefix "$WORK/bun" bun >/dev/null
    export PATH="$WORK/bun/node_modules/.bin:$PATH"
fi
PKG="$CHECKOUT/packages/redis"
[ -d "$PKG/node_modules/uncrypto" ] || (cd "$PKG" && npm install --no-audit --no-fund --no-save --ignore-scripts uncrypto@0.1.3 >/dev/null)
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
TOKEN=own-tests-$RANDOM$RANDOM
RUST_LOG=warn KV_API_KEYS=$TOKEN "$BIN" --bind "127.0.0.1:$PORT" --database-url "$WORK/kv.sqlite3" >"$WORK/server.log" 2>&1 &
SERVER=$!
trap 'kill "$SERVER" 2>/dev/null; wait "$SERVER" 2>/dev/null; rm -rf "$WORK"' EXIT
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$PORT/_health/live" >/dev/null && break; sleep 0.1; done
export UPSTASH_REDIS_REST_URL="http://127.0.0.1:$PORT/_upstash" UPSTASH_REDIS_REST_TOKEN=$TOKEN
H="hdel hexists hget hgetall hincrby hincrbyfloat hkeys hlen hmget hmset hrandfield hscan hset hsetnx hstrlen hvals"
L="lindex linsert llen lmove lmpop lpop lpos lpush lpushx lrange lrem lset ltrim rpop rpush rpushx"
S="sadd scard sdiff sdiffstore sinter sintercard sinterstore sismember smembers smismember smove spop srandmember srem sscan sunion sunionstore"
Z="zadd zcard zcount zdiffstore zincrby zinterstore zlexcount zmscore zpopmax zpopmin zrange zrank zrem zremrangebylex zremrangebyrank zremrangebyscore zrevrank zscan zscore zunion zunionstore"
E="eval evalsha evalRo evalshaRo script_load script_exists script scriptRo"
FILES=${*:-$H $L $S $Z type scan $E}
pass=0 fail=0
cd "$PKG"
for f in $FILES; do
    log="$WORK/$f.log"
    file="./pkg/commands/$f.test.ts"
    [ -f "$file" ] || file="./pkg/$f.test.ts" # script, scriptRo: the Script helper's tests
    timeout 120 bun test --timeout 20000 "$file" >"$log" 2>&1
    p=$(grep -Eo '^ *[0-9]+ pass' "$log" | grep -Eo '[0-9]+' || echo 0)
    n=$(grep -Eo '^ *[0-9]+ fail' "$log" | grep -Eo '[0-9]+' || echo 0)
    echo "$f: $p pass, $n fail"
    [ "$n" = 0 ] || sed -n '/(fail)/p' "$log"
    pass=$((pass + p)) fail=$((fail + n))
done
echo "upstash-own-tests: $pass passed, $fail failed"
[ "$fail" = 0 ]
