//! End-to-end tests of query mirroring: a real primary and a real mirror cluster, the real
//! binary, and the accounting read back from `/metrics`.

mod common;

use anyhow::Result;
use common::{
    metric, raw_login, raw_request, run_with_password, scrape, settled_counts, wire, Counts,
    MirrorEnv,
};
use pgdog_integration::{ConfigBuilder, PgCluster};
use std::time::{Duration, Instant};

/// [`MirrorEnv::start`], with every transaction mirrored and no minimum runtime.
async fn mirrored(
    setup: &str,
    configure: impl FnOnce(ConfigBuilder) -> ConfigBuilder,
) -> Result<MirrorEnv> {
    MirrorEnv::start(setup, |b| {
        configure(
            b.set("mirror_min_runtime_hours", 0)
                .pool_set("primary", "mirror_exposure", 1.0),
        )
    })
    .await
}

fn invariant(c: &Counts) -> bool {
    c.total == c.mirrored + c.dropped + c.errors
}

/// Stalls `table` on `c`: an open transaction holds an exclusive lock on it until the
/// returned client commits.
async fn lock_table(c: &PgCluster, table: &str) -> Result<tokio_postgres::Client> {
    let locker = c.connect("pgdog", "pgdog").await?;
    locker
        .batch_execute(&format!(
            "BEGIN; LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE"
        ))
        .await?;
    Ok(locker)
}

#[tokio::test]
async fn hundred_selects_are_all_mirrored() -> Result<()> {
    let MirrorEnv {
        mirror: _m,
        primary: _p,
        pgdog,
    } = mirrored("", |b| b).await?;
    let client = pgdog.connect("pgdog", "pgdog", "primary").await?;
    for i in 0..50 {
        client.simple_query(&format!("SELECT {i}")).await?;
    }
    // Extended protocol: each call prepares (Parse/Describe/Sync) then executes
    // (Bind/Execute/Sync); the two batches are one query, so one request.
    for i in 0..50 {
        client.query("SELECT $1::int", &[&i]).await?;
    }
    settled_counts(&pgdog, "primary", "100 mirrored", |c| c.mirrored >= 100).await?;
    // And no more than 100 arrive later.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let c = common::counts(&pgdog, "primary").await?;
    assert_eq!(
        c,
        Counts {
            total: 100,
            mirrored: 100,
            dropped: 0,
            errors: 0
        }
    );
    let text = scrape(&pgdog).await?;
    assert_eq!(metric(&text, "mirror{type=\"mirrored\"}"), 100);
    assert_eq!(metric(&text, "mirror{type=\"total\"}"), 100);
    Ok(())
}

#[tokio::test]
async fn writes_prepared_statements_and_transactions_replay_in_order() -> Result<()> {
    let MirrorEnv {
        mirror: m,
        primary: p,
        pgdog,
    } = mirrored("CREATE TABLE log(id serial PRIMARY KEY, v text)", |b| b).await?;
    let mut client = pgdog.connect("pgdog", "pgdog", "primary").await?;
    for i in 0..50 {
        client
            .simple_query(&format!("INSERT INTO log(v) VALUES ('simple {i}')"))
            .await?;
    }
    let insert = client.prepare("INSERT INTO log(v) VALUES ($1)").await?;
    for i in 0..50 {
        client.execute(&insert, &[&format!("prepared {i}")]).await?;
    }
    let tx = client.transaction().await?;
    tx.execute("INSERT INTO log(v) VALUES ('committed')", &[])
        .await?;
    tx.commit().await?;
    let tx = client.transaction().await?;
    tx.execute("INSERT INTO log(v) VALUES ('rolled back')", &[])
        .await?;
    tx.rollback().await?;
    client.batch_execute("SET application_name = 'replayed'; INSERT INTO log(v) VALUES (current_setting('application_name'))").await?;
    drop(client);

    let on_primary = rows(&p).await?;
    assert_eq!(on_primary.len(), 102);
    common::eventually(
        Duration::from_secs(20),
        "mirror has the same rows",
        || async {
            let on_mirror = rows(&m).await?;
            Ok((on_mirror == on_primary).then_some(()))
        },
    )
    .await?;
    Ok(())
}

async fn rows(c: &PgCluster) -> Result<Vec<(i32, String)>> {
    let client = c.connect("pgdog", "pgdog").await?;
    let rows = client
        .query("SELECT id, v FROM log ORDER BY id", &[])
        .await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

#[tokio::test]
async fn exposure_half_mirrors_about_half_of_the_transactions() -> Result<()> {
    // A long queue: this test is about the exposure, and under the load of the parallel
    // tests a sequential client can get 128 requests ahead of the mirror (a drop would
    // keep `mirrored` below `total`).
    let MirrorEnv {
        mirror: m,
        primary: _p,
        pgdog,
    } = mirrored("CREATE TABLE e(id int)", |b| {
        b.pool_set("primary", "mirror_exposure", 0.5)
            .pool_set("primary", "mirror_queue", 2000)
    })
    .await?;
    let client = pgdog.connect("pgdog", "pgdog", "primary").await?;
    let n = 2000;
    for i in 0..n {
        if i % 4 == 0 {
            // Some explicit transactions: mirrored whole or not at all.
            client
                .batch_execute(&format!(
                    "BEGIN; INSERT INTO e VALUES ({i}); INSERT INTO e VALUES ({i}); COMMIT"
                ))
                .await?;
        } else {
            client
                .simple_query(&format!("INSERT INTO e VALUES ({i})"))
                .await?;
        }
    }
    // Settled: the mirror holds as many transactions as were counted, twice in a row.
    let c = common::eventually(Duration::from_secs(20), "settled", || async {
        let before = common::counts(&pgdog, "primary").await?;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let after = common::counts(&pgdog, "primary").await?;
        let on_mirror: i64 = m
            .query_scalar_in("pgdog", "SELECT count(DISTINCT id) FROM e")
            .await?;
        Ok(
            (before == after && after.mirrored == after.total && on_mirror as u64 == after.total)
                .then_some(after),
        )
    })
    .await;
    let c = match c {
        Ok(c) => c,
        Err(e) => {
            let counts = common::counts(&pgdog, "primary").await?;
            let on_mirror: i64 = m
                .query_scalar_in("pgdog", "SELECT count(DISTINCT id) FROM e")
                .await?;
            return Err(e.context(format!("{counts:?}, {on_mirror} ids on the mirror")));
        }
    };
    // Each transaction is one request here; 99.9% binomial interval for n = 2000, p = 0.5:
    // 1000 +/- 3.29 * sqrt(2000 * 0.25) = [927, 1073].
    assert!((927..=1073).contains(&c.total), "{c:?}");
    // No half transactions: each explicit one inserted its id twice.
    let halves: i64 = m
        .query_scalar_in("pgdog", "SELECT count(*) FROM (SELECT id FROM e WHERE id % 4 = 0 GROUP BY id HAVING count(*) <> 2) x")
        .await?;
    assert_eq!(halves, 0);
    Ok(())
}

#[tokio::test]
async fn mirror_down_never_fails_the_primary_and_mirroring_resumes() -> Result<()> {
    let MirrorEnv {
        mirror: m,
        primary: p,
        pgdog,
    } = mirrored("CREATE TABLE r(id int)", |b| b).await?;
    let client = pgdog.connect("pgdog", "pgdog", "primary").await?;
    client.simple_query("INSERT INTO r VALUES (0)").await?;
    m.stop()?;
    let started = Instant::now();
    for i in 1..=20 {
        client
            .simple_query(&format!("INSERT INTO r VALUES ({i})"))
            .await?;
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "primary slowed by a dead mirror"
    );
    let c = settled_counts(&pgdog, "primary", "connection errors", |c| c.errors >= 20).await?;
    assert!(invariant(&c), "{c:?}");
    let text = scrape(&pgdog).await?;
    assert!(metric(&text, "mirror{error_type=\"connection\"}") >= 20);
    assert_eq!(metric(&text, "mirror{error_type=\"query\"}"), 0);
    let primary_rows: i64 = p.query_scalar_in("pgdog", "SELECT count(*) FROM r").await?;
    assert_eq!(primary_rows, 21);

    m.start_again()?;
    // Back-off is at most 5 s: keep writing until the mirror sees new rows.
    common::eventually(Duration::from_secs(20), "mirroring resumes", || async {
        client.simple_query("INSERT INTO r VALUES (100)").await?;
        let n: i64 = m
            .query_scalar_in("pgdog", "SELECT count(*) FROM r WHERE id = 100")
            .await?;
        Ok((n > 0).then_some(()))
    })
    .await?;
    assert!(
        pgdog.log().matches("mirror unavailable").count() <= 2,
        "one log line per episode"
    );
    Ok(())
}

#[tokio::test]
async fn stalled_mirror_drops_instead_of_slowing_fifty_clients() -> Result<()> {
    let MirrorEnv {
        mirror: m,
        primary: p,
        pgdog,
    } = mirrored("CREATE TABLE s(id int)", |b| {
        b.pool_set("primary", "mirror_queue", 2)
            .pool_set("primary", "pool_size", 60)
            .pool_set("mirror", "pool_size", 60)
    })
    .await?;
    // Stall the mirror: an open transaction holds an exclusive lock on the table.
    let locker = lock_table(&m, "s").await?;

    let started = Instant::now();
    let mut tasks = Vec::new();
    for client_no in 0..50 {
        let dsn = pgdog.dsn("pgdog", "pgdog", "primary");
        tasks.push(tokio::spawn(async move {
            let client = pgdog_integration::connect_dsn(&dsn).await?;
            let mut slowest = Duration::ZERO;
            for i in 0..10 {
                let t = Instant::now();
                client
                    .simple_query(&format!("INSERT INTO s VALUES ({})", client_no * 100 + i))
                    .await?;
                slowest = slowest.max(t.elapsed());
            }
            Ok::<_, anyhow::Error>(slowest)
        }));
    }
    let mut slowest = Duration::ZERO;
    for t in tasks {
        slowest = slowest.max(t.await??);
    }
    let elapsed = started.elapsed();
    assert!(
        slowest < Duration::from_secs(2),
        "a primary query took {slowest:?} behind a stalled mirror"
    );
    assert!(elapsed < Duration::from_secs(20), "{elapsed:?}");
    let primary_rows: i64 = p.query_scalar_in("pgdog", "SELECT count(*) FROM s").await?;
    assert_eq!(primary_rows, 500);

    let text = scrape(&pgdog).await?;
    assert!(metric(&text, "mirror{type=\"dropped\"}") > 0, "{text}");
    assert!(metric(&text, "mirror{error_type=\"buffer_full\"}") > 0);

    locker.batch_execute("COMMIT").await?;
    let c = settled_counts(&pgdog, "primary", "all 500 accounted for", |c| {
        c.total == 500 && invariant(c)
    })
    .await?;
    assert!(c.dropped > 0 && c.mirrored > 0, "{c:?}");
    let on_mirror: i64 = m.query_scalar_in("pgdog", "SELECT count(*) FROM s").await?;
    assert_eq!(on_mirror as u64, c.mirrored);
    Ok(())
}

#[tokio::test]
async fn mirror_query_errors_carry_their_category() -> Result<()> {
    // The table exists only on the primary.
    let MirrorEnv {
        mirror: _m,
        primary: p,
        pgdog,
    } = mirrored("", |b| b).await?;
    p.execute_in("pgdog", "CREATE TABLE only_primary(id int)")
        .await?;
    let client = pgdog.connect("pgdog", "pgdog", "primary").await?;
    for i in 0..5 {
        client
            .simple_query(&format!("INSERT INTO only_primary VALUES ({i})"))
            .await?;
    }
    let c = settled_counts(&pgdog, "primary", "5 errors", |c| c.errors == 5).await?;
    assert_eq!(c.total, 5);
    let text = scrape(&pgdog).await?;
    assert_eq!(metric(&text, "mirror{error_type=\"query\"}"), 5);
    Ok(())
}

#[tokio::test]
async fn pgbench_prepared_through_a_mirrored_pool_has_no_failures() -> Result<()> {
    let MirrorEnv {
        mirror: m,
        primary: p,
        pgdog,
    } = mirrored("", |b| b).await?;
    for c in [&p, &m] {
        let port = c.port().to_string();
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
                "-s",
                "1",
                "-q",
                "pgdog",
            ],
        );
        assert!(ok, "{err}");
    }
    let port = pgdog.port().to_string();
    let (ok, out, err) = run_with_password(
        "pgdog",
        "pgbench",
        &[
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "-U",
            "pgdog",
            "-M",
            "prepared",
            "-c",
            "4",
            "-j",
            "2",
            "-t",
            "200",
            "primary",
        ],
    );
    assert!(
        ok && out.contains("number of failed transactions: 0 (0.000%)"),
        "{err}\n{out}"
    );
    // 800 transactions of 7 statements, each its own request (Bind/Execute/Sync).
    let c = settled_counts(&pgdog, "primary", "settled", |c| {
        c.total >= 5600 && invariant(c)
    })
    .await?;
    assert_eq!(c.errors, 0, "{c:?}");
    if c.dropped == 0 {
        let history: i64 = m
            .query_scalar_in("pgdog", "SELECT count(*) FROM pgbench_history")
            .await?;
        assert_eq!(history, 800, "the mirror replayed every transaction");
    }
    Ok(())
}

#[tokio::test]
async fn hundred_concurrent_clients_on_two_mirrored_pools_keep_the_books() -> Result<()> {
    let (p, m) = tokio::try_join!(PgCluster::start(), PgCluster::start())?;
    for db in ["a", "b"] {
        p.create_database(db).await?;
        m.create_database(db).await?;
        p.execute_in(db, "CREATE TABLE t(id int)").await?;
        m.execute_in(db, "CREATE TABLE t(id int)").await?;
    }
    let pgdog = ConfigBuilder::new()
        .pool("a", &p, "a")
        .pool("a_mirror", &m, "a")
        .pool("b", &p, "b")
        .pool("b_mirror", &m, "b")
        .pool_set("a", "mirror_of", "a_mirror")
        .pool_set("b", "mirror_of", "b_mirror")
        .pool_set("a", "pool_size", 50)
        .pool_set("b", "pool_size", 50)
        .pool_set("a_mirror", "pool_size", 50)
        .pool_set("b_mirror", "pool_size", 50)
        .start()
        .await?;
    let mut tasks = Vec::new();
    for n in 0..100 {
        let db = if n % 2 == 0 { "a" } else { "b" };
        let dsn = pgdog.dsn("pgdog", "pgdog", db);
        tasks.push(tokio::spawn(async move {
            let client = pgdog_integration::connect_dsn(&dsn).await?;
            for i in 0..20 {
                client
                    .simple_query(&format!("INSERT INTO t VALUES ({})", n * 100 + i))
                    .await?;
            }
            Ok::<_, anyhow::Error>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    for db in ["a", "b"] {
        let c = settled_counts(&pgdog, db, "1000 requests accounted for", |c| {
            c.total == 1000 && invariant(c)
        })
        .await?;
        let on_mirror: i64 = m.query_scalar_in(db, "SELECT count(*) FROM t").await?;
        assert_eq!(on_mirror as u64, c.mirrored, "{db}: {c:?}");
        let on_primary: i64 = p.query_scalar_in(db, "SELECT count(*) FROM t").await?;
        assert_eq!(on_primary, 1000);
    }
    let text = scrape(&pgdog).await?;
    assert_eq!(metric(&text, "mirror{type=\"total\"}"), 2000);
    Ok(())
}

#[tokio::test]
async fn ended_sessions_give_their_mirror_connections_back() -> Result<()> {
    let MirrorEnv {
        mirror: _m,
        primary: _p,
        pgdog,
    } = mirrored("", |b| b.pool_set("mirror", "pool_size", 2)).await?;
    // Ten sessions one after the other through a mirror pool of two connections.
    for i in 0..10 {
        let client = pgdog.connect("pgdog", "pgdog", "primary").await?;
        client.simple_query(&format!("SELECT {i}")).await?;
    }
    let c = settled_counts(&pgdog, "primary", "10 mirrored", |c| c.total >= 10).await?;
    assert_eq!(
        c,
        Counts {
            total: 10,
            mirrored: 10,
            dropped: 0,
            errors: 0
        }
    );
    Ok(())
}

#[tokio::test]
async fn a_restarted_mirror_does_not_cost_the_next_session_its_requests() -> Result<()> {
    let MirrorEnv {
        mirror: m,
        primary: _p,
        pgdog,
    } = mirrored("", |b| b).await?;
    {
        let client = pgdog.connect("pgdog", "pgdog", "primary").await?;
        client.simple_query("SELECT 1").await?;
    }
    settled_counts(&pgdog, "primary", "first request", |c| c.mirrored == 1).await?;
    // The mirror restarts while its connection sits idle in the pool.
    m.stop()?;
    m.start_again()?;
    let client = pgdog.connect("pgdog", "pgdog", "primary").await?;
    for i in 0..5 {
        client.simple_query(&format!("SELECT {i}")).await?;
    }
    let c = match settled_counts(&pgdog, "primary", "6 accounted for", |c| c.total >= 6).await {
        Ok(c) => c,
        Err(e) => panic!(
            "{e}: {:?}\n{}",
            common::counts(&pgdog, "primary").await?,
            pgdog.log()
        ),
    };
    assert!(invariant(&c), "{c:?}");
    assert_eq!(
        c,
        Counts {
            total: 6,
            mirrored: 6,
            dropped: 0,
            errors: 0
        }
    );
    Ok(())
}

/// A prepared statement whose Parse the mirror never ran (cancelled by the timeout here;
/// a drop or a transaction left out by the exposure does the same) is defined on the
/// mirror again before its next use, instead of failing every later execution with
/// `26000 prepared statement does not exist`.
#[tokio::test]
async fn a_prepared_statement_cancelled_on_the_mirror_is_prepared_again() -> Result<()> {
    let MirrorEnv {
        mirror: m,
        primary: _p,
        pgdog,
    } = mirrored("CREATE TABLE s(id int)", |b| {
        b.set("mirror_timeout_ms", 400)
    })
    .await?;
    let locker = lock_table(&m, "s").await?;

    let client = pgdog.connect("pgdog", "pgdog", "primary").await?;
    let insert = client.prepare("INSERT INTO s VALUES ($1)").await?;
    for i in 0..20 {
        client.execute(&insert, &[&i]).await?;
    }
    // The first execution (joined with the Parse) and the next time out on the mirror.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    locker.batch_execute("COMMIT").await?;

    let c = settled_counts(&pgdog, "primary", "20 accounted for", |c| {
        c.total == 20 && invariant(c)
    })
    .await?;
    let text = scrape(&pgdog).await?;
    assert_eq!(
        metric(&text, "mirror{error_type=\"query\"}"),
        0,
        "no 26000 on the mirror: {c:?}\n{}",
        m.log_tail(40)
    );
    assert!(
        metric(&text, "mirror{error_type=\"timeout\"}") >= 1,
        "{c:?}"
    );
    assert!(c.mirrored >= 15, "{c:?}");
    let on_mirror: i64 = m.query_scalar_in("pgdog", "SELECT count(*) FROM s").await?;
    assert_eq!(on_mirror as u64, c.mirrored);
    Ok(())
}

/// A client may close a named statement and define the name again. When the mirror missed
/// that (the request was dropped), it still has the old statement under the name: the next
/// Bind must run the client's new definition there, not the old one.
#[tokio::test]
async fn a_statement_redefined_in_a_dropped_request_runs_in_its_new_definition() -> Result<()> {
    use wire::{bind, close, execute, parse, query, sync};
    let MirrorEnv {
        mirror: m,
        primary: p,
        pgdog,
    } = mirrored("CREATE TABLE a(v int); CREATE TABLE b(v int)", |b| {
        b.set("auth_type", "trust")
            .pool_set("primary", "mirror_queue", 2)
    })
    .await?;
    let mut s = raw_login(pgdog.port(), "pgdog", "primary").await?;

    let first = [
        parse("s1", "INSERT INTO a VALUES (1)"),
        bind("s1"),
        execute(),
        sync(),
    ];
    raw_request(&mut s, &first).await?;
    settled_counts(&pgdog, "primary", "s1 confirmed", |c| c.mirrored == 1).await?;

    // The mirror stalls on `a`: the next use of s1 waits there, and a query takes the
    // second of the session's two places. The client then redefines s1 and uses it; the
    // proxy mirrors a lone Parse with the request that uses it, and that finds no place.
    let locker = lock_table(&m, "a").await?;
    raw_request(&mut s, &[bind("s1"), execute(), sync()]).await?;
    raw_request(&mut s, &[query("SELECT 1")]).await?;
    let redefine = [close("s1"), parse("s1", "INSERT INTO b VALUES (3)"), sync()];
    raw_request(&mut s, &redefine).await?;
    raw_request(&mut s, &[bind("s1"), execute(), sync()]).await?;
    locker.batch_execute("COMMIT").await?;
    let c = settled_counts(&pgdog, "primary", "4 accounted for", |c| {
        c.total == 4 && invariant(c)
    })
    .await?;
    assert_eq!(
        c.dropped, 1,
        "the redefinition must have been dropped: {c:?}"
    );

    // The mirror still has the old s1. The next use must run the new one there.
    raw_request(&mut s, &[bind("s1"), execute(), sync()]).await?;
    let c = settled_counts(&pgdog, "primary", "5 accounted for", |c| {
        c.total == 5 && invariant(c)
    })
    .await?;
    assert_eq!(
        (c.mirrored, c.dropped, c.errors),
        (4, 1, 0),
        "{}",
        m.log_tail(20)
    );
    let (a, b) = (values_of(&p, "a").await?, values_of(&p, "b").await?);
    assert_eq!((a, b), (vec![1, 1], vec![3, 3]));
    // On the mirror: both uses of the old s1, and the last use of the new one (the first
    // was dropped).
    let (a, b) = (values_of(&m, "a").await?, values_of(&m, "b").await?);
    assert_eq!((a, b), (vec![1, 1], vec![3]));
    Ok(())
}

/// The values of table `t` (one int column `v`) on `c`, in order.
async fn values_of_t(c: &PgCluster) -> Result<Vec<i32>> {
    values_of(c, "t").await
}

/// The values of `table` (one int column `v`) on `c`, in order.
async fn values_of(c: &PgCluster, table: &str) -> Result<Vec<i32>> {
    let rows = c
        .connect("pgdog", "pgdog")
        .await?
        .query(&format!("SELECT v FROM {table} ORDER BY v"), &[])
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// Sessions on `c` left inside a transaction.
async fn idle_in_transaction(c: &PgCluster) -> Result<i64> {
    c.query_scalar_in(
        "pgdog",
        "SELECT count(*) FROM pg_stat_activity WHERE state LIKE 'idle in transaction%'",
    )
    .await
}

/// When the end of a transaction the mirror had started is dropped, the mirror rolls it
/// back as soon as the primary has finished it, without waiting for the client's next
/// request: left open, it would hold its locks (stalling other mirror sessions) and
/// swallow the requests that follow.
#[tokio::test]
async fn a_transaction_cut_by_drops_is_rolled_back_on_the_mirror() -> Result<()> {
    // Queue of 2: a transaction's statements go out one by one (hold limit 1).
    let MirrorEnv {
        mirror: m,
        primary: _p,
        pgdog,
    } = mirrored("CREATE TABLE t(v int); CREATE TABLE s(id int)", |b| {
        b.pool_set("primary", "mirror_queue", 2)
    })
    .await?;
    let locker = lock_table(&m, "s").await?;

    let client = pgdog.connect("pgdog", "pgdog", "primary").await?;
    // The mirror answers these two before the next request needs their places.
    for (sql, replayed) in [("BEGIN", 1), ("INSERT INTO t VALUES (1)", 2)] {
        client.simple_query(sql).await?;
        settled_counts(&pgdog, "primary", sql, |c| c.mirrored == replayed).await?;
    }
    for sql in [
        "INSERT INTO s VALUES (1)", // waits for the lock on the mirror
        "INSERT INTO t VALUES (2)", // sent behind it: both places taken
        "COMMIT",                   // dropped
    ] {
        client.simple_query(sql).await?;
    }
    locker.batch_execute("COMMIT").await?;
    settled_counts(&pgdog, "primary", "the transaction's head replayed", |c| {
        c.mirrored == 4 && c.dropped == 1
    })
    .await?;
    // No further request from the client yet: the rollback does not wait for one.
    common::eventually(
        Duration::from_secs(10),
        "the mirror leaves the cut transaction",
        || async { Ok((idle_in_transaction(&m).await? == 0).then_some(())) },
    )
    .await?;
    let rows: i64 = m.query_scalar_in("pgdog", "SELECT count(*) FROM t").await?;
    assert_eq!(rows, 0, "the cut transaction was rolled back");
    client.simple_query("INSERT INTO t VALUES (3)").await?;

    let c = settled_counts(&pgdog, "primary", "all 6 accounted for", |c| {
        c.total == 6 && invariant(c)
    })
    .await?;
    assert_eq!((c.mirrored, c.dropped, c.errors), (5, 1, 0), "{c:?}");
    let on_mirror = values_of_t(&m).await?;
    assert_eq!(on_mirror, [3], "the cut transaction was rolled back");
    assert_eq!(idle_in_transaction(&m).await?, 0);
    Ok(())
}

/// A transaction whose head the writer still holds, and whose end was dropped, is given up
/// as soon as the primary has finished it: its held requests are reported as dropped and
/// the part the mirror already ran is rolled back, without waiting for the client's next
/// request (which, for a client of a connection pool, may come hours later).
#[tokio::test]
async fn a_held_transaction_head_is_given_up_once_the_primary_ends_it() -> Result<()> {
    // Queue of 4: an open transaction's statements are held two at a time (hold limit 2).
    let MirrorEnv {
        mirror: m,
        primary: _p,
        pgdog,
    } = mirrored("CREATE TABLE t(v int); CREATE TABLE s(id int)", |b| {
        b.pool_set("primary", "mirror_queue", 4)
    })
    .await?;
    let locker = lock_table(&m, "s").await?;
    let client = pgdog.connect("pgdog", "pgdog", "primary").await?;
    for sql in [
        "INSERT INTO s VALUES (1)", // waits for the lock on the mirror: 1 place
        "BEGIN",                    // held: 2 places
        "INSERT INTO t VALUES (1)", // both sent at the hold limit: 3 places
        "INSERT INTO t VALUES (2)", // held: 4 places
        "INSERT INTO t VALUES (3)", // dropped
        "COMMIT",                   // dropped
    ] {
        client.simple_query(sql).await?;
        // Slower than the writer: it acts on each request before the next comes (with a
        // margin for a loaded CI machine; a writer later than this gives (4, 2, 0) below).
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // The primary has finished the transaction; no further request comes from the client.
    locker.batch_execute("COMMIT").await?;
    let c = settled_counts(&pgdog, "primary", "all 6 accounted for", |c| {
        c.total == 6 && invariant(c)
    })
    .await?;
    // The insert into s, BEGIN and the first insert into t ran on the mirror; the held
    // insert and the two after it are dropped.
    assert_eq!((c.mirrored, c.dropped, c.errors), (3, 3, 0), "{c:?}");
    common::eventually(
        Duration::from_secs(10),
        "the mirror leaves the cut transaction",
        || async { Ok((idle_in_transaction(&m).await? == 0).then_some(())) },
    )
    .await?;
    assert!(values_of_t(&m).await?.is_empty(), "rolled back");
    Ok(())
}

/// A `RELOAD` that raises `mirror_queue` applies to new sessions; one already mirroring
/// keeps its places, and the hold limit that goes with them. Held back to the new, larger
/// limit, a transaction would take all of the session's places and have its rest dropped.
#[tokio::test]
async fn a_session_keeps_its_queue_length_across_a_reload() -> Result<()> {
    let MirrorEnv {
        mirror: m,
        primary: _p,
        pgdog,
    } = mirrored("CREATE TABLE t(v int)", |b| {
        b.set("admin_password", "reload-secret")
            .pool_set("primary", "mirror_queue", 4)
    })
    .await?;
    let client = pgdog.connect("pgdog", "pgdog", "primary").await?;
    client.simple_query("SELECT 1").await?; // the session starts, with 4 places

    let mut config: toml::Table = toml::from_str(&std::fs::read_to_string(pgdog.config_path())?)?;
    let primary = config["pools"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|p| p["name"].as_str() == Some("primary"))
        .unwrap();
    primary
        .as_table_mut()
        .unwrap()
        .insert("mirror_queue".into(), 100.into());
    std::fs::write(pgdog.config_path(), toml::to_string(&config)?)?;
    let console = pgdog
        .connect_admin("admin", "reload-secret", "pgdog")
        .await?;
    let out = common::admin_lines(&console, "RELOAD").await?.join("\n");
    assert!(
        out.contains("mirror_queue 4 -> 100 (new sessions)"),
        "{out}"
    );

    client.simple_query("BEGIN").await?;
    for v in 1..=10 {
        client
            .simple_query(&format!("INSERT INTO t VALUES ({v})"))
            .await?;
        // Slower than the mirror: 4 places are enough when the writer sends every 2.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    client.simple_query("COMMIT").await?;
    let c = settled_counts(&pgdog, "primary", "all 13 accounted for", |c| {
        c.total == 13 && invariant(c)
    })
    .await?;
    assert_eq!((c.mirrored, c.dropped, c.errors), (13, 0, 0), "{c:?}");
    assert_eq!(values_of_t(&m).await?, (1..=10).collect::<Vec<_>>());
    Ok(())
}

#[tokio::test]
async fn a_transaction_whose_mirror_connection_broke_is_not_finished_outside_it() -> Result<()> {
    // Queue of 2: the transaction's statements go out one by one (hold limit 1), so the
    // mirror has run its head when its connection is killed.
    let MirrorEnv {
        mirror: m,
        primary: p,
        pgdog,
    } = mirrored("CREATE TABLE t(v int)", |b| {
        b.pool_set("primary", "mirror_queue", 2)
    })
    .await?;
    let client = pgdog.connect("pgdog", "pgdog", "primary").await?;
    for (sql, replayed) in [("BEGIN", 1), ("INSERT INTO t VALUES (1)", 2)] {
        client.simple_query(sql).await?;
        settled_counts(&pgdog, "primary", sql, |c| c.mirrored == replayed).await?;
    }
    let killed: i64 = m
        .query_scalar_in(
            "pgdog",
            "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = 'pgdog' AND backend_type = 'client backend' \
             AND pid <> pg_backend_pid()) k",
        )
        .await?;
    assert!(killed >= 1, "the mirror session's backend");
    // Past the reconnect back-off (100 ms): a new connection is available by now.
    tokio::time::sleep(Duration::from_millis(500)).await;
    for sql in [
        "INSERT INTO t VALUES (2)",
        "INSERT INTO t VALUES (3)",
        "COMMIT",
    ] {
        client.simple_query(sql).await?;
    }
    client.simple_query("INSERT INTO t VALUES (4)").await?;
    let c = settled_counts(&pgdog, "primary", "all 6 accounted for", |c| {
        c.total == 6 && invariant(c)
    })
    .await?;
    assert_eq!((c.mirrored, c.dropped, c.errors), (3, 0, 3), "{c:?}");
    let text = scrape(&pgdog).await?;
    assert_eq!(metric(&text, "mirror{error_type=\"connection\"}"), 3);
    let on_mirror = values_of_t(&m).await?;
    assert_eq!(
        on_mirror,
        [4],
        "no statement of the broken transaction ran outside it"
    );
    let primary: i64 = p.query_scalar_in("pgdog", "SELECT count(*) FROM t").await?;
    assert_eq!(primary, 4);
    Ok(())
}

#[tokio::test]
async fn copy_through_the_extended_protocol_is_mirrored_and_keeps_the_books() -> Result<()> {
    use futures_util::SinkExt;
    let MirrorEnv {
        mirror: m,
        primary: _p,
        pgdog,
    } = mirrored("CREATE TABLE c(a int)", |b| b).await?;
    let client = pgdog.connect("pgdog", "pgdog", "primary").await?;
    // tokio-postgres sends COPY FROM STDIN as Bind/Execute/Sync, then the data, CopyDone
    // and a second Sync; the server ignores the first Sync and answers one ReadyForQuery.
    let sink = client.copy_in("COPY c FROM STDIN").await?;
    futures_util::pin_mut!(sink);
    sink.send(bytes::Bytes::from_static(b"1\n2\n3\n")).await?;
    assert_eq!(sink.finish().await?, 3);
    for i in 4..=5 {
        client
            .simple_query(&format!("INSERT INTO c VALUES ({i})"))
            .await?;
    }
    // Compared with the primary's answer: paired with the wrong request, it would differ.
    client.simple_query("SELECT count(*) FROM c").await?;
    let c = settled_counts(&pgdog, "primary", "copy, inserts and select", |c| {
        c.total == 4 && invariant(c)
    })
    .await?;
    assert_eq!((c.mirrored, c.dropped, c.errors), (4, 0, 0), "{c:?}");
    let text = scrape(&pgdog).await?;
    let mismatches = "pgdog_mirror_mismatches_total{database=\"primary\"}";
    assert!(text.contains(mismatches), "results are compared: {text}");
    assert_eq!(metric(&text, mismatches), 0, "{text}");
    let on_mirror: i64 = m.query_scalar_in("pgdog", "SELECT count(*) FROM c").await?;
    assert_eq!(on_mirror, 5);
    Ok(())
}
