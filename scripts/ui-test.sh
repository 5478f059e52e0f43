#!/usr/bin/env bash
# End-to-end test of the key browser (/_ui) in headless Chromium against real kv-servers.
#
# Installs what is missing (Debian's chromium via apt-get, playwright-core via npm ci), builds
# kv-server (debug), starts it on a free port over a temporary database (plus a second one
# with an API key, and a third with --cors-origin for the Upstash endpoint's CORS test), runs
# crates/kv-server/ui/e2e/ui.test.mjs and upstash-cors.test.mjs, and stops the servers.
# Screenshots land in crates/kv-server/ui/e2e/screenshots/ (gitignored), or $UI_SCREENSHOTS.
#
# Needs node (18+) and npm. Env: CHROMIUM_PATH (default /usr/bin/chromium), KV_SERVER_BIN
# (skip the build and use this binary).
set -euo pipefail
cd "$(dirname "$0")/.."

E2E=crates/kv-server/ui/e2e
CHROMIUM=${CHROMIUM_PATH:-/usr/bin/chromium}

log() { echo "ui-test: $*" >&2; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

if [ ! -x "$CHROMIUM" ]; then
  log "installing chromium from Debian's packages"
  as_root apt-get update
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y chromium
fi
"$CHROMIUM" --version >&2

command -v node >/dev/null && command -v npm >/dev/null || {
  log "node and npm are needed"
  exit 1
}
# npm ci when node_modules is missing or older than the lockfile.
if [ ! "$E2E/node_modules/.package-lock.json" -nt "$E2E/package-lock.json" ]; then
  log "npm ci"
  (cd "$E2E" && npm ci --no-audit --no-fund)
fi

if [ -n "${KV_SERVER_BIN:-}" ]; then
  BIN=$KV_SERVER_BIN
else
  cargo build -p kv-server
  BIN=${CARGO_TARGET_DIR:-target}/debug/kv-server
fi

TMP=$(mktemp -d)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in "${PIDS[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$TMP"
}
trap cleanup EXIT

# start_server NAME [ARGS...]: starts kv-server on a free port over $TMP/NAME.sqlite3 and sets
# URL to its base address. API keys from the caller's environment are not inherited.
start_server() {
  local name=$1
  shift
  env -u KV_API_KEYS -u KV_READ_ONLY_KEYS -u KV_API_KEYS_FILE -u KV_CORS_ORIGINS -u KV_BIND \
    -u DATABASE_URL RUST_LOG=info \
    "$BIN" --bind 127.0.0.1:0 --database-url "$TMP/$name.sqlite3" "$@" >"$TMP/$name.log" 2>&1 &
  PIDS+=($!)
  local pid=$! i
  URL=
  for i in $(seq 1 300); do
    URL=$(grep -o -m1 'listening on http://[0-9.:]*' "$TMP/$name.log" | sed 's/^listening on //' || true)
    [ -n "$URL" ] && return 0
    if ! kill -0 "$pid" 2>/dev/null; then break; fi
    sleep 0.1
  done
  log "kv-server ($name) did not start:"
  cat "$TMP/$name.log" >&2
  exit 1
}

start_server plain
PLAIN_URL=$URL
start_server auth --api-key ui-test-key
AUTH_URL=$URL
# A third one for the Upstash endpoint's CORS test: it allows the origin of the page that
# upstash-cors.test.mjs serves on PAGE_PORT.
PAGE_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
start_server cors --cors-origin "http://127.0.0.1:$PAGE_PORT" --api-key cors-test-key
CORS_URL=$URL
log "servers at $PLAIN_URL, $AUTH_URL (with an API key) and $CORS_URL (CORS)"

status=0
(cd "$E2E" && KV_URL=$PLAIN_URL KV_AUTH_URL=$AUTH_URL KV_API_KEY=ui-test-key \
  KV_CORS_URL=$CORS_URL KV_PAGE_PORT=$PAGE_PORT KV_CORS_KEY=cors-test-key \
  CHROMIUM_PATH=$CHROMIUM node --test --test-concurrency=1 ui.test.mjs upstash-cors.test.mjs) || status=$?
if [ "$status" -ne 0 ]; then
  log "browser test failed; server logs:"
  tail -n 40 "$TMP/plain.log" "$TMP/auth.log" "$TMP/cors.log" >&2
fi
log "screenshots: ${UI_SCREENSHOTS:-$E2E/screenshots}"
exit "$status"
