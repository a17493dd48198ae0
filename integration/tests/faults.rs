//! Faults, on purpose. Each case breaks something a production pgdog meets sooner or
//! later, and checks the same four things:
//! - the primary's clients see no error they would not have seen without pgdog;
//! - pgdog keeps serving;
//! - every mirrored request is accounted for: `total = mirrored + dropped + errors`;
//! - nothing leaks: server connections (none beyond `pool_size`, and the pool can still
//!   hand out every one of them at once), file descriptors, memory.
//!
//! The mirror's network is stalled with a TCP relay written here; everything else is
//! real PostgreSQL, killed, restarted and terminated the way an operator would.

mod common;

use anyhow::{bail, ensure, Result};
use common::{
    admin_rows, counts, eventually, raw_login, read_until, settled_counts, Counts, MirrorEnv,
};
use pgdog_integration::{ConfigBuilder, Launch, PgCluster, Pgdog};
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const POOL_SIZE: i64 = 4;

fn accounted(c: &Counts) -> bool {
    c.total == c.mirrored + c.dropped + c.errors
}

/// What pgdog holds at one moment.
#[derive(Debug, Clone, Copy)]
struct Held {
    fds: usize,
    /// pgdog's connections on each server (TCP backends of role `pgdog`).
    primary: i64,
    mirror: i64,
    rss_kb: u64,
}

impl Held {
    /// Descriptors besides the server connections.
    fn own_fds(&self) -> i64 {
        self.fds as i64 - self.primary - self.mirror
    }
}

async fn backends(cluster: &PgCluster) -> Result<i64> {
    cluster
        .query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE usename = 'pgdog' \
             AND backend_type = 'client backend' AND client_addr IS NOT NULL",
        )
        .await
}

async fn held(pgdog: &Pgdog, primary: &PgCluster, mirror: &PgCluster) -> Result<Held> {
    Ok(Held {
        primary: backends(primary).await?,
        mirror: backends(mirror).await?,
        fds: pgdog.fd_count().unwrap_or(0),
        rss_kb: pgdog.rss_kb().unwrap_or(0),
    })
}

/// After a fault, with every test client gone: no client left in pgdog, no descriptor or
/// server connection more than `before`, memory within `rss_slack_kb` of it, and the pool
/// still hands out all of its connections at once.
async fn no_leaks(env: &MirrorEnv, before: Held, rss_slack_kb: u64) -> Result<Held> {
    let console = env.pgdog.connect_admin("admin", "", "pgdog").await?;
    let (pgdog, primary, mirror) = (&env.pgdog, &env.primary, &env.mirror);
    let after = eventually(Duration::from_secs(15), "nothing left over", || async {
        let clients = admin_rows(&console, "SHOW CLIENTS").await?;
        let h = held(pgdog, primary, mirror).await?;
        // The console's own connection is one descriptor more than before.
        let settled = clients.is_empty()
            && h.own_fds() <= before.own_fds() + 1
            && h.primary <= POOL_SIZE
            && h.mirror <= POOL_SIZE;
        Ok(settled.then_some(h))
    })
    .await
    .map_err(|e| e.context(format!("before: {before:?}")))?;
    drop(console);
    ensure!(
        after.rss_kb <= before.rss_kb + rss_slack_kb,
        "memory grew from {} to {} KiB",
        before.rss_kb,
        after.rss_kb
    );
    // Every place of the pool can be taken at once: none was lost.
    let mut clients = Vec::new();
    for _ in 0..POOL_SIZE {
        let c = env.pgdog.connect("pgdog", "pgdog", "primary").await?;
        c.batch_execute("BEGIN; SELECT 1").await?;
        clients.push(c);
    }
    Ok(after)
}

/// A primary and a mirror with `setup`, pgdog mirroring every transaction, pools of
/// [`POOL_SIZE`], and `configure` on top.
async fn env(
    setup: &str,
    configure: impl FnOnce(ConfigBuilder) -> ConfigBuilder,
) -> Result<MirrorEnv> {
    MirrorEnv::start(setup, |b| {
        configure(
            b.set("pool_size", POOL_SIZE)
                .set("mirror_min_runtime_hours", 0)
                .set("checkout_timeout_ms", 10_000)
                .pool_set("primary", "mirror_exposure", 1.0),
        )
    })
    .await
}

/// Waits until `n` requests are accounted for; returns the counts.
async fn accounted_for(env: &MirrorEnv, n: u64) -> Result<Counts> {
    settled_counts(&env.pgdog, "primary", &format!("{n} requests"), |c| {
        c.total == n && accounted(c)
    })
    .await
}

#[tokio::test]
async fn mirror_killed_mid_transaction_then_restarted() -> Result<()> {
    let env = env("CREATE TABLE t(id int)", |b| b).await?;
    let warm = env.pgdog.connect("pgdog", "pgdog", "primary").await?;
    warm.simple_query("SELECT 1").await?;
    drop(warm);
    accounted_for(&env, 1).await?;
    let before = held(&env.pgdog, &env.primary, &env.mirror).await?;

    let sent = Cell::new(1);
    let client = env.pgdog.connect("pgdog", "pgdog", "primary").await?;
    client.batch_execute("BEGIN").await?;
    client.simple_query("INSERT INTO t VALUES (1)").await?;
    sent.set(sent.get() + 2);
    // The mirror dies as a crash would, in the middle of the client's transaction.
    env.mirror.stop_immediate()?;
    client.simple_query("INSERT INTO t VALUES (2)").await?;
    client.simple_query("COMMIT").await?;
    for i in 3..10 {
        client
            .simple_query(&format!("INSERT INTO t VALUES ({i})"))
            .await?;
    }
    sent.set(sent.get() + 9);
    env.mirror.start_again()?;
    // Back: new sessions are mirrored again, and so is the one that saw it go.
    let after_restart = env.pgdog.connect("pgdog", "pgdog", "primary").await?;
    let mirrored_before = counts(&env.pgdog, "primary").await?.mirrored;
    eventually(Duration::from_secs(20), "mirrored again", || async {
        after_restart.simple_query("SELECT 1").await?;
        client.simple_query("SELECT 1").await?;
        sent.set(sent.get() + 2);
        let c = counts(&env.pgdog, "primary").await?;
        Ok((c.mirrored >= mirrored_before + 2).then_some(()))
    })
    .await?;
    drop((client, after_restart));
    let c = accounted_for(&env, sent.get()).await?;
    let text = common::scrape(&env.pgdog).await?;
    // Only the mirror's connection failed: no query, protocol or timeout errors.
    let by_kind: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("mirror{error_type"))
        .collect();
    assert_eq!(
        common::metric(&text, "mirror{error_type=\"connection\"}"),
        c.errors,
        "{c:?} {by_kind:?}"
    );
    assert!(c.errors > 0, "the crash cost some requests: {c:?}");
    let n: i64 = env
        .primary
        .query_scalar_in("pgdog", "SELECT count(*) FROM t")
        .await?;
    assert_eq!(n, 9);
    no_leaks(&env, before, 30_000).await?;
    Ok(())
}

#[tokio::test]
async fn primary_restarted_under_load() -> Result<()> {
    let env = env("CREATE TABLE t(id int)", |b| b).await?;
    let before = held(&env.pgdog, &env.primary, &env.mirror).await?;
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut workers = Vec::new();
    for w in 0..3 {
        let dsn = env.pgdog.dsn("pgdog", "pgdog", "primary");
        let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
        workers.push(tokio::spawn(async move {
            // As an application does: on an error, connect again and go on.
            let mut client = None;
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                if client.is_none() {
                    client = pgdog_integration::connect_dsn(&dsn).await.ok();
                    if client.is_none() {
                        failed.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    }
                }
                i += 1;
                let sql = format!("INSERT INTO t VALUES ({w}{i})");
                let result = client.as_ref().expect("connected").simple_query(&sql).await;
                match result {
                    Ok(_) => ok.fetch_add(1, Ordering::Relaxed),
                    Err(_) => {
                        client = None;
                        failed.fetch_add(1, Ordering::Relaxed)
                    }
                };
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let ok_before = ok.load(Ordering::Relaxed);
    env.primary.stop()?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    env.primary.start_again()?;
    // The pool refills and the clients go on.
    eventually(Duration::from_secs(20), "clients going on", || async {
        Ok((ok.load(Ordering::Relaxed) > ok_before + 30).then_some(()))
    })
    .await?;
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await?;
    }
    assert!(failed.load(Ordering::Relaxed) > 0, "the restart was seen");
    // No stale connection is handed out: each new client's first query works.
    for _ in 0..2 * POOL_SIZE {
        let c = env.pgdog.connect("pgdog", "pgdog", "primary").await?;
        c.simple_query("SELECT 1").await?;
    }
    let c = settled_counts(&env.pgdog, "primary", "every request accounted for", |c| {
        accounted(c) && c.total >= ok.load(Ordering::Relaxed) as u64
    })
    .await?;
    // The mirror did nothing wrong: no errors of its own.
    let text = common::scrape(&env.pgdog).await?;
    for kind in ["query", "protocol", "timeout"] {
        assert_eq!(
            common::metric(&text, &format!("mirror{{error_type=\"{kind}\"}}")),
            0,
            "{kind}: {c:?}"
        );
    }
    no_leaks(&env, before, 30_000).await?;
    Ok(())
}

#[tokio::test]
async fn backends_terminated_on_the_primary_and_on_the_mirror() -> Result<()> {
    let env = env("", |b| b).await?;
    let warm = env.pgdog.connect("pgdog", "pgdog", "primary").await?;
    warm.simple_query("SELECT 1").await?;
    drop(warm);
    accounted_for(&env, 1).await?;
    let before = held(&env.pgdog, &env.primary, &env.mirror).await?;
    let mut sent = 1;

    // The mirror's backends go: the primary's client notices nothing.
    let client = env.pgdog.connect("pgdog", "pgdog", "primary").await?;
    client.simple_query("SELECT 1").await?;
    sent += 1;
    accounted_for(&env, sent).await?;
    env.mirror
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE usename = 'pgdog' AND client_addr IS NOT NULL",
        )
        .await?;
    // The backends are gone (each sent its FATAL, which pgdog reads while idle).
    eventually(
        Duration::from_secs(10),
        "the mirror's backends gone",
        || async { Ok((backends(&env.mirror).await? == 0).then_some(())) },
    )
    .await?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    for i in 0..20 {
        client.simple_query(&format!("SELECT {i}")).await?;
    }
    sent += 20;
    let c = accounted_for(&env, sent).await?;
    // A connection closed between requests costs nothing: every request was mirrored
    // on a fresh connection.
    assert_eq!(c.mirrored, sent, "{c:?}");

    // The primary's backend of a session goes: that client is told, as it would be
    // without pgdog; the others go on, and the pool replaces the connection.
    let other = env.pgdog.connect("pgdog", "pgdog", "primary").await?;
    other.simple_query("SELECT 1").await?;
    sent += 1;
    let pid: i32 = client
        .query_one("SELECT pg_backend_pid()", &[])
        .await?
        .get(0);
    sent += 1;
    env.primary
        .execute(&format!("SELECT pg_terminate_backend({pid})"))
        .await?;
    let err = eventually(Duration::from_secs(10), "the client told", || async {
        Ok(client.simple_query("SELECT 1").await.err())
    })
    .await?;
    // 57P01 admin_shutdown, as without pgdog; or the connection already closed under it.
    assert!(
        common::sqlstate(&err).as_deref() == Some("57P01") || err.is_closed(),
        "{err:?}"
    );
    other.simple_query("SELECT 1").await?;
    sent += 1;
    drop((client, other));
    settled_counts(&env.pgdog, "primary", "accounted for", |c| {
        accounted(c) && c.total >= sent
    })
    .await?;
    no_leaks(&env, before, 30_000).await?;
    Ok(())
}

/// A TCP relay between pgdog and the mirror that can stop forwarding (a stalled network:
/// bytes are taken and held, nothing arrives) and start again. Counts the cancel
/// requests it delivered.
struct Relay {
    port: u16,
    paused: tokio::sync::watch::Sender<bool>,
    cancels: Arc<AtomicUsize>,
}

impl Relay {
    async fn start(upstream: u16) -> Result<Relay> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let paused = tokio::sync::watch::Sender::new(false);
        let cancels = Arc::new(AtomicUsize::new(0));
        let (rx, counter) = (paused.subscribe(), cancels.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                tokio::spawn(relay(client, upstream, rx.clone(), counter.clone()));
            }
        });
        Ok(Relay {
            port,
            paused,
            cancels,
        })
    }

    fn stall(&self) {
        self.paused.send_replace(true);
    }

    fn resume(&self) {
        self.paused.send_replace(false);
    }
}

async fn relay(
    client: TcpStream,
    upstream: u16,
    mut paused: tokio::sync::watch::Receiver<bool>,
    cancels: Arc<AtomicUsize>,
) -> Result<()> {
    // A connection made during the stall gets through once it ends.
    paused.wait_for(|p| !p).await?;
    let server = TcpStream::connect(("127.0.0.1", upstream)).await?;
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    let up = {
        let mut paused = paused.clone();
        async move {
            let mut buf = vec![0u8; 16 * 1024];
            let mut first = true;
            loop {
                let n = cr.read(&mut buf).await?;
                if n == 0 {
                    let _ = sw.shutdown().await;
                    return anyhow::Ok(());
                }
                paused.wait_for(|p| !p).await?;
                if first && buf[..n].starts_with(&[0, 0, 0, 16, 0x04, 0xd2, 0x16, 0x2e]) {
                    cancels.fetch_add(1, Ordering::Relaxed);
                }
                first = false;
                sw.write_all(&buf[..n]).await?;
            }
        }
    };
    let down = async move {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = sr.read(&mut buf).await?;
            if n == 0 {
                let _ = cw.shutdown().await;
                return anyhow::Ok(());
            }
            paused.wait_for(|p| !p).await?;
            cw.write_all(&buf[..n]).await?;
        }
    };
    let _ = tokio::join!(up, down);
    Ok(())
}

#[tokio::test]
async fn stalled_mirror_network_times_out_and_the_cancel_arrives_when_it_resumes() -> Result<()> {
    let (primary, mirror) = tokio::try_join!(PgCluster::start(), PgCluster::start())?;
    // slow() answers at once on the primary and sleeps 20 s on the mirror.
    primary
        .execute_in(
            "pgdog",
            "CREATE FUNCTION slow() RETURNS int LANGUAGE sql AS 'SELECT 1'",
        )
        .await?;
    mirror
        .execute_in(
            "pgdog",
            "CREATE FUNCTION slow() RETURNS int LANGUAGE sql AS 'SELECT 1 FROM pg_sleep(20)'",
        )
        .await?;
    let relay = Relay::start(mirror.port()).await?;
    let pgdog = ConfigBuilder::new()
        .set("pool_size", POOL_SIZE)
        .set("mirror_timeout_ms", 500)
        .set("mirror_min_runtime_hours", 0)
        .pool("primary", &primary, "pgdog")
        .pool_at("mirror", "127.0.0.1", relay.port, "pgdog")
        .pool_set("primary", "mirror_of", "mirror")
        .start()
        .await?;
    let env = MirrorEnv {
        pgdog,
        primary,
        mirror,
    };
    let client = env.pgdog.connect("pgdog", "pgdog", "primary").await?;
    client.simple_query("SELECT 1").await?;
    accounted_for(&env, 1).await?;
    let before = held(&env.pgdog, &env.primary, &env.mirror).await?;

    // slow() reaches the mirror, then the network stalls.
    client.simple_query("SELECT slow()").await?;
    let running = "SELECT count(*) FROM pg_stat_activity WHERE query = 'SELECT slow()' \
                   AND state = 'active'";
    eventually(
        Duration::from_secs(10),
        "slow() running on the mirror",
        || async { Ok((env.mirror.query_scalar::<i64>(running).await? == 1).then_some(())) },
    )
    .await?;
    relay.stall();
    let stalled_at = Instant::now();
    // The primary's client goes on meanwhile.
    for i in 0..5 {
        client.simple_query(&format!("SELECT {i}")).await?;
    }
    // The timeout fires after 500 ms and a cancel goes out: into the stall.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(relay.cancels.load(Ordering::Relaxed), 0);
    assert_eq!(env.mirror.query_scalar::<i64>(running).await?, 1);
    relay.resume();
    // It reaches the mirror, which stops slow() long before its 20 s.
    eventually(Duration::from_secs(5), "slow() cancelled", || async {
        Ok((env.mirror.query_scalar::<i64>(running).await? == 0).then_some(()))
    })
    .await?;
    assert!(stalled_at.elapsed() < Duration::from_secs(10));
    assert_eq!(relay.cancels.load(Ordering::Relaxed), 1);
    assert!(env
        .mirror
        .log_tail(200)
        .contains("canceling statement due to user request"));
    let c = accounted_for(&env, 7).await?;
    let text = common::scrape(&env.pgdog).await?;
    assert_eq!(
        common::metric(&text, "mirror{error_type=\"timeout\"}"),
        1,
        "{c:?}"
    );
    // The five behind it were mirrored once the network was back.
    assert_eq!(c.mirrored, 6, "{c:?}");

    // A stall longer than the cancel's grace: the connection is given up, and a fresh
    // one takes over once the network is back.
    relay.stall();
    client.simple_query("SELECT 2").await?;
    tokio::time::sleep(Duration::from_millis(3000)).await;
    relay.resume();
    let sent = Cell::new(8);
    eventually(Duration::from_secs(20), "mirrored again", || async {
        client.simple_query("SELECT 3").await?;
        sent.set(sent.get() + 1);
        let c = counts(&env.pgdog, "primary").await?;
        Ok((c.mirrored >= 7 && accounted(&c)).then_some(()))
    })
    .await?;
    drop(client);
    let c = accounted_for(&env, sent.get()).await?;
    assert!(c.errors >= 2, "a timeout, then connection errors: {c:?}");
    no_leaks(&env, before, 30_000).await?;
    Ok(())
}

/// One login over a raw socket (trust), optionally a query, then Terminate or a dropped
/// socket.
async fn cycle(port: u16, query: bool, terminate: bool) -> Result<()> {
    let mut s = raw_login(port, "pgdog", "primary").await?;
    if query {
        s.write_all(&common::wire::query("SELECT 1")).await?;
        read_until(&mut s, b'Z').await?;
    }
    if terminate {
        s.write_all(&[b'X', 0, 0, 0, 4]).await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_connect_disconnect_cycles() -> Result<()> {
    let env = env("", |b| {
        b.set("auth_type", "trust").set("max_client_conn", 10_000)
    })
    .await?;
    let port = env.pgdog.port();
    // Every 10th cycle runs a query (mirrored); every 7th leaves without Terminate.
    let run = |from: u64, to: u64| {
        let workers: Vec<_> = (0..8u64)
            .map(|w| {
                tokio::spawn(async move {
                    let mut queries = 0;
                    for i in (from + w..to).step_by(8) {
                        let query = i % 10 == 0;
                        cycle(port, query, i % 7 != 0).await?;
                        queries += u64::from(query);
                    }
                    anyhow::Ok(queries)
                })
            })
            .collect();
        async move {
            let mut queries = 0;
            for w in workers {
                queries += w.await??;
            }
            anyhow::Ok(queries)
        }
    };
    let mut sent = run(0, 1000).await?;
    accounted_for(&env, sent).await?;
    let before = held(&env.pgdog, &env.primary, &env.mirror).await?;
    let started = Instant::now();
    sent += run(1000, 10_000).await?;
    let took = started.elapsed();
    println!(
        "9,000 cycles after 1,000 to warm up: {took:?} ({:.0}/s)",
        9000.0 / took.as_secs_f64()
    );
    let c = accounted_for(&env, sent).await?;
    assert_eq!(c.mirrored, sent, "{c:?}");
    let after = no_leaks(&env, before, 8_192).await?;
    println!("held before {before:?}, after {after:?}");
    Ok(())
}

#[tokio::test]
async fn clients_vanishing_mid_copy_and_mid_extended_batch() -> Result<()> {
    let env = env("CREATE TABLE t(id int)", |b| b.set("auth_type", "trust")).await?;
    let port = env.pgdog.port();
    let warm = env.pgdog.connect("pgdog", "pgdog", "primary").await?;
    warm.simple_query("SELECT 1").await?;
    drop(warm);
    accounted_for(&env, 1).await?;
    let before = held(&env.pgdog, &env.primary, &env.mirror).await?;

    for round in 0..3 {
        // Mid-COPY: the data starts, the client is gone before CopyDone.
        let mut s = raw_login(port, "pgdog", "primary").await?;
        s.write_all(&common::wire::query("COPY t FROM STDIN"))
            .await?;
        read_until(&mut s, b'G').await?;
        let mut data = vec![b'd'];
        data.extend_from_slice(&(4 + 6u32).to_be_bytes());
        data.extend_from_slice(b"1\n2\n3\n");
        s.write_all(&data).await?;
        tokio::time::sleep(Duration::from_millis(50)).await;
        drop(s);

        // Mid-batch: Parse, Bind, Execute of a long query, no Sync, and gone.
        let mut s = raw_login(port, "pgdog", "primary").await?;
        let batch = [
            common::wire::parse("", "SELECT pg_sleep(30)"),
            common::wire::bind(""),
            common::wire::execute(),
        ]
        .concat();
        s.write_all(&batch).await?;
        s.flush().await?;
        tokio::time::sleep(Duration::from_millis(100)).await;
        drop(s);
        let _ = round;
    }
    // Nothing of either stays on the primary: the COPY was not committed, the sleep was
    // cancelled.
    eventually(Duration::from_secs(10), "the primary idle", || async {
        let busy: i64 = env
            .primary
            .query_scalar(
                "SELECT count(*) FROM pg_stat_activity WHERE state <> 'idle' \
                 AND usename = 'pgdog' AND client_addr IS NOT NULL",
            )
            .await?;
        Ok((busy == 0).then_some(()))
    })
    .await?;
    let rows: i64 = env
        .primary
        .query_scalar_in("pgdog", "SELECT count(*) FROM t")
        .await?;
    assert_eq!(rows, 0);
    // pgdog serves, and the unfinished requests are accounted for (whatever became of
    // them on the mirror).
    let client = env.pgdog.connect("pgdog", "pgdog", "primary").await?;
    client.simple_query("SELECT 1").await?;
    drop(client);
    settled_counts(&env.pgdog, "primary", "accounted for", |c| {
        accounted(c) && c.total >= 2
    })
    .await?;
    let on_mirror: i64 = env
        .mirror
        .query_scalar_in("pgdog", "SELECT count(*) FROM t")
        .await?;
    assert_eq!(on_mirror, 0, "an unfinished COPY committed on the mirror");
    no_leaks(&env, before, 30_000).await?;
    Ok(())
}

#[tokio::test]
async fn out_of_file_descriptors_new_clients_are_refused_and_the_others_go_on() -> Result<()> {
    let cluster = PgCluster::start().await?;
    let config = ConfigBuilder::new()
        .set("pool_size", 100)
        .set("auth_type", "trust")
        .pool("pgdog", &cluster, "pgdog")
        .build();
    let pgdog = Pgdog::start_with(&config, Launch::default().max_open_files(48)).await?;
    let mut clients = Vec::new();
    let refusal = loop {
        let dsn = format!("{} connect_timeout=5", pgdog.dsn("pgdog", "pgdog", "pgdog"));
        let started = Instant::now();
        // A client the proxy neither serves nor refuses waits in the kernel's queue:
        // that is the failure this test is for, so it must not hang the test.
        let connect = tokio_postgres::connect(&dsn, tokio_postgres::NoTls);
        let Ok(connected) = tokio::time::timeout(Duration::from_secs(5), connect).await else {
            bail!(
                "client {} neither served nor refused within 5 s",
                clients.len() + 1
            );
        };
        match connected {
            Ok((client, conn)) => {
                tokio::spawn(conn);
                client.simple_query("SELECT 1").await?;
                clients.push(client);
                if clients.len() > 40 {
                    bail!("48 descriptors took {} clients", clients.len());
                }
            }
            Err(e) => break (e, started.elapsed()),
        }
    };
    let (err, waited) = refusal;
    // Refused at once, with a reason, not left hanging.
    assert!(waited < Duration::from_secs(3), "{waited:?}");
    assert_eq!(common::sqlstate(&err).as_deref(), Some("53300"), "{err}");
    let message = err.as_db_error().map(|e| e.message().to_string());
    assert!(
        message
            .as_deref()
            .is_some_and(|m| m.contains("file descriptors")),
        "{err:?}"
    );
    assert!(clients.len() >= 5, "{} clients", clients.len());
    // Everyone already in goes on.
    for c in &clients {
        c.simple_query("SELECT 1").await?;
    }
    // Descriptors freed: new clients get in again.
    let n = clients.len();
    clients.truncate(n / 2);
    let again = eventually(Duration::from_secs(10), "room again", || async {
        let connect = pgdog.connect("pgdog", "pgdog", "pgdog");
        Ok(tokio::time::timeout(Duration::from_secs(2), connect)
            .await
            .ok()
            .and_then(|c| c.ok()))
    })
    .await?;
    again.simple_query("SELECT 1").await?;
    assert!(pgdog.log().contains("out of file descriptors"));
    Ok(())
}
