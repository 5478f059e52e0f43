#!/usr/bin/env bash
# kvstore benchmark: builds release, starts kv-server over a fresh SQLite database, loads
# --keys keys, and drives it with wrk at fixed concurrency. Prints req/s, p50, p99, non-2xx
# for each scenario and each req/s as a ratio of the same run's ceiling (GET /_health/live,
# which never touches the database), plus the server's peak RSS.
#
#   scripts/bench.sh [--keys N] [--duration 10s] [--rounds 3] [--connections "32 256"] [--sweep]
#
# Each round runs every scenario once (--duration each), each right after a run of the
# ceiling; a scenario's req/s is its requests over its time across all rounds, and its ratio
# is to the ceiling runs just before it. Interleaving keeps the ratios steady on a machine
# whose speed drifts (a shared VM's does, by a third within a minute); p50 and p99 are the
# medians of the rounds. The ceiling's row sums all its runs.
# --sweep also measures kv-sweeper deleting N expired keys while the 90/10 mix runs.
# Needs wrk (apt-get install wrk), curl and python3. Traffic goes to 127.0.0.1 only.
set -euo pipefail
cd "$(dirname "$0")/.."

KEYS=10000
DURATION=10s
ROUNDS=3
CONNECTIONS="32 256"
SWEEP=0
while [ $# -gt 0 ]; do
  case "$1" in
    --keys) KEYS=$2; shift 2 ;;
    --duration) DURATION=$2; shift 2 ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    --connections) CONNECTIONS=$2; shift 2 ;;
    --sweep) SWEEP=1; shift ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done

command -v wrk >/dev/null || { echo "wrk is missing: apt-get install wrk" >&2; exit 1; }
cargo build --release -q -p kv-server -p kv-sweeper

WORK=$(mktemp -d)
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
BASE="http://127.0.0.1:$PORT"
RUST_LOG=warn target/release/kv-server --bind "127.0.0.1:$PORT" --database-url "$WORK/kv.sqlite3" \
  >"$WORK/server.log" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null; wait $SERVER 2>/dev/null; rm -rf "$WORK"' EXIT
for _ in $(seq 100); do curl -sf "$BASE/_health/live" >/dev/null && break; sleep 0.1; done

load_keys() { # prefix count body-extra
  python3 - "$BASE" "$1" "$2" "$3" <<'PY'
import json, sys, urllib.request
base, prefix, count, extra = sys.argv[1], sys.argv[2], int(sys.argv[3]), json.loads(sys.argv[4])
value = {"name": "Emeka", "role": "Engineer", "skills": ["Python", "Django"]}
for start in range(0, count, 1000):
    ops = [dict({"op": "set", "key": f"{prefix}{i}", "value": value}, **extra)
           for i in range(start, min(start + 1000, count))]
    req = urllib.request.Request(base + "/_tx", data=json.dumps({"ops": ops}).encode(), method="POST")
    urllib.request.urlopen(req).read()
PY
}
echo "loading $KEYS keys..." >&2
load_keys "bench:" "$KEYS" '{}'

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

RESULTS=$WORK/results
for c in $CONNECTIONS; do for _ in $(seq "$ROUNDS"); do
  for scenario in get_hit get_miss set incr mix; do
    name=$scenario; [ "$scenario" = mix ] && name=mix_90_10
    run "ceiling@$name" "$c" "" /_health/live
    run "$name" "$c" "$scenario.lua" /
  done
done; done | tee "$RESULTS" >&2

if [ "$SWEEP" = 1 ]; then
  echo "loading $KEYS keys that expire at once, then sweeping them while the mix runs..." >&2
  load_keys "expired:" "$KEYS" '{"ttl_ms": 1}'
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
echo "| scenario | conns | req/s | its ceiling req/s | of ceiling | p50 ms | p99 ms | non-2xx |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|"
python3 - "$RESULTS" <<'PY'
import statistics, sys
# rows: name conns requests seconds p50 p99 non2xx, one per scenario and round
runs = {}
for line in open(sys.argv[1]):
    name, conns, requests, seconds, p50, p99, non2xx = line.split()
    run = runs.setdefault((name, conns), {"requests": 0, "seconds": 0.0, "p50": [], "p99": [], "non2xx": 0})
    run["requests"] += int(requests)
    run["seconds"] += float(seconds)
    run["p50"].append(float(p50))
    run["p99"].append(float(p99))
    run["non2xx"] += int(non2xx)
# Each scenario's ratio is to the ceiling runs just before it ("ceiling@<scenario>"); the
# ceiling's own row sums all of them.
for (name, conns), run in list(runs.items()):
    if name.startswith("ceiling@"):
        total = runs.setdefault(("ceiling", conns), {"requests": 0, "seconds": 0.0, "p50": [], "p99": [], "non2xx": 0})
        for field in ("requests", "seconds", "non2xx"):
            total[field] += run[field]
        total["p50"] += run["p50"]
        total["p99"] += run["p99"]
order = sorted((k for k in runs if not k[0].startswith("ceiling@")),
               key=lambda k: (int(k[1]), k[0] != "ceiling"))
for name, conns in order:
    run = runs[(name, conns)]
    rps = run["requests"] / run["seconds"]
    ceiling = runs[("ceiling" if name == "ceiling" else f"ceiling@{name}", conns)]
    ceiling_rps = ceiling["requests"] / ceiling["seconds"]
    p50, p99 = statistics.median(run["p50"]), statistics.median(run["p99"])
    print(f"| {name} | {conns} | {rps:.0f} | {ceiling_rps:.0f} | {rps / ceiling_rps:.2f} "
          f"| {p50:.2f} | {p99:.2f} | {run['non2xx']} |")
PY
echo
echo "peak RSS of kv-server: $((RSS_KB / 1024)) MiB"
echo "largest write-ahead log (kv.sqlite3-wal): $((WAL_BYTES / 1000000)) MB"
[ "$SWEEP" = 1 ] && echo "kv-sweeper --once over $KEYS expired keys during the mix: $(tail -1 "$WORK/sweep.log") in ${SWEEP_SECS}s"
echo "(get_miss answers 404 by design: its non-2xx count is its request count.)"
