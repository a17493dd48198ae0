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

# pair_start DIR [CERTDIR]: a primary and a mirror cluster under DIR (taking TLS only, with
# CERTDIR's certificate, when given); sets PRIMARY and MIRROR (ports). PAIR_PRIMARY_OPTS adds
# pg-cluster.sh options for the primary (e.g. "-c wal_level=logical").
# shellcheck disable=SC2034 # PRIMARY and MIRROR are for the caller
pair_start() {
    local tls=()
    [[ -n ${2:-} ]] && tls=(--tls "$2")
    # shellcheck disable=SC2086 # PAIR_PRIMARY_OPTS: extra words for the primary (-c key=value)
    PRIMARY=$("$REPO/scripts/pg-cluster.sh" start "$1/primary" "${tls[@]}" ${PAIR_PRIMARY_OPTS:-})
    MIRROR=$("$REPO/scripts/pg-cluster.sh" start "$1/mirror" "${tls[@]}")
}

# The kernel's autogroup scheduling (kernel.sched_autogroup_enabled): with it on, the processes
# of the root cgroup get CPU time by session, one share per session.
AUTOGROUP_SYSCTL=/proc/sys/kernel/sched_autogroup_enabled

# autogroup_state: "on", "off", or "absent" (a kernel without it).
autogroup_state() {
    case $(cat "$AUTOGROUP_SYSCTL" 2>/dev/null) in
    1) echo on ;;
    0) echo off ;;
    *) echo absent ;;
    esac
}

# set_autogroup on|off: switches it (root only; fails where it cannot).
set_autogroup() {
    [[ $(autogroup_state) != absent ]] || { echo "this kernel has no autogroup scheduling" >&2; return 1; }
    case $1 in
    on) echo 1 >"$AUTOGROUP_SYSCTL" ;;
    off) echo 0 >"$AUTOGROUP_SYSCTL" ;;
    *) echo "set_autogroup: on or off, not $1" >&2; return 1 ;;
    esac
}

# Services as systemd runs them: each in a CPU cgroup of its own, all with the same weight
# (systemd's default CPUWeight). Inside a cgroup other than the root, autogroup plays no part.
# cpu_cgroup_root: where the cpu controller is mounted (v1 hierarchy, or v2 with cpu enabled).
cpu_cgroup_root() {
    if [[ -f /sys/fs/cgroup/cpu/cpu.shares ]]; then
        echo /sys/fs/cgroup/cpu
    elif grep -qw cpu /sys/fs/cgroup/cgroup.controllers 2>/dev/null; then
        echo /sys/fs/cgroup
    else
        echo "no cpu cgroup controller on this machine" >&2
        return 1
    fi
}

# service_cgroup NAME: creates (if needed) the cgroup of service NAME and prints its path.
service_cgroup() {
    local root dir
    root=$(cpu_cgroup_root) || return 1
    # cgroup v2: the cpu controller must be enabled for the root's children.
    if [[ -f $root/cgroup.subtree_control ]] && ! grep -qw cpu "$root/cgroup.subtree_control"; then
        echo +cpu >"$root/cgroup.subtree_control" || return 1
    fi
    dir="$root/pgdog-bench-$1"
    mkdir -p "$dir"
    echo "$dir"
}

# service_weight NAME FACTOR: service NAME's CPU weight, FACTOR times the default.
service_weight() {
    local dir
    dir=$(service_cgroup "$1") || return 1
    if [[ -f $dir/cpu.shares ]]; then
        echo $((1024 * $2)) >"$dir/cpu.shares"
    else
        echo $((100 * $2)) >"$dir/cpu.weight"
    fi
}

# service_quota NAME CPUS: caps service NAME at CPUS processors' worth of time (e.g. 0.6),
# in 10 ms periods, so that a capped service is held back for at most a few ms at a time.
service_quota() {
    local dir period=10000 quota
    dir=$(service_cgroup "$1") || return 1
    quota=$(awk -v c="$2" -v p="$period" 'BEGIN {printf "%d", c * p}')
    if [[ -f $dir/cpu.cfs_quota_us ]]; then
        echo "$period" >"$dir/cpu.cfs_period_us"
        echo "$quota" >"$dir/cpu.cfs_quota_us"
    else
        echo "$quota $period" >"$dir/cpu.max"
    fi
}

# service_move NAME PID...: moves the processes PID (with all their threads) into service
# NAME's cgroup; what they fork later is born there.
service_move() {
    local dir pid
    dir=$(service_cgroup "$1") || return 1
    shift
    for pid in "$@"; do
        echo "$pid" >"$dir/cgroup.procs" 2>/dev/null || true
    done
}

# cluster_move NAME DIR: moves the cluster under DIR (postmaster and children) to service NAME.
cluster_move() {
    local pm
    pm=$(head -n 1 "$2/data/postmaster.pid")
    # shellcheck disable=SC2046 # one PID per word
    service_move "$1" "$pm" $(pgrep -P "$pm")
}

# cluster_pin DIR CPUS|all: the cluster's processes (and those it forks later) on CPUS.
cluster_pin() {
    local pm pid cpus=$2
    [[ $cpus == all ]] && cpus=0-$(($(nproc --all) - 1))
    pm=$(head -n 1 "$1/data/postmaster.pid")
    for pid in "$pm" $(pgrep -P "$pm"); do
        taskset -a -p -c "$cpus" "$pid" >/dev/null 2>&1 || true
    done
}

# twin_hosts DIR CPUS [WEIGHT]: the benchmarks' model of "a mirror as fast as the primary",
# two database hosts of the same capacity. The clusters under DIR/primary and DIR/mirror each
# get a CPU cgroup of their own, capped at the same CPUS processors' worth of time, with
# WEIGHT (default 16) times the default weight so that each gets its cap whenever it needs it.
# They still share the cores' caches and the scheduler with everything else. Root only;
# service_cgroups_remove undoes it.
twin_hosts() {
    local db
    for db in primary mirror; do
        cluster_move "$db" "$1/$db" || return 1
        service_weight "$db" "${3:-16}" || return 1
        service_quota "$db" "$2" || return 1
    done
}

# service_cgroups_remove: moves what is left back to the root and removes the cgroups.
service_cgroups_remove() {
    local root dir pid
    root=$(cpu_cgroup_root 2>/dev/null) || return 0
    for dir in "$root"/pgdog-bench-*; do
        [[ -d $dir ]] || continue
        # A process forked while the others move is born in the cgroup: a few passes.
        for _ in 1 2 3 4 5; do
            while read -r pid; do
                echo "$pid" >"$root/cgroup.procs" 2>/dev/null || true
            done <"$dir/cgroup.procs"
            rmdir "$dir" 2>/dev/null && break
            sleep 0.1
        done
        [[ ! -d $dir ]] || echo "warning: could not remove $dir (processes still in it keep its CPU limits)" >&2
    done
}

# process_ticks PID [REAPED]: CPU clock ticks (user + system) process PID used so far; with
# REAPED 1, those of the children it reaped too. Nothing for a process that is gone.
process_ticks() {
    # Fields after "pid (comm) ": utime is the 12th; stime, cutime and cstime follow.
    sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null |
        awk -v reaped="${2:-0}" '{print $12 + $13 + (reaped ? $14 + $15 : 0)}' || true
}

# cluster_ticks DIR: CPU clock ticks used so far by the cluster under DIR: its postmaster with
# the children it reaped, plus the children still running.
cluster_ticks() {
    local pm child
    pm=$(head -n 1 "$1/data/postmaster.pid")
    {
        process_ticks "$pm" 1
        for child in $(pgrep -P "$pm"); do
            process_ticks "$child"
        done
    } | awk '{s += $1} END {print s + 0}'
}

# cluster_preempted DIR: involuntary context switches so far of the cluster's live processes
# (a process that exits meanwhile is skipped).
cluster_preempted() {
    local pm pid
    pm=$(head -n 1 "$1/data/postmaster.pid")
    for pid in $(pgrep -P "$pm"); do
        cat "/proc/$pid/status" 2>/dev/null
    done | awk '/^nonvoluntary_ctxt_switches/ {s += $2} END {print s + 0}'
}

# process_switches PID: context switches (voluntary: it waited, for a wake-up or I/O; and
# involuntary) so far of all the threads of process PID.
process_switches() {
    cat "/proc/$1"/task/*/status 2>/dev/null |
        awk '/^(non)?voluntary_ctxt_switches/ {s += $2} END {print s + 0}'
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

# logical_subscribe PRIMARY_PORT MIRROR_PORT [CONNINFO_EXTRA]: a publication "everything" of every
# table on the primary and a subscription "sub" to it on the mirror (user pgdog, db pgdog, the
# schema already there); returns once the subscription's initial copy is done, fails after 4 min.
logical_subscribe() {
    local primary=$1 mirror=$2 extra=${3:-} pending=""
    PGPASSWORD=pgdog psql -h 127.0.0.1 -p "$primary" -U pgdog -d pgdog -qc \
        "CREATE PUBLICATION everything FOR ALL TABLES"
    PGPASSWORD=pgdog psql -h 127.0.0.1 -p "$mirror" -U pgdog -d pgdog -qc "CREATE SUBSCRIPTION sub CONNECTION \
'host=127.0.0.1 port=$primary user=pgdog password=pgdog dbname=pgdog$extra' PUBLICATION everything"
    for _ in $(seq 1200); do
        pending=$(PGPASSWORD=pgdog psql -h 127.0.0.1 -p "$mirror" -U pgdog -d pgdog -Atc \
            "SELECT count(*) FROM pg_subscription_rel WHERE srsubstate <> 'r'")
        [[ $pending == 0 ]] && return 0
        sleep 0.2
    done
    return 1
}

# median: the median of the numbers on stdin, one per line. med "A B C": of its words.
median() { sort -g | awk '{v[NR]=$1} END {if (NR%2) print v[(NR+1)/2]; else print (v[NR/2]+v[NR/2+1])/2}'; }
med() { tr ' ' '\n' <<<"$1" | grep -v '^$' | median; }

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

# pair_config MIRRORED(0|1) [EXTRA]: pgdog's config for the pair started by pair_start, on
# PORT, ADMIN and METRICS: pool "pgdog" on the primary (mirrored to pool "mirror" when
# MIRRORED is 1; EXTRA is one more line of its table), pool "mirror" on the mirror.
pair_config() {
    cat <<TOML
[general]
port = $PORT
admin_port = $ADMIN
metrics_port = $METRICS
pool_size = 20

[[pools]]
name = "pgdog"
port = $PRIMARY
password = "pgdog"
$( (($1)) && echo 'mirror_of = "mirror"')
${2:-}

[[pools]]
name = "mirror"
database = "pgdog"
port = $MIRROR
password = "pgdog"
TOML
}

# settled_total PORT [TRIES] [INTERVAL]: waits until pgdog's mirror{type="total"} stops
# moving (the mirror drained its queues), then prints it.
settled_total() {
    local last=-1 now
    for _ in $(seq "${2:-100}"); do
        now=$(metric "$1" 'mirror{type="total"}')
        [[ $now == "$last" ]] && break
        last=$now
        sleep "${3:-1}"
    done
    echo "$last"
}
