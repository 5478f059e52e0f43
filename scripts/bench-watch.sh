#!/usr/bin/env bash
# Benchmark of the change feed (GET /_watch): builds release, starts kv-server over a fresh
# database, loads --keys keys and measures
#
#   1. event latency: a watcher on SSE, writes one every 10 ms; for each write, the time until
#      its response (the anchor: what the writer itself waits) and until its event reached the
#      watcher; p50 and p99 of both, idle and while wrk drives the 90/10 mix
#      (scripts/bench/mix.lua, 32 connections) at the same server;
#   2. memory per idle watcher: --watchers SSE streams held open (each on a key of its own), the
#      server's RSS before, with them and after they close; one write to a watched key must
#      reach exactly that watcher.
#
#   scripts/bench-watch.sh [--database sqlite|postgres] [--watchers 10000] [--probes 300]
#                          [--keys 10000] [--duration 15s]
#
# --database postgres starts a throwaway local cluster (scripts/lib/postgres.sh) and two
# kv-servers on it: the latency is measured with the writes on one server and the watcher on
# the other (LISTEN/NOTIFY between them), next to both on one server.
# Needs wrk, curl and python3. Traffic goes to 127.0.0.1 only; it raises its open-files limit
# for the watchers (ulimit -n).
set -euo pipefail
cd "$(dirname "$0")/.."

DATABASE=sqlite
WATCHERS=10000
PROBES=300
KEYS=10000
DURATION=15s
while [ $# -gt 0 ]; do
  case "$1" in
    --database) DATABASE=$2; shift 2 ;;
    --watchers) WATCHERS=$2; shift 2 ;;
    --probes) PROBES=$2; shift 2 ;;
    --keys) KEYS=$2; shift 2 ;;
    --duration) DURATION=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
case "$DATABASE" in
  sqlite | postgres) ;;
  *) echo "--database is sqlite or postgres" >&2; exit 2 ;;
esac
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install wrk" >&2; exit 1; }
# The server and the probe each hold one descriptor a watcher.
ulimit -n $((WATCHERS + 1024)) 2>/dev/null || {
  echo "cannot raise the open-files limit to $((WATCHERS + 1024)) (ulimit -n; hard limit $(ulimit -Hn))" >&2
  exit 1
}
cargo build --release -q -p kv-server

WORK=$(mktemp -d)
SERVERS=()
WRK_PID=
cleanup() {
  local pid
  [ -n "$WRK_PID" ] && kill "$WRK_PID" 2>/dev/null
  for pid in "${SERVERS[@]}"; do kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; done
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
start_server() { # port: starts one kv-server and waits until it answers
  RUST_LOG=warn target/release/kv-server --bind "127.0.0.1:$1" --database-url "$DB_URL" \
    --max-watchers $((WATCHERS + 100)) >>"$WORK/server.log" 2>&1 &
  SERVERS+=($!)
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$1/_health/live" >/dev/null && return; sleep 0.1; done
  echo "kv-server did not start:" >&2; cat "$WORK/server.log" >&2; exit 1
}
PORT=$(free_port)
BASE="http://127.0.0.1:$PORT"
start_server "$PORT"
OTHER=$BASE
if [ "$DATABASE" = postgres ]; then
  PORT2=$(free_port)
  OTHER="http://127.0.0.1:$PORT2"
  start_server "$PORT2"
fi

echo "loading $KEYS keys..." >&2
python3 - "$BASE" "$KEYS" <<'PY'
import json, sys, urllib.request
base, count = sys.argv[1], int(sys.argv[2])
value = {"name": "Emeka", "role": "Engineer", "skills": ["Python", "Django"]}
for start in range(0, count, 1000):
    ops = [{"op": "set", "key": f"bench:{i}", "value": value} for i in range(start, min(start + 1000, count))]
    req = urllib.request.Request(base + "/_tx", data=json.dumps({"ops": ops}).encode(), method="POST")
    urllib.request.urlopen(req).read()
PY
export KV_KEYS=$KEYS KV_BENCH_DIR="$PWD/scripts/bench"
PROBE=scripts/bench/watch_probe.py

latency() { # label write-base watch-base
  local result
  result=$(python3 "$PROBE" latency "$2" "$3" "$PROBES" 10)
  echo "$1 $result"
}
under_mix() { # label write-base watch-base: the probe while wrk drives the mix at write-base
  wrk -t2 -c32 -d"$DURATION" --latency -s scripts/bench/mix.lua "$2" >"$WORK/wrk.txt" &
  WRK_PID=$!
  sleep 2
  latency "$1" "$2" "$3"
  wait "$WRK_PID"
  WRK_PID=
  echo "  (mix meanwhile: $(awk '/Requests\/sec/ { print $2 }' "$WORK/wrk.txt") req/s)"
}

echo "== event latency ($DATABASE, $PROBES writes, one every 10 ms; ms) =="
latency "idle, one server:" "$BASE" "$BASE"
under_mix "90/10 mix, one server:" "$BASE" "$BASE"
if [ "$DATABASE" = postgres ]; then
  latency "idle, write on one server, watch on the other:" "$BASE" "$OTHER"
  under_mix "90/10 mix, write on one server, watch on the other:" "$BASE" "$OTHER"
fi

echo "== $WATCHERS idle SSE watchers on one server =="
python3 "$PROBE" idle "$BASE" "$WATCHERS" "${SERVERS[0]}"
