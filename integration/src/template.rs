//! A ready-made data directory that clusters are copied from.
//!
//! `initdb` plus role set-up costs a second or two per cluster, and a test suite starts dozens of them
//! (nextest runs each test in its own process). So the first cluster on a machine builds a template once
//! -- initdb, the harness's `pg_hba.conf`, base settings, roles and the `pgdog` database -- and every
//! cluster after that is a `cp -a` of it. The template's name carries a hash of everything that goes into
//! it, so changing the set-up below (or the PostgreSQL binaries) builds a new one instead of reusing a
//! stale one. It is built in a private directory and renamed into place, which is atomic: concurrent
//! builders never see half a template, and the loser of the race simply discards its copy.

use std::collections::hash_map::DefaultHasher;
use std::fs;
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Mutex;

use anyhow::{bail, Context, Result};

use crate::sys;

/// Client authentication: trust on the socket (the harness's own superuser access), and over TCP one
/// method per test role so each server-side auth method can be exercised.
pub(crate) const PG_HBA: &str = "\
# Written by the pgdog integration harness.
local   all  all                      trust
host    all  trustuser  127.0.0.1/32  trust
host    all  md5user    127.0.0.1/32  md5
host    all  plainuser  127.0.0.1/32  password
host    all  all        127.0.0.1/32  scram-sha-256
host    all  all        ::1/128       scram-sha-256
";

/// Settings for a throwaway cluster: no durability, enough connections for pools and mirrors.
pub(crate) const BASE_CONF: &str = "
# Written by the pgdog integration harness.
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 200
shared_buffers = 64MB
password_encryption = 'scram-sha-256'
log_line_prefix = '%m [%p] %q%u@%d '
log_min_messages = warning
# Keep dynamic shared memory in the data dir: with the default (posix) an immediate shutdown leaves
# segments behind in /dev/shm that nobody removes once the data dir is gone.
dynamic_shared_memory_type = mmap
";

/// Roles and databases every cluster has. Passwords equal the role name, except `pgdog`/`pgdog` and
/// `postgres`/`postgres`. md5user's password is stored as an md5 hash so md5 server auth works.
/// Runs statement by statement (psql reading stdin), since CREATE DATABASE cannot run in a transaction.
pub(crate) const SETUP_SQL: &str = "
\\set ON_ERROR_STOP on
ALTER ROLE postgres PASSWORD 'postgres';
CREATE ROLE pgdog LOGIN SUPERUSER PASSWORD 'pgdog';
CREATE ROLE trustuser LOGIN PASSWORD 'trustuser';
CREATE ROLE plainuser LOGIN PASSWORD 'plainuser';
SET password_encryption = 'md5';
CREATE ROLE md5user LOGIN PASSWORD 'md5user';
RESET password_encryption;
\\connect template1
GRANT CREATE ON SCHEMA public TO PUBLIC;
\\connect postgres
CREATE DATABASE pgdog OWNER pgdog;
";

/// Bumped by hand when the template's construction changes in a way the hash below cannot see.
const TEMPLATE_VERSION: u32 = 1;

static BUILD_LOCK: Mutex<()> = Mutex::new(());

/// The template data directory for these binaries, built if it does not exist yet.
pub(crate) fn ensure(bin: &Path) -> Result<PathBuf> {
    let path = sys::temp_root().join(format!("pgdog-it-template-{:016x}", key(bin)));
    if path.join("PG_VERSION").exists() {
        return Ok(path);
    }
    // One build per process; other processes may still race us, which the rename settles.
    let _guard = BUILD_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    if path.join("PG_VERSION").exists() {
        return Ok(path);
    }
    build(bin, &path)?;
    remove_stale_templates(&path);
    Ok(path)
}

/// Templates of other harness versions take ~50 MB each of tmpfs (memory). Remove those not touched for
/// an hour; a younger one may belong to another checkout whose tests are running right now.
fn remove_stale_templates(keep: &Path) {
    let Ok(entries) = fs::read_dir(sys::temp_root()) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let Some(hash) = name.strip_prefix("pgdog-it-template-") else {
            continue;
        };
        if path == keep || hash.len() != 16 || !hash.chars().all(|c| c.is_ascii_hexdigit()) {
            continue;
        }
        let old = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > std::time::Duration::from_secs(3600));
        if old {
            let _ = fs::remove_dir_all(&path);
        }
    }
}

fn key(bin: &Path) -> u64 {
    let mut h = DefaultHasher::new();
    TEMPLATE_VERSION.hash(&mut h);
    bin.hash(&mut h);
    // The binaries' exact version: a minor upgrade keeps the catalog, but be safe.
    if let Ok(out) = std::process::Command::new(bin.join("postgres"))
        .arg("--version")
        .output()
    {
        out.stdout.hash(&mut h);
    }
    PG_HBA.hash(&mut h);
    BASE_CONF.hash(&mut h);
    SETUP_SQL.hash(&mut h);
    sys::is_root().hash(&mut h);
    h.finish()
}

fn build(bin: &Path, dest: &Path) -> Result<()> {
    let work = tempfile::Builder::new()
        .prefix("pgdog-it-template-build-")
        .tempdir_in(sys::temp_root())
        .context("creating template build dir")?;
    fs::set_permissions(
        work.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )?;
    sys::chown_to_postgres(work.path())?;
    let data = work.path().join("data");
    let sock = work.path().join("sock");
    let log = work.path().join("template.log");
    fs::create_dir(&sock)?;
    sys::chown_to_postgres(&sock)?;

    sys::run(
        sys::server_command(&bin.join("initdb"))
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                "postgres",
                "--auth=trust",
                "--no-sync",
                "--encoding=UTF8",
                "--locale=C",
            ]),
    )
    .context("initdb failed (is PostgreSQL 15 installed? run scripts/setup.sh)")?;

    fs::write(data.join("pg_hba.conf"), PG_HBA)?;
    append(&data.join("postgresql.conf"), BASE_CONF)?;

    // Start on the socket only, so building a template never competes for a TCP port.
    let opts = format!(
        "-c listen_addresses='' -c unix_socket_directories='{}' -p 5432",
        sock.display()
    );
    let started = sys::run(
        sys::server_command(&bin.join("pg_ctl"))
            .arg("-D")
            .arg(&data)
            .arg("-l")
            .arg(&log)
            .args(["-w", "-t", "60", "-o", &opts, "start"]),
    );
    if let Err(err) = started {
        bail!(
            "template cluster did not start: {err}\n{}",
            sys::tail(&log, 30)
        );
    }
    let setup = psql_stdin(bin, &sock, 5432, "postgres", SETUP_SQL);
    let stopped = sys::run(
        sys::server_command(&bin.join("pg_ctl"))
            .arg("-D")
            .arg(&data)
            .args(["-m", "fast", "-w", "stop"]),
    );
    setup.context("setting up roles in the template")?;
    stopped.context("stopping the template cluster")?;

    match fs::rename(&data, dest) {
        Ok(()) => Ok(()),
        // Another process won the race; its template is as good as ours.
        Err(_) if dest.join("PG_VERSION").exists() => Ok(()),
        Err(err) => Err(err).with_context(|| format!("renaming template into {}", dest.display())),
    }
}

/// Run SQL through psql over the Unix socket as the `postgres` superuser, statements one by one.
pub(crate) fn psql_stdin(
    bin: &Path,
    sock: &Path,
    port: u16,
    db: &str,
    sql: &str,
) -> Result<String> {
    let mut child = std::process::Command::new(bin.join("psql"))
        .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
        .arg("-h")
        .arg(sock)
        .arg("-p")
        .arg(port.to_string())
        .args(["-U", "postgres", "-d", db])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("running psql")?;
    // A write error means psql already quit; its exit status and stderr below say why.
    let _ = child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(sql.as_bytes());
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "psql failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

pub(crate) fn append(path: &Path, text: &str) -> Result<()> {
    let mut f = fs::OpenOptions::new()
        .append(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    f.write_all(text.as_bytes())?;
    Ok(())
}
