#!/usr/bin/env bash
# The two PostgreSQL servers of the mirror integration suites, without Docker: what
# `docker-compose -f integration/mirror/docker-compose.yml up -d` gives, as throwaway clusters
# (scripts/pg-cluster.sh) on the same ports, with the same databases, user and password.
#
#   integration/mirror/clusters.sh up             # fresh primary (5432, database primary) and mirror
#                                                 # (5433, database mirror) + secondary, db_0..db_9 on both
#   integration/mirror/clusters.sh down           # stop both and delete their data (docker-compose down)
#   integration/mirror/clusters.sh stop-mirror    # docker stop mirror-postgres
#   integration/mirror/clusters.sh start-mirror   # docker start mirror-postgres
#   integration/mirror/clusters.sh check-free PORT...   # fail, saying who holds it, if a port is in use
#
# User pgdog, password pgdog (SCRAM). Data lives in $MIRROR_CLUSTERS_DIR (default
# /dev/shm/pgdog-mirror-clusters). `up` starts from scratch: leftovers of an interrupted run are
# destroyed first; the ports must be free (nothing else may be listening there).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PG_CLUSTER="$HERE/../../scripts/pg-cluster.sh"
DIR="${MIRROR_CLUSTERS_DIR:-/dev/shm/pgdog-mirror-clusters}"
PRIMARY_PORT=5432
MIRROR_PORT=5433

die() { echo "clusters.sh: $*" >&2; exit 1; }
log() { echo "clusters.sh: $*" >&2; }

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

check_free() {
    local port holder
    for port in "$@"; do
        if port_busy "$port"; then
            holder=""
            if command -v ss >/dev/null 2>&1; then
                holder=$(ss -Hltnp "sport = :$port" 2>/dev/null | sed -n 's/.*users:(("\([^"]*\)",pid=\([0-9]*\).*/\1 (pid \2)/p' | head -1)
            fi
            die "port $port is in use${holder:+ by $holder}; the mirror suites need it (stop that first)"
        fi
    done
}

create_databases() { # create_databases CLUSTER_DIR OWN_DATABASE
    {
        printf 'CREATE DATABASE "%s" OWNER pgdog;\n' "$2"
        cat "$HERE/init-databases.sql"
    } | bash "$PG_CLUSTER" psql "$1" -d postgres -q -v ON_ERROR_STOP=1 >/dev/null
}

cmd_up() {
    # A clean state, as docker-compose gives: nothing left from an earlier run.
    bash "$PG_CLUSTER" destroy "$DIR/primary"
    bash "$PG_CLUSTER" destroy "$DIR/mirror"
    check_free "$PRIMARY_PORT" "$MIRROR_PORT"
    mkdir -p "$DIR"
    bash "$PG_CLUSTER" start "$DIR/primary" -p "$PRIMARY_PORT" >/dev/null
    bash "$PG_CLUSTER" start "$DIR/mirror" -p "$MIRROR_PORT" >/dev/null
    create_databases "$DIR/primary" primary
    create_databases "$DIR/mirror" mirror
    log "primary on 127.0.0.1:$PRIMARY_PORT, mirror on 127.0.0.1:$MIRROR_PORT (data in $DIR)"
}

cmd_down() {
    bash "$PG_CLUSTER" destroy "$DIR/primary"
    bash "$PG_CLUSTER" destroy "$DIR/mirror"
    rmdir "$DIR" 2>/dev/null || true
}

cmd_stop_mirror() {
    [[ -f $DIR/mirror/data/PG_VERSION ]] || die "no mirror cluster in $DIR (run: $0 up)"
    # Fast shutdown: disconnects its clients (pgdog's mirror connections) and stops, as
    # `docker stop` ends with.
    bash "$PG_CLUSTER" stop "$DIR/mirror"
}

cmd_start_mirror() {
    [[ -f $DIR/mirror/data/PG_VERSION ]] || die "no mirror cluster in $DIR (run: $0 up)"
    if [[ -f $DIR/mirror/data/postmaster.pid ]]; then return 0; fi
    check_free "$MIRROR_PORT"
    bash "$PG_CLUSTER" start "$DIR/mirror" >/dev/null # waits until it accepts connections
}

case "${1:-}" in
up) cmd_up ;;
down) cmd_down ;;
stop-mirror) cmd_stop_mirror ;;
start-mirror) cmd_start_mirror ;;
check-free) shift; check_free "$@" ;;
*) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
