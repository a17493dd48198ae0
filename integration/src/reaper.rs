//! Clean-up of what killed test processes left behind.
//!
//! Handles clean up on drop, also on panic, but a test process killed outright (a nextest timeout, Ctrl-C)
//! runs no destructors and leaves its servers running. Each temp dir therefore records the pid of the test
//! process that owns it; the first cluster or proxy a process starts sweeps dirs whose owner is gone:
//! their servers are stopped and the dirs removed.

use std::fs;
use std::path::Path;
use std::sync::Once;
use std::time::{Duration, Instant};

use anyhow::Result;

use crate::{cluster, sys};

pub(crate) const CLUSTER_PREFIX: &str = "pgdog-it-pg-";
pub(crate) const PROXY_PREFIX: &str = "pgdog-it-proxy-";
const OWNER_FILE: &str = "owner.pid";
/// Written by the proxy handle: the pid of the pgdog process it spawned.
pub(crate) const CHILD_FILE: &str = "child.pid";

/// Record that this process owns `dir`.
pub(crate) fn claim(dir: &Path) -> Result<()> {
    fs::write(dir.join(OWNER_FILE), std::process::id().to_string())?;
    Ok(())
}

/// Sweep abandoned dirs, once per process.
pub(crate) fn sweep_once() {
    static ONCE: Once = Once::new();
    ONCE.call_once(sweep);
}

fn read_pid(path: &Path) -> Option<i32> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

fn sweep() {
    let Ok(entries) = fs::read_dir(sys::temp_root()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let is_cluster = name.starts_with(CLUSTER_PREFIX);
        if !is_cluster && !name.starts_with(PROXY_PREFIX) {
            continue;
        }
        let dir = entry.path();
        // No owner file yet: the dir is being set up right now by someone; leave it.
        let Some(owner) = read_pid(&dir.join(OWNER_FILE)) else {
            continue;
        };
        if sys::pid_alive(owner) {
            continue;
        }
        let victim = if is_cluster {
            cluster::postmaster_pid(&dir.join("data"))
        } else {
            read_pid(&dir.join(CHILD_FILE))
        };
        if let Some(pid) = victim.filter(|p| sys::pid_alive(*p)) {
            // SIGQUIT: immediate shutdown for a postmaster; for pgdog follow up with SIGKILL.
            sys::signal(
                pid,
                if is_cluster {
                    libc::SIGQUIT
                } else {
                    libc::SIGKILL
                },
            );
            let deadline = Instant::now() + Duration::from_secs(5);
            while sys::pid_alive(pid) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let _ = fs::remove_dir_all(&dir);
    }
}
