#!/usr/bin/env bash
# pgbench through pgdog, next to PgBouncer and PostgreSQL itself, interleaved in one run.
#
#   bench/pgbench.sh            # 5 rounds x 3 targets x 3 workloads, 12 s each (~9 min)
#   bench/pgbench.sh --quick    # smoke: 1 round, 3 s each, scale 1 (~40 s)
#
# Options: --rounds N  --duration SECS  --scale N  --clients N  --threads N
#          --targets direct,pgbouncer,pgdog  --pgdog-bin PATH (default target/release/pgdog, built with
#                 the stats plugin if either is missing)
#          --modes "select-prepared select-simple tpcb select-connect sleep-1ms"
#          --tls: every leg over TLS (clients to the proxies and to PostgreSQL with sslmode=require, the
#                 proxies to PostgreSQL with server_tls_sslmode=require; PostgreSQL takes TLS only), and
#                 select-connect (-C: a new connection, so a TLS handshake, per transaction) added
#          --idle N: after the runs, each proxy's resident memory with N idle clients connected
#          --idle-after-query: those idle clients each ran one query first (idle between transactions,
#                 as an application's pooled connections are, rather than never used)
#          --baseline PATH: another pgdog binary as target pgdog-base, for an A/B in the same run
#          --pool-mode session|transaction (pgdog's and PgBouncer's), --pool-size N (server connections;
#                 in session mode the proxies' pools also get one per idle client)
#          --workers N: pgdog's `workers` (0: one thread per CPU, pgdog's default; 1: one thread, as
#                 PgBouncer runs); --baseline-workers N: the baseline's (default: --workers), so that
#                 --baseline target/release/pgdog --baseline-workers 0 --workers 1 compares the two
#          sleep-1ms (a workload): each transaction holds its server connection for a millisecond
#                 of waiting (pg_sleep), so that clients queue for the server connections rather than
#                 for the two cores
#
# Environment: PGBENCH_WRAP=CMD runs each pgbench under CMD (for example a script that runs
#          `strace -c -f -o FILE "$@"`, to count pgbench's system calls per target);
#          KEEP_RESULTS=DIR keeps the per-run figures (one file per target, workload and column).
#
# Starts its own throwaway PostgreSQL 15 cluster (scripts/pg-cluster.sh: fsync off, on tmpfs when
# available), PgBouncer (Debian package, session pool mode) and pgdog on free ports, runs every workload
# against every target in rotating order per round so drift on a shared machine hits all targets
# alike, then prints per target and workload the median tps and latency, the CPU (user + system,
# from /proc) per transaction of the proxy, of PostgreSQL and of pgbench, PostgreSQL's context
# switches per transaction (behind a proxy), how busy both cores were (from /proc/stat), the proxies' resident
# memory at the end, and the ratios pgdog/PgBouncer and pgdog/direct, as a plain table and as
# markdown for docs/benchmarks.md. Exits non-zero if a target did not start, a run failed, or
# had failed transactions.
# Everything it starts is stopped and removed on exit.
set -euo pipefail

ROUNDS=5 DURATION=12 SCALE=10 CLIENTS=8 THREADS=2 WARMUP=3
TARGETS="direct,pgbouncer,pgdog"
PG_BIN="${PG_BIN:-/usr/lib/postgresql/15/bin}"
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PGDOG_BIN="${PGDOG_BIN:-$REPO/target/release/pgdog}"
QUICK=0
TLS=0
IDLE=0
IDLE_QUERY=0
MODES_ARG=""
BASELINE=""
POOL_MODE=session
POOL_SIZE=20
WORKERS=0
BASE_WORKERS=""

while (($#)); do
    case $1 in
    --quick) QUICK=1 ROUNDS=1 DURATION=3 SCALE=1 WARMUP=1 ;;
    --rounds) ROUNDS=$2; shift ;;
    --duration) DURATION=$2; shift ;;
    --scale) SCALE=$2; shift ;;
    --clients) CLIENTS=$2; shift ;;
    --threads) THREADS=$2; shift ;;
    --targets) TARGETS=$2; shift ;;
    --pgdog-bin) PGDOG_BIN=$2; shift ;;
    --modes) MODES_ARG=$2; shift ;;
    --tls) TLS=1 ;;
    --idle) IDLE=$2; shift ;;
    --idle-after-query) IDLE_QUERY=1 ;;
    --baseline) BASELINE=$2; shift ;;
    --pool-mode) POOL_MODE=$2; shift ;;
    --pool-size) POOL_SIZE=$2; shift ;;
    --workers) WORKERS=$2; shift ;;
    --baseline-workers) BASE_WORKERS=$2; shift ;;
    -h | --help) sed -n '2,40p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

log() { printf '[bench %s] %s\n' "$(date +%T)" "$*" >&2; }
# Server connections per proxy: in session mode every idle client holds one too.
POOL_TOTAL=$POOL_SIZE
[[ $POOL_MODE == session ]] && POOL_TOTAL=$((IDLE + POOL_SIZE))
die() { log "error: $*"; exit 1; }

[[ -x $PG_BIN/initdb && -x $PG_BIN/pgbench ]] || die "no PostgreSQL 15 in $PG_BIN (run scripts/setup.sh)"
IS_ROOT=0
[[ $(id -u) -eq 0 ]] && IS_ROOT=1
as_pg() { if ((IS_ROOT)); then runuser -u postgres -- "$@"; else "$@"; fi; }

# --- work dir and clean-up -------------------------------------------------------------------------
base=/tmp
[[ -d /dev/shm && -w /dev/shm ]] && base=/dev/shm
WORK=$(mktemp -d "$base/pgdog-bench-XXXXXX")
chmod 755 "$WORK"
((IS_ROOT)) && chown postgres: "$WORK"
PGDOG_PID="" BASE_PID="" BOUNCER_PIDFILE="$WORK/pgbouncer.pid"

cleanup() {
    set +e
    if [[ -n $PGDOG_PID ]] && kill -0 "$PGDOG_PID" 2>/dev/null; then
        kill -TERM "$PGDOG_PID" 2>/dev/null
        for _ in $(seq 50); do kill -0 "$PGDOG_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$PGDOG_PID" 2>/dev/null
    fi
    if [[ -n $BASE_PID ]]; then kill -TERM "$BASE_PID" 2>/dev/null; fi
    if [[ -s $BOUNCER_PIDFILE ]]; then kill -TERM "$(cat "$BOUNCER_PIDFILE")" 2>/dev/null; fi
    "$REPO/scripts/pg-cluster.sh" destroy "$WORK/pg" >/dev/null 2>&1
    [[ -n ${KEEP_RESULTS:-} ]] && cp -r "$WORK/results" "$KEEP_RESULTS"
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- helpers ---------------------------------------------------------------------------------------
USED_PORTS=" "
free_port() { # a port below the ephemeral range that nothing listens on and we have not used
    local p
    for _ in $(seq 200); do
        p=$((20000 + RANDOM % 12000))
        [[ $USED_PORTS == *" $p "* ]] && continue
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
            USED_PORTS+="$p "
            echo "$p"
            return 0
        fi
    done
    die "no free port found"
}
wait_port() { # wait_port PORT SECONDS [PID]: until something accepts on PORT (fail if PID dies)
    local deadline=$((SECONDS + $2))
    while ((SECONDS < deadline)); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        if [[ -n ${3:-} ]] && ! kill -0 "$3" 2>/dev/null; then return 1; fi
        sleep 0.1
    done
    return 1
}
CLK_TCK=$(getconf CLK_TCK)
cpu_ticks() { if [[ -n ${1:-} ]]; then awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || true; fi; } # utime + stime of PID
# PostgreSQL's postmaster: its pid, then its live children's.
pg_pids() {
    local pm
    pm=$(head -1 "$WORK/pg/data/postmaster.pid" 2>/dev/null) || return 0
    echo "$pm"
    pgrep -P "$pm" || true
}
# PostgreSQL's CPU ticks: the postmaster's, its live children's, and those of its children that
# exited (which the kernel adds to the postmaster's cutime/cstime, fields 16 and 17, once it
# reaps them; a child's own are 0).
pg_ticks() {
    local p
    for p in $(pg_pids); do cat "/proc/$p/stat"; done 2>/dev/null | awk '{s += $14 + $15 + $16 + $17} END {print s + 0}'
}
# Context switches of PostgreSQL's live processes, voluntary (a backend that found nothing to
# read and slept) and not, from /proc/PID/status.
pg_switches() {
    local p
    for p in $(pg_pids); do cat "/proc/$p/status"; done 2>/dev/null |
        awk '/^(non)?voluntary_ctxt_switches:/ {s += $2} END {print s + 0}'
}
# CPU seconds of this shell's reaped children (pgbench), user + system, into CHILD_SECS: from
# `times`, which must run in this shell (a subshell's own children start at zero).
child_secs() {
    times >"$WORK/times"
    CHILD_SECS=$(tail -1 "$WORK/times" | awk '{n = 0; for (i = 1; i <= 2; i++) {split($i, a, /[ms]/); n += a[1] * 60 + a[2]} print n}')
}
# per_txn TICKS N: clock ticks as microseconds per transaction.
per_txn() { awk -v d="$1" -v n="$2" -v hz="$CLK_TCK" 'BEGIN {printf "%.2f\n", d * 1e6 / hz / n}'; }
# Jiffies of the whole machine: busy and total, from /proc/stat.
machine_ticks() { awk '/^cpu / {t = 0; for (i = 2; i <= NF; i++) t += $i; print t - $5 - $6, t}' /proc/stat; }
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo ""; }
rss_split() { awk '/^Rss(Anon|File):/ {printf "%s %.1f MB ", $1, $2 / 1024}' "/proc/$1/status" 2>/dev/null || true; } # anonymous / file-backed
# Its own median: prints nothing for no input (a target that did not run); lib.sh's prints 0.
median() { sort -g | awk '{v[NR]=$1} END {if (NR==0) {print ""} else if (NR%2) {print v[(NR+1)/2]} else {print (v[NR/2]+v[NR/2+1])/2}}'; }

# --- PostgreSQL --------------------------------------------------------------------------------------
TLS_ARGS=()
if ((TLS)); then
    bash "$REPO/scripts/tls-certs.sh" "$WORK/certs"
    ((IS_ROOT)) && chown -R postgres: "$WORK/certs"
    TLS_ARGS=(--tls "$WORK/certs")
    export PGSSLMODE=require
fi
log "initdb + start PostgreSQL ($WORK/pg)$( ((TLS)) && echo ", TLS only")"
PGPORT=$("$REPO/scripts/pg-cluster.sh" start "$WORK/pg" -p "$(free_port)" -c max_connections=$((POOL_TOTAL * 3 + CLIENTS + 100)) \
    -c shared_buffers=128MB "${TLS_ARGS[@]}") || die "PostgreSQL did not start"
USED_PORTS+="$PGPORT "
pg_super() { "$REPO/scripts/pg-cluster.sh" psql "$WORK/pg" -q -v ON_ERROR_STOP=1 "$@"; }
pg_super -d postgres -c 'CREATE DATABASE pgbench OWNER pgdog' >/dev/null
log "PostgreSQL $("$PG_BIN/postgres" --version | awk '{print $3}') on port $PGPORT"
export PGPASSWORD=pgdog
log "pgbench -i -s $SCALE"
"$PG_BIN/pgbench" -i -q -s "$SCALE" -h 127.0.0.1 -p "$PGPORT" -U pgdog pgbench >"$WORK/init.log" 2>&1 ||
    { cat "$WORK/init.log" >&2; die "pgbench -i failed"; }

declare -A PORT=([direct]=$PGPORT)
declare -A PROXY_PID=()
ACTIVE=() SKIPPED=()

# --- PgBouncer ---------------------------------------------------------------------------------------
start_pgbouncer() {
    command -v pgbouncer >/dev/null || { log "pgbouncer not installed (scripts/setup.sh): skipped"; return 1; }
    local port
    port=$(free_port)
    cat >"$WORK/pgbouncer.ini" <<EOF
[databases]
pgbench = host=127.0.0.1 port=$PGPORT dbname=pgbench user=pgdog password=pgdog

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $port
unix_socket_dir =
auth_type = scram-sha-256
auth_file = $WORK/userlist.txt
pool_mode = $POOL_MODE
default_pool_size = $POOL_TOTAL
max_client_conn = $((IDLE + CLIENTS + 200))
logfile = $WORK/pgbouncer.log
pidfile = $BOUNCER_PIDFILE
admin_users = pgdog
EOF
    if ((TLS)); then
        cat >>"$WORK/pgbouncer.ini" <<EOF
client_tls_sslmode = require
client_tls_cert_file = $WORK/certs/server.crt
client_tls_key_file = $WORK/certs/server.key
server_tls_sslmode = require
EOF
    fi
    echo '"pgdog" "pgdog"' >"$WORK/userlist.txt"
    ((IS_ROOT)) && chown postgres: "$WORK/pgbouncer.ini" "$WORK/userlist.txt"
    # PgBouncer refuses to run as root: as_pg runs it as postgres then. It needs a
    # descriptor per client and per server connection (pgdog raises its own limit; runuser
    # resets the soft limit to 1024, so it is raised inside).
    if ! as_pg sh -c 'ulimit -n "$(ulimit -Hn)"; exec pgbouncer -d "$1"' sh "$WORK/pgbouncer.ini" >"$WORK/pgbouncer.out" 2>&1 || ! wait_port "$port" 10; then
        cat "$WORK/pgbouncer.out" >&2
        tail -20 "$WORK/pgbouncer.log" >&2 2>/dev/null
        log "PgBouncer did not start: skipped"
        return 1
    fi
    PORT[pgbouncer]=$port
    PROXY_PID[pgbouncer]=$(cat "$BOUNCER_PIDFILE")
    log "PgBouncer $(pgbouncer --version | head -1 | awk '{print $2}') on port $port ($POOL_MODE mode)"
}

# --- pgdog -------------------------------------------------------------------------------------------
start_pgdog() { # start_pgdog TARGET BINARY
    local name=$1 bin=$2
    # The binary loads the stats plugin from beside it: a checkout's build needs both.
    if [[ ! -x $bin || ! -f $(dirname "$bin")/libpgdog_mirror_stats.so ]]; then
        if [[ $bin == "$REPO/target/release/pgdog" ]]; then
            log "building pgdog (cargo build --release -p pgdog -p pgdog-mirror-stats)"
            (cd "$REPO" && cargo build --release -q -p pgdog -p pgdog-mirror-stats) ||
                { log "pgdog build failed: skipped"; return 1; }
        elif [[ ! -x $bin ]]; then
            log "no pgdog binary at $bin: skipped"
            return 1
        fi
    fi
    local port admin metrics
    port=$(free_port) admin=$(free_port) metrics=$(free_port)
    cat >"$WORK/$name.toml" <<EOF
[general]
host = "127.0.0.1"
port = $port
admin_port = $admin
metrics_port = $metrics
auth_type = "scram-sha-256"
max_client_conn = $((IDLE + CLIENTS + 200))
pool_mode = "$POOL_MODE"
workers = $([[ $name == pgdog-base ]] && echo "${BASE_WORKERS:-$WORKERS}" || echo "$WORKERS")
$( ((TLS)) && printf 'client_tls_cert_file = "%s"\nclient_tls_key_file = "%s"\nclient_tls_sslmode = "require"\nserver_tls_sslmode = "require"\n' "$WORK/certs/server.crt" "$WORK/certs/server.key")

[[pools]]
name = "pgbench"
database = "pgbench"
host = "127.0.0.1"
port = $PGPORT
user = "pgdog"
password = "pgdog"
pool_size = $POOL_TOTAL
EOF
    # The baseline may predate pool_mode: its config leaves the key out in session mode.
    [[ $POOL_MODE == session ]] && sed -i '/^pool_mode = /d' "$WORK/$name.toml"
    RUST_LOG="${RUST_LOG:-warn}" "$bin" --config "$WORK/$name.toml" >"$WORK/$name.log" 2>&1 &
    local pid=$!
    [[ $name == pgdog ]] && PGDOG_PID=$pid
    [[ $name == pgdog-base ]] && BASE_PID=$pid
    if ! wait_port "$port" 15 "$pid"; then
        log "$name failed to start (binary $bin); its log:"
        tail -30 "$WORK/$name.log" >&2
        kill -KILL "$pid" 2>/dev/null || true
        log "$name: skipped"
        return 1
    fi
    # The proxy port is open; make sure a query actually goes through before measuring.
    if ! "$PG_BIN/psql" -X -q -At -h 127.0.0.1 -p "$port" -U pgdog -d pgbench -c 'SELECT 1' >/dev/null 2>"$WORK/pgdog-probe.err"; then
        log "$name accepts connections but a query through it failed: $(cat "$WORK/pgdog-probe.err")"
        log "$name: skipped"
        return 1
    fi
    PORT[$name]=$port
    PROXY_PID[$name]=$pid
    log "$name on port $port (pid $pid, $bin)"
}

IFS=, read -r -a WANTED <<<"$TARGETS"
for t in "${WANTED[@]}"; do
    case $t in
    direct) ACTIVE+=(direct) ;;
    pgbouncer) if start_pgbouncer; then ACTIVE+=(pgbouncer); else SKIPPED+=(pgbouncer); fi ;;
    pgdog) if start_pgdog pgdog "$PGDOG_BIN"; then ACTIVE+=(pgdog); else SKIPPED+=(pgdog); fi ;;
    *) die "unknown target $t" ;;
    esac
done
if [[ -n $BASELINE ]]; then
    if start_pgdog pgdog-base "$BASELINE"; then ACTIVE+=(pgdog-base); else SKIPPED+=(pgdog-base); fi
fi
((${#ACTIVE[@]})) || die "no target could be started"

# --- runs --------------------------------------------------------------------------------------------
MODES=(select-prepared select-simple tpcb)
((TLS)) && MODES+=(select-connect)
[[ -n $MODES_ARG ]] && read -r -a MODES <<<"$MODES_ARG"
mode_args() {
    case $1 in
    select-prepared) echo "-S -M prepared" ;;
    select-simple) echo "-S -M simple" ;;
    select-connect) echo "-S -M simple -C" ;;
    sleep-1ms) echo "-M simple -f $WORK/sleep-1ms.sql" ;;
    tpcb) echo "-M simple" ;;
    *) die "unknown mode $1" ;;
    esac
}
mkdir -p "$WORK/results"
# sleep-1ms: a transaction that holds its server connection for a millisecond of waiting, not
# of CPU, so that the server connections, not the two cores, are what clients queue for (as
# behind a transaction pooler in production): how fast a connection given back starts on the
# next client's transaction decides the throughput.
echo 'SELECT pg_sleep(0.001);' >"$WORK/sleep-1ms.sql"
FAILED_RUNS=0
run_one() { # run_one TARGET MODE SECONDS RECORD(0|1)
    local target=$1 mode=$2 secs=$3 record=$4 out tps lat failed cpu0 cpu1 txns
    local pg0 pg1 bench0 bench1 m0 m1 sw0 sw1
    cpu0=$(cpu_ticks "${PROXY_PID[$target]:-}")
    child_secs
    pg0=$(pg_ticks) bench0=$CHILD_SECS m0=$(machine_ticks) sw0=$(pg_switches)
    # shellcheck disable=SC2046
    if ! out=$(${PGBENCH_WRAP:-} "$PG_BIN/pgbench" -n -h 127.0.0.1 -p "${PORT[$target]}" -U pgdog -c "$CLIENTS" -j "$THREADS" \
        -T "$secs" $(mode_args "$mode") pgbench 2>&1); then
        log "pgbench failed on $target/$mode:"
        printf '%s\n' "$out" | tail -5 >&2
        FAILED_RUNS=$((FAILED_RUNS + 1))
        return 0
    fi
    # "(without initial connection time)", or with -C "(including reconnection times)".
    tps=$(sed -n 's/^tps = \([0-9.]*\) (\(without initial connection time\|including reconnection times\))/\1/p' <<<"$out")
    lat=$(sed -n 's/^latency average = \([0-9.]*\) ms/\1/p' <<<"$out")
    failed=$(sed -n 's/^number of failed transactions: \([0-9]*\).*/\1/p' <<<"$out")
    cpu1=$(cpu_ticks "${PROXY_PID[$target]:-}")
    child_secs
    pg1=$(pg_ticks) bench1=$CHILD_SECS m1=$(machine_ticks) sw1=$(pg_switches)
    txns=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' <<<"$out")
    if [[ -n $failed && $failed != 0 ]]; then
        log "$target/$mode: $failed failed transactions"
        FAILED_RUNS=$((FAILED_RUNS + 1))
    fi
    if ((record)); then
        echo "$tps" >>"$WORK/results/$target.$mode.tps"
        echo "$lat" >>"$WORK/results/$target.$mode.lat"
        # The proxy's CPU (user + system) per transaction, in microseconds.
        [[ -n $cpu0 && -n $cpu1 && ${txns:-0} -gt 0 ]] && per_txn $((cpu1 - cpu0)) "$txns" >>"$WORK/results/$target.$mode.cpu"
        # Where the rest of the machine's CPU went: PostgreSQL's and pgbench's per transaction,
        # and how busy both cores were.
        if [[ ${txns:-0} -gt 0 ]]; then
            per_txn $((pg1 - pg0)) "$txns" >>"$WORK/results/$target.$mode.pgcpu"
            awk -v a="$bench0" -v b="$bench1" -v n="$txns" 'BEGIN {printf "%.2f\n", (b - a) * 1e6 / n}' \
                >>"$WORK/results/$target.$mode.benchcpu"
            # Only PostgreSQL's live processes count: behind a proxy its backends outlive the
            # run, while pgbench's own (direct) come and go within it.
            [[ $target == direct ]] ||
                awk -v d=$((sw1 - sw0)) -v n="$txns" 'BEGIN {printf "%.2f\n", d / n}' >>"$WORK/results/$target.$mode.pgswitch"
            awk -v a="$m0" -v b="$m1" 'BEGIN {split(a, x, " "); split(b, y, " "); if (y[2] > x[2]) printf "%.1f\n", 100 * (y[1] - x[1]) / (y[2] - x[2])}' \
                >>"$WORK/results/$target.$mode.busy"
        fi
        log "$(printf '%-10s %-16s tps %10.1f  latency %7.3f ms' "$target" "$mode" "$tps" "$lat")"
    fi
}

# PgBouncer before 1.21 has no prepared statement support in transaction mode: pgbench -M prepared
# fails there (ERROR: prepared statement "P_0" does not exist), so that pair is not run.
bouncer_cannot() { # bouncer_cannot TARGET MODE
    [[ $1 == pgbouncer && $2 == select-prepared && $POOL_MODE == transaction ]] || return 1
    local v
    v=$(pgbouncer --version | head -1 | awk '{print $2}')
    [[ $(printf '%s\n1.21.0\n' "$v" | sort -V | head -1) != 1.21.0 ]]
}
if [[ $POOL_MODE == transaction ]] && bouncer_cannot pgbouncer select-prepared; then
    log "PgBouncer $(pgbouncer --version | head -1 | awk '{print $2}') cannot run -M prepared in transaction mode: not run there"
fi

if ((WARMUP > 0)); then
    log "warm-up (${WARMUP}s per target)"
    for t in "${ACTIVE[@]}"; do run_one "$t" select-simple "$WARMUP" 0; done
fi

n=${#ACTIVE[@]}
for ((r = 0; r < ROUNDS; r++)); do
    log "round $((r + 1))/$ROUNDS"
    for mode in "${MODES[@]}"; do
        # Rotate the target order each round so no target always runs first or last.
        for ((i = 0; i < n; i++)); do
            t=${ACTIVE[$(((i + r) % n))]}
            bouncer_cannot "$t" "$mode" && continue
            if [[ $mode == tpcb ]]; then # same starting state for every TPC-B run
                pg_super -d pgbench -c 'TRUNCATE pgbench_history' \
                    -c 'VACUUM pgbench_branches, pgbench_tellers' >/dev/null ||
                    log "vacuum before tpcb failed"
            fi
            run_one "$t" "$mode" "$DURATION" 1
        done
    done
done

declare -A RSS=()
for t in "${!PROXY_PID[@]}"; do
    RSS[$t]=$(rss_kb "${PROXY_PID[$t]}")
    log "$t at the end of the runs: $(rss_split "${PROXY_PID[$t]}")"
done

# --- idle clients ------------------------------------------------------------------------------------
declare -A IDLE_RSS=()
if ((IDLE > 0)); then
    for t in "${!PROXY_PID[@]}"; do
        # One process holds them all (psycopg, libpq underneath), with sslmode from the environment.
        /usr/bin/python3 - "${PORT[$t]}" "$IDLE" "$WORK/idle.$t" "$IDLE_QUERY" <<'PY' &
import asyncio, psycopg, sys, time, pathlib
port, n, flag, query = int(sys.argv[1]), int(sys.argv[2]), pathlib.Path(sys.argv[3]), sys.argv[4] == "1"
args = dict(host="127.0.0.1", port=port, user="pgdog", password="pgdog", dbname="pgbench")
if not query:
    # Logged in, nothing run: psycopg's query path waits with select(), which cannot take
    # descriptors past 1024; the login (libpq) can.
    conns = [psycopg.connect(**args) for _ in range(n)]
else:
    # Each ran one query, then idles: asyncio waits with epoll, past 1024 descriptors.
    async def one():
        c = await psycopg.AsyncConnection.connect(autocommit=True, **args)
        await c.execute("SELECT 1")
        return c
    async def all_of_them():
        return [await one() for _ in range(n)]
    conns = asyncio.run(all_of_them())
flag.write_text("up")
time.sleep(30)
PY
        holder=$!
        for _ in $(seq 1200); do [[ -f $WORK/idle.$t ]] && break; sleep 0.1; done
        [[ -f $WORK/idle.$t ]] || log "$t: $IDLE idle clients did not all connect"
        sleep 2
        IDLE_RSS[$t]=$(rss_kb "${PROXY_PID[$t]}")
        log "$t with $IDLE idle clients: $(awk -v k="${IDLE_RSS[$t]}" 'BEGIN {printf "%.1f MB", k / 1024}')" \
            "($(rss_split "${PROXY_PID[$t]}"))"
        kill "$holder" 2>/dev/null; wait "$holder" 2>/dev/null || true
    done
fi

# --- report ------------------------------------------------------------------------------------------
declare -A TPS=() LAT=() CPUS=() PGCPU=() BENCHCPU=() BUSY=() PGSWITCH=()
# column_median FILE: the median of a per-run column, empty if it was not recorded.
column_median() { if [[ -f $WORK/results/$1 ]]; then median <"$WORK/results/$1"; fi; }
for t in "${ACTIVE[@]}"; do
    for mode in "${MODES[@]}"; do
        [[ -f $WORK/results/$t.$mode.tps ]] || continue # not run (PgBouncer, prepared, transaction mode)
        TPS[$t.$mode]=$(median <"$WORK/results/$t.$mode.tps")
        LAT[$t.$mode]=$(median <"$WORK/results/$t.$mode.lat")
        CPUS[$t.$mode]=$(column_median "$t.$mode.cpu")
        PGCPU[$t.$mode]=$(column_median "$t.$mode.pgcpu")
        BENCHCPU[$t.$mode]=$(column_median "$t.$mode.benchcpu")
        BUSY[$t.$mode]=$(column_median "$t.$mode.busy")
        PGSWITCH[$t.$mode]=$(column_median "$t.$mode.pgswitch")
    done
done
ratio() { # ratio A B -> A/B with 2 decimals, or n/a
    if [[ -n ${1:-} && -n ${2:-} ]]; then awk -v a="$1" -v b="$2" 'BEGIN {if (b > 0) printf "%.2f", a / b; else print "n/a"}'; else echo "n/a"; fi
}
fmt() { if [[ -n ${1:-} ]]; then printf "%.${2}f" "$1"; else echo "-"; fi; }
mem() { if [[ -n ${RSS[$1]:-} ]]; then awk -v k="${RSS[$1]}" 'BEGIN {printf "%.1f MB", k / 1024}'; else echo "-"; fi; }

CPU=$(grep -c ^processor /proc/cpuinfo)
TLS_NOTE=""
((TLS)) && TLS_NOTE="; every leg TLS"
HEADER="pgbench -c $CLIENTS -j $THREADS, $ROUNDS round(s) x ${DURATION}s per run, scale $SCALE, medians; $CPU CPUs$TLS_NOTE"
echo
echo "$HEADER"
printf '%-10s %-16s %12s %14s %12s\n' target workload "tps" "latency (ms)" "proxy RSS"
for t in "${ACTIVE[@]}"; do
    for mode in "${MODES[@]}"; do
        printf '%-10s %-16s %12s %14s %12s\n' "$t" "$mode" "$(fmt "${TPS[$t.$mode]:-}" 1)" \
            "$(fmt "${LAT[$t.$mode]:-}" 3)" "$(if [[ $t == direct ]]; then echo -; else mem "$t"; fi)"
    done
done
echo
printf '%-16s %18s %15s %17s\n' workload "pgdog/pgbouncer" "pgdog/direct" "pgdog/pgdog-base"
for mode in "${MODES[@]}"; do
    printf '%-16s %18s %15s %17s\n' "$mode" "$(ratio "${TPS[pgdog.$mode]:-}" "${TPS[pgbouncer.$mode]:-}")" \
        "$(ratio "${TPS[pgdog.$mode]:-}" "${TPS[direct.$mode]:-}")" "$(ratio "${TPS[pgdog.$mode]:-}" "${TPS[pgdog-base.$mode]:-}")"
done

echo
echo "<!-- markdown for docs/benchmarks.md -->"
echo "Command: \`bench/pgbench.sh$( ((QUICK)) && echo " --quick")$( ((TLS)) && echo " --tls")$( ((IDLE)) && echo " --idle $IDLE")$( ((IDLE_QUERY)) && echo " --idle-after-query")$( [[ $POOL_MODE != session ]] && echo " --pool-mode $POOL_MODE --pool-size $POOL_SIZE")$( ((CLIENTS != 8)) && echo " --clients $CLIENTS")$( ((WORKERS != 0)) && echo " --workers $WORKERS")$( [[ -n $BASE_WORKERS ]] && echo " --baseline-workers $BASE_WORKERS")$( [[ -n $MODES_ARG ]] && echo " --modes \"$MODES_ARG\"")$( [[ -n $BASELINE ]] && echo " --baseline BIN")\` ($HEADER; PostgreSQL $("$PG_BIN/postgres" --version | awk '{print $3}'), $(date -u +%Y-%m-%d))"
echo
echo "| target | workload | median tps | median latency (ms) | proxy CPU per transaction (us) | PostgreSQL CPU per transaction (us) | pgbench CPU per transaction (us) | PostgreSQL context switches per transaction | both cores busy (%) | proxy RSS at end |"
echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"
for t in "${ACTIVE[@]}"; do
    for mode in "${MODES[@]}"; do
        echo "| $t | $mode | $(fmt "${TPS[$t.$mode]:-}" 1) | $(fmt "${LAT[$t.$mode]:-}" 3) | $(fmt "${CPUS[$t.$mode]:-}" 2) | $(fmt "${PGCPU[$t.$mode]:-}" 2) | $(fmt "${BENCHCPU[$t.$mode]:-}" 2) | $(fmt "${PGSWITCH[$t.$mode]:-}" 2) | $(fmt "${BUSY[$t.$mode]:-}" 1) | $(if [[ $t == direct ]]; then echo -; else mem "$t"; fi) |"
    done
done
echo
echo "| workload | pgdog / PgBouncer (tps) | pgdog / direct (tps) | pgdog / pgdog-base (tps) | CPU per transaction: pgdog / PgBouncer | pgdog / pgdog-base |"
echo "|---|---:|---:|---:|---:|---:|"
for mode in "${MODES[@]}"; do
    echo "| $mode | $(ratio "${TPS[pgdog.$mode]:-}" "${TPS[pgbouncer.$mode]:-}") | $(ratio "${TPS[pgdog.$mode]:-}" "${TPS[direct.$mode]:-}") | $(ratio "${TPS[pgdog.$mode]:-}" "${TPS[pgdog-base.$mode]:-}") | $(ratio "${CPUS[pgdog.$mode]:-}" "${CPUS[pgbouncer.$mode]:-}") | $(ratio "${CPUS[pgdog.$mode]:-}" "${CPUS[pgdog-base.$mode]:-}") |"
done

if ((IDLE > 0)); then
    echo
    echo "| proxy | resident memory with $IDLE idle clients |"
    echo "|---|---:|"
    for t in "${!IDLE_RSS[@]}"; do
        echo "| $t | $(awk -v k="${IDLE_RSS[$t]}" 'BEGIN {printf "%.1f MB", k / 1024}') |"
    done
fi

status=0
if ((FAILED_RUNS)); then
    log "$FAILED_RUNS run(s) failed or had failed transactions"
    status=1
fi
if ((${#SKIPPED[@]})); then
    log "not measured (did not start): ${SKIPPED[*]}"
    status=1
fi
exit $status
