#!/usr/bin/env bash
# What the OTLP push costs the proxy: pgbench select-only through pgdog with mirroring on,
# with and without `otlp_endpoint`, interleaved per round, side by side in one run.
#
#   bench/otlp.sh               # 7 rounds x 2 modes, 10 s each (~4 min)
#   bench/otlp.sh --quick       # smoke: 1 round, 3 s each, scale 1
#
# Options: --rounds N --duration SECS --scale N --clients N --interval-ms N (default 1000:
#          ten times the default push rate, so that the push's cost shows)
#
# Two throwaway clusters (primary, mirror) with identical pgbench data; pgdog (release) in
# front, its pool mirrored to the mirror. Modes:
#   off   no otlp_endpoint
#   push  otlp_endpoint = a local OTLP/HTTP receiver (python3, answers 200 to every POST,
#         counts them), otlp_interval_ms = --interval-ms
# Reports median tps and proxy CPU per transaction of each mode, the ratio push/off of the
# medians and the median of the per-round ratios (goal >= 0.98), and the pushes received.
set -euo pipefail

ROUNDS=7 DURATION=10 SCALE=10 CLIENTS=8 INTERVAL=1000
while (($#)); do
    case $1 in
    --quick) ROUNDS=1 DURATION=3 SCALE=1 ;;
    --rounds) ROUNDS=$2; shift ;;
    --duration) DURATION=$2; shift ;;
    --scale) SCALE=$2; shift ;;
    --clients) CLIENTS=$2; shift ;;
    --interval-ms) INTERVAL=$2; shift ;;
    -h | --help) sed -n '2,/^set -e/p' "$0" | sed -n 's/^# \{0,1\}//p'; exit 0 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
    esac
    shift
done

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
# shellcheck source=scripts/lib.sh
source scripts/lib.sh
log() { printf '[otlp-bench %s] %s\n' "$(date +%T)" "$*" >&2; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.3f", a / b}'; }
TICK=$(getconf CLK_TCK)

cargo build --release -q -p pgdog -p pgdog-mirror-stats
WORK=$(mktemp -d /dev/shm/pgdog-otlp-bench.XXXXXX)
chmod 755 "$WORK"
PGDOG_PID="" RECEIVER_PID=""
cleanup() {
    set +e
    [[ -n $PGDOG_PID ]] && kill "$PGDOG_PID" 2>/dev/null && wait "$PGDOG_PID" 2>/dev/null
    [[ -n $RECEIVER_PID ]] && kill "$RECEIVER_PID" 2>/dev/null
    pair_destroy "$WORK"
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

pair_start "$WORK"
export PGPASSWORD=pgdog
pgbench_init "$SCALE" "$PRIMARY" "$MIRROR" >/dev/null
PORT=$(free_port) ADMIN=$(free_port) METRICS=$(free_port) OTLP=$(free_port)

# The receiver: every POST answered 200 (an empty ExportMetricsServiceResponse), counted.
cat >"$WORK/receiver.py" <<'PY'
import http.server, sys
count_file = sys.argv[2]
count = 0
class Receiver(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        global count
        self.rfile.read(int(self.headers.get("content-length", 0)))
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()
        count += 1
        with open(count_file, "w") as f:
            f.write(str(count))
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Receiver).serve_forever()
PY
echo 0 >"$WORK/pushes"
python3 "$WORK/receiver.py" "$OTLP" "$WORK/pushes" &
RECEIVER_PID=$!
wait_port "$OTLP" "$RECEIVER_PID"

start_pgdog() { # start_pgdog MODE
    pair_config 1 >"$WORK/pgdog.toml"
    if [[ $1 == push ]]; then # into [general], after its last line
        sed -i "0,/^pool_size = 20$/s//pool_size = 20\notlp_endpoint = \"http:\/\/127.0.0.1:$OTLP\"\notlp_interval_ms = $INTERVAL/" "$WORK/pgdog.toml"
    fi
    ./target/release/pgdog --config "$WORK/pgdog.toml" >"$WORK/pgdog.log" 2>&1 &
    PGDOG_PID=$!
    wait_port "$PORT" "$PGDOG_PID" || { cat "$WORK/pgdog.log" >&2; return 1; }
}
stop_pgdog() { kill "$PGDOG_PID"; wait "$PGDOG_PID" 2>/dev/null || true; PGDOG_PID=""; }

declare -A TPS CPU ROUND DROPPED
for ((r = 1; r <= ROUNDS; r++)); do
    # Alternate which mode goes first, so that drift within a round hits both alike.
    modes="off push"
    ((r % 2)) || modes="push off"
    for mode in $modes; do
        start_pgdog "$mode"
        pushes_before=$(cat "$WORK/pushes")
        before=$(process_ticks "$PGDOG_PID")
        out=$(pgbench -h 127.0.0.1 -p "$PORT" -U pgdog -S -M prepared -c "$CLIENTS" -j 2 -T "$DURATION" pgdog 2>&1)
        after=$(process_ticks "$PGDOG_PID")
        pushes=$(($(cat "$WORK/pushes") - pushes_before))
        total=$(settled_total "$METRICS" 40 0.25)
        dropped=$(awk -v d="$(metric "$METRICS" 'mirror{type="dropped"}')" -v t="$total" \
            'BEGIN {printf "%.1f", t ? 100 * d / t : 0}')
        stop_pgdog
        tps=$(awk '/^tps = / {print $3}' <<<"$out")
        txns=$(awk '/number of transactions actually processed/ {split($6, a, "/"); print a[1]}' <<<"$out")
        grep -q 'number of failed transactions: 0 ' <<<"$out" || { echo "$out" >&2; exit 1; }
        us=$(awk -v t=$((after - before)) -v hz="$TICK" -v n="$txns" 'BEGIN {printf "%.2f", t / hz * 1e6 / n}')
        if [[ $mode == push && $pushes -lt 1 ]]; then
            cat "$WORK/pgdog.log" >&2
            log "no push arrived in round $r"
            exit 1
        fi
        TPS[$mode]+="$tps " CPU[$mode]+="$us "
        ROUND[$r,$mode]=$tps
        DROPPED[$mode]+="$dropped "
        log "round $r $mode: $tps tps, proxy CPU $us us/txn, $pushes pushes received, $dropped % of $total mirrored requests dropped"
    done
done

per_round=$(for ((r = 1; r <= ROUNDS; r++)); do ratio "${ROUND[$r,push]}" "${ROUND[$r,off]}"; echo; done | median)
cat <<MD

### OTLP push cost ($ROUNDS rounds x ${DURATION}s, pgbench -S -M prepared -c $CLIENTS -j 2, scale $SCALE, mirroring on, push every ${INTERVAL} ms; medians)

| mode | tps | proxy CPU per transaction | mirrored requests dropped |
|---|---:|---:|---:|
| OTLP push off | $(med "${TPS[off]}") | $(med "${CPU[off]}") us | $(med "${DROPPED[off]}") % |
| OTLP push on | $(med "${TPS[push]}") | $(med "${CPU[push]}") us | $(med "${DROPPED[push]}") % |

- push / off tps: **$(ratio "$(med "${TPS[push]}")" "$(med "${TPS[off]}")")** (goal >= 0.98); median of per-round ratios: $per_round
- proxy CPU per transaction, push / off: $(ratio "$(med "${CPU[push]}")" "$(med "${CPU[off]}")")
MD
