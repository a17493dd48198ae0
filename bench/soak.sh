#!/usr/bin/env bash
# Soak: 1,000,000 mirrored queries through pgdog, recording its resident memory at the start,
# the middle and the end (the spec's "no memory leaks during extended runs").
#
#   bench/soak.sh               # 1,000,000 select-only transactions (8 clients), mirrored
#   bench/soak.sh --quick       # 50,000
#
# Prints RSS samples every 5 s, then start/middle/end, the growth from the middle to the end
# (start-up to middle includes the pools and buffers filling once), and the mirror's totals.
set -euo pipefail

TOTAL=1000000
[[ ${1:-} == --quick ]] && TOTAL=50000
CLIENTS=8
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
# shellcheck source=scripts/lib.sh
source scripts/lib.sh
log() { printf '[soak %s] %s\n' "$(date +%T)" "$*" >&2; }

cargo build --release -q -p pgdog -p pgdog-mirror-stats
WORK=$(mktemp -d /dev/shm/pgdog-soak.XXXXXX)
chmod 755 "$WORK"
PGDOG_PID="" SAMPLER_PID=""
cleanup() {
    set +e
    [[ -n $SAMPLER_PID ]] && kill "$SAMPLER_PID" 2>/dev/null
    [[ -n $PGDOG_PID ]] && kill "$PGDOG_PID" 2>/dev/null && wait "$PGDOG_PID" 2>/dev/null
    pair_destroy "$WORK"
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

pair_start "$WORK"
export PGPASSWORD=pgdog
pgbench_init 1 "$PRIMARY" "$MIRROR" >/dev/null
PORT=$(free_port) ADMIN=$(free_port) METRICS=$(free_port)
pair_config 1 >"$WORK/pgdog.toml"
./target/release/pgdog --config "$WORK/pgdog.toml" >"$WORK/pgdog.log" 2>&1 &
PGDOG_PID=$!
wait_port "$PORT" "$PGDOG_PID" || { cat "$WORK/pgdog.log" >&2; exit 1; }

rss() { awk '/^VmRSS:/ {print $2}' "/proc/$PGDOG_PID/status"; }
(while kill -0 "$PGDOG_PID" 2>/dev/null; do echo "$(date +%s) $(rss)"; sleep 5; done) >"$WORK/rss" &
SAMPLER_PID=$!

log "$TOTAL mirrored select-only transactions, $CLIENTS clients"
start=$(date +%s)
pgbench -h 127.0.0.1 -p "$PORT" -U pgdog -S -M prepared -c "$CLIENTS" -j 2 -t $((TOTAL / CLIENTS)) pgdog 2>&1 |
    grep -E 'tps =|failed|processed'
end_rss=$(rss)
kill "$SAMPLER_PID"; SAMPLER_PID=""
elapsed=$(($(date +%s) - start))
samples=$(wc -l <"$WORK/rss")
first=$(head -n 1 "$WORK/rss" | awk '{print $2}')
middle=$(sed -n "$(((samples + 1) / 2))p" "$WORK/rss" | awk '{print $2}')
sleep 2
m() { metric "$METRICS" "$1"; }
cat <<MD

### Soak: $TOTAL mirrored queries in ${elapsed}s

- pgdog resident memory: start $((first / 1024)) MB ($first kB), middle $((middle / 1024)) MB ($middle kB), end $((end_rss / 1024)) MB ($end_rss kB)
- growth middle -> end: $(awk -v a="$middle" -v b="$end_rss" 'BEGIN {printf "%.1f", 100 * (b - a) / a}') % (goal < 10 %)
- mirror: total $(m 'mirror{type="total"}'), mirrored $(m 'mirror{type="mirrored"}'), dropped $(m 'mirror{type="dropped"}')
MD
