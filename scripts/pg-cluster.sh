#!/usr/bin/env bash
# Throwaway PostgreSQL 15 clusters for scripts (benchmarks, shell and Ruby suites, the demo): the shell
# twin of the Rust harness's PgCluster, with the same roles, auth methods and settings.
#
#   scripts/pg-cluster.sh start DIR [-p PORT] [-c key=value]... [--tls CERTDIR]
#                                              # init (if needed) + start; prints the port
#   scripts/pg-cluster.sh stop DIR [--immediate]
#   scripts/pg-cluster.sh destroy DIR                             # stop immediately and remove DIR
#   scripts/pg-cluster.sh port DIR
#   scripts/pg-cluster.sh psql DIR [psql args...]                 # superuser over the Unix socket
#
# DIR is created if missing (use one under /dev/shm for speed). The server listens on 127.0.0.1 (and a
# socket in DIR/sock), fsync off, max_connections 200. Roles over TCP: pgdog/pgdog and postgres/postgres
# (SCRAM), md5user/md5user (md5), plainuser/plainuser (cleartext), trustuser (trust); database pgdog
# owned by pgdog. As root the server runs as the postgres OS user. PG_BIN overrides the binaries.
# --tls CERTDIR (from scripts/tls-certs.sh) makes a fresh cluster take TCP connections over TLS only
# (ssl = on with CERTDIR's server certificate, and hostssl lines alone in pg_hba.conf).
set -euo pipefail

PG_BIN="${PG_BIN:-/usr/lib/postgresql/15/bin}"
die() { echo "pg-cluster: $*" >&2; exit 1; }
as_pg() { if [[ $(id -u) -eq 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi; }

free_port() {
    local p
    for _ in $(seq 200); do
        p=$((20000 + RANDOM % 12000))
        (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return 0; }
    done
    die "no free port found"
}

port_of() { sed -n 's/^port = \([0-9]*\)$/\1/p' "$1/data/postgresql.conf" | tail -1; }

cmd_start() {
    local dir=$1 port="" settings=() certs=""
    shift
    while (($#)); do
        case $1 in
        -p) port=$2; shift ;;
        -c) settings+=("$2"); shift ;;
        --tls) certs=$(cd "$2" && pwd); shift ;;
        *) die "start: unknown option $1" ;;
        esac
        shift
    done
    [[ -x $PG_BIN/initdb ]] || die "no PostgreSQL binaries in $PG_BIN (run scripts/setup.sh)"
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    local fresh=0
    if [[ ! -f $dir/data/PG_VERSION ]]; then
        fresh=1
        chmod 755 "$dir"
        mkdir -p "$dir/sock"
        if [[ $(id -u) -eq 0 ]]; then chown postgres: "$dir" "$dir/sock"; fi
        as_pg "$PG_BIN/initdb" -D "$dir/data" -U postgres --auth=trust --no-sync --encoding=UTF8 \
            --locale=C >"$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log" >&2; die "initdb failed"; }
        cat >"$dir/data/pg_hba.conf" <<'EOF'
local   all  all                      trust
host    all  trustuser  127.0.0.1/32  trust
host    all  md5user    127.0.0.1/32  md5
host    all  plainuser  127.0.0.1/32  password
host    all  all        127.0.0.1/32  scram-sha-256
host    all  all        ::1/128       scram-sha-256
EOF
        cat >>"$dir/data/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
unix_socket_directories = '$dir/sock'
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 200
dynamic_shared_memory_type = mmap
EOF
        if [[ -n $certs ]]; then
            install -m 600 "$certs/server.key" "$dir/data/server.key"
            install -m 644 "$certs/server.crt" "$dir/data/server.crt"
            if [[ $(id -u) -eq 0 ]]; then chown postgres: "$dir/data/server.key" "$dir/data/server.crt"; fi
            sed -i 's/^host /hostssl /' "$dir/data/pg_hba.conf"
            printf "ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n" >>"$dir/data/postgresql.conf"
        fi
    fi
    [[ -n $port ]] || port=$(port_of "$dir")
    [[ -n $port ]] || port=$(free_port)
    {
        echo "port = $port"
        for kv in "${settings[@]}"; do echo "${kv%%=*} = ${kv#*=}"; done
    } >>"$dir/data/postgresql.conf"
    as_pg "$PG_BIN/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -w -t 60 start >/dev/null ||
        { tail -20 "$dir/postgres.log" >&2; die "PostgreSQL did not start (log: $dir/postgres.log)"; }
    if ((fresh)); then
        "$PG_BIN/psql" -X -q -h "$dir/sock" -p "$port" -U postgres -d postgres -v ON_ERROR_STOP=1 >/dev/null <<'EOF'
ALTER ROLE postgres PASSWORD 'postgres';
CREATE ROLE pgdog LOGIN SUPERUSER PASSWORD 'pgdog';
CREATE ROLE trustuser LOGIN PASSWORD 'trustuser';
CREATE ROLE plainuser LOGIN PASSWORD 'plainuser';
SET password_encryption = 'md5';
CREATE ROLE md5user LOGIN PASSWORD 'md5user';
RESET password_encryption;
\connect template1
GRANT CREATE ON SCHEMA public TO PUBLIC;
\connect postgres
CREATE DATABASE pgdog OWNER pgdog;
EOF
    fi
    echo "$port"
}

cmd_stop() {
    local dir=$1 mode=fast
    [[ ${2:-} == --immediate ]] && mode=immediate
    [[ -f $dir/data/postmaster.pid ]] || return 0
    as_pg "$PG_BIN/pg_ctl" -D "$dir/data" -m "$mode" -w -t 60 stop >/dev/null
}

cmd_destroy() {
    local dir=$1
    [[ -d $dir ]] || return 0
    cmd_stop "$dir" --immediate || true
    rm -rf "$dir"
}

cmd_psql() {
    local dir=$1 port
    shift
    port=$(port_of "$dir")
    exec "$PG_BIN/psql" -X -h "$dir/sock" -p "$port" -U postgres "$@"
}

(($# >= 2)) || { sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
cmd=$1 dir=$2
shift 2
case $cmd in
start) cmd_start "$dir" "$@" ;;
stop) cmd_stop "$dir" "$@" ;;
destroy) cmd_destroy "$dir" ;;
port) port_of "$dir" ;;
psql) cmd_psql "$dir" "$@" ;;
*) die "unknown command $cmd" ;;
esac
