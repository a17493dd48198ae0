//! Running pgdog as an operator does: signals (SIGHUP reloads, SIGTERM drains, SIGINT
//! stops at once but cleanly), systemd's notifications and unit file, the log format, and
//! an installed layout where the stats plugin sits in `../lib/pgdog/`.

mod common;

use anyhow::Result;
use common::{eventually, sqlstate};
use pgdog_integration::{pgdog_binary, ConfigBuilder, Launch, PgCluster, Pgdog};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

async fn active_pgdog_backends(cluster: &PgCluster, filter: &str) -> Result<i64> {
    cluster
        .query_scalar(&format!(
            "SELECT count(*) FROM pg_stat_activity WHERE usename = 'pgdog' \
             AND client_addr IS NOT NULL AND {filter}"
        ))
        .await
}

#[tokio::test]
async fn sighup_reloads_as_reload_does_and_a_broken_file_changes_nothing() -> Result<()> {
    let cluster = PgCluster::start().await?;
    let builder = ConfigBuilder::new().pool("first", &cluster, "pgdog");
    let pgdog = builder.clone().start().await?;
    assert!(pgdog.connect("pgdog", "pgdog", "second").await.is_err());
    // A pool added to the file: SIGHUP, and new clients can use it.
    let grown = builder.clone().pool("second", &cluster, "pgdog").build();
    std::fs::write(pgdog.config_path(), grown)?;
    pgdog.signal(libc::SIGHUP);
    let client = eventually(Duration::from_secs(10), "pool added by SIGHUP", || async {
        Ok(pgdog.connect("pgdog", "pgdog", "second").await.ok())
    })
    .await?;
    client.simple_query("SELECT 1").await?;
    assert!(
        pgdog.log().contains("pool \"second\" added"),
        "{}",
        pgdog.log()
    );
    // A file that does not load: refused and logged, pgdog goes on with what it has.
    std::fs::write(pgdog.config_path(), "[general]\nport = \"not a port\"\n")?;
    pgdog.signal(libc::SIGHUP);
    eventually(Duration::from_secs(10), "the refusal logged", || async {
        Ok(pgdog
            .log()
            .contains("configuration not reloaded")
            .then_some(()))
    })
    .await?;
    client.simple_query("SELECT 1").await?;
    pgdog
        .connect("pgdog", "pgdog", "first")
        .await?
        .simple_query("SELECT 1")
        .await?;
    Ok(())
}

#[tokio::test]
async fn sigint_closes_every_client_now_cancels_and_rolls_back() -> Result<()> {
    let cluster = PgCluster::start().await?;
    cluster.execute_in("pgdog", "CREATE TABLE t(x int)").await?;
    let mut pgdog = ConfigBuilder::new()
        .set("shutdown_timeout_ms", 60_000)
        .pool("pgdog", &cluster, "pgdog")
        .start()
        .await?;
    let in_transaction = pgdog.connect("pgdog", "pgdog", "pgdog").await?;
    in_transaction
        .batch_execute("BEGIN; INSERT INTO t VALUES (1)")
        .await?;
    let running = pgdog.connect("pgdog", "pgdog", "pgdog").await?;
    let sleeping = tokio::spawn(async move { running.simple_query("SELECT pg_sleep(60)").await });
    eventually(Duration::from_secs(10), "pg_sleep running", || async {
        let n = active_pgdog_backends(
            &cluster,
            "query LIKE 'SELECT pg_sleep%' AND state = 'active'",
        )
        .await?;
        Ok((n == 1).then_some(()))
    })
    .await?;
    let started = Instant::now();
    pgdog.sigint();
    let status = pgdog.wait_exit(Duration::from_secs(10)).await?;
    // Not the 60 s drain a SIGTERM would have given them.
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
    assert!(status.success(), "{status:?}\n{}", pgdog.log());
    // Both clients were told why.
    let err = sleeping.await?.unwrap_err();
    assert_eq!(sqlstate(&err).as_deref(), Some("57P01"), "{err}");
    assert!(in_transaction.simple_query("SELECT 1").await.is_err());
    // The transaction was rolled back, the query cancelled: nothing left on the server.
    let rows: i64 = cluster
        .query_scalar_in("pgdog", "SELECT count(*) FROM t")
        .await?;
    assert_eq!(rows, 0);
    eventually(
        Duration::from_secs(10),
        "server connections closed",
        || async { Ok((active_pgdog_backends(&cluster, "true").await? == 0).then_some(())) },
    )
    .await?;
    assert!(pgdog.log().contains("SIGINT received"), "{}", pgdog.log());
    assert!(pgdog.log().contains("pgdog stopped"), "{}", pgdog.log());
    Ok(())
}

#[tokio::test]
async fn sigint_during_a_sigterm_drain_cuts_it_short() -> Result<()> {
    let cluster = PgCluster::start().await?;
    let mut pgdog = ConfigBuilder::new()
        .set("shutdown_timeout_ms", 60_000)
        .pool("pgdog", &cluster, "pgdog")
        .start()
        .await?;
    let busy = pgdog.connect("pgdog", "pgdog", "pgdog").await?;
    busy.batch_execute("BEGIN").await?;
    pgdog.sigterm();
    // The drain waits for the open transaction...
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(pgdog.is_running());
    busy.simple_query("SELECT 1").await?;
    // ...until SIGINT.
    pgdog.sigint();
    let status = pgdog.wait_exit(Duration::from_secs(10)).await?;
    assert!(status.success(), "{status:?}");
    assert!(busy.simple_query("SELECT 1").await.is_err());
    Ok(())
}

/// Datagrams sent to a socket standing in for systemd's.
struct NotifySocket {
    _dir: tempfile::TempDir,
    path: PathBuf,
    socket: UnixDatagram,
}

impl NotifySocket {
    fn new() -> Result<NotifySocket> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("notify");
        let socket = UnixDatagram::bind(&path)?;
        socket.set_read_timeout(Some(Duration::from_secs(10)))?;
        Ok(NotifySocket {
            _dir: dir,
            path,
            socket,
        })
    }

    fn next(&self) -> Result<String> {
        let mut buf = [0u8; 512];
        let n = self.socket.recv(&mut buf)?;
        Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
    }
}

#[tokio::test]
async fn systemd_is_told_ready_reloading_and_stopping() -> Result<()> {
    let cluster = PgCluster::start().await?;
    let notify = NotifySocket::new()?;
    let config = ConfigBuilder::new()
        .pool("pgdog", &cluster, "pgdog")
        .build();
    let launch = Launch::default().env("NOTIFY_SOCKET", &notify.path.display().to_string());
    let mut pgdog = Pgdog::start_with(&config, launch).await?;
    let ready = notify.next()?;
    assert!(ready.starts_with("READY=1"), "{ready}");
    // Told once every listener accepts: the admin console and the metrics endpoint too.
    assert!(pgdog_integration::port_open(
        "127.0.0.1",
        pgdog.admin_port()
    ));
    assert!(pgdog_integration::port_open(
        "127.0.0.1",
        pgdog.metrics_port()
    ));
    pgdog.signal(libc::SIGHUP);
    let reloading = notify.next()?;
    assert!(
        reloading.starts_with("RELOADING=1\nMONOTONIC_USEC="),
        "{reloading}"
    );
    assert!(notify.next()?.starts_with("READY=1"));
    pgdog.sigterm();
    assert_eq!(notify.next()?, "STOPPING=1");
    assert!(pgdog.wait_exit(Duration::from_secs(10)).await?.success());
    Ok(())
}

#[test]
fn the_systemd_unit_verifies() -> Result<()> {
    let analyze = Path::new("/usr/bin/systemd-analyze");
    if !analyze.exists() {
        eprintln!("systemd-analyze is not installed: unit not verified");
        return Ok(());
    }
    let unit = std::fs::read_to_string(repo_root().join("deploy/pgdog.service"))?;
    assert!(unit.contains("Type=notify") && unit.contains("ExecReload=/bin/kill -HUP $MAINPID"));
    // `verify` checks that ExecStart's binary exists: point it at the one built here.
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("pgdog.service");
    let binary = pgdog_binary()?;
    std::fs::write(
        &path,
        unit.replace("/usr/bin/pgdog", &binary.display().to_string()),
    )?;
    let out = Command::new(analyze).arg("verify").arg(&path).output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Unknown keys and bad values are warnings: none at all.
    assert!(out.status.success() && stderr.trim().is_empty(), "{stderr}");
    let security = Command::new(analyze)
        .args(["security", "--offline=true"])
        .arg(&path)
        .output()?;
    let text = String::from_utf8_lossy(&security.stdout);
    if let Some(level) = text
        .lines()
        .find_map(|l| l.split("Overall exposure level for pgdog.service:").nth(1))
    {
        let score: f64 = level.split_whitespace().next().unwrap_or("10").parse()?;
        assert!(score < 2.5, "exposure {score}:\n{text}");
    }
    Ok(())
}

#[tokio::test]
async fn json_logs_are_one_object_per_line_without_secrets_or_parameters() -> Result<()> {
    let cluster = PgCluster::start().await?;
    let config = ConfigBuilder::new()
        .set("log_format", "json")
        .general("admin_password = \"admin-secret-7\"")
        .pool("pgdog", &cluster, "pgdog")
        .build();
    let launch = Launch::default().env("RUST_LOG", "debug");
    let mut pgdog = Pgdog::start_with(&config, launch).await?;
    let _ = pgdog.connect("pgdog", "wrong-password-42", "pgdog").await;
    let client = pgdog.connect("pgdog", "pgdog", "pgdog").await?;
    client
        .query("SELECT $1::text", &[&"parameter-value-99"])
        .await?;
    client.simple_query("SELECT 'literal-in-query-77'").await?;
    let _ = client.simple_query("SELECT * FROM missing_table_55").await;
    drop(client);
    pgdog.sigterm();
    pgdog.wait_exit(Duration::from_secs(10)).await?;
    let log = pgdog.log();
    let mut levels = std::collections::BTreeSet::new();
    for line in log.lines() {
        let event: serde_json::Value = serde_json::from_str(line)
            .map_err(|e| anyhow::anyhow!("not one JSON object per line ({e}): {line}"))?;
        for key in ["timestamp", "level", "target", "message"] {
            assert!(event.get(key).is_some(), "no {key}: {line}");
        }
        levels.insert(event["level"].as_str().unwrap_or("").to_string());
    }
    assert!(
        levels.contains("DEBUG") && levels.contains("INFO"),
        "{levels:?}"
    );
    assert!(log.contains("pgdog stopped"));
    for secret in [
        "admin-secret-7",
        "wrong-password-42",
        "parameter-value-99",
        "literal-in-query-77",
        "missing_table_55",
    ] {
        assert!(!log.contains(secret), "{secret} in the log:\n{log}");
    }
    Ok(())
}

#[tokio::test]
async fn text_logs_keep_one_event_per_line() -> Result<()> {
    let cluster = PgCluster::start().await?;
    let mut pgdog = ConfigBuilder::new()
        .set("log_format", "text")
        .pool("pgdog", &cluster, "pgdog")
        .start()
        .await?;
    pgdog
        .connect("pgdog", "pgdog", "pgdog")
        .await?
        .simple_query("SELECT 1")
        .await?;
    pgdog.sigterm();
    pgdog.wait_exit(Duration::from_secs(10)).await?;
    let log = pgdog.log();
    assert!(log.contains("listening on"), "{log}");
    for line in log.lines() {
        // `2026-12-01T10:00:00.000000Z  INFO target: message`
        let mut words = line.split_whitespace();
        let time = words.next().unwrap_or("");
        assert!(time.ends_with('Z') && time.contains('T'), "{line}");
        assert!(
            matches!(
                words.next(),
                Some("TRACE" | "DEBUG" | "INFO" | "WARN" | "ERROR")
            ),
            "{line}"
        );
        assert!(!line.contains('\x1b'), "colour codes: {line:?}");
    }
    Ok(())
}

/// `<prefix>/bin/pgdog`, a link to the binary built here, in a fresh prefix.
fn installed_binary(prefix: &Path) -> Result<PathBuf> {
    let bin = prefix.join("bin");
    std::fs::create_dir_all(&bin)?;
    let linked = bin.join("pgdog");
    let built = pgdog_binary()?;
    // A hard link runs as `linked` (so it looks for plugins from there); a copy otherwise.
    if std::fs::hard_link(&built, &linked).is_err() {
        std::fs::copy(&built, &linked)?;
    }
    Ok(linked)
}

#[tokio::test]
async fn an_installed_pgdog_finds_its_plugin_in_lib_pgdog_or_says_where_it_looked() -> Result<()> {
    let cluster = PgCluster::start().await?;
    let prefix = tempfile::tempdir()?;
    let binary = installed_binary(prefix.path())?;
    let config = ConfigBuilder::new()
        .pool("pgdog", &cluster, "pgdog")
        .build();
    // Nothing installed beside it: start-up stops, naming every place it looked.
    let (status, out) = Pgdog::start_expect_failure_with_binary(&binary, &config)?;
    assert!(!status.success());
    let lib = prefix.path().join("lib").join("pgdog");
    for place in [prefix.path().join("bin"), lib.clone()] {
        let file = place.join("libpgdog_mirror_stats.so");
        assert!(out.contains(&file.display().to_string()), "{out}");
    }
    assert!(out.contains("plugin_dir"), "{out}");
    // Where a package puts it.
    std::fs::create_dir_all(&lib)?;
    let built = pgdog_binary()?.with_file_name("libpgdog_mirror_stats.so");
    std::fs::copy(&built, lib.join("libpgdog_mirror_stats.so"))?;
    let pgdog = Pgdog::start_with_binary(&binary, &config).await?;
    pgdog
        .connect("pgdog", "pgdog", "pgdog")
        .await?
        .simple_query("SELECT 1")
        .await?;
    drop(pgdog);
    // Or anywhere, with plugin_dir.
    std::fs::remove_dir_all(&lib)?;
    let with_dir = ConfigBuilder::new()
        .set("plugin_dir", built.parent().unwrap().display().to_string())
        .pool("pgdog", &cluster, "pgdog")
        .build();
    Pgdog::start_with_binary(&binary, &with_dir).await?;
    Ok(())
}
