#!/usr/bin/env bash
# The main job, end to end, on a fresh machine: two throwaway PostgreSQL clusters (the "old"
# primary and the "new" mirror), pgdog in front of the primary with mirroring on, pgbench
# traffic through it with a progress display, then the readiness verdict and the metrics.
#
#   scripts/demo.sh [--duration SECONDS] [--clients N] [--rate TPS] [--tls] [--replication] [--keep]
#
# --rate caps pgbench's transactions per second (default 600; 0 = as fast as it can). Both
# clusters share this machine's cores: unthrottled, the primary takes the CPU the mirror needs
# to keep up, the mirror queues fill and requests are dropped (and readiness says so).
# --tls runs it as against a managed service: both clusters take TLS only (PostgreSQL itself
# refuses plaintext), pgdog checks their certificate (verify-full against a CA made for the
# run), and its own clients (pgbench, psql) connect to it over TLS too.
# --replication runs the cut-over with logical replication: the new database subscribes to a
# publication of the old one, pgdog mirrors only reads (mirror_statements = "reads") and holds
# each until the subscription has applied what the primary had (mirror_sync = "logical"); the
# workload is half TPC-B, half reads of the same accounts. The tables end up equal (no write is
# applied twice) and readiness shows the replication lag.
# --keep leaves the clusters and the proxy running and prints how to stop them.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

DURATION=20
CLIENTS=8
RATE=600
KEEP=0
TLS=0
REPL=0
while (($#)); do
    case "$1" in
        --duration) DURATION="$2"; shift 2 ;;
        --clients) CLIENTS="$2"; shift 2 ;;
        --rate) RATE="$2"; shift 2 ;;
        --keep) KEEP=1; shift ;;
        --tls) TLS=1; shift ;;
        --replication) REPL=1; shift ;;
        -h | --help) sed -n '2,21p' "$0"; exit 0 ;;
        *) echo "demo: unknown argument $1" >&2; exit 2 ;;
    esac
done

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "Installing what is missing (PostgreSQL 15, pgbench, psql, curl)"
bash scripts/setup.sh

say "Building pgdog and its bundled stats plugin (release)"
cargo build --release -p pgdog -p pgdog-mirror-stats 2>&1 | tail -n 2

WORK=$(mktemp -d /dev/shm/pgdog-demo.XXXXXX)
chmod 755 "$WORK"
PGDOG_PID=""
cleanup() {
    [[ -n "$PGDOG_PID" ]] && kill "$PGDOG_PID" 2>/dev/null && wait "$PGDOG_PID" 2>/dev/null
    pair_destroy "$WORK"
    rm -rf "$WORK"
}
if ((KEEP == 0)); then trap cleanup EXIT; fi
trap 'exit 130' INT TERM

CERTS=""
TLS_GENERAL=""
if ((TLS)); then
    CERTS="$WORK/certs"
    bash scripts/tls-certs.sh "$CERTS"
    TLS_GENERAL="client_tls_cert_file = \"$CERTS/server.crt\"
client_tls_key_file = \"$CERTS/server.key\"
server_tls_sslmode = \"verify-full\"
server_tls_ca_file = \"$CERTS/ca.crt\""
    # Clients (pgbench, psql) talk TLS to pgdog and to the clusters.
    export PGSSLMODE=require
fi

say "Starting two throwaway PostgreSQL 15 clusters$( ((TLS)) && echo ", TLS only")"
((REPL)) && export PAIR_PRIMARY_OPTS="-c wal_level=logical"
pair_start "$WORK" "$CERTS"
PRIMARY_PORT=$PRIMARY MIRROR_PORT=$MIRROR
echo "primary (old database): 127.0.0.1:$PRIMARY_PORT    mirror (new database): 127.0.0.1:$MIRROR_PORT"

PORT=$(free_port); ADMIN_PORT=$(free_port); METRICS_PORT=$(free_port)

export PGPASSWORD=pgdog
REPL_POOL=""
WORKLOAD=()
if ((REPL)); then
    say "Loading pgbench data on the primary, the empty schema on the new database, and subscribing it"
    pgbench_init 10 "$PRIMARY_PORT"
    pgbench -h 127.0.0.1 -p "$MIRROR_PORT" -U pgdog -i -I dtp -q pgdog 2>&1 | tail -n 1
    logical_subscribe "$PRIMARY_PORT" "$MIRROR_PORT" "$( ((TLS)) && echo " sslmode=require")" ||
        { echo "the subscription's initial copy did not finish" >&2; exit 1; }
    echo "subscription sub: initial copy done"
    REPL_POOL='mirror_statements = "reads"
mirror_sync = "logical"
mirror_sync_slot = "sub"'
    WORKLOAD=(-b tpcb-like@1 -b select-only@1)
else
    say "Loading the pgbench schema on both (the mirror must start from the same data)"
    pgbench_init 10 "$PRIMARY_PORT" "$MIRROR_PORT"
fi

cat >"$WORK/pgdog.toml" <<TOML
[general]
host = "127.0.0.1"
port = $PORT
admin_port = $ADMIN_PORT
metrics_port = $METRICS_PORT
mirror_metrics_enabled = true
mirror_max_error_rate = 0.01
mirror_max_latency_ms = 100
mirror_min_requests = 1000
mirror_min_runtime_hours = 0
$TLS_GENERAL

[[pools]]
name = "pgdog"
port = $PRIMARY_PORT
user = "pgdog"
password = "pgdog"
pool_size = 20
mirror_of = "mirror"
mirror_exposure = 1.0
$REPL_POOL

[[pools]]
name = "mirror"
database = "pgdog"
port = $MIRROR_PORT
user = "pgdog"
password = "pgdog"
pool_size = 20
TOML

say "Starting pgdog on 127.0.0.1:$PORT (admin $ADMIN_PORT, metrics $METRICS_PORT), mirroring pgdog -> mirror"
./target/release/pgdog --config "$WORK/pgdog.toml" >"$WORK/pgdog.log" 2>&1 &
PGDOG_PID=$!
wait_port "$PORT" "$PGDOG_PID" || { cat "$WORK/pgdog.log"; exit 1; }

LIMIT=()
((RATE > 0)) && LIMIT=(-R "$RATE")
say "Driving pgbench (TPC-B-like, $CLIENTS clients, ${DURATION}s, $( ((RATE > 0)) && echo "at most $RATE tps" || echo unthrottled)) through pgdog"
pgbench -h 127.0.0.1 -p "$PORT" -U pgdog -c "$CLIENTS" -j 2 -T "$DURATION" "${LIMIT[@]}" -P 2 "${WORKLOAD[@]}" pgdog 2>&1 |
    grep -E '^progress|tps =|failed|latency average'

if ((REPL)); then
    say "Waiting for the subscription to apply everything (slot sub on the primary)"
    for _ in $(seq 300); do
        behind=$(psql -h 127.0.0.1 -p "$PRIMARY_PORT" -U pgdog -d pgdog -Atc "SELECT \
(pg_current_wal_lsn() - confirmed_flush_lsn)::bigint FROM pg_replication_slots WHERE slot_name = 'sub'")
        ((behind <= 0)) && break
        sleep 0.2
    done
fi
say "Mirror rows vs primary rows (pgbench_history)$( ((REPL)) && echo ": equal, no write applied twice")"
for p in "$PRIMARY_PORT" "$MIRROR_PORT"; do
    printf '%s: %s rows\n' "$([[ $p == "$PRIMARY_PORT" ]] && echo primary || echo mirror)" \
        "$(psql -h 127.0.0.1 -p "$p" -U pgdog -d pgdog -Atc 'SELECT count(*) FROM pgbench_history')"
done

say "SHOW MIRROR READINESS (admin console: psql -h 127.0.0.1 -p $ADMIN_PORT -U admin -d pgdog)"
psql -h 127.0.0.1 -p "$ADMIN_PORT" -U admin -d pgdog -c "SHOW MIRROR READINESS"

say "SHOW MIRROR QUERIES: result comparison per statement (top fingerprints)"
psql -h 127.0.0.1 -p "$ADMIN_PORT" -U admin -d pgdog \
    -c "SHOW MIRROR QUERIES" | cut -c1-220

say "A few metric lines (curl http://127.0.0.1:$METRICS_PORT/metrics)"
curl -s "http://127.0.0.1:$METRICS_PORT/metrics" | grep -E '^mirror\{' | head -n 20
if ((REPL)); then
    curl -s "http://127.0.0.1:$METRICS_PORT/metrics" |
        grep -E '^pgdog_mirror_(skipped_total|replication_lag_ms|sync_reads_total|sync_queries_total)' | head -n 20
fi

say "The readiness page: open http://127.0.0.1:$METRICS_PORT/ in a browser"
curl -s "http://127.0.0.1:$METRICS_PORT/" | grep -o '<p class="status">[^<]*</p>' | head -n 3

say "Point Prometheus at it"
cat <<YAML
scrape_configs:
  - job_name: pgdog
    static_configs:
      - targets: ['127.0.0.1:$METRICS_PORT']
YAML

if ((KEEP)); then
    say "Left running (--keep)"
    echo "proxy:   psql -h 127.0.0.1 -p $PORT -U pgdog pgdog      (password pgdog)"
    echo "stop:    kill $PGDOG_PID; scripts/pg-cluster.sh destroy $WORK/primary; scripts/pg-cluster.sh destroy $WORK/mirror"
fi
