#!/usr/bin/env bash
# Runs the test suite against PostgreSQL on throwaway local clusters.
#
#   scripts/test-postgres.sh                 # cargo test --workspace -- --include-ignored
#   scripts/test-postgres.sh cargo nextest run --workspace --run-ignored all
#
# Any arguments replace the test command. Installs PostgreSQL (and libfaketime, for the clock
# test) from Debian packages when missing (needs root or sudo), starts two clusters in a temp
# dir on free local ports with trust authentication (no system service, nothing outside the
# temp dir), runs the tests with these variables set, and stops and removes the clusters on
# exit:
#
#   KV_TEST_POSTGRES_URL         admin URL of the shared cluster; every test creates its own
#                                database in it
#   KV_TEST_POSTGRES_OUTAGE_URL  admin URL of a second cluster that the outage test stops and
#   KV_TEST_POSTGRES_OUTAGE_CTL  starts again with `$KV_TEST_POSTGRES_OUTAGE_CTL stop|start`
#                                (so stopping it does not disturb the tests running beside it)
#
# PostgreSQL refuses to run as root: as root, the clusters run as the `postgres` user (created
# by the Debian package) or else as `nobody`.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { echo "test-postgres: $*" >&2; }

find_bindir() {
    if command -v initdb >/dev/null 2>&1; then
        dirname "$(command -v initdb)"
        return
    fi
    # Debian keeps the server binaries off PATH, one directory per major version.
    local dir
    dir=$(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
    if [[ -n "$dir" && -x "$dir/initdb" ]]; then
        echo "$dir"
    fi
}

# The clock-skew test runs a server under libfaketime (Debian package `faketime`).
has_libfaketime() {
    compgen -G "/usr/lib/*/faketime/libfaketime.so.1" >/dev/null
}

bindir=$(find_bindir)
missing=()
[[ -n "$bindir" ]] || missing+=(postgresql)
has_libfaketime || missing+=(faketime)
if [[ ${#missing[@]} -gt 0 ]]; then
    log "installing ${missing[*]} from Debian packages"
    sudo=()
    if [[ $(id -u) -ne 0 ]]; then
        sudo=(sudo)
    fi
    export DEBIAN_FRONTEND=noninteractive
    "${sudo[@]}" apt-get update -q
    "${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
    bindir=$(find_bindir)
    if [[ -z "$bindir" ]]; then
        log "PostgreSQL was installed but initdb is still not found"
        exit 1
    fi
fi

run_as=()
if [[ $(id -u) -eq 0 ]]; then
    if id postgres >/dev/null 2>&1; then
        run_as=(runuser -u postgres --)
    else
        run_as=(runuser -u nobody --)
    fi
fi

workdir=$(mktemp -d "${TMPDIR:-/tmp}/kv-postgres.XXXXXX")
chmod 755 "$workdir"
clusters=()

cleanup() {
    local status=$?
    for ctl in "${clusters[@]}"; do
        "$ctl" stop -m immediate >/dev/null 2>&1 || true
    done
    rm -rf "$workdir"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

port_is_free() {
    ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# start_cluster NAME: initdb + start on a free port; prints the cluster's admin URL.
start_cluster() {
    local name=$1 dir="$workdir/$1"
    mkdir -p "$dir"
    if [[ ${#run_as[@]} -gt 0 ]]; then
        chown "${run_as[2]}" "$dir"
    fi
    (cd "$dir" && "${run_as[@]}" "$bindir/initdb" -D "$dir/data" -U postgres -A trust \
        -E UTF8 --locale=C --no-sync >"$dir/initdb.log" 2>&1) || {
        cat "$dir/initdb.log" >&2
        return 1
    }
    local port
    for _ in 1 2 3 4 5 6 7 8 9 10; do
        port=$((20000 + RANDOM % 40000))
        port_is_free "$port" || continue
        # A pg_ctl wrapper that tests can call (as any user) to stop and start this cluster.
        cat >"$dir/ctl" <<EOF
#!/bin/sh
# Usage: ctl start | stop [pg_ctl options]
cd "$dir" || exit 1
action=\$1; shift
exec ${run_as[*]} "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \\
    -o "-c listen_addresses=127.0.0.1 -c port=$port -c unix_socket_directories='$dir' \\
        -c max_connections=400 -c deadlock_timeout=100ms -c fsync=off \\
        -c synchronous_commit=off -c full_page_writes=off -c shared_buffers=64MB" \\
    "\$action" "\$@"
EOF
        chmod 755 "$dir/ctl"
        if "$dir/ctl" start >/dev/null; then
            echo "postgres://postgres@127.0.0.1:$port/postgres"
            return 0
        fi
        log "cluster $name did not start on port $port; trying another port"
        tail -n 5 "$dir/server.log" >&2 || true
    done
    log "cluster $name did not start"
    return 1
}

# (start_cluster runs in a subshell: the cluster list is kept here.)
url=$(start_cluster main)
clusters+=("$workdir/main/ctl")
outage_url=$(start_cluster outage)
clusters+=("$workdir/outage/ctl")

export KV_TEST_POSTGRES_URL="$url"
export KV_TEST_POSTGRES_OUTAGE_URL="$outage_url"
export KV_TEST_POSTGRES_OUTAGE_CTL="$workdir/outage/ctl"
log "PostgreSQL $("$bindir/postgres" --version | awk '{print $3}') at $url (outage tests: $outage_url)"

if [[ $# -eq 0 ]]; then
    set -- cargo test --workspace -- --include-ignored
fi
"$@"
