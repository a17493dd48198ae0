use super::scrape::{database, PoolSample};
use super::*;
use crate::plugins::{DatabaseReport, MetricPoint, ReadinessReport, StatsSnapshot};
use pgdog_plugin_api::{Counts, DatabaseStats, LatencyBucket, LatencySummary};

fn spec_points() -> Vec<MetricPoint> {
    let g = |labels: &[(&str, &str)], v: f64| {
        MetricPoint::gauge("mirror", "Query mirroring", labels, v)
    };
    vec![
        g(&[("type", "total")], 103.0),
        g(&[("type", "mirrored")], 100.0),
        g(&[("error_type", "connection")], 3.0),
        g(&[("stat", "avg_latency_ms")], 100.345),
        g(&[("database", "primary"), ("metric", "mirrored")], 100.0),
    ]
}

fn snapshot() -> StatsSnapshot {
    let db = DatabaseStats {
        database: "primary".into(),
        counts: Counts {
            total: 103,
            mirrored: 100,
            errors: 3,
            ..Counts::default()
        },
        mirror_latency: LatencySummary {
            samples: 100,
            avg_ms: 2.0,
            buckets: vec![
                LatencyBucket {
                    le_us: 400,
                    count: 10,
                },
                LatencyBucket {
                    le_us: 1_500,
                    count: 85,
                },
                LatencyBucket {
                    le_us: 30_000_000,
                    count: 5,
                },
            ]
            .into(),
            ..LatencySummary::default()
        },
        ..DatabaseStats::default()
    };
    StatsSnapshot {
        overall: db.clone(),
        databases: vec![db].into(),
        taken_at_unix_us: 0,
        fingerprints: Default::default(),
    }
}

fn scrape(enabled: bool) -> Scrape {
    let report = ReadinessReport {
        policy: "mirror-stats".into(),
        overall: DatabaseReport::default(),
        databases: vec![DatabaseReport {
            database: "primary".into(),
            ready: true,
            confidence: 87.5,
            ..DatabaseReport::default()
        }]
        .into(),
    };
    Scrape {
        mirror_enabled: enabled,
        points: spec_points(),
        snapshot: Some(snapshot()),
        report: Some(report),
        pools: vec![PoolSample {
            label: database("primary"),
            clients: 2,
            servers: 3,
            idle: 1,
            waiting: 0,
            connects: 3,
            connect_errors: 0,
            queries: 100,
            bytes_received: 4096,
            bytes_sent: 8192,
            errors: 1,
        }],
        queues: vec![(database("primary"), 7)],
    }
}

fn families() -> Vec<(String, String, bool)> {
    vec![("mirror".into(), "Query mirroring".into(), false)]
}

fn render(enabled: bool) -> String {
    let m = Metrics::new(&families(), 1).unwrap();
    String::from_utf8(m.render(scrape(enabled))).unwrap()
}

#[test]
fn spec_lines_are_exact() {
    let text = render(true);
    let lines: Vec<&str> = text.lines().collect();
    for want in [
        "# HELP mirror Query mirroring",
        "# TYPE mirror gauge",
        "mirror{type=\"total\"} 103",
        "mirror{type=\"mirrored\"} 100",
        "mirror{error_type=\"connection\"} 3",
        "mirror{stat=\"avg_latency_ms\"} 100.345",
        "mirror{database=\"primary\",metric=\"mirrored\"} 100",
    ] {
        assert!(lines.contains(&want), "missing {want:?} in\n{text}");
    }
    assert!(!text.contains("otel_scope"), "{text}");
    assert!(!text.contains("target_info"), "{text}");
    assert!(!text.contains("mirror_total"), "{text}");
}

#[test]
fn idiomatic_families() {
    let text = render(true);
    let lines: Vec<&str> = text.lines().collect();
    for want in [
        "# TYPE pgdog_mirror_requests_total counter",
        "pgdog_mirror_requests_total{database=\"primary\",outcome=\"mirrored\"} 100",
        "pgdog_mirror_errors_total{category=\"connection\",database=\"primary\"} 0",
        "pgdog_mirror_queue_depth{database=\"primary\"} 7",
        "pgdog_mirror_ready{database=\"primary\"} 1",
        "pgdog_mirror_readiness_confidence{database=\"primary\"} 0.875",
        "# TYPE pgdog_mirror_latency_seconds histogram",
        "pgdog_mirror_latency_seconds_bucket{database=\"primary\",le=\"0.0005\"} 10",
        "pgdog_mirror_latency_seconds_bucket{database=\"primary\",le=\"0.0025\"} 95",
        "pgdog_mirror_latency_seconds_bucket{database=\"primary\",le=\"10\"} 95",
        "pgdog_mirror_latency_seconds_bucket{database=\"primary\",le=\"+Inf\"} 100",
        "pgdog_mirror_latency_seconds_sum{database=\"primary\"} 0.2",
        "pgdog_mirror_latency_seconds_count{database=\"primary\"} 100",
        "pgdog_pool_clients{database=\"primary\"} 2",
        "pgdog_pool_server_connections{database=\"primary\",state=\"active\"} 2",
        "pgdog_pool_server_connections{database=\"primary\",state=\"idle\"} 1",
        "pgdog_pool_queries_total{database=\"primary\"} 100",
        "pgdog_pool_bytes_total{database=\"primary\",direction=\"sent\"} 8192",
        "pgdog_pool_errors_total{database=\"primary\"} 1",
    ] {
        assert!(lines.contains(&want), "missing {want:?} in\n{text}");
    }
    // The spec's scripts grep `error_type="connection"` and expect one line.
    assert_eq!(
        text.matches("error_type=\"connection\"").count(),
        1,
        "{text}"
    );
}

#[test]
fn mirror_families_can_be_switched_off() {
    let text = render(false);
    assert!(!text.contains("mirror{"), "{text}");
    assert!(!text.contains("pgdog_mirror_"), "{text}");
    assert!(
        text.contains("pgdog_pool_clients{database=\"primary\"} 2"),
        "{text}"
    );
}

#[test]
fn many_pools_fit_under_the_cap() {
    assert_eq!(cardinality_limit(10), 2000);
    let n = 1000;
    let m = Metrics::new(&families(), n).unwrap();
    let mut s = scrape(true);
    s.pools = (0..n)
        .map(|i| PoolSample {
            label: database(&format!("db{i}")),
            ..s.pools[0].clone()
        })
        .collect();
    s.points = (0..n)
        .flat_map(|i| {
            let name = format!("db{i}");
            ["mirrored", "dropped", "errors", "total"].map(|metric| {
                MetricPoint::gauge(
                    "mirror",
                    "Query mirroring",
                    &[("database", &name), ("metric", metric)],
                    1.0,
                )
            })
        })
        .collect();
    let text = String::from_utf8(m.render(s)).unwrap();
    assert!(!text.contains("otel_metric_overflow"), "overflowed");
    assert_eq!(
        text.lines().filter(|l| l.starts_with("mirror{")).count(),
        4 * n
    );
    assert_eq!(
        text.lines()
            .filter(|l| l.starts_with("pgdog_pool_server_connections{"))
            .count(),
        2 * n
    );
}
