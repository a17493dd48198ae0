//! Where clients reach pgdog and how many may: several listen addresses (IPv4 and IPv6 on
//! one port), Unix sockets both ways (psql's default connection lands on pgdog; a pool
//! reaches its server through the server's socket), every listener bound before any
//! accepts, and `max_client_conn`.

mod common;

use anyhow::Result;
use common::{admin_rows, connect_err, run_with_password, sqlstate};
use pgdog_integration::{kv_dsn, ConfigBuilder, PgCluster, Pgdog};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[tokio::test]
async fn ipv4_and_ipv6_on_the_same_port() -> Result<()> {
    let cluster = PgCluster::start().await?;
    let pgdog = ConfigBuilder::new()
        .set("host", vec!["127.0.0.1", "::1"])
        .set("admin_password", "admin")
        .pool("pgdog", &cluster, "pgdog")
        .start()
        .await?;
    for host in ["127.0.0.1", "::1"] {
        let dsn = kv_dsn(host, pgdog.port(), "pgdog", "pgdog", "pgdog");
        let client = pgdog_integration::connect_dsn(&dsn).await?;
        client.simple_query("SELECT 1").await?;
        let admin = kv_dsn(host, pgdog.admin_port(), "admin", "admin", "pgdog");
        pgdog_integration::connect_dsn(&admin)
            .await?
            .simple_query("SHOW VERSION")
            .await?;
        // The metrics endpoint listens on `host` too.
        let metrics = pgdog_integration::http_get(host, pgdog.metrics_port(), "/metrics").await?;
        assert_eq!(metrics.status, 200, "{host}");
    }
    let log = pgdog.log();
    let port = pgdog.port();
    assert!(
        log.contains(&format!("listening on 127.0.0.1:{port}, [::1]:{port}")),
        "{log}"
    );
    Ok(())
}

/// A Unix socket directory the test may use: `/var/run/postgresql` (where psql looks by
/// default) when it exists and is writable, else a temporary one.
fn socket_dir() -> Result<(std::path::PathBuf, Option<tempfile::TempDir>, bool)> {
    let default = Path::new("/var/run/postgresql");
    let writable = default.is_dir()
        && tempfile::Builder::new()
            .prefix(".pgdog-probe")
            .tempfile_in(default)
            .is_ok();
    if writable {
        return Ok((default.to_path_buf(), None, true));
    }
    let dir = tempfile::tempdir()?;
    Ok((dir.path().to_path_buf(), Some(dir), false))
}

#[tokio::test]
async fn unix_sockets_for_clients_and_towards_servers() -> Result<()> {
    let cluster = PgCluster::start().await?;
    let (dir, _keep, is_psql_default) = socket_dir()?;
    // The pool reaches its server through the server's own socket.
    let mut pgdog = ConfigBuilder::new()
        .set("unix_socket_dir", dir.display().to_string())
        .pool("pgdog", &cluster, "pgdog")
        .pool_set("pgdog", "host", cluster.socket_dir().display().to_string())
        .start()
        .await?;
    let socket = dir.join(format!(".s.PGSQL.{}", pgdog.port()));
    assert!(socket.exists(), "{}", socket.display());
    let port = pgdog.port().to_string();
    // Runs on pgdog's server connection: was it made through the server's socket?
    let sql = "SELECT client_addr IS NULL AND client_port = -1 FROM pg_stat_activity \
               WHERE pid = pg_backend_pid()";
    // psql with no host: libpq's default socket directory, where pgdog listens.
    let mut args = vec![
        "-X", "-A", "-t", "-p", &port, "-U", "pgdog", "-d", "pgdog", "-c", sql,
    ];
    let dir_text = dir.display().to_string();
    if !is_psql_default {
        args.splice(0..0, ["-h", dir_text.as_str()]);
    }
    let (ok, out, err) = run_with_password("pgdog", "psql", &args);
    assert!(ok, "{err}");
    // pgdog's own server connection came through the server's socket (no client address).
    assert_eq!(out.trim(), "t", "{out}{err}");
    // The admin console listens there too, and shows a socket client as `unix`.
    let admin_port = pgdog.admin_port().to_string();
    let mut admin_args = vec![
        "-X",
        "-A",
        "-t",
        "-p",
        &admin_port,
        "-U",
        "admin",
        "-d",
        "pgdog",
    ];
    if !is_psql_default {
        admin_args.splice(0..0, ["-h", dir_text.as_str()]);
    }
    admin_args.extend(["-c", "SHOW VERSION"]);
    let (ok, out, err) = run_with_password("", "psql", &admin_args);
    assert!(ok && out.contains("pgdog"), "{out}{err}");
    // A tokio-postgres client over the socket, seen by SHOW CLIENTS.
    let (client, conn) = tokio_postgres::Config::new()
        .host_path(&dir)
        .port(pgdog.port())
        .user("pgdog")
        .password("pgdog")
        .dbname("pgdog")
        .connect(tokio_postgres::NoTls)
        .await?;
    tokio::spawn(conn);
    client.simple_query("SELECT 1").await?;
    let console = pgdog.connect_admin("admin", "", "pgdog").await?;
    let clients = admin_rows(&console, "SHOW CLIENTS").await?;
    assert!(
        clients
            .iter()
            .any(|c| c["addr"].as_deref() == Some("unix")
                && c["port"].as_deref() == Some(port.as_str())),
        "{clients:?}"
    );
    // A clean stop removes the socket files.
    drop((client, console));
    pgdog.sigterm();
    pgdog.wait_exit(Duration::from_secs(10)).await?;
    assert!(!socket.exists());
    Ok(())
}

/// Starts pgdog with one of its ports taken by another process, while a thread keeps
/// connecting to its proxy port: start-up must fail before it accepts anyone.
fn start_with_a_port_taken(taken: &str) -> Result<()> {
    let blocker = std::net::TcpListener::bind("127.0.0.1:0")?;
    let builder = ConfigBuilder::new().set(taken, i64::from(blocker.local_addr()?.port()));
    let proxy_port = builder.port().expect("a port");
    let config = builder.pool_at("pgdog", "127.0.0.1", 1, "pgdog").build();
    let stop = Arc::new(AtomicBool::new(false));
    let (accepted, attempts) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let prober = std::thread::spawn({
        let (stop, accepted, attempts) = (stop.clone(), accepted.clone(), attempts.clone());
        move || {
            while !stop.load(Ordering::Relaxed) {
                attempts.fetch_add(1, Ordering::Relaxed);
                if std::net::TcpStream::connect(("127.0.0.1", proxy_port)).is_ok() {
                    accepted.fetch_add(1, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_micros(200));
            }
        }
    });
    let result = Pgdog::start_expect_failure(&config);
    stop.store(true, Ordering::Relaxed);
    prober.join().unwrap();
    let (status, out) = result?;
    assert!(!status.success());
    let what = taken.strip_suffix("_port").unwrap_or(taken);
    assert!(out.contains(&format!("({what})")), "{out}");
    assert!(!out.contains("listening on"), "{out}");
    assert!(attempts.load(Ordering::Relaxed) > 10);
    assert_eq!(accepted.load(Ordering::Relaxed), 0, "{out}");
    Ok(())
}

#[test]
fn every_listener_is_bound_before_any_accepts() -> Result<()> {
    start_with_a_port_taken("metrics_port")?;
    start_with_a_port_taken("admin_port")
}

#[tokio::test]
async fn the_client_over_max_client_conn_gets_53300_and_the_others_go_on() -> Result<()> {
    let cluster = PgCluster::start().await?;
    let pgdog = ConfigBuilder::new()
        .set("max_client_conn", 3)
        .pool("pgdog", &cluster, "pgdog")
        .start()
        .await?;
    let mut clients = Vec::new();
    for _ in 0..3 {
        clients.push(pgdog.connect("pgdog", "pgdog", "pgdog").await?);
    }
    let err = connect_err(&pgdog.dsn("pgdog", "pgdog", "pgdog")).await;
    assert_eq!(sqlstate(&err).as_deref(), Some("53300"), "{err}");
    for client in &clients {
        client.simple_query("SELECT 1").await?;
    }
    // A place freed is a place taken.
    drop(clients.pop());
    let again = common::eventually(Duration::from_secs(10), "a free place", || async {
        Ok(pgdog.connect("pgdog", "pgdog", "pgdog").await.ok())
    })
    .await?;
    again.simple_query("SELECT 1").await?;
    Ok(())
}
