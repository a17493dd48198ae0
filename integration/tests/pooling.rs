//! Transaction pooling end to end, against a real PostgreSQL: many clients on few server
//! connections, transactions kept whole, named statements that follow their client from
//! connection to connection, the client's parameters restored on each checkout, and the
//! warning about session state.

mod common;

use anyhow::{ensure, Context, Result};
use common::*;
use futures_util::future::try_join_all;
use pgdog_integration::{connect_dsn, raise_fd_limit, ConfigBuilder, PgCluster, Pgdog};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio_postgres::Client;

/// pgdog in transaction mode on `primary`'s database `pgdog`, pool `primary` of `size`.
async fn transaction_mode(
    primary: &PgCluster,
    size: usize,
    configure: impl FnOnce(ConfigBuilder) -> ConfigBuilder,
) -> Result<Pgdog> {
    let base = ConfigBuilder::new()
        .set("pool_mode", "transaction")
        .set("admin_password", "admin")
        .pool("primary", primary, "pgdog")
        .pool_set("primary", "pool_size", size as i64);
    configure(base).start().await
}

/// `n` clients of pool `primary`, connected `at_once` at a time.
async fn clients(pgdog: &Pgdog, n: usize, at_once: usize) -> Result<Vec<Client>> {
    let dsn = pgdog.dsn("pgdog", "pgdog", "primary");
    let mut all = Vec::with_capacity(n);
    while all.len() < n {
        let batch = (n - all.len()).min(at_once);
        all.extend(try_join_all((0..batch).map(|_| connect_dsn(&dsn))).await?);
    }
    Ok(all)
}

/// Samples the number of the pool user's backends on `cluster` until dropped; the
/// highest count seen is in the returned cell.
fn watch_backends(cluster: &PgCluster, user: &'static str) -> (Arc<AtomicI64>, Watcher) {
    let most = Arc::new(AtomicI64::new(0));
    let dsn =
        pgdog_integration::kv_dsn(cluster.host(), cluster.port(), "pgdog", "pgdog", "postgres");
    let task = tokio::spawn({
        let most = most.clone();
        async move {
            let Ok(c) = connect_dsn(&dsn).await else {
                return;
            };
            loop {
                let sql = "SELECT count(*) FROM pg_stat_activity \
                           WHERE usename = $1 AND datname <> 'postgres'";
                if let Ok(row) = c.query_one(sql, &[&user]).await {
                    most.fetch_max(row.get::<_, i64>(0), Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    });
    (most, Watcher(task))
}

/// The admin console, once it listens.
async fn console(pgdog: &mut Pgdog) -> Result<Client> {
    let port = pgdog.admin_port();
    pgdog.wait_for_port(port, Duration::from_secs(10)).await?;
    pgdog.connect_admin("admin", "admin", "pgdog").await
}

struct Watcher(tokio::task::JoinHandle<()>);

impl Drop for Watcher {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// What the client sees of the parameters that follow it.
async fn show(c: &Client) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for p in ["application_name", "TimeZone", "search_path", "DateStyle"] {
        let rows = c.simple_query(&format!("SHOW {p}")).await?;
        let value = rows.iter().find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
            _ => None,
        });
        out.push(value.unwrap_or_default());
    }
    Ok(out)
}

async fn backend_pid(c: &Client) -> Result<i32> {
    Ok(c.query_one("SELECT pg_backend_pid()", &[]).await?.get(0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_clients_share_ten_server_connections_and_no_transaction_is_split(
) -> Result<()> {
    raise_fd_limit(8192);
    let primary = PgCluster::start().await?;
    primary
        .execute_in("pgdog", "CREATE TABLE seen(client int, xact int, pid int)")
        .await?;
    let mut pgdog = transaction_mode(&primary, 10, |b| {
        b.set("auth_type", "trust")
            .set("max_client_conn", 2100)
            .set("checkout_timeout_ms", 60_000)
    })
    .await?;
    let (most, _watcher) = watch_backends(&primary, "pgdog");
    let all = clients(&pgdog, 2000, 200).await?;
    // Every client, all at once: two transactions of four round trips each. Inside one,
    // every statement runs on the same backend.
    let work = all.iter().enumerate().map(|(id, c)| async move {
        let mut pids = Vec::new();
        for xact in 0..2 {
            c.batch_execute("BEGIN").await?;
            let first = backend_pid(c).await?;
            let inserted: i32 = c
                .query_one(
                    "INSERT INTO seen VALUES ($1, $2, pg_backend_pid()) RETURNING pid",
                    &[&(id as i32), &xact],
                )
                .await?
                .get(0);
            let last = backend_pid(c).await?;
            c.batch_execute("COMMIT").await?;
            ensure!(
                first == inserted && inserted == last,
                "client {id}'s transaction {xact} ran on backends {first}, {inserted}, {last}"
            );
            pids.push(first);
        }
        Ok::<_, anyhow::Error>(pids)
    });
    let pids: Vec<i32> = try_join_all(work).await?.into_iter().flatten().collect();
    let distinct: std::collections::HashSet<_> = pids.iter().collect();
    assert!(distinct.len() <= 10, "{} backends served", distinct.len());
    let rows: i64 = primary
        .query_scalar_in("pgdog", "SELECT count(*) FROM seen")
        .await?;
    assert_eq!(rows, 4000, "every transaction committed");
    let peak = most.load(Ordering::Relaxed);
    assert!(
        (1..=10).contains(&peak),
        "at most pool_size backends at any time: {peak}"
    );

    // The admin console counts the 2,000 clients and at most 10 server connections.
    let console = console(&mut pgdog).await?;
    let pools = admin_rows(&console, "SHOW POOLS").await?;
    let row = pools
        .iter()
        .find(|r| r["name"].as_deref() == Some("primary"))
        .context("pool primary")?;
    let num = |k: &str| -> u64 { row[k].as_deref().unwrap_or("0").parse().unwrap() };
    assert_eq!(num("cl_active") + num("cl_waiting"), 2000, "{row:?}");
    assert!(num("sv_active") + num("sv_idle") <= 10, "{row:?}");
    assert_eq!(row["pool_mode"].as_deref(), Some("transaction"));
    let stats = admin_rows(&console, "SHOW STATS").await?;
    let row = stats
        .iter()
        .find(|r| r["database"].as_deref() == Some("primary"))
        .context("stats of primary")?;
    let num = |k: &str| -> u64 { row[k].as_deref().unwrap_or("0").parse().unwrap() };
    assert!(num("total_xact_count") >= 4000, "{row:?}");
    assert!(num("total_query_count") >= 4 * 4000, "{row:?}");
    assert!(
        num("avg_xact_time") > 0 && num("avg_query_time") > 0,
        "{row:?}"
    );
    Ok(())
}

/// 50 clients, three server connections: tokio-postgres prepares every statement under
/// its own name (s0, s1, ... in each client, so the same names stand for different
/// statements), shared texts and the client's own, used in and out of transactions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_clients_interleave_named_statements_on_three_connections() -> Result<()> {
    let primary = PgCluster::start().await?;
    let mut pgdog = transaction_mode(&primary, 3, |b| b.set("max_prepared_statements", 40)).await?;
    let all = clients(&pgdog, 50, 50).await?;
    let work = all.iter().enumerate().map(|(i, c)| async move {
        let i = i as i32;
        let shared = c.prepare("SELECT $1::int * 2").await?;
        let own = c.prepare(&format!("SELECT $1::int + {i}")).await?;
        let text = c.prepare(&format!("SELECT $1::text || '-{i}'")).await?;
        for round in 0..20 {
            let in_txn = round % 3 == 0;
            if in_txn {
                c.batch_execute("BEGIN").await?;
            }
            let a: i32 = c.query_one(&shared, &[&round]).await?.get(0);
            let b: i32 = c.query_one(&own, &[&round]).await?.get(0);
            let t: String = c.query_one(&text, &[&round.to_string()]).await?.get(0);
            ensure!(a == round * 2 && b == round + i, "client {i} round {round}");
            ensure!(t == format!("{round}-{i}"), "client {i} round {round}: {t}");
            if in_txn {
                c.batch_execute("COMMIT").await?;
            }
            tokio::task::yield_now().await;
        }
        Ok::<_, anyhow::Error>((shared, own, text))
    });
    let statements = try_join_all(work).await?;

    // The shared text is one statement on the servers, standing for 50 client statements.
    let console = console(&mut pgdog).await?;
    let listed = admin_rows(&console, "SHOW PREPARED_STATEMENTS").await?;
    let shared = listed
        .iter()
        .find(|r| r["statement"].as_deref() == Some("SELECT $1::int * 2"))
        .context("the shared statement is listed")?;
    assert_eq!(shared["clients"].as_deref(), Some("50"), "{shared:?}");
    assert!(shared["name"].as_deref().unwrap().starts_with("pgdog_"));
    let prepares: u64 = shared["prepares"].as_deref().unwrap().parse()?;
    assert!(
        (1..=50).contains(&prepares),
        "prepared once per server connection that needed it, not per client: {prepares}"
    );
    // 101 distinct texts on connections that keep 40: evictions happened, and every
    // answer above was still right.
    assert_eq!(listed.len(), 101, "{listed:?}");
    drop(statements);
    drop(all);
    let gone = eventually(Duration::from_secs(10), "clients gone", || async {
        let rows = admin_rows(&console, "SHOW PREPARED_STATEMENTS").await?;
        Ok(rows.is_empty().then_some(()))
    })
    .await;
    gone.context("the registry forgets statements with their clients")?;
    Ok(())
}

/// On the wire: a Parse the server connection does not need is not sent, and the client
/// gets the one ParseComplete it asked for, in its place.
#[tokio::test]
async fn a_parse_the_server_has_is_answered_by_the_proxy() -> Result<()> {
    use common::wire::*;
    let primary = PgCluster::start().await?;
    let pgdog = transaction_mode(&primary, 1, |b| b.set("auth_type", "trust")).await?;
    let mut a = raw_login(pgdog.port(), "pgdog", "primary").await?;
    let mut b = raw_login(pgdog.port(), "pgdog", "primary").await?;
    let answer_tags = |bytes: &[u8]| {
        let mut tags = String::new();
        let mut at = 0;
        while at + 5 <= bytes.len() {
            tags.push(bytes[at] as char);
            let len = u32::from_be_bytes(bytes[at + 1..at + 5].try_into().unwrap());
            at += 1 + len as usize;
        }
        tags
    };
    use tokio::io::AsyncWriteExt;
    for (s, name) in [(&mut a, "mine"), (&mut b, "yours")] {
        s.write_all(&[parse(name, "SELECT 42"), sync()].concat())
            .await?;
        let answer = read_until(s, b'Z').await?;
        assert_eq!(answer_tags(&answer), "1Z", "{name}");
    }
    for (s, name) in [(&mut a, "mine"), (&mut b, "yours")] {
        s.write_all(&[bind(name), execute(), sync()].concat())
            .await?;
        let answer = read_until(s, b'Z').await?;
        assert_eq!(answer_tags(&answer), "2DCZ", "{name}");
    }
    // One statement on the one server connection, though two clients prepared it.
    raw_request(&mut a, &[query("SELECT 1")]).await?;
    let c = connect_dsn(&pgdog.dsn("pgdog", "pgdog", "primary")).await?;
    let n: i64 = c
        .query_one(
            "SELECT count(*) FROM pg_prepared_statements WHERE statement = 'SELECT 42'",
            &[],
        )
        .await?
        .get(0);
    assert_eq!(n, 1);
    Ok(())
}

#[tokio::test]
async fn pgbench_prepared_in_transaction_mode_has_no_failures() -> Result<()> {
    let primary = PgCluster::start().await?;
    let pgdog = transaction_mode(&primary, 3, |b| b).await?;
    let port = primary.port().to_string();
    let (ok, _, err) = run_with_password(
        "pgdog",
        "pgbench",
        &[
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "-U",
            "pgdog",
            "-i",
            "-q",
            "pgdog",
        ],
    );
    assert!(ok, "{err}");
    let port = pgdog.port().to_string();
    for script in [&["-S"][..], &[][..]] {
        let mut args = vec![
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "-U",
            "pgdog",
            "-M",
            "prepared",
            "-c",
            "8",
            "-j",
            "2",
            "-t",
            "150",
        ];
        args.extend_from_slice(script);
        args.push("primary");
        let (ok, out, err) = run_with_password("pgdog", "pgbench", &args);
        assert!(
            ok && out.contains("number of failed transactions: 0 (0.000%)"),
            "{args:?}\n{err}\n{out}"
        );
    }
    let history: i64 = primary
        .query_scalar_in("pgdog", "SELECT count(*) FROM pgbench_history")
        .await?;
    assert_eq!(history, 8 * 150);
    Ok(())
}

/// Two clients with different startup parameters take turns on one server connection:
/// each sees its own, on every checkout; a tracked parameter a client SETs stays its own.
/// The first SET outside a transaction is logged, once per client.
#[tokio::test]
async fn parameters_follow_each_client_across_checkouts() -> Result<()> {
    let primary = PgCluster::start().await?;
    primary
        .execute_in("pgdog", "CREATE SCHEMA sa; CREATE SCHEMA sb")
        .await?;
    let pgdog = transaction_mode(&primary, 1, |b| b).await?;
    let connect = |app: &str, options: &str| {
        let dsn = format!(
            "{} application_name={app} options='{options}'",
            pgdog.dsn("pgdog", "pgdog", "primary")
        );
        async move { connect_dsn(&dsn).await }
    };
    let a = connect(
        "alpha",
        "-c TimeZone=Asia/Tokyo -c search_path=sa -c DateStyle=SQL,DMY",
    )
    .await?;
    let b = connect("beta", "-c TimeZone=UTC -c search_path=sb").await?;
    for _ in 0..3 {
        assert_eq!(show(&a).await?, ["alpha", "Asia/Tokyo", "sa", "SQL, DMY"]);
        assert_eq!(show(&b).await?, ["beta", "UTC", "sb", "ISO, MDY"]);
    }
    // SET outside a transaction: a tracked parameter stays the client's.
    a.batch_execute("SET TimeZone = 'Europe/Paris'").await?;
    a.batch_execute("SET application_name = 'alpha2'").await?;
    b.batch_execute("LISTEN nobody").await?;
    assert_eq!(show(&b).await?[1], "UTC");
    assert_eq!(show(&a).await?[..2], ["alpha2", "Europe/Paris"]);
    assert_eq!(show(&b).await?[..2], ["beta", "UTC"]);
    let warnings = pgdog
        .log()
        .lines()
        .filter(|l| l.contains("outside a transaction in transaction mode"))
        .count();
    assert_eq!(warnings, 2, "once per client:\n{}", pgdog.log());
    // Inside a transaction, no warning.
    let c = connect("gamma", "").await?;
    c.batch_execute("BEGIN; SET LOCAL work_mem = '8MB'; SET search_path = sb; COMMIT")
        .await?;
    let warnings = pgdog
        .log()
        .lines()
        .filter(|l| l.contains("outside a transaction in transaction mode"))
        .count();
    assert_eq!(warnings, 2);
    Ok(())
}

/// Real drivers in transaction mode, two or more connections of theirs taking turns on
/// fewer server connections: psycopg (which prepares named statements), Ruby pg (named
/// statements by hand, parameters, transactions) and sqlx (its own pool, a named
/// statement per query cached per connection).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psycopg_ruby_pg_and_sqlx_in_transaction_mode() -> Result<()> {
    let primary = PgCluster::start().await?;
    primary
        .execute_in("pgdog", "CREATE TABLE t(id int, who text)")
        .await?;
    let pgdog = transaction_mode(&primary, 1, |b| b).await?;
    let url = pgdog.url("pgdog", "pgdog", "primary");

    let python = format!(
        r#"
import psycopg
a = psycopg.connect("{url}", autocommit=True)
b = psycopg.connect("{url}", autocommit=True)
for i in range(30):
    for n, c in ((1, a), (2, b)):
        r = c.execute("SELECT %s::int * %s::int", (i, n), prepare=True).fetchone()[0]
        assert r == i * n, (i, n, r)
        with c.transaction():
            c.execute("INSERT INTO t VALUES (%s, 'psycopg')", (i,), prepare=True)
            c.execute("SELECT count(*) FROM t", prepare=True)
with a.cursor() as cur:
    cur.executemany("INSERT INTO t VALUES (%s, 'psycopg')", [(i,) for i in range(100)])
print("ok")
"#
    );
    let (ok, out, err) = run_with_password("pgdog", "/usr/bin/python3", &["-c", &python]);
    assert!(ok && out.trim() == "ok", "psycopg:\n{out}\n{err}");

    let ruby = format!(
        r##"
require "pg"
a = PG.connect("{url}")
b = PG.connect("{url}")
[a, b].each_with_index {{ |c, n| c.prepare("triple", "SELECT $1::int * #{{3 + n}}") }}
30.times do |i|
  [a, b].each_with_index do |c, n|
    r = c.exec_prepared("triple", [i]).getvalue(0, 0).to_i
    raise "#{{i}} #{{n}}: #{{r}}" unless r == i * (3 + n)
    c.transaction do |t|
      t.exec_params("INSERT INTO t VALUES ($1, 'ruby')", [i])
      t.exec("SELECT 1")
    end
  end
end
puts "ok"
"##
    );
    let (ok, out, err) = run_with_password("pgdog", "ruby", &["-e", &ruby]);
    assert!(ok && out.trim() == "ok", "ruby pg:\n{out}\n{err}");

    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(4)
        .connect(&url)
        .await?;
    let work = (0..8).map(|task| {
        let pool = pool.clone();
        async move {
            for i in 0..25i32 {
                let (r,): (i32,) = sqlx::query_as("SELECT $1::int + $2::int")
                    .bind(i)
                    .bind(task)
                    .fetch_one(&pool)
                    .await?;
                ensure!(r == i + task, "sqlx {task} {i}: {r}");
                let mut tx = pool.begin().await?;
                sqlx::query("INSERT INTO t VALUES ($1, 'sqlx')")
                    .bind(i)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
            }
            Ok::<_, anyhow::Error>(())
        }
    });
    try_join_all(work).await?;
    pool.close().await;

    let counts: Vec<(String, i64)> = {
        let c = primary.superuser("pgdog").await?;
        c.query("SELECT who, count(*) FROM t GROUP BY who ORDER BY who", &[])
            .await?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect()
    };
    assert_eq!(
        counts,
        [
            ("psycopg".to_string(), 160),
            ("ruby".to_string(), 60),
            ("sqlx".to_string(), 200)
        ]
    );
    Ok(())
}

/// A client that waits for a server connection (the pool busy) and cancels is answered
/// `57014` at once, as PostgreSQL answers a statement cancelled before it ran, and keeps
/// its session. Nothing of the cancelled request reaches the server. (PgBouncer drops
/// such a cancel: the client would wait on here for the whole `checkout_timeout_ms`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_cancels_while_waiting_for_a_connection_is_answered_at_once() -> Result<()> {
    let primary = PgCluster::start().await?;
    let mut pgdog = transaction_mode(&primary, 1, |b| b.set("checkout_timeout_ms", 60_000)).await?;
    let console = console(&mut pgdog).await?;
    let dsn = pgdog.dsn("pgdog", "pgdog", "primary");
    // The pool's one connection, held in a transaction.
    let holder = connect_dsn(&dsn).await?;
    holder
        .batch_execute("CREATE TABLE cancelled (n int)")
        .await?;
    holder.batch_execute("BEGIN; SELECT 1").await?;
    let held_by = backend_pid(&holder).await?;

    let waiter = Arc::new(connect_dsn(&dsn).await?);
    let token = waiter.cancel_token();
    let waiting = || async {
        let pools = admin_rows(&console, "SHOW POOLS").await?;
        let row = pools
            .iter()
            .find(|r| r["name"].as_deref() == Some("primary"))
            .context("pool primary")?;
        Ok((row["cl_waiting"].as_deref() == Some("1")).then_some(()))
    };
    // The simple protocol, then the extended one (a Parse, Describe and Sync first).
    for extended in [false, true] {
        let started = std::time::Instant::now();
        let request = tokio::spawn({
            let waiter = waiter.clone();
            async move {
                match extended {
                    false => waiter
                        .simple_query("INSERT INTO cancelled VALUES (1)")
                        .await
                        .map(|_| ()),
                    true => waiter.query("SELECT $1::int", &[&7i32]).await.map(|_| ()),
                }
            }
        });
        eventually(Duration::from_secs(10), "a client waiting", waiting).await?;
        token.cancel_query(tokio_postgres::NoTls).await?;
        let answer = tokio::time::timeout(Duration::from_secs(10), request)
            .await
            .context("the cancelled client still waits")??;
        let err = answer.expect_err("cancelled");
        assert_eq!(sqlstate(&err).as_deref(), Some("57014"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(10));
    }
    // The holder's transaction went on undisturbed, and the waiter's session goes on.
    holder.batch_execute("COMMIT").await?;
    let n: i32 = waiter.query_one("SELECT 42", &[]).await?.get(0);
    assert_eq!(n, 42);
    assert_eq!(
        backend_pid(&waiter).await?,
        held_by,
        "the pool's one connection"
    );
    let rows: i64 = primary
        .query_scalar_in("pgdog", "SELECT count(*) FROM cancelled")
        .await?;
    assert_eq!(rows, 0, "the cancelled INSERT never ran");
    Ok(())
}
