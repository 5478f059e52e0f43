#!/usr/bin/env bash
# Walks the README's curl examples against a running kv-server and checks every answer
# (status and body fields). Exits 0 when all match, 1 on any mismatch, 2 when it cannot run.
#
#   scripts/demo.sh [URL]        URL: the server (default $KV_URL, else http://127.0.0.1:8000)
#   KV_API_KEY=...               sent as "Authorization: Bearer ..." when the server wants keys
#
# It writes the keys user:101, otp:555, demo:flash, lock:report, page:views and rate:alice (and
# deletes them first, so it can run again): point it at a demo or test server, not at data you
# care about. Needs curl and jq.
set -uo pipefail

base="${1:-${KV_URL:-http://127.0.0.1:8000}}"
base="${base%/}"
for tool in curl jq; do
  command -v "$tool" >/dev/null 2>&1 || { echo "demo.sh: $tool is required" >&2; exit 2; }
done

auth=()
if [ -n "${KV_API_KEY:-}" ]; then
  auth=(-H "Authorization: Bearer ${KV_API_KEY}")
fi
body_file=$(mktemp)
trap 'rm -f "$body_file"' EXIT
failures=0
status=""
body=""

# call METHOD PATH [BODY [HEADER...]]: sets $status and $body.
call() {
  local method=$1 path=$2
  shift 2
  local args=(-sS -X "$method" -o "$body_file" -w '%{http_code}' "${auth[@]}")
  if [ $# -gt 0 ]; then
    args+=(-d "$1")
    shift
  fi
  for header in "$@"; do
    args+=(-H "$header")
  done
  if ! status=$(curl "${args[@]}" "$base$path"); then
    echo "FAIL $method $path: no answer from $base" >&2
    exit 2
  fi
  body=$(cat "$body_file")
  echo "> $method $path -> $status $body"
}

# expect STATUS 'jq test'...: each test is a jq expression that must be true of the body.
expect() {
  local want=$1
  shift
  if [ "$status" != "$want" ]; then
    echo "  FAIL: status $status, expected $want" >&2
    failures=$((failures + 1))
  fi
  for test in "$@"; do
    if ! jq -e "$test" >/dev/null 2>&1 <<<"$body"; then
      echo "  FAIL: $test" >&2
      failures=$((failures + 1))
    fi
  done
}

echo "kvstore demo against $base"

call GET /_health
expect 200 '.status == "ok"' '.database | type == "string"'

# Start clean so every answer is known (a missing key is fine here).
for key in user:101 otp:555 demo:flash lock:report page:views rate:alice; do
  call DELETE "/$key/"
  [ "$status" = 200 ] || expect 404 '.code == "not_found" or .code == "expired"'
done

# Store user data (no expiry): the seed's example, with its Content-Type header.
call POST /user:101/ '{"value": {"name": "Emeka", "role": "Engineer", "skills": ["Python", "Django"]}}' \
  "Content-Type: application/json"
expect 201 '.status == "ok"' '.action == "created"' '.key == "user:101"' '.expires_at == null' \
  '.version | type == "number" and . > 0'

# Store an OTP that expires in 60 seconds.
call POST /otp:555/ '{"value": 849201, "ttl": 60}' "Content-Type: application/json"
expect 201 '.status == "ok"' '.action == "created"' '.key == "otp:555"' \
  '.expires_at | test("^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:]{8}\\.[0-9]{3}Z$")'

# Read them back.
call GET /user:101/
expect 200 '.key == "user:101"' \
  '.value == {"name": "Emeka", "role": "Engineer", "skills": ["Python", "Django"]}' \
  '.ttl_remaining == -1' '.ttl_remaining_ms == -1' '.expires_at == null'
call GET /otp:555/
expect 200 '.key == "otp:555"' '.value == 849201' '.ttl_remaining >= 55 and .ttl_remaining <= 60' \
  '.ttl_remaining_ms > 0 and .ttl_remaining_ms <= 60000'

# A missing key.
call GET /demo:missing/
expect 404 '.error == "Key not found"' '.code == "not_found"'

# Expiry (the README's OTP a minute later, here with a 300 ms key): the first read says
# "expired" and removes the key; after that it is simply missing.
call POST /demo:flash/ '{"value": "gone soon", "ttl_ms": 300}'
expect 201 '.expires_at | type == "string"'
sleep 0.5
call GET /demo:flash/
expect 404 '.error == "Key not found (expired)"' '.code == "expired"'
call GET /demo:flash/
expect 404 '.error == "Key not found"' '.code == "not_found"'

# A lock only one worker can take (nx): the second gets 412.
call PUT /lock:report '{"value": "worker-1", "nx": true, "ttl": 30}'
expect 201 '.action == "created"' '.key == "lock:report"' '.expires_at | type == "string"'
call PUT /lock:report '{"value": "worker-2", "nx": true, "ttl": 30}'
expect 412 '.code == "precondition_failed"' '.error | type == "string"'

# Counters: a missing key counts from 0; a ttl applies only when the call creates the key.
call POST /page:views/incr
expect 200 '.key == "page:views"' '.value == 1' '.ttl_remaining == -1'
call POST /page:views/incr '{"by": 10}'
expect 200 '.value == 11'
call POST /rate:alice/incr '{"ttl": 60}'
expect 200 '.value == 1' '.ttl_remaining >= 55 and .ttl_remaining <= 60'
call POST /page:views/decr
expect 200 '.value == 10'

if [ "$failures" -gt 0 ]; then
  echo "demo: $failures check(s) failed" >&2
  exit 1
fi
echo "demo: all checks passed"
