//! Helpers shared by the end-to-end test files.
#![allow(dead_code)]

use anyhow::{bail, Result};
use std::future::Future;
use std::process::Command;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

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

/// Value of the first non-comment line of `/metrics` containing `series` (0 when absent).
pub fn metric(text: &str, series: &str) -> u64 {
    text.lines()
        .find(|l| l.contains(series) && !l.starts_with('#'))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse::<f64>().ok())
        .map(|v| v as u64)
        .unwrap_or(0)
}

/// Mirror counts of one source pool, from the spec's `mirror{database=...,metric=...}` lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counts {
    pub total: u64,
    pub mirrored: u64,
    pub dropped: u64,
    pub errors: u64,
}

pub async fn scrape(pgdog: &pgdog_integration::Pgdog) -> Result<String> {
    Ok(
        pgdog_integration::http_get(pgdog.host(), pgdog.metrics_port(), "/metrics")
            .await?
            .body,
    )
}

pub async fn counts(pgdog: &pgdog_integration::Pgdog, database: &str) -> Result<Counts> {
    let text = scrape(pgdog).await?;
    let m = |name: &str| {
        metric(
            &text,
            &format!("mirror{{database=\"{database}\",metric=\"{name}\"}}"),
        )
    };
    Ok(Counts {
        total: m("total"),
        mirrored: m("mirrored"),
        dropped: m("dropped"),
        errors: m("errors"),
    })
}

/// Waits until every offered request of `database` is accounted for and `done` holds.
pub async fn settled_counts(
    pgdog: &pgdog_integration::Pgdog,
    database: &str,
    what: &str,
    done: impl Fn(&Counts) -> bool,
) -> Result<Counts> {
    let settled = eventually(Duration::from_secs(20), what, || async {
        let c = counts(pgdog, database).await?;
        Ok(done(&c).then_some(c))
    })
    .await;
    match settled {
        Ok(c) => Ok(c),
        Err(e) => {
            let last = counts(pgdog, database).await.ok();
            Err(e.context(format!("counts at the end: {last:?}")))
        }
    }
}

/// An admin console result row, by column name.
pub type AdminRow = std::collections::HashMap<String, Option<String>>;

/// The rows of an admin command, through the simple protocol.
pub async fn admin_rows(client: &tokio_postgres::Client, sql: &str) -> Result<Vec<AdminRow>> {
    let mut out = Vec::new();
    for msg in client.simple_query(sql).await? {
        if let tokio_postgres::SimpleQueryMessage::Row(row) = msg {
            let mut map = AdminRow::new();
            for (i, column) in row.columns().iter().enumerate() {
                map.insert(column.name().to_string(), row.get(i).map(str::to_string));
            }
            out.push(map);
        }
    }
    Ok(out)
}

/// The first column of every row of an admin command.
pub async fn admin_lines(client: &tokio_postgres::Client, sql: &str) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for msg in client.simple_query(sql).await? {
        if let tokio_postgres::SimpleQueryMessage::Row(row) = msg {
            out.push(row.get(0).unwrap_or("").to_string());
        }
    }
    Ok(out)
}

/// Logs in over a raw socket with trust auth; returns the socket after ReadyForQuery.
pub async fn raw_login(port: u16, user: &str, db: &str) -> Result<TcpStream> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await?;
    let mut packet = vec![0, 0, 0, 0, 0, 3, 0, 0];
    for (k, v) in [("user", user), ("database", db)] {
        packet.extend_from_slice(k.as_bytes());
        packet.push(0);
        packet.extend_from_slice(v.as_bytes());
        packet.push(0);
    }
    packet.push(0);
    let len = packet.len() as u32;
    packet[..4].copy_from_slice(&len.to_be_bytes());
    s.write_all(&packet).await?;
    read_until(&mut s, b'Z').await?;
    Ok(s)
}

/// Reads messages until one with `tag`; returns all bytes read.
pub async fn read_until(s: &mut TcpStream, tag: u8) -> Result<Vec<u8>> {
    let mut all = Vec::new();
    loop {
        let mut header = [0u8; 5];
        s.read_exact(&mut header).await?;
        let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
        let mut body = vec![0u8; len - 4];
        s.read_exact(&mut body).await?;
        all.extend_from_slice(&header);
        all.extend_from_slice(&body);
        if header[0] == tag {
            return Ok(all);
        }
    }
}

/// Frontend messages, built byte by byte, for clients that no driver imitates (one that
/// reuses a statement name, for instance).
pub mod wire {
    fn message(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut m = vec![tag];
        m.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
        m.extend_from_slice(body);
        m
    }

    /// Parse of statement `name`, no parameter types.
    pub fn parse(name: &str, sql: &str) -> Vec<u8> {
        message(b'P', format!("{name}\0{sql}\0\0\0").as_bytes())
    }

    /// Bind of statement `name` to the unnamed portal, no parameters, text results.
    pub fn bind(name: &str) -> Vec<u8> {
        let mut body = format!("\0{name}\0").into_bytes();
        body.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
        message(b'B', &body)
    }

    pub fn execute() -> Vec<u8> {
        message(b'E', &[0, 0, 0, 0, 0])
    }

    /// Close of statement `name`.
    pub fn close(name: &str) -> Vec<u8> {
        message(b'C', format!("S{name}\0").as_bytes())
    }

    pub fn sync() -> Vec<u8> {
        message(b'S', &[])
    }

    pub fn query(sql: &str) -> Vec<u8> {
        message(b'Q', format!("{sql}\0").as_bytes())
    }
}

/// Sends `messages` as one write and reads up to ReadyForQuery; fails on an ErrorResponse.
pub async fn raw_request(s: &mut TcpStream, messages: &[Vec<u8>]) -> Result<()> {
    s.write_all(&messages.concat()).await?;
    let answer = read_until(s, b'Z').await?;
    let mut at = 0;
    while at + 5 <= answer.len() {
        let len = u32::from_be_bytes([
            answer[at + 1],
            answer[at + 2],
            answer[at + 3],
            answer[at + 4],
        ]);
        if answer[at] == b'E' {
            bail!(
                "error answer: {}",
                String::from_utf8_lossy(&answer[at + 5..])
            );
        }
        at += 1 + len as usize;
    }
    Ok(())
}

/// A primary and a mirror cluster, and pgdog with pool `primary` (database `pgdog` on the
/// primary) mirrored to pool `mirror` (the same database on the mirror).
pub struct MirrorEnv {
    // pgdog first: dropped before the clusters, so it never sees them go away.
    pub pgdog: pgdog_integration::Pgdog,
    pub primary: pgdog_integration::PgCluster,
    pub mirror: pgdog_integration::PgCluster,
}

impl MirrorEnv {
    /// Starts both clusters, runs `setup` (if not empty) in database `pgdog` on both,
    /// then pgdog with the config `configure` makes of the base one (the two pools and
    /// `mirror_of`).
    pub async fn start(
        setup: &str,
        configure: impl FnOnce(pgdog_integration::ConfigBuilder) -> pgdog_integration::ConfigBuilder,
    ) -> Result<MirrorEnv> {
        use pgdog_integration::{ConfigBuilder, PgCluster};
        let (primary, mirror) = tokio::try_join!(PgCluster::start(), PgCluster::start())?;
        if !setup.is_empty() {
            for c in [&primary, &mirror] {
                c.execute_in("pgdog", setup).await?;
            }
        }
        let base = ConfigBuilder::new()
            .pool("primary", &primary, "pgdog")
            .pool("mirror", &mirror, "pgdog")
            .pool_set("primary", "mirror_of", "mirror");
        let pgdog = configure(base).start().await?;
        Ok(MirrorEnv {
            pgdog,
            primary,
            mirror,
        })
    }

    /// Waits until the admin console accepts connections too.
    pub async fn with_admin(mut self) -> Result<MirrorEnv> {
        let port = self.pgdog.admin_port();
        self.pgdog
            .wait_for_port(port, Duration::from_secs(10))
            .await?;
        Ok(self)
    }
}
