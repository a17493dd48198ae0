#!/usr/bin/env bash
# Keep-up under TPC-B: what share of the mirrored requests one or more pgdog binaries drop,
# interleaved run by run on the same two clusters, with fresh pgbench data before each run.
#
#   bench/keepup.sh                         # ./target/release/pgdog, 3 runs
#   bench/keepup.sh --rounds 5 OLD NEW      # two binaries (e.g. built from two commits), A/B
#
# Options: --rounds N --duration SECS --scale N. Each binary needs the mirror-stats plugin
# (libpgdog_mirror_stats.so) in its own directory.
# Per run: pgbench (default TPC-B-like script) -c 8 -j 2 through a pool mirrored with exposure
# 1.0 and the default queue (128); the share of mirrored requests dropped once the totals
# settle; pgbench_history rows on both servers; WARNING/ERROR lines in the mirror's log.
set -euo pipefail

ROUNDS=3 DURATION=15 SCALE=10 BINS=()
while (($#)); do
    case $1 in
    --rounds) ROUNDS=$2; shift ;;
    --duration) DURATION=$2; shift ;;
    --scale) SCALE=$2; shift ;;
    -h | --help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "unknown option $1" >&2; exit 2 ;;
    *) BINS+=("$(realpath "$1")") ;;
    esac
    shift
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
cleanup() {
    set +e
    [[ -n $PGDOG_PID ]] && kill "$PGDOG_PID" 2>/dev/null && wait "$PGDOG_PID" 2>/dev/null
    pair_destroy "$WORK"
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

pair_start "$WORK"
export PGPASSWORD=pgdog
PORT=$(free_port) ADMIN=$(free_port) METRICS=$(free_port)
pair_config 1 >"$WORK/pgdog.toml"
rows() { psql -h 127.0.0.1 -p "$1" -U pgdog -d pgdog -Atc 'SELECT count(*) FROM pgbench_history'; }

echo "| run | binary | primary tps | dropped | history rows primary / mirror | mirror log warnings+errors |"
echo "|---|---|---:|---:|---:|---:|"
for ((r = 1; r <= ROUNDS; r++)); do
    for bin in "${BINS[@]}"; do
        pgbench_init "$SCALE" "$PRIMARY" "$MIRROR" >/dev/null
        : >"$WORK/mirror/postgres.log"
        "$bin" --config "$WORK/pgdog.toml" >"$WORK/pgdog.log" 2>&1 &
        PGDOG_PID=$!
        wait_port "$PORT" "$PGDOG_PID" || { cat "$WORK/pgdog.log" >&2; exit 1; }
        out=$(pgbench -h 127.0.0.1 -p "$PORT" -U pgdog -c 8 -j 2 -T "$DURATION" pgdog 2>&1)
        last=$(settled_total "$METRICS" 120 0.5)
        dropped=$(metric "$METRICS" 'mirror{type="dropped"}')
        kill "$PGDOG_PID"
        wait "$PGDOG_PID" 2>/dev/null || true
        PGDOG_PID=""
        noise=$(grep -cE 'WARNING|ERROR' "$WORK/mirror/postgres.log" || true)
        printf '| %d | %s | %.0f | %s (%s of %s) | %s / %s | %s |\n' "$r" "$bin" \
            "$(awk '/^tps = / {print $3}' <<<"$out")" \
            "$(awk -v d="$dropped" -v t="$last" 'BEGIN {printf "%.2f %%", t ? 100 * d / t : 0}')" \
            "$dropped" "$last" "$(rows "$PRIMARY")" "$(rows "$MIRROR")" "$noise"
    done
done
