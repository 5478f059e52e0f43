# Throwaway local PostgreSQL clusters, for scripts/test-postgres.sh and scripts/bench.sh.
# Source it, then:
#
#   pg_setup                       # finds (or installs from Debian packages) the server binaries
#   url=$(pg_start_cluster NAME [postgres -c options...])
#   url=$(pg_start_database NAME)  # the same, with an empty database `kv`: prints its URL
#   pg_ctl_of NAME                 # the cluster's stop/start wrapper (for cleanup and outages)
#   pg_bindir                      # where initdb, pgbench, postgres are
#   settings=$(pg_make_tls DIR)    # a test CA and server certificate (openssl); prints the
#                                  # ssl settings for pg_start_cluster; the CA is DIR/ca.pem
#
# Clusters live in $PG_WORKDIR (a temp dir made by pg_setup), listen on 127.0.0.1 on a free
# port with trust authentication, and are no system service. pg_cleanup stops every cluster
# started here (by its recorded data directory) and removes the temp dir. PostgreSQL refuses
# to run as root: as root, clusters run as the `postgres` user (created by the Debian package)
# or else as `nobody`.

pg_log() { echo "postgres: $*" >&2; }

pg_find_bindir() {
    if command -v initdb >/dev/null 2>&1; then
        dirname "$(readlink -f "$(command -v initdb)")"
        return
    fi
    # Debian keeps the server binaries off PATH, one directory per major version.
    local dir
    dir=$(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
    if [[ -n "$dir" && -x "$dir/initdb" ]]; then
        echo "$dir"
    fi
}

# pg_setup [EXTRA_DEBIAN_PACKAGE...]: installs postgresql (and the extra packages, each given
# as NAME:TEST-COMMAND, installed when the command fails) when missing.
pg_setup() {
    PG_BINDIR=$(pg_find_bindir)
    local missing=()
    [[ -n "$PG_BINDIR" ]] || missing+=(postgresql)
    local extra
    for extra in "$@"; do
        eval "${extra#*:}" >/dev/null 2>&1 || missing+=("${extra%%:*}")
    done
    if [[ ${#missing[@]} -gt 0 ]]; then
        pg_log "installing ${missing[*]} from Debian packages"
        local sudo=()
        [[ $(id -u) -eq 0 ]] || sudo=(sudo)
        export DEBIAN_FRONTEND=noninteractive
        "${sudo[@]}" apt-get update -q
        "${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
        PG_BINDIR=$(pg_find_bindir)
        if [[ -z "$PG_BINDIR" ]]; then
            pg_log "PostgreSQL was installed but initdb is still not found"
            return 1
        fi
    fi
    PG_RUN_AS=()
    if [[ $(id -u) -eq 0 ]]; then
        if id postgres >/dev/null 2>&1; then
            PG_RUN_AS=(runuser -u postgres --)
        else
            PG_RUN_AS=(runuser -u nobody --)
        fi
    fi
    PG_WORKDIR=$(mktemp -d "${TMPDIR:-/tmp}/kv-postgres.XXXXXX")
    chmod 755 "$PG_WORKDIR"
}

pg_bindir() { echo "$PG_BINDIR"; }

pg_ctl_of() { echo "$PG_WORKDIR/$1/ctl"; }

pg_cleanup() {
    local ctl
    for ctl in "$PG_WORKDIR"/*/ctl; do
        [[ -x "$ctl" ]] && "$ctl" stop -m immediate >/dev/null 2>&1
    done
    rm -rf "$PG_WORKDIR"
}

pg_port_is_free() {
    ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# pg_make_tls DIR: a throwaway certificate authority (DIR/ca.pem) and a server certificate it
# signed for localhost and 127.0.0.1, with its key readable by the cluster's user only, and a
# pg_hba.conf that lets TCP clients in over TLS only (`hostssl`; the Unix socket stays open);
# prints the settings that use them, for pg_start_cluster.
pg_make_tls() {
    local dir=$1
    mkdir -p "$dir"
    (
        cd "$dir" &&
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
            -subj "/CN=kvstore test CA" -keyout ca.key -out ca.pem &&
        openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
            -subj "/CN=localhost" -keyout server.key -out server.csr &&
        printf '%s\n' 'subjectAltName=DNS:localhost,IP:127.0.0.1' 'basicConstraints=CA:FALSE' \
            'extendedKeyUsage=serverAuth' >server.ext &&
        openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
            -extfile server.ext -out server.pem
    ) >"$dir/openssl.log" 2>&1 || {
        cat "$dir/openssl.log" >&2
        return 1
    }
    printf '%s\n' 'local all all trust' 'hostssl all all 127.0.0.1/32 trust' >"$dir/pg_hba.conf"
    chmod 600 "$dir/server.key"
    chmod 755 "$dir"
    chmod 644 "$dir/server.pem" "$dir/ca.pem" "$dir/pg_hba.conf"
    if [[ ${#PG_RUN_AS[@]} -gt 0 ]]; then
        chown "${PG_RUN_AS[2]}" "$dir/server.key"
    fi
    echo "ssl=on ssl_cert_file=$dir/server.pem ssl_key_file=$dir/server.key hba_file=$dir/pg_hba.conf"
}

# pg_start_cluster NAME [SETTING=VALUE...]: initdb + start on a free port; prints the
# cluster's admin URL. Settings are passed to the server as -c options.
pg_start_cluster() {
    local name=$1 dir="$PG_WORKDIR/$1"
    shift
    pg_make_dir "$dir"
    (cd "$dir" && "${PG_RUN_AS[@]}" "$PG_BINDIR/initdb" -D "$dir/data" -U postgres -A trust \
        -E UTF8 --locale=C --no-sync >"$dir/initdb.log" 2>&1) || {
        cat "$dir/initdb.log" >&2
        return 1
    }
    pg_serve "$name" "$@"
}

# pg_start_standby NAME PRIMARY [SETTING=VALUE...]: a hot standby of the cluster PRIMARY
# (started here), made with pg_basebackup -R (streaming replication), started on a free port;
# prints its admin URL. initdb's pg_hba.conf already lets local replication connections in.
pg_start_standby() {
    local name=$1 primary=$2 dir="$PG_WORKDIR/$1"
    shift 2
    pg_make_dir "$dir"
    (cd "$dir" && "${PG_RUN_AS[@]}" "$PG_BINDIR/pg_basebackup" -h 127.0.0.1 \
        -p "$(cat "$PG_WORKDIR/$primary/port")" -U postgres -D "$dir/data" -R -X stream \
        -c fast >"$dir/basebackup.log" 2>&1) || {
        cat "$dir/basebackup.log" >&2
        return 1
    }
    pg_serve "$name" "$@"
}

pg_make_dir() {
    mkdir -p "$1"
    if [[ ${#PG_RUN_AS[@]} -gt 0 ]]; then
        chown "${PG_RUN_AS[2]}" "$1"
    fi
}

# pg_serve NAME [SETTING=VALUE...]: starts the cluster in $PG_WORKDIR/NAME/data on a free port
# (recorded in NAME/port) with a stop/start wrapper (NAME/ctl); prints its admin URL.
pg_serve() {
    local name=$1 dir="$PG_WORKDIR/$1"
    shift
    local settings="" setting
    for setting in "$@"; do
        settings+=" -c $setting"
    done
    local port
    for _ in 1 2 3 4 5 6 7 8 9 10; do
        port=$((20000 + RANDOM % 40000))
        pg_port_is_free "$port" || continue
        # A pg_ctl wrapper that tests can call (as any user) to stop and start this cluster.
        cat >"$dir/ctl" <<CTL
#!/bin/sh
# Usage: ctl start | stop [pg_ctl options]
cd "$dir" || exit 1
action=\$1; shift
exec ${PG_RUN_AS[*]} "$PG_BINDIR/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \\
    -o "-c listen_addresses=127.0.0.1 -c port=$port -c unix_socket_directories='$dir' \\
        -c max_connections=400 $settings" \\
    "\$action" "\$@"
CTL
        chmod 755 "$dir/ctl"
        if "$dir/ctl" start >/dev/null; then
            echo "$port" >"$dir/port"
            echo "postgres://postgres@127.0.0.1:$port/postgres"
            return 0
        fi
        pg_log "cluster $name did not start on port $port; trying another port"
        tail -n 5 "$dir/server.log" >&2 || true
    done
    pg_log "cluster $name did not start"
    return 1
}

# pg_start_database NAME [SETTING=VALUE...]: a cluster as pg_start_cluster starts it, with an
# empty database `kv` in it; prints that database's URL.
pg_start_database() {
    local admin
    admin=$(pg_start_cluster "$@") || return 1
    "$PG_BINDIR/psql" -q "$admin" -c "CREATE DATABASE kv" >&2 || return 1
    echo "${admin%/postgres}/kv"
}
