#!/usr/bin/env bash
# Redis commands over /_upstash against plain string commands on the same endpoint, in one
# run: the data types (issue #27) against SET and GET of a string, and Lua scripts (issue
# #28) against INCR and GET. Builds release, starts kv-server over a fresh database, loads
# --keys string keys, --small collections of each type with 10 members, one hash, set, sorted
# set and list of --big members each (by pipeline; the load time is printed) and two scripts
# (SCRIPT LOAD), notes the server's RSS, then runs each scenario right after its anchor,
# --rounds times:
#
#   scripts/bench-upstash.sh [--database sqlite|postgres] [--big 1000000] [--small 10000]
#                            [--keys 10000] [--duration 5s] [--rounds 3] [--connections 32]
#                            [--scenarios "hset_small …"]
#
# Anchors: a write's is `set` (the SET of scripts/bench.sh's upstash_set), a read's `get`,
# @upstash/ratelimit's fixed-window limit() (scripts/bench/ratelimit_fixed_window.lua, the
# library's own script, MIT, byte for byte: its SHA1 is the one the library sends) `incr`.
# Each ratio is its requests over its time across all rounds, divided by its anchor's. Stops
# only the servers (and PostgreSQL cluster) it started.
set -euo pipefail
cd "$(dirname "$0")/.."
DATABASE=sqlite BIG=1000000 SMALL=10000 KEYS=10000 DURATION=5s ROUNDS=3 CONNECTIONS=32
SCENARIOS="hset_small sadd_small zadd_small lpush_rpop_small hget_small sismember_small zscore_small \
hset_big sadd_big zadd_big lpush_rpop_big hget_big sismember_big zscore_big zrank_big zrange_mid lrange_mid \
evalsha_get ratelimit_fixed"
while [ $# -gt 0 ]; do
  case $1 in
    --database) DATABASE=$2; shift 2 ;;
    --big) BIG=$2; shift 2 ;;
    --small) SMALL=$2; shift 2 ;;
    --keys) KEYS=$2; shift 2 ;;
    --duration) DURATION=$2; shift 2 ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    --connections) CONNECTIONS=$2; shift 2 ;;
    --scenarios) SCENARIOS=$2; shift 2 ;;
    *) sed -n '2,20p' "$0" >&2; exit 2 ;;
  esac
done
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install wrk" >&2; exit 1; }
cargo build --release -q -p kv-server
WORK=$(mktemp -d)
SERVER=""
cleanup() {
  [ -n "$SERVER" ] && { kill "$SERVER" 2>/dev/null; wait "$SERVER" 2>/dev/null; }
  [ "$DATABASE" = postgres ] && pg_cleanup
  rm -rf "$WORK"
}
trap cleanup EXIT
if [ "$DATABASE" = postgres ]; then
  # shellcheck source=lib/postgres.sh
  source scripts/lib/postgres.sh
  pg_setup
  DB_URL=$(pg_start_database bench)
else
  DB_URL=$WORK/kv.sqlite3
fi
# shellcheck source=lib/bench.sh
source scripts/lib/bench.sh
PORT=$(free_port)
BASE="http://127.0.0.1:$PORT"
RUST_LOG=warn "${KV_BENCH_SERVER:-target/release/kv-server}" --bind "127.0.0.1:$PORT" \
  --database-url "$DB_URL" >"$WORK/server.log" 2>&1 &
SERVER=$!
for _ in $(seq 100); do curl -sf "$BASE/_health/live" >/dev/null && break; sleep 0.1; done
rss_mib() { awk '/VmRSS/ { printf "%.0f", $2 / 1024 }' "/proc/$SERVER/status"; }

echo "kvstore /_upstash benchmark ($DATABASE): $ROUNDS rounds of $DURATION per scenario at $CONNECTIONS connections, $(nproc) cores"
echo "server RSS at start: $(rss_mib) MiB"
python3 - "$BASE" "$KEYS" "$SMALL" "$BIG" <<'PY'
import json, sys, time, urllib.request
base, keys, small, big = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
def pipeline(commands):
    req = urllib.request.Request(base + "/_upstash/pipeline", data=json.dumps(commands).encode(), method="POST")
    replies = json.loads(urllib.request.urlopen(req).read())
    bad = [r for r in replies if "error" in r]
    if bad:
        sys.exit(f"load failed: {bad[0]}")
value = json.dumps({"name": "Emeka", "role": "Engineer", "skills": ["Python", "Django"]}, separators=(",", ":"))
for start in range(0, keys, 500):
    pipeline([["SET", f"bench:{i}", value, "EX", "3600"] for i in range(start, min(start + 500, keys))])
for start in range(0, small, 100):
    batch = []
    for i in range(start, min(start + 100, small)):
        batch.append(["HSET", f"small:h:{i}"] + [x for j in range(10) for x in (f"f{j}", f"v{j}")])
        batch.append(["SADD", f"small:s:{i}"] + [f"m{j}" for j in range(10)])
        batch.append(["ZADD", f"small:z:{i}"] + [x for j in range(10) for x in (str(j), f"m{j}")])
        batch.append(["RPUSH", f"small:l:{i}"] + ["job"] * 10)
    pipeline(batch)
per_command, per_pipeline = 100, 100
for kind, make in [
    ("hash", lambda i: [f"f{i}", "v"]),
    ("set", lambda i: [f"m{i}"]),
    ("zset", lambda i: [str(i), f"m{i}"]),
    ("list", lambda i: ["job"]),
]:
    name = {"hash": "HSET", "set": "SADD", "zset": "ZADD", "list": "RPUSH"}[kind]
    key = f"big:{kind[0]}"
    began = time.monotonic()
    for start in range(0, big, per_command * per_pipeline):
        commands = []
        for c in range(start, min(start + per_command * per_pipeline, big), per_command):
            args = []
            for i in range(c, min(c + per_command, big)):
                args += make(i)
            commands.append([name, key] + args)
        pipeline(commands)
    took = time.monotonic() - began
    print(f"loaded {kind} {key} with {big} members by pipeline ({per_pipeline} commands of {per_command} members each): {took:.1f} s, {big / took:,.0f} members/s")
PY
load_script() { # file (or - and text): SCRIPT LOAD of its exact bytes, prints the SHA1
  python3 - "$BASE" "$@" <<'PY'
import json, sys, urllib.request
text = open(sys.argv[2]).read() if sys.argv[2] != "-" else sys.argv[3]
req = urllib.request.Request(sys.argv[1] + "/_upstash", data=json.dumps(["SCRIPT", "LOAD", text]).encode(), method="POST")
print(json.loads(urllib.request.urlopen(req).read())["result"])
PY
}
KV_SHA_GET=$(load_script - "return redis.call('GET', KEYS[1])")
KV_SHA_RATELIMIT=$(load_script scripts/bench/ratelimit_fixed_window.lua)
[ "$KV_SHA_RATELIMIT" = b2efc02798c8e9b471a10f9b1d5745db89923ff3 ] ||
  { echo "the ratelimit script's SHA1 is $KV_SHA_RATELIMIT, not the library's" >&2; exit 1; }
export KV_SHA_GET KV_SHA_RATELIMIT
echo "server RSS after loading: $(rss_mib) MiB"

export KV_KEYS=$KEYS KV_SMALL=$SMALL KV_BIG=$BIG KV_BENCH_DIR="$PWD/scripts/bench"
RESULTS=$WORK/results
run() { # scenario: one wrk run; prints "scenario requests seconds p50 p99 non2xx"
  local out
  out=$(KV_SCENARIO=$1 wrk -t2 -c"$CONNECTIONS" -d"$DURATION" --latency -s scripts/bench/upstash_commands.lua "$BASE/")
  echo "$out" | awk -v name="$1" '
    /requests in/ { req = $1; sec = $4; sub(/s,$/, "", sec) }
    $1 == "50%" { p50 = $2 } $1 == "99%" { p99 = $2 }
    /Non-2xx/ { non = $5 }
    END { printf "%s %s %s %s %s %s\n", name, req, sec, p50, p99, (non == "" ? 0 : non) }'
}
anchor_of() { # scenario: the plain command it is measured against
  case $1 in
    ratelimit_*) echo incr ;;
    hget_* | sismember_* | zscore_* | zrank_* | zrange_* | lrange_* | evalsha_get) echo get ;;
    *) echo set ;;
  esac
}
for _ in $(seq "$ROUNDS"); do
  for scenario in $SCENARIOS; do
    run "$(anchor_of "$scenario")" >>"$RESULTS"
    run "$scenario" >>"$RESULTS"
  done
done
echo "server RSS after the runs: $(rss_mib) MiB"
ANCHORS=$(for s in $SCENARIOS; do echo "$s=$(anchor_of "$s")"; done)
python3 - "$RESULTS" "$ANCHORS" <<'PY'
import collections, sys
rows = [line.split() for line in open(sys.argv[1])]
total = collections.defaultdict(lambda: [0, 0.0])
lat = {}
for name, req, sec, p50, p99, non in rows:
    total[name][0] += int(req)
    total[name][1] += float(sec)
    lat[name] = (p50, p99, non)
rate = {name: r / s for name, (r, s) in total.items()}
anchors = dict(line.split("=") for line in sys.argv[2].split())
print("| scenario | req/s | anchor | anchor req/s | ratio | p50 | p99 | non-2xx |")
print("|---|---:|---|---:|---:|---:|---:|---:|")
for name, anchor in anchors.items():
    p50, p99, non = lat[name]
    print(f"| {name} | {rate[name]:,.0f} | {anchor} | {rate[anchor]:,.0f} | {rate[name] / rate[anchor]:.2f} | {p50} | {p99} | {non} |")
for anchor in sorted(set(anchors.values())):
    p50, p99, non = lat[anchor]
    print(f"| (anchor) {anchor} | {rate[anchor]:,.0f} | | | | {p50} | {p99} | {non} |")
PY
