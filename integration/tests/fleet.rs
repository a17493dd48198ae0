//! Fleet readiness through Prometheus: two pgdog processes mirror the same pools, a real
//! Prometheus scrapes both, and `pgdog readiness --prometheus URL` judges their sums.
//!
//! Neither proxy alone has seen enough traffic to be READY; together they have. The
//! command's totals must equal the sum of both proxies' own figures, its verdict what the
//! policy concludes on those totals, and its exit code 0 (READY), 1 (NOT READY) or 2
//! (cannot judge).

mod common;

use std::collections::BTreeMap;
use std::process::Output;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use common::scrape;
use pgdog_integration::{ConfigBuilder, PgCluster, Pgdog, Prometheus};
use pgdog_plugin_api::{
    Counts, Coverage, DatabaseStats, ExtensionValue, LatencyBucket, LatencySummary,
    ReadinessCriteria, StatsSnapshot,
};

const PRIMARY_PROBE: &str =
    "CREATE FUNCTION probe(i int, m int) RETURNS int LANGUAGE sql AS 'SELECT i'";
const MIRROR_PROBE: &str = "CREATE FUNCTION probe(i int, m int) RETURNS int LANGUAGE plpgsql AS \
     $$ BEGIN IF m > 0 AND i % m = 0 THEN RETURN i / 0; END IF; RETURN i; END $$";
/// Not one of the histogram's standard bounds: pgdog adds it as a bucket edge.
const BOUND_MS: u64 = 300;

/// A proxy mirroring `primary` and `small` (the primary cluster's database) to the
/// mirror cluster's.
async fn proxy(primary: &PgCluster, mirror: &PgCluster) -> Result<Pgdog> {
    let mut pgdog = ConfigBuilder::new()
        .set("mirror_min_runtime_hours", 0.0)
        .set("mirror_queue", 2000)
        .set("mirror_max_latency_ms", BOUND_MS as i64)
        .pool("primary", primary, "pgdog")
        .pool("small", primary, "pgdog")
        .pool("mirror", mirror, "pgdog")
        .pool_set("primary", "mirror_of", "mirror")
        .pool_set("small", "mirror_of", "mirror")
        .start()
        .await?;
    let port = pgdog.metrics_port();
    pgdog.wait_for_port(port, Duration::from_secs(10)).await?;
    Ok(pgdog)
}

async fn probes(pgdog: &Pgdog, db: &str, n: u32, m: u32) -> Result<()> {
    let client = pgdog.connect("pgdog", "pgdog", db).await?;
    for i in 1..=n {
        client
            .simple_query(&format!("SELECT probe({i}, {m})"))
            .await?;
    }
    Ok(())
}

/// Values of the exposition's lines starting with `prefix{` and holding every `labels`
/// pair, keyed by the line's label set.
fn series(text: &str, family: &str, labels: &[&str]) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| l.starts_with(&format!("{family}{{")))
        .filter(|l| labels.iter().all(|want| l.contains(want)))
        .filter_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            Some((name.to_string(), value.parse().ok()?))
        })
        .collect()
}

fn one(text: &str, family: &str, labels: &[&str]) -> f64 {
    series(text, family, labels).values().sum()
}

/// The statistics of database `db` summed over the proxies' expositions, built the way
/// the readiness policy reads them: an independent re-derivation of what the command
/// must feed it.
fn summed(expositions: &[String], db: &str) -> DatabaseStats {
    let d = format!("database=\"{db}\"");
    let sum = |family: &str, extra: &[&str]| -> u64 {
        let mut labels = vec![d.as_str()];
        labels.extend_from_slice(extra);
        expositions
            .iter()
            .map(|t| one(t, family, &labels))
            .sum::<f64>()
            .round() as u64
    };
    let (mirrored, errors, dropped) = (
        sum("pgdog_mirror_requests_total", &["outcome=\"mirrored\""]),
        sum("pgdog_mirror_requests_total", &["outcome=\"error\""]),
        sum("pgdog_mirror_requests_total", &["outcome=\"dropped\""]),
    );
    let le = format!("le=\"{}\"", BOUND_MS as f64 / 1000.0);
    let samples = sum("pgdog_mirror_latency_seconds_count", &[]);
    let within = sum("pgdog_mirror_latency_seconds_bucket", &[le.as_str()]);
    let mut stats = DatabaseStats {
        database: db.into(),
        counts: Counts {
            total: mirrored + errors + dropped,
            mirrored,
            errors,
            dropped,
            compared: sum("pgdog_mirror_compared_total", &[]),
            shared_errors: sum("pgdog_mirror_shared_errors_total", &[]),
            mismatched: sum("pgdog_mirror_mismatches_total", &[]),
            ..Counts::default()
        },
        mirror_latency: LatencySummary {
            samples,
            buckets: vec![
                LatencyBucket {
                    le_us: BOUND_MS * 1000,
                    count: within,
                },
                LatencyBucket {
                    le_us: u64::MAX,
                    count: samples - within,
                },
            ]
            .into(),
            ..LatencySummary::default()
        },
        first_event_unix_us: Some(0).into(),
        ..DatabaseStats::default()
    };
    Coverage {
        requests: sum("pgdog_mirror_statement_requests_total", &[]),
        seen_once: sum("pgdog_mirror_statements_seen_once", &[]),
        ..Coverage::default()
    }
    .write(&mut stats.extensions);
    for class in ["schema_drift", "permissions", "data"] {
        let label = format!("class=\"{class}\"");
        let n = sum("pgdog_mirror_error_classes_total", &[label.as_str()]);
        let name = format!("errors.class.{class}");
        stats.extensions.set(&name, ExtensionValue::Count(n));
    }
    stats
}

/// Runs the command; returns its exit code and output.
fn command(binary: &std::path::Path, args: &[&str]) -> (i32, String, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = std::process::Command::new(binary)
        .arg("readiness")
        .args(args)
        .output()
        .expect("running pgdog readiness");
    (
        status.code().unwrap_or(-1),
        String::from_utf8_lossy(&stdout).into_owned(),
        String::from_utf8_lossy(&stderr).into_owned(),
    )
}

/// The rows of a report that do not depend on the moment it was made, nor on latency
/// quantiles (read from bucket edges; the policy reads counts over the bound).
fn stable_rows(text: &str) -> Vec<String> {
    text.lines()
        .take_while(|l| !l.starts_with("Policy:"))
        .filter(|l| {
            [
                "Status:",
                "Confidence Score:",
                "Criterion:",
                "Error Rate:",
                "Total Requests:",
                "Mirrored:",
            ]
            .iter()
            .any(|p| l.starts_with(p))
        })
        .map(|l| match l.strip_prefix("Criterion: p99 latency ") {
            Some(rest) => format!(
                "Criterion: p99 latency{}",
                &rest[rest.find(" (").unwrap_or(0)..]
            ),
            None => l.to_string(),
        })
        .collect()
}

#[tokio::test]
async fn two_proxies_are_judged_on_their_sums() -> Result<()> {
    let (primary, mirror) = tokio::try_join!(PgCluster::start(), PgCluster::start())?;
    primary.execute_in("pgdog", PRIMARY_PROBE).await?;
    mirror.execute_in("pgdog", MIRROR_PROBE).await?;
    let (a, b) = (
        proxy(&primary, &mirror).await?,
        proxy(&primary, &mirror).await?,
    );

    // 300 requests through one proxy (3 mirror-only errors), 200 through the other:
    // neither has enough to vouch for a p99 alone; together they do.
    probes(&a, "primary", 300, 100).await?;
    probes(&b, "primary", 200, 0).await?;
    probes(&b, "small", 50, 0).await?;
    for (pgdog, total) in [(&a, 300), (&b, 200)] {
        common::settled_counts(pgdog, "primary", "the mirror to answer", |c| {
            c.total == total
        })
        .await?;
    }
    common::settled_counts(&b, "small", "the mirror to answer", |c| c.total == 50).await?;
    for pgdog in [&a, &b] {
        let r =
            pgdog_integration::http_get(pgdog.host(), pgdog.metrics_port(), "/readiness").await?;
        assert_eq!(r.status, 503, "a single proxy is not READY:\n{}", r.body);
    }

    let targets: Vec<String> = [&a, &b]
        .iter()
        .map(|p| format!("{}:{}", p.host(), p.metrics_port()))
        .collect();
    let rules = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("grafana/pgdog-rules.yml");
    let prometheus = Prometheus::start(&targets, Some(&rules))?;
    let url = prometheus.url();
    let config = a.config_path().display().to_string();
    let binary = a.binary().to_path_buf();
    let args = [
        "--prometheus",
        url.as_str(),
        "--database",
        "primary",
        "--config",
        config.as_str(),
    ];

    // Once Prometheus has scraped both proxies after the traffic: READY, exit 0.
    let deadline = Instant::now() + Duration::from_secs(60);
    let (code, out, err) = loop {
        let (code, out, err) = command(&binary, &args);
        if out.contains("Total Requests: 500\n") || Instant::now() > deadline {
            break (code, out, err);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    if !out.contains("Total Requests: 500\n") {
        bail!(
            "the command never saw both proxies:\n{out}\n{err}\n{}",
            prometheus.log()
        );
    }
    println!("{out}");
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        out.starts_with("Database: primary\nStatus: READY\n"),
        "{out}"
    );
    assert!(
        out.contains("Mirrored: 497, Errors: 3, Dropped: 0"),
        "{out}"
    );
    assert!(out.contains("Mirror Errors by Class: data 3"), "{out}");
    assert!(
        out.contains("proxies reporting each database: primary 2"),
        "{out}"
    );
    assert!(
        out.contains("Not from Prometheus: per-fingerprint detail"),
        "{out}"
    );

    // The totals are the sum of both proxies' own, and the verdict is the policy's on them.
    let expositions = [scrape(&a).await?, scrape(&b).await?];
    let stats = summed(&expositions, "primary");
    assert_eq!(stats.counts.total, 500);
    let criteria = ReadinessCriteria {
        max_latency_ms: BOUND_MS as f64,
        min_runtime_secs: 0.0,
        ..ReadinessCriteria::default()
    }
    .with_confidence_and_coverage(0.95, 0.01);
    let snapshot = StatsSnapshot {
        overall: stats.clone(),
        databases: vec![stats].into(),
        taken_at_unix_us: 1,
        ..StatsSnapshot::default()
    };
    let expected = pgdog_mirror_stats::policy::assess("mirror-stats", &snapshot, &criteria);
    let expected = expected.to_text_rows().join("\n");
    assert_eq!(
        stable_rows(&out),
        stable_rows(&expected),
        "command:\n{out}\npolicy on the sums:\n{expected}"
    );

    // The recording rules sum the same inputs.
    let deadline = Instant::now() + Duration::from_secs(30);
    let rule =
        "database_outcome:pgdog_mirror_requests:sum{database=\"primary\",outcome=\"mirrored\"}";
    let mut seen = None;
    while Instant::now() < deadline {
        seen = prometheus.query(rule).await?;
        if seen.as_deref() == Some("497") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(seen.as_deref(), Some("497"), "{}", prometheus.log());

    // A database with too little traffic: NOT READY, exit 1.
    let small = [
        "--prometheus",
        url.as_str(),
        "--database",
        "small",
        "--config",
        config.as_str(),
    ];
    let (code, out, err) = command(&binary, &small);
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(out.contains("Status: NOT READY"), "{out}");
    assert!(out.contains("Total requests 50 < minimum 100"), "{out}");

    // Cannot judge: exit 2, with the reason.
    let nope = [
        "--prometheus",
        url.as_str(),
        "--database",
        "nope",
        "--config",
        config.as_str(),
    ];
    let (code, _, err) = command(&binary, &nope);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("no pgdog mirror series for database \"nope\""),
        "{err}"
    );
    let down = format!("http://127.0.0.1:{}", pgdog_integration::free_port());
    let (code, _, err) = command(
        &binary,
        &["--prometheus", down.as_str(), "--config", config.as_str()],
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("cannot reach Prometheus"), "{err}");
    let (code, _, err) = command(&binary, &["--config", config.as_str()]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--prometheus URL is required"), "{err}");
    Ok(())
}
