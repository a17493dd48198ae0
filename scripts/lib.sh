# shellcheck shell=bash
# Shell helpers shared by the demo and the benchmarks (source it; it defines functions only).
# Needs REPO set to the repository root.

# A port below the ephemeral range that nothing listens on.
free_port() {
    local p
    for _ in $(seq 200); do
        p=$((20000 + RANDOM % 12000))
        (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return 0; }
    done
    echo "no free port found" >&2
    return 1
}

# pair_start DIR: a primary and a mirror cluster under DIR; sets PRIMARY and MIRROR (ports).
# shellcheck disable=SC2034 # PRIMARY and MIRROR are for the caller
pair_start() {
    PRIMARY=$("$REPO/scripts/pg-cluster.sh" start "$1/primary")
    MIRROR=$("$REPO/scripts/pg-cluster.sh" start "$1/mirror")
}

# pair_destroy DIR: stops and removes both clusters.
pair_destroy() {
    "$REPO/scripts/pg-cluster.sh" destroy "$1/primary" >/dev/null 2>&1
    "$REPO/scripts/pg-cluster.sh" destroy "$1/mirror" >/dev/null 2>&1
}

# pgbench_init SCALE PORT...: identical pgbench data on every server (user pgdog, db pgdog).
pgbench_init() {
    local scale=$1 p
    shift
    for p in "$@"; do
        PGPASSWORD=pgdog pgbench -h 127.0.0.1 -p "$p" -U pgdog -i -s "$scale" -q pgdog 2>&1 | tail -n 1
    done
}

# wait_port PORT PID: until something accepts on PORT; fails if PID exits first.
wait_port() {
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        kill -0 "$2" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}

# metric PORT SERIES: the value of SERIES on pgdog's /metrics (0 when absent).
metric() {
    local page
    page=$(curl -s "http://127.0.0.1:$1/metrics" || true)
    awk -v k="$2" 'index($0, k) == 1 {v = $2} END {print v + 0}' <<<"$page"
}
