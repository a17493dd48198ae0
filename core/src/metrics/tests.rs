use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use super::sample::{database, PoolSample};
use super::*;
use crate::plugins::{
    DatabaseReport, MetricKind, MetricPoint, MirrorEvent, ReadinessReport, StatsSnapshot, Verdicts,
};
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
        extensions: Default::default(),
    }
}

fn pool(name: &str) -> PoolSample {
    PoolSample {
        label: database(name),
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
    }
}

fn scrape(enabled: bool) -> Sample {
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
        extensions: Default::default(),
    };
    let mut sample = Sample {
        mirror_enabled: enabled,
        points: spec_points(),
        pools: vec![pool("primary")],
        queues: vec![(database("primary"), 7)],
        ..Sample::default()
    };
    sample.set_snapshot(Arc::new(snapshot()));
    sample.set_verdicts(Verdicts::of(&report));
    sample
}

/// A pipeline with the plugin families `families`, as a proxy with `pools` pools has.
fn metrics(families: &[(String, String, MetricKind)], pools: usize) -> Metrics {
    let options = Options {
        plugin_families: families.to_vec(),
        pools,
        otlp: false,
    };
    Metrics::new(&options).unwrap()
}

fn text(m: &Metrics, sample: Sample) -> String {
    String::from_utf8(m.render(sample).0).unwrap()
}

fn families() -> Vec<(String, String, MetricKind)> {
    vec![("mirror".into(), "Query mirroring".into(), MetricKind::GAUGE)]
}

fn render(enabled: bool) -> String {
    text(&metrics(&families(), 1), scrape(enabled))
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

/// The exposition is byte for byte what the OpenTelemetry pipeline (SDK observable
/// instruments, `opentelemetry-prometheus`, `prometheus::Registry` and `TextEncoder`)
/// printed for the same data: `testdata/*.txt` were written by that pipeline (commit
/// 7f3c414) from [`fixture`], which holds every family with awkward values (escaped
/// names, unsorted input, integers beyond 2^53, NaN and infinite plugin points, label
/// names to sanitise, repeated label sets, an invalid family name, an unknown family).
#[test]
fn same_bytes_as_the_exporter_pipeline() {
    let (families, s) = fixture();
    let m = metrics(&families, 4);
    let text = String::from_utf8(m.render(s).0).unwrap();
    assert_eq!(text, include_str!("testdata/exposition.txt"));
    let (_, mut s) = fixture();
    s.mirror_enabled = false;
    let text = String::from_utf8(m.render(s).0).unwrap();
    assert_eq!(text, include_str!("testdata/exposition-mirror-off.txt"));
}

/// Without a snapshot (no stats plugin, or its call failed) the families fed by it are
/// left out and every other family still comes.
#[test]
fn families_after_a_missing_source_still_come() {
    let m = metrics(&families(), 1);
    let mut s = scrape(true);
    s.snapshot = None;
    s.verdicts = None;
    let text = text(&m, s);
    assert!(
        text.contains("pgdog_pool_clients{database=\"primary\"} 2\n"),
        "{text}"
    );
    assert!(text.contains("mirror{type=\"total\"} 103\n"), "{text}");
    assert!(!text.contains("pgdog_mirror_latency_seconds"), "{text}");
}

#[test]
fn many_pools_all_exported() {
    let n = 1000;
    let m = metrics(&families(), n);
    let mut s = scrape(true);
    s.pools = (0..n).map(|i| pool(&format!("db{i}"))).collect();
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
    let text = text(&m, s);
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
    // Series in registry order: by label values, as strings.
    let dbs: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("pgdog_pool_clients{database=\""))
        .map(|l| l.split('"').next().unwrap())
        .collect();
    assert!(dbs.windows(2).all(|w| w[0] < w[1]), "{dbs:?}");
}

/// `<target>/<profile>`, where `cargo build --workspace` put the bundled plugin.
fn profile_dir() -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().unwrap().parent().unwrap().to_path_buf()
}

/// The body of `GET path` (HTTP/1.1, chunked or not); panics unless the status is 200.
async fn http_get(port: u16, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    s.write_all(request.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    let (head, body) = out.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    if !head.contains("transfer-encoding: chunked") {
        return body.to_string();
    }
    let (mut rest, mut whole) = (body, String::new());
    loop {
        let (size, after) = rest.split_once("\r\n").unwrap();
        let size = usize::from_str_radix(size, 16).unwrap();
        if size == 0 {
            return whole;
        }
        whole.push_str(&after[..size]);
        rest = &after[size + 2..];
    }
}

/// A scrape right after traffic counts all of it (every scrape reads the plugins and
/// the pool counters afresh; nothing is cached between scrapes): the real server, a
/// real proxy and the bundled stats plugin (`cargo build --workspace` first).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scrape_right_after_traffic_sees_it() {
    let text = "[general]\nport = 1\nadmin_port = 2\nmetrics_port = 3\n\n\
                [[pools]]\nname = \"app\"\ndatabase = \"pgdog\"\nmirror_of = \"mirror\"\n\n\
                [[pools]]\nname = \"mirror\"\ndatabase = \"mirrordb\"\n";
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pgdog.toml");
    let config = crate::config::Config::parse(text, &path).unwrap();
    let options = crate::plugins::LoadOptions {
        binary_dir: Some(profile_dir()),
        ..Default::default()
    };
    let host = crate::plugins::PluginHost::load(&[], &options)
        .expect("the bundled plugin (run `cargo build --workspace` first)");
    let proxy = crate::proxy::Proxy::new(config, path, Arc::new(host)).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(serve(proxy.clone(), listener));
    let app: Arc<str> = Arc::from("app");

    let mut sent = 0u64;
    for round in 1..=5u64 {
        for _ in 0..round * 100 {
            proxy.plugins.events().send(MirrorEvent::mirrored(
                app.clone(),
                Duration::from_micros(700),
            ));
        }
        sent += round * 100;
        let stats = proxy.runtime().pools.get("app").unwrap();
        stats.stats().queries.fetch_add(round, Ordering::Relaxed);
        let body = http_get(port, "/metrics").await;
        let queries: u64 = (1..=round).sum();
        for want in [
            format!("mirror{{type=\"mirrored\"}} {sent}"),
            format!("mirror{{database=\"app\",metric=\"total\"}} {sent}"),
            format!("pgdog_mirror_requests_total{{database=\"app\",outcome=\"mirrored\"}} {sent}"),
            format!("pgdog_mirror_latency_seconds_count{{database=\"app\"}} {sent}"),
            format!("pgdog_pool_queries_total{{database=\"app\"}} {queries}"),
        ] {
            assert!(
                body.lines().any(|l| l == want),
                "round {round}: no {want:?} in\n{body}"
            );
        }
    }
    // The plugin's scrape answer (plugin API 2.1: distributions at the histogram's
    // bounds, verdicts without texts) exports what a whole snapshot and report export.
    for i in 0..3_000u64 {
        let event = match i % 37 {
            0 => MirrorEvent::error(app.clone(), crate::plugins::ErrorCategory::Timeout, None),
            _ => MirrorEvent::mirrored(app.clone(), Duration::from_micros(100 + i * i % 3_000_000)),
        };
        proxy.plugins.events().send(event);
    }
    proxy.plugins.flush().await;
    let view = read::view(&proxy);
    let families = view.plugins.metric_families().await;
    let metrics = metrics(&families, view.pools.len());
    let fast = read::sample(view).await;
    let buckets = &fast.snapshot.as_ref().unwrap().0.databases[0]
        .mirror_latency
        .buckets;
    assert_eq!(buckets.len(), histogram::BOUNDS_US.len());
    assert!(!fast.points.is_empty());
    let view = read::view(&proxy);
    let mut whole = Sample {
        mirror_enabled: true,
        points: proxy.plugins.metric_points().await,
        pools: view.pools,
        queues: view.queues,
        pool_exhausted: view.pool_exhausted,
        plugin_events_dropped: Some(0),
        ..Sample::default()
    };
    let snapshot = Arc::new(proxy.plugins.snapshot().await.unwrap());
    assert!(snapshot.databases[0].mirror_latency.buckets.len() > 100);
    let criteria = crate::plugins::criteria_of(&proxy.config().general);
    let report = proxy
        .plugins
        .assess_snapshot(snapshot.clone(), &criteria)
        .await
        .unwrap();
    whole.set_snapshot(snapshot);
    whole.set_verdicts(Verdicts::of(&report));
    // The recent-latency window moves with time: compare everything else.
    let stable = |t: String| -> String {
        t.lines()
            .filter(|l| !l.starts_with("mirror{stat="))
            .map(|l| format!("{l}\n"))
            .collect()
    };
    assert_eq!(
        stable(super::tests::text(&metrics, fast)),
        stable(super::tests::text(&metrics, whole))
    );
    proxy.shutdown.cancel();
}

fn counter_point(name: &str, help: &str, labels: &[(&str, &str)], value: f64) -> MetricPoint {
    MetricPoint {
        kind: MetricKind::COUNTER,
        ..MetricPoint::gauge(name, help, labels, value)
    }
}

/// Everything the exposition can carry, with awkward names and values.
fn fixture() -> (Vec<(String, String, MetricKind)>, Sample) {
    let families = vec![
        (
            "mirror".to_string(),
            "Query mirroring: requests, errors by type, recent latency (ms), per database"
                .to_string(),
            MetricKind::GAUGE,
        ),
        (
            "fixture.events-seen/total".to_string(),
            "A plugin's counter with a back\\slash\nand a newline".to_string(),
            MetricKind::COUNTER,
        ),
        (
            "zz_plugin_gauge".to_string(),
            "Another plugin family".to_string(),
            MetricKind::GAUGE,
        ),
        (
            "1bad name".to_string(),
            "rejected".to_string(),
            MetricKind::GAUGE,
        ),
    ];
    let odd = "we\"ird\\name\nx";
    let g = |labels: &[(&str, &str)], v: f64| {
        MetricPoint::gauge(
            "mirror",
            "Query mirroring: requests, errors by type, recent latency (ms), per database",
            labels,
            v,
        )
    };
    let mut points = vec![
        g(&[("type", "total")], 1_234_567.0),
        g(&[("type", "mirrored")], 1_200_000.0),
        g(&[("type", "dropped")], 4_567.0),
        g(&[("error_type", "connection")], 30.0),
        g(&[("error_type", "query")], 29_970.0),
        g(&[("error_type", "timeout")], 0.0),
        g(&[("error_type", "buffer_full")], 4_567.0),
        g(&[("error_type", "protocol")], 0.0),
        g(&[("stat", "avg_latency_ms")], 100.345),
        g(&[("stat", "max_latency_ms")], 0.1 + 0.2),
    ];
    for db in ["primary", odd, "analytics"] {
        for (metric, v) in [
            ("mirrored", 400_000.0),
            ("dropped", 1_522.0),
            ("errors", 10_000.0),
            ("total", 411_522.0),
        ] {
            points.push(g(&[("database", db), ("metric", metric)], v));
        }
    }
    points.push(counter_point(
        "fixture.events-seen/total",
        "ignored help",
        &[("label.key", "a"), ("Other-Key", "")],
        12_345_678_901.0,
    ));
    points.push(counter_point(
        "fixture.events-seen/total",
        "ignored help",
        &[("label.key", "b"), ("Other-Key", "x")],
        9_007_199_254_740_993.0,
    ));
    points.push(counter_point(
        "fixture.events-seen/total",
        "ignored help",
        &[("a.b", "v2"), ("a-b", "v1"), ("9lives", "é"), ("é", "ü")],
        1.0,
    ));
    points.push(MetricPoint::gauge("zz_plugin_gauge", "x", &[], -1.5));
    points.push(MetricPoint::gauge(
        "zz_plugin_gauge",
        "x",
        &[("k", "v")],
        2.0,
    ));
    points.push(MetricPoint::gauge(
        "zz_plugin_gauge",
        "x",
        &[("k", "v")],
        3.0,
    ));
    points.push(MetricPoint::gauge(
        "zz_plugin_gauge",
        "x",
        &[("k", "w")],
        f64::NAN,
    ));
    points.push(MetricPoint::gauge(
        "zz_plugin_gauge",
        "x",
        &[("k", "inf")],
        f64::INFINITY,
    ));
    points.push(MetricPoint::gauge(
        "zz_plugin_gauge",
        "x",
        &[("k", "ninf")],
        f64::NEG_INFINITY,
    ));
    points.push(MetricPoint::gauge(
        "zz_plugin_gauge",
        "x",
        &[("k", "negz")],
        -0.0,
    ));
    points.push(MetricPoint::gauge(
        "zz_plugin_gauge",
        "x",
        &[("k", "tiny")],
        1e-7,
    ));
    points.push(MetricPoint::gauge(
        "zz_plugin_gauge",
        "x",
        &[("k", "huge")],
        1e300,
    ));
    points.push(MetricPoint::gauge("not_registered", "x", &[], 1.0));
    points.push(MetricPoint::gauge("1bad name", "x", &[], 1.0));

    let latency = |samples: u64, avg_ms: f64, buckets: &[(u64, u64)]| LatencySummary {
        samples,
        avg_ms,
        buckets: buckets
            .iter()
            .map(|&(le_us, count)| LatencyBucket { le_us, count })
            .collect::<Vec<_>>()
            .into(),
        ..LatencySummary::default()
    };
    let db = |name: &str, counts: Counts, l: LatencySummary| DatabaseStats {
        database: name.into(),
        counts,
        mirror_latency: l,
        ..DatabaseStats::default()
    };
    let counts = |mirrored: u64, errors: u64, dropped: u64, e: [u64; 5]| Counts {
        total: mirrored + errors + dropped,
        mirrored,
        errors,
        dropped,
        by_category: pgdog_plugin_api::ErrorCounts {
            connection: e[0],
            query: e[1],
            timeout: e[2],
            buffer_full: dropped,
            protocol: e[3],
            other: e[4],
        },
        ..Counts::default()
    };
    let databases = vec![
        db(
            "analytics",
            counts(0, 0, 0, [0; 5]),
            LatencySummary::default(),
        ),
        db(
            "primary",
            counts(400_000, 10_000, 1_522, [1, 9_990, 4, 3, 2]),
            latency(
                400_000,
                1.234567,
                &[
                    (499, 10),
                    (500, 5),
                    (501, 7),
                    (1_000, 100),
                    (2_047, 300_000),
                    (9_999_999, 99_000),
                    (10_000_000, 870),
                    (3_600_000_000, 8),
                ],
            ),
        ),
        db(
            odd,
            counts(u64::MAX / 2, 3, 0, [0, 0, 3, 0, 0]),
            latency(3, 0.1, &[(100, 3)]),
        ),
    ];
    let snapshot = StatsSnapshot {
        overall: DatabaseStats::default(),
        databases: databases.into(),
        taken_at_unix_us: 0,
        fingerprints: Default::default(),
        extensions: Default::default(),
    };
    let report = ReadinessReport {
        policy: "mirror-stats".into(),
        overall: DatabaseReport::default(),
        databases: vec![
            DatabaseReport {
                database: "primary".into(),
                ready: true,
                confidence: 87.5,
                ..DatabaseReport::default()
            },
            DatabaseReport {
                database: odd.into(),
                ready: false,
                confidence: 100.0 / 3.0,
                ..DatabaseReport::default()
            },
            DatabaseReport {
                database: "analytics".into(),
                ready: false,
                confidence: 0.0,
                ..DatabaseReport::default()
            },
        ]
        .into(),
        extensions: Default::default(),
    };
    let pool = |name: &str, n: u64| PoolSample {
        label: database(name),
        clients: n,
        servers: n + 2,
        idle: n + 5,
        waiting: n / 2,
        connects: n * 10,
        connect_errors: n % 3,
        queries: n * 1_000_003,
        bytes_received: n << 40,
        bytes_sent: if n == 7 { u64::MAX } else { n * 3 },
        errors: n * 2,
    };
    let mut scrape = Sample {
        mirror_enabled: true,
        points,
        pools: vec![
            pool("primary", 7),
            pool(odd, 1),
            pool("analytics", 0),
            pool("mirror", 4),
        ],
        queues: vec![
            (database("analytics"), 0),
            (database("primary"), 12),
            (database(odd), 1),
        ],
        ..Sample::default()
    };
    scrape.set_snapshot(Arc::new(snapshot));
    scrape.set_verdicts(Verdicts::of(&report));
    (families, scrape)
}
