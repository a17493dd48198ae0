//! A stats plugin that stalls (the `stalled-stats` fixture sleeps 10 s in each of its
//! statistics calls): `/metrics`, `/readiness` and `SHOW MIRROR READINESS` answer
//! within their limit, saying the plugin is not answering; client sessions keep
//! running; the events the plugin cannot take are dropped and counted, and memory stays
//! flat. Needs `integration/plugin-fixtures/build.sh`.

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use common::admin_lines;
use pgdog_integration::{http_get, pgdog_binary, ConfigBuilder, PgCluster};

/// What a request may take with a stalled plugin: the host's 2 s call limit, the
/// 0.5 s event flush, and room for a busy CI machine.
const LIMIT: Duration = Duration::from_secs(5);

fn fixture() -> PathBuf {
    let binary = pgdog_binary().unwrap();
    // <target>/<profile>/pgdog -> <target>/plugin-fixtures/debug
    let target = binary.parent().unwrap().parent().unwrap();
    let path = target.join("plugin-fixtures/debug/libpgdog_fixture_stalled_stats.so");
    assert!(
        path.is_file(),
        "{} missing: run integration/plugin-fixtures/build.sh",
        path.display()
    );
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_stats_plugin_holds_up_nothing() -> Result<()> {
    let cluster = PgCluster::start().await?;
    cluster.create_database("mirrordb").await?;
    let mut pgdog = ConfigBuilder::new()
        .set("pool_size", 4)
        .set("admin_password", "adminpw")
        .pool("app", &cluster, "pgdog")
        .pool_set("app", "mirror_of", "mirror")
        .pool("mirror", &cluster, "mirrordb")
        .raw(&format!(
            "[[plugins]]\nname = \"slow\"\npath = \"{}\"\n",
            fixture().display()
        ))
        .start()
        .await?;
    let port = pgdog.metrics_port();
    pgdog.wait_for_port(port, Duration::from_secs(15)).await?;

    // Sessions: four clients, queries back to back, for the whole test.
    let run_until = Instant::now() + Duration::from_secs(14);
    let mut clients = Vec::new();
    for c in 0..4 {
        let client = pgdog.connect("pgdog", "pgdog", "app").await?;
        clients.push(tokio::spawn(async move {
            let (mut n, mut slowest) = (0u64, Duration::ZERO);
            while Instant::now() < run_until {
                let start = Instant::now();
                client.simple_query(&format!("SELECT {c}, {n}")).await?;
                slowest = slowest.max(start.elapsed());
                n += 1;
            }
            anyhow::Ok((n, slowest))
        }));
    }

    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_start = pgdog.rss_kb().unwrap_or(0);
    let console = pgdog.connect_admin("admin", "adminpw", "pgdog").await?;
    let mut last = String::new();
    while Instant::now() + Duration::from_secs(2) < run_until {
        let start = Instant::now();
        let metrics = http_get(pgdog.host(), port, "/metrics").await?;
        let took = start.elapsed();
        assert!(took < LIMIT, "/metrics took {took:?}");
        assert_eq!(metrics.status, 200, "{}", metrics.body);
        assert!(metrics
            .body
            .contains("pgdog_pool_queries_total{database=\"app\"}"));
        last = metrics.body;

        let start = Instant::now();
        let readiness = http_get(pgdog.host(), port, "/readiness").await?;
        let took = start.elapsed();
        assert!(took < LIMIT, "/readiness took {took:?}");
        assert_eq!(readiness.status, 503, "{}", readiness.body);
        assert!(
            readiness.body.contains("not answering"),
            "{}",
            readiness.body
        );

        let start = Instant::now();
        let answer = admin_lines(&console, "SHOW MIRROR READINESS").await;
        let took = start.elapsed();
        assert!(took < LIMIT, "SHOW MIRROR READINESS took {took:?}");
        match answer {
            Err(e) => assert!(format!("{e:?}").contains("not answering"), "{e:?}"),
            Ok(rows) => bail!("a verdict from a stalled plugin: {rows:?}"),
        }
        let plugins = admin_lines(&console, "SHOW PLUGINS").await?;
        assert!(!plugins.is_empty());
    }
    let rss_end = pgdog.rss_kb().unwrap_or(0);

    let mut served = 0;
    for client in clients {
        let (n, slowest) = client.await??;
        served += n;
        assert!(slowest < Duration::from_secs(1), "a query took {slowest:?}");
    }
    assert!(served > 1000, "{served} queries");
    // Bounded channel: what the plugin could not take is counted, not kept.
    assert!(
        last.lines()
            .any(|l| l.starts_with("pgdog_plugin_events_dropped_total ")),
        "{last}"
    );
    let growth_mb = rss_end.saturating_sub(rss_start) as f64 / 1024.0;
    assert!(
        growth_mb < 16.0,
        "resident memory grew {growth_mb:.1} MB ({rss_start} -> {rss_end} KiB) after {served} queries"
    );
    Ok(())
}
