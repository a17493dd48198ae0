//! Result comparison end to end: a real primary and a real mirror cluster, differences
//! planted on the mirror, and what `SHOW MIRROR QUERIES`, `SHOW MIRROR READINESS` and
//! `/metrics` make of them.

mod common;

use anyhow::{bail, Result};
use common::{admin_lines, admin_rows, metric, scrape, AdminRow, MirrorEnv};
use pgdog_integration::{ConfigBuilder, Pgdog};
use std::time::{Duration, Instant};
use tokio_postgres::Client;

const ADMIN_PASSWORD: &str = "s3cret-admin";
const DEADLINE: Duration = Duration::from_secs(30);

/// `primary` mirrored to `mirror`, comparison on (the default), `setup` run on both.
async fn start(
    setup: &str,
    configure: impl FnOnce(ConfigBuilder) -> ConfigBuilder,
) -> Result<MirrorEnv> {
    // A long queue (below the 256 answers a session keeps for pairing): these tests are
    // about comparison, and under a loaded test machine the mirror can fall 128 requests
    // behind one busy client, which would drop requests and set comparison aside.
    MirrorEnv::start(setup, |b| {
        configure(
            b.set("admin_password", ADMIN_PASSWORD)
                .set("mirror_min_runtime_hours", 0)
                .set("mirror_queue", 250),
        )
    })
    .await?
    .with_admin()
    .await
}

async fn admin(pgdog: &Pgdog) -> Result<Client> {
    pgdog.connect_admin("admin", ADMIN_PASSWORD, "pgdog").await
}

/// `SHOW MIRROR READINESS` once `done` holds for it.
async fn readiness_when(console: &Client, done: impl Fn(&str) -> bool) -> Result<String> {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let text = admin_lines(console, "SHOW MIRROR READINESS")
            .await?
            .join("\n");
        if done(&text) {
            return Ok(text);
        }
        if Instant::now() > deadline {
            bail!("readiness did not reach the expected state; last:\n{text}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The overall `Result Mismatches: M of C compared (...), X excluded` figures.
fn mismatch_line(text: &str) -> Option<(u64, u64, u64)> {
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("Result Mismatches: "))?;
    let nums: Vec<u64> = line
        .split(|c: char| !c.is_ascii_digit() && c != '.')
        .filter_map(|w| w.parse().ok())
        .collect();
    // "M of C compared (R%), X excluded": R parses as a float and is skipped above
    // unless it is a whole number; take the first two and the last.
    Some((nums[0], nums[1], *nums.last()?))
}

fn col<'a>(row: &'a AdminRow, name: &str) -> &'a str {
    row.get(name)
        .unwrap_or_else(|| panic!("no column {name} in {row:?}"))
        .as_deref()
        .unwrap_or("NULL")
}

const ITEMS: &str = "CREATE TABLE items(id int PRIMARY KEY, name text, price numeric);
     INSERT INTO items SELECT g, 'item ' || g, g * 1.25 FROM generate_series(1, 200) g;";

#[tokio::test]
async fn identical_data_matches_and_one_changed_row_is_found() -> Result<()> {
    let env = start(ITEMS, |b| b).await?;
    let console = admin(&env.pgdog).await?;
    let client = env.pgdog.connect("pgdog", "pgdog", "primary").await?;

    // 1,000 mixed queries: simple and prepared point reads, aggregates, ordered range
    // reads and updates that change nothing.
    let by_id = client
        .prepare("SELECT name FROM items WHERE id = $1")
        .await?;
    for i in 0..1000i32 {
        let id = i % 200 + 1;
        match i % 5 {
            0 => {
                client
                    .simple_query(&format!("SELECT name, price FROM items WHERE id = {id}"))
                    .await?;
            }
            1 => {
                client.query(&by_id, &[&id]).await?;
            }
            2 => {
                client
                    .simple_query(&format!(
                        "SELECT count(*), sum(price) FROM items WHERE id BETWEEN {id} AND {}",
                        id + 20
                    ))
                    .await?;
            }
            3 => {
                client
                    .simple_query(&format!(
                        "SELECT id FROM items WHERE price > {} ORDER BY id",
                        id * 3
                    ))
                    .await?;
            }
            _ => {
                client
                    .simple_query(&format!("UPDATE items SET price = price WHERE id = {id}"))
                    .await?;
            }
        }
        // Every 200 queries, let the mirror catch up: on a loaded machine (CI runs tests
        // side by side on two cores) it can fall a queue's length (250) behind and drop,
        // and the counts below are exact.
        if (i + 1) % 200 == 0 {
            let done = u64::from(i as u32 + 1);
            readiness_when(&console, |t| {
                mismatch_line(t).is_some_and(|(_, compared, _)| compared >= done)
            })
            .await?;
        }
    }
    // (The prepare, Parse/Describe/Sync, joins the request that follows it.)
    let text = readiness_when(&console, |t| {
        mismatch_line(t).is_some_and(|(_, compared, _)| compared >= 1000)
    })
    .await?;
    assert_eq!(mismatch_line(&text), Some((0, 1000, 0)), "{text}");
    assert!(text.contains("Status: READY"), "{text}");

    // One row differs on the mirror: exactly the queries that read it mismatch.
    env.mirror
        .execute_in("pgdog", "UPDATE items SET name = 'changed' WHERE id = 7")
        .await?;
    for id in 1..=20 {
        client
            .simple_query(&format!("SELECT name, price FROM items WHERE id = {id}"))
            .await?; // reads row 7 once
    }
    for _ in 0..5 {
        client.simple_query("SELECT count(*) FROM items").await?; // never reads the name
    }
    for _ in 0..3 {
        client
            .simple_query("SELECT name FROM items WHERE id BETWEEN 1 AND 10")
            .await?; // reads it every time
    }
    let text = readiness_when(&console, |t| {
        mismatch_line(t).is_some_and(|(_, compared, _)| compared >= 1000 + 28)
    })
    .await?;
    assert_eq!(mismatch_line(&text), Some((4, 1028, 0)), "{text}");
    assert!(text.starts_with("Status: NOT READY"), "{text}");
    assert!(
        text.contains("select name from items where id between ? and ?"),
        "the reason names the worst fingerprint:\n{text}"
    );

    let rows = admin_rows(&console, "SHOW MIRROR QUERIES").await?;
    let mismatched: Vec<_> = rows
        .iter()
        .filter(|r| col(r, "ranking") == "mismatches")
        .collect();
    assert_eq!(mismatched.len(), 2, "{rows:?}");
    assert_eq!(
        col(mismatched[0], "query"),
        "select name from items where id between ? and ?"
    );
    assert_eq!(col(mismatched[0], "mismatches"), "3");
    assert_eq!(
        col(mismatched[0], "example"),
        "same 10 rows, different contents"
    );
    assert_eq!(
        col(mismatched[1], "query"),
        "select name, price from items where id = ?"
    );
    assert_eq!(col(mismatched[1], "mismatches"), "1");
    assert_eq!(col(mismatched[1], "fingerprint").len(), 16);

    let metrics = scrape(&env.pgdog).await?;
    assert_eq!(
        metric(
            &metrics,
            "pgdog_mirror_mismatches_total{database=\"primary\"}"
        ),
        4,
        "{metrics}"
    );
    // Mismatches were mirrored: the spec's accounting is unchanged.
    assert_eq!(metric(&metrics, "mirror{type=\"mirrored\"}"), 1028);
    drop(env.primary);
    Ok(())
}

#[tokio::test]
async fn a_missing_index_is_a_latency_regression_named_by_fingerprint() -> Result<()> {
    let setup = "CREATE TABLE big(id int, k int, pad text);
         INSERT INTO big SELECT g, g % 100000, repeat('x', 40) FROM generate_series(1, 300000) g;
         CREATE INDEX big_k ON big(k); ANALYZE big;";
    let env = start(setup, |b| b.set("mirror_min_requests", 20)).await?;
    env.mirror.execute_in("pgdog", "DROP INDEX big_k").await?;
    let console = admin(&env.pgdog).await?;
    let client = env.pgdog.connect("pgdog", "pgdog", "primary").await?;
    let lookup = client.prepare("SELECT pad FROM big WHERE k = $1").await?;
    for k in 0..40i32 {
        client.query(&lookup, &[&(k * 997)]).await?;
    }
    let text = readiness_when(&console, |t| t.contains("slower on the mirror")).await?;
    let reason = text
        .lines()
        .find(|l| l.contains("slower on the mirror"))
        .unwrap();
    assert!(
        reason.contains("\"select pad from big where k = ?\""),
        "{reason}"
    );
    assert!(text.starts_with("Status: NOT READY"), "{text}");
    // Same rows, only slower: no mismatch.
    assert_eq!(mismatch_line(&text).map(|m| m.0), Some(0), "{text}");
    let rows = admin_rows(&console, "SHOW MIRROR QUERIES").await?;
    let slowest = rows
        .iter()
        .find(|r| col(r, "ranking") == "latency")
        .expect("a latency ranking");
    assert_eq!(col(slowest, "query"), "select pad from big where k = ?");
    let ratio: f64 = col(slowest, "latency_ratio").parse()?;
    assert!(ratio > 1.5, "{slowest:?}");
    drop((env.primary, env.mirror));
    Ok(())
}

#[tokio::test]
async fn volatile_statements_ignored_ones_and_shared_errors_do_not_count() -> Result<()> {
    let setup = "CREATE TABLE t(id int, v text); INSERT INTO t VALUES (1, 'same'), (2, 'same');";
    let env = start(setup, |b| {
        b.general(r#"mirror_compare_ignore = ["SELECT v FROM t WHERE id = 99"]"#)
    })
    .await?;
    // Differences the comparison must set aside.
    env.mirror
        .execute_in("pgdog", "UPDATE t SET v = 'other' WHERE id = 2")
        .await?;
    env.primary
        .execute_in("pgdog", "CREATE TABLE only_primary(id int)")
        .await?;
    let console = admin(&env.pgdog).await?;
    let client = env.pgdog.connect("pgdog", "pgdog", "primary").await?;
    for _ in 0..10 {
        client.simple_query("SELECT now()").await?;
        client.simple_query("SELECT random()").await?;
        client.simple_query("SELECT v FROM t WHERE id = 2").await?; // listed (any id)
        client.simple_query("SELECT v FROM t WHERE id = 1").await?; // listed, and equal
    }
    for _ in 0..4 {
        // Fails on both sides with 42P01.
        assert!(client
            .simple_query("SELECT * FROM nonexistent_table")
            .await
            .is_err());
    }
    for _ in 0..2 {
        // Fails on the mirror only.
        client.simple_query("SELECT * FROM only_primary").await?;
    }
    let text = readiness_when(&console, |t| {
        mismatch_line(t).is_some_and(|(_, c, x)| c + x >= 46)
    })
    .await?;
    // 10 now() + 10 random() + 20 ignored set aside; 4 shared and 2 mirror-only
    // errors compared (only the latter differ, and they are errors, not mismatches).
    assert_eq!(mismatch_line(&text), Some((0, 6, 40)), "{text}");
    assert!(
        text.contains("Errors: 2 mirror only, 4 on both sides (not counted)"),
        "{text}"
    );
    // The spec's query-error count still has all six.
    let metrics = scrape(&env.pgdog).await?;
    assert_eq!(metric(&metrics, "mirror{error_type=\"query\"}"), 6);
    // Error rate: 2 mirror-only errors of 46 executed.
    assert!(text.contains("Error Rate: 4.35%"), "{text}");

    let rows = admin_rows(&console, "SHOW MIRROR QUERIES").await?;
    let excluded: Vec<(&str, &str, &str)> = rows
        .iter()
        .filter(|r| col(r, "ranking") == "excluded")
        .map(|r| {
            (
                col(r, "query"),
                col(r, "excluded"),
                col(r, "excluded_reason"),
            )
        })
        .collect();
    assert!(
        excluded.contains(&("select v from t where id = ?", "20", "ignored")),
        "{excluded:?}"
    );
    assert!(
        excluded.contains(&("select now()", "10", "non-deterministic")),
        "{excluded:?}"
    );
    Ok(())
}

#[tokio::test]
async fn comparison_can_be_switched_off_per_pool() -> Result<()> {
    let setup = "CREATE TABLE t(id int); INSERT INTO t VALUES (1);";
    let env = start(setup, |b| b.pool_set("primary", "mirror_compare", false)).await?;
    env.mirror
        .execute_in("pgdog", "UPDATE t SET id = 2")
        .await?;
    let console = admin(&env.pgdog).await?;
    let client = env.pgdog.connect("pgdog", "pgdog", "primary").await?;
    for _ in 0..20 {
        client.simple_query("SELECT id FROM t").await?;
    }
    let text = readiness_when(&console, |t| t.contains("Total Requests: 20")).await?;
    assert!(mismatch_line(&text).is_none(), "{text}");
    assert!(admin_rows(&console, "SHOW MIRROR QUERIES")
        .await?
        .is_empty());
    drop((env.primary, env.mirror));
    Ok(())
}

#[tokio::test]
async fn after_drops_answers_are_set_aside_until_reset() -> Result<()> {
    let env = start("CREATE TABLE s(id int)", |b| {
        b.pool_set("primary", "mirror_queue", 2)
            .pool_set("primary", "pool_size", 30)
            .pool_set("mirror", "pool_size", 30)
    })
    .await?;
    let console = admin(&env.pgdog).await?;
    // Stall the mirror so that its queues fill and writes are dropped.
    let locker = env.mirror.connect("pgdog", "pgdog").await?;
    locker
        .batch_execute("BEGIN; LOCK TABLE s IN ACCESS EXCLUSIVE MODE")
        .await?;
    let mut tasks = Vec::new();
    for client_no in 0..20 {
        let dsn = env.pgdog.dsn("pgdog", "pgdog", "primary");
        tasks.push(tokio::spawn(async move {
            let client = pgdog_integration::connect_dsn(&dsn).await?;
            for i in 0..10 {
                client
                    .simple_query(&format!("INSERT INTO s VALUES ({})", client_no * 100 + i))
                    .await?;
            }
            Ok::<_, anyhow::Error>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    locker.batch_execute("COMMIT").await?;
    readiness_when(&console, |t| t.contains("Total Requests: 200")).await?;

    // The mirror now lacks the dropped rows: its count differs, but that is the drops'
    // doing, not the new server's.
    // (One query at a time, each mirrored before the next: with mirror_queue = 2 a
    // quicker client could see some of these dropped too.)
    let client = env.pgdog.connect("pgdog", "pgdog", "primary").await?;
    let mut text = String::new();
    for i in 1..=5 {
        client.simple_query("SELECT count(*) FROM s").await?;
        let total = format!("Total Requests: {}", 200 + i);
        text = readiness_when(&console, |t| t.contains(&total)).await?;
    }
    assert_eq!(mismatch_line(&text).map(|m| m.0), Some(0), "{text}");
    assert!(text.contains("Reason: Dropped "), "{text}");
    let rows = admin_rows(&console, "SHOW MIRROR QUERIES").await?;
    let set_aside = rows
        .iter()
        .find(|r| col(r, "ranking") == "excluded" && col(r, "query") == "select count(*) from s")
        .unwrap_or_else(|| panic!("{rows:?}"));
    assert_eq!(col(set_aside, "excluded"), "5", "{rows:?}\n{text}");
    assert_eq!(col(set_aside, "excluded_reason"), "after drops");

    // Re-synced (emptied on both sides through the proxy) and reset: compared again.
    client.simple_query("TRUNCATE s").await?;
    readiness_when(&console, |t| t.contains("Total Requests: 206")).await?;
    admin_lines(&console, "RESET MIRROR STATS").await?;
    for i in 1..=5 {
        client.simple_query("SELECT count(*) FROM s").await?;
        let total = format!("Total Requests: {i}\n");
        text = readiness_when(&console, |t| t.contains(&total)).await?;
    }
    assert_eq!(mismatch_line(&text), Some((0, 5, 0)), "{text}");
    drop(env.primary);
    Ok(())
}
