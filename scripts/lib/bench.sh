# Shared by the benchmark scripts. Source it, then:
#
#   port=$(free_port)                    # a free local TCP port
#   wait_up BASE LOG                     # waits until kv-server at BASE answers (else prints LOG, exits)
#   version=$(load_keys BASE PREFIX N [EXTRA])
#                                        # sets PREFIX0 … PREFIX(N-1) to the seed's value through
#                                        # /_tx, 1,000 a transaction (EXTRA: JSON merged into each
#                                        # op, e.g. '{"ttl_ms": 1}'); prints the last Kv-Version
#   pgbench_upsert_sql N > FILE          # pgbench's anchor for SET: a one-row upsert of a random
#                                        # bench:0 … bench:(N-1) into kv_bench (shaped like
#                                        # kv_store), the seed's value and a new expiry each time

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

wait_up() {
  for _ in $(seq 100); do curl -sf "$1/_health/live" >/dev/null && return; sleep 0.1; done
  echo "kv-server did not start:" >&2; cat "$2" >&2; exit 1
}

load_keys() {
  python3 - "$1" "$2" "$3" "${4:-{\}}" <<'PY'
import json, sys, urllib.request
base, prefix, count, extra = sys.argv[1], sys.argv[2], int(sys.argv[3]), json.loads(sys.argv[4])
value = {"name": "Emeka", "role": "Engineer", "skills": ["Python", "Django"]}
version = 0
for start in range(0, count, 1000):
    ops = [dict({"op": "set", "key": f"{prefix}{i}", "value": value}, **extra)
           for i in range(start, min(start + 1000, count))]
    req = urllib.request.Request(base + "/_tx", data=json.dumps({"ops": ops}).encode(), method="POST")
    with urllib.request.urlopen(req) as resp:
        version = resp.headers["Kv-Version"]
print(version)
PY
}

pgbench_upsert_sql() {
  # As kv-server's SET with the seed's body, which has "ttl": 3600: a new expiry every time,
  # and sweep_at kept as kv-server keeps it (lowered to an earlier expiry, else left alone).
  cat <<SQL
\\set k random(0, $1 - 1)
INSERT INTO kv_bench (key, value, version, created_at, updated_at, expires_at, sweep_at)
  VALUES ('bench' || chr(58) || :k, '{"name":"Emeka","role":"Engineer","skills":["Python","Django"]}', 1, 0, 0,
          (extract(epoch FROM clock_timestamp()) * 1000)::bigint + 3600000,
          (extract(epoch FROM clock_timestamp()) * 1000)::bigint + 3600000)
  ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, version = kv_bench.version + 1,
    updated_at = EXCLUDED.updated_at, expires_at = EXCLUDED.expires_at,
    sweep_at = LEAST(kv_bench.sweep_at, EXCLUDED.expires_at);
SQL
}
