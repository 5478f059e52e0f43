#!/usr/bin/env bash
# Export and import at scale: builds release, starts kv-server over a fresh SQLite database (or
# a throwaway PostgreSQL cluster), and measures, with N keys (default 1,000,000) of the seed's
# value:
#
#   load      N keys through POST /_tx, 1,000 ops a request, one request at a time (the
#             native bulk write: the anchor of import)
#   export    GET /_export of all N keys to a file (curl)
#   scan      GET /_keys?values=true&limit=1000, page after page, one at a time (the native
#             bulk read: the anchor of export)
#   clear     DELETE /_keys?all=true
#   import    POST /_import of that file into the emptied store (curl --data-binary)
#
# For each: seconds, keys/s, the ratio to its anchor, and the server's peak RSS during that
# phase (VmHWM, reset before each through /proc/PID/clear_refs) against its RSS before it.
#
#   scripts/bench-transfer.sh [--keys N] [--database sqlite|postgres]
#
# Needs curl and python3. Traffic goes to 127.0.0.1 only; stops the server (and cluster) it
# started, by PID, on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

KEYS=1000000
DATABASE=sqlite
while [ $# -gt 0 ]; do
  case "$1" in
    --keys) KEYS=$2; shift 2 ;;
    --database) DATABASE=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done

cargo build --release -q -p kv-server
WORK=$(mktemp -d)
SERVER=
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
RUST_LOG=warn target/release/kv-server --bind "127.0.0.1:$PORT" --database-url "$DB_URL" \
  --max-import-bytes $((4 * 1024 * 1024 * 1024)) >"$WORK/server.log" 2>&1 &
SERVER=$!
for _ in $(seq 100); do curl -sf "$BASE/_health/live" >/dev/null && break; sleep 0.1; done

rss_kb() { awk "/$1/ { print \$2 }" "/proc/$SERVER/status"; }
# phase name command...: runs the command, prints "name seconds rss_before_kb peak_kb"
phase() {
  local name=$1; shift
  local before start end
  echo 5 >"/proc/$SERVER/clear_refs"
  before=$(rss_kb VmRSS)
  start=$(date +%s.%N)
  "$@"
  end=$(date +%s.%N)
  echo "$name $(python3 -c "print(f'{$end - $start:.2f}')") $before $(rss_kb VmHWM)"
}

load() {
  python3 - "$BASE" "$KEYS" <<'PY'
import json, sys, urllib.request
base, count = sys.argv[1], int(sys.argv[2])
value = {"name": "Emeka", "role": "Engineer", "skills": ["Python", "Django"]}
for start in range(0, count, 1000):
    ops = [{"op": "set", "key": f"bench:{i}", "value": value} for i in range(start, min(start + 1000, count))]
    req = urllib.request.Request(base + "/_tx", data=json.dumps({"ops": ops}).encode(), method="POST")
    urllib.request.urlopen(req).read()
PY
}
export_all() { curl -sf "$BASE/_export" -o "$WORK/dump.ndjson"; }
scan_all() {
  python3 - "$BASE" "$KEYS" <<'PY'
import json, sys, urllib.parse, urllib.request
base, want = sys.argv[1], int(sys.argv[2])
cursor, seen = None, 0
while True:
    url = base + "/_keys?values=true&limit=1000" + (f"&cursor={urllib.parse.quote(cursor)}" if cursor else "")
    page = json.load(urllib.request.urlopen(url))
    seen += len(page["items"])
    cursor = page["cursor"]
    if cursor is None:
        break
assert seen == want, (seen, want)
PY
}
clear_all() { curl -sf -X DELETE "$BASE/_keys?all=true" >/dev/null; }
import_all() {
  curl -sf -X POST "$BASE/_import" --data-binary @"$WORK/dump.ndjson" -o "$WORK/import.json"
}

echo "kvstore transfer benchmark: $KEYS keys on $DATABASE, $(nproc) cores" >&2
{
  phase load load
  phase export export_all
  phase scan scan_all
  phase clear clear_all
  phase import import_all
} | tee "$WORK/results" >&2
LINES=$(wc -l <"$WORK/dump.ndjson")
[ "$LINES" -eq "$KEYS" ] || { echo "the export has $LINES lines, not $KEYS" >&2; exit 1; }
grep -q "\"imported\":$KEYS," "$WORK/import.json" || { cat "$WORK/import.json" >&2; exit 1; }
python3 - "$WORK/results" "$KEYS" "$(stat -c %s "$WORK/dump.ndjson")" <<'PY'
import sys
rows = {name: (float(s), int(before), int(peak)) for name, s, before, peak in
        (line.split() for line in open(sys.argv[1]))}
keys, size = int(sys.argv[2]), int(sys.argv[3])
anchor = {"export": "scan", "import": "load"}
print(f"| phase | seconds | keys/s | of its anchor | server RSS before → peak (MB) |")
print(f"|---|---:|---:|---|---|")
for name in ["load", "export", "scan", "clear", "import"]:
    s, before, peak = rows[name]
    ratio = (f"{rows[anchor[name]][0] / s:.2f}× {anchor[name]}" if name in anchor
             else "(anchor)" if name in anchor.values() else "—")
    print(f"| {name} | {s:.1f} | {keys / s:,.0f} | {ratio} | {before / 1024:.0f} → {peak / 1024:.0f} |")
print(f"\nexport file: {size / 1e6:.0f} MB ({size / keys:.0f} bytes a key)")
PY
