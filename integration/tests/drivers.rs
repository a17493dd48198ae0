//! What real drivers do, end to end (issue 25): a client's cancel reaches the mirror, a
//! request of several statements is filed under its data statement, and a client that
//! pipelines thousands of statements is not dropped by a healthy mirror.

mod common;

use anyhow::{bail, ensure, Context, Result};
use common::{admin_rows, counts, metric, scrape, settled_counts, AdminRow, Counts, MirrorEnv};
use pgdog_integration::{ConfigBuilder, PgCluster, Pgdog};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_postgres::{Client, NoTls};

const ADMIN_PASSWORD: &str = "s3cret-admin";

/// `primary` mirrored to `mirror` (every transaction, comparison on), `setup` on both.
async fn start(
    setup: &str,
    configure: impl FnOnce(ConfigBuilder) -> ConfigBuilder,
) -> Result<MirrorEnv> {
    MirrorEnv::start(setup, |b| {
        configure(
            // Trust: the raw-socket clients below do not authenticate.
            b.set("admin_password", ADMIN_PASSWORD)
                .set("auth_type", "trust")
                .set("mirror_min_runtime_hours", 0)
                .pool_set("primary", "mirror_exposure", 1.0),
        )
    })
    .await?
    .with_admin()
    .await
}

fn invariant(c: &Counts) -> bool {
    c.total == c.mirrored + c.dropped + c.errors
}

/// `SHOW MIRROR QUERIES primary`.
async fn queries(pgdog: &Pgdog) -> Result<Vec<AdminRow>> {
    let console = pgdog
        .connect_admin("admin", ADMIN_PASSWORD, "pgdog")
        .await?;
    admin_rows(&console, "SHOW MIRROR QUERIES primary").await
}

fn col<'a>(row: &'a AdminRow, name: &str) -> &'a str {
    row.get(name).and_then(|v| v.as_deref()).unwrap_or("NULL")
}

/// The rows of `table`, ordered, as text, on cluster `c`.
async fn table(c: &PgCluster, table: &str) -> Result<Vec<String>> {
    let client = c.connect("pgdog", "pgdog").await?;
    let rows = client
        .query(&format!("SELECT t::text FROM {table} t ORDER BY 1"), &[])
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// Waits until every request of `at_least` is accounted for; then checks that nothing was
/// dropped, nothing failed on the mirror alone and nothing mismatched.
async fn clean_books(pgdog: &Pgdog, at_least: u64) -> Result<Counts> {
    settled_counts(pgdog, "primary", "every request accounted for", |c| {
        c.total >= at_least && invariant(c)
    })
    .await?;
    // No more events in flight: the books still balance a moment later.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let c = counts(pgdog, "primary").await?;
    ensure!(invariant(&c), "books do not balance: {c:?}");
    ensure!(c.dropped == 0, "dropped: {c:?}");
    ensure!(c.errors == 0, "mirror errors: {c:?}");
    let text = scrape(pgdog).await?;
    let mismatches = metric(&text, "pgdog_mirror_mismatches_total{database=\"primary\"}");
    ensure!(mismatches == 0, "{mismatches} mismatches");
    Ok(c)
}

/// Runs `sql` and cancels it from another connection after `after`; expects `57014`.
async fn cancelled(client: &Client, sql: &str, after: Duration) -> Result<()> {
    let token = client.cancel_token();
    let cancel = async {
        tokio::time::sleep(after).await;
        token.cancel_query(NoTls).await
    };
    let (ran, sent) = tokio::join!(client.simple_query(sql), cancel);
    sent.context("sending the cancel")?;
    match ran {
        Ok(_) => bail!("{sql}: not cancelled"),
        Err(e) => ensure!(
            common::sqlstate(&e).as_deref() == Some("57014"),
            "{sql}: {e}"
        ),
    }
    Ok(())
}

const CW: &str = "CREATE TABLE cw(id int PRIMARY KEY, v text);
    INSERT INTO cw VALUES (1, 'orig'), (2, 'orig'), (3, 'orig'), (4, 'orig');";

/// The reproduction: a write cancelled on the primary must not commit on the
/// mirror, and neither it nor cancelled reads count against the mirror (not an error, not
/// a mismatch, not a timeout), with tokio-postgres (simple and extended protocol, in and
/// out of a transaction) and with psql's Ctrl-C.
#[tokio::test]
async fn cancelled_writes_leave_the_mirror_as_the_primary() -> Result<()> {
    // A mirror timeout shorter than the statements: a cancelled statement that ran on the
    // mirror would show up as a timeout.
    let env = start(CW, |b| b.set("mirror_timeout_ms", 1500)).await?;
    let client = env.pgdog.connect("pgdog", "pgdog", "primary").await?;
    let slow = Duration::from_millis(400);
    let mut requests = 0;

    // Simple protocol, autocommit.
    cancelled(
        &client,
        "WITH z AS (SELECT pg_sleep(3)) UPDATE cw SET v = 'CANCELLED' FROM z WHERE id = 1",
        slow,
    )
    .await?;
    requests += 1;
    // Extended protocol, autocommit (prepare and execute: one request).
    let token = client.cancel_token();
    let (ran, _) = tokio::join!(
        client.execute(
            "WITH z AS (SELECT pg_sleep(3)) UPDATE cw SET v = $1 FROM z WHERE id = 2",
            &[&"CANCELLED"],
        ),
        async {
            tokio::time::sleep(slow).await;
            token.cancel_query(NoTls).await
        }
    );
    ensure!(
        ran.as_ref()
            .err()
            .and_then(common::sqlstate)
            .is_some_and(|s| s == "57014"),
        "extended: {ran:?}"
    );
    requests += 1;
    // Inside a transaction, rolled back; then one that commits.
    client
        .simple_query("BEGIN; UPDATE cw SET v = 'in-tx' WHERE id = 3")
        .await?;
    cancelled(
        &client,
        "WITH z AS (SELECT pg_sleep(3)) UPDATE cw SET v = 'CANCELLED' FROM z WHERE id = 3",
        slow,
    )
    .await?;
    client.simple_query("ROLLBACK").await?;
    client
        .simple_query("BEGIN; UPDATE cw SET v = 'committed' WHERE id = 3; COMMIT")
        .await?;
    requests += 4;
    // Three slow reads cancelled: no timeouts, nothing held against the mirror.
    for _ in 0..3 {
        cancelled(&client, "SELECT pg_sleep(3)", slow).await?;
    }
    requests += 3;

    // psql: Ctrl-C sends the CancelRequest.
    let psql = tokio::process::Command::new("psql")
        .args(["-X", "-v", "ON_ERROR_STOP=1"])
        .args(["-h", env.pgdog.host(), "-p", &env.pgdog.port().to_string()])
        .args(["-U", "pgdog", "-d", "primary"])
        .args([
            "-c",
            "WITH z AS (SELECT pg_sleep(3)) UPDATE cw SET v = 'PSQL' FROM z WHERE id = 4",
        ])
        .env("PGPASSWORD", "pgdog")
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .context("running psql")?;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let pid = psql.id().context("psql pid")? as i32;
    // SAFETY: a plain signal to the child this test started.
    unsafe { libc::kill(pid, libc::SIGINT) };
    let out = psql.wait_with_output().await?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(
        !out.status.success() && stderr.contains("canceling statement"),
        "psql: {stderr}"
    );
    requests += 1;

    // A write afterwards reaches the mirror as usual.
    client
        .simple_query("UPDATE cw SET v = 'after' WHERE id = 1")
        .await?;
    requests += 1;

    let c = clean_books(&env.pgdog, requests).await?;
    let primary = table(&env.primary, "cw").await?;
    assert_eq!(
        primary,
        ["(1,after)", "(2,orig)", "(3,committed)", "(4,orig)"]
    );
    assert_eq!(table(&env.mirror, "cw").await?, primary, "mirror data");
    // The cancelled requests are set aside as such.
    let rows = queries(&env.pgdog).await?;
    let cancelled_aside: u64 = rows
        .iter()
        .filter(|r| col(r, "ranking") == "excluded")
        .filter(|r| col(r, "excluded_reason") == "cancelled on primary")
        .map(|r| col(r, "excluded").parse::<u64>().unwrap_or(0))
        .sum();
    assert_eq!(cancelled_aside, 7, "{rows:?}\n{c:?}");
    Ok(())
}

/// A wire message.
fn message(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![tag];
    m.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
    m.extend_from_slice(body);
    m
}

/// Parse (unnamed), Bind, Execute of `sql` without parameters.
fn run_unnamed(sql: &str) -> Vec<u8> {
    [
        message(b'P', format!("\0{sql}\0\0\0").as_bytes()),
        message(b'B', &[0, 0, 0, 0, 0, 0, 0, 0]),
        message(b'E', &[0, 0, 0, 0, 0]),
    ]
    .concat()
}

/// A transaction's first statement sent with its `BEGIN` (pgjdbc, autocommit off), a
/// multi-statement simple query and an extended batch of several Executes: each is filed
/// under its data statement, never under `begin` or a savepoint, so a non-deterministic
/// statement inside a transaction is set aside as it is outside one.
#[tokio::test]
async fn statements_are_filed_under_what_they_are() -> Result<()> {
    let env = start("CREATE TABLE f(id int, v text);", |b| b).await?;
    let mut s = common::raw_login(env.pgdog.port(), "pgdog", "primary").await?;
    let batches = [
        // pgjdbc, autocommit off: BEGIN with the first statement, one Sync.
        [
            run_unnamed("BEGIN"),
            run_unnamed("SELECT clock_timestamp()"),
            message(b'S', &[]),
        ]
        .concat(),
        // autosave=always: a savepoint before the statement.
        [
            run_unnamed("SAVEPOINT PGJDBC_AUTOSAVE"),
            run_unnamed("INSERT INTO f VALUES (1, 'a')"),
            message(b'S', &[]),
        ]
        .concat(),
        message(b'Q', b"COMMIT\0"),
        // A multi-statement simple query.
        message(b'Q', b"BEGIN; SELECT now(); COMMIT\0"),
    ];
    for batch in batches {
        s.write_all(&batch).await?;
        common::read_until(&mut s, b'Z').await?;
    }
    clean_books(&env.pgdog, 4).await?;
    let rows = queries(&env.pgdog).await?;
    let texts: Vec<&str> = rows.iter().map(|r| col(r, "query")).collect();
    // Transaction control never takes a data statement's outcome; a request of nothing
    // but control (the lone COMMIT) is filed under itself, once.
    for control in ["begin", "savepoint pgjdbc_autosave"] {
        assert!(!texts.contains(&control), "{control} filed: {rows:?}");
    }
    for row in rows.iter().filter(|r| col(r, "query") == "commit") {
        assert_eq!(col(row, "requests"), "1", "only the lone COMMIT: {rows:?}");
    }
    let aside = |text: &str| {
        rows.iter()
            .any(|r| col(r, "query") == text && col(r, "excluded_reason") == "non-deterministic")
    };
    assert!(aside("select clock_timestamp()"), "{rows:?}");
    assert!(aside("select now()"), "{rows:?}");
    assert_eq!(table(&env.mirror, "f").await?, ["(1,a)"]);
    Ok(())
}

/// A request of several different statements is compared statement by statement: the
/// mirror's data differs in one table only, and only the statements that read it
/// mismatch, each under its own fingerprint. A multi-statement simple query, an extended
/// batch of several Executes and a pgjdbc transaction's first statement (sent with its
/// `BEGIN`), against real servers.
#[tokio::test]
async fn each_statement_of_a_request_is_compared_under_its_own_fingerprint() -> Result<()> {
    let setup = "CREATE TABLE same(id int, v text); CREATE TABLE drift(id int, v text);
        INSERT INTO same VALUES (1, 'a'); INSERT INTO drift VALUES (1, 'a');";
    let env = start(setup, |b| b).await?;
    // The new server lost an update to one table.
    let mirror = env.mirror.connect("pgdog", "pgdog").await?;
    mirror.batch_execute("UPDATE drift SET v = 'b'").await?;
    let mut s = common::raw_login(env.pgdog.port(), "pgdog", "primary").await?;
    let batches = [
        message(
            b'Q',
            b"SELECT v FROM same; SELECT v FROM drift; SELECT count(*) FROM same\0",
        ),
        [
            run_unnamed("SELECT v FROM same WHERE id = 1"),
            run_unnamed("SELECT v FROM drift WHERE id = 1"),
            message(b'S', &[]),
        ]
        .concat(),
        [
            run_unnamed("BEGIN"),
            run_unnamed("SELECT id FROM same"),
            run_unnamed("SELECT id, v FROM drift"),
            message(b'S', &[]),
        ]
        .concat(),
        message(b'Q', b"COMMIT\0"),
    ];
    for batch in batches {
        s.write_all(&batch).await?;
        common::read_until(&mut s, b'Z').await?;
    }
    settled_counts(&env.pgdog, "primary", "every request accounted for", |c| {
        c.total >= 4 && invariant(c)
    })
    .await?;
    let rows = queries(&env.pgdog).await?;
    let of = |text: &str| -> Result<(u64, u64)> {
        let row = rows
            .iter()
            .find(|r| col(r, "query") == text)
            .with_context(|| format!("{text} not filed: {rows:?}"))?;
        Ok((
            col(row, "compared").parse()?,
            col(row, "mismatches").parse()?,
        ))
    };
    // (compared, mismatches) per statement: the ones reading `drift` differ, none other.
    for (text, want) in [
        ("select v from same", (1, 0)),
        ("select v from drift", (1, 1)),
        ("select count(*) from same", (1, 0)),
        ("select v from same where id = ?", (1, 0)),
        ("select v from drift where id = ?", (1, 1)),
        ("select id from same", (1, 0)),
        ("select id, v from drift", (1, 1)),
    ] {
        assert_eq!(of(text)?, want, "{text}: {rows:?}");
    }
    assert!(of("begin").is_err(), "transaction control filed: {rows:?}");
    let c = counts(&env.pgdog, "primary").await?;
    assert_eq!((c.total, c.dropped, c.errors), (4, 0, 0), "{c:?}");
    Ok(())
}

/// Writes `statements` as one stream of messages while reading the answers (a client
/// that pipelines: the proxy must not need it to read first); returns the number of
/// ReadyForQuery messages.
async fn pipeline(pgdog: &Pgdog, stream: Vec<u8>, readies: usize) -> Result<usize> {
    let s = common::raw_login(pgdog.port(), "pgdog", "primary").await?;
    let (mut rd, mut wr) = s.into_split();
    let writer = tokio::spawn(async move { wr.write_all(&stream).await.map(|_| wr) });
    let mut seen = 0;
    let mut errors = 0;
    let mut header = [0u8; 5];
    while seen < readies {
        rd.read_exact(&mut header).await?;
        let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
        let mut body = vec![0u8; len - 4];
        rd.read_exact(&mut body).await?;
        match header[0] {
            b'Z' => seen += 1,
            b'E' => errors += 1,
            _ => {}
        }
    }
    let _keep_open_until_read = writer.await??;
    ensure!(errors == 0, "{errors} errors");
    Ok(seen)
}

/// A client that writes 10,000 statements before reading (pgjdbc's `executeBatch` in
/// simple mode writes 256 at a time; tokio-postgres and libpq pipelines, all of them):
/// with the default `mirror_queue`, a healthy mirror drops nothing, in the simple and the
/// extended protocol, and its data equals the primary's.
#[tokio::test]
async fn ten_thousand_pipelined_statements_are_not_dropped() -> Result<()> {
    let env = start("CREATE TABLE b(id int PRIMARY KEY, k text);", |b| b).await?;
    const N: usize = 10_000;
    let simple: Vec<u8> = (0..N)
        .flat_map(|i| {
            message(
                b'Q',
                format!("INSERT INTO b VALUES ({i}, 's')\0").as_bytes(),
            )
        })
        .collect();
    assert_eq!(pipeline(&env.pgdog, simple, N).await?, N);
    // Extended: Parse/Bind/Execute/Sync for each (a request each).
    let extended: Vec<u8> = (N..2 * N)
        .flat_map(|i| {
            [
                run_unnamed(&format!("INSERT INTO b VALUES ({i}, 'e')")),
                message(b'S', &[]),
            ]
            .concat()
        })
        .collect();
    assert_eq!(pipeline(&env.pgdog, extended, N).await?, N);
    clean_books(&env.pgdog, 2 * N as u64).await?;
    let count = "SELECT count(*) FROM b";
    assert_eq!(
        env.primary.query_scalar_in::<i64>("pgdog", count).await?,
        2 * N as i64
    );
    assert_eq!(
        env.mirror.query_scalar_in::<i64>("pgdog", count).await?,
        2 * N as i64
    );
    Ok(())
}
