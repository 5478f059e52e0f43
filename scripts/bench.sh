#!/usr/bin/env bash
# kvstore benchmark: builds release, starts kv-server over a fresh database, loads --keys keys,
# and drives it with wrk at fixed concurrency. Prints req/s, p50, p99, non-2xx for each
# scenario and each req/s as a ratio of the same run's ceiling (GET /_health/live, which never
# touches the database), plus the server's peak RSS.
#
#   scripts/bench.sh [--database sqlite|postgres] [--keys N] [--duration 10s] [--rounds 3]
#                    [--connections "32 256"] [--scenarios "get_hit get_miss set incr mix"]
#                    (also: set_idempotent, a set with an Idempotency-Key of its own;
#                    upstash_get, upstash_set, upstash_get_x10, upstash_set_x10: the same GET
#                    and SET through the Upstash-compatible endpoint, one command a request or
#                    a /pipeline of 10, each compared with get_hit / set when those ran too)
#                    [--sweep]
#
# Each round runs every scenario once (--duration each), each right after a run of the
# ceiling; a scenario's req/s is its requests over its time across all rounds, and its ratio
# is to the ceiling runs just before it. Interleaving keeps the ratios steady on a machine
# whose speed drifts (a shared VM's does, by a third within a minute); p50 and p99 are the
# medians of the rounds. The ceiling's row sums all its runs.
#
# --database postgres starts a throwaway local PostgreSQL cluster (scripts/lib/postgres.sh;
# fsync and synchronous_commit on, as a real deployment has them) and, in every round, also
# runs right after each scenario its anchor: pgbench with the statements that are the
# database's own limit for that work, over a table shaped like kv_store with the same keys and
# value, as many clients as kv-server's pool, prepared statements (a one-row upsert for set,
# a primary-key select for get_hit and get_miss, an increment upsert over the same 100 hot
# keys for incr, 9 selects to 1 upsert for mix). Each scenario is then also given as a ratio
# of its anchor. Then every scenario runs once more against two kv-servers on the same
# database, half the connections each, and is compared with one server.
# --sweep also measures kv-sweeper deleting N expired keys while the 90/10 mix runs (SQLite).
# KV_BENCH_SERVER=path runs that kv-server binary instead of target/release/kv-server (to
# compare two builds). Needs wrk (apt-get install wrk), curl and python3. Traffic goes to
# 127.0.0.1 only.
set -euo pipefail
cd "$(dirname "$0")/.."

DATABASE=sqlite
KEYS=10000
DURATION=10s
ROUNDS=3
CONNECTIONS="32 256"
SCENARIOS="get_hit get_miss set incr mix"
SWEEP=0
POOL_SIZE=16
while [ $# -gt 0 ]; do
  case "$1" in
    --database) DATABASE=$2; shift 2 ;;
    --keys) KEYS=$2; shift 2 ;;
    --duration) DURATION=$2; shift 2 ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    --connections) CONNECTIONS=$2; shift 2 ;;
    --scenarios) SCENARIOS=$2; shift 2 ;;
    --sweep) SWEEP=1; shift ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
case "$DATABASE" in
  sqlite | postgres) ;;
  *) echo "--database is sqlite or postgres" >&2; exit 2 ;;
esac
if [ "$SWEEP" = 1 ] && [ "$DATABASE" != sqlite ]; then
  echo "--sweep measures SQLite" >&2; exit 2
fi

command -v wrk >/dev/null || { echo "wrk is missing: apt-get install wrk" >&2; exit 1; }
cargo build --release -q -p kv-server -p kv-sweeper

WORK=$(mktemp -d)
# shellcheck source=lib/bench.sh
source scripts/lib/bench.sh
SERVERS=()
cleanup() {
  local pid
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
# --sweep: the server's own expiry timer is off, or it would remove the expired keys (250 ms
# after their expiry, while they load) before kv-sweeper runs.
ACTIVE_EXPIRY=true
[ "$SWEEP" = 1 ] && ACTIVE_EXPIRY=false
start_server() { # port: starts one kv-server and waits until it answers
  RUST_LOG=warn "${KV_BENCH_SERVER:-target/release/kv-server}" --bind "127.0.0.1:$1" --database-url "$DB_URL" \
    --pool-size "$POOL_SIZE" --active-expiry "$ACTIVE_EXPIRY" >>"$WORK/server.log" 2>&1 &
  SERVERS+=($!)
  wait_up "http://127.0.0.1:$1" "$WORK/server.log"
}
PORT=$(free_port)
BASE="http://127.0.0.1:$PORT"
start_server "$PORT"
SERVER=${SERVERS[0]}

echo "loading $KEYS keys..." >&2
load_keys "$BASE" "bench:" "$KEYS" >/dev/null

export KV_KEYS=$KEYS KV_BENCH_DIR="$PWD/scripts/bench"
to_ms() { # wrk latency like 1.23ms / 850.00us / 1.20s -> ms
  awk -v v="$1" 'BEGIN { n = v + 0; if (v ~ /us$/) n /= 1000; else if (v ~ /ms$/) n = n; else if (v ~ /s$/) n *= 1000; printf "%.2f", n }'
}
run() { # name connections [script] path
  local name=$1 conns=$2 script=$3 path=$4 out
  local threads=2; [ "$conns" -lt 2 ] && threads=1
  if [ -n "$script" ]; then
    out=$(wrk -t"$threads" -c"$conns" -d"$DURATION" --latency -s "scripts/bench/$script" "$BASE$path")
  else
    out=$(wrk -t"$threads" -c"$conns" -d"$DURATION" --latency "$BASE$path")
  fi
  local requests seconds p50 p99 non2xx
  requests=$(echo "$out" | awk '/requests in/ { print $1 }')
  seconds=$(echo "$out" | awk '/requests in/ { sub(/s,$/, "", $4); print $4 }')
  p50=$(to_ms "$(echo "$out" | awk '$1 == "50%" { print $2 }')")
  p99=$(to_ms "$(echo "$out" | awk '$1 == "99%" { print $2 }')")
  non2xx=$(echo "$out" | awk '/Non-2xx/ { print $5 }'); non2xx=${non2xx:-0}
  echo "$name $conns $requests $seconds $p50 $p99 $non2xx"
}

if [ "$DATABASE" = postgres ]; then
  # pgbench's table: kv_store's shape, the same keys and the same stored value.
  "$PG_BINDIR/psql" -q "$DB_URL" <<SQL
CREATE TABLE kv_bench (LIKE kv_store INCLUDING ALL);
INSERT INTO kv_bench SELECT 'bench:' || i, '{"name":"Emeka","role":"Engineer","skills":["Python","Django"]}',
  i, 0, 0, NULL FROM generate_series(0, $KEYS - 1) AS i;
VACUUM ANALYZE kv_bench;
SQL
  mkdir -p "$WORK/pgbench"
  cat >"$WORK/pgbench/select.sql" <<SQL
\\set k random(0, $KEYS - 1)
SELECT value, version, expires_at FROM kv_bench WHERE key = 'bench' || chr(58) || :k;
SQL
  cat >"$WORK/pgbench/select_miss.sql" <<SQL
\\set k random(0, 1000000000)
SELECT value, version, expires_at FROM kv_bench WHERE key = 'missing' || chr(58) || :k;
SQL
  pgbench_upsert_sql "$KEYS" >"$WORK/pgbench/upsert.sql"
  cat >"$WORK/pgbench/incr.sql" <<SQL
\\set k random(0, 99)
INSERT INTO kv_bench (key, value, version, created_at, updated_at, expires_at)
  VALUES ('hot' || chr(58) || :k, '1', 1, 0, 0, NULL)
  ON CONFLICT (key) DO UPDATE SET value = (kv_bench.value::bigint + 1)::text,
    version = kv_bench.version + 1;
SQL
fi
anchor() { # name connections: pgbench for the scenario, as many clients as kv-server's pool
  local name=$1 conns=$2 scripts out
  case "$name" in
    get_hit) scripts=(-f "$WORK/pgbench/select.sql") ;;
    get_miss) scripts=(-f "$WORK/pgbench/select_miss.sql") ;;
    set | set_idempotent) scripts=(-f "$WORK/pgbench/upsert.sql") ;;
    incr) scripts=(-f "$WORK/pgbench/incr.sql") ;;
    mix_90_10) scripts=(-f "$WORK/pgbench/select.sql@9" -f "$WORK/pgbench/upsert.sql@1") ;;
  esac
  out=$("$PG_BINDIR/pgbench" -n -M prepared -c "$POOL_SIZE" -j 2 -T "${DURATION%s}" "${scripts[@]}" "$DB_URL" 2>&1)
  local txns latency
  txns=$(echo "$out" | awk '/number of transactions actually processed/ { print $NF }')
  txns=${txns%%/*}
  latency=$(echo "$out" | awk '/latency average/ { print $4; exit }')
  echo "pgbench@$name $conns $txns ${DURATION%s} $latency - 0"
}
RESULTS=$WORK/results
for c in $CONNECTIONS; do for _ in $(seq "$ROUNDS"); do
  for scenario in $SCENARIOS; do
    name=$scenario; [ "$scenario" = mix ] && name=mix_90_10
    run "ceiling@$name" "$c" "" /_health/live
    run "$name" "$c" "$scenario.lua" /
    if [ "$DATABASE" = postgres ]; then anchor "$name" "$c"; fi
  done
done; done | tee "$RESULTS" >&2

if [ "$DATABASE" = postgres ]; then
  PORT2=$(free_port)
  BASE2="http://127.0.0.1:$PORT2"
  start_server "$PORT2"
  for c in $CONNECTIONS; do
    for scenario in $SCENARIOS; do
      name=$scenario; [ "$scenario" = mix ] && name=mix_90_10
      run "ceiling@two_servers:$name" "$c" "" /_health/live
      # Each wrk prints its own row; the table adds them up.
      (run "two_servers:$name" $((c / 2)) "$scenario.lua" /) &
      (BASE=$BASE2 run "two_servers:$name" $((c / 2)) "$scenario.lua" /) &
      wait
    done
  done | tee -a "$RESULTS" >&2
fi

if [ "$SWEEP" = 1 ]; then
  echo "loading $KEYS keys that expire at once, then sweeping them while the mix runs..." >&2
  load_keys "$BASE" "expired:" "$KEYS" '{"ttl_ms": 1}' >/dev/null
  sleep 1
  # The mix starts with the sweep and runs for SWEEP_MIX; the sweep should outlast it, so
  # every request measured competes with the sweeper.
  SWEEP_MIX=8s
  (DURATION=$SWEEP_MIX; run ceiling@mix_during_sweep 32 "" /_health/live >>"$RESULTS")
  (DURATION=$SWEEP_MIX; run mix_during_sweep 32 mix.lua / >>"$RESULTS") &
  MIX=$!
  start=$(date +%s.%N)
  target/release/kv-sweeper --once --database-url "$WORK/kv.sqlite3" >"$WORK/sweep.log" 2>&1
  SWEEP_SECS=$(python3 -c "import time; print(f'{time.time() - $start:.1f}')")
  wait $MIX
  python3 -c "import sys; sys.exit(float('$SWEEP_SECS') < float('${SWEEP_MIX%s}'))" ||
    echo "note: the sweep ended before the mix did; part of mix_during_sweep ran without it" >&2
  echo "sweeper: $(tail -1 "$WORK/sweep.log") in ${SWEEP_SECS}s" >&2
fi

RSS_KB=$(awk '/VmHWM/ { print $2 }' "/proc/$SERVER/status")
# The -wal file is reused from its start, not truncated: its size is the log's largest length.
WAL_BYTES=$(stat -c %s "$WORK/kv.sqlite3-wal" 2>/dev/null || echo 0)
echo
echo "kvstore benchmark: $KEYS keys, $ROUNDS rounds of $DURATION per scenario, wrk on the same machine ($(nproc) cores)"
echo
if [ "$DATABASE" = postgres ]; then
  echo "| scenario | conns | req/s | its ceiling req/s | of ceiling | pgbench tps | of pgbench | p50 ms | p99 ms | non-2xx |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
else
  echo "| scenario | conns | req/s | its ceiling req/s | of ceiling | p50 ms | p99 ms | non-2xx |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|"
fi
python3 - "$RESULTS" "$DATABASE" <<'PY'
import statistics, sys
# rows: name conns requests seconds p50 p99 non2xx, one per scenario and round; anchors
# (pgbench@<scenario>) have pgbench's average latency for p50 and no p99; two_servers:<scenario>
# rows come in pairs (one per server, half the connections each) and are added up.
postgres = sys.argv[2] == "postgres"
runs = {}
def new_run():
    return {"requests": 0, "seconds": 0.0, "rates": [], "p50": [], "p99": [], "non2xx": 0}
for line in open(sys.argv[1]):
    name, conns, requests, seconds, p50, p99, non2xx = line.split()
    if name.startswith("two_servers:"):
        conns = str(int(conns) * 2)
    run = runs.setdefault((name, conns), new_run())
    run["requests"] += int(requests)
    run["seconds"] += float(seconds)
    run["rates"].append(int(requests) / float(seconds))
    run["p50"].append(float(p50))
    if p99 != "-":
        run["p99"].append(float(p99))
    run["non2xx"] += int(non2xx)
def rate(name, conns):
    run = runs.get((name, conns))
    if run is None:
        return None
    if name.startswith("two_servers:"):
        return sum(run["rates"])  # both servers at once
    return run["requests"] / run["seconds"]
# Each scenario's ratio is to the ceiling runs just before it ("ceiling@<scenario>"); the
# ceiling's own row sums all of them.
for (name, conns), run in list(runs.items()):
    if name.startswith("ceiling@"):
        total = runs.setdefault(("ceiling", conns), new_run())
        for field in ("requests", "seconds", "non2xx"):
            total[field] += run[field]
        total["p50"] += run["p50"]
        total["p99"] += run["p99"]
shown = [k for k in runs if not k[0].startswith(("ceiling@", "pgbench@"))]
order = sorted(shown, key=lambda k: (int(k[1]), k[0].startswith("two_servers:"), k[0] != "ceiling"))
for name, conns in order:
    run = runs[(name, conns)]
    rps = rate(name, conns)
    ceiling_rps = rate("ceiling" if name == "ceiling" else f"ceiling@{name}", conns)
    p50 = statistics.median(run["p50"])
    p99 = statistics.median(run["p99"]) if run["p99"] else float("nan")
    row = f"| {name} | {conns} | {rps:.0f} | {ceiling_rps:.0f} | {rps / ceiling_rps:.2f} "
    if postgres:
        anchor = rate(f"pgbench@{name.split(':')[-1]}", conns)
        row += f"| {anchor:.0f} | {rps / anchor:.2f} " if anchor else "| | "
    print(row + f"| {p50:.2f} | {p99:.2f} | {run['non2xx']} |")
# The Upstash-compatible endpoint against the native routes of the same run: requests (one
# command each) and, for pipelines of 10, commands per second against native requests.
upstash = [("upstash_get", "get_hit", 1), ("upstash_set", "set", 1),
           ("upstash_get_x10", "get_hit", 10), ("upstash_set_x10", "set", 10)]
lines = []
for conns in sorted({k[1] for k in runs}, key=int):
    for name, native, per in upstash:
        ours, theirs = rate(name, conns), rate(native, conns)
        if ours and theirs:
            what = "commands/s" if per > 1 else "req/s"
            lines.append(f"{name} / {native} at {conns} connections ({what}): "
                         f"{ours * per:.0f} / {theirs:.0f} = {ours * per / theirs:.2f}")
if lines:
    print()
    print("\n".join(lines))
if postgres:
    print()
    for name, conns in sorted(k for k in runs if k[0].startswith("two_servers:")):
        scenario = name.split(":", 1)[1]
        one = rate(scenario, conns)
        if one:
            print(f"two servers / one server, {scenario} at {conns} connections: "
                  f"{rate(name, conns) / one:.2f}")
PY
echo
echo "peak RSS of kv-server: $((RSS_KB / 1024)) MiB"
[ "$DATABASE" = sqlite ] && echo "largest write-ahead log (kv.sqlite3-wal): $((WAL_BYTES / 1000000)) MB"
[ "$SWEEP" = 1 ] && echo "kv-sweeper --once over $KEYS expired keys during the mix: $(tail -1 "$WORK/sweep.log") in ${SWEEP_SECS}s"
echo "(get_miss answers 404 by design: its non-2xx count is its request count.)"
