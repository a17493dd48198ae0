#!/usr/bin/env bash
# Keep-up under TPC-B: what share of the mirrored requests one or more pgdog binaries drop,
# interleaved run by run on the same two clusters, with fresh pgbench data before each run,
# under one or more scheduling setups of this machine.
#
#   bench/keepup.sh                          # ./target/release/pgdog, 3 runs, the machine as it is
#   bench/keepup.sh --rounds 5 OLD NEW       # two binaries (e.g. built from two commits), A/B
#   bench/keepup.sh --setups "shell autogroup-off batch services pinned"
#
# Options: --rounds N --duration SECS --scale N --queue N (mirror_queue; default: pgdog's)
#          --setups LIST: interleaved run by run (default "shell"; all but shell need root):
#            shell          everything started from this shell, the machine's settings as they are
#            autogroup-off  kernel.sched_autogroup_enabled = 0 for the run (put back at the end)
#            batch          pgdog's threads under SCHED_BATCH (chrt --batch 0): waking pgdog
#                           never preempts the process that woke it
#            services       each of primary, mirror, pgdog and pgbench in a CPU cgroup of its
#                           own with equal weight, as systemd runs services
#            services-mirror3  the same, with 3 times the CPU weight for the mirror database
#            pinned         the primary's processes on CPU 0, the mirror's on CPU 1
#            twins          "a mirror as fast as the primary": twin_hosts in scripts/lib.sh, each
#                           database capped at --twin-cpu processors (default 0.6) with
#                           --twin-weight times the default weight (default 16); pgdog and
#                           pgbench as in shell
#          --twin-cpu CPUS, --twin-weight N: each database's cap and weight under twins
#          --autogroup keep|off|both: the same as --setups shell, autogroup-off, or both.
# Each binary needs the mirror-stats plugin (libpgdog_mirror_stats.so) in its own directory.
# Per run: pgbench (default TPC-B-like script) -c 8 -j 2 through a pool mirrored with exposure
# 1.0; the share of mirrored requests dropped once the totals settle; pgbench_history rows on
# both servers; WARNING/ERROR lines in the mirror's log; CPU seconds used during the run by
# each cluster and by pgdog; how often the mirror cluster's processes (its backends and its
# background processes) were preempted (involuntary context switches) per primary transaction.
# Why setups: on a 2-core machine shared by both databases, pgbench and pgdog, whether the
# mirror database gets the CPU to catch up after a burst depends on how the kernel shares the
# cores (docs/benchmarks.md). Note that every PostgreSQL backend calls setsid(), so with
# autogroup on each backend is a scheduling group of its own, while pgdog and pgbench, started
# from one shell, share one.
set -euo pipefail

ROUNDS=3 DURATION=15 SCALE=10 QUEUE="" SETUPS=(shell) BINS=() TWIN_CPU=0.6 TWIN_WEIGHT=16
while (($#)); do
    case $1 in
    --rounds) ROUNDS=$2; shift ;;
    --duration) DURATION=$2; shift ;;
    --scale) SCALE=$2; shift ;;
    --queue) QUEUE=$2; shift ;;
    --twin-cpu) TWIN_CPU=$2; shift ;;
    --twin-weight) TWIN_WEIGHT=$2; shift ;;
    --setups) read -ra SETUPS <<<"$2"; shift ;;
    --autogroup)
        case $2 in
        keep) SETUPS=(shell) ;;
        off) SETUPS=(autogroup-off) ;;
        both) SETUPS=(shell autogroup-off) ;;
        *) echo "unknown --autogroup $2 (keep, off or both)" >&2; exit 2 ;;
        esac
        shift
        ;;
    -h | --help) sed -n '2,/^set -e/p' "$0" | sed -n 's/^# \{0,1\}//p'; exit 0 ;;
    -*) echo "unknown option $1" >&2; exit 2 ;;
    *) BINS+=("$(realpath "$1")") ;;
    esac
    shift
done
for setup in "${SETUPS[@]}"; do
    case $setup in
    shell | autogroup-off | batch | services | services-mirror3 | pinned | twins) ;;
    *) echo "unknown setup $setup (see --help)" >&2; exit 2 ;;
    esac
done

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
# shellcheck source=scripts/lib.sh
source scripts/lib.sh
if ((${#BINS[@]} == 0)); then
    cargo build --release -q -p pgdog -p pgdog-mirror-stats
    BINS=("$REPO/target/release/pgdog")
fi

WORK=$(mktemp -d /dev/shm/pgdog-keepup.XXXXXX)
chmod 755 "$WORK"
PGDOG_PID=""
ORIGINAL_AUTOGROUP=$(autogroup_state)
cleanup() {
    set +e
    [[ $(autogroup_state) != "$ORIGINAL_AUTOGROUP" ]] && set_autogroup "$ORIGINAL_AUTOGROUP"
    [[ -n $PGDOG_PID ]] && kill "$PGDOG_PID" 2>/dev/null && wait "$PGDOG_PID" 2>/dev/null
    pair_destroy "$WORK"
    service_cgroups_remove
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

TICK=$(getconf CLK_TCK)
seconds() { awk -v t="$1" -v hz="$TICK" 'BEGIN {printf "%.1f", t / hz}'; }
rows() { psql -h 127.0.0.1 -p "$1" -U pgdog -d pgdog -Atc 'SELECT count(*) FROM pgbench_history'; }
# prepare SETUP: the machine and the clusters as SETUP has them (undoing the other setups).
prepare() {
    service_cgroups_remove
    cluster_pin "$WORK/primary" all
    cluster_pin "$WORK/mirror" all
    [[ $(autogroup_state) == "$ORIGINAL_AUTOGROUP" ]] || set_autogroup "$ORIGINAL_AUTOGROUP"
    case $1 in
    autogroup-off) set_autogroup off ;;
    services*)
        cluster_move primary "$WORK/primary"
        cluster_move mirror "$WORK/mirror"
        if [[ $1 == services-mirror3 ]]; then service_weight mirror 3; fi
        ;;
    twins) twin_hosts "$WORK" "$TWIN_CPU" "$TWIN_WEIGHT" ;;
    pinned)
        cluster_pin "$WORK/primary" 0
        cluster_pin "$WORK/mirror" 1
        ;;
    esac
}

# launch SETUP BINARY: starts pgdog as SETUP has it; sets PGDOG_PID.
launch() {
    "$2" --config "$WORK/pgdog.toml" >"$WORK/pgdog.log" 2>&1 &
    PGDOG_PID=$!
    wait_port "$PORT" "$PGDOG_PID" || { cat "$WORK/pgdog.log" >&2; exit 1; }
    case $1 in
    batch) chrt --all-tasks --batch --pid 0 "$PGDOG_PID" >/dev/null ;;
    services*) service_move proxy "$PGDOG_PID" ;;
    esac
}

# as_client SETUP COMMAND...: runs the benchmark client as SETUP has it.
as_client() {
    if [[ $1 == services* ]]; then
        # shellcheck disable=SC2016 # expanded by the inner shell
        bash -c 'echo $$ >"$1/cgroup.procs" && shift && exec "$@"' _ "$(service_cgroup client)" "${@:2}"
    else
        "${@:2}"
    fi
}

export PGPASSWORD=pgdog
PORT=$(free_port) ADMIN=$(free_port) METRICS=$(free_port)
pair_start "$WORK"
pair_config 1 "${QUEUE:+mirror_queue = $QUEUE}" >"$WORK/pgdog.toml"

echo "kernel autogroup scheduling: $ORIGINAL_AUTOGROUP on this machine; mirror_queue ${QUEUE:-default}"
echo
echo "| run | setup | binary | primary tps | dropped | history rows primary / mirror | mirror log warnings+errors | CPU s primary / mirror / pgdog | mirror cluster preempted per transaction |"
echo "|---|---|---|---:|---:|---:|---:|---:|---:|"
for ((r = 1; r <= ROUNDS; r++)); do
    for setup in "${SETUPS[@]}"; do
        prepare "$setup"
        for bin in "${BINS[@]}"; do
            pgbench_init "$SCALE" "$PRIMARY" "$MIRROR" >/dev/null
            : >"$WORK/mirror/postgres.log"
            launch "$setup" "$bin"
            p0=$(cluster_ticks "$WORK/primary") m0=$(cluster_ticks "$WORK/mirror") d0=$(process_ticks "$PGDOG_PID")
            # The mirror's backends are opened by the first queries: count from one second in.
            (sleep 1 && cluster_preempted "$WORK/mirror" >"$WORK/preempted.0") &
            counter=$!
            out=$(as_client "$setup" pgbench -h 127.0.0.1 -p "$PORT" -U pgdog -c 8 -j 2 -T "$DURATION" pgdog 2>&1)
            wait "$counter"
            v1=$(cluster_preempted "$WORK/mirror")
            p1=$(cluster_ticks "$WORK/primary") m1=$(cluster_ticks "$WORK/mirror") d1=$(process_ticks "$PGDOG_PID")
            last=$(settled_total "$METRICS" 120 0.5)
            dropped=$(metric "$METRICS" 'mirror{type="dropped"}')
            kill "$PGDOG_PID"
            wait "$PGDOG_PID" 2>/dev/null || true
            PGDOG_PID=""
            noise=$(grep -cE 'WARNING|ERROR' "$WORK/mirror/postgres.log" || true)
            tps=$(awk '/^tps = / {print $3}' <<<"$out")
            printf '| %d | %s | %s | %.0f | %s (%s of %s) | %s / %s | %s | %s / %s / %s | %s |\n' "$r" "$setup" "$bin" \
                "$tps" \
                "$(awk -v d="$dropped" -v t="$last" 'BEGIN {printf "%.2f %%", t ? 100 * d / t : 0}')" \
                "$dropped" "$last" "$(rows "$PRIMARY")" "$(rows "$MIRROR")" "$noise" \
                "$(seconds $((p1 - p0)))" "$(seconds $((m1 - m0)))" "$(seconds $((d1 - d0)))" \
                "$(awk -v v="$((v1 - $(cat "$WORK/preempted.0")))" -v x="$tps" -v s="$DURATION" 'BEGIN {printf "%.2f", x ? v / (x * (s - 1)) : 0}')"
        done
    done
done
