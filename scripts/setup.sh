#!/usr/bin/env bash
# Installs what pgdog's tests and benchmarks need on a Debian machine, and nothing when it is all there.
#
#   PostgreSQL 15 server binaries (initdb, pg_ctl, postgres, pgbench) and client (psql),
#   pgbouncer and prometheus (run by the tests/benchmarks themselves, never as system services),
#   ruby with the pg gem and rspec (the Ruby integration suite), psycopg for Debian's python3,
#   a JDK and Debian's PostgreSQL JDBC driver (the JDBC suite, integration/tests/jdbc.rs),
#   curl, chromium (headless, for the readiness page test) and cargo-nextest.
#
# Run as root (CI does). Idempotent: apt-get runs only when something is missing. System services the
# packages ship (postgresql on 5432, pgbouncer on 6432, prometheus on 9090) are kept from starting, and
# stopped if they run, since they would take the ports the tests use.
set -euo pipefail

PG_BIN="${PG_BIN:-/usr/lib/postgresql/15/bin}"

log() { printf 'setup: %s\n' "$*" >&2; }
have() { command -v "$1" >/dev/null 2>&1; }

missing=()
need_pkg() { # need_pkg PACKAGE REASON
    log "missing $2 -> will install $1"
    missing+=("$1")
}

[[ -x "$PG_BIN/initdb" && -x "$PG_BIN/pg_ctl" && -x "$PG_BIN/pgbench" ]] ||
    need_pkg postgresql-15 "PostgreSQL 15 server ($PG_BIN/initdb)"
[[ -x /usr/lib/postgresql/15/bin/psql ]] || need_pkg postgresql-client-15 "psql"
have psql || need_pkg postgresql-client-common "psql wrapper"
have pgbouncer || need_pkg pgbouncer "pgbouncer"
have prometheus || need_pkg prometheus "prometheus"
have curl || need_pkg curl "curl"
have chromium || need_pkg chromium "chromium (the readiness page's browser test)"
have ruby || need_pkg ruby "ruby"
if ! have ruby || ! ruby -e 'require "pg"' >/dev/null 2>&1; then need_pkg ruby-pg "ruby pg gem"; fi
have rspec || need_pkg ruby-rspec "rspec"
have runuser || need_pkg util-linux "runuser"
have pgrep || need_pkg procps "pgrep"
have perl || need_pkg perl "perl"
# psycopg for Debian's own python3 (the tests run /usr/bin/python3, whatever else is on PATH).
[[ -x /usr/bin/python3 ]] && /usr/bin/python3 -c 'import psycopg' >/dev/null 2>&1 ||
    need_pkg python3-psycopg "psycopg for /usr/bin/python3"
# The JDBC suite compiles and runs integration/java/JdbcSteps.java against Debian's pgjdbc.
{ have javac && have java; } || need_pkg default-jdk-headless "a JDK (javac, java)"
[[ -f /usr/share/java/postgresql.jar ]] || need_pkg libpostgresql-jdbc-java "pgjdbc (/usr/share/java/postgresql.jar)"

if ((${#missing[@]})); then
    if [[ $(id -u) -ne 0 ]]; then
        log "not root: cannot install ${missing[*]}; run: sudo $0"
        exit 1
    fi
    # Keep packages from starting their services during installation (Debian's invoke-rc.d honours
    # policy-rc.d exit code 101). Leave an existing policy in place; remove only ours.
    policy=/usr/sbin/policy-rc.d
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy"
        chmod 755 "$policy"
        trap 'rm -f "$policy"' EXIT
    fi
    export DEBIAN_FRONTEND=noninteractive
    aptlog=$(mktemp)
    apt() { # quiet, but show everything apt said when it fails
        if ! apt-get "$@" >"$aptlog" 2>&1; then
            cat "$aptlog" >&2
            log "apt-get $* failed"
            exit 1
        fi
    }
    log "apt-get update"
    apt update -qq
    log "apt-get install ${missing[*]}"
    apt install -y -qq --no-install-recommends "${missing[@]}"
    rm -f "$aptlog"
fi

# Even with the policy, a service may have been started earlier (or by hand): stop and disable the ones
# that would hold the tests' ports.
stop_service() {
    local svc=$1
    [[ -x /etc/init.d/$svc ]] || return 0
    if service "$svc" status >/dev/null 2>&1; then
        log "stopping system service $svc"
        service "$svc" stop >/dev/null 2>&1 || true
    fi
    if have update-rc.d; then update-rc.d "$svc" disable >/dev/null 2>&1 || true; fi
    if have systemctl && [[ -d /run/systemd/system ]]; then
        systemctl disable --now "$svc" >/dev/null 2>&1 || true
    fi
}
if [[ $(id -u) -eq 0 ]]; then
    for svc in postgresql pgbouncer prometheus prometheus-node-exporter; do stop_service "$svc"; done
    # Debian's postgresql package creates a "main" cluster; make sure it is not running on 5432.
    if have pg_lsclusters; then
        pg_lsclusters --no-header 2>/dev/null | while read -r ver name port status _; do
            if [[ $status == online* ]]; then
                log "stopping system cluster $ver/$name on port $port"
                pg_ctlcluster "$ver" "$name" stop >/dev/null 2>&1 || true
            fi
        done
    fi
fi

if ! cargo nextest --version >/dev/null 2>&1; then
    if have cargo; then
        log "installing cargo-nextest (cargo install, takes a few minutes)"
        cargo install --locked --quiet cargo-nextest
    else
        log "cargo not found: install Rust (rustup) first"
        exit 1
    fi
fi

log "ok: PostgreSQL $("$PG_BIN/postgres" --version | awk '{print $3}'), pgbouncer, prometheus, ruby-pg, rspec, psycopg, curl, nextest present"
