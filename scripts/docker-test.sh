#!/usr/bin/env bash
# Tests the Dockerfile and the compose files for real, on this machine:
#
#   scripts/docker-test.sh
#
# 1. Installs what it needs from Debian packages when missing (docker.io, docker-compose,
#    debootstrap) and starts dockerd (vfs storage driver) if none is running.
# 2. This machine cannot pull from Docker Hub, so it builds the two base images the Dockerfile
#    names, locally, and tags them with exactly those names (the Dockerfile is tested
#    unchanged): `rust:1.95-slim-bookworm` is a Debian 12 minbase made by debootstrap with gcc
#    and this machine's Rust toolchain, laid out as the official image has it (and this
#    machine's CA certificates, so cargo reaches crates.io as this machine does);
#    `gcr.io/distroless/cc-debian12:nonroot` holds what distroless's does (glibc, libgcc,
#    CA certificates, time zones, the nonroot user 65532). Both are kept for the next run.
# 3. Builds the image, then with compose (SQLite): sets keys with and without a TTL through
#    the published port, sees the sweeper container delete the expired one, `down` and `up`
#    again and finds the live keys, checks the server runs as 65532 and turns healthy, and
#    `docker stop`s it to see exit code 0.
# 4. Checks compose.postgres.yaml with `docker-compose config`, and runs the image against a
#    throwaway PostgreSQL on the host network (scripts/lib/postgres.sh).
#
# Cleans up what it started (the compose project, the container it ran, the dockerd it
# started, the PostgreSQL cluster), by the names and ids it recorded. Traffic goes to
# 127.0.0.1 only.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { echo "docker-test: $*" >&2; }
fail() { log "FAILED: $*"; exit 1; }

RUST_IMAGE=rust:1.95-slim-bookworm
RUN_IMAGE=gcr.io/distroless/cc-debian12:nonroot
IMAGE=kvstore:docker-test
PROJECT=kvdockertest$$
WORK=$(mktemp -d "${TMPDIR:-/tmp}/kv-docker.XXXXXX")
DOCKERD_PID=
RUN_ID=
export DEBIAN_FRONTEND=noninteractive

# --- 1. tools -------------------------------------------------------------------------------
missing=()
command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
command -v docker-compose >/dev/null 2>&1 || missing+=(docker-compose)
command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
command -v curl >/dev/null 2>&1 || missing+=(curl)
if [[ ${#missing[@]} -gt 0 ]]; then
    log "installing ${missing[*]} from Debian packages"
    apt-get update -q >/dev/null
    apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
fi
# Debian's docker.io has the client at /usr/bin/docker; use it, whatever else is on PATH.
DOCKER=/usr/bin/docker
[[ -x $DOCKER ]] || DOCKER=$(command -v docker)

compose() {
    KV_IMAGE=$IMAGE KV_PORT=$PORT KV_SWEEP_INTERVAL=1 docker-compose -p "$PROJECT" "$@"
}

cleanup() {
    local status=$?
    set +e
    if [[ -n "${PORT:-}" ]]; then
        compose down -v --remove-orphans >/dev/null 2>&1
    fi
    [[ -n "$RUN_ID" ]] && $DOCKER rm -f "$RUN_ID" >/dev/null 2>&1
    [[ -n "${PG_WORKDIR:-}" ]] && pg_cleanup
    if [[ -n "$DOCKERD_PID" ]]; then
        kill "$DOCKERD_PID" 2>/dev/null
        wait "$DOCKERD_PID" 2>/dev/null
    fi
    rm -rf "$WORK"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if ! $DOCKER info >/dev/null 2>&1; then
    log "starting dockerd (vfs storage driver)"
    dockerd --storage-driver=vfs >"$WORK/dockerd.log" 2>&1 &
    DOCKERD_PID=$!
    for _ in $(seq 60); do $DOCKER info >/dev/null 2>&1 && break; sleep 1; done
    $DOCKER info >/dev/null 2>&1 || { tail -20 "$WORK/dockerd.log" >&2; fail "dockerd did not start"; }
fi

# --- 2. base images -------------------------------------------------------------------------
MIRROR=http://deb.debian.org/debian
# Bumped whenever what goes into the stand-ins changes, so older ones are built again.
STAND_IN=2
is_current() { # image: a stand-in of this script's current recipe is there
    [[ "$($DOCKER image inspect -f '{{index .Config.Labels "kvstore.stand-in"}}' "$1" 2>/dev/null)" == "$STAND_IN" ]]
}

# A stand-in of an older recipe is removed once its replacement is tagged (by the id it had).
old_stand_ins=()
if ! is_current "$RUST_IMAGE"; then
    old_stand_ins+=("$($DOCKER image inspect -f '{{.Id}}' "$RUST_IMAGE" 2>/dev/null || true)")
    log "building $RUST_IMAGE: debootstrap (Debian 12 minbase, gcc) and this machine's Rust toolchain"
    root="$WORK/rust-root"
    debootstrap --variant=minbase --include=gcc,libc6-dev,ca-certificates \
        bookworm "$root" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 ||
        { tail -20 "$WORK/debootstrap.log" >&2; fail "debootstrap"; }
    # As the official image lays it out: RUSTUP_HOME=/usr/local/rustup, CARGO_HOME=/usr/local/cargo.
    toolchain=$(rustc --print sysroot)
    name=$(basename "$toolchain")
    mkdir -p "$root/usr/local/rustup/toolchains" "$root/usr/local/cargo/bin"
    cp -a "$toolchain" "$root/usr/local/rustup/toolchains/$name"
    rm -rf "$root/usr/local/rustup/toolchains/$name/share/doc"
    for tool in cargo rustc rustdoc; do
        ln -s "/usr/local/rustup/toolchains/$name/bin/$tool" "$root/usr/local/cargo/bin/$tool"
    done
    # The certificate authorities this machine trusts, so that cargo in the build reaches
    # crates.io the way this machine does (through whatever proxy it is set up for).
    cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
    rm -rf "$root/var/cache/apt/archives"/*.deb "$root/var/lib/apt/lists"/*
    tar -C "$root" -c . | $DOCKER import \
        --change 'ENV RUSTUP_HOME=/usr/local/rustup' \
        --change 'ENV CARGO_HOME=/usr/local/cargo' \
        --change 'ENV PATH=/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'CMD ["bash"]' --change "LABEL kvstore.stand-in=$STAND_IN" - "$RUST_IMAGE" >/dev/null
    rm -rf "$root"
fi

if ! is_current "$RUN_IMAGE"; then
    old_stand_ins+=("$($DOCKER image inspect -f '{{.Id}}' "$RUN_IMAGE" 2>/dev/null || true)")
    log "building $RUN_IMAGE: glibc, libgcc, CA certificates, time zones, user nonroot (65532)"
    root="$WORK/run-root"
    mkdir -p "$root" "$WORK/debs"
    (cd "$WORK/debs" && apt-get -o APT::Sandbox::User=root download -q libc6 libgcc-s1 gcc-12-base tzdata netbase \
        ca-certificates >/dev/null)
    for deb in "$WORK"/debs/*.deb; do dpkg-deb -x "$deb" "$root"; done
    mkdir -p "$root/etc/ssl/certs" "$root/home/nonroot" "$root/tmp" "$root/root"
    cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/"
    chmod 1777 "$root/tmp"
    chown 65532:65532 "$root/home/nonroot"
    printf 'root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >"$root/etc/passwd"
    printf 'root:x:0:\nnobody:x:65534:\nnonroot:x:65532:\n' >"$root/etc/group"
    rm -rf "$root/usr/share/doc" "$root/usr/share/man" "$root/usr/share/lintian"
    tar -C "$root" -c . | $DOCKER import \
        --change 'USER 65532' --change 'WORKDIR /home/nonroot' \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt' \
        --change "LABEL kvstore.stand-in=$STAND_IN" - "$RUN_IMAGE" >/dev/null
    rm -rf "$root"
fi

for id in "${old_stand_ins[@]}"; do
    [[ -n "$id" ]] && $DOCKER rmi "$id" >/dev/null 2>&1
done

# --- 3. the image, and compose over SQLite --------------------------------------------------
log "docker build (the dependency layer is cached between runs)"
started=$(date +%s)
# Host networking for the build: the build fetches crates from crates.io.
$DOCKER build --network host -t "$IMAGE" . >"$WORK/build.log" 2>&1 ||
    { tail -40 "$WORK/build.log" >&2; fail "docker build"; }
size=$($DOCKER image inspect -f '{{.Size}}' "$IMAGE")
log "built $IMAGE in $(($(date +%s) - started)) s: $((size / 1000000)) MB"

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
BASE="http://127.0.0.1:$PORT"
compose config -q || fail "compose.yaml does not validate"
compose up -d --no-build >"$WORK/compose.log" 2>&1 || { cat "$WORK/compose.log" >&2; fail "compose up"; }

server=$(compose ps -q kv-server)
[[ -n "$server" ]] || fail "no kv-server container"
wait_for() { # seconds what command...: retries the command every 0.5 s
    local limit=$1 what=$2
    shift 2
    for _ in $(seq $((limit * 2))); do "$@" >/dev/null 2>&1 && return 0; sleep 0.5; done
    compose logs >&2 || true
    fail "timed out waiting for $what"
}
health() { [[ "$($DOCKER inspect -f '{{.State.Health.Status}}' "$server")" == healthy ]]; }
wait_for 60 "the server to turn healthy" health
log "kv-server is healthy"

user=$($DOCKER top "$server" -eo pid,uid,comm | awk '$3 == "kv-server" { print $2 }')
[[ "$user" == 65532 ]] || fail "kv-server runs as uid '$user', not 65532"
sweeper=$(compose ps -q kv-sweeper)
user=$($DOCKER top "$sweeper" -eo pid,uid,comm | awk '$3 == "kv-sweeper" { print $2 }')
[[ "$user" == 65532 ]] || fail "kv-sweeper runs as uid '$user', not 65532"

expect() { # what expected actual
    [[ "$2" == "$3" ]] || fail "$1: expected $2, got $3"
}
status() { curl -s -o /dev/null -w '%{http_code}' "$@"; }
expect "set user:1" 201 "$(status -X POST "$BASE/user:1" -d '{"value": {"name": "Emeka"}}')"
expect "set page:views" 200 "$(status -X POST "$BASE/page:views/incr" -d '{"by": 5}')"
expect "set otp:1 (expires)" 201 "$(status -X POST "$BASE/otp:1" -d '{"value": 849201, "ttl_ms": 1500}')"
expect "read user:1" '{"name":"Emeka"}' "$(curl -s "$BASE/user:1" | python3 -c 'import json,sys; print(json.dumps(json.load(sys.stdin)["value"], separators=(",", ":")))')"

# The sweeper (every second here) deletes otp:1 once it has expired; the server counts the
# sweeps' deletions in /_metrics (read from the database), and nobody reads otp:1 meanwhile,
# so no lazy expiry can have removed it instead.
swept() { curl -s "$BASE/_metrics" | grep -q '^kv_keys_expired_swept_total 1$'; }
wait_for 30 "the sweeper container to delete the expired key" swept
expect "otp:1 after the sweep" 404 "$(status "$BASE/otp:1")"
curl -s "$BASE/otp:1" | grep -q '"code":"not_found"' || fail "otp:1 was not swept (the read found it expired)"
log "the sweeper deleted the expired key"

compose down >/dev/null 2>&1 || fail "compose down"
compose up -d --no-build >/dev/null 2>&1 || fail "compose up again"
server=$(compose ps -q kv-server)
wait_for 60 "the server to turn healthy again" health
expect "user:1 after down and up" 200 "$(status "$BASE/user:1")"
expect "page:views after down and up" 5 "$(curl -s "$BASE/page:views" | python3 -c 'import json,sys; print(json.load(sys.stdin)["value"])')"
log "live keys survived docker-compose down and up (named volume)"

$DOCKER stop -t 20 "$server" >/dev/null
expect "kv-server's exit code after docker stop" 0 "$($DOCKER inspect -f '{{.State.ExitCode}}' "$server")"
log "docker stop: kv-server drained and exited 0"
compose down -v >/dev/null 2>&1 || fail "compose down -v"

# --- 4. PostgreSQL ---------------------------------------------------------------------------
KV_IMAGE=$IMAGE docker-compose -f compose.postgres.yaml config -q ||
    fail "compose.postgres.yaml does not validate"
# shellcheck source=lib/postgres.sh
source scripts/lib/postgres.sh
pg_setup
PG_URL=$(pg_start_cluster docker fsync=off)
PG_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
RUN_ID=$($DOCKER run -d --network host -e "DATABASE_URL=$PG_URL" -e "KV_BIND=127.0.0.1:$PG_PORT" "$IMAGE")
PG_BASE="http://127.0.0.1:$PG_PORT"
pg_ready() { [[ "$(status "$PG_BASE/_health")" == 200 ]]; }
wait_for 60 "the image on PostgreSQL" pg_ready
expect "set on PostgreSQL" 201 "$(status -X POST "$PG_BASE/k" -d '{"value": "on postgres"}')"
curl -s "$PG_BASE/_stats" | grep -q '"database":"postgres"' || fail "/_stats does not say postgres"
expect "read on PostgreSQL" '"on postgres"' "$(curl -s "$PG_BASE/k" | python3 -c 'import json,sys; print(json.dumps(json.load(sys.stdin)["value"]))')"
$DOCKER stop -t 20 "$RUN_ID" >/dev/null
expect "exit code on PostgreSQL after docker stop" 0 "$($DOCKER inspect -f '{{.State.ExitCode}}' "$RUN_ID")"
log "the image works with postgres://"

log "passed (image $((size / 1000000)) MB)"
