//! The mirror in transaction mode: mirror sessions take a connection of the mirror pool
//! only while they replay a transaction, so `pool_size` mirror connections serve any
//! number of clients; every request still ends as one event; and a mirror pool too small
//! for the traffic drops requests as `pool_exhausted`, never as the new server's
//! `connection` errors.

mod common;

use anyhow::Result;
use common::*;
use futures_util::future::try_join_all;
use pgdog_integration::{connect_dsn, raise_fd_limit, ConfigBuilder, PgCluster};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The mirrored pair in transaction mode, every transaction mirrored.
async fn mirrored(
    setup: &str,
    primary_size: usize,
    mirror_size: usize,
    configure: impl FnOnce(ConfigBuilder) -> ConfigBuilder,
) -> Result<MirrorEnv> {
    MirrorEnv::start(setup, |b| {
        configure(
            b.set("pool_mode", "transaction")
                .set("mirror_min_runtime_hours", 0)
                .pool_set("primary", "mirror_exposure", 1.0)
                .pool_set("primary", "pool_size", primary_size as i64)
                .pool_set("mirror", "pool_size", mirror_size as i64),
        )
    })
    .await
}

fn invariant(c: &Counts) -> bool {
    c.total == c.mirrored + c.dropped + c.errors
}

/// The highest number of `pgdog` backends seen on `cluster` while the returned guard
/// lives.
fn peak_backends(cluster: &PgCluster) -> (Arc<AtomicI64>, tokio::task::JoinHandle<()>) {
    let most = Arc::new(AtomicI64::new(0));
    let dsn = pgdog_integration::kv_dsn(
        cluster.host(),
        cluster.port(),
        "postgres",
        "postgres",
        "postgres",
    );
    let task = tokio::spawn({
        let most = most.clone();
        async move {
            let Ok(c) = connect_dsn(&dsn).await else {
                return;
            };
            let sql = "SELECT count(*) FROM pg_stat_activity WHERE usename = 'pgdog'";
            loop {
                if let Ok(row) = c.query_one(sql, &[]).await {
                    most.fetch_max(row.get::<_, i64>(0), Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    });
    (most, task)
}

fn pgbench(port: u16, args: &[&str]) {
    let port = port.to_string();
    let mut all = vec!["-h", "127.0.0.1", "-p", &port, "-U", "pgdog"];
    all.extend_from_slice(args);
    let (ok, out, err) = run_with_password("pgdog", "pgbench", &all);
    assert!(
        ok && (args.contains(&"-i") || out.contains("number of failed transactions: 0 (0.000%)")),
        "pgbench {args:?}\n{out}\n{err}"
    );
}

/// What TPC-B leaves behind, independent of the order the transactions ran in.
async fn books(c: &PgCluster) -> Result<Vec<i64>> {
    let mut out = Vec::new();
    for sql in [
        "SELECT sum(abalance)::bigint FROM pgbench_accounts",
        "SELECT sum(bbalance)::bigint FROM pgbench_branches",
        "SELECT sum(tbalance)::bigint FROM pgbench_tellers",
        "SELECT count(*) FROM pgbench_history",
        "SELECT sum(delta)::bigint FROM pgbench_history",
    ] {
        out.push(c.query_scalar_in::<i64>("pgdog", sql).await?);
    }
    Ok(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tpcb_in_transaction_mode_leaves_the_mirror_with_the_primarys_books() -> Result<()> {
    let env = mirrored("", 4, 4, |b| b).await?;
    for c in [&env.primary, &env.mirror] {
        pgbench(c.port(), &["-i", "-q", "pgdog"]);
    }
    let (peak, watcher) = peak_backends(&env.mirror);
    pgbench(
        env.pgdog.port(),
        &[
            "-M", "prepared", "-c", "16", "-j", "2", "-t", "60", "-n", "primary",
        ],
    );
    // 960 transactions of 7 requests each.
    let c = settled_counts(&env.pgdog, "primary", "settled", |c| {
        c.total >= 960 * 7 && invariant(c) && c.mirrored + c.dropped + c.errors == c.total
    })
    .await?;
    watcher.abort();
    assert_eq!((c.errors, c.dropped), (0, 0), "{c:?}");
    let peak = peak.load(Ordering::Relaxed);
    assert!(peak <= 4, "mirror connections: {peak}");
    let (p, m) = (books(&env.primary).await?, books(&env.mirror).await?);
    assert_eq!(p, m, "accounts, branches, tellers, history");
    assert_eq!(p[3], 960);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_clients_use_at_most_pool_size_mirror_connections() -> Result<()> {
    raise_fd_limit(4096);
    let env = mirrored("CREATE TABLE t(client int, i int)", 10, 5, |b| {
        b.set("max_client_conn", 600)
            .set("auth_type", "trust")
            .set("checkout_timeout_ms", 60_000)
    })
    .await?;
    let (peak, watcher) = peak_backends(&env.mirror);
    let dsn = env.pgdog.dsn("pgdog", "pgdog", "primary");
    let mut clients = Vec::new();
    while clients.len() < 500 {
        clients.extend(try_join_all((0..100).map(|_| connect_dsn(&dsn))).await?);
    }
    let work = clients.iter().enumerate().map(|(n, c)| async move {
        for i in 0..4 {
            c.batch_execute(&format!(
                "BEGIN; INSERT INTO t VALUES ({n}, {i}); SELECT count(*) FROM t; COMMIT"
            ))
            .await?;
        }
        Ok::<_, anyhow::Error>(())
    });
    try_join_all(work).await?;
    let c = settled_counts(&env.pgdog, "primary", "settled", |c| {
        c.total >= 2000 && invariant(c)
    })
    .await?;
    watcher.abort();
    let peak = peak.load(Ordering::Relaxed);
    assert!(
        (1..=5).contains(&peak),
        "mirror connections at most: {peak}"
    );
    assert_eq!(c.errors, 0, "{c:?}");
    let text = scrape(&env.pgdog).await?;
    assert_eq!(metric(&text, "mirror{error_type=\"connection\"}"), 0);
    let rows: i64 = env
        .mirror
        .query_scalar_in("pgdog", "SELECT count(*) FROM t")
        .await?;
    assert_eq!(rows as u64, 2000 - c.dropped, "{c:?}");
    Ok(())
}

/// One mirror connection for 40 busy clients, the mirror slower than the primary: the
/// sessions wait for it, their queues fill, and what does not fit is dropped as
/// `pool_exhausted`. The new server failed nothing: no `connection` errors.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exhausted_mirror_pool_drops_and_never_blames_the_mirror() -> Result<()> {
    let env = mirrored("", 10, 1, |b| {
        b.set("mirror_queue", 4).set("checkout_timeout_ms", 200)
    })
    .await?;
    env.primary
        .execute_in(
            "pgdog",
            "CREATE FUNCTION slow() RETURNS int AS 'SELECT 1' LANGUAGE sql",
        )
        .await?;
    env.mirror
        .execute_in(
            "pgdog",
            "CREATE FUNCTION slow() RETURNS int AS 'SELECT 1 FROM pg_sleep(0.02)' LANGUAGE sql",
        )
        .await?;
    let dsn = env.pgdog.dsn("pgdog", "pgdog", "primary");
    let clients = try_join_all((0..40).map(|_| connect_dsn(&dsn))).await?;
    let work = clients.iter().map(|c| async move {
        for _ in 0..25 {
            c.batch_execute("SELECT slow()").await?;
        }
        Ok::<_, anyhow::Error>(())
    });
    try_join_all(work).await?;
    let c = settled_counts(&env.pgdog, "primary", "settled", |c| {
        c.total == 1000 && invariant(c)
    })
    .await?;
    assert_eq!(c.errors, 0, "{c:?}");
    assert!(
        c.dropped > 0,
        "the one mirror connection cannot keep up: {c:?}"
    );
    let text = scrape(&env.pgdog).await?;
    assert_eq!(metric(&text, "mirror{error_type=\"connection\"}"), 0);
    let exhausted = metric(
        &text,
        "pgdog_mirror_pool_exhausted_total{database=\"primary\"}",
    );
    assert!(
        exhausted > 0 && exhausted <= c.dropped,
        "{exhausted} of {} drops",
        c.dropped
    );
    Ok(())
}
