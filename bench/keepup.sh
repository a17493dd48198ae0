#!/usr/bin/env bash
# Keep-up under TPC-B: what share of the mirrored requests one or more pgdog binaries drop,
# interleaved run by run on the same two clusters, with fresh pgbench data before each run.
#
#   bench/keepup.sh                         # ./target/release/pgdog, 3 runs
#   bench/keepup.sh --rounds 5 OLD NEW      # two binaries (e.g. built from two commits), A/B
#   bench/keepup.sh --autogroup both        # the kernel's autogroup scheduling on and off, interleaved
#
# Options: --rounds N --duration SECS --scale N --queue N (mirror_queue; default: pgdog's)
#          --autogroup keep|off|both (default keep: as the machine has it; off and both switch
#          kernel.sched_autogroup_enabled for the runs, as root, and put it back at the end).
# Each binary needs the mirror-stats plugin (libpgdog_mirror_stats.so) in its own directory.
# Per run: pgbench (default TPC-B-like script) -c 8 -j 2 through a pool mirrored with exposure
# 1.0; the share of mirrored requests dropped once the totals settle; pgbench_history rows on
# both servers; WARNING/ERROR lines in the mirror's log; CPU seconds used during the run by
# each cluster and by pgdog.
# Why autogroup: on a 2-core machine shared by both databases, pgbench and pgdog, whether the
# mirror database gets the CPU to catch up after a burst depends on how the kernel shares the
# cores. Processes in the root cgroup (as here, started from a shell rather than as systemd
# services) are scheduled by session groups when autogroup is on, and per process when it is off.
set -euo pipefail

ROUNDS=3 DURATION=15 SCALE=10 QUEUE="" AUTOGROUP=keep BINS=()
while (($#)); do
    case $1 in
    --rounds) ROUNDS=$2; shift ;;
    --duration) DURATION=$2; shift ;;
    --scale) SCALE=$2; shift ;;
    --queue) QUEUE=$2; shift ;;
    --autogroup) AUTOGROUP=$2; shift ;;
    -h | --help) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "unknown option $1" >&2; exit 2 ;;
    *) BINS+=("$(realpath "$1")") ;;
    esac
    shift
done
case $AUTOGROUP in
keep | off) SETUPS=("$AUTOGROUP") ;;
both) SETUPS=(on off) ;;
*) echo "unknown --autogroup $AUTOGROUP (keep, off or both)" >&2; exit 2 ;;
esac

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
    [[ $AUTOGROUP != keep ]] && set_autogroup "$ORIGINAL_AUTOGROUP"
    [[ -n $PGDOG_PID ]] && kill "$PGDOG_PID" 2>/dev/null && wait "$PGDOG_PID" 2>/dev/null
    pair_destroy "$WORK"
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

TICK=$(getconf CLK_TCK)
pgdog_ticks() { sed 's/^.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'; }
seconds() { awk -v t="$1" -v hz="$TICK" 'BEGIN {printf "%.1f", t / hz}'; }
rows() { psql -h 127.0.0.1 -p "$1" -U pgdog -d pgdog -Atc 'SELECT count(*) FROM pgbench_history'; }
export PGPASSWORD=pgdog
PORT=$(free_port) ADMIN=$(free_port) METRICS=$(free_port)
pair_start "$WORK"
pair_config 1 "${QUEUE:+mirror_queue = $QUEUE}" >"$WORK/pgdog.toml"

echo "kernel autogroup scheduling: $ORIGINAL_AUTOGROUP on this machine; mirror_queue ${QUEUE:-default}"
echo
echo "| run | autogroup | binary | primary tps | dropped | history rows primary / mirror | mirror log warnings+errors | CPU s primary / mirror / pgdog |"
echo "|---|---|---|---:|---:|---:|---:|---:|"
for ((r = 1; r <= ROUNDS; r++)); do
    for setup in "${SETUPS[@]}"; do
        [[ $setup == keep ]] || set_autogroup "$setup"
        for bin in "${BINS[@]}"; do
            pgbench_init "$SCALE" "$PRIMARY" "$MIRROR" >/dev/null
            : >"$WORK/mirror/postgres.log"
            "$bin" --config "$WORK/pgdog.toml" >"$WORK/pgdog.log" 2>&1 &
            PGDOG_PID=$!
            wait_port "$PORT" "$PGDOG_PID" || { cat "$WORK/pgdog.log" >&2; exit 1; }
            p0=$(cluster_ticks "$WORK/primary") m0=$(cluster_ticks "$WORK/mirror") d0=$(pgdog_ticks "$PGDOG_PID")
            out=$(pgbench -h 127.0.0.1 -p "$PORT" -U pgdog -c 8 -j 2 -T "$DURATION" pgdog 2>&1)
            p1=$(cluster_ticks "$WORK/primary") m1=$(cluster_ticks "$WORK/mirror") d1=$(pgdog_ticks "$PGDOG_PID")
            last=$(settled_total "$METRICS" 120 0.5)
            dropped=$(metric "$METRICS" 'mirror{type="dropped"}')
            kill "$PGDOG_PID"
            wait "$PGDOG_PID" 2>/dev/null || true
            PGDOG_PID=""
            noise=$(grep -cE 'WARNING|ERROR' "$WORK/mirror/postgres.log" || true)
            printf '| %d | %s | %s | %.0f | %s (%s of %s) | %s / %s | %s | %s / %s / %s |\n' "$r" "$(autogroup_state)" "$bin" \
                "$(awk '/^tps = / {print $3}' <<<"$out")" \
                "$(awk -v d="$dropped" -v t="$last" 'BEGIN {printf "%.2f %%", t ? 100 * d / t : 0}')" \
                "$dropped" "$last" "$(rows "$PRIMARY")" "$(rows "$MIRROR")" "$noise" \
                "$(seconds $((p1 - p0)))" "$(seconds $((m1 - m0)))" "$(seconds $((d1 - d0)))"
        done
    done
done
