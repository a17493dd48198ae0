//! Mirroring reads to a target kept in sync by replication (`mirror_statements = "reads"`,
//! `mirror_sync`), between real clusters: a logical subscription with TPC-B writes and
//! reads of the rows being written, a physical standby from `pg_basebackup`, a function
//! that writes refused on the read-only mirror, a subscription that stops and starts
//! again, and a position that cannot be read at start-up.

mod common;

use anyhow::{bail, Context, Result};
use common::{admin_lines, admin_rows, metric, run_with_password, scrape, AdminRow};
use pgdog_integration::{ConfigBuilder, PgCluster, Pgdog};
use std::time::{Duration, Instant};
use tokio_postgres::Client;

const ADMIN_PASSWORD: &str = "s3cret-admin";
const DEADLINE: Duration = Duration::from_secs(30);

/// A client of the "app" pool that writes a random account and reads it back in two
/// transactions (the read sees its own write on the primary at once; a mirror that has
/// not applied it yet answers the old balance), then reads another random account.
const READ_BACK: &str = "\\set aid random(1, 100000)
\\set other random(1, 100000)
\\set delta random(-5000, 5000)
UPDATE pgbench_accounts SET abalance = abalance + :delta WHERE aid = :aid;
SELECT abalance FROM pgbench_accounts WHERE aid = :aid;
SELECT abalance, filler FROM pgbench_accounts WHERE aid = :other;
";

/// A table no workload writes, for a difference planted on the mirror only.
const THINGS: &str = "CREATE TABLE things(id int PRIMARY KEY, v text);
INSERT INTO things SELECT g, 'thing ' || g FROM generate_series(1, 50) g;";

/// A primary with `wal_level = logical`, publishing every table, and a subscriber whose
/// subscription `sub` (slot `sub`) has copied pgbench's tables at scale 1 and `THINGS`.
struct Logical {
    primary: PgCluster,
    subscriber: PgCluster,
}

impl Logical {
    async fn start() -> Result<Logical> {
        let (primary, subscriber) = tokio::try_join!(PgCluster::start(), PgCluster::start())?;
        primary.configure("wal_level = logical")?;
        let p = primary.data_dir().to_path_buf();
        tokio::task::block_in_place(|| primary.restart())
            .with_context(|| format!("restarting {}", p.display()))?;
        pgbench(&primary, &["-i", "-s", "1", "-q"])?;
        pgbench(&subscriber, &["-i", "-I", "dtp", "-q"])?;
        for c in [&primary, &subscriber] {
            c.execute_in("pgdog", THINGS).await?;
        }
        subscriber.execute_in("pgdog", "TRUNCATE things").await?;
        primary
            .execute_in("pgdog", "CREATE PUBLICATION everything FOR ALL TABLES")
            .await?;
        subscriber
            .execute_in(
                "pgdog",
                &format!(
                    "CREATE SUBSCRIPTION sub CONNECTION 'host=127.0.0.1 port={} user=postgres password=postgres dbname=pgdog' PUBLICATION everything",
                    primary.port()
                ),
            )
            .await?;
        let logical = Logical {
            primary,
            subscriber,
        };
        logical.caught_up().await?;
        Ok(logical)
    }

    /// Waits until every table is synchronised and the subscriber has applied all the
    /// primary has written.
    async fn caught_up(&self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let pending: i64 = self
                .subscriber
                .query_scalar_in(
                    "pgdog",
                    "SELECT count(*) FROM pg_subscription_rel WHERE srsubstate <> 'r'",
                )
                .await?;
            let behind: Option<i64> = self
                .primary
                .query_scalar(
                    "SELECT (pg_current_wal_lsn() - confirmed_flush_lsn)::bigint FROM pg_replication_slots WHERE slot_name = 'sub'",
                )
                .await
                .ok();
            if pending == 0 && behind.is_some_and(|b| b <= 0) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("the subscriber did not catch up: {pending} tables syncing, {behind:?} bytes behind");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// pgdog with pool `app` on the primary mirroring reads to `new` on the subscriber,
    /// `sync` (`logical` or `none`).
    async fn pgdog(&self, sync: &str, extra: &[(&str, i64)]) -> Result<Pgdog> {
        self.pgdog_with(sync, extra, |b| b).await
    }

    /// [`Logical::pgdog`], with `more` applied to the configuration last.
    async fn pgdog_with(
        &self,
        sync: &str,
        extra: &[(&str, i64)],
        more: impl FnOnce(ConfigBuilder) -> ConfigBuilder,
    ) -> Result<Pgdog> {
        let mut b = ConfigBuilder::new()
            .set("admin_password", ADMIN_PASSWORD)
            .set("mirror_min_runtime_hours", 0)
            .set("mirror_min_requests", 50)
            .set("mirror_queue", 250)
            .pool("app", &self.primary, "pgdog")
            .pool("new", &self.subscriber, "pgdog")
            .pool_set("app", "mirror_of", "new")
            .pool_set("app", "mirror_statements", "reads")
            .pool_set("app", "mirror_sync", sync);
        if sync == "logical" {
            b = b.pool_set("app", "mirror_sync_slot", "sub");
        }
        for (k, v) in extra {
            b = b.set(k, *v);
        }
        let mut pgdog = more(b).start().await?;
        let port = pgdog.admin_port();
        pgdog.wait_for_port(port, Duration::from_secs(10)).await?;
        Ok(pgdog)
    }
}

/// Runs pgbench against database `pgdog` of `cluster`.
fn pgbench(cluster: &PgCluster, args: &[&str]) -> Result<String> {
    let port = cluster.port().to_string();
    let mut all = vec!["-h", "127.0.0.1", "-p", &port, "-U", "pgdog"];
    all.extend_from_slice(args);
    all.push("pgdog");
    let (ok, out, err) = run_with_password("pgdog", "pgbench", &all);
    if !ok {
        bail!("pgbench {args:?} failed: {err}\n{out}");
    }
    Ok(out)
}

/// TPC-B from `clients` clients beside `readers` clients of [`READ_BACK`], through
/// pgdog's pool `app`, for `secs` seconds.
async fn workload(pgdog: &Pgdog, clients: u32, readers: u32, secs: u32) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let script = dir.path().join("read_back.sql");
    std::fs::write(&script, READ_BACK)?;
    let port = pgdog.port().to_string();
    let run = |args: Vec<String>| {
        let port = port.clone();
        tokio::task::spawn_blocking(move || {
            let mut all: Vec<String> = ["-h", "127.0.0.1", "-p", &port, "-U", "pgdog"]
                .map(String::from)
                .to_vec();
            all.extend(args);
            all.push("app".into());
            let refs: Vec<&str> = all.iter().map(String::as_str).collect();
            let (ok, out, err) = run_with_password("pgdog", "pgbench", &refs);
            (ok, out, err)
        })
    };
    let writers = run(vec![
        "-c".into(),
        clients.to_string(),
        "-T".into(),
        secs.to_string(),
        "-n".into(),
    ]);
    // Named prepared statements, as most drivers send reads (a second look at a
    // differing one defines it unnamed on the primary), at an application's pace (-R, in
    // all): reads as fast as they go outrun a gated mirror session by design, and their
    // answers are set aside as unpaired.
    let read_back = run(vec![
        "-R".into(),
        (100 * readers).to_string(),
        "-c".into(),
        readers.to_string(),
        "-T".into(),
        secs.to_string(),
        "-n".into(),
        "-M".into(),
        "prepared".into(),
        "-f".into(),
        script.display().to_string(),
    ]);
    let (w, r) = tokio::try_join!(writers, read_back)?;
    for (ok, out, err) in [w, r] {
        if !ok || !out.contains("number of failed transactions: 0") {
            bail!("pgbench failed: {err}\n{out}");
        }
    }
    Ok(())
}

async fn admin(pgdog: &Pgdog) -> Result<Client> {
    pgdog.connect_admin("admin", ADMIN_PASSWORD, "pgdog").await
}

/// `SHOW MIRROR STATS`'s row of `database`.
async fn stats_row(console: &Client, database: &str) -> Result<AdminRow> {
    let rows = admin_rows(console, "SHOW MIRROR STATS").await?;
    rows.into_iter()
        .find(|r| r.get("database").cloned().flatten().as_deref() == Some(database))
        .context("no row for the database")
}

fn cell(row: &AdminRow, column: &str) -> u64 {
    row.get(column)
        .cloned()
        .flatten()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// The readiness text once `done` holds for it.
async fn readiness_when(console: &Client, done: impl Fn(&str) -> bool) -> Result<String> {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let text = admin_lines(console, "SHOW MIRROR READINESS app")
            .await?
            .join("\n");
        if done(&text) {
            return Ok(text);
        }
        if Instant::now() > deadline {
            bail!("readiness did not reach the expected state; last:\n{text}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `(mismatches, compared, excluded)` of `Result Mismatches: M of C compared (R%), X excluded`.
fn comparison(text: &str) -> (u64, u64, u64) {
    let Some(line) = text
        .lines()
        .find_map(|l| l.split("Result Mismatches: ").nth(1))
    else {
        return (0, 0, 0);
    };
    let words: Vec<&str> = line.split_whitespace().collect();
    let num = |i: usize| words.get(i).and_then(|w| w.parse().ok()).unwrap_or(0);
    (num(0), num(2), num(words.len().saturating_sub(2)))
}

/// Every request the tap offered is accounted for (the mirror's queue is empty).
async fn settled(pgdog: &Pgdog) -> Result<String> {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let text = scrape(pgdog).await?;
        let depth = metric(&text, "pgdog_mirror_queue_depth{database=\"app\"}");
        if depth == 0 {
            tokio::time::sleep(Duration::from_millis(300)).await;
            let again = scrape(pgdog).await?;
            if metric(&again, "pgdog_mirror_queue_depth{database=\"app\"}") == 0 {
                return Ok(again);
            }
        }
        if Instant::now() > deadline {
            bail!("the mirror queue did not empty:\n{text}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Checksums of pgbench's tables on `cluster`.
async fn tables(cluster: &PgCluster) -> Result<Vec<i64>> {
    let mut out = Vec::new();
    for sql in [
        "SELECT coalesce(sum(abalance), 0)::bigint + count(*) FROM pgbench_accounts",
        "SELECT coalesce(sum(tbalance), 0)::bigint + count(*) FROM pgbench_tellers",
        "SELECT coalesce(sum(bbalance), 0)::bigint + count(*) FROM pgbench_branches",
        "SELECT coalesce(sum(delta), 0)::bigint + count(*) FROM pgbench_history",
    ] {
        out.push(cluster.query_scalar_in("pgdog", sql).await?);
    }
    Ok(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logical_replication_gated_reads_compare_equal_and_find_a_real_divergence() -> Result<()> {
    let logical = Logical::start().await?;
    let before = tables(&logical.primary).await?;

    // Gated: every read waits until the subscriber has applied what the primary had.
    let pgdog = logical.pgdog("logical", &[]).await?;
    let console = admin(&pgdog).await?;
    workload(&pgdog, 3, 3, 6).await?;
    let text = settled(&pgdog).await?;
    let readiness = readiness_when(&console, |t| comparison(t).1 > 0).await?;
    let (mismatches, compared, excluded) = comparison(&readiness);
    eprintln!(
        "gated: {mismatches} mismatches of {compared} compared, {excluded} excluded\n{readiness}"
    );
    for l in text
        .lines()
        .filter(|l| l.contains("sync") || l.contains("replication_lag"))
    {
        eprintln!("{l}");
    }
    assert!(
        compared >= 200,
        "reads were mirrored and compared:\n{readiness}"
    );
    // The goal: 0.1 % (docs/benchmarks.md). Gating alone leaves rows another client
    // committed between the primary's read and the mirror's (0.14 to 0.32 % measured);
    // each such read is asked again and set aside as `rechecked` when equal then.
    let rechecked = metric(
        &text,
        "pgdog_mirror_sync_rechecks_total{database=\"app\",result=\"equal\"}",
    );
    eprintln!("gated: {rechecked} comparisons set aside as rechecked");
    // A thousand or two reads are compared here: one mismatch is allowed beyond the 0.1 %
    // (bench/replication.sh measures the rate over longer runs).
    assert!(
        mismatches <= 1 + compared / 1000,
        "false mismatches within 0.1 % with gating:\n{readiness}"
    );
    let skipped_writes = metric(
        &text,
        "pgdog_mirror_skipped_total{database=\"app\",reason=\"write\"}",
    );
    assert!(
        skipped_writes > 0,
        "write transactions are skipped:\n{text}"
    );
    assert!(
        readiness.contains("Replication: logical, streaming"),
        "{readiness}"
    );
    let row = stats_row(&console, "app").await?;
    assert_eq!(cell(&row, "skipped_write"), skipped_writes, "{row:?}");
    assert!(
        metric(
            &text,
            "pgdog_mirror_sync_queries_total{database=\"app\",server=\"primary\"}"
        ) > 0
    );

    // No write went to the subscriber twice: its tables equal the primary's.
    logical.caught_up().await?;
    let (p, s) = (
        tables(&logical.primary).await?,
        tables(&logical.subscriber).await?,
    );
    assert_ne!(p, before, "the workload wrote");
    assert_eq!(
        p, s,
        "primary and subscriber tables (accounts, tellers, branches, history)"
    );

    // A real difference, planted on the subscriber only, is found on its fingerprint.
    logical
        .subscriber
        .execute_in("pgdog", "UPDATE things SET v = 'changed' WHERE id = 7")
        .await?;
    let client = pgdog.connect("pgdog", "pgdog", "app").await?;
    for _ in 0..3 {
        client
            .simple_query("SELECT v FROM things WHERE id = 7")
            .await?;
    }
    let deadline = Instant::now() + DEADLINE;
    loop {
        let rows = admin_rows(&console, "SHOW MIRROR QUERIES app").await?;
        let found = rows.iter().any(|r| {
            r.get("ranking").cloned().flatten().as_deref() == Some("mismatches")
                && r.get("query").cloned().flatten().as_deref()
                    == Some("select v from things where id = ?")
                && cell(r, "mismatches") >= 3
        });
        if found {
            break;
        }
        if Instant::now() > deadline {
            bail!("the planted difference was not found: {rows:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(console);
    drop(pgdog);

    // The same run without gating: reads of rows just written reach the subscriber before
    // it has applied the write.
    let pgdog = logical.pgdog("none", &[]).await?;
    let console = admin(&pgdog).await?;
    workload(&pgdog, 3, 3, 6).await?;
    settled(&pgdog).await?;
    let readiness = readiness_when(&console, |t| comparison(t).1 > 0).await?;
    let (ungated, ungated_compared, _) = comparison(&readiness);
    eprintln!("ungated: {ungated} mismatches of {ungated_compared} compared");
    assert!(
        ungated * 100 >= ungated_compared && ungated > mismatches,
        "without gating, reads of fresh writes differ (at least 1 %):\n{readiness}"
    );
    Ok(())
}

/// A mirror user that may not read the subscriber's replication origin (not a superuser,
/// no grant): the gate says so once and goes by the slot's positions alone, and reads are
/// still gated and compared.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_origin_the_gate_goes_by_the_slot() -> Result<()> {
    let logical = Logical::start().await?;
    logical
        .subscriber
        .execute_in(
            "pgdog",
            "GRANT SELECT ON ALL TABLES IN SCHEMA public TO md5user",
        )
        .await?;
    let pgdog = logical
        .pgdog_with("logical", &[], |b| {
            b.pool_set("new", "user", "md5user")
                .pool_set("new", "password", "md5user")
        })
        .await?;
    workload(&pgdog, 2, 2, 3).await?;
    let text = settled(&pgdog).await?;
    let log = pgdog.log();
    assert!(
        log.matches("replication origin cannot be read").count() == 1,
        "said once:\n{log}"
    );
    let synced = metric(
        &text,
        "pgdog_mirror_sync_reads_total{database=\"app\",result=\"synced\"}",
    );
    assert!(synced > 0, "reads were gated and released:\n{text}");
    assert_eq!(
        metric(&text, "pgdog_mirror_replication_up{database=\"app\"}"),
        1
    );
    let console = admin(&pgdog).await?;
    let readiness = readiness_when(&console, |t| comparison(t).1 > 0).await?;
    let (mismatches, compared, _) = comparison(&readiness);
    eprintln!("without the origin: {mismatches} mismatches of {compared} compared");
    assert!(
        compared >= 100 && mismatches <= 1 + compared / 1000,
        "reads compared as with the origin:\n{readiness}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_subscription_is_not_ready_with_its_cause_and_recovers() -> Result<()> {
    let logical = Logical::start().await?;
    let pgdog = logical
        .pgdog(
            "logical",
            &[("mirror_min_requests", 10), ("mirror_queue", 1000)],
        )
        .await?;
    let console = admin(&pgdog).await?;
    let client = pgdog.connect("pgdog", "pgdog", "app").await?;
    // The reads go back to back and each waits for the subscriber's position: a queue
    // that holds them all keeps drops (another criterion) out of this test. READY needs 95 % anytime-valid confidence on every rate criterion: with no error,
    // drop or slow answer that takes about 300 requests.
    for i in 1..=400 {
        client
            .simple_query(&format!("SELECT v FROM things WHERE id = {}", i % 50 + 1))
            .await?;
    }
    readiness_when(&console, |t| t.contains("Status: READY")).await?;

    logical
        .subscriber
        .execute_in("pgdog", "ALTER SUBSCRIPTION sub DISABLE")
        .await?;
    let stopped_at = Instant::now();
    let text = readiness_when(&console, |t| t.contains("Reason: Replication stopped")).await?;
    let took = stopped_at.elapsed();
    assert!(
        took < Duration::from_secs(5),
        "noticed after {took:?}:\n{text}"
    );
    assert!(text.contains("Status: NOT READY"), "{text}");
    assert!(
        text.contains("replication slot \"sub\" is not active"),
        "{text}"
    );
    let metrics = scrape(&pgdog).await?;
    assert!(
        metrics.contains("pgdog_mirror_replication_up{database=\"app\"} 0"),
        "{metrics}"
    );
    // Reads keep going meanwhile: they wait up to mirror_max_lag_ms, then go as lagging.
    logical
        .primary
        .execute_in("pgdog", "UPDATE things SET v = 'new' WHERE id = 1")
        .await?;
    client
        .simple_query("SELECT v FROM things WHERE id = 1")
        .await?;

    logical
        .subscriber
        .execute_in("pgdog", "ALTER SUBSCRIPTION sub ENABLE")
        .await?;
    let text = readiness_when(&console, |t| {
        t.contains("Status: READY") && !t.contains("Reason: Replication")
    })
    .await?;
    assert!(text.contains("Replication: logical, streaming"), "{text}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_physical_standby_is_gated_by_its_replay_position() -> Result<()> {
    let primary = PgCluster::start().await?;
    pgbench(&primary, &["-i", "-s", "1", "-q"])?;
    let standby = PgCluster::start_standby(&primary).await?;
    let mut pgdog = ConfigBuilder::new()
        .set("admin_password", ADMIN_PASSWORD)
        .set("mirror_min_runtime_hours", 0)
        .set("mirror_queue", 250)
        .pool("app", &primary, "pgdog")
        .pool("new", &standby, "pgdog")
        .pool_set("app", "mirror_of", "new")
        .pool_set("app", "mirror_statements", "reads")
        .pool_set("app", "mirror_sync", "physical")
        .start()
        .await?;
    let port = pgdog.admin_port();
    pgdog.wait_for_port(port, Duration::from_secs(10)).await?;
    let console = admin(&pgdog).await?;
    workload(&pgdog, 2, 3, 5).await?;
    let text = settled(&pgdog).await?;
    let readiness = readiness_when(&console, |t| comparison(t).1 > 0).await?;
    let (mismatches, compared, _) = comparison(&readiness);
    eprintln!("physical: {mismatches} mismatches of {compared} compared\n{readiness}");
    for l in text
        .lines()
        .filter(|l| l.contains("sync") || l.contains("replication_lag"))
    {
        eprintln!("{l}");
    }
    let queries = admin_rows(&console, "SHOW MIRROR QUERIES app").await?;
    eprintln!("{queries:?}");
    assert!(compared >= 200, "{readiness}");
    assert!(mismatches * 100 <= compared, "within 1 %:\n{readiness}");
    assert!(
        readiness.contains("Replication: physical, streaming"),
        "{readiness}"
    );
    let errors = metric(&text, "mirror{database=\"app\",metric=\"errors\"}");
    assert_eq!(errors, 0, "no read failed on the standby:\n{text}");
    assert!(
        metric(
            &text,
            "pgdog_mirror_sync_queries_total{database=\"app\",server=\"mirror\"}"
        ) > 0
    );
    Ok(())
}

/// Two clusters set up with `setup`, pool "primary" mirrored with `mirror_statements =
/// "reads"` and no gate, and the admin console.
async fn reads_mirror(setup: &str) -> Result<common::MirrorEnv> {
    common::MirrorEnv::start(setup, |b| {
        b.set("admin_password", ADMIN_PASSWORD)
            .pool_set("primary", "mirror_statements", "reads")
    })
    .await?
    .with_admin()
    .await
}

#[tokio::test]
async fn a_reads_mirror_never_writes_and_skips_a_function_that_does() -> Result<()> {
    const SETUP: &str = "CREATE TABLE t(id int PRIMARY KEY, v int);
        INSERT INTO t SELECT g, g FROM generate_series(1, 10) g;
        CREATE TABLE calls(at timestamptz DEFAULT now());
        CREATE FUNCTION counted() RETURNS bigint LANGUAGE plpgsql AS
          $$ BEGIN INSERT INTO calls DEFAULT VALUES; RETURN (SELECT count(*) FROM t); END $$;";
    let env = reads_mirror(SETUP).await?;
    let client = env.pgdog.connect("pgdog", "pgdog", "primary").await?;
    // Writes: a transaction of several statements, an autocommit one, a write hidden in
    // a CTE, and a read inside a write transaction.
    client
        .batch_execute("BEGIN; SELECT * FROM t; UPDATE t SET v = v + 1; COMMIT")
        .await?;
    client.simple_query("BEGIN").await?;
    client.simple_query("SELECT count(*) FROM t").await?;
    client.simple_query("INSERT INTO t VALUES (11, 11)").await?;
    client.simple_query("COMMIT").await?;
    client
        .simple_query("WITH d AS (DELETE FROM t WHERE id = 1 RETURNING *) SELECT * FROM d")
        .await?;
    // Reads, in the simple and the extended protocol.
    for id in 2..=6 {
        client
            .query("SELECT v FROM t WHERE id = $1", &[&id])
            .await?;
    }
    client.simple_query("SELECT sum(v) FROM t").await?;
    // A read that writes: refused by the read-only mirror; once that refusal is known,
    // the same statement is skipped up front (one sent before the mirror answered the
    // first could still go: the worker pipelines).
    client.simple_query("SELECT counted()").await?;
    let console = admin(&env.pgdog).await?;
    let deadline = Instant::now() + DEADLINE;
    while cell(
        &stats_row(&console, "primary").await?,
        "skipped_write_detected",
    ) < 1
    {
        if Instant::now() > deadline {
            bail!("the refused write was not counted");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    client.simple_query("SELECT counted()").await?;

    let deadline = Instant::now() + DEADLINE;
    let row = loop {
        let row = stats_row(&console, "primary").await?;
        if cell(&row, "skipped_write_detected") >= 2 && cell(&row, "mirrored") >= 6 {
            break row;
        }
        if Instant::now() > deadline {
            bail!("not settled: {row:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // 1 + 4 + 1 requests in write transactions (the batch is one request).
    assert_eq!(cell(&row, "skipped_write"), 6, "{row:?}");
    assert_eq!(cell(&row, "skipped_write_detected"), 2, "{row:?}");
    assert_eq!(
        cell(&row, "errors"),
        0,
        "a refused write is not the mirror's error: {row:?}"
    );
    assert_eq!(
        cell(&row, "total"),
        cell(&row, "mirrored") + cell(&row, "dropped") + cell(&row, "errors"),
        "{row:?}"
    );
    // Nothing changed on the mirror, and it refused the function's write once only.
    let (sum, calls): (i64, i64) = (
        env.mirror
            .query_scalar_in("pgdog", "SELECT sum(v) FROM t")
            .await?,
        env.mirror
            .query_scalar_in("pgdog", "SELECT count(*) FROM calls")
            .await?,
    );
    assert_eq!((sum, calls), (55, 0));
    let log = std::fs::read_to_string(env.mirror.log_path())?;
    assert_eq!(
        log.matches("cannot execute INSERT in a read-only transaction")
            .count(),
        1,
        "{log}"
    );
    Ok(())
}

/// A client that pipelines (tokio-postgres sends every request of a `join!` before it
/// reads an answer): the proxy's tap skips the write transaction where it arrives, but the
/// requests behind it came before the primary said where that transaction ends; the worker
/// finds out from the primary's answers, and skips the rest of it, not the read after it.
#[tokio::test]
async fn pipelined_requests_behind_a_skipped_write_are_skipped_with_its_transaction() -> Result<()>
{
    const SETUP: &str = "CREATE TABLE t(id int PRIMARY KEY, v int);
        INSERT INTO t SELECT g, g FROM generate_series(1, 10) g;";
    let env = reads_mirror(SETUP).await?;
    let client = env.pgdog.connect("pgdog", "pgdog", "primary").await?;
    let (begin, update, read_inside, commit, read_after) = tokio::join!(
        client.simple_query("BEGIN"),
        client.simple_query("UPDATE t SET v = v + 100 WHERE id = 2"),
        client.simple_query("SELECT v FROM t WHERE id = 2"),
        client.simple_query("COMMIT"),
        client.simple_query("SELECT v FROM t WHERE id = 3"),
    );
    for answer in [begin, update, read_inside, commit, read_after] {
        answer?;
    }
    let console = admin(&env.pgdog).await?;
    let deadline = Instant::now() + DEADLINE;
    loop {
        let row = stats_row(&console, "primary").await?;
        if cell(&row, "skipped_write") >= 4 && cell(&row, "mirrored") >= 1 {
            break;
        }
        if Instant::now() > deadline {
            bail!("not settled: {row:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Give a wrongly mirrored read time to show up before counting.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let row = stats_row(&console, "primary").await?;
    assert_eq!(
        cell(&row, "skipped_write"),
        4,
        "the whole transaction: {row:?}"
    );
    assert_eq!(cell(&row, "mirrored"), 1, "the read after it only: {row:?}");
    assert_eq!(cell(&row, "total"), 1, "{row:?}");
    let v: i32 = env
        .mirror
        .query_scalar_in("pgdog", "SELECT v FROM t WHERE id = 2")
        .await?;
    assert_eq!(v, 2, "the write never reached the mirror");
    Ok(())
}

#[tokio::test]
async fn a_replication_position_that_cannot_be_read_stops_start_up() -> Result<()> {
    let (primary, mirror) = tokio::try_join!(PgCluster::start(), PgCluster::start())?;
    let config = ConfigBuilder::new()
        .pool("app", &primary, "pgdog")
        .pool("new", &mirror, "pgdog")
        .pool_set("app", "mirror_of", "new")
        .pool_set("app", "mirror_statements", "reads")
        .pool_set("app", "mirror_sync", "logical")
        .pool_set("app", "mirror_sync_slot", "no_such_slot")
        .build();
    let (_, output) =
        tokio::task::spawn_blocking(move || Pgdog::start_expect_failure(&config)).await??;
    assert!(
        output.contains("pool \"app\": mirror_sync = \"logical\": cannot read the replication position: replication slot \"no_such_slot\" does not exist on the primary"),
        "{output}"
    );
    // A server that is not a standby, for physical: refused the same way.
    let config = ConfigBuilder::new()
        .pool("app", &primary, "pgdog")
        .pool("new", &mirror, "pgdog")
        .pool_set("app", "mirror_of", "new")
        .pool_set("app", "mirror_statements", "reads")
        .pool_set("app", "mirror_sync", "physical")
        .build();
    let (_, output) =
        tokio::task::spawn_blocking(move || Pgdog::start_expect_failure(&config)).await??;
    assert!(output.contains("the mirror is not a standby"), "{output}");
    Ok(())
}
