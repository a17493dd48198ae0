//! Finding the `pgdog` binary that cargo built.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};

/// The `pgdog` binary: `$PGDOG_BIN`, else `pgdog` in the cargo profile dir the running test binary was
/// built into (tests live in `target/<profile>/deps/`), else `target/{debug,release}/pgdog` above it.
pub fn pgdog_binary() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os("PGDOG_BIN") {
        let path = PathBuf::from(path);
        if !path.is_file() {
            bail!("PGDOG_BIN={} is not a file", path.display());
        }
        return Ok(path);
    }
    let exe = std::env::current_exe().context("current_exe")?;
    for dir in exe.ancestors().skip(1) {
        let candidate = dir.join("pgdog");
        if candidate.is_file() {
            return Ok(candidate);
        }
        for profile in ["debug", "release"] {
            let candidate = dir.join("target").join(profile).join("pgdog");
            if candidate.is_file() {
                return Ok(candidate);
            }
        }
    }
    bail!(
        "pgdog binary not found above {} (build it with `cargo build -p pgdog`, or set PGDOG_BIN)",
        exe.display()
    )
}
