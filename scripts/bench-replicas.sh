#!/usr/bin/env bash
# Read replicas (issue #29): GETs served by a hot standby against GETs served by the primary,
# in one run. Builds release, starts a throwaway PostgreSQL primary (fsync and
# synchronous_commit on) and a hot standby of it (pg_basebackup -R, streaming replication),
# loads --keys keys, and starts four kv-servers over the primary: two without replicas
# ("primary") and two with --read-replica ("standby"). Then, --rounds times, each scenario
# runs right after its anchor, and each ratio is its requests over its time across all rounds
# divided by its anchor's:
#
#   get_primary            GET of a random key, one server without replicas   (the anchor)
#   get_standby            the same against a server with the standby
#   get_standby_token      the same with `Kv-Min-Version` (the version the keys were loaded
#                          at): the token check's cost
#   mix_primary_2          the 90/10 mix against the two servers without replicas, half the
#                          connections each                                      (anchor)
#   mix_standby_2          the same against the two servers with the standby
#
#   scripts/bench-replicas.sh [--keys 10000] [--duration 5s] [--rounds 3] [--connections 32]
#
# Prints each run, the ratios, where the standby servers' reads went (kv_replica_reads_total
# and kv_replica_fallbacks_total) and the standby's replay lag. Needs wrk, curl, python3.
# Traffic goes to 127.0.0.1 only; stops only the servers and clusters it started.
set -euo pipefail
cd "$(dirname "$0")/.."
KEYS=10000 DURATION=5s ROUNDS=3 CONNECTIONS=32
while [ $# -gt 0 ]; do
  case $1 in
    --keys) KEYS=$2; shift 2 ;;
    --duration) DURATION=$2; shift 2 ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    --connections) CONNECTIONS=$2; shift 2 ;;
    *) sed -n '2,22p' "$0" >&2; exit 2 ;;
  esac
done
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install wrk" >&2; exit 1; }
cargo build --release -q -p kv-server
WORK=$(mktemp -d)
SERVERS=()
cleanup() {
  local pid
  for pid in "${SERVERS[@]}"; do kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; done
  pg_cleanup
  rm -rf "$WORK"
}
trap cleanup EXIT
# shellcheck source=lib/postgres.sh
source scripts/lib/postgres.sh
pg_setup
PRIMARY_ADMIN=$(pg_start_cluster primary wal_level=replica max_wal_senders=4)
"$PG_BINDIR/psql" -q "$PRIMARY_ADMIN" -c "CREATE DATABASE kv"
STANDBY_ADMIN=$(pg_start_standby standby primary hot_standby=on)
DB_URL=${PRIMARY_ADMIN%/postgres}/kv
REPLICA_URL=${STANDBY_ADMIN%/postgres}/kv

# shellcheck source=lib/bench.sh
source scripts/lib/bench.sh
start_server() { # port [args...]: starts one kv-server and waits until it answers
  local port=$1
  shift
  RUST_LOG=warn "${KV_BENCH_SERVER:-target/release/kv-server}" --bind "127.0.0.1:$port" \
    --database-url "$DB_URL" "$@" >>"$WORK/server.log" 2>&1 &
  SERVERS+=($!)
  wait_up "http://127.0.0.1:$port" "$WORK/server.log"
}
PORTS=()
for n in 0 1 2 3; do PORTS+=("$(free_port)"); done
start_server "${PORTS[0]}"
start_server "${PORTS[1]}"
start_server "${PORTS[2]}" --read-replica "$REPLICA_URL"
start_server "${PORTS[3]}" --read-replica "$REPLICA_URL"
PRIMARY="http://127.0.0.1:${PORTS[0]}" PRIMARY2="http://127.0.0.1:${PORTS[1]}"
STANDBY="http://127.0.0.1:${PORTS[2]}" STANDBY2="http://127.0.0.1:${PORTS[3]}"

echo "loading $KEYS keys..." >&2
LOADED=$(load_keys "$PRIMARY" "bench:" "$KEYS")
for base in "$STANDBY" "$STANDBY2"; do
  for _ in $(seq 100); do
    curl -sf "$base/_health" | grep -q '"state":"ok"' && break
    sleep 0.1
  done
done

export KV_KEYS=$KEYS KV_BENCH_DIR="$PWD/scripts/bench" KV_MIN_VERSION=$LOADED
cat >"$WORK/get_token.lua" <<'LUA'
dofile(os.getenv("KV_BENCH_DIR") .. "/common.lua")
local token = {["Kv-Min-Version"] = os.getenv("KV_MIN_VERSION")}
request = function()
  return wrk.format("GET", "/bench:" .. math.random(0, keys - 1), token)
end
LUA
wrk_run() { # name base connections script
  local out
  out=$(wrk -t2 -c"$3" -d"$DURATION" --latency -s "$4" "$2/")
  local requests seconds p99 non2xx
  requests=$(echo "$out" | awk '/requests in/ { print $1 }')
  seconds=$(echo "$out" | awk '/requests in/ { sub(/s,$/, "", $4); print $4 }')
  p99=$(echo "$out" | awk '$1 == "99%" { print $2 }')
  non2xx=$(echo "$out" | awk '/Non-2xx/ { print $5 }')
  echo "$1 $requests $seconds $p99 ${non2xx:-0}" | tee -a "$WORK/runs"
}
HALF=$((CONNECTIONS / 2))
echo "kvstore read replica benchmark: $KEYS keys, $ROUNDS rounds of $DURATION, $CONNECTIONS connections, wrk on the same machine ($(nproc) cores)"
echo "name requests seconds p99 non2xx"
for round in $(seq "$ROUNDS"); do
  wrk_run get_primary "$PRIMARY" "$CONNECTIONS" scripts/bench/get_hit.lua
  wrk_run get_standby "$STANDBY" "$CONNECTIONS" scripts/bench/get_hit.lua
  wrk_run get_primary "$PRIMARY" "$CONNECTIONS" scripts/bench/get_hit.lua
  wrk_run get_standby_token "$STANDBY" "$CONNECTIONS" "$WORK/get_token.lua"
  # Side by side: wait for the two wrk runs only (the servers are children too).
  wrk_run mix_primary_2 "$PRIMARY" "$HALF" scripts/bench/mix.lua & first=$!
  wrk_run mix_primary_2 "$PRIMARY2" "$HALF" scripts/bench/mix.lua & second=$!
  wait "$first" "$second"
  wrk_run mix_standby_2 "$STANDBY" "$HALF" scripts/bench/mix.lua & first=$!
  wrk_run mix_standby_2 "$STANDBY2" "$HALF" scripts/bench/mix.lua & second=$!
  wait "$first" "$second"
  echo "round $round done" >&2
done

python3 - "$WORK/runs" <<'PY'
import sys
totals = {}
for line in open(sys.argv[1]):
    name, requests, seconds, _p99, non2xx = line.split()
    r, s, n = totals.get(name, (0, 0.0, 0))
    # Two wrk runs side by side (mix_*_2) share the same seconds: add requests, not time.
    concurrent = name.endswith("_2")
    totals[name] = (r + int(requests), s + (float(seconds) / (2 if concurrent else 1)), n + int(non2xx))
rate = {name: r / s for name, (r, s, _) in totals.items()}
for name, (r, s, n) in sorted(totals.items()):
    print(f"{name:20} {rate[name]:10.0f} req/s  non-2xx {n}")
for name, anchor in [("get_standby", "get_primary"), ("get_standby_token", "get_primary"),
                     ("mix_standby_2", "mix_primary_2")]:
    print(f"{name} / {anchor}: {rate[name] / rate[anchor]:.2f}")
PY
echo "where the standby servers' reads went:"
for base in "$STANDBY" "$STANDBY2"; do
  curl -s "$base/_metrics" | grep -E '^kv_replica_(reads|fallbacks)_total' | grep -v ' 0$' || true
done
"$PG_BINDIR/psql" -qAt "$PRIMARY_ADMIN" -c \
  "SELECT 'standby replay lag now: ' || coalesce(replay_lag::text, '0') FROM pg_stat_replication"
