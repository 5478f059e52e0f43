#!/usr/bin/env bash
# Where a write's CPU goes (issue #30): the CPU time each process spends per SET through
# kv-server (wrk, 32 connections), read from /proc (utime + stime of every thread, before and
# after).
#
#   scripts/cpu-per-write.sh [--database postgres|sqlite] [--duration 5] [--keys 10000]
#
# PostgreSQL (the default): kv-server's SET and pgbench's upsert (16 clients, the anchor of
# scripts/bench.sh), both against one throwaway cluster (fsync and synchronous_commit on);
# prints requests per second and microseconds of CPU per request for kv-server, PostgreSQL
# (every backend, the WAL writer and the rest) and the load generator (wrk or pgbench). On a
# 2-core machine the sum says how close a run is to using both cores.
# SQLite: kv-server's SET and its ceiling (GET /_health/live) over a fresh database file;
# prints microseconds of CPU per request for each of kv-server's threads by name (the HTTP
# workers, the writer, the checkpoint thread, the change feed, ...) and wrk, and the write-ahead
# log frames the writer wrote per request (its write calls, syscw in /proc/<tid>/io, over two:
# SQLite writes a frame's header and its page apart), so that the writer's CPU per SET is
# measured the same way every time.
# Stops only what it started.
set -euo pipefail
cd "$(dirname "$0")/.."
DATABASE=postgres DURATION=5 KEYS=10000
while [ $# -gt 0 ]; do
  case $1 in
    --database) DATABASE=$2; shift 2 ;;
    --duration) DURATION=$2; shift 2 ;;
    --keys) KEYS=$2; shift 2 ;;
    *) sed -n '2,19p' "$0" >&2; exit 2 ;;
  esac
done
case "$DATABASE" in
  sqlite | postgres) ;;
  *) echo "--database is sqlite or postgres" >&2; exit 2 ;;
esac
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
# shellcheck source=lib/bench.sh
source scripts/lib/bench.sh
export KV_KEYS=$KEYS KV_BENCH_DIR="$PWD/scripts/bench"

if [ "$DATABASE" = sqlite ]; then
  PORT=$(free_port)
  BASE="http://127.0.0.1:$PORT"
  RUST_LOG=warn "${KV_BENCH_SERVER:-target/release/kv-server}" --bind "127.0.0.1:$PORT" \
    --database-url "$WORK/kv.sqlite3" >"$WORK/server.log" 2>&1 &
  SERVER=$!
  wait_up "$BASE" "$WORK/server.log"
  load_keys "$BASE" "bench:" "$KEYS" >/dev/null
  threads() { # the server's threads: name, CPU ticks, write calls (one line each)
    python3 - "$SERVER" <<'PY'
import os, sys
pid = sys.argv[1]
for tid in os.listdir(f"/proc/{pid}/task"):
    try:
        stat = open(f"/proc/{pid}/task/{tid}/stat").read()
        name = open(f"/proc/{pid}/task/{tid}/comm").read().strip().replace(" ", "_")
        io = dict(line.split(": ") for line in open(f"/proc/{pid}/task/{tid}/io").read().splitlines())
    except OSError:
        continue
    fields = stat[stat.rindex(")") + 2:].split()
    print(name, int(fields[11]) + int(fields[12]), int(io["syscw"]))
PY
  }
  measure() { # name wrk-arguments...: one wrk run, CPU per request by thread name
    local name=$1; shift
    threads >"$WORK/before"
    wrk -t2 -c32 -d"${DURATION}s" "$@" >"$WORK/wrk.out" &
    local wrk_pid=$! wrk_ticks
    sleep "$((DURATION - 1))"
    wrk_ticks=$(awk '{ print $14 + $15 }' "/proc/$wrk_pid/stat")
    wait "$wrk_pid"
    threads >"$WORK/after"
    python3 - "$name" "$(awk '/requests in/ { print $1 }' "$WORK/wrk.out")" "$wrk_ticks" \
      "$(getconf CLK_TCK)" "$DURATION" "$WORK/before" "$WORK/after" <<'PY'
import collections, sys
name, n, wrk, hz, duration, before, after = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5]), sys.argv[6], sys.argv[7]
def read(path):
    ticks, writes = collections.Counter(), collections.Counter()
    for line in open(path):
        thread, t, w = line.split()
        group = "HTTP workers" if thread.startswith("actix-rt") else thread
        ticks[group] += int(t); writes[group] += int(w)
    return ticks, writes
(t0, w0), (t1, w1) = read(before), read(after)
us = lambda t: t / hz * 1e6 / max(n, 1)
groups = sorted(t1, key=lambda g: -(t1[g] - t0[g]))
parts = "   ".join(f"{g} {us(t1[g] - t0[g]):.1f}" for g in groups if t1[g] > t0[g])
server = sum(t1.values()) - sum(t0.values())
frames = (w1["kv-writer"] - w0["kv-writer"]) / 2 / max(n, 1)
# wrk's own ticks are read a second before it ends: scaled to the whole run.
wrk_us = us(wrk * duration / (duration - 1))
print(f"{name:8} {n / duration:9.0f}/s   kv-server {us(server):5.1f} µs ({parts})   wrk {wrk_us:4.1f} µs   "
      f"writer's WAL frames per request {frames:.2f}")
PY
  }
  measure SET -s scripts/bench/set.lua "$BASE/"
  measure ceiling "$BASE/_health/live"
  exit 0
fi
# shellcheck source=lib/postgres.sh
source scripts/lib/postgres.sh
pg_setup
DB_URL=$(pg_start_database cpu)
POSTMASTER=$(head -n 1 "$PG_WORKDIR/cpu/data/postmaster.pid")
PORT=$(free_port)
RUST_LOG=warn "${KV_BENCH_SERVER:-target/release/kv-server}" --bind "127.0.0.1:$PORT" \
  --database-url "$DB_URL" >"$WORK/server.log" 2>&1 &
SERVER=$!
wait_up "http://127.0.0.1:$PORT" "$WORK/server.log"
load_keys "http://127.0.0.1:$PORT" "bench:" "$KEYS" >/dev/null
"$PG_BINDIR/psql" -q "$DB_URL" <<SQL
CREATE TABLE kv_bench (LIKE kv_store INCLUDING ALL);
INSERT INTO kv_bench SELECT key, value, version, created_at, updated_at, expires_at FROM kv_store;
VACUUM ANALYZE kv_bench;
SQL
pgbench_upsert_sql "$KEYS" >"$WORK/upsert.sql"

ticks() { # pids...: the CPU ticks (utime + stime) of every thread of them
  local total=0 pid
  for pid in "$@"; do
    [ -r "/proc/$pid/stat" ] || continue
    total=$((total + $(awk '{ print $14 + $15 }' "/proc/$pid/stat")))
  done
  echo "$total"
}
postgres_pids() { echo "$POSTMASTER" $(pgrep -P "$POSTMASTER" || true); }
HZ=$(getconf CLK_TCK)
report() { # name requests kv_ticks pg_ticks load_ticks
  python3 - "$@" "$HZ" "$DURATION" <<'PY'
import sys
name, n, kv, pg, load, hz, duration = sys.argv[1], int(sys.argv[2]), *map(int, sys.argv[3:6]), int(sys.argv[6]), float(sys.argv[7])
us = lambda t: t / hz * 1e6 / max(n, 1)
print(f"{name:8} {n / duration:9.0f}/s   kv-server {us(kv):6.1f} µs   PostgreSQL {us(pg):6.1f} µs   "
      f"load generator {us(load):6.1f} µs   all {us(kv + pg + load):6.1f} µs per request")
PY
}

# kv-server's SET (the seed's body with "ttl": 3600), 32 connections.
kv0=$(ticks "$SERVER"); pg0=$(ticks $(postgres_pids))
wrk -t2 -c32 -d"${DURATION}s" -s scripts/bench/set.lua "http://127.0.0.1:$PORT/" >"$WORK/wrk.out" &
WRK=$!
sleep "$((DURATION - 1))"
wrk_ticks=$(ticks "$WRK")
wait "$WRK"
kv1=$(ticks "$SERVER"); pg1=$(ticks $(postgres_pids))
requests=$(awk '/requests in/ { print $1 }' "$WORK/wrk.out")
# wrk's own ticks are read a second before it ends: scaled to the whole run.
wrk_ticks=$((wrk_ticks * DURATION / (DURATION - 1)))
report "SET" "$requests" "$((kv1 - kv0))" "$((pg1 - pg0))" "$wrk_ticks"

# pgbench's upsert, 16 clients (kv-server's pool size), prepared statements.
pg0=$(ticks $(postgres_pids))
"$PG_BINDIR/pgbench" -n -M prepared -c 16 -j 2 -T "$DURATION" -f "$WORK/upsert.sql" "$DB_URL" >"$WORK/pgbench.out" 2>&1 &
PGB=$!
sleep "$((DURATION - 1))"
pgb_ticks=$(ticks "$PGB")
pgb_ticks=$((pgb_ticks * DURATION / (DURATION - 1)))
pg_mid=$(ticks $(postgres_pids))
wait "$PGB"
pg1=$(ticks $(postgres_pids))
txns=$(awk '/number of transactions actually processed/ { print $NF }' "$WORK/pgbench.out")
txns=${txns%%/*}
# pgbench's backends exit with it: their ticks are those read a second before the end, scaled.
pg_ticks=$(( (pg_mid - pg0) * DURATION / (DURATION - 1) ))
[ "$((pg1 - pg0))" -gt "$pg_ticks" ] && pg_ticks=$((pg1 - pg0))
report "pgbench" "$txns" 0 "$pg_ticks" "$pgb_ticks"
