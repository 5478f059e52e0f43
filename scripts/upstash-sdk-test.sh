#!/usr/bin/env bash
# The Upstash SDKs against a real kv-server: installs @upstash/redis from npm and
# upstash-redis (with pytest) from PyPI, at pinned versions, into target/upstash-sdk (Node 18+
# and Python 3.9+ must be on PATH; nodejs/npm are installed from Debian packages if missing),
# and @upstash/ratelimit and @upstash/lock (with the @upstash/redis they need) into
# target/upstash-sdk/scripting; starts two kv-servers on free local ports over temp SQLite
# files with a read-write and a read-only API key, runs crates/kv-server/tests/sdk/*.test.mjs
# and sdk/scripting/*.test.mjs with Node's test runner and crates/kv-server/tests/sdk/test_*.py
# with pytest, and stops the servers it started (by their PIDs). CI runs it.
set -euo pipefail
cd "$(dirname "$0")/.."

UPSTASH_REDIS_VERSION=1.35.0
UPSTASH_REDIS_PY_VERSION=1.8.0
PYTEST_VERSION=8.4.2
# @upstash/ratelimit 2.2.0 needs @upstash/redis ^1.38.2.
SCRIPTING_SDKS="@upstash/ratelimit@2.2.0 @upstash/lock@0.2.1 @upstash/redis@1.38.2"
SDK_DIR=${KV_SDK_DIR:-target/upstash-sdk}
log() { echo "upstash-sdk-test: $*" >&2; }

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    log "installing nodejs and npm from Debian packages"
    apt-get update -q >/dev/null
    apt-get install -y -q --no-install-recommends nodejs npm >/dev/null
fi
if [[ "$(cat "$SDK_DIR/.version" 2>/dev/null)" != "$UPSTASH_REDIS_VERSION" ]]; then
    log "installing @upstash/redis $UPSTASH_REDIS_VERSION into $SDK_DIR"
    rm -rf "$SDK_DIR"
    mkdir -p "$SDK_DIR"
    (cd "$SDK_DIR" && npm init -y >/dev/null &&
        npm install --no-audit --no-fund "@upstash/redis@$UPSTASH_REDIS_VERSION" >/dev/null)
    echo "$UPSTASH_REDIS_VERSION" >"$SDK_DIR/.version"
fi
if [[ "$(cat "$SDK_DIR/venv/.version" 2>/dev/null)" != "$UPSTASH_REDIS_PY_VERSION" ]]; then
    log "installing upstash-redis $UPSTASH_REDIS_PY_VERSION and pytest into $SDK_DIR/venv"
    rm -rf "$SDK_DIR/venv"
    python3 -m venv "$SDK_DIR/venv"
    "$SDK_DIR/venv/bin/pip" install -q "upstash-redis==$UPSTASH_REDIS_PY_VERSION" "pytest==$PYTEST_VERSION"
    echo "$UPSTASH_REDIS_PY_VERSION" >"$SDK_DIR/venv/.version"
fi

if [[ "$(cat "$SDK_DIR/scripting/.version" 2>/dev/null)" != "$SCRIPTING_SDKS" ]]; then
    log "installing $SCRIPTING_SDKS into $SDK_DIR/scripting"
    rm -rf "$SDK_DIR/scripting"
    mkdir -p "$SDK_DIR/scripting"
    # shellcheck disable=SC2086
    (cd "$SDK_DIR/scripting" && npm init -y >/dev/null &&
        npm install --no-audit --no-fund $SCRIPTING_SDKS >/dev/null)
    echo "$SCRIPTING_SDKS" >"$SDK_DIR/scripting/.version"
fi

cargo build --quiet -p kv-server
WORK=$(mktemp -d "${TMPDIR:-/tmp}/kv-sdk.XXXXXX")
SERVER=
SERVER_2=
cleanup() {
    [[ -n "$SERVER" ]] && { kill "$SERVER" 2>/dev/null; wait "$SERVER" 2>/dev/null || true; }
    [[ -n "$SERVER_2" ]] && { kill "$SERVER_2" 2>/dev/null; wait "$SERVER_2" 2>/dev/null || true; }
    rm -rf "$WORK"
}
trap cleanup EXIT
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
TOKEN=sdk-rw-$RANDOM$RANDOM
READ_ONLY=sdk-ro-$RANDOM$RANDOM
RUST_LOG=warn KV_API_KEYS=$TOKEN KV_READ_ONLY_KEYS=$READ_ONLY "${CARGO_TARGET_DIR:-target}/debug/kv-server" \
    --bind "127.0.0.1:$PORT" --database-url "$WORK/kv.sqlite3" >"$WORK/server.log" 2>&1 &
SERVER=$!
# A second server (its own database) for @upstash/ratelimit's multi-region limiter.
PORT_2=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
RUST_LOG=warn KV_API_KEYS=$TOKEN "${CARGO_TARGET_DIR:-target}/debug/kv-server" \
    --bind "127.0.0.1:$PORT_2" --database-url "$WORK/kv2.sqlite3" >"$WORK/server2.log" 2>&1 &
SERVER_2=$!
for port in "$PORT" "$PORT_2"; do
    for _ in $(seq 100); do
        curl -sf "http://127.0.0.1:$port/_health/live" >/dev/null && break
        sleep 0.1
    done
done

# The tests import @upstash/redis from the SDK directory.
cp crates/kv-server/tests/sdk/*.test.mjs "$SDK_DIR/"
cp crates/kv-server/tests/sdk/scripting/*.test.mjs "$SDK_DIR/scripting/"
export KV_UPSTASH_URL="http://127.0.0.1:$PORT/_upstash" KV_UPSTASH_TOKEN=$TOKEN
export KV_UPSTASH_URL_2="http://127.0.0.1:$PORT_2/_upstash"
export KV_UPSTASH_READ_ONLY_TOKEN=$READ_ONLY KV_REST_URL="http://127.0.0.1:$PORT"
status=0
(cd "$SDK_DIR" && node --test ./*.test.mjs) || status=$?
(cd "$SDK_DIR/scripting" && node --test ./*.test.mjs) || status=$?
"$SDK_DIR/venv/bin/pytest" -q -p no:cacheprovider crates/kv-server/tests/sdk || status=$?
if [[ $status -ne 0 ]]; then
    log "FAILED; the server's log:"
    tail -n 50 "$WORK/server.log" >&2
fi
exit $status
