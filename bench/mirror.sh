#!/usr/bin/env bash
# What mirroring costs the primary, and whether the mirror keeps up, measured side by side.
#
#   bench/mirror.sh            # 5 rounds x 5 modes, 10 s each, then TPC-B keep-up and memory (~10 min)
#   bench/mirror.sh --quick    # smoke: 1 round, 3 s each (~1 min)
#   bench/mirror.sh --compare  # result comparison's cost only: modes on and nocompare,
#                              # select-only and 100-row range reads, no keep-up/memory
#
#   bench/mirror.sh --baseline OLD --modes "direct off on off-base on-base"
#                              # A/B: modes ending in -base run the pgdog binary OLD (built from
#                              # another commit, its plugin .so beside it), interleaved
#
# Options: --rounds N --duration SECS --scale N --clients N --modes "direct off on nocompare stalled"
#          --workload select|range (range: 100-row reads by primary key range) --no-extra
#          --protocol prepared|extended|simple: pgbench's -M for the select-only part (default
#          prepared)
#          --autogroup keep|off: the kernel's autogroup scheduling as the machine has it
#          (default), or off for the run (root; put back at the end). See bench/keepup.sh.
#          --twin-cpu CPUS: each database's CPU cap in the keep-up run as twin hosts
#
# Two throwaway clusters (primary, mirror) with identical pgbench data; pgdog (release) in front.
# 1. Select-only (pgbench -S -M prepared, or --protocol), interleaved per round, in these modes:
#      direct   pgbench straight to the primary, no proxy
#      off      no mirror_of
#      on       mirror_exposure 1.0 to a healthy mirror (result comparison on, the default)
#      nocompare as on, with mirror_compare = false
#      stalled  the mirror's pgbench_accounts locked (ACCESS EXCLUSIVE) by an open transaction,
#               mirror_queue full, every request dropped
#    reports median tps, the ratio stalled/off, and the proxy's own CPU time per transaction
#    (utime+stime of the pgdog process from /proc, over the transactions pgbench completed),
#    with the ratio on/off: tps alone would charge the proxy for the mirror database's CPU,
#    which shares this machine's cores; and off/direct, on/direct.
# 2. Keep-up: TPC-B-like (pgbench default script, -c 8 -j 2, exposure 1.0, default queue 128)
#    through a mirrored pool: the share of mirrored requests dropped, pgbench_history rows on
#    the primary vs the mirror after the mirror drained, and the CPU each database used. Run
#    twice: on the machine as it is, and (root) as twin_hosts (scripts/lib.sh), each database
#    capped at --twin-cpu processors (default 0.6).
# 3. Memory: pgdog's resident size before and after a select-only run against the stalled mirror.
set -euo pipefail

ROUNDS=5 DURATION=10 SCALE=10 CLIENTS=8 MODES="direct off on nocompare stalled" WORKLOAD=select PROTOCOL=prepared EXTRA=1 TWIN_CPU=0.6
AUTOGROUP=keep BASELINE=""
while (($#)); do
    case $1 in
    --quick) ROUNDS=1 DURATION=3 SCALE=1 ;;
    --compare) MODES="on nocompare" EXTRA=0 ;;
    --modes) MODES=$2; shift ;;
    --workload) WORKLOAD=$2; shift ;;
    --protocol) PROTOCOL=$2; shift ;;
    --no-extra) EXTRA=0 ;;
    --rounds) ROUNDS=$2; shift ;;
    --duration) DURATION=$2; shift ;;
    --scale) SCALE=$2; shift ;;
    --clients) CLIENTS=$2; shift ;;
    --autogroup) AUTOGROUP=$2; shift ;;
    --twin-cpu) TWIN_CPU=$2; shift ;;
    --baseline) BASELINE=$2; shift ;;
    -h | --help) sed -n '2,/^set -e/p' "$0" | sed -n 's/^# \{0,1\}//p'; exit 0 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
    esac
    shift
done

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
# shellcheck source=scripts/lib.sh
source scripts/lib.sh
log() { printf '[mirror-bench %s] %s\n' "$(date +%T)" "$*" >&2; }
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
TICK=$(getconf CLK_TCK)

cargo build --release -q -p pgdog -p pgdog-mirror-stats
WORK=$(mktemp -d /dev/shm/pgdog-mirror-bench.XXXXXX)
chmod 755 "$WORK"
PGDOG_PID="" LOCKER_PID=""
ORIGINAL_AUTOGROUP=$(autogroup_state)
cleanup() {
    set +e
    [[ $AUTOGROUP != keep ]] && set_autogroup "$ORIGINAL_AUTOGROUP"
    [[ -n $LOCKER_PID ]] && kill "$LOCKER_PID" 2>/dev/null
    [[ -n $PGDOG_PID ]] && kill "$PGDOG_PID" 2>/dev/null && wait "$PGDOG_PID" 2>/dev/null
    pair_destroy "$WORK"
    service_cgroups_remove
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

pair_start "$WORK"
case $AUTOGROUP in
keep) ;;
off) set_autogroup off ;;
*) echo "unknown --autogroup $AUTOGROUP (keep or off)" >&2; exit 2 ;;
esac
log "kernel autogroup scheduling: $(autogroup_state) (on this machine: $ORIGINAL_AUTOGROUP)"
export PGPASSWORD=pgdog
init_data() { pgbench_init "$SCALE" "$PRIMARY" "$MIRROR" >/dev/null; }
init_data

PORT=$(free_port) ADMIN=$(free_port) METRICS=$(free_port)

config() { # config MIRRORED(0|1) [COMPARE(0|1)]
    pair_config "$1" "$( ((${2:-1})) || echo 'mirror_compare = false')"
}

start_pgdog() { # start_pgdog MIRRORED [COMPARE] [BINARY]
    config "$1" "${2:-1}" >"$WORK/pgdog.toml"
    "${3:-./target/release/pgdog}" --config "$WORK/pgdog.toml" >"$WORK/pgdog.log" 2>&1 &
    PGDOG_PID=$!
    wait_port "$PORT" "$PGDOG_PID" || { cat "$WORK/pgdog.log" >&2; return 1; }
}
stop_pgdog() { kill "$PGDOG_PID"; wait "$PGDOG_PID" 2>/dev/null || true; PGDOG_PID=""; }

stall_mirror() { # an open transaction holding an exclusive lock on the mirror
    psql -h 127.0.0.1 -p "$MIRROR" -U pgdog -d pgdog -q \
        -c "BEGIN" -c "LOCK TABLE pgbench_accounts IN ACCESS EXCLUSIVE MODE" -c "SELECT pg_sleep(100000)" >/dev/null 2>&1 &
    LOCKER_PID=$!
    sleep 0.5
}
unstall_mirror() { # ends the locking transaction (a killed psql alone leaves pg_sleep running)
    psql -h 127.0.0.1 -p "$MIRROR" -U pgdog -d pgdog -qAtc \
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE '%pg_sleep(100000)%' AND pid <> pg_backend_pid()" >/dev/null
    wait "$LOCKER_PID" 2>/dev/null || true
    LOCKER_PID=""
}

# --- 1. select-only, interleaved -------------------------------------------------------------
case $WORKLOAD in
select) LOAD=(-S) ;;
range)
    # 100 rows per query: what digesting rows costs on the primary path.
    cat >"$WORK/range.sql" <<'SQL'
\set aid random(1, 100000 * :scale - 100)
SELECT aid, bid, abalance, filler FROM pgbench_accounts WHERE aid BETWEEN :aid AND :aid + 99;
SQL
    LOAD=(-f "$WORK/range.sql" -D "scale=$SCALE") ;;
*) echo "unknown workload $WORKLOAD" >&2; exit 2 ;;
esac
declare -A TPS CPU ROUND_TPS DROPS
for ((r = 1; r <= ROUNDS; r++)); do
    for mode in $MODES; do
        mirrored=1 compare=1 port=$PORT bin=./target/release/pgdog kind=$mode
        if [[ $mode == *-base ]]; then
            [[ -n $BASELINE ]] || { echo "mode $mode needs --baseline" >&2; exit 2; }
            bin=$BASELINE kind=${mode%-base}
        fi
        [[ $kind == off ]] && mirrored=0
        [[ $kind == nocompare ]] && compare=0
        if [[ $kind == direct ]]; then
            port=$PRIMARY
        else
            start_pgdog "$mirrored" "$compare" "$bin"
        fi
        [[ $kind == stalled ]] && stall_mirror
        before=0 after=0
        [[ -n $PGDOG_PID ]] && before=$(process_ticks "$PGDOG_PID")
        out=$(pgbench -h 127.0.0.1 -p "$port" -U pgdog "${LOAD[@]}" -M "$PROTOCOL" -c "$CLIENTS" -j 2 -T "$DURATION" pgdog 2>&1)
        [[ -n $PGDOG_PID ]] && after=$(process_ticks "$PGDOG_PID")
        # Share of the mirrored requests dropped (healthy modes only: a stalled mirror drops
        # everything by design); read once the totals stop moving.
        drop_pct=-
        if [[ $kind == on || $kind == nocompare ]]; then
            last=$(settled_total "$METRICS" 40 0.25)
            drop_pct=$(awk -v d="$(metric "$METRICS" 'mirror{type="dropped"}')" -v t="$last" \
                'BEGIN {printf "%.2f", t ? 100 * d / t : 0}')
            DROPS[$mode]+="$drop_pct "
        fi
        [[ $kind == stalled ]] && unstall_mirror
        [[ -n $PGDOG_PID ]] && stop_pgdog
        tps=$(awk '/^tps = / {print $3}' <<<"$out")
        txns=$(awk '/number of transactions actually processed/ {split($6, a, "/"); print a[1]}' <<<"$out")
        grep -q 'number of failed transactions: 0 ' <<<"$out" || { echo "$out" >&2; log "failed transactions in $mode"; exit 1; }
        us=-
        if [[ $kind != direct ]]; then
            us=$(awk -v t=$((after - before)) -v hz="$TICK" -v n="$txns" 'BEGIN {printf "%.2f", t / hz * 1e6 / n}')
            CPU[$mode]+="$us "
        fi
        TPS[$mode]+="$tps "
        ROUND_TPS[$r,$mode]=$tps
        log "round $r $mode: $tps tps, proxy CPU $us us/txn, dropped $drop_pct %"
    done
done

declare -A TPS_M CPU_M
for mode in $MODES; do
    TPS_M[$mode]=$(med "${TPS[$mode]}")
    CPU_M[$mode]=-
    [[ $mode == direct ]] || CPU_M[$mode]="$(med "${CPU[$mode]}") us"
done
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}'; }
row() { # row MODE LABEL
    local drops=-
    [[ -n ${DROPS[$1]:-} ]] && drops="$(med "${DROPS[$1]}") %"
    [[ -n ${TPS_M[$1]:-} ]] && printf '| %s | %.0f | %s | %s |\n' "$2" "${TPS_M[$1]}" "${CPU_M[$1]}" "$drops"
    return 0
}
cat <<MD

### Mirroring cost on the primary path ($ROUNDS rounds x ${DURATION}s, pgbench $WORKLOAD -M $PROTOCOL -c $CLIENTS -j 2, scale $SCALE, autogroup $(autogroup_state); medians)

| mode | tps | proxy CPU per transaction | mirrored requests dropped |
|---|---:|---:|---:|
$(
    row direct "direct to the primary (no proxy)"
    row off "mirroring off"
    row on "mirroring on (healthy mirror, exposure 1.0, comparison on)"
    row nocompare "mirroring on, mirror_compare = false"
    row stalled "mirroring on, mirror stalled (queue full, dropping)"
    row off-base "baseline binary: mirroring off"
    row on-base "baseline binary: mirroring on"
    row stalled-base "baseline binary: mirror stalled"
)

MD
both() { [[ -n ${TPS_M[$1]:-} && -n ${TPS_M[$2]:-} ]]; }
paired() { # median over rounds of the per-round ratio A/B (modes of one round run back to back)
    for ((r = 1; r <= ROUNDS; r++)); do ratio "${ROUND_TPS[$r,$1]}" "${ROUND_TPS[$r,$2]}"; echo; done | median
}
if both stalled off; then echo "- stalled / off tps: **$(ratio "${TPS_M[stalled]}" "${TPS_M[off]}")** (goal >= 0.95); median of per-round ratios: $(paired stalled off)"; fi
if both on off; then
    echo "- on / off tps: $(ratio "${TPS_M[on]}" "${TPS_M[off]}") (the mirror database shares the 2 cores)"
    echo "- proxy CPU per transaction, on / off: **$(ratio "${CPU_M[on]% us}" "${CPU_M[off]% us}")** (goal <= 2)"
fi
if both off direct; then echo "- off / direct tps: $(ratio "${TPS_M[off]}" "${TPS_M[direct]}"); median of per-round ratios: $(paired off direct)"; fi
if both on direct; then echo "- on / direct tps: **$(ratio "${TPS_M[on]}" "${TPS_M[direct]}")**; median of per-round ratios: $(paired on direct)"; fi
if both on nocompare; then
    echo "- comparison on / off tps: **$(ratio "${TPS_M[on]}" "${TPS_M[nocompare]}")** (goal >= 0.97); median of per-round ratios: $(paired on nocompare)"
    echo "- proxy CPU per transaction, comparison on / off: $(ratio "${CPU_M[on]% us}" "${CPU_M[nocompare]% us}")"
fi
if both on-base off-base; then
    echo "- baseline binary: proxy CPU per transaction, on / off: **$(ratio "${CPU_M[on-base]% us}" "${CPU_M[off-base]% us}")**"
fi
if both on-base direct; then echo "- baseline binary: on / direct tps: **$(ratio "${TPS_M[on-base]}" "${TPS_M[direct]}")**; median of per-round ratios: $(paired on-base direct)"; fi
if both stalled-base off-base; then echo "- baseline binary: stalled / off tps: **$(ratio "${TPS_M[stalled-base]}" "${TPS_M[off-base]}")**; median of per-round ratios: $(paired stalled-base off-base)"; fi
if both on on-base; then
    echo "- this binary / baseline, mirroring on: tps $(ratio "${TPS_M[on]}" "${TPS_M[on-base]}") (per round: $(paired on on-base)), proxy CPU per transaction $(ratio "${CPU_M[on]% us}" "${CPU_M[on-base]% us}")"
fi
((EXTRA)) || exit 0

# --- 2. keep-up under TPC-B ------------------------------------------------------------------
# keepup SETUP: one TPC-B run through a mirrored pool, fresh data; appends its table row.
KEEPUP_ROWS=""
keepup() {
    log "TPC-B keep-up ($((DURATION * 2)) s, $1)"
    init_data
    start_pgdog 1
    local p0 m0 p1 m1 out tps total dropped errors hist_p hist_m
    p0=$(cluster_ticks "$WORK/primary") m0=$(cluster_ticks "$WORK/mirror")
    out=$(pgbench -h 127.0.0.1 -p "$PORT" -U pgdog -c 8 -j 2 -T $((DURATION * 2)) pgdog 2>&1)
    p1=$(cluster_ticks "$WORK/primary") m1=$(cluster_ticks "$WORK/mirror")
    tps=$(awk '/^tps = / {printf "%.0f", $3}' <<<"$out")
    total=$(settled_total "$METRICS")
    dropped=$(metric "$METRICS" 'mirror{type="dropped"}')
    errors=$(($(metric "$METRICS" 'mirror{error_type="connection"}') + $(metric "$METRICS" 'mirror{error_type="query"}') + $(metric "$METRICS" 'mirror{error_type="timeout"}')))
    stop_pgdog
    hist_p=$(psql -h 127.0.0.1 -p "$PRIMARY" -U pgdog -d pgdog -Atc 'SELECT count(*) FROM pgbench_history')
    hist_m=$(psql -h 127.0.0.1 -p "$MIRROR" -U pgdog -d pgdog -Atc 'SELECT count(*) FROM pgbench_history')
    KEEPUP_ROWS+="| $1 | $tps | **$(awk -v d="$dropped" -v t="$total" 'BEGIN {printf "%.2f", t ? 100 * d / t : 0}') %** ($dropped of $total) | $errors | $hist_p / $hist_m | $(awk -v a=$((p1 - p0)) -v b=$((m1 - m0)) -v hz="$TICK" 'BEGIN {printf "%.1f / %.1f", a / hz, b / hz}') |
"
}
keepup "this machine as it is (autogroup $(autogroup_state))"
if [[ $EUID == 0 ]] && cpu_cgroup_root >/dev/null 2>&1 && twin_hosts "$WORK" "$TWIN_CPU"; then
    keepup "twins: each database capped at $TWIN_CPU CPU"
else
    log "keep-up with twins skipped: it needs root and cpu cgroups this shell may create"
fi
service_cgroups_remove

# --- 3. memory with a stalled mirror under load ----------------------------------------------
log "memory with a stalled mirror ($((DURATION * 2)) s)"
start_pgdog 1
stall_mirror
rss_before=$(rss_kb "$PGDOG_PID")
pgbench -h 127.0.0.1 -p "$PORT" -U pgdog -S -M prepared -c "$CLIENTS" -j 2 -T $((DURATION * 2)) pgdog >/dev/null 2>&1
rss_after=$(rss_kb "$PGDOG_PID")
unstall_mirror
stop_pgdog

cat <<MD

### Keep-up (TPC-B-like, -c 8 -j 2, $((DURATION * 2)) s, exposure 1.0, mirror_queue 128; goal: under 1 % dropped with a mirror as fast as the primary)

"twins" models that goal's condition, two database hosts of the same capacity (twin_hosts in
scripts/lib.sh). As it is, the mirror database competes with the primary's closed loop
(pgbench, pgdog, primary) for the same two cores.

| setup | primary tps | mirrored requests dropped | mirror errors | pgbench_history rows primary / mirror | CPU s primary / mirror database |
|---|---:|---:|---:|---:|---:|
$KEEPUP_ROWS
### Memory with a stalled mirror under load ($((DURATION * 2)) s select-only, every request dropped)

- pgdog resident: $((rss_before / 1024)) MB before, $((rss_after / 1024)) MB after
MD
