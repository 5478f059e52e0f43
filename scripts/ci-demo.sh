#!/usr/bin/env bash
# CI: builds kv-server, starts it on a free port over a temporary database, runs
# scripts/demo.sh against it, checks /_metrics, then stops it with SIGTERM and expects exit 0.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --quiet -p kv-server -p kv-sweeper
bin="${CARGO_TARGET_DIR:-target}/debug"
work=$(mktemp -d)
server_pid=""
cleanup() {
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
    kill -KILL "$server_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

# Port 0: the system picks a free port; the start-up line says which.
RUST_LOG=info "$bin/kv-server" --bind 127.0.0.1:0 --database-url "$work/kv.sqlite3" \
  2>"$work/server.log" &
server_pid=$!
url=""
for _ in $(seq 1 600); do
  url=$(grep -o 'listening on http://[0-9.:]*' "$work/server.log" | head -n 1 | sed 's/^listening on //') || true
  [ -n "$url" ] && break
  kill -0 "$server_pid" 2>/dev/null || { cat "$work/server.log" >&2; echo "kv-server exited" >&2; exit 1; }
  sleep 0.1
done
[ -n "$url" ] || { cat "$work/server.log" >&2; echo "kv-server did not start" >&2; exit 1; }

scripts/demo.sh "$url"

"$bin/kv-sweeper" --once --database-url "$work/kv.sqlite3" --metrics-file "$work/kv_sweeper.prom"
grep -q '^kv_sweeper_last_run_success{.*} 1$' "$work/kv_sweeper.prom"

metrics=$(curl -sS "$url/_metrics")
grep -q '^kv_http_requests_total{method="POST",route="/{key}",status="201"} [1-9]' <<<"$metrics" || {
  echo "unexpected /_metrics:" >&2
  echo "$metrics" >&2
  exit 1
}

kill -TERM "$server_pid"
status=0
wait "$server_pid" || status=$?
server_pid=""
if [ "$status" -ne 0 ]; then
  cat "$work/server.log" >&2
  echo "kv-server exited with $status after SIGTERM" >&2
  exit 1
fi
echo "demo against a live kv-server: ok"
