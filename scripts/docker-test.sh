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
# 5. Runs compose.replica.yaml (a PostgreSQL primary, a hot standby made from it by
#    pg_basebackup, two servers reading from the standby) on a third stand-in, `postgres:17`:
#    Debian 13's PostgreSQL 17 laid out as the official image has it, with a stand-in for the
#    part of its entrypoint the compose files use (kept for the next run, like the others).
#    Checks the standby streams from the primary, both servers list it in rotation in
#    /_health, a key written through one server is read through the other with
#    Kv-Min-Version set to the write's Kv-Version, and reads without it are served by the
#    standby (kv_replica_reads_total).
#
# KV_DOCKER_TESTS picks which of 3 (sqlite), 4 (postgres) and 5 (replica) run once the image is
# built (default: all three); the postgres:17 stand-in is built only for replica:
#
#   KV_DOCKER_TESTS=replica scripts/docker-test.sh
#
# Cleans up what it started (the compose projects, the container it ran, the dockerd it
# started, the PostgreSQL cluster), by the names and ids it recorded. Traffic goes to
# 127.0.0.1 only.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { echo "docker-test: $*" >&2; }
fail() { log "FAILED: $*"; exit 1; }

TESTS=${KV_DOCKER_TESTS:-sqlite postgres replica}
TESTS=${TESTS//,/ }
for test in $TESTS; do
    case $test in
        sqlite | postgres | replica) ;;
        *) fail "KV_DOCKER_TESTS: no test '$test' (sqlite, postgres, replica)" ;;
    esac
done
wanted() { [[ " $TESTS " == *" $1 "* ]]; }

RUST_IMAGE=rust:1.95-slim-bookworm
RUN_IMAGE=gcr.io/distroless/cc-debian12:nonroot
# The PostgreSQL image compose.postgres.yaml and compose.replica.yaml name.
PG_IMAGE=postgres:17
IMAGE=kvstore:docker-test
PROJECT=kvdockertest$$
REPLICA_PROJECT=${PROJECT}replica
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
replica_compose() {
    KV_IMAGE=$IMAGE KV_PORT=$REPLICA_PORT KV_PORT_2=$REPLICA_PORT_2 KV_SWEEP_INTERVAL=1 \
        docker-compose -p "$REPLICA_PROJECT" -f compose.replica.yaml "$@"
}

cleanup() {
    local status=$?
    set +e
    if [[ -n "${PORT:-}" ]]; then
        compose down -v --remove-orphans >/dev/null 2>&1
    fi
    if [[ -n "${REPLICA_PORT:-}" ]]; then
        replica_compose down -v --remove-orphans >/dev/null 2>&1
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
is_current() { # image [recipe]: a stand-in of this script's current recipe (STAND_IN's unless given) is there
    [[ "$($DOCKER image inspect -f '{{index .Config.Labels "kvstore.stand-in"}}' "$1" 2>/dev/null)" == "${2:-$STAND_IN}" ]]
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

# postgres:17, for compose.replica.yaml only: Debian 13's PostgreSQL 17 (the official image's
# major version; the official image is Debian with the PostgreSQL project's packages), laid out
# as the official image has it: PGDATA=/var/lib/postgresql/data (a volume), the binaries on
# PATH, listen_addresses='*' in the sample configuration, gosu, and docker-entrypoint.sh.
# Its own recipe number, so that changing it rebuilds neither of the other two.
PG_STAND_IN=1
if wanted replica && ! is_current "$PG_IMAGE" "$PG_STAND_IN"; then
    old_stand_ins+=("$($DOCKER image inspect -f '{{.Id}}' "$PG_IMAGE" 2>/dev/null || true)")
    log "building $PG_IMAGE: debootstrap (Debian 13 minbase, postgresql-17, gosu) and a stand-in entrypoint"
    root="$WORK/postgres-root"
    # debootstrap configures the packages with services kept from starting (its policy-rc.d);
    # the cluster Debian's package makes is removed: the entrypoint makes one in $PGDATA.
    LC_ALL=C debootstrap --variant=minbase --include=postgresql-17,gosu \
        trixie "$root" "$MIRROR" >"$WORK/debootstrap-postgres.log" 2>&1 ||
        { tail -20 "$WORK/debootstrap-postgres.log" >&2; fail "debootstrap (postgres)"; }
    rm -rf "$root/var/lib/postgresql/17" "$root/etc/postgresql/17"
    sample="$root/usr/share/postgresql/17/postgresql.conf.sample"
    sed -ri "s!^#?(listen_addresses)\s*=\s*\S+.*!\1 = '*'!" "$sample"
    grep -q "^listen_addresses = '\*'" "$sample" || fail "no listen_addresses line in $sample"
    chroot "$root" install -d -o postgres -g postgres -m 1777 /var/lib/postgresql/data
    chroot "$root" install -d -o postgres -g postgres -m 3777 /var/run/postgresql
    mkdir -p "$root/docker-entrypoint-initdb.d" "$root/usr/local/bin"
    cat >"$root/usr/local/bin/docker-entrypoint.sh" <<'ENTRYPOINT'
#!/bin/bash
# kvstore's stand-in for the official postgres image's entrypoint (scripts/docker-test.sh), for
# what kvstore's compose files use of it. For `postgres …`: as root, makes $PGDATA postgres's
# and runs itself again as postgres (gosu); on an empty $PGDATA, runs initdb (superuser
# $POSTGRES_USER, password $POSTGRES_PASSWORD), lets every host in with scram-sha-256, starts
# a temporary server on its Unix socket only, creates $POSTGRES_DB, runs
# /docker-entrypoint-initdb.d/*.sh (sourced unless executable) and *.sql, and stops it. Then
# runs the command.
set -Eeo pipefail
if [ "${1:0:1}" = - ]; then
    set -- postgres "$@"
fi
if [ "$1" = postgres ]; then
    if [ "$(id -u)" = 0 ]; then
        mkdir -p "$PGDATA"
        chown postgres:postgres "$PGDATA"
        chmod 700 "$PGDATA"
        exec gosu postgres "${BASH_SOURCE[0]}" "$@"
    fi
    if [ ! -s "$PGDATA/PG_VERSION" ]; then
        : "${POSTGRES_USER:=postgres}"
        : "${POSTGRES_DB:=$POSTGRES_USER}"
        if [ -z "${POSTGRES_PASSWORD:-}" ]; then
            echo "docker-entrypoint.sh: POSTGRES_PASSWORD is not set" >&2
            exit 1
        fi
        initdb --username="$POSTGRES_USER" --pwfile=<(printf '%s\n' "$POSTGRES_PASSWORD")
        printf 'host all all all scram-sha-256\n' >>"$PGDATA/pg_hba.conf"
        pg_ctl -o "-c listen_addresses='' -p 5432" -w start
        if [ "$POSTGRES_DB" != postgres ]; then
            echo 'CREATE DATABASE :"db"' |
                psql -v ON_ERROR_STOP=1 -v db="$POSTGRES_DB" --username "$POSTGRES_USER" --no-password \
                    --no-psqlrc --dbname postgres
        fi
        for f in /docker-entrypoint-initdb.d/*; do
            # shellcheck disable=SC1090
            case "$f" in
                *.sh) if [ -x "$f" ]; then "$f"; else . "$f"; fi ;;
                *.sql) psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --no-password --no-psqlrc \
                    --dbname "$POSTGRES_DB" -f "$f" ;;
            esac
        done
        pg_ctl -m fast -w stop
    fi
fi
exec "$@"
ENTRYPOINT
    chmod 755 "$root/usr/local/bin/docker-entrypoint.sh"
    rm -rf "$root/var/cache/apt/archives"/*.deb "$root/var/lib/apt/lists"/* \
        "$root/usr/share/doc" "$root/usr/share/man"
    # (docker import takes no STOPSIGNAL: the official image's SIGINT, a fast shutdown, is not
    # set here, and `docker stop` sends SIGTERM, a smart one.)
    tar -C "$root" -c . | $DOCKER import \
        --change 'ENV PATH=/usr/lib/postgresql/17/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'ENV PG_MAJOR=17' --change 'ENV PGDATA=/var/lib/postgresql/data' \
        --change 'ENV LANG=C.UTF-8' --change 'VOLUME /var/lib/postgresql/data' \
        --change 'EXPOSE 5432' --change 'ENTRYPOINT ["docker-entrypoint.sh"]' \
        --change 'CMD ["postgres"]' --change "LABEL kvstore.stand-in=$PG_STAND_IN" - "$PG_IMAGE" >/dev/null
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

expect() { # what expected actual
    [[ "$2" == "$3" ]] || fail "$1: expected $2, got $3"
}
status() { curl -s -o /dev/null -w '%{http_code}' "$@"; }
# What wait_for shows when it times out: the logs of what is under test (each test sets it).
LOGS=(true)
wait_for() { # seconds what command...: retries the command every 0.5 s
    local limit=$1 what=$2
    shift 2
    for _ in $(seq $((limit * 2))); do "$@" >/dev/null 2>&1 && return 0; sleep 0.5; done
    "${LOGS[@]}" >&2 || true
    fail "timed out waiting for $what"
}

if wanted sqlite; then
    PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    BASE="http://127.0.0.1:$PORT"
    LOGS=(compose logs)
    compose config -q || fail "compose.yaml does not validate"
    compose up -d --no-build >"$WORK/compose.log" 2>&1 || { cat "$WORK/compose.log" >&2; fail "compose up"; }

    server=$(compose ps -q kv-server)
    [[ -n "$server" ]] || fail "no kv-server container"
    health() { [[ "$($DOCKER inspect -f '{{.State.Health.Status}}' "$server")" == healthy ]]; }
    wait_for 60 "the server to turn healthy" health
    log "kv-server is healthy"

    user=$($DOCKER top "$server" -eo pid,uid,comm | awk '$3 == "kv-server" { print $2 }')
    [[ "$user" == 65532 ]] || fail "kv-server runs as uid '$user', not 65532"
    sweeper=$(compose ps -q kv-sweeper)
    user=$($DOCKER top "$sweeper" -eo pid,uid,comm | awk '$3 == "kv-sweeper" { print $2 }')
    [[ "$user" == 65532 ]] || fail "kv-sweeper runs as uid '$user', not 65532"

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
fi

# --- 4. PostgreSQL ---------------------------------------------------------------------------
if wanted postgres; then
    KV_IMAGE=$IMAGE docker-compose -f compose.postgres.yaml config -q ||
        fail "compose.postgres.yaml does not validate"
    # shellcheck source=lib/postgres.sh
    source scripts/lib/postgres.sh
    pg_setup
    PG_URL=$(pg_start_cluster docker fsync=off)
    PG_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    RUN_ID=$($DOCKER run -d --network host -e "DATABASE_URL=$PG_URL" -e "KV_BIND=127.0.0.1:$PG_PORT" "$IMAGE")
    PG_BASE="http://127.0.0.1:$PG_PORT"
    LOGS=("$DOCKER" logs "$RUN_ID")
    pg_ready() { [[ "$(status "$PG_BASE/_health")" == 200 ]]; }
    wait_for 60 "the image on PostgreSQL" pg_ready
    expect "set on PostgreSQL" 201 "$(status -X POST "$PG_BASE/k" -d '{"value": "on postgres"}')"
    curl -s "$PG_BASE/_stats" | grep -q '"database":"postgres"' || fail "/_stats does not say postgres"
    expect "read on PostgreSQL" '"on postgres"' "$(curl -s "$PG_BASE/k" | python3 -c 'import json,sys; print(json.dumps(json.load(sys.stdin)["value"]))')"
    $DOCKER stop -t 20 "$RUN_ID" >/dev/null
    expect "exit code on PostgreSQL after docker stop" 0 "$($DOCKER inspect -f '{{.State.ExitCode}}' "$RUN_ID")"
    log "the image works with postgres://"
fi

# --- 5. PostgreSQL with a read replica: compose.replica.yaml ----------------------------------
# The primary, the standby pg_basebackup made from it, and two servers that write to the
# primary and read from the standby, on the postgres:17 stand-in (step 2) and the image.
if wanted replica; then
    read -r REPLICA_PORT REPLICA_PORT_2 < <(python3 -c 'import socket
s = [socket.socket() for _ in range(2)]
for x in s: x.bind(("127.0.0.1", 0))
print(*(x.getsockname()[1] for x in s))')
    R1="http://127.0.0.1:$REPLICA_PORT"
    R2="http://127.0.0.1:$REPLICA_PORT_2"
    LOGS=(replica_compose logs)
    replica_compose config -q || fail "compose.replica.yaml does not validate"
    log "compose.replica.yaml: up (the standby is made from the primary by pg_basebackup)"
    replica_compose up -d --no-build >"$WORK/compose-replica.log" 2>&1 ||
        { cat "$WORK/compose-replica.log" >&2; replica_compose logs --tail=40 >&2; fail "compose.replica.yaml up"; }

    # PostgreSQL's side first, whatever the servers make of it.
    standby_in_recovery() {
        [[ "$(replica_compose exec -T postgres-standby psql -U kv -d kv -Atc 'SELECT pg_is_in_recovery()')" == t ]]
    }
    wait_for 30 "postgres-standby to be a hot standby" standby_in_recovery
    streaming() {
        [[ "$(replica_compose exec -T postgres-primary psql -U kv -d kv -Atc 'SELECT state FROM pg_stat_replication')" == streaming ]]
    }
    wait_for 30 "postgres-primary to stream to the standby" streaming
    log "postgres-standby is a hot standby, streaming from postgres-primary"

    # /_health: 200, and one replica, the standby, in rotation (its URL without the password).
    replica_in_rotation() { # base
        local out
        out=$(curl -s -w '\n%{http_code}' "$1/_health") || return 1
        [[ "${out##*$'\n'}" == 200 ]] || return 1
        printf '%s' "${out%$'\n'*}" | python3 -c '
import json, sys
replicas = json.load(sys.stdin).get("replicas") or []
ok = len(replicas) == 1 and replicas[0].get("state") == "ok" and "postgres-standby" in replicas[0].get("url", "")
sys.exit(0 if ok else 1)'
    }
    for base in "$R1" "$R2"; do
        wait_for 120 "$base/_health to list the standby, state ok" replica_in_rotation "$base"
        if curl -s "$base/_health" | grep -q 'change-me'; then
            fail "$base/_health shows the replica's password"
        fi
    done
    log "both servers answer /_health with the standby in rotation"

    header() { # name file: the value of a response header that curl -D wrote to the file
        tr -d '\r' <"$2" | awk -v name="$(tr '[:upper:]' '[:lower:]' <<<"$1")" '
            { n = index($0, ":") }
            n > 0 && tolower(substr($0, 1, n - 1)) == name { v = substr($0, n + 1); sub(/^[ \t]+/, "", v) }
            END { print v }'
    }
    value() { python3 -c 'import json,sys; print(json.load(sys.stdin)["value"])'; }

    # A write through server 1, then a read through server 2 that asks for the write's version.
    key=replica:check
    code=$(curl -s -o /dev/null -D "$WORK/put.headers" -w '%{http_code}' -X PUT \
        -H 'content-type: application/json' -d '{"value":"v1"}' "$R1/$key")
    [[ "$code" == 200 || "$code" == 201 ]] || fail "PUT $key through server 1: expected 200 or 201, got $code"
    version=$(header Kv-Version "$WORK/put.headers")
    [[ "$version" =~ ^[0-9]+$ ]] || fail "PUT $key through server 1: Kv-Version '$version', not a version"
    code=$(curl -s -o "$WORK/get.json" -D "$WORK/get.headers" -w '%{http_code}' \
        -H "Kv-Min-Version: $version" "$R2/$key")
    expect "GET $key through server 2 with Kv-Min-Version: $version" 200 "$code"
    expect "$key through server 2 with Kv-Min-Version: $version" v1 "$(value <"$WORK/get.json")"
    seen=$(header Kv-Version "$WORK/get.headers")
    if ! [[ "$seen" =~ ^[0-9]+$ ]] || ((seen < version)); then
        fail "GET $key through server 2 with Kv-Min-Version: $version answered with Kv-Version '$seen'"
    fi
    log "written through server 1 at Kv-Version $version, read through server 2 with Kv-Min-Version (Kv-Version $seen)"

    # Reads that ask for no version: the standby serves them (it is in rotation, a few
    # milliseconds behind at most), as server 2's kv_replica_reads_total shows.
    reads_v1() { [[ "$(curl -s "$R2/$key" | value)" == v1 ]]; }
    wait_for 10 "server 2 to read $key without Kv-Min-Version" reads_v1
    for _ in 1 2 3 4 5; do
        expect "GET $key through server 2" v1 "$(curl -s "$R2/$key" | value)"
    done
    reads=$(curl -s "$R2/_metrics" | awk '/^kv_replica_reads_total[{ ]/ { sum += $NF } END { print sum + 0 }')
    awk -v n="$reads" 'BEGIN { exit !(n > 0) }' ||
        fail "server 2's kv_replica_reads_total is $reads after at least 6 reads without Kv-Min-Version: the standby served none"
    log "the standby served reads through server 2 (kv_replica_reads_total $reads)"

    replica_compose down -v >/dev/null 2>&1 || fail "compose.replica.yaml down -v"
fi

log "passed: ${TESTS// /, } (image $((size / 1000000)) MB)"
