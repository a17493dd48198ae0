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
log() { printf '[soak %s] %s\n' "$(date +%T)" "$*" >&2; }

cargo build --release -q -p pgdog -p pgdog-mirror-stats
WORK=$(mktemp -d /dev/shm/pgdog-soak.XXXXXX)
chmod 755 "$WORK"
PGDOG_PID="" SAMPLER_PID=""
cleanup() {
    set +e
    [[ -n $SAMPLER_PID ]] && kill "$SAMPLER_PID" 2>/dev/null
    [[ -n $PGDOG_PID ]] && kill "$PGDOG_PID" 2>/dev/null && wait "$PGDOG_PID" 2>/dev/null
    scripts/pg-cluster.sh destroy "$WORK/primary" >/dev/null 2>&1
    scripts/pg-cluster.sh destroy "$WORK/mirror" >/dev/null 2>&1
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

PRIMARY=$(scripts/pg-cluster.sh start "$WORK/primary")
MIRROR=$(scripts/pg-cluster.sh start "$WORK/mirror")
export PGPASSWORD=pgdog
for p in "$PRIMARY" "$MIRROR"; do pgbench -h 127.0.0.1 -p "$p" -U pgdog -i -s 1 -q pgdog >/dev/null 2>&1; done
port() { local p; for _ in $(seq 200); do p=$((20000 + RANDOM % 12000)); (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return; }; done; }
PORT=$(port) ADMIN=$(port) METRICS=$(port)
cat >"$WORK/pgdog.toml" <<TOML
[general]
port = $PORT
admin_port = $ADMIN
metrics_port = $METRICS

[[pools]]
name = "pgdog"
port = $PRIMARY
password = "pgdog"
mirror_of = "mirror"

[[pools]]
name = "mirror"
database = "pgdog"
port = $MIRROR
password = "pgdog"
TOML
./target/release/pgdog --config "$WORK/pgdog.toml" >"$WORK/pgdog.log" 2>&1 &
PGDOG_PID=$!
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.1; done

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
page=$(curl -s "http://127.0.0.1:$METRICS/metrics")
m() { awk -v k="$1" 'index($0, k) == 1 {v = $2} END {print v + 0}' <<<"$page"; }
cat <<MD

### Soak: $TOTAL mirrored queries in ${elapsed}s

- pgdog resident memory: start $((first / 1024)) MB ($first kB), middle $((middle / 1024)) MB ($middle kB), end $((end_rss / 1024)) MB ($end_rss kB)
- growth middle -> end: $(awk -v a="$middle" -v b="$end_rss" 'BEGIN {printf "%.1f", 100 * (b - a) / a}') % (goal < 10 %)
- mirror: total $(m 'mirror{type="total"}'), mirrored $(m 'mirror{type="mirrored"}'), dropped $(m 'mirror{type="dropped"}')
MD
