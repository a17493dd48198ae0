//! Helpers shared by the end-to-end test files.
#![allow(dead_code)]

use anyhow::{bail, Result};
use std::future::Future;
use std::process::Command;
use std::time::{Duration, Instant};

/// Polls `check` until it returns `Some`, or fails after `timeout` with `what`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await? {
            return Ok(value);
        }
        if Instant::now() > deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Runs a command with PGPASSWORD set; returns (success, stdout, stderr).
pub fn run_with_password(password: &str, program: &str, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(program)
        .args(args)
        .env("PGPASSWORD", password)
        .env("PGCONNECT_TIMEOUT", "10")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// SQLSTATE of a tokio-postgres error, if the server sent one.
pub fn sqlstate(e: &tokio_postgres::Error) -> Option<String> {
    e.as_db_error().map(|d| d.code().code().to_string())
}

/// Connects expecting a refusal; returns the error.
pub async fn connect_err(dsn: &str) -> tokio_postgres::Error {
    match tokio_postgres::connect(dsn, tokio_postgres::NoTls).await {
        Ok(_) => panic!("connection to {dsn} unexpectedly succeeded"),
        Err(e) => e,
    }
}
