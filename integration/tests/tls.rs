//! TLS end to end: certificates made at test time, PostgreSQL clusters that take TLS only
//! (`hostssl` lines alone, so the server itself refuses plaintext), and real clients
//! (psql, pgbench, psycopg, tokio-postgres over rustls) on the proxy's side.

mod common;

use anyhow::{bail, Context, Result};
use common::{run_with_password, settled_counts, sqlstate, MirrorEnv};
use pgdog_integration::{connect_tls, kv_dsn, Certs, ClientTls, ConfigBuilder, PgCluster, Pgdog};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const ADMIN_PASSWORD: &str = "tls-admin";

fn path(p: &Path) -> String {
    p.display().to_string()
}

/// pgdog's client side configured with `certs`'s server certificate.
fn with_client_tls(builder: ConfigBuilder, certs: &Certs) -> ConfigBuilder {
    builder
        .set("admin_password", ADMIN_PASSWORD)
        .set("client_tls_cert_file", path(&certs.server.cert))
        .set("client_tls_key_file", path(&certs.server.key))
}

/// A libpq connection string to the proxy (or `port`), with `extra` settings.
fn libpq(port: u16, db: &str, extra: &str) -> String {
    format!(
        "{} {extra}",
        kv_dsn("localhost", port, "pgdog", "pgdog", db)
    )
}

/// Runs `sql` with psql through `conninfo`; its output, or the error it printed.
fn psql(conninfo: &str, sql: &str) -> std::result::Result<String, String> {
    let (ok, out, err) = run_with_password("pgdog", "psql", &[conninfo, "-Atc", sql]);
    if ok {
        Ok(out.trim().to_string())
    } else {
        Err(err)
    }
}

/// The certificate a TLS handshake with pgdog's `port` (after an SSLRequest) presents,
/// as DER.
async fn presented_certificate(port: u16, tls: &ClientTls) -> Result<Vec<u8>> {
    let mut tcp = TcpStream::connect(("127.0.0.1", port)).await?;
    tcp.write_all(&[0, 0, 0, 8, 4, 210, 22, 47]).await?;
    let mut answer = [0u8; 1];
    tcp.read_exact(&mut answer).await?;
    if answer[0] != b'S' {
        bail!("SSLRequest answered {:?}", answer[0] as char);
    }
    let connector = tokio_rustls::TlsConnector::from(tls.config());
    let name = rustls_pki_types::ServerName::try_from("localhost")?;
    let stream = connector.connect(name, tcp).await?;
    let cert = stream
        .get_ref()
        .1
        .peer_certificates()
        .context("no certificate")?[0]
        .to_vec();
    Ok(cert)
}

fn der_of(pem_file: &Path) -> Result<Vec<u8>> {
    use rustls_pki_types::pem::PemObject;
    Ok(rustls_pki_types::CertificateDer::from_pem_file(pem_file)?.to_vec())
}

#[tokio::test]
async fn clients_connect_over_tls_with_psql_pgbench_psycopg_and_tokio_postgres() -> Result<()> {
    let certs = Certs::generate()?;
    let cluster = PgCluster::start().await?;
    let pgdog = with_client_tls(ConfigBuilder::new(), &certs)
        .pool("pgdog", &cluster, "pgdog")
        .start()
        .await?;
    let port = pgdog.port();
    let ca = path(&certs.ca);

    // psql: the proxy's certificate checked against our CA and the host name, and SCRAM
    // bound to the TLS channel (libpq fails rather than bind without it).
    let verify_full = libpq(
        port,
        "pgdog",
        &format!("sslmode=verify-full sslrootcert={ca}"),
    );
    assert_eq!(
        psql(&verify_full, "SELECT 1").map_err(anyhow::Error::msg)?,
        "1"
    );
    let bound = libpq(port, "pgdog", "sslmode=require channel_binding=require");
    assert_eq!(psql(&bound, "SELECT 2").map_err(anyhow::Error::msg)?, "2");
    let wrong = libpq(
        port,
        "pgdog",
        &format!("sslmode=verify-full sslrootcert={}", path(&certs.wrong_ca)),
    );
    let err = psql(&wrong, "SELECT 1").unwrap_err();
    assert!(err.contains("certificate verify failed"), "{err}");

    // tokio-postgres over rustls, which also binds the SCRAM exchange to the channel.
    let client = connect_tls(
        &libpq(port, "pgdog", "sslmode=require"),
        &ClientTls::trusting(&certs.ca)?,
    )
    .await?;
    let n: i32 = client.query_one("SELECT 3", &[]).await?.get(0);
    assert_eq!(n, 3);

    // psycopg (libpq underneath), from Debian's python3-psycopg.
    let script = format!(
        "import psycopg\nc = psycopg.connect({:?})\nprint(c.execute('select 4').fetchone()[0], c.pgconn.ssl_in_use)",
        libpq(port, "pgdog", &format!("sslmode=verify-full sslrootcert={ca}"))
    );
    let (ok, out, err) = run_with_password("pgdog", "/usr/bin/python3", &["-c", &script]);
    assert!(ok, "psycopg: {err}");
    assert_eq!(out.trim(), "4 True");

    // pgbench over TLS: not one failed transaction.
    let conninfo = libpq(port, "pgdog", "sslmode=require");
    let (ok, _, err) = run_with_password("pgdog", "pgbench", &["-i", "-s", "1", "-q", &conninfo]);
    assert!(ok, "pgbench -i: {err}");
    for mode in ["simple", "prepared"] {
        let args = [
            "-S", "-M", mode, "-c", "4", "-j", "2", "-t", "200", &conninfo,
        ];
        let (ok, out, err) = run_with_password("pgdog", "pgbench", &args);
        assert!(ok, "pgbench -M {mode}: {err}\n{out}");
        assert!(out.contains("processed: 800/800"), "{out}");
        assert!(
            out.contains("number of failed transactions: 0 (0.000%)"),
            "{out}"
        );
    }

    // The console says which clients are on TLS, and the console itself speaks it.
    let admin = kv_dsn(
        "localhost",
        pgdog.admin_port(),
        "admin",
        ADMIN_PASSWORD,
        "pgdog",
    );
    let (ok, out, err) = run_with_password(
        ADMIN_PASSWORD,
        "psql",
        &[
            &format!("{admin} sslmode=verify-full sslrootcert={ca}"),
            "-Atc",
            "SHOW CLIENTS",
        ],
    );
    assert!(ok, "admin over TLS: {err}");
    assert!(out.contains("|TLSv1.3"), "{out}");
    Ok(())
}

#[tokio::test]
async fn require_refuses_plaintext_clients_with_28000() -> Result<()> {
    let certs = Certs::generate()?;
    let cluster = PgCluster::start().await?;
    let pgdog = with_client_tls(ConfigBuilder::new(), &certs)
        .set("client_tls_sslmode", "require")
        .pool("pgdog", &cluster, "pgdog")
        .start()
        .await?;
    let plain = common::connect_err(&pgdog.dsn("pgdog", "pgdog", "pgdog")).await;
    assert_eq!(sqlstate(&plain).as_deref(), Some("28000"), "{plain}");
    let err = psql(&libpq(pgdog.port(), "pgdog", "sslmode=disable"), "SELECT 1").unwrap_err();
    assert!(err.contains("TLS is required"), "{err}");
    // The console too, with the same certificate.
    let admin = kv_dsn(
        "127.0.0.1",
        pgdog.admin_port(),
        "admin",
        ADMIN_PASSWORD,
        "pgdog",
    );
    let (ok, _, err) = run_with_password(
        ADMIN_PASSWORD,
        "psql",
        &[&format!("{admin} sslmode=disable"), "-c", "SHOW VERSION"],
    );
    assert!(!ok && err.contains("TLS is required"), "{err}");
    let (ok, _, err) = run_with_password(
        ADMIN_PASSWORD,
        "psql",
        &[&format!("{admin} sslmode=require"), "-c", "SHOW VERSION"],
    );
    assert!(ok, "{err}");
    assert_eq!(
        psql(&libpq(pgdog.port(), "pgdog", "sslmode=require"), "SELECT 1")
            .map_err(anyhow::Error::msg)?,
        "1"
    );
    Ok(())
}

/// A mirrored pair of pools: the same traffic, the same counts and comparisons whether
/// the servers are reached over TLS or plain TCP.
async fn mirror_workload(env: &MirrorEnv) -> Result<common::Counts> {
    let client = env.pgdog.connect("pgdog", "pgdog", "primary").await?;
    for i in 0..40 {
        client.simple_query(&format!("SELECT {i}")).await?;
        client.execute("SELECT $1::int", &[&i]).await?;
    }
    settled_counts(&env.pgdog, "primary", "all accounted for", |c| {
        c.total >= 80 && c.total == c.mirrored + c.errors + c.dropped
    })
    .await
}

#[tokio::test]
async fn tls_only_servers_are_mirrored_and_compared_as_plain_ones() -> Result<()> {
    let certs = Certs::generate()?;
    let plain = MirrorEnv::start("", |b| b.set("mirror_min_runtime_hours", 0)).await?;
    let plain_counts = mirror_workload(&plain).await?;

    let (p, m) = tokio::try_join!(PgCluster::start_tls(&certs), PgCluster::start_tls(&certs))?;
    // PostgreSQL itself refuses plaintext.
    assert!(p.connect("pgdog", "pgdog").await.is_err());
    let pgdog = ConfigBuilder::new()
        .set("mirror_min_runtime_hours", 0)
        .set("admin_password", ADMIN_PASSWORD)
        .set("server_tls_sslmode", "verify-full")
        .set("server_tls_ca_file", path(&certs.ca))
        .pool_at("primary", "localhost", p.port(), "pgdog")
        .pool_at("mirror", "localhost", m.port(), "pgdog")
        .pool_set("primary", "mirror_of", "mirror")
        .start()
        .await?;
    let tls = MirrorEnv {
        pgdog,
        primary: p,
        mirror: m,
    };
    let tls_counts = mirror_workload(&tls).await?;
    assert_eq!(tls_counts, plain_counts);
    assert_eq!(tls_counts.errors, 0, "{tls_counts:?}");

    // Both pools' server connections are TLS, as the servers see them too.
    let ssl: i64 = tls
        .primary
        .query_scalar("SELECT count(*) FROM pg_stat_ssl JOIN pg_stat_activity USING (pid) WHERE ssl AND usename = 'pgdog'")
        .await?;
    assert!(ssl >= 1);
    let ssl: i64 = tls
        .mirror
        .query_scalar("SELECT count(*) FROM pg_stat_ssl JOIN pg_stat_activity USING (pid) WHERE ssl AND usename = 'pgdog'")
        .await?;
    assert!(ssl >= 1);
    let console = tls
        .pgdog
        .connect_admin("admin", ADMIN_PASSWORD, "pgdog")
        .await?;
    let servers = common::admin_rows(&console, "SHOW SERVERS").await?;
    assert!(
        servers
            .iter()
            .all(|s| s["tls"].as_deref() == Some("TLSv1.3")
                || s["state"].as_deref() == Some("mirror or login")),
        "{servers:?}"
    );
    let queries = common::admin_rows(&console, "SHOW MIRROR QUERIES").await?;
    assert!(
        queries
            .iter()
            .all(|q| q["mismatches"].as_deref() == Some("0")),
        "{queries:?}"
    );
    Ok(())
}

/// Pool `app` on `port` with `settings`; what a client logging in through it is told.
async fn login_error(port: u16, settings: &[(&str, String)]) -> Result<String> {
    let mut builder = ConfigBuilder::new().pool_at("app", "127.0.0.1", port, "pgdog");
    for (key, value) in settings {
        builder = builder.pool_set("app", key, value.as_str());
    }
    let pgdog = builder.start().await?;
    match pgdog.connect("pgdog", "pgdog", "app").await {
        Ok(_) => Ok(String::new()),
        Err(e) => Ok(format!("{e:#}")),
    }
}

#[tokio::test]
async fn server_certificate_checks_fail_with_the_reason() -> Result<()> {
    let certs = Certs::generate()?;
    let tls = PgCluster::start_tls(&certs).await?;
    let ca = path(&certs.ca);
    let mode = |m: &str| ("server_tls_sslmode", m.to_string());

    let wrong_ca = login_error(
        tls.port(),
        &[
            mode("verify-full"),
            ("server_tls_ca_file", path(&certs.wrong_ca)),
        ],
    )
    .await?;
    assert!(
        wrong_ca.contains("UnknownIssuer") && wrong_ca.contains("pool \"app\""),
        "{wrong_ca}"
    );

    // A certificate for another name: verify-full refuses it, verify-ca does not.
    let other = PgCluster::start_tls(&certs).await?;
    other.use_certificate(&certs.issue("elsewhere", &["db.example"], None)?, &certs.ca)?;
    other.execute("SELECT pg_reload_conf()").await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let name = login_error(
        other.port(),
        &[mode("verify-full"), ("server_tls_ca_file", ca.clone())],
    )
    .await?;
    assert!(name.contains("not valid for name"), "{name}");
    let chain_only = login_error(
        other.port(),
        &[mode("verify-ca"), ("server_tls_ca_file", ca.clone())],
    )
    .await?;
    assert_eq!(chain_only, "");

    // `require` to a server without TLS: refused, with the reason; `prefer` falls back.
    let plain = PgCluster::start().await?;
    let refused = login_error(plain.port(), &[mode("require")]).await?;
    assert!(refused.contains("refused TLS"), "{refused}");
    assert_eq!(login_error(plain.port(), &[mode("prefer")]).await?, "");
    // And `disable` to a TLS-only server is refused by the server itself.
    let disabled = login_error(tls.port(), &[mode("disable")]).await?;
    assert!(disabled.contains("no pg_hba.conf entry"), "{disabled}");
    Ok(())
}

/// A TLS-terminating relay in front of `upstream`: it answers pgdog's SSLRequest, presents
/// `pair` (signed by the same CA, for 127.0.0.1), and opens its own TLS connection to the
/// server. Certificate checks pass; only channel binding can tell.
async fn man_in_the_middle(pair: &pgdog_integration::certs::Pair, upstream: u16) -> Result<u16> {
    use rustls_pki_types::pem::PemObject;
    let certs = rustls_pki_types::CertificateDer::pem_file_iter(&pair.cert)?
        .collect::<Result<Vec<_>, _>>()?;
    let key = rustls_pki_types::PrivateKeyDer::from_pem_file(&pair.key)?;
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let mut request = [0u8; 8];
                client.read_exact(&mut request).await?;
                client.write_all(b"S").await?;
                let mut client = acceptor.accept(client).await?;
                let mut server = TcpStream::connect(("127.0.0.1", upstream)).await?;
                server.write_all(&request).await?;
                let mut answer = [0u8; 1];
                server.read_exact(&mut answer).await?;
                let connector = tokio_rustls::TlsConnector::from(ClientTls::any().config());
                let name = rustls_pki_types::ServerName::try_from("localhost")?;
                let mut server = connector.connect(name, server).await?;
                tokio::io::copy_bidirectional(&mut client, &mut server).await?;
                anyhow::Ok(())
            });
        }
    });
    Ok(port)
}

#[tokio::test]
async fn channel_binding_stops_a_man_in_the_middle_of_the_server_connection() -> Result<()> {
    let certs = Certs::generate()?;
    let tls = PgCluster::start_tls(&certs).await?;
    let settings = |port: u16| {
        ConfigBuilder::new()
            .set("server_tls_sslmode", "verify-full")
            .set("server_tls_ca_file", path(&certs.ca))
            .pool_at("app", "127.0.0.1", port, "pgdog")
    };
    // Straight to the server: SCRAM-SHA-256-PLUS succeeds.
    let direct = settings(tls.port()).start().await?;
    let n: i32 = direct
        .connect("pgdog", "pgdog", "app")
        .await?
        .query_one("SELECT 1", &[])
        .await?
        .get(0);
    assert_eq!(n, 1);
    // Through a relay whose certificate passes every check: the binding does not.
    let relay = man_in_the_middle(&certs.issue("relay", &["127.0.0.1"], None)?, tls.port()).await?;
    let relayed = settings(relay).start().await?;
    let err = relayed.connect("pgdog", "pgdog", "app").await.unwrap_err();
    assert!(format!("{err:#}").contains("channel binding"), "{err:#}");
    let log = std::fs::read_to_string(tls.log_path())?;
    assert!(
        log.contains("SCRAM channel binding check failed"),
        "{}",
        tls.log_tail(20)
    );
    Ok(())
}

#[tokio::test]
async fn a_server_that_asks_for_a_client_certificate_gets_the_pools() -> Result<()> {
    let certs = Certs::generate()?;
    let tls = PgCluster::start_tls(&certs).await?;
    let pgdog = ConfigBuilder::new()
        .set("auth_type", "trust")
        .set("server_tls_sslmode", "verify-full")
        .set("server_tls_ca_file", path(&certs.ca))
        .set("server_tls_cert_file", path(&certs.client.cert))
        .set("server_tls_key_file", path(&certs.client.key))
        .pool_at("app", "localhost", tls.port(), "pgdog")
        .pool_set("app", "user", "certuser")
        .start()
        .await?;
    let client = pgdog_integration::connect_dsn(&pgdog.dsn("certuser", "", "app")).await?;
    let user: String = client
        .query_one("SELECT current_user::text", &[])
        .await?
        .get(0);
    assert_eq!(user, "certuser");
    Ok(())
}

#[tokio::test]
async fn a_rotated_certificate_is_served_after_reload_and_a_bad_one_is_refused() -> Result<()> {
    let certs = Certs::generate()?;
    let cluster = PgCluster::start().await?;
    let served = tempfile::tempdir()?;
    let (cert, key) = (
        served.path().join("proxy.crt"),
        served.path().join("proxy.key"),
    );
    std::fs::copy(&certs.server.cert, &cert)?;
    std::fs::copy(&certs.server.key, &key)?;
    let pgdog = ConfigBuilder::new()
        .set("admin_password", ADMIN_PASSWORD)
        .set("client_tls_cert_file", path(&cert))
        .set("client_tls_key_file", path(&key))
        .pool("pgdog", &cluster, "pgdog")
        .start()
        .await?;
    let trust = ClientTls::trusting(&certs.ca)?;
    assert_eq!(
        presented_certificate(pgdog.port(), &trust).await?,
        der_of(&certs.server.cert)?
    );
    let before = connect_tls(&libpq(pgdog.port(), "pgdog", "sslmode=require"), &trust).await?;

    let rotated = certs.issue("rotated", &["localhost", "127.0.0.1"], None)?;
    std::fs::copy(&rotated.cert, &cert)?;
    std::fs::copy(&rotated.key, &key)?;
    let console = pgdog
        .connect_admin("admin", ADMIN_PASSWORD, "pgdog")
        .await?;
    console.simple_query("RELOAD").await?;
    assert_eq!(
        presented_certificate(pgdog.port(), &trust).await?,
        der_of(&rotated.cert)?
    );
    // The client from before keeps its connection.
    let n: i32 = before.query_one("SELECT 7", &[]).await?.get(0);
    assert_eq!(n, 7);

    // A file that is not a certificate: the RELOAD is refused, naming the key, and the
    // certificate in use stays.
    std::fs::write(&cert, "not a certificate")?;
    let err = console.simple_query("RELOAD").await.unwrap_err();
    let text = err
        .as_db_error()
        .map(|e| e.message().to_string())
        .unwrap_or_default();
    assert!(text.contains("client_tls_cert_file"), "{text}");
    assert_eq!(
        presented_certificate(pgdog.port(), &trust).await?,
        der_of(&rotated.cert)?
    );
    assert!(
        !pgdog.log().contains("BEGIN PRIVATE KEY") && !pgdog.log().contains("PRIVATE KEY-----")
    );
    Ok(())
}

#[tokio::test]
async fn garbage_and_stalled_handshakes_disturb_nobody() -> Result<()> {
    let certs = Certs::generate()?;
    let cluster = PgCluster::start().await?;
    let pgdog: Pgdog = with_client_tls(ConfigBuilder::new(), &certs)
        .pool("pgdog", &cluster, "pgdog")
        .start()
        .await?;
    let ssl_request = [0, 0, 0, 8, 4, 210, 22, 47];
    // Stalls after its SSLRequest was accepted.
    let mut stalled = TcpStream::connect(("127.0.0.1", pgdog.port())).await?;
    stalled.write_all(&ssl_request).await?;
    // Sends garbage instead of a ClientHello.
    let mut garbage = TcpStream::connect(("127.0.0.1", pgdog.port())).await?;
    garbage.write_all(&ssl_request).await?;
    let mut s = [0u8; 1];
    garbage.read_exact(&mut s).await?;
    garbage.write_all(&[0x42; 512]).await?;
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(5), garbage.read_to_end(&mut rest)).await;
    assert!(closed.is_ok(), "the garbage connection is closed");
    // Sends bytes behind its SSLRequest, before the answer: refused, not read as if they
    // had come encrypted.
    let mut smuggler = TcpStream::connect(("127.0.0.1", pgdog.port())).await?;
    smuggler
        .write_all(&[&ssl_request[..], b"Q\0\0\0\x0dSELECT 1\0"].concat())
        .await?;
    let mut reply = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), smuggler.read_to_end(&mut reply)).await?;
    assert!(reply.is_empty() || reply[0] == b'E', "{reply:?}");
    // Everyone else is served meanwhile.
    for i in 0..3 {
        let client = connect_tls(
            &libpq(pgdog.port(), "pgdog", "sslmode=require"),
            &ClientTls::trusting(&certs.ca)?,
        )
        .await?;
        let n: i32 = client.query_one("SELECT $1::int", &[&i]).await?.get(0);
        assert_eq!(n, i);
    }
    drop(stalled);
    Ok(())
}
