//! Small operating-system helpers shared by the cluster and process handles: who we run as, running a
//! command with a useful error, reading the end of a log, and checking whether a pid is alive.

use std::ffi::CString;
use std::fs;
use std::path::Path;
use std::process::{Command, Output};

use anyhow::{bail, Context, Result};

/// True when the harness runs as root. PostgreSQL refuses to run as root, so then every server-side
/// command runs as the `postgres` OS user through `runuser`.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// The uid and gid of an OS user, or `None` if it does not exist.
pub fn user_ids(name: &str) -> Option<(u32, u32)> {
    let name = CString::new(name).ok()?;
    // SAFETY: `name` is a valid NUL-terminated string; getpwnam returns either NULL or a pointer to a
    // static record that we read immediately, before any other call could overwrite it.
    unsafe {
        let pw = libc::getpwnam(name.as_ptr());
        if pw.is_null() {
            None
        } else {
            Some(((*pw).pw_uid, (*pw).pw_gid))
        }
    }
}

/// A command that runs as the `postgres` OS user when we are root, and as ourselves otherwise.
pub fn server_command(program: &Path) -> Command {
    if is_root() {
        let mut cmd = Command::new("runuser");
        cmd.arg("-u").arg("postgres").arg("--").arg(program);
        cmd
    } else {
        Command::new(program)
    }
}

/// Give a path to the `postgres` OS user when we are root (no-op otherwise).
pub fn chown_to_postgres(path: &Path) -> Result<()> {
    if !is_root() {
        return Ok(());
    }
    let (uid, gid) = user_ids("postgres")
        .context("running as root but there is no `postgres` OS user: run scripts/setup.sh")?;
    std::os::unix::fs::chown(path, Some(uid), Some(gid))
        .with_context(|| format!("chown postgres {}", path.display()))
}

/// Run a command to completion; a non-zero exit becomes an error carrying its output.
pub fn run(cmd: &mut Command) -> Result<Output> {
    let out = cmd
        .output()
        .with_context(|| format!("could not run {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed with {}\nstdout:\n{}\nstderr:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(out)
}

/// The last `lines` lines of a text file, or a note saying why there are none.
pub fn tail(path: &Path, lines: usize) -> String {
    match fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let all: Vec<&str> = text.lines().collect();
            let start = all.len().saturating_sub(lines);
            all[start..].join("\n")
        }
        Err(err) => format!("(no log at {}: {err})", path.display()),
    }
}

/// Whether a process with this pid exists and has not exited. A zombie counts as gone: a postmaster
/// started by pg_ctl is reparented to PID 1 when pg_ctl exits, and PID 1 may take its time reaping it.
pub fn pid_alive(pid: i32) -> bool {
    if pid <= 0 {
        return false;
    }
    // SAFETY: signal 0 only checks for existence and permission; it sends nothing.
    let rc = unsafe { libc::kill(pid, 0) };
    let exists = rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM);
    exists && !is_zombie(pid)
}

fn is_zombie(pid: i32) -> bool {
    // The state follows the parenthesised command name, which may itself contain spaces or parens.
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            let rest = &stat[stat.rfind(')')? + 1..];
            rest.split_whitespace().next().map(|state| state == "Z")
        })
        .unwrap_or(false)
}

/// Send a signal to a pid, ignoring "no such process".
pub fn signal(pid: i32, sig: libc::c_int) {
    if pid > 0 {
        // SAFETY: kill has no memory-safety preconditions.
        unsafe {
            libc::kill(pid, sig);
        }
    }
}

/// Whether the user asked to keep temp dirs for debugging (`PGDOG_KEEP_TEMP=1`).
pub fn keep_temp() -> bool {
    std::env::var_os("PGDOG_KEEP_TEMP").is_some_and(|v| !v.is_empty() && v != "0")
}

/// The directory that holds the harness's temp dirs: `$PGDOG_TEST_TMPDIR` if set, else `/dev/shm` when
/// it is a writable tmpfs, else the system temp dir.
///
/// tmpfs matters: a cluster is ~1,300 files, and creating files on this kind of machine's disk costs ~1 ms
/// each (a cluster copy took 1.5 s there and 30 ms on tmpfs). The data is throwaway anyway. Unix socket
/// paths are limited to 107 bytes, so a long temp dir path falls back to `/tmp`.
pub fn temp_root() -> std::path::PathBuf {
    use std::path::PathBuf;
    use std::sync::OnceLock;
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        if let Some(dir) = std::env::var_os("PGDOG_TEST_TMPDIR").filter(|d| !d.is_empty()) {
            return PathBuf::from(dir);
        }
        let shm = PathBuf::from("/dev/shm");
        if writable_dir(&shm) {
            return shm;
        }
        let dir = std::env::temp_dir();
        if dir.as_os_str().len() > 60 {
            PathBuf::from("/tmp")
        } else {
            dir
        }
    })
    .clone()
}

fn writable_dir(dir: &Path) -> bool {
    dir.is_dir()
        && tempfile::Builder::new()
            .prefix("pgdog-it-probe-")
            .tempfile_in(dir)
            .is_ok()
}

/// Raises this process's soft limit on open files to `want` (or the hard limit, if lower),
/// so that a test holding thousands of connections, and the pgdog it starts (children
/// inherit the limit), do not run out of descriptors. Returns the soft limit after.
pub fn raise_fd_limit(want: u64) -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid rlimit for getrlimit/setrlimit to read and write.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return 0;
        }
        if limit.rlim_cur < want {
            limit.rlim_cur = want.min(limit.rlim_max);
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
    }
    limit.rlim_cur
}
