//! End-to-end tests of the proxy core: real PostgreSQL clusters, the real `pgdog` binary and
//! real clients (tokio-postgres, psql, pgbench).

mod common;

use anyhow::Result;
use bytes::Bytes;
use common::{connect_err, eventually, raw_login, read_until, run_with_password, sqlstate};
use futures_util::{SinkExt, StreamExt};
use pgdog_integration::{ConfigBuilder, PgCluster, Pgdog};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn proxy_for(cluster: &PgCluster) -> Result<Pgdog> {
    ConfigBuilder::new()
        .pool("pgdog", cluster, "pgdog")
        .start()
        .await
}

#[tokio::test]
async fn simple_and_extended_protocol_prepared_statements_and_rollback() -> Result<()> {
    let cluster = PgCluster::start().await?;
    let pgdog = proxy_for(&cluster).await?;
    let client = pgdog.connect("pgdog", "pgdog", "pgdog").await?;

    // Simple protocol, several statements in one Query.
    let rows = client
        .simple_query("CREATE TABLE items(id int primary key, name text); SELECT 41 + 1 AS answer")
        .await?;
    let answer = rows.iter().find_map(|m| match m {
        tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
        _ => None,
    });
    assert_eq!(answer.as_deref(), Some("42"));

    // Extended protocol with parameters and a reused prepared statement.
    let insert = client.prepare("INSERT INTO items VALUES ($1, $2)").await?;
    for i in 0..10 {
        client.execute(&insert, &[&i, &format!("item {i}")]).await?;
    }
    let n: i64 = client
        .query_one("SELECT count(*) FROM items WHERE id >= $1", &[&5])
        .await?
        .get(0);
    assert_eq!(n, 5);

    // A transaction rolled back leaves nothing behind; one committed does.
    client
        .batch_execute("BEGIN; INSERT INTO items VALUES (100, 'gone')")
        .await?;
    client.batch_execute("ROLLBACK").await?;
    let mut client = client;
    let tx = client.transaction().await?;
    tx.execute("INSERT INTO items VALUES (101, 'kept')", &[])
        .await?;
    tx.commit().await?;
    let ids: Vec<i32> = client
        .query("SELECT id FROM items WHERE id >= 100 ORDER BY id", &[])
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(ids, vec![101]);

    // An error in the middle keeps the session usable.
    let err = client
        .simple_query("SELECT * FROM missing_table")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&err).as_deref(), Some("42P01"));
    let one: i32 = client.query_one("SELECT 1", &[]).await?.get(0);
    assert_eq!(one, 1);
    Ok(())
}

#[tokio::test]
async fn copy_in_and_out() -> Result<()> {
    let cluster = PgCluster::start().await?;
    let pgdog = proxy_for(&cluster).await?;
    let client = pgdog.connect("pgdog", "pgdog", "pgdog").await?;
    client
        .batch_execute("CREATE TABLE c(a int, b text)")
        .await?;

    let sink = client.copy_in("COPY c FROM STDIN").await?;
    futures_util::pin_mut!(sink);
    let mut data = String::new();
    for i in 0..1000 {
        data.push_str(&format!("{i}\trow {i}\n"));
    }
    sink.send(Bytes::from(data.clone())).await?;
    let copied = sink.finish().await?;
    assert_eq!(copied, 1000);

    let stream = client
        .copy_out("COPY (SELECT * FROM c ORDER BY a) TO STDOUT")
        .await?;
    futures_util::pin_mut!(stream);
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        out.extend_from_slice(&chunk?);
    }
    assert_eq!(String::from_utf8(out)?, data);
    Ok(())
}

#[tokio::test]
async fn notices_and_notifications_pass_through() -> Result<()> {
    let cluster = PgCluster::start().await?;
    let pgdog = proxy_for(&cluster).await?;
    let (client, mut connection) =
        tokio_postgres::connect(&pgdog.dsn("pgdog", "pgdog", "pgdog"), tokio_postgres::NoTls)
            .await?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(Ok(m)) = messages.next().await {
            let _ = tx.send(m);
        }
    });
    client.batch_execute("LISTEN news").await?;
    client
        .batch_execute("DO $$ BEGIN RAISE NOTICE 'hello notice'; END $$")
        .await?;
    let other = pgdog.connect("pgdog", "pgdog", "pgdog").await?;
    other.batch_execute("NOTIFY news, 'payload 1'").await?;
    // The notification is delivered to the listening client once it does something.
    let (mut notice, mut notification) = (false, false);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !(notice && notification) && Instant::now() < deadline {
        client.batch_execute("SELECT 1").await?;
        while let Ok(m) = rx.try_recv() {
            match m {
                tokio_postgres::AsyncMessage::Notice(n) => notice |= n.message() == "hello notice",
                tokio_postgres::AsyncMessage::Notification(n) => {
                    notification |= n.channel() == "news" && n.payload() == "payload 1"
                }
                _ => {}
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(notice, "NoticeResponse not forwarded");
    assert!(notification, "NotificationResponse not forwarded");
    Ok(())
}

#[tokio::test]
async fn psql_and_pgbench_in_every_protocol_mode() -> Result<()> {
    let cluster = PgCluster::start().await?;
    let pgdog = proxy_for(&cluster).await?;
    let port = pgdog.port().to_string();
    let base = ["-h", "127.0.0.1", "-p", port.as_str(), "-U", "pgdog"];

    // psql asks for SSL first (sslmode=prefer) and must fall back to plain.
    let mut args = base.to_vec();
    args.extend([
        "-d",
        "pgdog",
        "-Atc",
        "SELECT current_database(), current_setting('application_name')",
    ]);
    let (ok, out, err) = run_with_password("pgdog", "psql", &args);
    assert!(ok, "psql failed: {err}");
    assert_eq!(out.trim(), "pgdog|psql");

    let mut init = base.to_vec();
    init.extend(["-i", "-s", "1", "-q", "pgdog"]);
    let (ok, _, err) = run_with_password("pgdog", "pgbench", &init);
    assert!(ok, "pgbench -i failed: {err}");
    for mode in ["simple", "extended", "prepared"] {
        let mut args = base.to_vec();
        args.extend(["-S", "-M", mode, "-c", "4", "-j", "2", "-t", "200", "pgdog"]);
        let (ok, out, err) = run_with_password("pgdog", "pgbench", &args);
        assert!(ok, "pgbench -M {mode} failed: {err}\n{out}");
        assert!(
            out.contains("number of transactions actually processed: 800/800"),
            "{out}"
        );
        assert!(
            out.contains("number of failed transactions: 0 (0.000%)"),
            "{out}"
        );
    }
    // The TPC-B-like default script, with transactions.
    let mut args = base.to_vec();
    args.extend(["-M", "prepared", "-c", "4", "-j", "2", "-t", "100", "pgdog"]);
    let (ok, out, err) = run_with_password("pgdog", "pgbench", &args);
    assert!(
        ok && out.contains("number of failed transactions: 0 (0.000%)"),
        "{err}\n{out}"
    );
    Ok(())
}

#[tokio::test]
async fn client_authentication_methods_and_failures() -> Result<()> {
    let cluster = PgCluster::start().await?;
    for auth in ["scram-sha-256", "md5", "trust"] {
        let pgdog = ConfigBuilder::new()
            .set("auth_type", auth)
            .pool("pgdog", &cluster, "pgdog")
            .start()
            .await?;
        let client = pgdog.connect("pgdog", "pgdog", "pgdog").await?;
        let n: i32 = client.query_one("SELECT 7", &[]).await?.get(0);
        assert_eq!(n, 7, "{auth}");
        if auth != "trust" {
            let err = pgdog.connect("pgdog", "wrong", "pgdog").await.unwrap_err();
            let text = format!("{err:#}");
            assert!(
                text.contains("28P01") || text.contains("password authentication failed"),
                "{auth}: {text}"
            );
        }
        // Wrong user for the pool.
        let err = pgdog
            .connect("someone", "pgdog", "pgdog")
            .await
            .unwrap_err();
        assert!(
            format!("{err:#}").contains("password authentication failed"),
            "{auth}: {err:#}"
        );
        // Unknown database.
        let err = connect_err(&pgdog.dsn("pgdog", "pgdog", "nosuchdb")).await;
        assert_eq!(sqlstate(&err).as_deref(), Some("3D000"), "{auth}: {err}");
    }
    Ok(())
}

#[tokio::test]
async fn server_authentication_methods() -> Result<()> {
    let cluster = PgCluster::start().await?;
    // pgdog -> scram, md5user -> md5, plainuser -> cleartext password, trustuser -> trust.
    for user in ["pgdog", "md5user", "plainuser", "trustuser"] {
        let pgdog = ConfigBuilder::new()
            .pool("db", &cluster, "pgdog")
            .pool_set("db", "user", user)
            .pool_set("db", "password", pgdog_integration::password_for(user))
            .start()
            .await?;
        let client = pgdog
            .connect(user, pgdog_integration::password_for(user), "db")
            .await?;
        let who: String = client
            .query_one("SELECT current_user::text", &[])
            .await?
            .get(0);
        assert_eq!(who, user);
    }
    Ok(())
}

#[tokio::test]
async fn routing_by_pool_name_then_by_unique_database() -> Result<()> {
    let cluster = PgCluster::start().await?;
    cluster.create_database("test_primary").await?;
    let pgdog = ConfigBuilder::new()
        .pool("primary", &cluster, "test_primary")
        .start()
        .await?;
    for db in ["primary", "test_primary"] {
        let client = pgdog.connect("pgdog", "pgdog", db).await?;
        let name: String = client
            .query_one("SELECT current_database()::text", &[])
            .await?
            .get(0);
        assert_eq!(name, "test_primary");
    }
    Ok(())
}

#[tokio::test]
async fn cancel_request_stops_a_running_query() -> Result<()> {
    let cluster = PgCluster::start().await?;
    let pgdog = proxy_for(&cluster).await?;
    let client = pgdog.connect("pgdog", "pgdog", "pgdog").await?;
    let token = client.cancel_token();
    let started = Instant::now();
    let running = tokio::spawn(async move {
        client
            .simple_query("SELECT pg_sleep(30)")
            .await
            .map(|_| client)
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    token.cancel_query(tokio_postgres::NoTls).await?;
    let err = running.await?.unwrap_err();
    assert_eq!(sqlstate(&err).as_deref(), Some("57014"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(10));
    Ok(())
}

#[tokio::test]
async fn client_killed_mid_query_does_not_leak_its_server_connection() -> Result<()> {
    let cluster = PgCluster::start().await?;
    let pgdog = ConfigBuilder::new()
        .set("checkout_timeout_ms", 3000)
        .pool("pgdog", &cluster, "pgdog")
        .pool_set("pgdog", "pool_size", 1)
        .start()
        .await?;
    let (client, connection) =
        tokio_postgres::connect(&pgdog.dsn("pgdog", "pgdog", "pgdog"), tokio_postgres::NoTls)
            .await?;
    let conn_task = tokio::spawn(connection);
    let query =
        tokio::spawn(async move { client.simple_query("SELECT pg_sleep(60)").await.map(|_| ()) });
    let superuser = cluster.superuser("postgres").await?;
    eventually(Duration::from_secs(10), "pg_sleep running", || async {
        let n: i64 = superuser
            .query_one("SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep(60)%' AND state = 'active'", &[])
            .await?
            .get(0);
        Ok((n == 1).then_some(()))
    })
    .await?;
    // Kill the client: its socket closes mid-query.
    conn_task.abort();
    query.abort();
    // The query is cancelled on the server, and the only server slot is free again.
    eventually(Duration::from_secs(10), "pg_sleep gone", || async {
        let n: i64 = superuser
            .query_one("SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep(60)%' AND state = 'active'", &[])
            .await?
            .get(0);
        Ok((n == 0).then_some(()))
    })
    .await?;
    let again = pgdog.connect("pgdog", "pgdog", "pgdog").await?;
    let one: i32 = again.query_one("SELECT 1", &[]).await?.get(0);
    assert_eq!(one, 1);
    Ok(())
}

#[tokio::test]
async fn sessions_are_reset_between_clients() -> Result<()> {
    let cluster = PgCluster::start().await?;
    let pgdog = ConfigBuilder::new()
        .pool("pgdog", &cluster, "pgdog")
        .pool_set("pgdog", "pool_size", 1)
        .start()
        .await?;
    {
        let a = pgdog.connect("pgdog", "pgdog", "pgdog").await?;
        a.batch_execute(
            "SET work_mem = '77MB'; PREPARE p AS SELECT 1; CREATE TEMP TABLE tmp(x int)",
        )
        .await?;
        a.batch_execute("BEGIN; CREATE TABLE leftover(x int)")
            .await?; // left open on purpose
    }
    // Same (only) server connection, fresh state.
    let b = eventually(Duration::from_secs(10), "second client", || async {
        Ok(pgdog.connect("pgdog", "pgdog", "pgdog").await.ok())
    })
    .await?;
    let work_mem: String = b.query_one("SHOW work_mem", &[]).await?.get(0);
    assert_ne!(work_mem, "77MB");
    let prepared: i64 = b
        .query_one(
            "SELECT count(*) FROM pg_prepared_statements WHERE name = 'p'",
            &[],
        )
        .await?
        .get(0);
    assert_eq!(prepared, 0);
    let gone: bool = b
        .query_one("SELECT to_regclass('leftover') IS NULL", &[])
        .await?
        .get(0);
    assert!(gone, "a new client must not inherit an open transaction");
    Ok(())
}

#[tokio::test]
async fn malformed_messages_close_only_their_client() -> Result<()> {
    let cluster = PgCluster::start().await?;
    let pgdog = ConfigBuilder::new()
        .set("auth_type", "trust")
        .set("max_message_size", 65536)
        .pool("pgdog", &cluster, "pgdog")
        .start()
        .await?;
    let healthy = pgdog.connect("pgdog", "pgdog", "pgdog").await?;

    // A garbage startup packet.
    let mut bad = TcpStream::connect(("127.0.0.1", pgdog.port())).await?;
    bad.write_all(&[0xff, 0xff, 0xff, 0xff, 1, 2, 3, 4]).await?;
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), bad.read_to_end(&mut rest)).await?;
    assert!(rest.is_empty() || rest[0] == b'E');

    // A negative message length after login.
    let mut s = raw_login(pgdog.port(), "pgdog", "pgdog").await?;
    s.write_all(&[b'Q', 0xff, 0xff, 0xff, 0xf0]).await?;
    let reply = read_until(&mut s, b'E').await?;
    assert!(String::from_utf8_lossy(&reply).contains("08P01"));

    // An oversized message after login.
    let mut s = raw_login(pgdog.port(), "pgdog", "pgdog").await?;
    s.write_all(&[b'Q', 0x00, 0x10, 0x00, 0x00]).await?;
    let reply = read_until(&mut s, b'E').await?;
    assert!(String::from_utf8_lossy(&reply).contains("exceeds the limit"));

    // Everyone else is unaffected.
    let n: i32 = healthy.query_one("SELECT 5", &[]).await?.get(0);
    assert_eq!(n, 5);
    let fresh = pgdog.connect("pgdog", "pgdog", "pgdog").await?;
    let n: i32 = fresh.query_one("SELECT 6", &[]).await?.get(0);
    assert_eq!(n, 6);
    Ok(())
}

#[tokio::test]
async fn ssl_and_gssenc_requests_are_declined() -> Result<()> {
    let cluster = PgCluster::start().await?;
    let pgdog = proxy_for(&cluster).await?;
    for code in [80_877_103u32, 80_877_104] {
        let mut s = TcpStream::connect(("127.0.0.1", pgdog.port())).await?;
        let mut req = 8u32.to_be_bytes().to_vec();
        req.extend_from_slice(&code.to_be_bytes());
        s.write_all(&req).await?;
        let mut answer = [0u8; 1];
        s.read_exact(&mut answer).await?;
        assert_eq!(&answer, b"N");
    }
    Ok(())
}

#[tokio::test]
async fn server_down_and_pool_exhausted_are_clear_errors() -> Result<()> {
    let cluster = PgCluster::start().await?;
    let down_port = pgdog_integration::free_port();
    let pgdog = ConfigBuilder::new()
        .set("checkout_timeout_ms", 500)
        .set("connect_timeout_ms", 2000)
        .pool("pgdog", &cluster, "pgdog")
        .pool_set("pgdog", "pool_size", 1)
        .pool_at("down", "127.0.0.1", down_port, "pgdog")
        .start()
        .await?;
    let err = connect_err(&pgdog.dsn("pgdog", "pgdog", "down")).await;
    assert_eq!(sqlstate(&err).as_deref(), Some("08006"), "{err}");

    let _holder = pgdog.connect("pgdog", "pgdog", "pgdog").await?;
    let err = connect_err(&pgdog.dsn("pgdog", "pgdog", "pgdog")).await;
    assert_eq!(sqlstate(&err).as_deref(), Some("53300"), "{err}");
    let message = err
        .as_db_error()
        .map(|d| d.message().to_string())
        .unwrap_or_default();
    assert!(message.contains("exhausted"), "{message}");
    Ok(())
}

#[tokio::test]
async fn sigterm_lets_open_transactions_finish_then_exits() -> Result<()> {
    let cluster = PgCluster::start().await?;
    let mut pgdog = ConfigBuilder::new()
        .set("shutdown_timeout_ms", 10000)
        .pool("pgdog", &cluster, "pgdog")
        .start()
        .await?;
    let idle = pgdog.connect("pgdog", "pgdog", "pgdog").await?;
    let busy = pgdog.connect("pgdog", "pgdog", "pgdog").await?;
    busy.batch_execute("CREATE TABLE s(x int); BEGIN; INSERT INTO s VALUES (1)")
        .await?;
    pgdog.sigterm();
    // The idle client is told, the one in a transaction may finish it.
    eventually(Duration::from_secs(5), "idle client closed", || async {
        Ok(idle.is_closed().then_some(()))
    })
    .await?;
    busy.batch_execute("INSERT INTO s VALUES (2); COMMIT")
        .await?;
    let status = pgdog.wait_exit(Duration::from_secs(10)).await?;
    assert!(status.success(), "{status:?}");
    let n: i64 = cluster
        .query_scalar_in("pgdog", "SELECT count(*) FROM s")
        .await?;
    assert_eq!(n, 2);
    Ok(())
}

#[tokio::test]
async fn bad_configs_are_refused_with_line_and_key() -> Result<()> {
    let (status, out) =
        Pgdog::start_expect_failure("[general]\nport = 1\n\n[[pools]]\nname = \"a\"\nbogus = 3\n")?;
    assert!(!status.success());
    assert!(
        out.contains("line 6") && out.contains("pools[0].bogus"),
        "{out}"
    );
    let (status, out) = Pgdog::check_config(
        "[[pools]]\nname = \"a\"\nmirror_of = \"nowhere\"\nmirror_exposure = 2.0\n[[pools]]\nname = \"a\"\n",
    )?;
    assert!(!status.success());
    assert!(out.contains("line 3: pools[0].mirror_of"), "{out}");
    assert!(out.contains("line 4: pools[0].mirror_exposure"), "{out}");
    assert!(out.contains("line 6: pools[1].name"), "{out}");
    let (status, out) =
        Pgdog::check_config("[general]\nauth_type = \"trust\"\n[[pools]]\nname = \"a\"\n")?;
    assert!(status.success(), "{out}");
    Ok(())
}

#[tokio::test]
async fn passwords_never_reach_the_log() -> Result<()> {
    let cluster = PgCluster::start().await?;
    let pgdog = ConfigBuilder::new()
        .general("admin_password = \"admin-secret-9\"")
        .pool("pgdog", &cluster, "pgdog")
        .start()
        .await?;
    let _ = pgdog.connect("pgdog", "wrong-password-123", "pgdog").await;
    let client = pgdog.connect("pgdog", "pgdog", "pgdog").await?;
    client.batch_execute("SELECT 1").await?;
    let log = pgdog.log();
    for secret in [
        "admin-secret-9",
        "wrong-password-123",
        "password = \"pgdog\"",
    ] {
        assert!(!log.contains(secret), "{secret} in log:\n{log}");
    }
    Ok(())
}
