#!/usr/bin/env bash
# What gating mirrored reads on the replication position costs, measured side by side
# (issue 20's goals; docs/benchmarks.md records the figures).
#
#   bench/replication.sh            # 6 rounds (off/on pairs in ABBA order, 3 each), 20 s each (~5 min)
#   bench/replication.sh --quick    # smoke: 2 rounds of 4 s
#
# Options: --rounds N (even) --duration SECS --scale N (default 1: reads of the rows TPC-B
#          writes) --writers N --readers N --read-rate TPS (all readers together, default
#          400; 0: as fast as they go) --interval MS (mirror_sync_interval_ms, default 10)
#          --primary-commit on|off (the primary's synchronous_commit, default on)
#          --perf DIR (records pgdog with `perf record -g` during each round, into
#          DIR/<round>-<mode>.data, to compare where its CPU goes with mirroring off and on)
#          --on-config TOML (the mirrored pool's lines in the "on" rounds instead of the
#          gated reads below, to take the cost apart: e.g. 'mirror_statements = "reads"'
#          alone, without the gate, or with 'mirror_exposure = 0.0')
#          --workers N (pgdog's `workers` in both modes; default: pgdog's own, one per CPU)
#
# A throwaway primary (wal_level = logical) publishing every table, and a subscriber whose
# subscription "sub" keeps pgbench's tables in step; pgdog (release) in front of the primary.
# Each round runs, through pgdog and at the same time, pgbench TPC-B (--writers clients)
# and pgbench select-only (--readers clients, at --read-rate: an application's reads, which
# a gated mirror session can follow; reads as fast as they go outrun any gate by design and
# are dropped, or set aside as unpaired), in one of two modes, alternating off/on:
#   off  no mirror_of (the subscription still applies the writes: only mirroring differs)
#   on   mirror_of the subscriber, mirror_statements = "reads", mirror_sync = "logical",
#        result comparison on
# and reports, per mode, the median TPC-B and select-only tps and the ratio on/off (goal:
# >= 0.97), and pgdog's own CPU time per transaction (utime+stime from /proc: the mirror
# database shares this machine's cores, so tps alone charges the proxy for its work). For
# the "on" rounds, read from pgdog's metrics at the end of each round:
#   - the delay gating added to reads (pgdog_mirror_sync_delay_ms, p50) against the apply lag
#     the gate measured (pgdog_mirror_replication_lag_ms, p50) plus one poll interval (goal:
#     delay p50 <= lag p50 + interval);
#   - the position queries the gate sent to the primary per second
#     (pgdog_mirror_sync_queries_total), against the bound 1000 / interval;
#   - compared reads and mismatches (false ones: both servers hold the same data), and the
#     fingerprints that mismatched (SHOW MIRROR QUERIES).
set -euo pipefail

ROUNDS=6 DURATION=20 SCALE=1 WRITERS=4 READERS=4 INTERVAL=10 RATE=400 COMMIT=on PERF=
while (($#)); do
    case $1 in
    --quick) ROUNDS=2 DURATION=4 SCALE=1 ;;
    --rounds) ROUNDS=$2; shift ;;
    --duration) DURATION=$2; shift ;;
    --scale) SCALE=$2; shift ;;
    --writers) WRITERS=$2; shift ;;
    --readers) READERS=$2; shift ;;
    --interval) INTERVAL=$2; shift ;;
    --read-rate) RATE=$2; shift ;;
    --primary-commit) COMMIT=$2; shift ;;
    --on-config) ON_CONFIG=$2; shift ;;
    --workers) WORKERS=$2; shift ;;
    --perf) PERF=$(realpath -m "$2"); shift ;;
    -h | --help) sed -n '2,/^set -e/p' "$0" | sed -n 's/^# \{0,1\}//p'; exit 0 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
    esac
    shift
done

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
# shellcheck source=scripts/lib.sh
source scripts/lib.sh
log() { printf '[replication-bench %s] %s\n' "$(date +%T)" "$*" >&2; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.3f", a / b}'; }
TICK=$(getconf CLK_TCK)

cargo build --release -q -p pgdog -p pgdog-mirror-stats
WORK=$(mktemp -d /dev/shm/pgdog-replication-bench.XXXXXX)
chmod 755 "$WORK"
PGDOG_PID=""
cleanup() {
    set +e
    [[ -n $PGDOG_PID ]] && kill "$PGDOG_PID" 2>/dev/null && wait "$PGDOG_PID" 2>/dev/null
    # The subscription's worker holds a connection to the primary: drop it first.
    psql -h 127.0.0.1 -p "${MIRROR:-0}" -U pgdog -d pgdog -qc "DROP SUBSCRIPTION IF EXISTS sub" >/dev/null 2>&1
    pair_destroy "$WORK"
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The primary commits synchronously, as production primaries do: with the clusters' default
# here (synchronous_commit = off) a commit reaches the WAL, and so the subscriber, only at the
# WAL writer's next flush (wal_writer_delay, 200 ms), and every gated read waits for it.
# --primary-commit off keeps the clusters' default: the widest window for a row to change
# between the primary's read and the mirror's, where second looks matter most.
export PAIR_PRIMARY_OPTS="-c wal_level=logical -c synchronous_commit=$COMMIT"
pair_start "$WORK"
export PGPASSWORD=pgdog
pgbench_init "$SCALE" "$PRIMARY" >/dev/null
pgbench -h 127.0.0.1 -p "$MIRROR" -U pgdog -i -I dtp -q pgdog >/dev/null 2>&1
logical_subscribe "$PRIMARY" "$MIRROR" || { log "the subscription's initial copy did not finish"; exit 1; }
log "subscription sub: initial copy done (scale $SCALE)"

PORT=$(free_port) ADMIN=$(free_port) METRICS=$(free_port)
GATED="mirror_statements = \"reads\"
mirror_sync = \"logical\"
mirror_sync_slot = \"sub\"
mirror_sync_interval_ms = $INTERVAL"
[[ -n ${ON_CONFIG:-} ]] && GATED=$ON_CONFIG

start_pgdog() { # start_pgdog MIRRORED
    # The stats window spans the round, so the quantiles cover all of it.
    local extra=""
    (($1)) && extra=$GATED
    pair_config "$1" "$extra" | sed "s/^pool_size = 20$/pool_size = 20\nmirror_stats_window_secs = $((DURATION + 30))\nmirror_queue = 1000/" |
        sed "${WORKERS:+s/^\[general\]$/[general]\nworkers = $WORKERS/}" >"$WORK/pgdog.toml"
    ./target/release/pgdog --config "$WORK/pgdog.toml" >"$WORK/pgdog.log" 2>&1 &
    PGDOG_PID=$!
    wait_port "$PORT" "$PGDOG_PID" || { cat "$WORK/pgdog.log" >&2; return 1; }
}
stop_pgdog() { kill "$PGDOG_PID"; wait "$PGDOG_PID" 2>/dev/null || true; PGDOG_PID=""; }
stat_of() { metric "$METRICS" "$1{database=\"pgdog\",stat=\"$2\"}"; }

declare -A W R CPU SW
RATE_ARGS=()
((RATE > 0)) && RATE_ARGS=(-R "$RATE")
DELAY="" LAG="" QPS="" RECHECKED=0 COMPARED=0 MISMATCHED=0 LAGGING=0 SYNCED=0
PAIR_RATIOS="" pair_off=""
for ((r = 1; r <= ROUNDS; r++)); do
    # Pairs in ABBA order (off/on, on/off, off/on...): throughput drifts over a run (the
    # tables grow and bloat), and a fixed order would charge the drift to the second mode.
    mode=off
    (((r % 2 == 0) != ((r - 1) / 2 % 2 == 1))) && mode=on
    mirrored=0
    [[ $mode == on ]] && mirrored=1
    start_pgdog "$mirrored"
    q0=0
    [[ $mode == on ]] && q0=$(metric "$METRICS" 'pgdog_mirror_sync_queries_total{database="pgdog",server="primary"}')
    t0=$(process_ticks "$PGDOG_PID") s0=$(process_switches "$PGDOG_PID")
    pgbench -h 127.0.0.1 -p "$PORT" -U pgdog -n -c "$WRITERS" -j 1 -T "$DURATION" pgdog >"$WORK/w.out" 2>&1 &
    wpid=$!
    pgbench -h 127.0.0.1 -p "$PORT" -U pgdog -n -S -M prepared "${RATE_ARGS[@]}" -c "$READERS" -j 1 -T "$DURATION" pgdog >"$WORK/r.out" 2>&1 &
    rpid=$!
    ppid=""
    if [[ -n $PERF ]]; then
        mkdir -p "$PERF"
        perf record -q -g -p "$PGDOG_PID" -o "$PERF/$r-$mode.data" -- sleep "$((DURATION - 1))" 2>/dev/null &
        ppid=$!
    fi
    wait "$wpid" "$rpid"
    [[ -n $ppid ]] && wait "$ppid"
    t1=$(process_ticks "$PGDOG_PID") s1=$(process_switches "$PGDOG_PID")
    for f in w r; do
        grep -q 'number of failed transactions: 0 ' "$WORK/$f.out" || { cat "$WORK/$f.out" >&2; log "failed transactions"; exit 1; }
    done
    wt=$(awk '/^tps = / {print $3}' "$WORK/w.out")
    rt=$(awk '/^tps = / {print $3}' "$WORK/r.out")
    W[$mode]+="$wt " R[$mode]+="$rt "
    # The on/off ratio of each pair of neighbouring rounds.
    if ((r % 2 == 1)); then
        pair_off=$wt pair_mode=$mode
    elif [[ $pair_mode == off ]]; then
        PAIR_RATIOS+="$(ratio "$wt" "$pair_off") "
    else
        PAIR_RATIOS+="$(ratio "$pair_off" "$wt") "
    fi
    txns=$(cat "$WORK/w.out" "$WORK/r.out" | awk '/number of transactions actually processed/ {split($6, a, "/"); n += a[1]} END {print n}')
    us=$(awk -v t=$((t1 - t0)) -v hz="$TICK" -v n="$txns" 'BEGIN {printf "%.2f", t / hz * 1e6 / n}')
    CPU[$mode]+="$us "
    sw=$(awk -v s=$((s1 - s0)) -v n="$txns" 'BEGIN {printf "%.2f", s / n}')
    SW[$mode]+="$sw "
    extra=""
    if [[ $mode == on ]]; then
        q1=$(metric "$METRICS" 'pgdog_mirror_sync_queries_total{database="pgdog",server="primary"}')
        qps=$(awk -v a="$q0" -v b="$q1" -v d="$DURATION" 'BEGIN {printf "%.1f", (b - a) / d}')
        settled_total "$METRICS" 40 0.25 >/dev/null
        d50=$(stat_of pgdog_mirror_sync_delay_ms p50) l50=$(stat_of pgdog_mirror_replication_lag_ms p50)
        d99=$(stat_of pgdog_mirror_sync_delay_ms p99) l99=$(stat_of pgdog_mirror_replication_lag_ms p99)
        c=$(metric "$METRICS" 'pgdog_mirror_compared_total{database="pgdog"}')
        m=$(metric "$METRICS" 'pgdog_mirror_mismatches_total{database="pgdog"}')
        s=$(metric "$METRICS" 'pgdog_mirror_sync_reads_total{database="pgdog",result="synced"}')
        l=$(metric "$METRICS" 'pgdog_mirror_sync_reads_total{database="pgdog",result="lagging"}')
        eq=$(metric "$METRICS" 'pgdog_mirror_sync_rechecks_total{database="pgdog",result="equal"}')
        RECHECKED=$((RECHECKED + eq))
        DELAY+="$d50 " LAG+="$l50 " QPS+="$qps "
        COMPARED=$((COMPARED + c)) MISMATCHED=$((MISMATCHED + m)) SYNCED=$((SYNCED + s)) LAGGING=$((LAGGING + l))
        extra=", gate delay p50 $d50 ms (p99 $d99), lag p50 $l50 ms (p99 $l99), $qps position queries/s, $m mismatches of $c compared, $eq set aside as rechecked, $l lagging"
        if ((m > 0)); then
            psql -h 127.0.0.1 -p "$ADMIN" -U admin -d pgdog -c "SHOW MIRROR QUERIES pgdog" 2>&1 |
                grep -i "mismatch" | head -n 5 >&2 || true
        fi
    fi
    stop_pgdog
    log "round $r $mode: TPC-B $wt tps, select-only $rt tps, proxy CPU $us us/txn, $sw context switches/txn$extra"
done

wo=$(med "${W[off]}") won=$(med "${W[on]}") ro=$(med "${R[off]}") ron=$(med "${R[on]}")
co=$(med "${CPU[off]}") con=$(med "${CPU[on]}")
so=$(med "${SW[off]}") son=$(med "${SW[on]}")
d=$(med "$DELAY") l=$(med "$LAG") q=$(med "$QPS")
cat <<MD

### Gated reads mirroring ($ROUNDS rounds x ${DURATION}s in off/on pairs (ABBA), TPC-B -c $WRITERS + select-only -c $READERS -R $RATE through pgdog, scale $SCALE, mirror_sync_interval_ms = $INTERVAL, primary synchronous_commit = $COMMIT; medians)

| mode | TPC-B tps | select-only tps | proxy CPU per transaction | proxy context switches per transaction |
|---|---:|---:|---:|---:|
| mirroring off | $(printf '%.0f' "$wo") | $(printf '%.0f' "$ro") | $co us | $so |
| reads mirrored, gated (logical) | $(printf '%.0f' "$won") | $(printf '%.0f' "$ron") | $con us | $son |
| **on / off** | **$(ratio "$won" "$wo")** | **$(ratio "$ron" "$ro")** | $(ratio "$con" "$co") | $(ratio "$son" "$so") |

- TPC-B on/off per pair of neighbouring rounds: $PAIR_RATIOS(median **$(med "$PAIR_RATIOS")**)
- Gate delay p50 (per round, median): **$d ms**; apply lag p50 + one interval: $l + $INTERVAL = $(awk -v a="$l" -v b="$INTERVAL" 'BEGIN {print a + b}') ms (goal: delay <= lag + interval)
- Position queries on the primary: $q per second (bound: $((1000 / INTERVAL)) while reads wait, 1 when none do)
- Compared reads: $COMPARED, mismatches $MISMATCHED ($(awk -v m="$MISMATCHED" -v c="$COMPARED" 'BEGIN {printf "%.3f", c ? 100 * m / c : 0}') %), set aside as rechecked $RECHECKED; reads released synced $SYNCED, lagging $LAGGING
MD
