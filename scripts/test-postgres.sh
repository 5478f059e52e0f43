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
#                                database in it. It takes TCP connections over TLS only
#                                (hostssl), with a certificate for localhost and 127.0.0.1
#   KV_TEST_POSTGRES_CA          the certificate authority that signed it (for sslrootcert)
#   KV_TEST_POSTGRES_OUTAGE_URL  admin URL of a second cluster that the outage test stops and
#   KV_TEST_POSTGRES_OUTAGE_CTL  starts again with `$KV_TEST_POSTGRES_OUTAGE_CTL stop|start`
#                                (so stopping it does not disturb the tests running beside it)
#   KV_TEST_POSTGRES_REPLICATED_URL  admin URL of a third cluster, the primary of a hot standby
#   KV_TEST_POSTGRES_STANDBY_URL     admin URL of that standby (streaming replication, made by
#   KV_TEST_POSTGRES_STANDBY_CTL     pg_basebackup -R), and its stop/start wrapper: the read
#                                    replica tests' databases are created on the primary and
#                                    replayed to the standby
#
# PostgreSQL refuses to run as root: as root, the clusters run as the `postgres` user (created
# by the Debian package) or else as `nobody`.
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=lib/postgres.sh
source scripts/lib/postgres.sh

# The clock-skew test runs a server under libfaketime (Debian package `faketime`); the TLS
# tests' certificates are made with openssl.
pg_setup 'faketime:compgen -G "/usr/lib/*/faketime/libfaketime.so.1"' 'openssl:command -v openssl'
trap 'status=$?; pg_cleanup; exit $status' EXIT
trap 'exit 130' INT TERM

# Fast and unsafe for data (fsync off): these clusters live for one test run.
test_settings=(deadlock_timeout=100ms fsync=off synchronous_commit=off full_page_writes=off
    shared_buffers=64MB)
tls_line=$(pg_make_tls "$PG_WORKDIR/tls")
read -ra tls_settings <<<"$tls_line"
url=$(pg_start_cluster main "${test_settings[@]}" "${tls_settings[@]}")
outage_url=$(pg_start_cluster outage "${test_settings[@]}")
# The read replica tests' pair. fsync stays off, but synchronous_commit is on, as in a real
# deployment: with it off, a commit's WAL reaches the standby only at the WAL writer's next
# round (up to 200 ms later). Replication stays asynchronous, which is what the tests are about.
replicated_url=$(pg_start_cluster replicated "${test_settings[@]}" synchronous_commit=on \
    wal_level=replica max_wal_senders=4)
standby_url=$(pg_start_standby standby replicated "${test_settings[@]}" hot_standby=on)

export KV_TEST_POSTGRES_URL="$url"
export KV_TEST_POSTGRES_OUTAGE_URL="$outage_url"
export KV_TEST_POSTGRES_CA="$PG_WORKDIR/tls/ca.pem"
KV_TEST_POSTGRES_OUTAGE_CTL=$(pg_ctl_of outage)
export KV_TEST_POSTGRES_OUTAGE_CTL
export KV_TEST_POSTGRES_REPLICATED_URL="$replicated_url"
export KV_TEST_POSTGRES_STANDBY_URL="$standby_url"
KV_TEST_POSTGRES_STANDBY_CTL=$(pg_ctl_of standby)
export KV_TEST_POSTGRES_STANDBY_CTL
pg_log "PostgreSQL $("$PG_BINDIR/postgres" --version | awk '{print $3}') at $url (outage tests: $outage_url)"

if [[ $# -eq 0 ]]; then
    set -- cargo test --workspace -- --include-ignored
fi
"$@"
